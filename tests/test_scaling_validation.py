"""The best-fraction verdict of a validation: the measured best, a tie within the runs' seed noise, or a miss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling_laws import synthetic
from scaling_laws.decision.validation import (
    best_fraction_verdict, format_validation, seed_noise, validate, verdict_text,
)
from scaling_laws.fitting.points import select_points


def final_evaluations(losses: dict[float, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"fraction": fraction, "domain_loss": loss}
                         for fraction, values in losses.items() for loss in values])


def test_seed_noise_pools_the_repeated_fractions_and_ignores_single_runs():
    last = final_evaluations({0.1: [5.0, 5.2], 0.2: [6.0, 6.1, 6.2], 0.3: [7.0]})
    # Squared deviations 0.02 + 0.02 over 1 + 2 degrees of freedom; the single run at 0.3 adds neither.
    assert seed_noise(last) == pytest.approx(np.sqrt(0.04 / 3))
    assert seed_noise(final_evaluations({0.1: [5.0], 0.2: [6.0]})) is None


@pytest.mark.parametrize(("predicted", "verdict", "regret"), [(0.03, "same", 0.0), (0.1, "tied", 0.034),
                                                               (0.01, "different", 0.075)])
def test_a_predicted_best_is_right_when_the_runs_cannot_put_it_behind_the_measured_best(predicted, verdict, regret):
    # The reproduction's final budget: two seeds a fraction, one run's loss varying by 0.056 nats from seed to seed.
    measured = pd.Series({0.0: 6.099, 0.01: 5.907, 0.03: 5.832, 0.1: 5.866, 0.2: 6.038})
    runs = pd.Series(2, index=measured.index)
    result = best_fraction_verdict(measured, runs, predicted, noise_sd=0.056)
    assert result["measured_best"] == 0.03 and result["verdict"] == verdict
    assert result["right"] is (verdict != "different")
    assert result["regret"] == pytest.approx(regret, abs=1e-9)
    assert result["tie_band"] == pytest.approx(0.056)  # the standard deviation of a difference of two 2-run means
    assert result["tied_with"] == [0.1]  # 0.01 is 0.075 behind: the runs separate it


def test_without_repeated_runs_only_the_measured_best_itself_is_right():
    measured = pd.Series({0.0: 6.1, 0.03: 5.832, 0.1: 5.833})
    runs = pd.Series(1, index=measured.index)
    result = best_fraction_verdict(measured, runs, 0.1, noise_sd=None)
    assert result["verdict"] == "different" and not result["right"] and result["tie_band"] is None
    assert result["tied_with"] == []


def test_a_validation_on_a_two_seed_sweep_reports_the_seed_noise_and_its_verdict():
    law = {**synthetic.SPT_PILOT, "b_gap_s": 0.4, "b_gap_g": -0.05, "a1": 0.09, "a2": 1.0, "a3": 0.0}
    _, curves = synthetic.spt_sweep(fractions=(0.0, 0.05, 0.1, 0.2, 0.5), total_tokens=5e5, evaluations=12,
                                    seeds=(0, 1), noise=0.003, offset_sd=0.02, ar_rho=0.5, params=law, seed=3,
                                    warmup=1)
    table = select_points(curves.rename(columns={"domain_fraction": "fraction"})).table
    report = validate(table, holdout_tokens_above=2.5e5, n_starts=32, seed=0)
    final = report["final"]
    assert final["runs"] == [2] * 5
    last = table[table["tokens"] == table["tokens"].max()]
    assert final["noise_sd"] == pytest.approx(seed_noise(last)) and final["noise_sd"] > 0
    assert final["regret"] >= 0 and final["right"] is (final["verdict"] != "different")
    text = format_validation(report, max_rows=0)
    assert f"predicted {final['predicted_best']:g} ({verdict_text(final)})" in text
