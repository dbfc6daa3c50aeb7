"""`spt rephrase`: plan the work units, run them through Ray Data and vLLM, commit each unit exactly once.

Pipeline (Ray Data, streaming)::

    units (pending only) --map_batches(expand, tasks)--> prompt rows + one unit row per unit
          --map_batches(GenerateStage, actors)--> rows with text --driver--> OutputDir.commit(unit)

Where it runs is decided by :func:`spt.cluster.ray_session`, as for every stage: ``ray.address``, else the Ray
job's cluster (``$RAY_ADDRESS``), else a private local Ray with its own temp folder. The engine is an async actor
class in ``map_batches`` rather than ``ray.data.llm``'s processor, chosen by ``benchmarks/rephrase_throughput.py``
on this 2-core CPU (212 prompts, SmolLM2-135M): the actor kept pace with one raw ``LLM.generate`` call (ratio
1.05) and finished end to end 1.2x faster than the ``ray.data.llm`` processor. A synchronous actor measured 0.79x
raw (under heavy load from other jobs): each batch left the engine idle at its tail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from pipelines.engine import describe_cpu, resolve_dtype
from pipelines.rephrase import quality, report
from pipelines.rephrase.commit import ORIGINAL, SCHEMA, OutputDir
from pipelines.rephrase.expand import UNIT, ExpandUnit, expand_batch
from pipelines.rephrase.fingerprint import config_identity, fingerprint_parts
from pipelines.rephrase.generate import GenerateStage, engine_env
from pipelines.rephrase.sources import Unit, plan_units
from spt import cluster, storage
from spt.config.rephrase import RephraseConfig, StyleSpec, resolve_repo_path, resolve_styles
from spt.environments import ray_runtime_env
from spt.progress import Progress
from spt.storage import sha256_json


@dataclass
class Plan:
    """Everything a run needs, resolved and validated before anything is written."""

    config: RephraseConfig
    styles: dict[str, StyleSpec]
    weights: dict[str, float]
    model: str  # resolved folder, or a hub id
    model_name: str  # what the `model` column says
    units: list[Unit]
    header: dict[str, Any]

    def context(self) -> str:
        """The JSON that rebuilds the expand stage in a Ray worker."""
        return json.dumps({
            "config": self.config.model_dump(mode="json"),
            "styles": {k: v.model_dump(mode="json") for k, v in self.styles.items()},
            "weights": self.weights,
            "model": self.model,
        }, sort_keys=True)


def resolve_model(model: str) -> tuple[str, str]:
    """(what vLLM loads, the name written to rows): a local folder (resolved) or a hub id (as is)."""
    path = resolve_repo_path(model)
    if path.exists() or model.startswith((".", "/", "~")):
        return str(path), path.name
    return model, model


def prepare(config: RephraseConfig) -> Plan:
    """Resolves styles, model and inputs and plans the units. Raises InputError/ConfigError on bad input.

    ``header["config_hash"]`` is the run's fingerprint (see :mod:`pipelines.rephrase.fingerprint`).
    """
    styles, weights = resolve_styles(config)
    model, model_name = resolve_model(config.engine.model)
    ExpandUnit(config, styles, weights, model)  # fails early on a missing model folder or tokenizer
    units = plan_units(config.input, config.output.documents_per_shard)
    identity = config_identity(config, styles, weights, model_name)
    parts = fingerprint_parts(identity, units, model)
    header = {
        "config_hash": sha256_json(parts),
        "fingerprint_parts": parts,
        "config": config.model_dump(mode="json"),
        "styles": identity["styles"],
        "model": model_name,
        "units_total": len(units),
    }
    return Plan(config, styles, weights, model, model_name, units, header)


def expected_keys(plan: Plan) -> set[tuple[str, int, str]]:
    """Every (source_id, chunk, style) a complete run writes, computed without the engine (for checks)."""
    stage = ExpandUnit(plan.config, plan.styles, plan.weights, plan.model)
    keys: set[tuple[str, int, str]] = set()
    earlier: set[str] = set()  # an id already written by an earlier unit is dropped at commit
    for unit in plan.units:
        rows = [row for row in stage(unit.to_dict()) if row["kind"] != UNIT and row["source_id"] not in earlier]
        keys.update((r["source_id"], r["chunk"], r["style"]) for r in rows)
        earlier.update(r["source_id"] for r in rows)
    return keys


_STAGES: dict[str, ExpandUnit] = {}


def _expand_task(units: pa.Table, context: str) -> pa.Table:
    """Ray task body: rebuilds (once per worker process) the expand stage and runs it on a batch of units."""
    stage = _STAGES.get(context)
    if stage is None:
        values = json.loads(context)
        stage = ExpandUnit(
            RephraseConfig.model_validate(values["config"]),
            {k: StyleSpec.model_validate(v) for k, v in values["styles"].items()},
            values["weights"],
            values["model"],
        )
        _STAGES[context] = stage
    return expand_batch(units, stage)


def run_rephrase(config: RephraseConfig, progress: bool | None = None, force: bool = False) -> dict[str, Any]:
    """Runs (or resumes) a rephrasing job; prints and returns this run's report.

    Args:
        force: replace the output of another config, other inputs or another model in ``output.dir``.

    Raises:
        InputError: bad inputs, model, styles or output folder, all found before anything is written.
    """
    started = time.time()
    plan = prepare(config)
    out = OutputDir(config.output.dir, plan.header, force=force)
    try:
        if out.removed:
            _log(f"removed files this stage wrote that the manifest does not list: {', '.join(out.removed)}")
        pending = [unit for unit in plan.units if unit.index not in out.done()]
        for stale in _mark_killed_runs(out):
            # A killed run's private Ray dies with its driver (fate sharing); end whatever did not, by PID.
            end_processes_using(stale)
            shutil.rmtree(stale, ignore_errors=True)
        out.manifest["runs"].append({"started": round(started, 3), "status": "running", "units_pending": len(pending)})
        run_units: list[dict] = []
        generation = [None, None]  # first engine ready, last commit
        try:
            if pending:
                def remember(ray_dir: str) -> None:  # before Ray starts, so a kill at any point can be cleaned up
                    out.manifest["runs"][-1]["ray_temp_dir"] = ray_dir
                    out.save()

                with ray_session(config, remember):
                    _stream(plan, out, pending, run_units, generation, started, progress)
        except BaseException as exc:
            # Committed units stay committed; the next run picks up the rest.
            out.manifest["runs"][-1].update(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
            out.manifest["runs"][-1].pop("ray_temp_dir", None)
            out.save()
            raise
        record = _record(run_units, generation, started)
        record["engine"] = out.manifest["runs"][-1].get("engine") or _engine_info(config)
        out.manifest["runs"][-1].update(record, status="finished", finished=round(time.time(), 3))
        out.manifest["runs"][-1].pop("ray_temp_dir", None)
        out.manifest["complete"] = len(out.done()) == len(plan.units)
        out.manifest["totals"] = report.totals(out.manifest["units"].values())
        out.save()
        print(report.format_summary(record, out.manifest["totals"], len(plan.units)))
        print(f"rephrase output: {out.path} ({'complete' if out.manifest['complete'] else 'incomplete'})")
        return record
    finally:
        out.close()


def _engine_info(config: RephraseConfig) -> dict[str, str]:
    """The dtype an engine on this machine's CPU would use (a run that started no engine reports this)."""
    device = "gpu" if config.engine.device == "gpu" else "cpu"
    return {"dtype": resolve_dtype(config.engine.dtype, device), "cpu": describe_cpu()}


def _log(message: str) -> None:
    print(f"rephrase: {message}", file=sys.stderr, flush=True)


def _record(run_units: list[dict], generation: list, started: float) -> dict:
    seconds = (generation[1] - generation[0]) if generation[0] and generation[1] else 0.0
    return report.run_record(run_units, max(seconds, 0.0), time.time() - started)


def _stream(plan: Plan, out: OutputDir, pending: list[Unit], run_units: list, generation: list, started, progress):
    import ray

    config = plan.config
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # units arrive in order: deterministic, little buffering
    context.enable_progress_bars = False
    gpu = config.engine.device == "gpu" or (
        config.engine.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0
    )
    engine = {**config.engine.model_dump(), "model": plan.model, "device": "gpu" if gpu else "cpu"}
    dataset = ray.data.from_items([u.to_dict() for u in pending], override_num_blocks=len(pending))
    # A CPU request unlike the engine's keeps Ray Data from fusing this stage into the engine actor: fused,
    # every engine call would only see one unit's rows, and small batches waste most of the engine.
    expand_cpus = 0.5 if config.ray.num_cpus != 0.5 else 0.25
    dataset = dataset.map_batches(
        _expand_task, fn_kwargs={"context": plan.context()}, batch_size=1, batch_format="pyarrow",
        num_cpus=expand_cpus,
    )
    gate = {"quality": config.quality.model_dump(), "styles": {k: v.model_dump() for k, v in plan.styles.items()}}
    dataset = dataset.map_batches(
        GenerateStage,
        fn_constructor_kwargs={"engine": engine, "sampling": config.sampling.model_dump(), "gate": gate},
        batch_size=config.engine.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(
            size=config.engine.concurrency,
            # The async actor runs this many batches at once; one more waits so the engine never runs dry.
            max_concurrent_calls_per_actor=config.engine.concurrent_batches,
            max_tasks_in_flight_per_actor=2 * config.engine.concurrent_batches,
        ),
        num_cpus=config.ray.num_cpus,
        num_gpus=(config.ray.num_gpus or config.engine.tensor_parallel_size) if gpu else 0,
    )
    seen_ids = out.committed_source_ids()
    _log(f"pipeline built ({len(pending)} units pending); waiting for the engine to start")
    buffered: dict[int, list[dict]] = {}
    bar = Progress("rephrase", len(pending), "units", show=progress)
    rows_done = tokens_done = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            if generation[0] is None or row["engine_ready"] < generation[0]:
                if generation[0] is None:
                    _log(f"engine ready after {row['engine_ready'] - started:.1f} s ({row['engine_dtype']}; "
                         f"CPU: {row['engine_cpu']})")
                    out.manifest["runs"][-1]["engine"] = {"dtype": row["engine_dtype"], "cpu": row["engine_cpu"]}
                generation[0] = row["engine_ready"]
            if row["kind"] != UNIT:
                buffered.setdefault(row["unit"], []).append(row)
                continue
            rows = buffered.pop(row["unit"], [])
            if len(rows) != row["unit_rows"]:
                raise RuntimeError(f"unit {row['unit']}: {len(rows)} rows arrived, {row['unit_rows']} expected")
            info = _commit_unit(plan, out, plan.units[row["unit"]], rows, json.loads(row["unit_stats"]), seen_ids)
            generation[1] = time.time()
            run_units.append(info)
            out.manifest["runs"][-1].update(_record(run_units, generation, started), status="running")
            out.save()
            rows_done += info["rows"]
            tokens_done += sum(s["output_tokens"] for s in info["per_style"].values())
            bar.update(1)
            bar.set_postfix(rows=rows_done, tokens=tokens_done)
    bar.close()


def _commit_unit(plan: Plan, out: OutputDir, unit: Unit, rows: list[dict], stats: dict, seen_ids: set) -> dict:
    """Builds the unit's shard and commits it; returns the manifest entry."""
    config = plan.config
    duplicates = {row["source_id"] for row in rows if row["source_id"] in seen_ids}
    if duplicates:  # an id already committed by an earlier unit: keep the first, count the rest
        dropped_chunks = {(row["source_id"], row["chunk"]) for row in rows if row["source_id"] in duplicates}
        rows = [row for row in rows if row["source_id"] not in duplicates]
        stats["skipped"][quality.DUPLICATE_ID] = stats["skipped"].get(quality.DUPLICATE_ID, 0) + len(duplicates)
        stats["kept"] -= len(duplicates)
        stats["chunks"] -= len(dropped_chunks)
    seen_ids.update(row["source_id"] for row in rows)
    schema = SCHEMA.append(ORIGINAL) if config.output.keep_original else SCHEMA
    records = [
        {
            "id": row["id"], "source_id": row["source_id"], "chunk": row["chunk"], "style": row["style"],
            "text": row["text"] if row["error"] is None else "", "prompt_tokens": row["prompt_tokens"],
            "input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"], "model": plan.model_name,
            "error": row["error"], "rejected": row["rejected"], "split": row["split"],
            "finish_reason": row["finish_reason"], "original": row["original"],
        }
        for row in rows
    ]
    table = pa.Table.from_pylist(records, schema=schema)
    info = {
        "input": {"path": unit.path, "scheme": unit.scheme, "start": unit.start, "stop": unit.stop, "rows": unit.rows},
        "rows": len(records),
        "errors": sum(r["error"] is not None for r in records),
        "rejected": sum(r["rejected"] is not None for r in records),
        "stats": stats,
        "per_style": report.per_style(records),
        "rejected_by": report.rejected_by(records),
        "run": len(out.manifest["runs"]) - 1,
    }
    out.commit(unit.index, table, info)
    return out.manifest["units"][str(unit.index)]


def _mark_killed_runs(out: OutputDir) -> list[str]:
    """Marks runs that never finished (killed) and returns the private Ray temp folders they left behind."""
    stale = []
    for run in out.manifest["runs"]:
        if run.get("status") == "running":
            run["status"] = "killed"
            if run.get("ray_temp_dir"):
                stale.append(run.pop("ray_temp_dir"))
    return stale


@contextmanager
def ray_session(config: RephraseConfig, on_temp_dir=lambda path: None) -> Iterator[str | None]:
    """Ray for the engines (:func:`spt.cluster.ray_session`): ``ray.address``, else ``$RAY_ADDRESS`` (a Ray job's
    cluster), else a private local Ray with its own temp folder, removed at the end with whatever it left running.

    ``on_temp_dir(path)`` is called with the private Ray's temp folder before Ray starts.
    """
    # Workers read inputs through the storage layer: they need the driver's S3 settings too.
    env_vars = {**engine_env(config.engine.cpu_kv_cache_gib), **storage.environment(), **config.ray.env_vars}
    previous_term = signal.getsignal(signal.SIGTERM)
    if previous_term in (signal.SIG_DFL, None):
        try:  # a plain SIGTERM (timeouts, schedulers) should still shut Ray down through the finally below
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        except ValueError:  # not the main thread
            previous_term = None
    temp_dirs: list[str] = []

    def local_start() -> dict:
        for key, value in env_vars.items():
            os.environ.setdefault(key, value)  # local workers inherit the driver's environment
        temp_dirs.append(tempfile.mkdtemp(prefix="spt-ray-", dir="/tmp"))  # short: Ray's socket paths have a limit
        on_temp_dir(temp_dirs[0])
        _log(f"starting a local Ray (temp folder {temp_dirs[0]})")
        return {"_temp_dir": temp_dirs[0], "num_cpus": os.cpu_count(), "object_store_memory": 512 * 1024 * 1024,
                "configure_logging": True, "logging_level": "warning"}

    try:
        with cluster.ray_session(config.ray.address, local=local_start, log_to_driver=True,
                                 runtime_env=lambda: ray_runtime_env("generate", config.ray.py_executable, env_vars)
                                 ) as joined:
            if joined:
                _log("Ray is up")
            yield temp_dirs[0] if temp_dirs else None
    finally:
        if temp_dirs:
            end_processes_using(temp_dirs[0])
            shutil.rmtree(temp_dirs[0], ignore_errors=True)
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def end_processes_using(folder: str) -> list[int]:
    """Ends (SIGKILL, by PID) this user's processes whose command line names ``folder``: the leftovers of a
    private Ray whose driver was killed. The folder is unique per run, so nothing else matches."""
    ended = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if folder in command:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                ended.append(int(entry.name))
            except OSError:
                pass
    return ended
