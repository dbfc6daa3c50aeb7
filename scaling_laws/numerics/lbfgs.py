"""A batched L-BFGS with box bounds: thousands of independent starts advance together in NumPy.

Each start keeps its own curvature memory and its own backtracking line search; only the arithmetic is shared,
so one call of the objective evaluates every start that is still moving. Bounds are handled by projection:
coordinates sitting on a bound with the gradient pushing outward are frozen for that step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: ``fun_grad(x, rows) -> (values, grads)``: ``x`` is ``(k, P)``; ``rows`` are their indices in the batch.
FunGrad = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class BatchResult:
    """Final points ``x`` ``(S, P)``, values ``f`` ``(S,)``, iterations used and a per-start convergence flag."""

    x: np.ndarray
    f: np.ndarray
    iterations: int
    converged: np.ndarray


def _blocked(x, g, lower, upper):
    """Coordinates on a bound whose gradient points out of the box."""
    return ((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0))


def _two_loop(grad, s_hist, y_hist, rho):
    """L-BFGS direction ``-H grad`` for each row, newest memory pair first; empty slots have ``rho = 0``."""
    q = grad.copy()
    alphas = np.zeros(rho.shape)
    for j in range(rho.shape[1]):
        alphas[:, j] = rho[:, j] * np.einsum("sp,sp->s", s_hist[:, j], q)
        q -= alphas[:, j, None] * y_hist[:, j]
    yy = np.einsum("sp,sp->s", y_hist[:, 0], y_hist[:, 0])
    has_memory = rho[:, 0] > 0
    scale = np.where(has_memory, 1.0 / np.where(has_memory, rho[:, 0] * yy, 1.0), 0.0)
    # Without memory, take a gradient step of length at most 1 in the box's coordinates.
    scale = np.where(has_memory, scale, 1.0 / np.maximum(1.0, np.linalg.norm(grad, axis=1)))
    r = scale[:, None] * q
    for j in reversed(range(rho.shape[1])):
        beta = rho[:, j] * np.einsum("sp,sp->s", y_hist[:, j], r)
        r += s_hist[:, j] * (alphas[:, j] - beta)[:, None]
    return -r


def minimize_batched(
    fun_grad: FunGrad,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    memory: int = 10,
    max_iter: int = 500,
    gtol: float = 1e-10,
    ftol: float = 1e-11,
    max_halvings: int = 40,
    armijo: float = 1e-4,
) -> BatchResult:
    """Minimizes independent problems, one per row of ``x0``, with a projected L-BFGS.

    Args:
        fun_grad: Objective of each row and its gradient; rows never interact.
        x0: Starts ``(S, P)``; clipped into the bounds.
        lower: Lower bounds ``(P,)``.
        upper: Upper bounds ``(P,)``.
        memory: Curvature pairs kept per start.
        max_iter: Iteration limit.
        gtol: A start stops when its largest projected gradient entry is below this.
        ftol: A start stops when an accepted step lowers its value by at most ``ftol * |value|``.
        max_halvings: Line-search halvings before a start is declared stalled (and stopped).
        armijo: Sufficient-decrease constant of the line search.

    Returns:
        The final points and values. Starts with a non-finite initial value are returned unchanged with ``inf``.
    """
    x = np.clip(np.array(x0, dtype=float), lower, upper)
    num_starts, num_params = x.shape
    f, g = fun_grad(x, np.arange(num_starts))
    active = np.isfinite(f)
    converged = ~active
    s_hist = np.zeros((num_starts, memory, num_params))
    y_hist = np.zeros_like(s_hist)
    rho = np.zeros((num_starts, memory))
    iterations = 0
    while iterations < max_iter and active.any():
        iterations += 1
        rows = np.flatnonzero(active)
        xa, ga, fa = x[rows], g[rows], f[rows]
        blocked = _blocked(xa, ga, lower, upper)
        pg = np.where(blocked, 0.0, ga)
        direction = np.where(blocked, 0.0, _two_loop(pg, s_hist[rows], y_hist[rows], rho[rows]))
        slope = np.einsum("sp,sp->s", direction, ga)
        reset = ~(slope < 0)  # not a descent direction: forget the memory, step down the gradient
        if reset.any():
            rho[rows[reset]] = 0.0
            direction[reset] = -pg[reset] / np.maximum(1.0, np.linalg.norm(pg[reset], axis=1))[:, None]
        step = np.ones(rows.size)
        searching = np.ones(rows.size, dtype=bool)
        x_new, f_new, g_new = xa.copy(), fa.copy(), ga.copy()
        for _ in range(max_halvings):
            idx = np.flatnonzero(searching)
            trial = np.clip(xa[idx] + step[idx, None] * direction[idx], lower, upper)
            f_trial, g_trial = fun_grad(trial, rows[idx])
            decrease = np.einsum("sp,sp->s", ga[idx], trial - xa[idx])
            ok = np.isfinite(f_trial) & (f_trial <= fa[idx] + armijo * decrease)
            x_new[idx[ok]], f_new[idx[ok]], g_new[idx[ok]] = trial[ok], f_trial[ok], g_trial[ok]
            searching[idx[ok]] = False
            step[idx[~ok]] *= 0.5
            if not searching.any():
                break
        moved = ~searching
        s = x_new - xa
        y = g_new - ga
        sy = np.einsum("sp,sp->s", s, y)
        store = moved & (sy > 1e-12 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1))
        keep = rows[store]
        s_hist[keep, 1:], y_hist[keep, 1:], rho[keep, 1:] = s_hist[keep, :-1], y_hist[keep, :-1], rho[keep, :-1]
        s_hist[keep, 0], y_hist[keep, 0], rho[keep, 0] = s[store], y[store], 1.0 / sy[store]
        x[rows], f[rows], g[rows] = x_new, f_new, g_new

        pg_new = np.where(_blocked(x_new, g_new, lower, upper), 0.0, g_new)
        small_gradient = np.max(np.abs(pg_new), axis=1) < gtol
        small_decrease = moved & (fa - f_new <= ftol * np.abs(fa))
        done = small_gradient | small_decrease | searching
        converged[rows[small_gradient | small_decrease]] = True
        active[rows[done]] = False
    return BatchResult(x=x, f=f, iterations=iterations, converged=converged)
