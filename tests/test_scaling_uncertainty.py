"""Uncertainty a reviewer would sign (issue 23): intervals reported as the bootstrap gives them, with a caveat when
the estimate lies outside; failed refits counted; a band too wide to decide said so, with the cells to add."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaling_laws import FitResult, get_law, optimal_fraction, synthetic
from scaling_laws.decision import report
from scaling_laws.decision.narrowing import narrowing
from scaling_laws.fitting.intervals import OUTSIDE_CAUSE, basic_interval, outside, percentile_interval
from scaling_laws.fitting.refits import diverse_starts, refit
from scaling_laws.fitting.result import bootstrap_caveats
from scaling_laws.fitting.search import Problem
from scaling_laws.numerics.objective import Objective
from tests.conftest import REPO

QUICKSTART_FRACTIONS = [0.0, 0.01, 0.03, 0.1, 0.25, 0.5]


def closed_form_fit(k3_factors: np.ndarray) -> FitResult:
    """An spt fit whose delta* is k3 / (2 a1 T^0.3) (see tests/test_scaling_decisions.py), with replicates that
    scale k3 by ``k3_factors``."""
    p = {"A_train": 30.0, "b_train_s": -0.12, "b_train_g": -0.12, "b_gap_s": 0.3, "b_gap_g": 0.3, "a1": 0.003,
         "a2": 2.0, "a3": 0.0, "k0": 1.0, "k1": 0.0, "k2": 0.01, "k3": 0.3}
    law = get_law("spt")
    samples = np.tile([p[name] for name in law.names], (len(k3_factors), 1))
    samples[:, law.names.index("k3")] *= k3_factors
    return FitResult(law="spt", params=p, objective=0.0, n_points=0, samples=samples, level=0.9,
                     settings={"bootstrap": 200}, data_ranges={"tokens": [1e8, 1e10], "fraction": [0.0, 0.5]})


def test_the_percentile_interval_is_reported_as_it_is():
    assert percentile_interval([2.0, 3.0, 4.0], 0.9) == (2.0, 4.0)
    assert percentile_interval([2.0, np.inf, np.nan], 0.9) == (2.0, np.inf)
    assert percentile_interval([np.nan], 0.9) is None
    assert outside(1.0, (2.0, 4.0)) and not outside(3.0, (2.0, 4.0)) and not outside(1.0, None)


def test_the_basic_interval_reflects_the_replicates_about_the_estimate_and_stays_in_bounds():
    draws = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile_interval(draws, 0.5) == (2.0, 4.0)
    assert basic_interval(3.0, draws, 0.5) == (2.0, 4.0)  # replicates centred on the estimate: the same
    assert basic_interval(2.0, draws, 0.5) == (0.0, 2.0)  # replicates that land high: the interval goes low
    assert basic_interval(2.0, draws, 0.5, bounds=(0.5, 1.5)) == (0.5, 1.5)
    assert basic_interval(5.0, draws, 0.5, bounds=(0.0, 6.0)) == (6.0, 6.0)
    assert basic_interval(5.0, [np.nan], 0.9) is None


def test_a_delta_star_outside_its_interval_is_flagged_not_hidden():
    """Replicates all on one side of the estimate (a biased bootstrap): the interval, corrected for that bias,
    lies on the other side and leaves delta* out."""
    fit = closed_form_fit(np.linspace(1.1, 1.5, 30))  # every replicate wants more domain data
    choice = optimal_fraction(fit, 1e9)
    low, high = choice.fraction_interval
    assert choice.fraction == pytest.approx(0.3 / (0.006 * 1e9**0.3), rel=1e-6)
    assert low < high < choice.fraction
    line = (f"at T=1e+09, delta* 0.09976 lies outside its 90% interval [{low:.4g}, {high:.4g}] and the model "
            f"multiplier {choice.model_multiplier:.3g}x lies outside its 90% interval "
            f"[{choice.model_multiplier_interval[0]:.3g}x, {choice.model_multiplier_interval[1]:.3g}x]: "
            f"{OUTSIDE_CAUSE}")
    # The replicates' central interval is [0.111, 0.1485] (1.114x and 1.486x delta*, on the 0.0005 grid).
    assert (low, high) == pytest.approx((2 * choice.fraction - 0.1485, 2 * choice.fraction - 0.111), abs=1e-12)
    assert line in report.caveats(fit, [choice])


def test_replicates_around_delta_star_give_no_such_caveat():
    fit = closed_form_fit(np.exp(np.random.default_rng(0).normal(0.0, 0.1, 200)))
    choice = optimal_fraction(fit, 1e9)
    assert not outside(choice.fraction, choice.fraction_interval)
    assert not [line for line in report.caveats(fit, [choice]) if OUTSIDE_CAUSE in line]


def test_the_fit_json_says_which_parameters_lie_outside_and_how_many_refits_failed(tmp_path):
    fit = closed_form_fit(np.linspace(1.1, 1.5, 30))
    fit.settings["bootstrap_refits"] = {"replicates": 30, "refits": 60, "failed": 4, "unconverged": 7,
                                        "starts": 6, "from_other_starts": 0}
    lines = bootstrap_caveats(fit)
    assert lines == [
        "4 of 30 bootstrap refits failed (no finite fit from any start) and are left out of the intervals: more "
        "than 10%, so the band describes only the replicates the law could fit and is likely too narrow",
        "7 of 60 bootstrap refits stopped at the iteration limit before converging (kept in the intervals): more "
        "than 10%, so the band carries the optimizer's error besides the data's",
        f"fitted values outside their own 90% bootstrap intervals: k3 0.3 [0.3341, 0.4459]: {OUTSIDE_CAUSE}"]
    fit.caveats += lines
    fit.save(tmp_path / "fit.json")
    saved = json.loads((tmp_path / "fit.json").read_text())
    assert saved["caveats"] == lines and saved["settings"]["bootstrap_refits"]["failed"] == 4
    fit.settings["bootstrap_refits"].update(failed=3, unconverged=6)  # at most 10%: no caveat
    assert bootstrap_caveats(fit) == lines[2:]


def test_refits_that_cannot_be_fitted_are_counted():
    """Replicates whose data give no finite objective (a non-positive loss in log space) fail, and are counted."""
    law = get_law("chinchilla")
    table = synthetic.chinchilla_table(n=40, noise=0.005, seed=1)
    inputs = {c: table[c].to_numpy(float) for c in law.inputs}
    observed = table["loss"].to_numpy(float)
    problem = Problem(law, inputs, observed, Objective(residuals="log"))
    targets = np.tile(observed, (6, 1))
    targets[[1, 4], 0] = -1.0
    seeds = law.to_internal(synthetic.CHINCHILLA)[None, :]
    outcome = refit(problem.with_targets(targets), seeds, 6)
    assert outcome.failed == 2 and np.isnan(outcome.thetas[[1, 4]]).all()
    assert np.isfinite(outcome.thetas[[0, 2, 3, 5]]).all() and outcome.starts == 1


def test_diverse_starts_are_far_from_the_minima_and_from_each_other():
    starts = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [0.5, 0.5], [0.0, 1.0]])
    assert diverse_starts(starts, starts[:1], 2).tolist() == [2, 4]
    assert diverse_starts(starts, starts[:1], 0).tolist() == []


def test_a_sweep_fit_records_its_refits(tmp_path):
    _, curves = synthetic.pilot_sweep(seed=2, evaluations=10)
    from scaling_laws import fit_spt
    result = fit_spt(curves.rename(columns={"domain_fraction": "fraction"}), form="spt-regularized", n_starts=16,
                     bootstrap_replicates=10, seed=2)
    refits = result.settings["bootstrap_refits"]
    assert refits["replicates"] == 10 and refits["refits"] == 20 and refits["train"]["starts"] == 6
    assert refits["failed"] == int((~np.isfinite(result.samples).all(axis=1)).sum())
    assert "failed," in report.format_fit(result) and "widened" not in report.format_fit(result)


def wide_fit() -> FitResult:
    """A pilot-like fit whose delta* band at 4e5 spans most of [0, 0.5] (the gap amplitude barely determined)."""
    law = get_law("spt-regularized")
    p = {**synthetic.SPT_PILOT, "a1": 4 * synthetic.SPT_PILOT["a1"]}  # delta* 0.33 at 4e5, inside the range
    samples = np.tile([p[name] for name in law.names], (200, 1))
    samples[:, law.names.index("a1")] *= np.exp(np.random.default_rng(0).normal(0.0, 2.0, 200))
    return FitResult(law="spt-regularized", params=p, objective=0.0, n_points=0, samples=samples,
                     settings={"bootstrap": 200}, data_ranges={"tokens": [2.5e4, 4e5], "fraction": [0.0, 0.5]},
                     decision={"fractions": QUICKSTART_FRACTIONS,
                               "curves": [{"run_id": f"delta{f:g}-tiny-T400000-seed0", "fraction": f}
                                          for f in QUICKSTART_FRACTIONS]})


def test_an_undecided_delta_star_is_said_with_the_cells_that_would_narrow_it():
    fit = wide_fit()
    choice = optimal_fraction(fit, 4e5)
    assert choice.fraction == pytest.approx(0.3258, abs=1e-4)
    assert choice.fraction_interval == pytest.approx((0.1516, 0.5), abs=1e-4)
    expected = ("at T=4e+05, delta*'s 95% interval [0.152, 0.5] spans 70% of the fractions searched [0, 0.5]: this "
                "pilot cannot decide delta* at this budget; the cheapest cells to narrow it: seeds 1, 2 at delta=0.25 "
                "(the swept fraction nearest delta*) and delta=0.38 (inside the widest gap of the grid in the band, "
                "0.25 to 0.5): run spt sweep CONFIG 'grid.domain_fraction=[0, 0.01, 0.03, 0.1, 0.25, 0.38, 0.5]' "
                "'grid.repeat={domain_fraction: 0.25, seed: [1, 2]}' (add --dry-run to see the plan; the repeat "
                "replaces any grid.repeat of CONFIG, and done cells are skipped)")
    assert expected in report.caveats(fit, [choice])
    narrow = closed_form_fit(np.exp(np.random.default_rng(0).normal(0.0, 0.1, 200)))
    assert not [line for line in report.caveats(narrow, [optimal_fraction(narrow, 1e9)]) if "cannot decide" in line]


def test_the_suggested_cells_plan_on_the_quickstart_sweep(run_cli, monkeypatch):
    fit = wide_fit()
    overrides = narrowing(fit, optimal_fraction(fit, 4e5)).overrides()
    monkeypatch.chdir(REPO)
    code, out, err = run_cli("sweep", "configs/sweeps/quickstart.yaml", *overrides, "--dry-run", "--no-calibrate")
    assert code == 0, err
    planned = [line.split()[0] for line in out.splitlines() if line.startswith("delta")]
    assert planned == [f"delta{f:g}-tiny-T400000-seed0" for f in (0.0, 0.01, 0.03, 0.1, 0.25, 0.38, 0.5)] + [
        "delta0.25-tiny-T400000-seed1", "delta0.25-tiny-T400000-seed2"]


def test_the_cli_prints_the_caveat_of_a_delta_star_outside_its_interval(tmp_path, run_cli):
    fit = closed_form_fit(np.linspace(1.1, 1.5, 30))
    fit.save(tmp_path / "fit.json")
    code, out, err = run_cli("optimal-fraction", "--fit", tmp_path / "fit.json", "--tokens", "1e9")
    assert code == 0, err
    assert "caveat: at T=1e+09, delta* 0.09976 lies outside its 90% interval [0.05103, 0.08853]" in out
