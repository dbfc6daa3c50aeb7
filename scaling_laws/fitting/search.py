"""Multi-start search on arrays: a batched optimizer from a grid and a SciPy polish of the best minima (the
bootstrap's batched refits are :mod:`scaling_laws.fitting.refits`).

The batched optimizer is the law's choice (``Law.optimizer``): L-BFGS for the Chinchilla-type laws, whose
4,500-start grids it was tuned on, and Levenberg-Marquardt (:mod:`scaling_laws.numerics.lm`) for the SPT laws, whose
curved valleys it crosses in tens of iterations instead of hundreds. Everything here works on internal parameter
vectors (see :mod:`scaling_laws.laws.base`); parameters held fixed are simply removed from the optimized vector.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from scaling_laws.laws.base import Inputs, Law
from scaling_laws.numerics.lbfgs import BatchResult, minimize_batched
from scaling_laws.numerics.lm import minimize_lm, objective_value
from scaling_laws.numerics.objective import Objective, value_and_grad

#: Minima polished besides the best one must end the batched phase within this factor of the best value.
_POLISH_WITHIN = 2.0
#: A start "reached the best" when its batched end value is within this relative distance of the best one.
AT_BEST_TOLERANCE = 1e-4
#: Distinct minima besides the best whose objectives a fit reports (relative to the best).
REPORTED_MINIMA = 4


class Problem:
    """A law, data, objective and fixed parameters, as a function of the free internal parameters.

    Args:
        law: The law form.
        inputs: Input columns.
        target: Observed values ``(n,)``, or ``(S, n)`` with one row per start (simulated bootstrap data).
        objective: What to minimize.
        fixed: Public values of parameters held fixed, by name.
        weights: Per-point multiplicities ``(n,)``, or ``(S, n)`` with one row per start (bootstrap).
        prior_noise: Residual size one prior weighs as (see :meth:`_set_priors`); default the law's
            ``prior_noise``, times the median target for linear residuals.
    """

    def __init__(self, law: Law, inputs: Inputs, target: np.ndarray, objective: Objective,
                 fixed: Mapping[str, float] | None = None, weights: np.ndarray | None = None,
                 prior_noise: float | None = None):
        self.law, self.inputs, self.target, self.objective = law, inputs, target, objective
        fixed = dict(fixed or {})
        self.free = np.array([i for i, p in enumerate(law.params) if p.name not in fixed], dtype=int)
        self.template = np.array([p.internal(fixed[p.name]) if p.name in fixed else np.nan for p in law.params])
        self.weights = np.ones(len(target)) if weights is None else np.asarray(weights, dtype=float)
        lower, upper = law.bounds()
        self.lower, self.upper = lower[self.free], upper[self.free]
        self._set_priors(np.asarray(target, dtype=float), prior_noise)

    def _set_priors(self, target: np.ndarray, prior_noise: float | None) -> None:
        """Weak priors of the law (``Law.priors``) as extra residuals ``scale * (x - center) / sd``.

        ``scale`` is the law's ``prior_noise`` in the fit's residual space (times the typical target for linear
        residuals), so a prior weighs like one evaluation whose noise is that of a pilot: it decides only what
        the data leave undecided (a flat valley, where the optimizer would otherwise drift to a bound).
        """
        priors = getattr(self.law, "priors", {})
        names = [self.law.params[i].name for i in self.free]
        chosen = [(names.index(n), c, sd) for n, (c, sd) in priors.items() if n in names]
        scale = prior_noise
        if scale is None:
            scale = getattr(self.law, "prior_noise", 0.0)
            if self.objective.residuals == "linear":
                scale *= float(np.median(np.abs(target))) if target.size else 0.0
        self.prior_index = np.array([i for i, _, _ in chosen], dtype=int)
        self.prior_center = np.array([c for _, c, _ in chosen], dtype=float)
        self.prior_scale = np.array([scale / sd for _, _, sd in chosen], dtype=float)

    def _with_priors(self, residuals, jac, weights, x_free):
        """Appends the prior residuals (weight 1) to residuals ``(k, n)``, Jacobian ``(k, n, F)`` and weights."""
        if self.prior_index.size == 0:
            return residuals, jac, weights
        k, free = len(x_free), x_free.shape[1]
        extra = self.prior_scale * (x_free[:, self.prior_index] - self.prior_center)
        extra_jac = np.zeros((k, self.prior_index.size, free))
        extra_jac[:, np.arange(self.prior_index.size), self.prior_index] = self.prior_scale
        return (np.concatenate([residuals, extra], axis=1), np.concatenate([jac, extra_jac], axis=1),
                np.concatenate([weights, np.ones_like(extra)], axis=1))

    def with_weights(self, weights: np.ndarray) -> Problem:
        """The same problem with other per-point (or per-start, per-point) weights."""
        clone = copy.copy(self)
        clone.weights = np.asarray(weights, dtype=float)
        return clone

    def with_targets(self, targets: np.ndarray) -> Problem:
        """The same problem with other observed values, ``(n,)`` or one row per start ``(S, n)``."""
        clone = copy.copy(self)
        clone.target = np.asarray(targets, dtype=float)
        return clone

    def _rows(self, array: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return array[rows] if array.ndim == 2 else array

    def residual_jac(self, x_free: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Residuals (prediction minus observation in the objective's space), their Jacobian ``(k, n, F)`` wrt
        the free parameters, and the weights, for free vectors ``x_free`` of the given batch rows."""
        theta = self.full(x_free)
        target = self._rows(self.target, rows)
        with np.errstate(all="ignore"):
            if self.objective.residuals == "log":
                pred, jac = self.law.log_predict_jac(theta, self.inputs)
                residuals = pred - np.log(target)
            else:
                pred, jac = self.law.predict_jac(theta, self.inputs)
                residuals = pred - target
        shape = residuals.shape
        stacked = np.stack([np.broadcast_to(jac[i], shape) for i in self.free], axis=-1)
        weights = np.broadcast_to(self._rows(self.weights, rows), shape)
        return self._with_priors(residuals, np.nan_to_num(stacked, nan=0.0, posinf=0.0, neginf=0.0), weights,
                                 x_free)

    def minimize(self, x0: np.ndarray, *, max_iter: int | None = None, ftol: float = 1e-9,
                 groups: np.ndarray | None = None) -> BatchResult:
        """Runs the law's batched optimizer from free starts ``x0`` ``(S, F)`` (one row per batch row); rows with
        the same ``groups`` label solve the same problem (Levenberg-Marquardt drops hopeless ones early); the
        default is one problem (a multi-start search)."""
        if getattr(self.law, "optimizer", "lbfgs") == "lm":
            groups = np.zeros(len(x0), dtype=int) if groups is None else groups
            return minimize_lm(self.residual_jac, x0, self.lower, self.upper, self.objective,
                               max_iter=max_iter or 200, ftol=ftol, groups=groups)
        return minimize_batched(self, x0, self.lower, self.upper, max_iter=max_iter or 500, ftol=ftol)

    def full(self, x_free: np.ndarray) -> np.ndarray:
        """Free vectors ``(S, F)`` to full internal vectors ``(S, P)``."""
        theta = np.tile(self.template, (len(x_free), 1))
        theta[:, self.free] = x_free
        return theta

    def __call__(self, x_free: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, grads = value_and_grad(self.law, self.full(x_free), self.inputs, self._rows(self.target, rows),
                                       self._rows(self.weights, rows), self.objective)
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
            prior = -self.prior_scale * (x[self.prior_index] - self.prior_center) * scale
            return np.concatenate([np.where(np.isfinite(resid), resid, 1e6), prior])

        def jacobian(x):
            pred, jac = evaluate(x)
            columns = [np.broadcast_to(jac[i], pred[None, :].shape)[0] for i in self.free]
            prior = np.zeros((self.prior_index.size, len(x)))
            prior[np.arange(self.prior_index.size), self.prior_index] = -self.prior_scale * scale
            return np.vstack([np.nan_to_num(-np.stack(columns, axis=1) * scale), prior])

        loss, f_scale = ("huber", self.objective.huber_delta) if self.objective.kind == "huber" else ("linear", 1.0)
        result = least_squares(residuals, x_free, jac=jacobian, bounds=(self.lower, self.upper), method="trf",
                               loss=loss, f_scale=f_scale, x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12,
                               max_nfev=500)
        if self.prior_index.size:  # the objective the batched optimizer saw, priors included
            r, _, w = self.residual_jac(result.x[None, :], np.zeros(1, dtype=int))
            return result.x, float(objective_value(r, w, self.objective)[0]), bool(result.status > 0)
        value, _ = value_and_grad(self.law, self.full(result.x[None, :]), self.inputs, self.target, counts,
                                  self.objective)
        return result.x, float(value[0]), bool(result.status > 0)


@dataclass
class SearchResult:
    """Best internal vector, its objective value, distinct local minima (best first), starts used and status.

    ``spread`` says how sure the search is to have found the global optimum (see :func:`optimum_spread`);
    ``starts`` holds the full internal start vectors of the batched phase (for :func:`refit_seeds`).
    """

    theta: np.ndarray
    value: float
    minima: np.ndarray
    n_starts: int
    converged: bool
    spread: dict | None = None
    starts: np.ndarray | None = None


def optimum_spread(batch_values: np.ndarray, minima_values: np.ndarray) -> dict:
    """How the starts ended: how many reached the best objective, and how far the next distinct minima are.

    Many independent starts ending at one best value is the evidence that it is the global optimum; a next
    distinct minimum within a fraction of a percent of it means the data hardly prefer one over the other (a
    flat valley), so parameters along it are not determined.

    Args:
        batch_values: End values of every start of the batched phase.
        minima_values: Objectives of the distinct minima kept (after the polish), best first.

    Returns:
        ``starts``, ``at_best`` (starts whose batched end value is within :data:`AT_BEST_TOLERANCE`, relative,
        of the best batched value), ``tolerance`` and ``next_minima`` (each next distinct minimum's objective
        relative to the best, minus 1; up to :data:`REPORTED_MINIMA`).
    """
    finite = batch_values[np.isfinite(batch_values)]
    best_batch = float(np.min(finite)) if finite.size else np.inf
    at_best = int(np.sum(finite <= best_batch + AT_BEST_TOLERANCE * abs(best_batch)))
    best = float(minima_values[0])
    scale = abs(best) if best != 0 else 1.0
    following = [float((v - best) / scale) for v in minima_values[1 : 1 + REPORTED_MINIMA]]
    return {"starts": int(len(batch_values)), "at_best": at_best, "tolerance": AT_BEST_TOLERANCE,
            "next_minima": following}


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


def search(problem: Problem, starts: np.ndarray, *, polish: int | None = None, keep: int = 8,
           max_iter: int | None = None) -> SearchResult:
    """Runs the batched optimizer from every start, then polishes the best distinct minima with SciPy's TRF.

    Args:
        problem: What to minimize.
        starts: Full internal start vectors ``(S, P)``; fixed entries are ignored.
        polish: How many of the best distinct minima to refine with :meth:`Problem.polish` (those within
            a factor ``_POLISH_WITHIN`` of the best batched value); default 8 after L-BFGS, 2 after
            Levenberg-Marquardt (which already ends tightly).
        keep: How many distinct minima to return (seeds for bootstrap refits).
        max_iter: Iteration limit of the batched phase (default: the optimizer's).

    Returns:
        The best point found.

    Raises:
        ValueError: When no start gives a finite objective.
    """
    x0 = free_starts(problem, starts)
    if polish is None:
        polish = 2 if getattr(problem.law, "optimizer", "lbfgs") == "lm" else 8
    # A loose stop for the thousands of starts (halves the time); the SciPy polish tightens the best few.
    batch = problem.minimize(x0, max_iter=max_iter, ftol=1e-10)
    order = distinct(batch.x, batch.f, max(keep, polish))
    if order.size == 0:
        raise ValueError(f"law {problem.law.name}: no start gives a finite objective on this data")
    points, values = batch.x[order].copy(), batch.f[order].copy()
    converged = batch.converged[order].copy()
    for i in range(min(polish, len(order))):
        if i > 0 and not values[i] <= _POLISH_WITHIN * values[0]:
            break  # far worse basins rarely win after polishing, and degenerate ones make TRF crawl
        polished, value, done = problem.polish(points[i])
        if value <= values[i]:
            points[i], values[i], converged[i] = polished, value, done or converged[i]
    ranking = np.argsort(values, kind="stable")
    points, values, converged = points[ranking], values[ranking], converged[ranking]
    return SearchResult(theta=problem.full(points[:1])[0], value=float(values[0]), minima=problem.full(points[:keep]),
                        n_starts=len(x0), converged=bool(converged[0]), spread=optimum_spread(batch.f, values),
                        starts=problem.full(x0))
