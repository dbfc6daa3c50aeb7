"""`spt decide` and :mod:`scaling_laws.decision.cost`: the FLOP arithmetic by hand, the decision on a size-aware
law whose answer is known in closed form, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaling_laws.decision.cost import CostQuestion, Option, choose, crossing, decide_cost
from scaling_laws.fitting.intervals import percentile_interval
from scaling_laws.fitting.result import FitResult

#: An spt-n law with no gap (a1 at its floor) and equal train exponents, so that the loss is
#: ``A T**b + k0 - k1 log(delta + k2) + A_N (N / 1e8)**-alpha_N``: delta* is the largest fraction searched (0.5)
#: and the budget reaching a loss L is ``((L - k0 + k1 log(delta + k2) - A_N (N/1e8)**-alpha_N) / A)**(1/b)``.
KNOWN = {"A_train": 60.0, "b_train_s": -0.25, "b_train_g": -0.25, "b_gap_s": 0.6, "b_gap_g": -0.2, "a1": 1e-30,
         "a2": 1.0, "a3": 0.0, "k0": 2.0, "k1": 0.05, "k2": 0.05, "k3": 0.0, "A_N": 0.5, "alpha_N": 0.3,
         "gamma_N": 0.0}
TARGET, GAIN, DOMAIN_TOKENS = 2.38, 0.1, 3e8


def known_fit(replicates: int = 8) -> FitResult:
    """The law :data:`KNOWN` as a fit JSON written by hand, with hand-made bootstrap replicates (A_train and A_N
    jittered by 1%): a size-aware fit whose every number the tests can compute in closed form."""
    fit = FitResult("spt-n", dict(KNOWN), 0.0, 0, constants={"N_ref": 1e8},
                    data_ranges={"fraction": [0.0, 0.5], "params": [1e9, 3e9], "tokens": [1e9, 2e11]})
    rng = np.random.default_rng(0)
    jitter = {"A_train", "A_N"}
    if replicates:
        fit.samples = np.array([[KNOWN[n] * (1 + 0.01 * rng.normal()) if n in jitter else KNOWN[n]
                                 for n in fit.form.names] for _ in range(replicates)])
    return fit


def tokens_by_hand(values: dict, size: float, kind: str) -> float:
    fraction, gain = (0.5, 0.0) if kind == "spt" else (0.0, GAIN)
    rest = (TARGET + gain - values["k0"] + values["k1"] * np.log(fraction + values["k2"])
            - values["A_N"] * (size / 1e8) ** -values["alpha_N"])
    return (rest / values["A_train"]) ** (1.0 / values["b_train_s"])


def training_by_hand(values: dict, size: float, kind: str) -> float:
    return 6.0 * size * (tokens_by_hand(values, size, kind) + (DOMAIN_TOKENS if kind == "finetune" else 0.0))


def test_flops_and_break_even_by_hand():
    spt = Option("spt", 1e9, 0.1, tokens=4e11, loss=2.0)
    finetune = Option("finetune", 3e9, 0.0, tokens=1e11, loss=2.0, finetune_tokens=1e9)
    assert spt.training_flops() == pytest.approx(2.4e21, rel=1e-12)  # 6 * 1e9 * 4e11
    assert finetune.training_flops() == pytest.approx(1.818e21, rel=1e-12)  # 6 * 3e9 * (1e11 + 1e9)
    assert spt.serving_flops(1e12) == pytest.approx(2e21, rel=1e-12)  # 2 * 1e9 * 1e12
    assert finetune.total_flops(1e12) == pytest.approx(1.818e21 + 6e21, rel=1e-12)
    # 2.4e21 + 2e9 S = 1.818e21 + 6e9 S  =>  S = 5.82e20 / 4e9
    served, cheaper = crossing(spt, finetune)
    assert served == pytest.approx(1.455e11, rel=1e-12) and cheaper == "spt"
    assert crossing(finetune, spt) == (pytest.approx(1.455e11, rel=1e-12), "spt")
    assert choose([spt, finetune], 1e11, target_loss=2.5) is finetune
    assert choose([spt, finetune], 2e11, target_loss=2.5) is spt


def test_lines_that_do_not_cross_at_positive_served_tokens_are_never():
    small_spt = Option("spt", 1e9, 0.1, tokens=1e10, loss=2.0)
    same_size = Option("finetune", 1e9, 0.0, tokens=1e10, loss=2.0, finetune_tokens=1e9)
    large_finetune = Option("finetune", 3e9, 0.0, tokens=1e11, loss=2.0, finetune_tokens=1e9)
    large_spt = Option("spt", 3e9, 0.1, tokens=1e12, loss=2.0)
    assert crossing(small_spt, same_size) == (float("inf"), "spt")  # parallel lines
    assert crossing(small_spt, large_finetune) == (float("inf"), "spt")  # cheaper to train and to serve
    assert crossing(large_spt, same_size) == (float("inf"), "finetune")


def test_a_fixed_budget_costs_six_n_t_and_picks_the_lowest_loss():
    question = CostQuestion(sizes=(1e9, 3e9), domain_tokens=DOMAIN_TOKENS, served_tokens=1e12, finetune_gain=GAIN,
                            tokens=1e11)
    decision = decide_cost(known_fit(replicates=0), question)
    flops = {(o.kind, o.params): o.training_flops() for o in decision.options}
    assert flops == {("spt", 1e9): 6e20, ("finetune", 1e9): pytest.approx(6 * 1e9 * (1e11 + 3e8), rel=1e-12),
                     ("spt", 3e9): 1.8e21, ("finetune", 3e9): pytest.approx(6 * 3e9 * (1e11 + 3e8), rel=1e-12)}
    # The lowest loss at T = 1e11: the larger model with delta* = 0.5 (its floor is below the finetune's by more
    # than the gain: k1 log(0.55 / 0.05) = 0.12 > 0.1).
    assert (decision.choice.kind, decision.choice.params) == ("spt", 3e9)
    assert decision.choice.fraction == pytest.approx(0.5, abs=1e-9)


def test_the_decision_on_a_law_with_a_known_answer():
    fit = known_fit()
    question = CostQuestion(sizes=(1e9, 3e9), domain_tokens=DOMAIN_TOKENS, served_tokens=2e11,
                            finetune_gain=GAIN, target_loss=TARGET)
    decision = decide_cost(fit, question)
    for option in decision.options:
        assert option.tokens == pytest.approx(tokens_by_hand(KNOWN, option.params, option.kind), rel=1e-7)
        assert option.loss == pytest.approx(TARGET, abs=1e-9)
    assert [o.fraction for o in decision.options if o.kind == "spt"] == [pytest.approx(0.5, abs=1e-9)] * 2
    # By hand: 1e9 with SPT needs 5x the tokens of 3e9 finetuned (1.32e11 vs 2.56e10), costs more to train and
    # is the cheapest at 2e11 served tokens; 3e9 finetuned is the best finetune option there.
    assert (decision.choice.kind, decision.choice.params) == ("spt", 1e9) and decision.choice_share == 1.0
    assert (decision.spt.params, decision.finetune.params) == (1e9, 3e9)
    expected = (training_by_hand(KNOWN, 1e9, "spt") - training_by_hand(KNOWN, 3e9, "finetune")) / (2 * (3e9 - 1e9))
    assert decision.break_even == pytest.approx(expected, rel=1e-6) and decision.cheaper_beyond == "spt"
    assert 5e10 < decision.break_even < 2e11
    # Fewer served tokens: the larger model with SPT, cheaper to train, is the cheapest.
    fewer = decide_cost(fit, CostQuestion(**{**vars(question), "served_tokens": 3e10}))
    assert (fewer.choice.kind, fewer.choice.params) == ("spt", 3e9)

    # Each replicate is decided again: its break-even by hand, then the central interval of those.
    by_hand = []
    for row in fit.samples:
        values = dict(zip(fit.form.names, row))
        costs = {(kind, n): training_by_hand(values, n, kind) + 2 * n * 2e11 for kind in ("spt", "finetune")
                 for n in (1e9, 3e9)}
        spt_size = min((1e9, 3e9), key=lambda n: costs["spt", n])
        finetune_size = min((1e9, 3e9), key=lambda n: costs["finetune", n])
        by_hand.append((training_by_hand(values, spt_size, "spt") - training_by_hand(values, finetune_size,
                                                                                       "finetune"))
                       / (2 * (finetune_size - spt_size)))
    low, high = percentile_interval(by_hand, fit.level)
    assert decision.break_even_interval == (pytest.approx(low, rel=1e-6), pytest.approx(high, rel=1e-6))
    assert low < high


@pytest.fixture
def fit_json(tmp_path):
    path = tmp_path / "fit_n.json"
    known_fit().save(path)
    return path


DECIDE = ("--domain-tokens", "3e8", "--target-loss", "2.38", "--serve-tokens", "2e11", "--finetune-gain", "0.1")


def test_spt_decide_prints_the_options_the_choice_and_the_break_even(tmp_path, fit_json, run_cli):
    out, plot = tmp_path / "decision.json", tmp_path / "cost.png"
    code, stdout, err = run_cli("decide", "--fit", fit_json, *DECIDE, "--out", out, "--plot", plot)
    assert code == 0, err
    lines = stdout.splitlines()
    assert len([line for line in lines if line.lstrip().startswith(("1e+09", "3e+09"))]) == 4
    assert ("cheapest reaching loss 2.38: spt N=1e+09 (delta*=0.5, T=1.321e+11, loss 2.38): 1.193e+21 "
            in stdout)
    assert "the same choice in 100% of 8 bootstrap replicates" in stdout
    assert "break-even of spt N=1e+09 and finetune N=3e+09: 8.161e+10 served tokens [" in stdout
    assert "spt is cheaper beyond it" in stdout
    assert "caveat: the finetune gain 0.1 nats/token is an assumption" in stdout
    written = json.loads(out.read_text())
    assert written["break_even_served_tokens"] == pytest.approx(8.161e10, rel=1e-3)
    assert written["choice"] == {"kind": "spt", "params": 1e9} and len(written["options"]) == 4
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spt_decide_refuses_a_fit_without_model_sizes(tmp_path, run_cli):
    path = tmp_path / "fit.json"
    FitResult("spt", {k: v for k, v in KNOWN.items() if k not in ("A_N", "alpha_N", "gamma_N")}, 0.0, 0).save(path)
    code, stdout, err = run_cli("decide", "--fit", path, *DECIDE)
    assert code == 2 and stdout == ""
    assert err == (f"error: {path}: spt decide needs a size-aware fit (law spt-n, fitted on several model sizes); "
                   "this fit is law spt\n")


@pytest.mark.parametrize("option, value, message", [
    ("--domain-tokens", "0", "--domain-tokens=0.0: must be a finite number > 0"),
    ("--target-loss", "-1", "--target-loss=-1.0: must be a finite number > 0"),
    ("--serve-tokens", "nan", "--serve-tokens=nan: must be a finite number >= 0"),
    ("--finetune-gain", "inf", "--finetune-gain=inf: must be a finite number >= 0"),
    ("--finetune-tokens", "-3e8", "--finetune-tokens=-300000000.0: must be a finite number > 0"),
    ("--sizes", "0", "--sizes=0.0: must be a finite number > 0"),
])
def test_spt_decide_names_a_bad_number(fit_json, run_cli, option, value, message):
    arguments = list(DECIDE)
    if option in arguments:
        arguments[arguments.index(option) + 1] = value
    else:
        arguments.append(f"{option}={value}")  # (argparse reads a bare -3e8 as an option)
    code, stdout, err = run_cli("decide", "--fit", fit_json, *arguments)
    assert (code, stdout, err) == (2, "", f"error: {message}\n")


def test_spt_decide_asks_for_the_finetune_gain(fit_json, run_cli):
    code, _, err = run_cli("decide", "--fit", fit_json, *DECIDE[:-2])
    assert code == 2
    assert err == (f"error: {fit_json}: --finetune-gain is required: a size-aware fit records no fine-tune gains per "
                   "model size, so give the loss drop of finetuning after delta = 0 pretraining (nats/token)\n")


def test_spt_decide_repeats_the_fits_own_limits(tmp_path, run_cli):
    from scaling_laws.fitting.regime import CAVEAT_START

    fit = known_fit()
    fit.settings["converged"] = False
    fit.params["alpha_N"] = 0.0
    fit.settings["on_bounds"] = {"alpha_N": "lower"}  # as the fit records it: the pilot measured no gain with size
    regime = f"{CAVEAT_START}: (its slopes)"
    fit.caveats = [regime, "an unrelated caveat of the fit"]
    path = tmp_path / "fit.json"
    fit.save(path)
    code, stdout, err = run_cli("decide", "--fit", path, *DECIDE)
    assert code == 0, err
    caveats = [line for line in stdout.splitlines() if line.startswith("caveat: ")]
    assert "caveat: the best start of the fit did not converge (try more starts)" in caveats
    assert any(line.startswith("caveat: parameters on a bound: ") and "alpha_N (lower bound 0)" in line
               for line in caveats)
    assert f"caveat: {regime}" in caveats and "caveat: an unrelated caveat of the fit" not in caveats
