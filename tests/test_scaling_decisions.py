"""Decisions from fits: delta* where it is known in closed form, compute multipliers, compute-optimal N and D."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_laws import FitResult, compute_optimal, get_law, optimal_fraction, synthetic
from spt.errors import InputError

BUDGET_EXPONENT = 0.3


def closed_form_params(a2: float) -> dict:
    """SPT parameters where L(delta) = A T^b + k0 - k3 delta + a1 delta^a2 T^bg (equal exponents, a3 = k1 = 0).

    Then dL/ddelta = 0 gives delta* = (k3 / (a1 a2 T^bg)) ** (1 / (a2 - 1)).
    """
    return {"A_train": 30.0, "b_train_s": -0.12, "b_train_g": -0.12, "b_gap_s": BUDGET_EXPONENT,
            "b_gap_g": BUDGET_EXPONENT, "a1": 0.003, "a2": a2, "a3": 0.0, "k0": 1.0, "k1": 0.0, "k2": 0.01,
            "k3": 0.3}


def spt_fit(params: dict, fractions=(0.0, 0.5), samples=None) -> FitResult:
    return FitResult(law="spt", params=params, objective=0.0, n_points=0,
                     data_ranges={"tokens": [1e8, 1e10], "fraction": list(fractions)}, samples=samples)


@pytest.mark.parametrize("a2", [1.5, 2.0, 3.0])
@pytest.mark.parametrize("tokens", [1e8, 1e9, 1e10])
def test_optimal_fraction_matches_the_closed_form(a2, tokens):
    p = closed_form_params(a2)
    expected = (p["k3"] / (p["a1"] * a2 * tokens ** BUDGET_EXPONENT)) ** (1.0 / (a2 - 1.0))
    assert 0.0 < expected < 0.5
    choice = optimal_fraction(spt_fit(p), tokens)
    assert choice.fraction == pytest.approx(expected, rel=1e-6)
    law = get_law("spt")
    assert choice.loss == pytest.approx(law.loss_at(p, tokens, expected), rel=1e-12)
    # delta = 0 (A_gap = 0, C_train = k0) reaches that loss at T0 = ((L* - k0) / A) ** (1/b).
    matched_tokens = ((choice.loss - p["k0"]) / p["A_train"]) ** (1.0 / p["b_train_g"])
    assert choice.model_multiplier == pytest.approx(matched_tokens / tokens, rel=1e-6)
    assert choice.model_multiplier > 1.0 and choice.basis == "pre-finetune"


def test_search_stays_in_the_fitted_range_unless_widened():
    p = {**closed_form_params(2.0), "a1": 1e-12}  # no overfitting: more domain data is always better
    assert optimal_fraction(spt_fit(p, fractions=(0.0, 0.3)), 1e9).fraction == pytest.approx(0.3)
    assert optimal_fraction(spt_fit(p, fractions=(0.0, 0.3)), 1e9, widen=True).fraction == pytest.approx(1.0)
    assert optimal_fraction(spt_fit(p), 1e9, low=0.05, high=0.2).fraction == pytest.approx(0.2)


def test_zero_fraction_is_optimal_when_domain_data_only_hurts():
    p = {**closed_form_params(2.0), "k3": -0.5, "a1": 0.01}
    choice = optimal_fraction(spt_fit(p), 1e9)
    assert choice.fraction == pytest.approx(0.0, abs=1e-9)
    assert choice.model_multiplier == pytest.approx(1.0)


def test_multiplier_is_infinite_when_general_data_never_catches_up():
    p = {**closed_form_params(2.0), "b_train_s": 0.0, "b_train_g": 0.0}  # delta = 0 loss does not fall with T
    assert optimal_fraction(spt_fit(p), 1e9).model_multiplier == float("inf")


def test_bootstrap_samples_give_intervals_around_the_estimate():
    p = closed_form_params(2.0)
    law = get_law("spt")
    rng = np.random.default_rng(0)
    samples = np.tile([p[name] for name in law.names], (40, 1))
    samples[:, law.names.index("k3")] *= np.exp(rng.normal(0.0, 0.1, 40))
    choice = optimal_fraction(spt_fit(p, samples=samples), 1e9)
    low, high = choice.fraction_interval
    assert low < choice.fraction < high
    assert choice.model_multiplier_interval[0] < choice.model_multiplier < choice.model_multiplier_interval[1]
    assert choice.to_dict()["fraction_interval"] == [low, high]


def finetuned(p: dict, tokens: float, gains: dict) -> list[dict]:
    """Fine-tuned runs at ``tokens`` whose fine-tuned loss is the law's minus ``gains[fraction]``."""
    law = get_law("spt")
    return [{"run_id": f"d{f}", "fraction": f, "tokens": tokens, "finetune_loss": law.loss_at(p, tokens, f) - g}
            for f, g in gains.items()]


def test_post_finetune_delta_star_adds_the_gain_per_fraction():
    """A gain falling linearly in delta (g0 - g1 delta) acts like a smaller floor slope k3 - g1: closed form."""
    p, tokens, g0, g1 = closed_form_params(2.0), 1e9, 0.2, 0.1
    swept = [0.0, 0.1, 0.2, 0.3, 0.5]
    fit = spt_fit(p)
    fit.decision = {"fractions": swept, "finetune": finetuned(p, 3e8, {f: g0 - g1 * f for f in swept})}
    after = optimal_fraction(fit, tokens)
    expected = ((p["k3"] - g1) / (p["a1"] * 2.0 * tokens**BUDGET_EXPONENT)) ** (1.0 / (2.0 - 1.0))
    assert after.basis == "post-finetune" and after.fraction == pytest.approx(expected, rel=1e-6)
    before = optimal_fraction(fit, tokens, basis="pre-finetune")
    assert before.basis == "pre-finetune" and before.fraction > after.fraction
    assert after.loss == pytest.approx(get_law("spt").loss_at(p, tokens, expected) - (g0 - g1 * expected), rel=1e-9)


def test_post_finetune_needs_every_swept_fraction_finetuned():
    p = closed_form_params(2.0)
    fit = spt_fit(p)
    fit.decision = {"fractions": [0.0, 0.2, 0.5], "finetune": finetuned(p, 3e8, {0.0: 0.2, 0.5: 0.1})}
    assert optimal_fraction(fit, 1e9).basis == "pre-finetune"
    with pytest.raises(InputError, match=r"cannot decide after fine-tuning: no fine-tuned runs at delta=0.2$"):
        optimal_fraction(fit, 1e9, basis="post-finetune")
    with pytest.raises(InputError, match=r"cannot decide after fine-tuning: the fit records no fine-tuned runs"):
        optimal_fraction(spt_fit(p), 1e9, basis="post-finetune")


@pytest.mark.parametrize(("tokens", "ratio", "flag"), [(5e9, 0.5, "no"), (2e10, 2.0, "no"), (2.1e10, 2.1, "yes")])
def test_budgets_beyond_twice_the_largest_trained_are_flagged(tokens, ratio, flag):
    choice = optimal_fraction(spt_fit(closed_form_params(2.0)), tokens)  # fitted tokens reach 1e10
    assert choice.budget_ratio == pytest.approx(ratio)
    assert f" extrapolated={flag} " in choice.line()
    assert (choice.warning() is not None) == (flag == "yes")
    if flag == "yes":
        assert choice.warning().startswith("WARNING: delta* at T=2.1e+10 is an EXTRAPOLATION: 2.1x the largest")


def test_budgets_beyond_the_largest_trained_carry_a_caveat_in_the_report():
    """Up to 2x the largest budget: a short extrapolation, which the reproduction showed can still pick the wrong
    fraction (the first halves of its curves predicted 0.1 where the runs measured 0.03); past 2x: EXTRAPOLATION."""
    from scaling_laws.decision.report import caveats

    fit = spt_fit(closed_form_params(2.0))  # fitted tokens reach 1e10

    def beyond(*tokens):
        lines = caveats(fit, [optimal_fraction(fit, t) for t in tokens])
        return [line for line in lines if "largest trained budget" in line]

    assert beyond(5e9, 1e10) == []
    assert beyond(5e9, 1.5e10) == [
        "some budgets lie beyond the largest trained budget 1e+10 (at most 2x): delta* there is a short "
        "extrapolation, and the law foresees worst a fraction that starts to overfit only past the trained budgets "
        "(README, reproduction)"]
    assert beyond(1.5e10, 2.1e10) == ["EXTRAPOLATION: budgets 2.1e+10 are more than 2x the largest trained budget "
                                      "1e+10 (up to 2.1x): delta* there rests on the law's form alone"]


def test_spt_n_needs_a_model_size_and_uses_it():
    fit = FitResult(law="spt-n", params=synthetic.SPT_N, objective=0.0, n_points=0,
                    data_ranges={"fraction": [0.0, 0.4]})
    with pytest.raises(InputError, match="law spt-n needs the model size"):
        optimal_fraction(fit, 1e9)
    # gamma_N > 0: larger models memorize faster, so they want less domain data.
    assert optimal_fraction(fit, 1e9, params=3e8).fraction < optimal_fraction(fit, 1e9, params=3e7).fraction


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low": 0.4, "high": 0.2}, r"fraction range \[0.4, 0.2\]: must satisfy 0 <= low < high <= 1"),
        ({"high": 1.5}, r"fraction range \[0.0, 1.5\]: must satisfy 0 <= low < high <= 1"),
    ],
)
def test_bad_fraction_ranges_are_rejected(kwargs, message):
    with pytest.raises(InputError, match=message):
        optimal_fraction(spt_fit(closed_form_params(2.0)), 1e9, **kwargs)


def test_bad_budgets_and_laws_are_rejected():
    with pytest.raises(InputError, match=r"tokens=-1.0: must be a positive number of tokens"):
        optimal_fraction(spt_fit(closed_form_params(2.0)), -1.0)
    chinchilla = FitResult(law="chinchilla", params=synthetic.CHINCHILLA, objective=0.0, n_points=0)
    with pytest.raises(InputError, match="optimal fraction needs an spt fit; this fit is law chinchilla"):
        optimal_fraction(chinchilla, 1e9)
    with pytest.raises(InputError, match="compute-optimal sizes need a chinchilla or muennighoff fit"):
        compute_optimal(spt_fit(closed_form_params(2.0)), 1e21)


def test_compute_optimal_sizes_minimize_loss_on_the_flop_budget():
    p = synthetic.CHINCHILLA
    fit = FitResult(law="chinchilla", params=p, objective=0.0, n_points=0)
    flops = 1e21
    best = compute_optimal(fit, flops)
    assert 6 * best["params"] * best["tokens"] == pytest.approx(flops, rel=1e-12)
    sizes = np.geomspace(best["params"] / 10, best["params"] * 10, 20001)
    law = get_law("chinchilla")
    losses = law.predict(p, {"params": sizes, "tokens": flops / (6 * sizes)})
    assert sizes[np.argmin(losses)] == pytest.approx(best["params"], rel=1e-3)
    assert best["loss"] == pytest.approx(losses.min(), rel=1e-9)


def test_compute_optimal_intervals_from_bootstrap():
    p = synthetic.CHINCHILLA
    rng = np.random.default_rng(1)
    samples = np.array([[p[k] for k in ("E", "A", "B", "alpha", "beta")]] * 30)
    samples[:, 3] += rng.normal(0, 0.01, 30)
    fit = FitResult(law="chinchilla", params=p, objective=0.0, n_points=0, samples=samples)
    best = compute_optimal(fit, 1e21)
    assert best["params_interval"][0] < best["params"] < best["params_interval"][1]
    assert best["tokens_interval"][0] < best["tokens"] < best["tokens_interval"][1]


def test_delta_star_in_a_wide_gap_of_the_swept_fractions_is_flagged_against_the_measured_best():
    """The quickstart's grid 0, 0.01, 0.03, 0.1, 0.5 once gave delta* 0.30 with a predicted loss 0.5 nats below
    every run: the valley between 0.1 and 0.5 came from the law's form alone, and the output must say so."""
    from scaling_laws.decision.choice import FractionChoice
    from scaling_laws.decision.report import caveats

    fit = spt_fit(closed_form_params(2.0))
    fit.decision = {"fractions": [0.0, 0.01, 0.02, 0.1, 0.5], "curves": [
        {"run_id": f"r{f}", "fraction": f, "tokens": [2e5, 4e5], "loss": losses}
        for f, losses in [(0.0, [6.8, 6.40]), (0.01, [6.8, 6.33]), (0.1, [6.5, 6.04]), (0.5, [6.3, 6.45])]]}

    def flagged(fraction, loss=5.53, tokens=4e5, basis="pre-finetune"):
        choice = FractionChoice(tokens=tokens, fraction=fraction, loss=loss, fraction_range=(0.0, 0.5), basis=basis)
        return [line for line in caveats(fit, [choice]) if "lies between the swept fractions" in line]

    assert flagged(0.303) == [
        "at T=4e+05, delta* 0.303 lies between the swept fractions 0.1 and 0.5 (no run in between), where the law's "
        "shape is its form's, not a measurement; it predicts 5.53 nats there, 0.51 below the best measured at this "
        "budget (6.04 at delta=0.1): sweep a fraction near delta* before relying on it"]
    # a prediction the runs bear out, a budget no run stopped at, or a post-finetune loss: no comparison
    for kwargs in ({"loss": 6.02}, {"tokens": 8e5}, {"basis": "post-finetune"}):
        assert flagged(0.303, **kwargs)[0].endswith("not a measurement: sweep a fraction near delta* before "
                                                     "relying on it")
    # on a swept fraction, in a gap of at most 2x, or between 0 and the smallest nonzero fraction: no caveat
    assert flagged(0.1) == flagged(0.015) == flagged(0.005) == []
