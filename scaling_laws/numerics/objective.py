"""Fit objectives: the sum of Huber losses of log residuals (default) or the mean squared error, with gradients."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from scaling_laws.laws.base import Inputs, Law

#: Start-by-point entries evaluated at once: small blocks stay in cache (measured ~2.5x faster than one block).
_CHUNK_ELEMENTS = 8_192


@dataclass(frozen=True)
class Objective:
    """What a fit minimizes.

    Attributes:
        kind: ``"huber"``: the sum over points of Huber losses of the residuals (Besiroglu et al. 2024);
            ``"mse"``: the mean squared residual (what the SPT paper used).
        huber_delta: Residual size where the Huber loss turns from quadratic to linear.
        residuals: ``"log"``: ``log(observed) - log(predicted)``; ``"linear"``: ``observed - predicted``.
    """

    kind: str = "huber"
    huber_delta: float = 1e-3
    residuals: str = "log"

    def __post_init__(self):
        if self.kind not in ("huber", "mse"):
            raise ValueError(f"objective kind={self.kind!r}: must be 'huber' or 'mse'")
        if self.residuals not in ("log", "linear"):
            raise ValueError(f"residuals={self.residuals!r}: must be 'log' or 'linear'")
        if not self.huber_delta > 0:
            raise ValueError(f"huber_delta={self.huber_delta}: must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


def residuals(law: Law, theta: np.ndarray, inputs: Inputs, target: np.ndarray, space: str) -> np.ndarray:
    """Residuals ``(S, n)`` of internal vectors ``theta`` in ``"log"`` or ``"linear"`` space."""
    with np.errstate(all="ignore"):
        if space == "log":
            return np.log(target) - law.log_predict_jac(np.atleast_2d(theta), inputs)[0]
        return target - law.predict_jac(np.atleast_2d(theta), inputs)[0]


def value_and_grad(
    law: Law,
    theta: np.ndarray,
    inputs: Inputs,
    target: np.ndarray,
    weights: np.ndarray,
    objective: Objective,
) -> tuple[np.ndarray, np.ndarray]:
    """Objective values ``(S,)`` and gradients ``(S, P)`` wrt internal parameters.

    Args:
        law: The law form.
        theta: Internal parameter vectors ``(S, P)``.
        inputs: Input columns, each ``(n,)``.
        target: Observed values, ``(n,)`` shared by all rows or ``(S, n)`` (simulated bootstrap data).
        weights: Per-point multiplicities, ``(n,)`` shared by all rows or ``(S, n)`` (bootstrap replicates).
        objective: What to minimize.

    Returns:
        Values and gradients; a row whose prediction is invalid (non-positive under log residuals, overflow)
        gets value ``inf`` and gradient 0.
    """
    num_starts, num_params = theta.shape
    num_points = np.shape(target)[-1]
    weights = np.broadcast_to(weights, (num_starts, num_points))
    targets = np.broadcast_to(target, (num_starts, num_points))
    chunk = max(1, _CHUNK_ELEMENTS // num_points)
    values = np.empty(num_starts)
    grads = np.empty((num_starts, num_params))
    for begin in range(0, num_starts, chunk):
        rows = slice(begin, begin + chunk)
        values[rows], grads[rows] = _value_and_grad(law, theta[rows], inputs, targets[rows], weights[rows],
                                                    objective)
    return values, grads


def _value_and_grad(law, theta, inputs, target, weights, objective):
    with np.errstate(all="ignore"):
        if objective.residuals == "log":
            pred, jac = law.log_predict_jac(theta, inputs)
            resid = np.log(target) - pred
        else:
            pred, jac = law.predict_jac(theta, inputs)
            resid = target - pred
        if objective.kind == "huber":
            delta = objective.huber_delta
            size = np.abs(resid)
            quadratic = size <= delta
            loss = np.where(quadratic, 0.5 * resid**2, delta * (size - 0.5 * delta))
            slope = np.where(quadratic, resid, delta * np.sign(resid))
            values = np.sum(weights * loss, axis=1)
            upstream = weights * slope
        else:
            total = np.sum(weights, axis=1, keepdims=True)
            values = np.sum(weights * resid**2, axis=1) / total[:, 0]
            upstream = 2.0 * weights * resid / total
        # d resid / d theta = -jac
        shape = upstream.shape
        grads = np.stack([-np.einsum("sn,sn->s", upstream, np.broadcast_to(c, shape)) for c in jac], axis=1)
    bad = ~np.isfinite(values) | ~np.all(np.isfinite(grads), axis=1)
    values[bad] = np.inf
    grads[bad] = 0.0
    return values, grads
