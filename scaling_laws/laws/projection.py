"""Variable projection for start grids: the coefficients that enter a law linearly are solved, not searched.

The SPT laws and the fine-tune gain are sums of power terms and a log term. Once their exponents are fixed, the
coefficients (``A_train``, ``a1``, ``k0``, ...) enter linearly, so each point of a grid over the nonlinear
parameters gets its best coefficients by weighted least squares, and only the best grid points become starts of
the batched optimizer.
"""

from __future__ import annotations

import numpy as np

from scaling_laws.laws.base import Inputs, Law


def safe_log_fraction(fraction: np.ndarray) -> np.ndarray:
    """``log(delta)`` where ``delta > 0`` and 0 elsewhere (its factor ``delta**a2`` is 0 there)."""
    return np.log(np.where(fraction > 0, fraction, 1.0))


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
