"""The paper's law, fitted on small fractions and early budgets, forecasts where a larger fraction overfits.

Data are drawn from a law of the paper's form with steep parameters of our own (:data:`synthetic.SPT_STEEP`),
chosen before any fit was run so that the 10% curve has its minimum (6.4e10 tokens) and 2% overtakes 5% (9.9e10)
far beyond the fitted budgets, as in the paper's section 5.3 (fitted on delta <= 5%, it foresees the 10% curve
turning up). Its slopes are per unit fraction: ``a3 = -100`` is -1 per percent. The fit sees delta in
{0, 0.1, 1, 2, 5}% and the first 40% of the log-budget range (10 budgets, 1e9 to 8.5e9 of 1e9..3e11 tokens); the
domain train loss and the held-out loss each carry their own multiplicative noise (fixed seed). The train loss
and the gap are fitted separately; both forecasts must be within 30% of the truth. (The held-out loss alone cannot
do this: the train + gap split is what pins the gap's exponents, see :mod:`scaling_laws.fitting.spt`.)

Noise. The issue asked for 0.2%. With this design no fit can meet 30% at 0.2%: the Cramer-Rao bound of the
(train, held-out) likelihood puts the standard deviation of log(forecast minimum) at 3.2 and of log(crossover)
at 0.73 (ln 1.3 = 0.26), and the fit meets both in 1 of 20 noise seeds (``benchmarks/forecast_precision.py``).
That case is kept, as an expected failure. The passing case uses 0.002% noise, where the bound is 0.03 (a 30%
miss is 8 standard deviations): it checks that the paper's law can hold a steep law and that the search finds
it, which the regularized form's bounds cannot (shown below).
"""

from __future__ import annotations

import numpy as np
import pytest

from scaling_laws import FitResult, fit_spt, synthetic
from scaling_laws.decision.forecast import crossover_tokens, loss_minimum_tokens

FRACTIONS = (0.0, 0.001, 0.01, 0.02, 0.05)
BUDGETS = np.geomspace(1e9, 3e11, 25)
FITTED_SHARE = 0.4  # of the log-budget range
ISSUE_NOISE = 0.002
DETERMINED_NOISE = 2e-5
TOLERANCE = 0.3
FORECAST_RANGE = (1e9, 1e12)


def fitted_sweep(noise: float, seed: int = 0):
    """The fitted evaluations: every fraction, budgets in the first :data:`FITTED_SHARE` of the log range."""
    table = synthetic.spt_halves_table(synthetic.SPT_STEEP, FRACTIONS, BUDGETS, noise, seed)
    log_low, log_high = np.log(BUDGETS[0]), np.log(BUDGETS[-1])
    return table[np.log(table["tokens"]) <= log_low + FITTED_SHARE * (log_high - log_low) + 1e-9]


def forecasts(params: dict, law: str = "spt") -> tuple[float, float | None]:
    """The budget of the 10% curve's minimum, and the one from which 2% is below 5% (tokens)."""
    fit = FitResult(law=law, params=params, objective=0.0, n_points=0)
    return loss_minimum_tokens(fit, 0.1, *FORECAST_RANGE), crossover_tokens(fit, 0.02, 0.05, *FORECAST_RANGE)


@pytest.fixture(scope="module")
def truth() -> tuple[float, float]:
    return forecasts(synthetic.SPT_STEEP)


def test_the_truth_turns_up_far_beyond_the_fitted_budgets(truth):
    fitted = fitted_sweep(DETERMINED_NOISE)
    assert set(fitted["fraction"]) == set(FRACTIONS) and fitted["tokens"].nunique() == 10
    largest = fitted["tokens"].max()
    minimum, crossover = truth
    assert 5 * largest < minimum < BUDGETS[-1] and 5 * largest < crossover < BUDGETS[-1]
    assert minimum == pytest.approx(6.44e10, rel=0.01) and crossover == pytest.approx(9.94e10, rel=0.01)
    law = FitResult(law="spt", params=synthetic.SPT_STEEP, objective=0.0, n_points=0)
    assert loss_minimum_tokens(law, 0.0, *FORECAST_RANGE) == float("inf")  # no domain data: it never turns up
    assert crossover_tokens(law, 0.05, 0.02, *FORECAST_RANGE) is None  # 5% never overtakes 2% once behind


def assert_forecasts(result, truth):
    minimum, crossover = forecasts(result.params, result.law)
    assert minimum == pytest.approx(truth[0], rel=TOLERANCE)
    assert crossover is not None and crossover == pytest.approx(truth[1], rel=TOLERANCE)


def test_the_papers_law_forecasts_the_turn_and_the_crossover(truth):
    result = fit_spt(fitted_sweep(DETERMINED_NOISE), fitted="train+gap")
    assert result.law == "spt" and result.settings["fitted"] == "train+gap" and result.settings["converged"]
    assert result.settings["on_bounds"] == {}
    assert_forecasts(result, truth)
    # The global optimum: several starts of each half ended at the best objective.
    for half in ("train", "gap"):
        assert result.settings["optimum"][half]["at_best"] >= 2, half


def test_the_regularized_forms_bounds_never_see_the_turn(truth):
    """The project's bounds (b_gap_s <= 2, a3 >= -10) cannot hold this law: the gap exponent's slope lands on its
    bound and the 10% curve "never" turns up, as the issue saw on a law held aside."""
    result = fit_spt(fitted_sweep(DETERMINED_NOISE), fitted="train+gap", form="spt-regularized")
    assert result.settings["on_bounds"].get("b_gap_s") == "lower"
    assert forecasts(result.params, result.law)[0] == float("inf")


@pytest.mark.xfail(strict=True, reason="0.2% noise on each loss: the Cramer-Rao bound of this design is sd 3.2 "
                                       "on log(minimum), so no fit meets 30% (1 of 20 seeds does)")
def test_at_the_issues_noise_the_forecasts_are_not_determined(truth):
    assert_forecasts(fit_spt(fitted_sweep(ISSUE_NOISE), fitted="train+gap"), truth)
