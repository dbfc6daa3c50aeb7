"""Sweeps as Ray jobs on a real local Ray head, one results table, reruns that skip finished cells."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from spt.storage import ownership
from tests.conftest import built_base_mix, tree, two_source_mix_yaml
from tests.ray_head import free_ports, ray_head

BATCH, SEQ = 8, 64


@pytest.fixture(scope="module")
def sweep_dir(tiny_corpora, tmp_path_factory) -> Path:
    """A working directory with a base mix, a base train config and a sweep over δ and two presets."""
    work = tmp_path_factory.mktemp("sweep-work")
    out = tmp_path_factory.mktemp("sweep-out")
    built_base_mix(tiny_corpora, work, out / "mix", 40 * BATCH * SEQ, SEQ, BATCH, "base")
    (work / "train.yaml").write_text(json.dumps({
        "kind": "train", "mix": "set-per-cell", "run_dir": "set-per-cell", "global_batch_size": BATCH,
        "eval_every_tokens": 10 * BATCH * SEQ, "eval_samples": 16, "optimizer": {"lr": 0.01}}))
    (work / "sweep.yaml").write_text(json.dumps({
        "kind": "sweep", "name": "t", "mix": "mix.yaml", "train": "train.yaml",
        "grid": {"domain_fraction": [0.2, 0.5], "preset": ["tiny", "huge"]},
        "output_dir": str(out / "sweep"), "max_concurrent": 2, "max_retries": 1}))
    return work


def test_sweep_job_on_a_real_ray_head(sweep_dir, spt_bin):
    results_path = None
    with ray_head() as (address, gcs_address, token_file, env):
        command = [spt_bin, "submit", "--address", address, "--token-file", str(token_file), "--follow",
                   "--working-dir", str(sweep_dir), "--", "spt", "sweep", "sweep.yaml"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        # two cells fail on purpose, so the sweep (and the job) report failure, after finishing the others
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "submitted job spt-sweep-" in proc.stdout and ": FAILED" in proc.stdout

        output_dir = json.loads((sweep_dir / "sweep.yaml").read_text())["output_dir"]
        results_path = Path(output_dir) / "results.csv"
        results = pd.read_csv(results_path).set_index("run_id")
        ok = results[results.status == "ok"]
        failed = results[results.status == "failed"]
        assert sorted(ok.index) == ["delta0.2-tiny-T20480-seed0", "delta0.5-tiny-T20480-seed0"]
        assert sorted(failed.index) == ["delta0.2-huge-T20480-seed0", "delta0.5-huge-T20480-seed0"]
        assert all("unknown preset" in error for error in failed.error)
        assert all(Path(p).exists() for p in results.log_path)
        assert ok.domain_loss.notna().all() and ok.general_loss.notna().all() and (ok.params > 0).all()
        assert set(ok.domain_fraction) == {0.2, 0.5}
        curves = pd.read_csv(Path(output_dir) / "curves.csv")
        assert sorted(curves.groupby("run_id").size().items()) == [(r, 4) for r in sorted(ok.index)]
        # The run's extra columns reach the sweep's table: the domain train loss, epochs, phase and rate.
        assert curves.domain_train_loss.notna().all() and (curves.domain_train_loss > 0).all()
        assert (curves.phase == "decay").all() and (curves.lr > 0).all()
        for run_id, run in curves.groupby("run_id"):
            cell = pd.read_csv(Path(output_dir) / "cells" / run_id / "run" / "curves.csv")
            assert list(run.domain_epochs) == pytest.approx(list(cell.domain_epochs))
            assert run.domain_epochs.is_monotonic_increasing and run.domain_epochs.iloc[0] > 0
            # One reserved CPU per cell: one torch thread.
            summary = json.loads((Path(output_dir) / "cells" / run_id / "run" / "summary.json").read_text())
            assert summary["torch_threads"] == 1
        check_tracking(Path(output_dir), results)

        # Rerun in-process against the same cluster: finished cells are skipped, only failed ones retried.
        summaries = sorted(Path(output_dir).glob("cells/*tiny*/run/summary.json"))
        stamps = [p.stat().st_mtime_ns for p in summaries]
        rerun = subprocess.run([spt_bin, "sweep", "sweep.yaml", "--address", gcs_address], env=env,
                               capture_output=True, text=True, timeout=600, cwd=sweep_dir)
        assert "2 cells done, 2 to run" in rerun.stdout + rerun.stderr
        assert [p.stat().st_mtime_ns for p in summaries] == stamps
        check_tracking(Path(output_dir), again := pd.read_csv(results_path).set_index("run_id"))  # no new runs
        pd.testing.assert_frame_equal(again.loc[ok.index, ["domain_loss", "general_loss"]],
                                      ok[["domain_loss", "general_loss"]])
        assert again.synthetic_share.isna().all()  # the grid does not vary it

        # Each cell folder remembers what it ran: after a change of the base train config, every cell is stale,
        # and the sweep names them and refuses, writing nothing.
        cells = ["delta0.2-tiny-T20480-seed0", "delta0.2-huge-T20480-seed0", "delta0.5-tiny-T20480-seed0",
                 "delta0.5-huge-T20480-seed0"]
        assert all(ownership.read_marker(f"{output_dir}/cells/{c}")["stage"] == "sweep" for c in cells)
        train = json.loads((sweep_dir / "train.yaml").read_text())
        (sweep_dir / "train.yaml").write_text(json.dumps({**train, "optimizer": {"lr": 0.02}}))
        before = {p: p.stat().st_mtime_ns for p in Path(output_dir).rglob("*")}
        refused = subprocess.run([spt_bin, "sweep", "sweep.yaml", "--address", gcs_address], env=env,
                                 capture_output=True, text=True, timeout=600, cwd=sweep_dir)
        assert (refused.returncode, refused.stderr.strip()) == (2, (
            f"error: sweep.output_dir={output_dir!r}: 4 cell(s) ran with another config or other inputs: "
            + ", ".join(f"{c} (config)" for c in cells)
            + "; rerun with --force to rerun them, or choose another output_dir"))
        assert {p: p.stat().st_mtime_ns for p in Path(output_dir).rglob("*")} == before

        # --force reruns a changed cell from scratch (the grid is now that one cell; the others leave the tables).
        first = json.loads((Path(output_dir) / "cells" / cells[0] / "run" / "summary.json").read_text())
        forced = subprocess.run([spt_bin, "sweep", "sweep.yaml", "grid.domain_fraction=[0.2]", "grid.preset=[tiny]",
                                 "--force", "--address", gcs_address], env=env, capture_output=True, text=True,
                                timeout=600, cwd=sweep_dir)
        assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
        summary = json.loads((Path(output_dir) / "cells" / cells[0] / "run" / "summary.json").read_text())
        assert (summary["start_batch"], summary["trained_batches"]) == (0, 40)  # not resumed from the old run
        assert summary["fingerprint"] != first["fingerprint"]
        results = pd.read_csv(results_path)
        assert list(results.run_id) == [cells[0]] and list(results.status) == ["ok"]
        assert results.domain_loss[0] == pytest.approx(summary["domain_loss"])
        assert results.domain_loss[0] != pytest.approx(ok.domain_loss[cells[0]], abs=1e-6)


def check_tracking(output_dir: Path, results: pd.DataFrame) -> None:
    """The sweep's MLflow store holds one parent run for the sweep and one child per cell: the cell's grid values
    as params, its training metrics, its outcome as status; the parent has the sweep's tables."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{output_dir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [(p.info.run_name, p.info.status) for p in parents] == [("t", "FINISHED")]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert sorted(children) == sorted(results.index)
    for run_id, row in results.iterrows():
        child = children[run_id]
        params = child.data.params
        assert (params["cell"], float(params["domain_fraction"]), int(params["total_tokens"]), int(params["seed"]),
                params["preset"]) == (run_id, row.domain_fraction, row.tokens, row.seed, row.preset)
        if row.status == "ok":
            assert child.info.status == "FINISHED"
            assert child.data.metrics["domain_loss"] == pytest.approx(row.domain_loss, rel=1e-6)
            assert float(params["mix.domain_fraction"]) == row.domain_fraction  # logged by the cell's train run
            assert {"curves.csv", "summary.json"} <= {a.path for a in client.list_artifacts(child.info.run_id)}
        else:
            assert child.info.status == "FAILED" and "unknown preset" in child.data.tags["spt.error"]
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id)} == {"results.csv", "curves.csv"}


def test_unreachable_address_fails_fast(tmp_path, spt_bin):
    (port,) = free_ports(1)
    start = time.time()
    proc = subprocess.run([spt_bin, "submit", "--address", f"http://127.0.0.1:{port}", "--", "spt", "jobs", "list",
                           "--address", "x"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: cannot reach the Ray cluster at http://127.0.0.1:{port} "
                                   f"(127.0.0.1:{port}: Connection refused); is it running?")
    assert time.time() - start < 30


def test_submit_refuses_a_non_spt_command(run_cli):
    code, _, err = run_cli("submit", "--address", "http://127.0.0.1:1", "--", "python", "x.py")
    assert (code, err.strip()) == (2, "error: submit: give the command after --, starting with spt "
                                      "(e.g. -- spt sweep configs/x.yaml)")


def test_bad_sweep_config_writes_nothing(tmp_path, run_cli):
    out = tmp_path / "out"
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"kind": "sweep", "name": "x", "mix": "m.yaml", "train": "t.yaml",
                                "grid": {"domain_fraction": [0.1, 1.5]}, "output_dir": str(out)}))
    code, _, err = run_cli("sweep", path)
    assert (code, err.strip()) == (2, "error: sweep.grid.domain_fraction=[0.1, 1.5]: each must be between 0 and 1, "
                                      "got [1.5]")
    assert tree(out) == []


@pytest.fixture(scope="module")
def synthetic_sweep(tiny_corpora, tmp_path_factory) -> Path:
    """A base mix whose domain source has rephrasings (a domain_synthetic source), its sources built, and a sweep
    over the rephrasings' share of δ."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    from pipelines.mix.build import build_mix
    from spt.config import load_config

    work = tmp_path_factory.mktemp("synthetic-sweep")
    domain = pq.read_table(tiny_corpora / "corpora" / "domain" / "train.parquet", columns=["id", "text"])
    # Stand-ins for `spt rephrase` rows: each names the domain document it rephrases.
    pq.write_table(pa.table({"source_id": domain["id"], "text": [t.upper() for t in domain["text"].to_pylist()]}),
                   work / "rephrased.parquet")
    mix = yaml.safe_load(two_source_mix_yaml(tiny_corpora, work / "mix", 40 * BATCH * SEQ, SEQ, BATCH, "syn", 0.4))
    mix["sources"][0]["synthetic_share"] = 0.5
    mix["sources"].insert(1, {"name": "domain_rephrased", "role": "domain_synthetic",
                              "paths": [str(work / "rephrased.parquet")]})
    (work / "mix.yaml").write_text(yaml.safe_dump(mix))
    build_mix(load_config(work / "mix.yaml"))
    (work / "train.yaml").write_text(json.dumps({"kind": "train", "mix": "set-per-cell", "run_dir": "set-per-cell",
                                                 "global_batch_size": BATCH, "eval_every_tokens": 10 * BATCH * SEQ}))
    (work / "sweep.yaml").write_text(json.dumps({
        "kind": "sweep", "name": "syn", "mix": str(work / "mix.yaml"), "train": str(work / "train.yaml"),
        "grid": {"domain_fraction": [0.4], "synthetic_share": [0.0, 0.5]}, "output_dir": str(work / "out")}))
    return work


def test_a_synthetic_share_grid_sets_each_cells_mix(synthetic_sweep, run_cli):
    from pipelines.mix.streams import read_spec
    from spt.config import load_config
    from sweeps.rows import result_row
    from sweeps.run import plan_cells, prepare
    from sweeps.tables import write_tables

    code, out, err = run_cli("sweep", synthetic_sweep / "sweep.yaml", "--dry-run", "--no-calibrate")
    assert code == 0, err
    run_ids = ["delta0.4-tiny-T20480-seed0-syn0", "delta0.4-tiny-T20480-seed0-syn0.5"]
    assert [line.split()[0] for line in out.splitlines() if line.startswith("delta")] == run_ids

    config = load_config(synthetic_sweep / "sweep.yaml")
    grid, configs, layout = plan_cells(config)
    rows: dict = {}
    prepare(configs, layout, grid, set(), rows, {})
    assert rows == {}  # every cell's mix was built
    for cell in grid:
        spec = read_spec(configs[cell.run_id].train["mix"])
        total = sum(s["choose"] for s in spec["streams"])
        share = {s["name"]: s["choose"] / total for s in spec["streams"]}
        # δ = 0.4 is the domain and its rephrasings together; the rephrasings take δ·s of it.
        assert share.get("domain_rephrased", 0.0) == pytest.approx(0.4 * cell.synthetic_share, abs=1 / total)
        assert share["domain"] == pytest.approx(0.4 * (1 - cell.synthetic_share), abs=1 / total)
        rows[cell.run_id], _ = result_row(cell, layout.cell(cell.run_id), {"status": "failed", "error": "not run",
                                                                           "wall_seconds": 0.0})
    write_tables(layout, rows, {})
    results = pd.read_csv(synthetic_sweep / "out" / "results.csv")
    assert list(results.run_id) == run_ids and list(results.synthetic_share) == [0.0, 0.5]


def test_a_cell_whose_mix_is_refused_fails_with_its_reason_and_a_log_line(synthetic_sweep, tmp_path):
    """A cell whose mix cannot be built (here: δ = 0.4 takes more of the domain set than max_epochs = 0.1 allows,
    δ = 0.01 does not) gets its failed row with the mix's error and its line in the sweep's log, and is not run."""
    import yaml

    from spt.config import load_config
    from sweeps.run import plan_cells, prepare

    mix = yaml.safe_load((synthetic_sweep / "mix.yaml").read_text())
    mix["sources"][0]["fraction"] = 0.01
    mix["sources"][0]["max_epochs"] = 0.1
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(mix))
    config = load_config(synthetic_sweep / "sweep.yaml", [f"mix={tmp_path / 'mix.yaml'}", "grid.synthetic_share=[0.0]",
                                                           "grid.domain_fraction=[0.01, 0.4]",
                                                           f"output_dir={tmp_path / 'out'}"])
    grid, configs, layout = plan_cells(config)
    rows: dict = {}
    lines: list[str] = []
    prepared = prepare(configs, layout, grid, set(), rows, {}, log=lines.append)
    refused = "delta0.4-tiny-T20480-seed0-syn0"
    assert [cell.run_id for cell, _ in prepared] == ["delta0.01-tiny-T20480-seed0-syn0"]
    assert list(rows) == [refused] and rows[refused]["status"] == "failed"
    assert "exceed max_epochs=0.1" in rows[refused]["error"]
    assert lines == [f"cell {refused}: failed before it ran ({rows[refused]['error']})"]
