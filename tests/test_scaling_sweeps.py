"""Sweep output folders as fit inputs (`sweeps.tables`), `spt fit --data FOLDER`, and the delta* lines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling_laws import FitResult, synthetic
from scaling_laws.decision import report
from scaling_laws.decision.choice import FractionChoice
from scaling_laws.fitting.evaluations import design_caveats
from spt.errors import InputError
from sweeps import tables
from tests.conftest import tree


@pytest.fixture
def sweep_dir(tmp_path):
    """3 fractions x 8 evaluations of synthetic runs, as a sweep writes them."""
    folder = tmp_path / "sweep"
    tables.write_sweep(folder, *synthetic.spt_sweep(fractions=(0.0, 0.2, 0.5), evaluations=8, seed=1))
    return folder


def edit(folder, name: str, change) -> None:
    """Rewrites ``folder/name`` (CSV) after ``change(frame)``, keeping every cell as text."""
    path = folder / name
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = change(frame)
    frame.to_csv(path, index=False)


def spt_fit(fractions=(0.0, 0.5), tokens=(1e8, 1e9), bootstrap: int = 100) -> FitResult:
    return FitResult(law="spt", params=dict(synthetic.SPT), objective=0.0, n_points=24,
                     settings={"bootstrap": bootstrap, "converged": True},
                     data_ranges={"tokens": list(tokens), "fraction": list(fractions)})


def test_synthetic_sweep_is_written_in_the_sweep_format(sweep_dir):
    assert tree(sweep_dir) == ["curves.csv", "curves.parquet", "results.csv", "results.parquet"]
    results, curves = pd.read_csv(sweep_dir / "results.csv"), pd.read_csv(sweep_dir / "curves.csv")
    assert tuple(results.columns) == tables.RESULTS_COLUMNS and tuple(curves.columns) == tables.CURVES_COLUMNS
    pd.testing.assert_frame_equal(pd.read_parquet(sweep_dir / "curves.parquet"), curves)
    assert list(results["status"]) == ["ok"] * 3 and len(curves) == 24
    assert sorted(curves["tokens"].unique()) == [k * 1.25e8 for k in range(1, 9)]


def test_load_sweep_fits_the_evaluations_of_ok_runs_and_says_what_it_left_out(sweep_dir):
    # As the sweep runner writes a cell that crashed before its model was built: no model size, no losses.
    failed = {"run_id": "d0.8-s0", "domain_fraction": "0.8", "preset": "micro", "params": "",
              "tokens": "1000000000.0", "seed": "0", "domain_loss": "nan", "general_loss": "nan",
              "finetune_domain_loss": "nan", "wall_seconds": "3.0", "status": "failed", "error": "diverged",
              "log_path": "runs/d0.8-s0/train.log"}
    edit(sweep_dir, "results.csv", lambda f: pd.concat([f, pd.DataFrame([failed])], ignore_index=True))
    # The failed run wrote one evaluation (NaN loss) before it died; the others were evaluated at 0 tokens too.
    extra = [{**{k: failed[k] for k in tables.CURVES_COLUMNS if k in failed}, "tokens": "125000000.0",
               "params": "700000"}]
    extra += [{"run_id": r, "domain_fraction": d, "preset": "micro", "params": "700000.0", "seed": "0",
               "tokens": "0.0", "domain_loss": "10.4", "general_loss": "10.4"} for r, d in (("d0-s0", "0.0"),
                                                                                       ("d0.2-s0", "0.2"))]
    edit(sweep_dir, "curves.csv", lambda f: pd.concat([pd.DataFrame(extra), f], ignore_index=True))

    sweep = tables.load_sweep(sweep_dir)
    assert sweep.notes == [
        "1 failed run left out: d0.8-s0",
        "curves.csv: evaluations of 1 run without status ok in results.csv left out: d0.8-s0",
        "curves.csv: 2 evaluations at 0 tokens left out",
    ]
    table = tables.fit_table(sweep)
    assert len(table) == 24 and "fraction" in table and "domain_fraction" not in table
    assert sorted(table["fraction"].astype(float).unique()) == [0.0, 0.2, 0.5]

    summary = tables.run_summary(sweep)
    assert list(summary["domain_fraction"]) == [0.0, 0.2, 0.5, 0.8]
    assert list(summary["runs"]) == [1, 1, 1, 1] and list(summary["failed"]) == [0, 0, 0, 1]
    assert list(summary["evaluations"]) == [8, 8, 8, 0] and np.isnan(summary["domain_loss"].iloc[3])


@pytest.mark.parametrize("change, expected", [
    (lambda folder: (folder / "curves.csv").unlink(),
     ["{d}: no curves.csv (a sweep output folder has results.csv and curves.csv)"]),
    (lambda folder: edit(folder, "results.csv", lambda f: f.drop(columns=["status", "seed"])),
     ["{d}/results.csv: missing columns 'seed', 'status' (a sweep writes run_id, domain_fraction, preset, params, "
      "tokens, seed, domain_loss, general_loss, finetune_domain_loss, wall_seconds, status, error, log_path)"]),
    (lambda folder: edit(folder, "results.csv", lambda f: f.assign(status=["ok", "done", "failed"])),
     ["{d}/results.csv: column 'status', row 2: 'done' (expected ok or failed)"]),
    (lambda folder: edit(folder, "curves.csv", lambda f: f.assign(
        tokens=f["tokens"].where(f.index != 3, "-5"), domain_loss=f["domain_loss"].where(f.index != 9, "x"),
        domain_fraction=f["domain_fraction"].where(f.index != 0, ""))),
     ["{d}/curves.csv: column 'domain_fraction', row 1: empty",
      "{d}/curves.csv: column 'tokens', row 4: -5 is negative",
      "{d}/curves.csv: column 'domain_loss', row 10: not a finite number ('x')"]),
    (lambda folder: edit(folder, "results.csv", lambda f: f.assign(status="failed")),
     ["{d}/results.csv: no run has status ok (3 failed)"]),
    (lambda folder: edit(folder, "results.csv", lambda f: f.iloc[:0]), ["{d}/results.csv: no runs"]),
])
def test_bad_sweep_folders_are_refused_with_one_line_per_problem(sweep_dir, run_cli, change, expected):
    change(sweep_dir)
    expected = [line.format(d=sweep_dir) for line in expected]
    with pytest.raises(InputError) as caught:
        tables.load_sweep(sweep_dir)
    assert caught.value.problems == expected
    before = tree(sweep_dir)
    code, stdout, err = run_cli("fit", "--law", "spt", "--data", sweep_dir, "--out", sweep_dir / "fit.json")
    assert (code, stdout, err) == (2, "", "".join(f"error: {line}\n" for line in expected))
    assert tree(sweep_dir) == before


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(InputError, match=r"/nowhere: no such folder \(expected a sweep output folder with "
                                         r"results.csv and curves.csv\)$"):
        tables.load_sweep(tmp_path / "nowhere")


def test_fit_reads_a_sweep_folder_like_its_curves_csv_with_the_fraction_column(sweep_dir, tmp_path, run_cli):
    from_folder, from_csv = tmp_path / "folder.json", tmp_path / "csv.json"
    code, stdout, err = run_cli("fit", "--law", "spt", "--data", sweep_dir, "--starts", "4", "--out", from_folder)
    assert code == 0, err
    assert stdout.startswith("law spt: 24 points, 8 starts")  # 4 starts for each half
    assert "fitted: the train loss (domain_train_loss) and the gap (held-out minus train) separately" in stdout
    code, _, err = run_cli("fit", "--law", "spt", "--data", sweep_dir / "curves.csv", "--starts", "4",
                           "--fraction-column", "domain_fraction", "--loss-column", "domain_loss", "--out", from_csv)
    assert code == 0, err
    folder_fit, csv_fit = json.loads(from_folder.read_text()), json.loads(from_csv.read_text())
    assert folder_fit["settings"]["loss_column"] == "domain_loss" and folder_fit["settings"]["fitted"] == "train+gap"
    assert folder_fit["params"] == csv_fit["params"]
    assert folder_fit["data_ranges"] == {"tokens": [1.25e8, 1e9], "fraction": [0.0, 0.5]}
    assert len(folder_fit["bootstrap_samples"]) == 200  # the default for spt fits
    # Only the folder has results.csv, with the fine-tuned runs that a post-finetune decision needs.
    assert len(folder_fit["decision"]["finetune"]) == 3 and csv_fit["decision"]["finetune"] == []

    code, stdout, err = run_cli("plot", "--fit", from_folder, "--data", sweep_dir, "--out-dir", tmp_path / "figs")
    assert code == 0, err
    # the figures (each beside its hidden ownership sidecar, .<name>.spt-owner.json)
    assert sorted({p.split(".")[0] for p in tree(tmp_path / "figs") if not p.startswith(".")}) == [
        "compute_multiplier", "loss_by_epochs", "loss_curves", "optimal_fraction", "residuals"]


def test_fraction_column_errors(sweep_dir, tmp_path):
    with pytest.raises(InputError, match=r"curves.csv: no column 'delta' \(given as --fraction-column\)$"):
        tables.read_fit_data(sweep_dir / "curves.csv", "delta")
    clash = tmp_path / "clash.csv"
    pd.read_csv(sweep_dir / "curves.csv").assign(fraction=0.1).to_csv(clash, index=False)
    with pytest.raises(InputError, match=r"clash.csv: has a 'fraction' column already; --fraction-column "
                                         r"domain_fraction would replace it$"):
        tables.read_fit_data(clash, "domain_fraction")
    with pytest.raises(InputError, match=r"sweep: a sweep folder is fitted on domain_fraction; drop "
                                         r"--fraction-column seed or pass a CSV$"):
        tables.read_fit_data(sweep_dir, "seed")


def test_delta_star_lines_are_machine_readable():
    bare = FractionChoice(tokens=1e9, fraction=0.123456789, loss=3.5, fraction_range=(0.0, 0.5))
    assert bare.line() == ("delta_star tokens=1e+09 value=0.123457 low=nan high=nan basis=pre-finetune loss=3.5 "
                           "extrapolated=unknown budget_ratio=nan multiplier=nan multiplier_low=nan "
                           "multiplier_high=nan multiplier_at=nan")
    measured = {"fraction": 0.1, "value": 4.0, "reached": "yes", "interval": [2.0, 5.0]}
    banded = FractionChoice(tokens=2e10, fraction=0.1, loss=3.0, fraction_range=(0.0, 0.5), basis="post-finetune",
                            fraction_interval=(0.05, 0.2), budget_ratio=4.0, measured_multiplier=measured,
                            model_multiplier=9.0, model_multiplier_interval=(3.0, float("inf")))
    assert banded.line(domain_tokens=5e7) == (
        "delta_star tokens=2e+10 value=0.1 low=0.05 high=0.2 basis=post-finetune loss=3 extrapolated=yes "
        "budget_ratio=4 multiplier=4 multiplier_low=2 multiplier_high=5 multiplier_at=0.1 epochs=40")
    never = FractionChoice(tokens=1e9, fraction=0.3, loss=3.0, fraction_range=(0.0, 0.5), budget_ratio=1.0,
                           measured_multiplier={"fraction": 0.3, "value": None, "reached": "no", "interval": None})
    assert " extrapolated=no budget_ratio=1 multiplier=not_reached multiplier_low=nan" in never.line()
    early = FractionChoice(tokens=1e9, fraction=0.3, loss=3.0, fraction_range=(0.0, 0.5), measured_multiplier={
        "fraction": 0.3, "value": 8.0, "reached": "before the first evaluation", "interval": [6.0, 9.0]})
    assert early.line().endswith("multiplier=8 multiplier_low=6 multiplier_high=9 multiplier_at=0.3 "
                                 "multiplier_bound=lower")
    table = report.choices_table([bare, banded], domain_tokens=5e7)
    assert list(table.columns) == ["tokens", "delta_star", "delta_low", "delta_high", "basis", "domain_loss",
                                   "budget_ratio", "extrapolated", "measured_multiplier", "multiplier_low",
                                   "multiplier_high", "multiplier_at", "model_multiplier_extrapolated",
                                   "domain_epochs"]
    assert table["domain_epochs"].tolist() == pytest.approx([1e9 * 0.123456789 / 5e7, 40.0])


def test_optimal_fraction_prints_lines_and_epochs(tmp_path, run_cli):
    path = tmp_path / "fit.json"
    spt_fit().save(path)
    code, stdout, err = run_cli("optimal-fraction", "--fit", path, "--tokens", "1e9", "4e9", "--lines",
                                "--domain-tokens", "1e8")
    assert code == 0, err
    lines = stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("delta_star tokens=") for line in lines)
    choice = report.choose_fractions(FitResult.load(path), [1e9])[0]
    assert lines[0] == choice.line(1e8) and f"epochs={1e9 * choice.fraction / 1e8:.6g}" in lines[0]
    code, stdout, _ = run_cli("optimal-fraction", "--fit", path, "--tokens", "1e9", "--domain-tokens", "1e8")
    assert code == 0 and "epochs" in stdout.splitlines()[1]
    code, stdout, err = run_cli("optimal-fraction", "--fit", path, "--tokens", "1e9", "--domain-tokens", "0")
    assert (code, stdout, err) == (2, "", "error: --domain-tokens 0: must be a positive number of tokens\n")
    with pytest.raises(SystemExit):
        run_cli("optimal-fraction", "--fit", path, "--tokens", "1e9", "--lines", "--json")


def test_budgets_and_model_size():
    fit = spt_fit(tokens=(1e8, 2e9))
    assert report.resolve_budgets(fit) == [2e9, 4e9, 2e10]
    assert report.resolve_budgets(fit, 5e9) == [5e9]
    with pytest.raises(InputError, match=r"budgets=\[1000000000.0, -1.0\]: give one or more positive numbers"):
        report.resolve_budgets(fit, [1e9, -1])
    assert report.budget_grid(fit, [1e10], points=3).tolist() == pytest.approx([1e8, 1e9, 1e10])
    assert report.model_size(fit, 5e8) is None
    sized = FitResult(law="spt-n", params=dict(synthetic.SPT_N), objective=0.0, n_points=0,
                      data_ranges={"params": [3e7, 3e8], "tokens": [1e8, 1e10], "fraction": [0.0, 0.4]})
    assert report.model_size(sized) == 3e8 and report.model_size(sized, 1e8) == 1e8


def test_caveats_name_the_limits_that_apply(sweep_dir):
    sweep = tables.load_sweep(sweep_dir)
    fit = spt_fit(fractions=(0.05, 0.5), tokens=(1.25e8, 1e9), bootstrap=0)
    fit.caveats = ["a caveat recorded when fitting"]
    edge = FractionChoice(tokens=4e9, fraction=0.5, loss=3.0, fraction_range=(0.05, 0.5), budget_ratio=4.0)
    # What the sweep's design leaves open is found when its evaluations are fitted (fit_evaluations).
    assert design_caveats(tables.fit_table(sweep), sweep.results, 12) == [
        "only 3 domain fractions were swept; the law has 12 parameters, so its shape between and beyond them is "
        "weakly determined (sweep more fractions)",
        "each fraction was trained to a single budget, so the token dependence comes from evaluations during one "
        "run",
    ]
    assert report.caveats(fit, [edge]) == [
        "a caveat recorded when fitting",
        "EXTRAPOLATION: budgets 4e+09 are more than 2x the largest trained budget 1e+09 (up to 4x): delta* there "
        "rests on the law's form alone",
        "at T=4e+09, delta* sits at the edge 0.5 of the fractions searched [0.05, 0.5]: the best delta may lie "
        "beyond it",
        "delta* is chosen on the pretraining loss (no fine-tuned runs): the paper's delta* is the one after "
        "fine-tuning, which favours a smaller delta when fine-tuning gains more from it",
        "no bootstrap: there is no uncertainty band (use 200 or more refits)",
    ]
    inside = FractionChoice(tokens=5e8, fraction=0.2, loss=3.0, fraction_range=(0.0, 0.5), basis="post-finetune",
                            budget_ratio=0.5)
    assert report.caveats(spt_fit(tokens=(1.25e8, 1e9), bootstrap=200), [inside]) == []
