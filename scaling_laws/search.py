"""Multi-start search on arrays: batched L-BFGS from a grid, a SciPy polish of the best minima, and bootstrap refits.

Everything here works on internal parameter vectors (see :mod:`scaling_laws.laws`); parameters held fixed are
simply removed from the optimized vector.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from scaling_laws.laws import Inputs, Law
from scaling_laws.objective import Objective, value_and_grad
from scaling_laws.optimize import minimize_batched

#: Minima polished besides the best one must end the batched phase within this factor of the best value.
_POLISH_WITHIN = 2.0


class Problem:
    """A law, data, objective and fixed parameters, as a function of the free internal parameters.

    Args:
        law: The law form.
        inputs: Input columns.
        target: Observed values ``(n,)``.
        objective: What to minimize.
        fixed: Public values of parameters held fixed, by name.
        weights: Per-point multiplicities ``(n,)``, or ``(S, n)`` with one row per start (bootstrap).
    """

    def __init__(self, law: Law, inputs: Inputs, target: np.ndarray, objective: Objective,
                 fixed: Mapping[str, float] | None = None, weights: np.ndarray | None = None):
        self.law, self.inputs, self.target, self.objective = law, inputs, target, objective
        fixed = dict(fixed or {})
        self.free = np.array([i for i, p in enumerate(law.params) if p.name not in fixed], dtype=int)
        self.template = np.array([p.internal(fixed[p.name]) if p.name in fixed else np.nan for p in law.params])
        self.weights = np.ones(len(target)) if weights is None else np.asarray(weights, dtype=float)
        lower, upper = law.bounds()
        self.lower, self.upper = lower[self.free], upper[self.free]

    def with_weights(self, weights: np.ndarray) -> Problem:
        """The same problem with other per-point (or per-start, per-point) weights."""
        clone = copy.copy(self)
        clone.weights = np.asarray(weights, dtype=float)
        return clone

    def full(self, x_free: np.ndarray) -> np.ndarray:
        """Free vectors ``(S, F)`` to full internal vectors ``(S, P)``."""
        theta = np.tile(self.template, (len(x_free), 1))
        theta[:, self.free] = x_free
        return theta

    def __call__(self, x_free: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weights = self.weights[rows] if self.weights.ndim == 2 else self.weights
        values, grads = value_and_grad(self.law, self.full(x_free), self.inputs, self.target, weights, self.objective)
        return values, grads[:, self.free]

    def polish(self, x_free: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray, float, bool]:
        """Refines one free vector with SciPy's trust-region least squares (``least_squares``, method TRF).

        A Gauss-Newton-type method copes with the long curved valleys of these laws far better than L-BFGS.
        Its ``huber`` loss with ``f_scale = huber_delta`` is exactly the sum of Huber losses used here; the MSE
        is reproduced by scaling residuals. Integer multiplicities (bootstrap) repeat rows, which is exact too.

        Args:
            x_free: Start (free internal parameters).
            counts: Integer multiplicity of each row (default: this problem's weights, or 1).

        Returns:
            The refined vector, its objective value, and whether a convergence test (not the budget) stopped it.
        """
        if counts is None:
            counts = self.weights if self.weights.ndim == 1 else np.ones(len(self.target))
        rows = np.repeat(np.arange(len(self.target)), np.rint(counts).astype(int))
        inputs = {k: v[rows] for k, v in self.inputs.items()}
        target = self.target[rows]
        scale = np.sqrt(2.0 / len(rows)) if self.objective.kind == "mse" else 1.0
        log_space = self.objective.residuals == "log"
        observed = np.log(target) if log_space else target

        def evaluate(x):
            theta = self.full(x[None, :])
            with np.errstate(all="ignore"):
                pred, jac = (self.law.log_predict_jac if log_space else self.law.predict_jac)(theta, inputs)
            return pred[0], jac

        def residuals(x):
            resid = (observed - evaluate(x)[0]) * scale
            return np.where(np.isfinite(resid), resid, 1e6)

        def jacobian(x):
            pred, jac = evaluate(x)
            columns = [np.broadcast_to(jac[i], pred[None, :].shape)[0] for i in self.free]
            return np.nan_to_num(-np.stack(columns, axis=1) * scale)

        loss, f_scale = ("huber", self.objective.huber_delta) if self.objective.kind == "huber" else ("linear", 1.0)
        result = least_squares(residuals, x_free, jac=jacobian, bounds=(self.lower, self.upper), method="trf",
                               loss=loss, f_scale=f_scale, x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12,
                               max_nfev=500)
        value, _ = value_and_grad(self.law, self.full(result.x[None, :]), self.inputs, self.target, counts,
                                  self.objective)
        return result.x, float(value[0]), bool(result.status > 0)


@dataclass
class SearchResult:
    """Best internal vector, its objective value, distinct local minima (best first), starts used and status."""

    theta: np.ndarray
    value: float
    minima: np.ndarray
    n_starts: int
    converged: bool


def distinct(points: np.ndarray, values: np.ndarray, limit: int, tolerance: float = 1e-2) -> np.ndarray:
    """Indices of up to ``limit`` finite points, best value first, no two within ``tolerance`` (max-norm)."""
    chosen: list[int] = []
    for i in np.argsort(values, kind="stable"):
        if not np.isfinite(values[i]) or len(chosen) >= limit:
            break
        if all(np.max(np.abs(points[i] - points[j])) > tolerance for j in chosen):
            chosen.append(int(i))
    return np.array(chosen, dtype=int)


def free_starts(problem: Problem, starts: np.ndarray) -> np.ndarray:
    """Full internal starts to unique free vectors, clipped into the bounds."""
    free = np.clip(starts[:, problem.free], problem.lower, problem.upper)
    return np.unique(free, axis=0)


def search(problem: Problem, starts: np.ndarray, *, polish: int = 8, keep: int = 8,
           max_iter: int = 500) -> SearchResult:
    """Runs the batched L-BFGS from every start, then polishes the best distinct minima with SciPy's TRF.

    Args:
        problem: What to minimize.
        starts: Full internal start vectors ``(S, P)``; fixed entries are ignored.
        polish: How many of the best distinct minima to refine with :meth:`Problem.polish` (those within
            a factor ``_POLISH_WITHIN`` of the best batched value).
        keep: How many distinct minima to return (seeds for bootstrap refits).
        max_iter: Iteration limit of the batched phase.

    Returns:
        The best point found.

    Raises:
        ValueError: When no start gives a finite objective.
    """
    x0 = free_starts(problem, starts)
    # A loose stop for the thousands of starts (halves the time); the SciPy polish tightens the best few.
    batch = minimize_batched(problem, x0, problem.lower, problem.upper, max_iter=max_iter, ftol=1e-9)
    order = distinct(batch.x, batch.f, max(keep, polish))
    if order.size == 0:
        raise ValueError(f"law {problem.law.name}: no start gives a finite objective on this data")
    points, values = batch.x[order].copy(), batch.f[order].copy()
    converged = batch.converged[order].copy()
    for i in range(min(polish, len(order))):
        if i > 0 and not values[i] <= _POLISH_WITHIN * values[0]:
            break  # far worse basins rarely win after polishing, and degenerate ones make TRF crawl
        polished, value, converged[i] = problem.polish(points[i])
        if value <= values[i]:
            points[i], values[i] = polished, value
    ranking = np.argsort(values, kind="stable")
    points, values, converged = points[ranking], values[ranking], converged[ranking]
    return SearchResult(theta=problem.full(points[:1])[0], value=float(values[0]), minima=problem.full(points[:keep]),
                        n_starts=len(x0), converged=bool(converged[0]))


def bootstrap(problem: Problem, seeds: np.ndarray, replicates: int, rng: np.random.Generator,
              max_iter: int = 500) -> np.ndarray:
    """Refits on ``replicates`` resamples of the points (with replacement), all replicates in one batch.

    Each resample is a vector of multiplicities; each replicate starts from every seed (the distinct minima of
    the full-data fit) in one batched L-BFGS run, and its best end point is polished like the main fit.

    Args:
        problem: The full-data problem (its weights are replaced).
        seeds: Full internal vectors ``(m, P)`` to start each replicate from.
        replicates: Number of resamples ``K``.
        rng: Source of the resamples.
        max_iter: Iteration limit.

    Returns:
        Full internal vectors ``(K, P)``; a replicate with no finite end point is a row of NaN.
    """
    n = len(problem.target)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(float)
    seeds_free = seeds[:, problem.free]
    m = len(seeds_free)
    resampled = problem.with_weights(np.repeat(counts, m, axis=0))
    batch = minimize_batched(resampled, np.tile(seeds_free, (replicates, 1)), problem.lower, problem.upper,
                             max_iter=max_iter, ftol=1e-9)
    values = batch.f.reshape(replicates, m)
    best = np.argmin(values, axis=1)
    chosen = batch.x.reshape(replicates, m, -1)[np.arange(replicates), best]
    for k in range(replicates):
        if np.isfinite(values[k, best[k]]):
            chosen[k] = problem.polish(chosen[k], counts=counts[k])[0]
        else:
            chosen[k] = np.nan
    return problem.full(chosen)
