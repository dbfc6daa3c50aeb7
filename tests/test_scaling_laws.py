"""Law forms, objectives and the batched optimizer, checked against direct formulas and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from scaling_laws import LAWS, Chinchilla, Muennighoff, Objective, SPTGap, SPTOverfit, SPTTrain, get_law, synthetic
from scaling_laws.laws.spt import GAP_NAMES, TRAIN_NAMES, combine
from scaling_laws.numerics.lbfgs import minimize_batched
from scaling_laws.numerics.lm import minimize_lm
from scaling_laws.numerics.objective import value_and_grad

RNG = np.random.default_rng(0)
N_ROWS = 30
INPUTS = {
    "params": np.exp(RNG.uniform(np.log(1e7), np.log(1e10), N_ROWS)),
    "tokens": np.exp(RNG.uniform(np.log(1e8), np.log(1e11), N_ROWS)),
    "fraction": RNG.choice([0.0, 0.01, 0.1, 0.3, 1.0], N_ROWS),
}
INPUTS["unique_tokens"] = INPUTS["tokens"] / np.exp(RNG.uniform(0.0, 3.0, N_ROWS))
TRUE = {
    "chinchilla": synthetic.CHINCHILLA,
    "muennighoff": synthetic.MUENNIGHOFF,
    "spt": synthetic.SPT,
    "spt-n": synthetic.SPT_N,
    "spt-regularized": synthetic.SPT,
    "spt-train": {name: synthetic.SPT[name] for name in TRAIN_NAMES},
    "spt-gap": {name: synthetic.SPT[name] for name in GAP_NAMES},
    "spt-regularized-train": {name: synthetic.SPT[name] for name in TRAIN_NAMES},
    "spt-regularized-gap": {**{name: synthetic.SPT[name] for name in GAP_NAMES}, "c_gap": 0.02},
    "finetune-gain": synthetic.FINETUNE_GAIN,
    # (the form's domain set is 1 token by default: epochs of 1e8 and more, every branch of f(E) but the first)
    "spt-epochs": {"L0": 2.0, "B": 300.0, "beta": 0.5, "w": 0.05, "R_star": 5.0, "G": 1e-9, "gamma": 0.8},
}


def stacked(jac, shape):
    return np.stack([np.broadcast_to(column, shape) for column in jac], axis=-1)


@pytest.mark.parametrize("name", list(LAWS))
@pytest.mark.parametrize("space", ["log", "linear"])
def test_jacobian_matches_central_differences(name, space):
    law = get_law(name)
    theta = law.to_internal(TRUE[name])[None, :]
    function = law.log_predict_jac if space == "log" else law.predict_jac
    inputs = INPUTS
    if name == "spt-gap" and space == "log":  # the paper's gap is 0 at delta = 0: no log there (fitted linearly)
        inputs = {k: v[INPUTS["fraction"] > 0] for k, v in INPUTS.items()}
    value, jac = function(theta, inputs)
    analytic = stacked(jac, value.shape)
    numeric, roundoff = np.empty_like(analytic), np.empty(theta.shape[1])
    for i in range(theta.shape[1]):
        step = 1e-6 * max(1.0, abs(theta[0, i]))
        up, down = theta.copy(), theta.copy()
        up[0, i] += step
        down[0, i] -= step
        numeric[..., i] = (function(up, inputs)[0] - function(down, inputs)[0]) / (2 * step)
        # Differences of large values lose digits: allow 100 ulps of the largest value per step.
        roundoff[i] = 100 * np.finfo(float).eps * np.abs(value).max() / step
    scale = np.abs(analytic).max(axis=(0, 1)) + 1e-12
    assert np.max(np.abs(numeric - analytic) / (1e-5 * scale + roundoff)) < 1.0


def test_chinchilla_predicts_the_formula_and_has_the_4500_start_grid():
    law = Chinchilla()
    p = synthetic.CHINCHILLA
    expected = p["E"] + p["A"] / INPUTS["params"] ** p["alpha"] + p["B"] / INPUTS["tokens"] ** p["beta"]
    np.testing.assert_allclose(law.predict(p, INPUTS), expected, rtol=1e-12)
    assert law.start_grid(INPUTS, expected).shape == (4500, 5)


def test_muennighoff_is_chinchilla_for_one_epoch_below_the_optimal_size():
    p = synthetic.MUENNIGHOFF
    n_opt = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / p["alpha"]) * 1e10 ** (p["beta"] / p["alpha"])
    inputs = {"params": np.array([0.5 * n_opt]), "tokens": np.array([1e10]), "unique_tokens": np.array([1e10])}
    chinchilla = Chinchilla().predict({k: p[k] for k in Chinchilla().names}, inputs)
    np.testing.assert_allclose(Muennighoff().predict(p, inputs), chinchilla, rtol=1e-12)


def test_muennighoff_repeated_data_is_worth_less_than_fresh_data():
    p = synthetic.MUENNIGHOFF
    law = Muennighoff()
    fresh = law.predict(p, {"params": [1e8], "tokens": [4e10], "unique_tokens": [4e10]})
    repeated = law.predict(p, {"params": [1e8], "tokens": [4e10], "unique_tokens": [1e10]})
    one_epoch = law.predict(p, {"params": [1e8], "tokens": [1e10], "unique_tokens": [1e10]})
    assert fresh < repeated < one_epoch
    # Far beyond R*_D epochs, more repetition buys (almost) nothing: D' saturates at U_D (1 + R*_D).
    saturated = law.predict(p, {"params": [1e8], "tokens": [1e10 * 1e4], "unique_tokens": [1e10]})
    limit = Chinchilla().predict({k: p[k] for k in Chinchilla().names},
                                 {"params": [1e8], "tokens": [1e10 * (1 + p["R_D_star"])]})
    np.testing.assert_allclose(saturated, limit, rtol=1e-9)


def test_spt_at_zero_fraction_has_no_gap_and_finite_gradients():
    p = synthetic.SPT
    law = SPTOverfit()
    tokens = np.geomspace(1e8, 1e10, 5)
    inputs = {"tokens": tokens, "fraction": np.zeros(5)}
    expected = p["A_train"] * tokens ** p["b_train_g"] + p["k0"] - p["k1"] * np.log(p["k2"])
    np.testing.assert_allclose(law.predict(p, inputs), expected, rtol=1e-12)
    value, jac = law.log_predict_jac(law.to_internal(p)[None, :], inputs)
    assert np.all(np.isfinite(stacked(jac, value.shape)))


def test_spt_matches_the_written_formula_at_a_positive_fraction():
    p = synthetic.SPT
    t, d = 3e9, 0.2
    b_train = d * p["b_train_s"] + (1 - d) * p["b_train_g"]
    b_gap = d * p["b_gap_s"] + (1 - d) * p["b_gap_g"]
    a_gap = p["a1"] * d ** p["a2"] * np.exp(p["a3"] * d)
    c_train = p["k0"] - p["k1"] * np.log(d + p["k2"]) - p["k3"] * d
    expected = p["A_train"] * t ** b_train + c_train + a_gap * t ** b_gap
    assert SPTOverfit().loss_at(p, t, d) == pytest.approx(expected, rel=1e-12)


def test_spt_n_reduces_to_spt_at_the_reference_size_with_shifted_floor():
    p = synthetic.SPT_N
    inputs = {"tokens": INPUTS["tokens"], "fraction": INPUTS["fraction"], "params": np.full(N_ROWS, 1e8)}
    spt = {**{k: p[k] for k in SPTOverfit().names}, "k0": p["k0"] + p["A_N"]}
    np.testing.assert_allclose(get_law("spt-n").predict(p, inputs), SPTOverfit().predict(spt, inputs), rtol=1e-12)


@pytest.mark.parametrize("kind", ["huber", "mse"])
@pytest.mark.parametrize("space", ["log", "linear"])
def test_objective_gradient_matches_differences(kind, space):
    law = Chinchilla()
    target = law.predict(synthetic.CHINCHILLA, INPUTS) * np.exp(RNG.normal(0, 0.01, N_ROWS))
    theta = law.to_internal(synthetic.CHINCHILLA)[None, :] + 0.01
    weights = RNG.integers(0, 3, N_ROWS).astype(float)
    objective = Objective(kind=kind, residuals=space)
    _, grad = value_and_grad(law, theta, INPUTS, target, weights, objective)
    for i in range(5):
        up, down = theta.copy(), theta.copy()
        up[0, i] += 1e-7
        down[0, i] -= 1e-7
        numeric = (value_and_grad(law, up, INPUTS, target, weights, objective)[0]
                   - value_and_grad(law, down, INPUTS, target, weights, objective)[0]) / 2e-7
        assert numeric[0] == pytest.approx(grad[0, i], rel=1e-4, abs=1e-9)


def test_huber_objective_is_the_sum_of_huber_losses():
    law = Chinchilla()
    theta = law.to_internal(synthetic.CHINCHILLA)[None, :]
    residual = np.array([0.0, 5e-4, -2e-3, 0.1] * 5)[:N_ROWS // 2]
    inputs = {k: v[: len(residual)] for k, v in INPUTS.items()}
    target = law.predict(synthetic.CHINCHILLA, inputs) * np.exp(residual)
    value, _ = value_and_grad(law, theta, inputs, target, np.ones(len(residual)), Objective())
    delta = 1e-3
    expected = np.where(np.abs(residual) <= delta, 0.5 * residual**2, delta * (np.abs(residual) - delta / 2)).sum()
    assert value[0] == pytest.approx(expected, rel=1e-8)


def test_objective_marks_invalid_predictions_infinite():
    law = SPTOverfit()
    p = {**synthetic.SPT, "k0": -50.0}  # negative predicted loss: no log residual
    value, grad = value_and_grad(law, law.to_internal(p)[None, :], {"tokens": INPUTS["tokens"],
                                 "fraction": INPUTS["fraction"]}, np.ones(N_ROWS), np.ones(N_ROWS), Objective())
    assert value[0] == np.inf and np.all(grad == 0)


def test_batched_lbfgs_solves_independent_bounded_quadratics():
    centers = RNG.uniform(-2, 2, (50, 3))
    scales = np.array([1.0, 10.0, 100.0])

    def fun_grad(x, rows):
        diff = x - centers[rows]
        return np.sum(scales * diff**2, axis=1), 2 * scales * diff

    lower, upper = np.full(3, -1.0), np.full(3, 1.0)
    result = minimize_batched(fun_grad, np.zeros((50, 3)), lower, upper, gtol=1e-12, ftol=0.0)
    np.testing.assert_allclose(result.x, np.clip(centers, lower, upper), atol=1e-6)
    assert result.converged.all()


def test_spt_is_the_papers_law_with_its_constraints_by_construction():
    """Every point inside the fitted coordinates' box is a law the paper allows, and only the paper's constraints
    bound it: b_train_s, b_train_g < 0 with |b_train_g| <= |b_train_s|; b_gap_g <= 0 <= b_gap_s; b_gap(delta) <= 1
    up to delta = 0.1. No magnitude bound is left (a steep law's slopes per unit fraction run to the hundreds)."""
    law = SPTOverfit()
    lower, upper = law.bounds()
    finite = {p.name: (lo, hi) for p, lo, hi in zip(law.params, lower, upper) if np.isfinite(lo) and np.isfinite(hi)}
    assert finite == {"b_train_g": (0.0, 1.0), "b_gap_s": (0.0, 1.0)}  # the two shares
    bounds = {p.name: (p.lower, p.upper) for p in law.params}
    assert bounds["b_train_s"] == (-np.inf, 0.0) and bounds["b_gap_g"] == (-np.inf, 0.0)
    assert bounds["a3"] == bounds["k0"] == bounds["k1"] == bounds["k3"] == (-np.inf, np.inf)
    assert bounds["a2"] == (0.0, np.inf) and bounds["A_train"][0] == bounds["a1"][0] == bounds["k2"][0] == 1e-300
    rng = np.random.default_rng(1)
    theta = rng.uniform(-5, 5, (2000, len(law.params)))
    for name in ("b_train_s", "b_gap_g"):
        theta[:, law.names.index(name)] = -rng.exponential(3.0, len(theta))
    for name in ("b_train_g", "b_gap_s"):
        theta[:, law.names.index(name)] = rng.uniform(0.0, 1.0, len(theta))
    public = dict(zip(law.names, law.to_public(theta).T))
    assert np.all(public["b_train_s"] <= 0) and np.all(public["b_train_g"] <= 0)
    assert np.all(np.abs(public["b_train_g"]) <= np.abs(public["b_train_s"]))
    assert np.all(public["b_gap_g"] <= 0) and np.all(public["b_gap_s"] >= 0)
    assert np.all(0.1 * public["b_gap_s"] + 0.9 * public["b_gap_g"] <= 1.0 + 1e-12)
    np.testing.assert_allclose(law.internal_array(law.to_public(theta)), theta, rtol=1e-9, atol=1e-12)
    for half in (SPTTrain(), SPTGap()):  # the halves fit the same coordinates
        for p in half.params:
            same = law.params[law.names.index(p.name)]
            assert (p.lower, p.upper, p.log, p.share) == (same.lower, same.upper, same.log, same.share), p.name
    values = law.to_internal(synthetic.SPT)
    assert np.all((lower <= values) & (values <= upper))


def test_the_regularized_form_keeps_the_projects_bounds_and_priors():
    law = get_law("spt-regularized")
    bounds = {p.name: (p.lower, p.upper) for p in law.params}
    assert bounds["b_train_s"][1] < 0 and bounds["b_train_g"][1] < 0
    assert bounds["b_gap_s"] == (0.0, 2.0) and bounds["a3"] == (-10.0, 10.0) and bounds["k1"][0] == 0.0
    assert law.priors == {"a2": (1.0, 2.0), "a3": (0.0, 5.0)} and not any(p.share for p in law.params)
    assert get_law("spt-regularized-gap").names[-1] == "c_gap" and not getattr(SPTOverfit, "priors", None)
    for half in ("spt-regularized-train", "spt-regularized-gap"):
        for p in get_law(half).params:
            if p.name in bounds:
                assert (p.lower, p.upper) == bounds[p.name], p.name


def test_a_parameter_on_a_bound_is_named():
    law = SPTOverfit()
    theta = law.to_internal({**synthetic.SPT, "b_train_g": synthetic.SPT["b_train_s"], "b_gap_g": 0.0})
    assert law.on_bounds(theta) == {"b_train_g": "upper", "b_gap_g": "upper"}
    assert law.on_bounds(law.to_internal(synthetic.SPT)) == {}


def test_the_halves_sum_to_the_spt_law():
    p = synthetic.SPT
    train = {name: p[name] for name in TRAIN_NAMES}
    gap = {name: p[name] for name in GAP_NAMES}
    inputs = {"tokens": INPUTS["tokens"], "fraction": INPUTS["fraction"]}
    summed = SPTTrain().predict(train, inputs) + SPTGap().predict(gap, inputs)
    np.testing.assert_allclose(SPTOverfit().predict(combine(train, gap), inputs), summed, rtol=1e-12)
    at_zero = {"tokens": INPUTS["tokens"], "fraction": np.zeros(N_ROWS)}
    np.testing.assert_array_equal(SPTGap().predict(gap, at_zero), 0.0)  # no memorization at delta=0
    # The regularized form's gap offset is folded into k0.
    offset = {**gap, "c_gap": 0.03}
    summed = SPTTrain().predict(train, inputs) + get_law("spt-regularized-gap").predict(offset, inputs)
    np.testing.assert_allclose(get_law("spt-regularized").predict(combine(train, offset), inputs), summed,
                               rtol=1e-12)
    np.testing.assert_allclose(get_law("spt-regularized-gap").predict(offset, at_zero), 0.03, rtol=1e-12)


@pytest.mark.parametrize("kind", ["huber", "mse"])
def test_batched_levenberg_marquardt_fits_independent_exponential_decays(kind):
    """Rows fit ``y = a exp(-b t)`` to their own data; bounds clip one row's answer."""
    t = np.linspace(0.0, 3.0, 40)
    truth = np.array([[2.0, 0.5], [1.0, 1.5], [3.0, 2.5]])
    noise = RNG.normal(0.0, 0.002, (3, len(t)))
    observed = truth[:, :1] * np.exp(-truth[:, 1:] * t) + noise

    def residual_jac(x, rows):
        pred = x[:, :1] * np.exp(-x[:, 1:] * t)
        jac = np.stack([np.exp(-x[:, 1:] * t), -t * pred], axis=-1)
        return pred - observed[rows], jac, np.ones_like(pred)

    lower, upper = np.array([0.0, 0.0]), np.array([10.0, 2.0])
    result = minimize_lm(residual_jac, np.ones((3, 2)), lower, upper, Objective(kind=kind, huber_delta=0.01))
    assert result.converged.all()
    np.testing.assert_allclose(result.x[:2], truth[:2], rtol=0.02)
    assert result.x[2, 1] == pytest.approx(2.0)  # its best b (2.5) lies beyond the bound
