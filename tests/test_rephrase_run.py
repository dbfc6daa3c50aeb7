"""`spt rephrase` with real vLLM (CPU build) and a real local Ray: killed with SIGKILL mid-run, read by `spt mix
build` while incomplete, rerun, every expected (source_id, chunk, style) written exactly once, judged by the
quality gate, then mixed and trained on by `spt train`. One killed run and one resumed run are shared by every test
here (engine start-up is ~35 s each); the default test run starts two more engines, in test_generate_stage.py and
test_export.py.

The kill lands at the worst instant of a commit: the test hook ``SPT_TEST_PAUSE_BEFORE_MANIFEST=2`` stops the
first run once its second shard is in place and before the manifest lists it; the whole process group (driver,
Ray, vLLM) is then killed with SIGKILL."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.engine import describe_cpu, resolve_dtype
from pipelines.rephrase import gate
from pipelines.rephrase.commit import PAUSE_HOOK
from pipelines.rephrase.gate import OutputGate
from pipelines.rephrase.runner import expected_keys, prepare
from spt import environments
from spt.config import load_config
from spt.models import default_model_dir
from spt.storage import read_json
from tests.test_rephrase_data import write_config, write_inputs

pytestmark = pytest.mark.vllm
REPO = Path(__file__).resolve().parents[1]
MARKER = "SPT_TEST_RUN_MARKER"


def processes_with(marker: str) -> list[int]:
    """PIDs of live processes that inherited ``MARKER=marker`` (the run, Ray's daemons and workers, vLLM)."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_until_gone(marker: str, seconds: float) -> list[int]:
    deadline = time.time() + seconds
    while (alive := processes_with(marker)) and time.time() < deadline:
        time.sleep(0.5)
    return alive


def end_by_pid(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


SEQ, BATCH = 32, 4


def mix_yaml(root: Path, tiny: Path, rephrased: Path, name: str, synthetic: dict, total_tokens: int) -> Path:
    """A mix of the tiny corpora (domain 0.3, general the rest) and the rephrase output as ``synthetic``."""
    corpora = tiny / "corpora"
    path = root / f"{name}.yaml"
    path.write_text(json.dumps({
        "kind": "mix", "name": name, "output_dir": str(root / "mix"), "tokenizer": str(tiny / "tok"),
        "total_tokens": total_tokens, "seq_len": SEQ, "global_batch_size": BATCH,
        "sources": [
            {"name": "domain", "role": "domain", "paths": [str(corpora / "domain" / "train.parquet")],
             "heldout_paths": [str(corpora / "domain" / "heldout.parquet")], "fraction": 0.3},
            {"name": "synthetic", "role": "synthetic", "paths": [str(rephrased)], **synthetic},
            {"name": "general", "role": "general", "paths": [str(corpora / "general" / "train.parquet")]},
        ],
        "build": {"workers": 1},
    }))
    return path


def spt_train_env(*args: str, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    """``spt ARGS`` with the train environment's console script, as a user runs it."""
    return subprocess.run([str(Path(sys.executable).parent / "spt"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def spt_here(*args: str) -> subprocess.CompletedProcess:
    """``spt ARGS`` in this (train environment) process, saving an interpreter start; returns code and output."""
    from cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def accepted_rows(out: Path, names: list[str]) -> list[dict]:
    rows = [row for name in names for row in pq.read_table(out / name).to_pylist()]
    return [r for r in rows if r["error"] is None and r["rejected"] is None and r["text"].strip()]


def mix_the_killed_output(root: Path, tiny: Path, out: Path) -> dict:
    """`spt mix build` over the output as the kill left it: refused as incomplete, then built with
    allow_incomplete (committed shards only)."""
    refused = spt_here("mix", "build", str(mix_yaml(root, tiny, out, "refused", {"fraction": 0.0}, 8192)))
    allowed = spt_here("mix", "build", str(mix_yaml(root, tiny, out, "partial", {
        "fraction": 0.0, "allow_incomplete": True}, 8192)))
    manifest = read_json(str(root / "mix" / "mixes" / "partial" / "manifest.json")) if allowed.returncode == 0 else {}
    source = next((s for s in manifest.get("sources", []) if s["name"] == "synthetic"), {})
    built = read_json(str(Path(source["source_dir"]) / "source.json")) if source else {}
    return {"refused": refused, "allowed": allowed, "source": built}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_corpora):
    root = tmp_path_factory.mktemp("rephrase-run")
    expected = write_inputs(root / "in")
    config_path = write_config(root, root / "in", root / "out")
    manifest_path = root / "out" / "manifest.json"
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER: marker}
    log = open(root / "first.log", "w")
    # Small engine batches, one at a time, so units commit one after another.
    first = subprocess.Popen(
        [str(environments.python_for("generate")), "-m", "cli.main", "rephrase", str(config_path),
         "engine.batch_size=2", "engine.concurrent_batches=1"],
        cwd=REPO, env={**env, PAUSE_HOOK: "2"}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.time() + 600
    try:
        while "test hook: paused after" not in (root / "first.log").read_text():
            if first.poll() is not None:
                pytest.fail(f"the first run ended ({first.returncode}) before the hook:\n"
                            + (root / "first.log").read_text()[-3000:])
            if time.time() > deadline:
                pytest.fail("the hook did not pause the run within 600 s")
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        log.close()
    at_kill = read_json(manifest_path)
    parts_at_kill = sorted(p.name for p in (root / "out").glob("part-*.parquet"))
    survivors = wait_until_gone(marker, 30)
    end_by_pid(survivors)
    partial = mix_the_killed_output(root, tiny_corpora, root / "out")
    listed = sorted(info["file"] for info in at_kill["units"].values() if info["file"])
    partial["accepted"] = {  # usable rows of the committed shards, and of the one the manifest does not list
        "listed": len(accepted_rows(root / "out", listed)),
        "unlisted": len(accepted_rows(root / "out", [p for p in parts_at_kill if p not in listed])),
    }
    second = subprocess.run(
        [str(Path(sys.executable).parent / "spt"), "rephrase", str(config_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    leftovers = wait_until_gone(marker, 30)
    end_by_pid(leftovers)
    assert second.returncode == 0, second.stderr[-4000:]
    plan = prepare(load_config(config_path))
    return {
        "root": root, "out": root / "out", "expected": expected, "plan": plan, "at_kill": at_kill,
        "survivors": survivors, "leftovers": leftovers, "second": second, "config": config_path, "env": env,
        "parts_at_kill": parts_at_kill, "partial": partial, "tiny": tiny_corpora,
    }


def committed_rows(out: Path) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    files = sorted(info["file"] for info in manifest["units"].values() if info["file"])
    return [row for name in files for row in pq.read_table(out / name).to_pylist()]


def test_sigkill_mid_run_then_rerun_writes_each_expected_key_exactly_once(runs):
    total = runs["plan"].header["units_total"]
    assert 0 < len(runs["at_kill"]["units"]) < total  # killed mid-run, with work committed
    # killed between the two writes of a commit: one shard on disk that the manifest does not list
    listed = {info["file"] for info in runs["at_kill"]["units"].values() if info["file"]}
    unlisted = [name for name in runs["parts_at_kill"] if name not in listed]
    assert len(listed) == 1 and len(unlisted) == 1
    assert f"does not list: {unlisted[0]}" in runs["second"].stderr  # the rerun removed it, then redid its unit
    keys = [(r["source_id"], r["chunk"], r["style"]) for r in committed_rows(runs["out"])]
    assert Counter(keys).most_common(1)[0][1] == 1
    assert set(keys) == expected_keys(runs["plan"])
    manifest = json.loads((runs["out"] / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["units"]) == total
    on_disk = sorted(p.name for p in runs["out"].glob("part-*.parquet"))
    assert on_disk == sorted(info["file"] for info in manifest["units"].values() if info["file"])
    assert [run["status"] for run in manifest["runs"]] == ["killed", "finished"]
    committed_before = set(runs["at_kill"]["units"])
    assert {u for u, info in manifest["units"].items() if info["run"] == 0} == committed_before
    assert all(info["run"] == 1 for u, info in manifest["units"].items() if u not in committed_before)


def test_the_mix_refuses_the_killed_output_and_with_allow_incomplete_reads_committed_shards_only(runs):
    partial, out = runs["partial"], runs["out"]
    listed = sorted(info["file"] for info in runs["at_kill"]["units"].values() if info["file"])
    unlisted = [name for name in runs["parts_at_kill"] if name not in listed]
    total = runs["plan"].header["units_total"]
    assert partial["refused"].returncode == 2 and partial["refused"].stdout == ""
    assert partial["refused"].stderr.splitlines() == [
        f"error: mix.sources[1].paths[0]={str(out)!r}: rephrase output is incomplete ({len(listed)} of {total} units "
        "committed); finish it with `spt rephrase`, or set allow_incomplete: true on the source to use its "
        "committed shards only"
    ]
    assert partial["allowed"].returncode == 0, partial["allowed"].stderr[-3000:]
    assert (f"  synthetic: incomplete rephrase output: {total - len(listed)} work units not committed yet "
            "(allow_incomplete: committed shards only)") in partial["allowed"].stdout.splitlines()
    inputs = [Path(item["location"]).name for item in partial["source"]["inputs"]]
    assert inputs == listed and unlisted[0] not in inputs  # the uncommitted shard is not in the mix
    # its documents are exactly the accepted rows of the committed shards, none of the unlisted shard's
    counted = partial["source"]["counts"]["documents"]
    assert partial["accepted"]["listed"] > 0 and partial["accepted"]["unlisted"] > 0
    assert counted["train"] + counted["heldout"] == partial["accepted"]["listed"]


def test_no_ray_or_vllm_process_outlives_its_run(runs):
    assert runs["survivors"] == []  # the killed run's Ray and engine died with it
    assert runs["leftovers"] == []  # the finished run shut its own Ray down


def test_rows_hold_real_smollm2_text_in_several_styles(runs):
    rows = committed_rows(runs["out"])
    assert len({r["style"] for r in rows}) >= 3
    assert {r["model"] for r in rows} == {default_model_dir().name}
    assert sum(r["error"] is not None for r in rows) <= 1
    good = [r for r in rows if r["error"] is None and r["rejected"] is None]
    assert len(good) >= len(rows) / 2  # the gate may reject some of a 135M model's replies, not most
    assert all(r["text"].strip() and 0 < r["output_tokens"] <= 48 for r in good)
    # A 135M model sometimes answers in a word or two (seen in CI-like runs); most replies are real sentences.
    assert sum(len(r["text"].split()) >= 3 for r in good) >= 0.8 * len(good)
    assert all(r["prompt_tokens"] + 48 <= 512 for r in rows)
    assert all(r["original"] and r["id"].startswith("rph-") for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["text"] == "" for r in rows if r["error"] is not None)
    assert {r["split"] for r in rows} == {"train"}


def test_the_quality_gate_judged_every_generated_row(runs):
    """The engine stage applied the gate: recomputing it here on the committed rows gives the same reasons."""
    rows = [r for r in committed_rows(runs["out"]) if r["error"] is None]
    plan = runs["plan"]
    judge = OutputGate(plan.config.quality, plan.styles)
    for row in rows:
        assert row["rejected"] in (None, *gate.REASONS)
        assert row["input_tokens"] > 0
        expected = judge.reason({**row, "input_language": judge.source_language(row["original"])})
        assert row["rejected"] == expected, row
    manifest = json.loads((runs["out"] / "manifest.json").read_text())
    rejected = [r for r in rows if r["rejected"] is not None]
    assert manifest["totals"]["rejected"] == len(rejected)
    by_style = manifest["totals"]["rejected_by"]
    assert sum(n for reasons in by_style.values() for n in reasons.values()) == len(rejected)
    assert manifest["totals"]["accepted_tokens"] == sum(
        r["output_tokens"] for r in rows if r["rejected"] is None)


def test_dtype_auto_is_chosen_from_the_cpu_flags_and_reported(runs):
    manifest = json.loads((runs["out"] / "manifest.json").read_text())
    wanted = resolve_dtype("auto", "cpu")
    assert manifest["runs"][-1]["engine"] == {"dtype": wanted, "cpu": describe_cpu()}
    assert f"engine: dtype {wanted}; CPU flags: {describe_cpu()}" in runs["second"].stdout
    assert f"({wanted}; CPU: {describe_cpu()})" in runs["second"].stderr
    # run from the train environment, the stage re-ran itself under the generate interpreter
    assert "running in the generate environment" in runs["second"].stderr


def test_bad_rows_and_long_documents_are_counted_in_manifest_and_summary(runs):
    manifest = json.loads((runs["out"] / "manifest.json").read_text())
    totals = manifest["totals"]
    assert totals["skipped"] == runs["expected"]["skipped_committed"]
    assert (totals["documents"], totals["kept"], totals["split"], totals["truncated"]) == (18, 7, 1, 1)
    rows = committed_rows(runs["out"])
    assert totals["rows"] == len(rows)
    assert totals["output_tokens"] == sum(r["output_tokens"] for r in rows)
    for style, counts in totals["per_style"].items():
        mine = [r for r in rows if r["style"] == style]
        assert counts["chunks"] == len(mine) and counts["documents"] == len({r["source_id"] for r in mine})
    run = manifest["runs"][-1]
    assert run["tokens_per_second"] > 0 and run["generation_seconds"] > 0
    assert all(s["tokens_per_second"] >= 0 for s in run["per_style"].values())
    stdout = runs["second"].stdout
    assert "this run: " in stdout and "tokens/s" in stdout
    all_runs = stdout[stdout.index("output folder, all runs: "):].splitlines()
    assert all_runs[0].startswith(f"output folder, all runs: 7/7 units committed, 18 documents read, 7 kept, "
                                  f"9 chunks, {len(rows)} rows, ")
    assert all_runs[1] == "  skipped documents: duplicate id: 2, empty or whitespace: 3, filter: min_chars: 1, " \
                          "invalid JSON: 2, invalid UTF-8: 2, missing text: 1"
    assert all_runs[2] == "  long documents: 1 split, 1 truncated; prompts truncated to fit: 0"


def test_rerun_of_a_complete_output_does_nothing_and_starts_no_engine(runs):
    before = {p.name: p.stat().st_mtime_ns for p in runs["out"].glob("part-*.parquet")}
    proc = subprocess.run(
        [str(environments.python_for("generate")), "-m", "cli.main", "rephrase", str(runs["config"])],
        cwd=REPO, env=runs["env"], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "this run: 0 units" in proc.stdout and "starting a local Ray" not in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in runs["out"].glob("part-*.parquet")} == before


def test_rephrased_text_is_trained_on_at_its_planned_share(runs, tmp_path):
    """rephrase -> mix with a synthetic share -> `spt train`: one epoch of the mix (the run's whole duration)
    holds exactly the planned synthetic tokens, read back from the built MDS shards."""
    from streaming import StreamingDataset

    from pipelines.mix.streams import created, read_spec, train_dataset

    total = 40 * BATCH * SEQ
    config = mix_yaml(tmp_path, runs["tiny"], runs["out"], "e2e", {"fraction": 0.1}, total)
    built = spt_here("mix", "build", str(config))
    assert built.returncode == 0, built.stderr[-3000:]
    spec_path = tmp_path / "mix" / "mixes" / "e2e" / "streams.json"
    train_config = tmp_path / "train.yaml"
    train_config.write_text(json.dumps({
        "kind": "train", "mix": str(spec_path), "run_dir": str(tmp_path / "run"), "model": {"preset": "tiny"},
        "global_batch_size": BATCH, "eval_every_tokens": total, "eval_samples": 8, "optimizer": {"lr": 0.01},
        "seed": 3}))
    trained = spt_train_env("train", str(train_config), env={**runs["env"], "SPT_PROGRESS": "0"})
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    manifest = json.loads((tmp_path / "mix" / "mixes" / "e2e" / "manifest.json").read_text())
    planned = {s["name"]: s["realized_tokens"] for s in manifest["sources"]}
    assert planned["synthetic"] == round(0.1 * total / SEQ) * SEQ > 0
    assert summary["tokens"] == total == sum(planned.values())  # the run read exactly one epoch of the mix
    owner = {}
    for source in manifest["sources"]:  # every training sample of every source, by its bytes
        folder = str(Path(source["source_dir"]) / "train")
        dataset = created(lambda: StreamingDataset(local=folder, shuffle=False, batch_size=1))
        owner.update({sample["tokens"].tobytes(): source["name"] for sample in dataset})
        del dataset
    epoch = train_dataset(read_spec(spec_path), shuffle_seed=3, batch_size=BATCH, num_canonical_nodes=1)
    realized = Counter(owner[sample["tokens"].tobytes()] for sample in epoch)
    assert {name: n * SEQ for name, n in realized.items()} == planned
