"""SPT sweeps: every cell of a δ × preset × tokens × seed grid is a mix spec plus a training run on Ray.

The driver builds each cell's streams spec itself (sources are already built, so that takes seconds), then runs
each cell's ``spt train`` (and ``spt finetune``) as a Ray task with the cell's resources, at most
``max_concurrent`` at once. Each task runs the commands in a subprocess with its own log file, so a cell that
fails (bad preset, crash) fails alone. After every cell, ``results`` and ``curves`` tables are rewritten
atomically; a rerun skips cells whose row says ``ok``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from pipelines.io import read_json
# The table format is owned by its reader, so the writer here and the fitter cannot drift apart.
from scaling_laws.sweeps import CURVES_COLUMNS, RESULTS_COLUMNS
from spt.cluster import DEFAULT_GCS_PORT, check_reachable
from spt.config import MixConfig, SweepConfig, TrainConfig, load_config
from spt.config.loader import read_yaml
from spt.errors import InputError

#: Columns of a run's curves.csv copied into the sweep's curves table as they are.
CURVE_EXTRAS = ("domain_train_loss", "domain_epochs", "phase", "lr")


@dataclass(frozen=True)
class Cell:
    domain_fraction: float
    preset: str
    total_tokens: int
    seed: int

    @property
    def run_id(self) -> str:
        return f"delta{self.domain_fraction:g}-{self.preset}-T{self.total_tokens}-seed{self.seed}"


def cells(config: SweepConfig, mix: MixConfig, train: TrainConfig) -> list[Cell]:
    """Every cell: the grid's product, then the repeated δ's extra seeds (cells already in the grid once)."""
    grid = config.grid
    presets = grid.preset or [train.model.preset]
    budgets = grid.total_tokens or [mix.total_tokens]
    grid_cells = [Cell(d, p, t, s) for d, p, t, s in itertools.product(grid.domain_fraction, presets, budgets, grid.seed)]
    if grid.repeat is None:
        return grid_cells
    extra = [Cell(grid.repeat.domain_fraction, p, t, s)
             for p, t, s in itertools.product(presets, budgets, grid.repeat.seed)]
    return grid_cells + [c for c in extra if c not in grid_cells]


def load_bases(config: SweepConfig) -> tuple[MixConfig, TrainConfig, int]:
    """The base mix and train configs (validated now, so a bad base fails the sweep before anything runs)."""
    mix = load_config(config.mix, kind="mix")
    train = load_config(config.train, kind="train")
    if config.finetune:
        load_config(config.finetune, ["base_run=unused"], kind="finetune")
    names = [s.name for s in mix.sources]
    if config.domain_source not in names:
        raise InputError(f"sweep.domain_source={config.domain_source!r}: the mix has no such source ({', '.join(names)})")
    return mix, train, names.index(config.domain_source)


def prepare_cell(config: SweepConfig, cell: Cell, domain_index: int, out: Path) -> list[list[str]]:
    """Builds the cell's mix spec and writes its configs; returns the spt commands the cell runs."""
    from pipelines.mix.build import build_mix

    cell_dir = out / "cells" / cell.run_id
    cell_dir.mkdir(parents=True, exist_ok=True)
    mix_data = read_yaml(config.mix)
    mix_data["sources"][domain_index]["fraction"] = cell.domain_fraction
    mix_data.update(total_tokens=cell.total_tokens, name=f"{config.name}-{cell.run_id}")
    (cell_dir / "mix.yaml").write_text(yaml.safe_dump(mix_data, sort_keys=False))
    spec = build_mix(load_config(cell_dir / "mix.yaml", kind="mix"))["spec"]
    train_data = read_yaml(config.train)
    train_data.update(mix=str(spec), run_dir=str(cell_dir / "run"), seed=cell.seed, duration_tokens=None)
    train_data.setdefault("model", {})["preset"] = cell.preset
    (cell_dir / "train.yaml").write_text(yaml.safe_dump(train_data, sort_keys=False))
    commands = [["train", str(cell_dir / "train.yaml")]]
    if config.finetune:
        ft = read_yaml(config.finetune)
        ft.update(base_run=str(cell_dir / "run"), run_dir=str(cell_dir / "finetune"), mix=str(spec))
        (cell_dir / "finetune.yaml").write_text(yaml.safe_dump(ft, sort_keys=False))
        commands.append(["finetune", str(cell_dir / "finetune.yaml")])
    return commands


def cell_threads(num_cpus: float) -> int:
    """Torch/OpenMP threads of a cell: the CPUs it reserves, at least one."""
    return max(1, int(num_cpus))


def run_cell_commands(log_path: str, commands: list[list[str]], retries: int, threads: int = 1) -> dict:
    """Runs a cell's spt commands in subprocesses (in a Ray task); bad input (exit 2) is not retried.

    The subprocesses use ``threads`` torch/OpenMP threads: the cell's reserved CPUs. (Ray's worker environment
    says one thread, which left one of two reserved cores idle: 3.1k tokens/s in a sweep vs 5.3k under
    ``spt train`` on a 2-core machine.)
    """
    env = {**os.environ, "SPT_PROGRESS": "0", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.time()
    with open(log_path, "a", encoding="utf-8") as log:
        for command in commands:
            for attempt in range(retries + 1):
                print(f"$ spt {' '.join(command)}  (attempt {attempt + 1})", file=log, flush=True)
                code = subprocess.run([sys.executable, "-m", "spt.cli", *command], stdout=log,
                                      stderr=subprocess.STDOUT, env=env).returncode
                if code in (0, 2):
                    break
            if code != 0:
                return {"status": "failed", "error": last_error(log_path) or f"exit code {code}",
                        "wall_seconds": round(time.time() - started, 1)}
    return {"status": "ok", "error": None, "wall_seconds": round(time.time() - started, 1)}


def last_error(log_path: str) -> str | None:
    lines = [line.strip() for line in Path(log_path).read_text(errors="replace").splitlines() if line.strip()]
    errors = [line.removeprefix("error: ") for line in lines
              if line.startswith("error:") or "Error" in line.split(":")[0]]
    return (errors or lines or [None])[-1]


def result_row(cell: Cell, cell_dir: Path, outcome: dict) -> tuple[dict, list[dict]]:
    """The cell's row in results, and its rows in curves (empty when it failed)."""
    row = {"run_id": cell.run_id, "domain_fraction": cell.domain_fraction, "preset": cell.preset,
           "tokens": cell.total_tokens, "seed": cell.seed, "log_path": str(cell_dir / "log.txt"), **outcome}
    summary = read_json(cell_dir / "run" / "summary.json") or {}
    finetune = read_json(cell_dir / "finetune" / "summary.json") or {}
    row.update(params=summary.get("params"), domain_loss=summary.get("domain_loss"),
               general_loss=summary.get("general_loss"), finetune_domain_loss=finetune.get("best_domain_loss"))
    curves = []
    if outcome["status"] == "ok" and (cell_dir / "run" / "curves.csv").exists():
        table = pd.read_csv(cell_dir / "run" / "curves.csv")
        for _, point in table.iterrows():
            curves.append({"run_id": cell.run_id, "domain_fraction": cell.domain_fraction, "preset": cell.preset,
                           "params": summary.get("params"), "seed": cell.seed, "tokens": int(point["tokens"]),
                           "domain_loss": point["domain_loss"], "general_loss": point["general_loss"],
                           **{column: point.get(column) for column in CURVE_EXTRAS}})
    return row, curves


def write_tables(out: Path, rows: dict[str, dict], curves: dict[str, list[dict]]) -> None:
    """Rewrites results.{csv,parquet} and curves.{csv,parquet} atomically, ordered by run id."""
    tables = {
        "results": pd.DataFrame([rows[k] for k in sorted(rows)], columns=list(RESULTS_COLUMNS)),
        "curves": pd.DataFrame([p for k in sorted(curves) for p in curves[k]], columns=list(CURVES_COLUMNS)),
    }
    for name, frame in tables.items():
        for suffix, write in ((".csv", lambda f, p: f.to_csv(p, index=False)),
                              (".parquet", lambda f, p: f.to_parquet(p, index=False))):
            tmp = out / f".{name}{suffix}.tmp"
            write(frame, tmp)
            os.replace(tmp, out / f"{name}{suffix}")


def load_tables(out: Path) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    if not (out / "results.csv").exists():
        return {}, {}
    results = pd.read_csv(out / "results.csv").astype(object)
    rows = {r["run_id"]: {k: (None if pd.isna(v) else v) for k, v in r.items()} for r in results.to_dict("records")}
    curves: dict[str, list[dict]] = {}
    if (out / "curves.csv").exists():
        for point in pd.read_csv(out / "curves.csv").to_dict("records"):
            curves.setdefault(point["run_id"], []).append(point)
    return rows, curves


def connect_ray(address: str | None, num_cpus: float):
    """Joins the given cluster (or the job's own), else starts a local Ray; unreachable addresses fail fast."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": {"SPT_PROGRESS": "0", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}}
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto":
        from spt.cluster import configure_auth

        check_reachable(address, 10001 if address.startswith("ray://") else DEFAULT_GCS_PORT)
        configure_auth()
    if address:
        # A job's driver already has the job's runtime env; adding one here would conflict with it.
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        ray.init(num_cpus=max(int(num_cpus), os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
                 runtime_env=runtime_env, configure_logging=False)
    return True


def run_sweep(config: SweepConfig, address: str | None = None, log=print) -> pd.DataFrame:
    """Runs every unfinished cell; returns the results table. Cells already ``ok`` in the table are skipped."""
    import ray
    from tqdm import tqdm

    _, train, domain_index = load_bases(config)
    mix = load_config(config.mix, kind="mix")
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = load_tables(out)
    grid = cells(config, mix, train)
    # Cells of an earlier grid stay on disk but leave the tables, which a fit reads as this grid.
    stale = sorted(set(rows) - {c.run_id for c in grid})
    if stale:
        log(f"sweep {config.name}: {len(stale)} cells not in the grid left out of the tables: {', '.join(stale)}")
        rows = {k: v for k, v in rows.items() if k not in stale}
        curves = {k: v for k, v in curves.items() if k not in stale}
    todo = [c for c in grid if rows.get(c.run_id, {}).get("status") != "ok"]
    log(f"sweep {config.name}: {len(rows) - sum(r['status'] != 'ok' for r in rows.values())} cells done, "
        f"{len(todo)} to run")
    if not todo:
        write_tables(out, rows, curves)
        return pd.read_csv(out / "results.csv")
    prepared: list[tuple[Cell, list[list[str]]]] = []
    for cell in todo:  # mix specs first: the driver writes them, cells only read
        try:
            prepared.append((cell, prepare_cell(config, cell, domain_index, out)))
        except InputError as exc:
            rows[cell.run_id], curves[cell.run_id] = result_row(
                cell, out / "cells" / cell.run_id, {"status": "failed", "error": "; ".join(exc.problems),
                                                    "wall_seconds": 0.0})
    write_tables(out, rows, curves)
    started_ray = connect_ray(address or config.address, config.resources.num_cpus * config.max_concurrent)
    task = ray.remote(run_cell_commands).options(num_cpus=config.resources.num_cpus,
                                                 num_gpus=config.resources.num_gpus, max_retries=config.max_retries)
    in_flight: dict = {}
    progress = tqdm(total=len(prepared), desc=f"sweep {config.name}", unit="cell", disable=None)
    try:
        while prepared or in_flight:
            while prepared and len(in_flight) < config.max_concurrent:
                cell, commands = prepared.pop(0)
                log_path = str(out / "cells" / cell.run_id / "log.txt")
                in_flight[task.remote(log_path, commands, config.max_retries,
                                      cell_threads(config.resources.num_cpus))] = cell
            done, _ = ray.wait(list(in_flight), num_returns=1)
            cell = in_flight.pop(done[0])
            try:
                outcome = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                outcome = {"status": "failed", "error": str(exc).splitlines()[0], "wall_seconds": None}
            rows[cell.run_id], curves[cell.run_id] = result_row(cell, out / "cells" / cell.run_id, outcome)
            write_tables(out, rows, curves)
            progress.update(1)
            log(f"cell {cell.run_id}: {outcome['status']}" + (f" ({outcome['error']})" if outcome["error"] else ""))
            if outcome["status"] != "ok" and config.on_failure == "stop":
                prepared.clear()
    finally:
        progress.close()
        if started_ray:
            ray.shutdown()
    return pd.read_csv(out / "results.csv")
