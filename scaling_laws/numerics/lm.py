"""A batched Levenberg-Marquardt with box bounds for sums of (Huber) losses of residuals.

Scaling-law fits are small nonlinear least-squares problems: a few hundred points, 5 to 15 parameters. A
Gauss-Newton method uses that structure (it needs only the residuals' Jacobian) and converges in tens of
iterations where a quasi-Newton method on the scalar objective needs hundreds: ``benchmarks/fit_speed.py`` fits
a 6-fraction x 20-evaluation pilot (two halves, 128 starts) and 200 bootstrap refits in 1.05 s this way and in
4.5 s with the batched L-BFGS (same delta* and interval).
Every start (or bootstrap replicate) keeps its own damping, so only the arithmetic is shared.

The Huber loss is handled by iteratively reweighted least squares: at each iterate the weight of a residual
``r`` is ``min(1, delta/|r|)``, whose quadratic model lies above the Huber loss and touches it at ``r``, so a
step that lowers the model lowers the objective too (a step is kept only if it lowers the true objective).
Bounds are handled by projection: a coordinate on a bound whose gradient points outward is frozen for a step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scaling_laws.numerics.lbfgs import BatchResult
from scaling_laws.numerics.objective import Objective

#: ``residual_jac(x, rows) -> (residuals (k, n), jacobian (k, n, P), weights (k, n))`` for rows ``x`` (k, P).
ResidualJac = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def objective_value(residuals: np.ndarray, weights: np.ndarray, objective: Objective) -> np.ndarray:
    """The objective of each row: sum of weighted Huber losses, or the weighted mean squared residual."""
    with np.errstate(all="ignore"):
        if objective.kind == "huber":
            delta = objective.huber_delta
            size = np.abs(residuals)
            loss = np.where(size <= delta, 0.5 * residuals**2, delta * (size - 0.5 * delta))
            value = np.sum(weights * loss, axis=-1)
        else:
            value = np.sum(weights * residuals**2, axis=-1) / np.sum(weights, axis=-1)
    return np.where(np.isfinite(value), value, np.inf)


def _model_weights(residuals, weights, objective):
    """Weights ``w`` with ``objective ~ 0.5 sum w r^2`` near the iterate (its gradient is exact)."""
    if objective.kind == "huber":
        size = np.abs(residuals)
        return weights * np.where(size <= objective.huber_delta, 1.0, objective.huber_delta / np.maximum(size, 1e-300))
    return 2.0 * weights / np.sum(weights, axis=-1, keepdims=True)


def _step(residuals, jac, weights, objective, x, lower, upper, damping):
    """One damped Gauss-Newton step per row, with outward-pushing coordinates on a bound frozen.

    Returns the trial point and the decrease the quadratic model predicts for it.
    """
    model = _model_weights(residuals, weights, objective)
    grad = np.matmul((model * residuals)[:, None, :], jac)[:, 0, :]
    scaled = jac * np.sqrt(model)[..., None]
    hess = np.matmul(scaled.transpose(0, 2, 1), scaled)
    free = ~(((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0)))
    diag = np.maximum(np.diagonal(hess, axis1=1, axis2=2), 1e-12 * np.max(np.abs(hess), axis=(1, 2))[:, None] + 1e-300)
    mask = free[:, :, None] & free[:, None, :]
    system = np.where(mask, hess, 0.0)
    index = np.arange(x.shape[1])
    system[:, index, index] = np.where(free, diag * (1.0 + damping[:, None]), 1.0)
    rhs = np.where(free, -grad, 0.0)
    with np.errstate(all="ignore"):
        try:
            delta = np.linalg.solve(system, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:  # one singular row: solve them one by one, a failed row does not move
            delta = np.zeros_like(rhs)
            for k in range(len(rhs)):
                try:
                    delta[k] = np.linalg.solve(system[k], rhs[k])
                except np.linalg.LinAlgError:
                    pass
    delta = np.where(np.isfinite(delta), delta, 0.0)
    trial = np.clip(x + delta, lower, upper)
    taken = trial - x
    predicted = -(np.einsum("kp,kp->k", grad, taken) + 0.5 * np.einsum("kp,kpq,kq->k", taken, hess, taken))
    return trial, predicted


def minimize_lm(
    residual_jac: ResidualJac,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    objective: Objective,
    *,
    max_iter: int = 200,
    ftol: float = 1e-10,
    xtol: float = 1e-9,
    max_damping: float = 1e12,
    groups: np.ndarray | None = None,
    prune_after: int = 20,
    prune_factor: float = 1.5,
) -> BatchResult:
    """Minimizes independent problems, one per row of ``x0``, by damped Gauss-Newton steps.

    Args:
        residual_jac: Residuals (prediction minus observation, in the objective's residual space), their
            Jacobian wrt the parameters and the per-point weights, for the given rows of the batch.
        x0: Starts ``(S, P)``; clipped into the bounds.
        lower: Lower bounds ``(P,)``.
        upper: Upper bounds ``(P,)``.
        objective: Huber or mean squared error (its residual space is the caller's business).
        max_iter: Iteration limit (each iteration evaluates every still-moving row once).
        ftol: A row stops when a kept step lowers its value by at most ``ftol * value``.
        xtol: ... or moves no coordinate by more than ``xtol * (1 + |x|)`` (a flat valley it would creep along).
        max_damping: A row whose damping grows beyond this (no step lowers it) stops.
        groups: Rows that solve the same problem from different starts share a label (default: every row is
            its own problem). From iteration ``prune_after`` on, a row whose value exceeds ``prune_factor``
            times its group's best stops: such rows sit in degenerate basins (an exponent on its bound traded
            against a huge offset) that they would creep along for hundreds of iterations.

    Returns:
        Final points, values, iterations used and a per-row convergence flag. Rows with a non-finite start
        are returned unchanged with value ``inf``.
    """
    x = np.clip(np.array(x0, dtype=float), lower, upper)
    rows_all = np.arange(len(x))
    residuals, jac, weights = residual_jac(x, rows_all)
    f = objective_value(residuals, weights, objective)
    active = np.isfinite(f)
    converged = ~active
    damping, growth = np.full(len(x), 1e-3), np.full(len(x), 2.0)
    labels = np.arange(len(x)) if groups is None else np.unique(groups, return_inverse=True)[1].ravel()
    iterations = 0
    while iterations < max_iter and active.any():
        iterations += 1
        if iterations > prune_after:
            best = np.full(labels.max() + 1, np.inf)
            np.minimum.at(best, labels, f)
            active &= ~(f > prune_factor * best[labels])
        rows = np.flatnonzero(active)
        trial, predicted = _step(residuals[rows], jac[rows], weights[rows], objective, x[rows], lower, upper,
                                 damping[rows])
        r_new, j_new, w_new = residual_jac(trial, rows)
        f_new = objective_value(r_new, w_new, objective)
        better = np.isfinite(f_new) & (f_new < f[rows])
        flat = rows[f_new == f[rows]]  # a direction the data do not see (k2 once k1 = 0): nothing left to gain
        converged[flat], active[flat] = True, False
        kept = rows[better]
        decrease = f[kept] - f_new[better]
        moved = np.max(np.abs(trial[better] - x[kept]) / (1.0 + np.abs(x[kept])), axis=1, initial=0.0)
        x[kept], f[kept], residuals[kept], jac[kept] = trial[better], f_new[better], r_new[better], j_new[better]
        # Nielsen's update: the better the quadratic model predicted the decrease, the less damping next time.
        gain = decrease / np.maximum(predicted[better], 1e-300)
        shrink = np.maximum(1.0 / 3.0, 1.0 - (2.0 * np.minimum(gain, 1.0) - 1.0) ** 3)
        damping[kept] = np.maximum(damping[kept] * shrink, 1e-12)
        growth[kept] = 2.0
        failed = rows[~better]
        damping[failed] *= growth[failed]
        growth[failed] *= 2.0
        small = (decrease <= ftol * np.maximum(f[kept], 1e-300)) | (moved <= xtol)
        converged[kept[small]] = True
        stuck = rows[~better][damping[rows[~better]] > max_damping]
        converged[stuck] = True
        active[kept[small]] = False
        active[stuck] = False
    return BatchResult(x=x, f=f, iterations=iterations, converged=converged)
