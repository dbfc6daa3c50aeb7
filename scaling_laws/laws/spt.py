"""Specialized-pretraining laws: the SPT overfitting law, its model-size extension, and the fine-tune gain.

These laws are sums of power laws and a log term, not a single log-sum-exp, so they are fitted through
``log(prediction)``. Several of their parameters enter linearly once the exponents are fixed; their start grids
use that (variable projection): for each grid point of the nonlinear parameters, the linear ones are solved by
weighted least squares, and only the best grid points become L-BFGS starts.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from scaling_laws.laws.base import Inputs, Law, Param

_LINEAR = (1.0,)  # placeholder grid of a parameter that variable projection solves for


def _safe_log_fraction(fraction: np.ndarray) -> np.ndarray:
    """``log(delta)`` where ``delta > 0`` and 0 elsewhere (its factor ``delta**a2`` is 0 there)."""
    return np.log(np.where(fraction > 0, fraction, 1.0))


#: Parameters of the SPT law by name, shared by the law and its two halves (:mod:`scaling_laws.laws.spt_parts`).
#: Signs follow the paper: the train loss falls with T at every delta (negative train exponents); the gap
#: grows with T when the mix is all domain data (``b_gap_s > 0``) and shrinks with T when there is none
#: (``b_gap_g < 0``), so the gap exponent ``b_gap(delta)`` changes sign at one fraction. The other bounds keep
#: the terms in a physical range (a floor that falls as domain data is added: ``k1 >= 0``) without touching
#: the values fits of real sweeps reach. Unbounded exponents let the power terms swap roles (a fit on small
#: delta once put ``b_gap_s`` at -2 and ``b_train_s`` at +0.19, so that a 5x larger delta "never overfit").
SPT_PARAMS = {p.name: p for p in (
    Param("A_train", 1e-10, 1e10, log=True, grid=_LINEAR, description="train-loss coefficient (nats/token)"),
    Param("b_train_s", -1.5, -0.01, grid=(-0.6, -0.3, -0.1), description="train exponent at delta=1 (< 0)"),
    Param("b_train_g", -1.5, -0.01, grid=(-0.6, -0.3, -0.1), description="train exponent at delta=0 (< 0)"),
    Param("b_gap_s", 0.0, 2.0, grid=(0.2, 0.6, 1.2), description="gap exponent at delta=1 (>= 0: the gap grows)"),
    Param("b_gap_g", -2.0, 0.0, grid=(-1.0, -0.4, -0.1), description="gap exponent at delta=0 (<= 0)"),
    Param("a1", 1e-30, 1e10, log=True, grid=_LINEAR, description="gap coefficient (nats/token)"),
    Param("a2", 0.05, 5.0, grid=(0.5, 1.0, 2.0), description="power of delta in the gap coefficient"),
    Param("a3", -10.0, 10.0, grid=(-3.0, 0.0, 3.0), description="exponential rate of delta in the gap"),
    Param("k0", -50.0, 50.0, grid=_LINEAR, description="train-loss floor offset (nats/token)"),
    Param("k1", 0.0, 10.0, grid=_LINEAR, description="weight of -log(delta + k2) in the floor (>= 0)"),
    Param("k2", 1e-4, 1.0, log=True, grid=(1e-3, 1e-2, 1e-1), description="fraction offset inside the log"),
    Param("k3", -20.0, 20.0, grid=_LINEAR, description="linear slope of the floor in delta (nats/token)"),
)}


#: Weak priors on the gap's shape in delta, ``name: (center, sd)``: a gap proportional to delta (``a2 = 1``) with
#: no extra exponential bend (``a3 = 0``). Over a pilot's single decade of tokens ``exp(a3 delta)`` and the gap
#: exponent's slope in delta are nearly the same function, so without a prior the fit drifted along that valley
#: to a bound (``a3 = +-10`` with ``b_gap_s`` at 0 or 2) on synthetic pilots fitted on small delta.
GAP_PRIORS = {"a2": (1.0, 2.0), "a3": (0.0, 5.0)}
#: Noise (log residuals) a prior weighs as: one pilot evaluation's.
PRIOR_NOISE = 0.005


class SPTOverfit(Law):
    """SPT overfitting law (Baek et al. 2026, section 5) for the domain test loss.

    With ``T`` pretraining tokens and ``delta`` the domain fraction:
    ``L_test(T, delta) = L_train + L_gap``; ``L_train = A_train T**b_train(delta) + C_train(delta)``;
    ``L_gap = A_gap(delta) T**b_gap(delta)``; ``b_x(delta) = delta b_x_s + (1 - delta) b_x_g``;
    ``A_gap(delta) = a1 delta**a2 exp(a3 delta)``; ``C_train(delta) = k0 - k1 log(delta + k2) - k3 delta``.

    ``a2`` is bounded above 0, so ``A_gap(0) = 0``: with no domain data in the mix there is no memorization gap.
    Bounds and signs: see ``SPT_PARAMS``. Fitting the train loss and the gap separately
    (:func:`scaling_laws.fitting.spt.fit_spt`) pins each half on its own data; this law is the sum they give.
    Inputs: ``tokens`` (T) and ``fraction`` (delta in [0, 1]).
    """

    name = "spt"
    inputs = ("tokens", "fraction")
    optimizer = "lm"
    priors = GAP_PRIORS
    prior_noise = PRIOR_NOISE
    keep_starts = 256
    linear_names = ("A_train", "a1", "k0", "k1", "k3")
    params = tuple(SPT_PARAMS.values())

    def _pieces(self, theta, inputs, gap_scale=1.0):
        """Train term, gap term, floor and the Jacobian of the prediction, for the 12 SPT parameters."""
        log_t = np.log(inputs["tokens"])
        frac = inputs["fraction"]
        log_frac = _safe_log_fraction(frac)
        (log_a_train, bts, btg, bgs, bgg, log_a1, a2, a3, k0, k1, log_k2, k3) = (
            theta[:, i : i + 1] for i in range(12)
        )
        train = np.exp(log_a_train + (frac * bts + (1.0 - frac) * btg) * log_t)
        shape = np.where(frac > 0, np.exp(a2 * log_frac + a3 * frac), 0.0)
        gap = np.exp(log_a1 + (frac * bgs + (1.0 - frac) * bgg) * log_t) * shape * gap_scale
        k2 = np.exp(log_k2)
        log_shift = np.log(frac + k2)
        floor = k0 - k1 * log_shift - k3 * frac
        ones = np.ones_like(train)
        jac = [
            train,
            train * frac * log_t,
            train * (1.0 - frac) * log_t,
            gap * frac * log_t,
            gap * (1.0 - frac) * log_t,
            gap,
            gap * log_frac,
            gap * frac,
            ones,
            -log_shift * ones,
            -k1 * k2 / (frac + k2) * ones,
            -frac * ones,
        ]
        return train, gap, floor, jac

    def predict_jac(self, theta, inputs):
        train, gap, floor, jac = self._pieces(theta, inputs)
        return train + gap + floor, jac

    def design(self, theta, inputs) -> np.ndarray:
        """Columns multiplying ``linear_names`` when the other parameters are fixed: ``(S, n, k)``."""
        unit = theta.copy()
        unit[:, [0, 5]] = 0.0  # A_train = a1 = 1
        train, gap, _, _ = self._pieces(unit, inputs)
        frac = inputs["fraction"]
        log_shift = np.log(frac + np.exp(theta[:, 10:11]))
        ones = np.ones_like(train)
        return np.stack([train, gap, ones, -log_shift, -frac * ones], axis=-1)

    def start_grid(self, inputs, target):
        return projected_starts(self, super().start_grid(inputs, target), inputs, target)

    def loss_at(self, values, tokens, fraction, **extra) -> np.ndarray:
        """Predicted domain test loss on the broadcast of ``tokens`` and ``fraction`` (public values)."""
        tokens, fraction = np.broadcast_arrays(np.asarray(tokens, float), np.asarray(fraction, float))
        return self.predict(values, {"tokens": tokens.ravel(), "fraction": fraction.ravel()}).reshape(tokens.shape)


def _spt_n_params() -> tuple[Param, ...]:
    # A coarser grid than SPT's, since two more nonlinear parameters multiply its size.
    coarse = {
        "b_train_s": (-0.5, -0.2), "b_train_g": (-0.5, -0.2), "b_gap_s": (0.2, 0.6, 1.2),
        "b_gap_g": (-0.8, -0.3, -0.05), "a2": (0.7, 1.5), "a3": (-3.0, 3.0), "k2": (1e-3, 1e-1),
    }
    base = tuple(replace(p, grid=coarse.get(p.name, p.grid)) for p in SPTOverfit.params)
    return base + (
        Param("A_N", 1e-8, 1e6, log=True, grid=_LINEAR, description="model-size coefficient (nats/token)"),
        Param("alpha_N", 0.0, 2.0, grid=(0.2, 0.5), description="model-size exponent of the train loss"),
        Param("gamma_N", -2.0, 2.0, grid=(-0.2, 0.1, 0.4), description="model-size exponent of the gap"),
    )


class SPTOverfitN(SPTOverfit):
    """Our extension of the SPT law with model size ``N`` (parameters).

    ``L_test(N, T, delta) = A_train T**b_train(delta) + C_train(delta) + A_N (N/N_ref)**-alpha_N
    + A_gap(delta) (N/N_ref)**gamma_N T**b_gap(delta)``, with ``N_ref = 1e8`` fixed (not fitted).

    Rationale: a Chinchilla-style capacity term ``A_N N**-alpha_N`` lowers the train loss as the model grows,
    and larger models memorize a repeated domain set faster, so the gap scales by ``(N/N_ref)**gamma_N``
    (``gamma_N > 0`` expected). At ``N = N_ref`` the form is the SPT law with ``k0`` shifted by ``A_N``.

    Status: designed here and checked only on synthetic data generated from this same form (tests recover its
    parameters); no sweeps over model size exist yet, so the form itself is unvalidated against real runs.
    Inputs: ``params`` (N), ``tokens`` (T) and ``fraction`` (delta).
    """

    name = "spt-n"
    inputs = ("params", "tokens", "fraction")
    optimizer = "lm"
    keep_starts = 256
    linear_names = SPTOverfit.linear_names + ("A_N",)
    params = _spt_n_params()
    reference_params = 1e8

    @property
    def constants(self):
        return {"N_ref": self.reference_params}

    def predict_jac(self, theta, inputs):
        log_size = np.log(inputs["params"] / self.reference_params)
        log_a_n, alpha_n, gamma_n = theta[:, 12:13], theta[:, 13:14], theta[:, 14:15]
        train, gap, floor, jac = self._pieces(theta, inputs, gap_scale=np.exp(gamma_n * log_size))
        size_term = np.exp(log_a_n - alpha_n * log_size)
        jac += [size_term, -size_term * log_size, gap * log_size]
        return train + gap + floor + size_term, jac

    def design(self, theta, inputs):
        log_size = np.log(inputs["params"] / self.reference_params)
        base = super().design(theta, inputs)
        base[..., 1] *= np.exp(theta[:, 14:15] * log_size)
        size = np.exp(-theta[:, 13:14] * log_size)
        return np.concatenate([base, size[..., None]], axis=-1)


class FinetuneGain(Law):
    """Post-fine-tune gain of the SPT paper: ``delta_loss(T) = a T**b + c`` (nats/token), fitted in linear space.

    Inputs: ``tokens`` (T, pretraining tokens); target column ``gain`` (loss before minus after fine-tuning,
    which may be negative, hence linear residuals by default).
    """

    name = "finetune-gain"
    inputs = ("tokens",)
    optimizer = "lm"
    target = "gain"
    residuals = "linear"
    keep_starts = 32
    linear_names = ("a", "c")
    params = (
        Param("a", -1e6, 1e6, grid=_LINEAR, description="coefficient (nats/token)"),
        Param("b", -3.0, 3.0, grid=tuple(np.linspace(-1.5, 1.5, 61)), description="exponent of T"),
        Param("c", -100.0, 100.0, grid=_LINEAR, description="offset (nats/token)"),
    )

    def predict_jac(self, theta, inputs):
        log_t = np.log(inputs["tokens"])
        power = np.exp(theta[:, 1:2] * log_t)
        pred = theta[:, 0:1] * power + theta[:, 2:3]
        return pred, [power, theta[:, 0:1] * power * log_t, np.ones_like(power)]

    def design(self, theta, inputs):
        power = np.exp(theta[:, 1:2] * np.log(inputs["tokens"]))
        return np.stack([power, np.ones_like(power)], axis=-1)

    def start_grid(self, inputs, target):
        return projected_starts(self, super().start_grid(inputs, target), inputs, target)


def projected_starts(law: Law, grid: np.ndarray, inputs: Inputs, target: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Fills a law's linear parameters by weighted least squares at each grid point; keeps the best starts.

    Rows are weighted by ``1/|target|`` for log-residual laws, so the solve approximates relative error.
    Coefficients are clipped into their bounds (a positive coefficient solved negative lands on its bound).

    Args:
        law: A law with ``design`` and ``linear_names``.
        grid: Internal start vectors ``(S, P)``; the linear entries are overwritten.
        inputs: Input columns.
        target: Fitted values ``(n,)``.
        chunk: Grid rows solved at once (bounds memory).

    Returns:
        At most ``law.keep_starts`` internal start vectors, best first.
    """
    index = [law.names.index(name) for name in law.linear_names]
    lower, upper = law.bounds()
    weight = 1.0 / np.abs(target) if law.residuals == "log" else np.ones_like(target)
    starts, scores = [], []
    for begin in range(0, len(grid), chunk):
        theta = grid[begin : begin + chunk].copy()
        design = law.design(theta, inputs) * weight[None, :, None]
        scale = np.linalg.norm(design, axis=1, keepdims=True)
        scale[scale == 0] = 1.0
        design = design / scale
        gram = design.transpose(0, 2, 1) @ design + 1e-10 * np.eye(len(index))
        rhs = design.transpose(0, 2, 1) @ (target * weight)[None, :, None]
        with np.errstate(all="ignore"):
            coef = np.linalg.solve(gram, rhs)[..., 0] / scale[:, 0, :]
        for column, i in enumerate(index):
            param = law.params[i]
            value = np.clip(np.nan_to_num(coef[:, column]), param.lower, param.upper)
            theta[:, i] = param.internal(value)
        with np.errstate(all="ignore"):
            pred = law.predict_many(theta, inputs)
        residual = (pred - target) * weight
        score = np.sum(residual**2, axis=1)
        starts.append(np.clip(theta, lower, upper))
        scores.append(np.where(np.isfinite(score), score, np.inf))
    starts, scores = np.concatenate(starts), np.concatenate(scores)
    order = np.argsort(scores, kind="stable")[: law.keep_starts]
    return starts[order[np.isfinite(scores[order])]]
