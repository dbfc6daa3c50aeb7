"""The two halves of the SPT law, fitted separately as the paper does: the train loss and the memorization gap.

A sweep that measures the loss on a fixed sample of domain *training* sequences (``domain_train_loss``) as well
as on held-out ones (``domain_loss``) splits the held-out loss into ``L_train`` (what the model has learned)
and ``L_gap = held-out - train`` (what it has memorized). Each half then pins its own exponents on its own data,
so the power terms cannot swap roles the way they can when only their sum is fitted.

- :class:`SPTTrain`: ``A_train T**b_train(delta) + k0 - k1 log(delta + k2) - k3 delta`` (log residuals).
- :class:`SPTGap`: ``a1 delta**a2 exp(a3 delta) T**b_gap(delta) + c_gap`` (linear residuals: a measured gap
  can be zero or negative). ``c_gap`` is not in the paper's law: it is the loss difference between the held-out
  sample and the training sample that memorization does not explain (they are different texts), visible as the
  gap of a delta = 0 run. It is folded into ``k0`` when the halves are summed (:func:`combine`), so the summed
  law predicts the held-out loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from scaling_laws.laws.base import Law, Param
from scaling_laws.laws.spt import GAP_PRIORS, PRIOR_NOISE, SPT_PARAMS, SPTOverfit, _safe_log_fraction, projected_starts

_LINEAR = (1.0,)
TRAIN_NAMES = ("A_train", "b_train_s", "b_train_g", "k0", "k1", "k2", "k3")
GAP_NAMES = ("a1", "b_gap_s", "b_gap_g", "a2", "a3")
# Start grids of the halves' nonlinear parameters (the linear ones are solved by least squares at each point).
_TRAIN_GRID = {"b_train_s": (-0.8, -0.4, -0.2, -0.1, -0.04), "b_train_g": (-0.8, -0.4, -0.2, -0.1, -0.04)}
_GAP_GRID = {"b_gap_s": (0.1, 0.4, 0.8, 1.5), "b_gap_g": (-1.5, -0.6, -0.2, -0.02), "a2": (0.5, 1.0, 2.0, 3.0),
             "a3": (-4.0, 0.0, 4.0)}


def _with_grids(names, grids) -> tuple[Param, ...]:
    return tuple(replace(SPT_PARAMS[n], grid=grids.get(n, SPT_PARAMS[n].grid)) for n in names)


class SPTTrain(Law):
    """The train half of the SPT law: loss on the domain training sample. Inputs: ``tokens``, ``fraction``."""

    name = "spt-train"
    inputs = ("tokens", "fraction")
    target = "domain_train_loss"
    optimizer = "lm"
    keep_starts = 64
    linear_names = ("A_train", "k0", "k1", "k3")
    params = _with_grids(TRAIN_NAMES, _TRAIN_GRID)

    def predict_jac(self, theta, inputs):
        log_t, frac = np.log(inputs["tokens"]), inputs["fraction"]
        log_a, bts, btg, k0, k1, log_k2, k3 = (theta[:, i : i + 1] for i in range(7))
        power = np.exp(log_a + (frac * bts + (1.0 - frac) * btg) * log_t)
        k2 = np.exp(log_k2)
        log_shift = np.log(frac + k2)
        ones = np.ones_like(power)
        pred = power + k0 - k1 * log_shift - k3 * frac
        jac = [power, power * frac * log_t, power * (1.0 - frac) * log_t, ones, -log_shift * ones,
               -k1 * k2 / (frac + k2) * ones, -frac * ones]
        return pred, jac

    def design(self, theta, inputs):
        log_t, frac = np.log(inputs["tokens"]), inputs["fraction"]
        power = np.exp((frac * theta[:, 1:2] + (1.0 - frac) * theta[:, 2:3]) * log_t)
        log_shift = np.log(frac + np.exp(theta[:, 5:6]))
        ones = np.ones_like(power)
        return np.stack([power, ones, -log_shift * ones, -frac * ones], axis=-1)

    def start_grid(self, inputs, target):
        return projected_starts(self, super().start_grid(inputs, target), inputs, target)


class SPTGap(Law):
    """The gap half of the SPT law: held-out minus train loss. Inputs: ``tokens``, ``fraction``."""

    name = "spt-gap"
    inputs = ("tokens", "fraction")
    target = "gap"
    residuals = "linear"
    optimizer = "lm"
    priors = GAP_PRIORS
    prior_noise = PRIOR_NOISE  # relative: the fit scales it by the held-out loss (a gap's noise is the losses')
    keep_starts = 64
    linear_names = ("a1", "c_gap")
    params = _with_grids(GAP_NAMES, _GAP_GRID) + (
        Param("c_gap", -5.0, 5.0, grid=_LINEAR,
              description="held-out minus training sample loss that memorization does not explain (nats/token)"),
    )

    def _power(self, theta, inputs):
        log_t, frac = np.log(inputs["tokens"]), inputs["fraction"]
        log_frac = _safe_log_fraction(frac)
        shape = np.where(frac > 0, np.exp(theta[:, 3:4] * log_frac + theta[:, 4:5] * frac), 0.0)
        return np.exp((frac * theta[:, 1:2] + (1.0 - frac) * theta[:, 2:3]) * log_t) * shape, log_t, log_frac

    def predict_jac(self, theta, inputs):
        frac = inputs["fraction"]
        unit, log_t, log_frac = self._power(theta, inputs)
        a1 = np.exp(theta[:, 0:1])
        gap = a1 * unit
        jac = [gap, gap * frac * log_t, gap * (1.0 - frac) * log_t, gap * log_frac, gap * frac,
               np.ones_like(gap)]
        return gap + theta[:, 5:6], jac

    def design(self, theta, inputs):
        unit = self._power(theta, inputs)[0]
        return np.stack([unit, np.ones_like(unit)], axis=-1)

    def start_grid(self, inputs, target):
        return projected_starts(self, super().start_grid(inputs, target), inputs, target)


def combine(train: Mapping[str, float], gap: Mapping[str, float]) -> dict[str, float]:
    """The SPT law's parameters from the two halves' (``c_gap`` folded into ``k0``)."""
    values = {name: float(train[name]) for name in TRAIN_NAMES}
    values.update({name: float(gap[name]) for name in GAP_NAMES})
    values["k0"] += float(gap["c_gap"])
    return values


def combine_samples(train: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of the halves (public values, law order) to the SPT law's ``(K, 12)``."""
    columns = {name: train[:, i] for i, name in enumerate(TRAIN_NAMES)}
    columns.update({name: gap[:, i] for i, name in enumerate(GAP_NAMES)})
    columns["k0"] = columns["k0"] + gap[:, len(GAP_NAMES)]
    return np.stack([columns[name] for name in SPTOverfit().names], axis=1)
