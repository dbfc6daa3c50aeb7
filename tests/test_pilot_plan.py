"""The pilot design shown by `spt sweep --dry-run`: domain epochs per cell from the real mix plan, evaluations past
warmup, predicted wall time (measured or calibrated), and the warnings of a design that cannot inform the law."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import built_base_mix, tree

BATCH, SEQ = 8, 64
TOKENS = 100 * BATCH * SEQ


@pytest.fixture(scope="module")
def pilot(tiny_corpora, tmp_path_factory) -> Path:
    """A base mix (sources built), a constant-schedule train config, and a sweep folder to write configs into."""
    work = tmp_path_factory.mktemp("pilot")
    built_base_mix(tiny_corpora, work, work / "mix", TOKENS, SEQ, BATCH, "pilot")
    (work / "train.yaml").write_text(json.dumps({
        "kind": "train", "mix": "set-per-cell", "run_dir": "set-per-cell", "global_batch_size": BATCH,
        "eval_every_tokens": 10 * BATCH * SEQ, "schedule": {"kind": "constant", "warmup_fraction": 0.05}}))
    return work


def sweep_yaml(work: Path, name: str, fractions: list[float], **extra) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(json.dumps({"kind": "sweep", "name": name, "mix": str(work / "mix.yaml"),
                                "train": str(work / "train.yaml"), "grid": {"domain_fraction": fractions},
                                "output_dir": str(work / name), **extra}))
    return path


def unique_domain_tokens(work: Path) -> int:
    from pipelines.mix.plan import make_plan
    from spt.config import load_config

    plan = make_plan(load_config(work / "mix.yaml"))
    return plan.unique_samples(plan.sources[0]) * SEQ


def cell_lines(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("delta")}


def test_dry_run_shows_epochs_evaluations_and_a_calibrated_time(pilot, run_cli):
    fractions, tokens = [0.0, 0.1, 0.2, 0.4, 0.8], 3_200_000  # the largest δ passes 16 epochs of the domain set
    code, out, err = run_cli("sweep", sweep_yaml(pilot, "good", fractions), f"grid.total_tokens=[{tokens}]",
                             "--dry-run")
    assert code == 0, err
    lines = cell_lines(out)
    unique = unique_domain_tokens(pilot)
    for fraction in fractions:
        row = lines[f"delta{fraction:g}-tiny-T{tokens}-seed0"]
        # The mix plan's epochs: the cell's domain samples over the unique ones (largest-remainder samples).
        assert float(row[3]) == pytest.approx(fraction * tokens / unique, rel=0.02)
        # 6,250 batches evaluated every 10: 625 evaluations; past 5% warmup (batch 312.5): batches 320 to 6,250.
        assert (row[4], row[5]) == ("625", "594")
        assert row[6:] and row[7] == "s" and float(row[6]) > 0
    assert "from a 6-step calibration at 1 threads" in out
    assert "predicted wall time:" in out and "unknown" not in out
    assert "warning:" not in out
    assert tree(pilot / "good") == []  # a dry run writes nothing


def test_dry_run_warns_about_a_design_that_cannot_inform_the_law(pilot, run_cli):
    path = sweep_yaml(pilot, "poor", [0.1, 0.2, 0.3])
    code, out, err = run_cli("sweep", path, "max_concurrent=1", "--dry-run",
                             "--no-calibrate")
    assert code == 0, err
    warnings = [line.removeprefix("warning: ") for line in out.splitlines() if line.startswith("warning:")]
    most = 0.3 * TOKENS / unique_domain_tokens(pilot)
    assert warnings == [
        "only 3 domain fractions (0.1, 0.2, 0.3): the SPT law has 12 parameters; sweep at least 5, 0 included",
        "no cell has domain_fraction 0: the law's no-domain baseline (and the compute multiplier) would be "
        "extrapolated",
        f"no cell passes 16 domain epochs (the most is {most:.3g}): the held-out domain loss will not turn upward, "
        f"so the law's overfitting term has nothing to fit; raise the largest δ or the budget, or use a smaller "
        f"domain set",
    ]
    assert "predicted wall time: unknown" in out


def test_cosine_schedule_and_few_evaluations_are_warned(pilot, run_cli):
    from spt.config import load_config
    from sweeps.plan import design_warnings, plan_cell
    from sweeps.run import cells, load_bases

    config = load_config(sweep_yaml(pilot, "cosine", [0.0, 0.1, 0.2, 0.4, 0.8]), kind="sweep")
    mix, train, index = load_bases(config)
    cosine = train.model_copy(update={"schedule": train.schedule.model_copy(update={"kind": "cosine",
                                                                                     "warmup_fraction": 0.5})})
    planned = [plan_cell(config, cosine, cell, index) for cell in cells(config, mix, cosine)]
    assert {c.fitted_evaluations for c in planned} == {5}  # batches 60, ..., 100 of 100 (step 50 ran at 49%)
    warnings = [w for w in design_warnings(planned, cosine) if not w.startswith("no cell passes 16")]
    assert warnings == ["schedule.kind=cosine: evaluations along a cosine schedule are not the losses of shorter "
                        "runs, so the budgets read off them are not valid points; use schedule.kind=constant"]
    wsd = cosine.model_copy(update={"schedule": cosine.schedule.model_copy(update={"kind": "wsd",
                                                                                     "warmup_fraction": 0.95})})
    planned = [plan_cell(config, wsd, cell, index) for cell in cells(config, mix, wsd)]
    warnings = [w for w in design_warnings(planned, wsd) if not w.startswith("no cell passes 16")]
    assert warnings == ["schedule.kind=wsd: evaluations in the final decay (0.2 of each run) are not the losses of "
                        "shorter runs",
                        "5 cell(s) have fewer than 4 evaluations past warmup (e.g. delta0-tiny-T51200-seed0): "
                        "evaluate more often or shorten warmup"]


def test_measured_throughput_of_finished_cells_predicts_the_time(pilot, run_cli):
    out_dir = pilot / "measured"
    out_dir.mkdir()
    # Two finished cells at 2,000 and 4,000 tokens/s and a failed one: the median of the ok ones counts.
    pd.DataFrame({"run_id": ["a", "b", "c"], "preset": ["tiny"] * 3, "tokens": [TOKENS] * 3,
                  "wall_seconds": [TOKENS / 2000, TOKENS / 4000, 1.0], "status": ["ok", "ok", "failed"]}
                 ).to_csv(out_dir / "results.csv", index=False)
    code, out, err = run_cli("sweep", sweep_yaml(pilot, "measured", [0.0, 0.1, 0.2, 0.4, 0.8]), "--dry-run")
    assert code == 0, err
    assert f"tiny: 2,667 tokens/s (wall, with evaluations and start-up) measured by finished cells in " \
           f"{out_dir / 'results.csv'}" in out
    expected = TOKENS / 2000 / 2 + TOKENS / 4000 / 2  # median seconds per token x tokens
    assert {line[6] for line in cell_lines(out).values()} == {f"{expected:.0f}"}
    assert f"predicted wall time: {5 * expected / 60:.1f} min (1 cell(s) at once)" in out


def test_a_cell_over_max_epochs_is_named(pilot, tmp_path, run_cli):
    from spt.config.loader import read_yaml

    mix = read_yaml(pilot / "mix.yaml")
    mix["sources"][0]["max_epochs"] = 0.2  # δ = 0.8 reaches 0.27 epochs, δ = 0.4 only 0.13
    (tmp_path / "mix.yaml").write_text(json.dumps(mix))
    path = sweep_yaml(pilot, "capped", [0.0, 0.1, 0.2, 0.4, 0.8])
    code, out, err = run_cli("sweep", path, f"mix={tmp_path / 'mix.yaml'}", "--dry-run", "--no-calibrate")
    assert code == 0, err
    named = [line for line in out.splitlines() if line.startswith("warning: cell delta0.8")]
    assert len(named) == 1 and "exceed max_epochs=0.2" in named[0]


@pytest.mark.parametrize("max_batches,interval,expected", [(100, 10, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
                                                            (25, 10, [10, 20, 25]), (5, 10, [5])])
def test_evaluation_batches(max_batches, interval, expected):
    from sweeps.plan import evaluation_batches

    assert evaluation_batches(max_batches, interval) == expected


def test_repeat_adds_seeds_at_one_fraction(pilot, run_cli):
    path = sweep_yaml(pilot, "repeat", [0.0, 0.1, 0.2, 0.4, 0.8])
    code, out, err = run_cli("sweep", path, "grid.repeat={domain_fraction: 0.2, seed: [0, 1, 2]}", "--dry-run",
                             "--no-calibrate")
    assert code == 0, err
    assert sorted(cell_lines(out)) == sorted([f"delta{d:g}-tiny-T{TOKENS}-seed0" for d in (0, 0.1, 0.2, 0.4, 0.8)]
                                             + [f"delta0.2-tiny-T{TOKENS}-seed{s}" for s in (1, 2)])
    assert "5 domain fractions" in out


def test_cells_of_an_earlier_grid_leave_the_tables(pilot):
    from spt.config import load_config
    from spt.storage import ownership
    from sweeps.run import plan_cells, run_sweep
    from sweeps.tables import CURVES_COLUMNS, RESULTS_COLUMNS

    out = pilot / "regrid"
    # An earlier run of the sweep over three fractions: its folder and cells claimed as a run claims them.
    grid, configs, layout = plan_cells(load_config(sweep_yaml(pilot, "regrid", [0.0, 0.1, 0.3]), kind="sweep"))
    ownership.claim(layout.root, "sweep", "cells", where="sweep.output_dir")
    for cell in grid:
        ownership.claim(layout.cell(cell.run_id).root, "sweep", configs[cell.run_id].fingerprint, where="cell",
                      parts=configs[cell.run_id].parts)
    ids = {d: f"delta{d:g}-tiny-T{TOKENS}-seed0" for d in (0.0, 0.1, 0.3)}
    results = pd.DataFrame([{c: None for c in RESULTS_COLUMNS} | {"run_id": i, "domain_fraction": d, "status": "ok"}
                            for d, i in ids.items()], columns=list(RESULTS_COLUMNS))
    results.to_csv(out / "results.csv", index=False)
    pd.DataFrame([{c: None for c in CURVES_COLUMNS} | {"run_id": i, "domain_fraction": d, "tokens": 512}
                  for d, i in ids.items()], columns=list(CURVES_COLUMNS)).to_csv(out / "curves.csv", index=False)
    # The grid no longer has δ = 0.3, and its other cells are done: nothing runs, the tables drop δ = 0.3.
    config = load_config(sweep_yaml(pilot, "regrid", [0.0, 0.1]), kind="sweep")
    lines = []
    run_sweep(config, log=lines.append)
    assert lines == [f"sweep regrid: 1 cells not in the grid left out of the tables: {ids[0.3]}",
                     "sweep regrid: 2 cells done, 0 to run"]
    assert sorted(pd.read_csv(out / "results.csv").run_id) == sorted([ids[0.0], ids[0.1]])
    assert sorted(pd.read_csv(out / "curves.csv").run_id) == sorted([ids[0.0], ids[0.1]])


def test_a_dry_run_bounds_the_time_of_the_finetunes(pilot):
    from spt.config import load_config
    from sweeps.plan import CELL_OVERHEAD_SECONDS, finetune_seconds, format_plan, plan_sweep

    (pilot / "finetune.yaml").write_text(json.dumps({
        "kind": "finetune", "base_run": "set-per-cell", "run_dir": "set-per-cell", "duration_tokens": 20 * BATCH * SEQ,
        "eval_every_tokens": 5 * BATCH * SEQ, "eval_samples": 16}))
    path = sweep_yaml(pilot, "tuned", [0.0, 0.1, 0.2, 0.4, 0.8], finetune=str(pilot / "finetune.yaml"),
                      finetune_at=[0.5, 1.0])
    config = load_config(path)
    # by hand: start-up, 20 batches at 1,000 tokens/s, and 5 evaluations (4 and one before training) of three
    # 16-sample sets at 2,000 tokens/s
    finetune = load_config(pilot / "finetune.yaml", ["base_run=unused"], kind="finetune")
    assert finetune_seconds(finetune, load_config(pilot / "mix.yaml"), 1000.0, 2000.0) == pytest.approx(
        CELL_OVERHEAD_SECONDS + 20 * BATCH * SEQ / 1000 + 5 * 3 * 16 * SEQ / 2000)
    plan = plan_sweep(config)  # calibrated
    bound = [c.finetune_seconds_at_most for c in plan.cells]
    assert all(b is not None and b > 2 * CELL_OVERHEAD_SECONDS for b in bound)  # two finetunes per cell
    assert plan.finetune_seconds_at_most == pytest.approx(sum(bound))  # one cell at a time
    assert (f"predicted wall time: {plan.predicted_seconds / 60:.1f} min (1 cell(s) at once), and its finetunes at "
            f"most {sum(bound) / 60:.1f} min more (each stops early when the domain loss stalls)") in format_plan(plan)
    assert tree(pilot / "tuned") == []
