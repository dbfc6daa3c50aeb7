"""Bootstrap refits: every replicate of a fit refitted in one batch, from the fit's best minima and from starts of
its grid chosen far apart, with a count of how the refits ended (:class:`Refits`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaling_laws.fitting.search import AT_BEST_TOLERANCE, Problem, SearchResult

#: Best distinct minima of the fit each bootstrap refit starts from.
REFIT_MINIMA = 3
#: Starts of the fit's own grid each bootstrap refit starts from besides those minima, chosen far apart and far
#: from them (:func:`diverse_starts`), so that a replicate whose data prefer another basin can reach it.
REFIT_DIVERSE = 3


def diverse_starts(starts: np.ndarray, anchors: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to ``count`` rows of ``starts`` chosen far apart: each in turn the row farthest from the
    anchors and the rows already chosen (Euclidean distance, each coordinate scaled by its range in ``starts``)."""
    if count <= 0 or len(starts) == 0:
        return np.zeros(0, dtype=int)
    scale = np.ptp(starts, axis=0)
    scale[~(scale > 0)] = 1.0

    def distance(point):
        return np.sqrt(np.sum(((starts - point) / scale) ** 2, axis=1))

    nearest = np.min([distance(a) for a in anchors], axis=0) if len(anchors) else np.full(len(starts), np.inf)
    chosen: list[int] = []
    for _ in range(min(count, len(starts))):
        i = int(np.argmax(nearest))
        if not nearest[i] > 0:
            break
        chosen.append(i)
        nearest = np.minimum(nearest, distance(starts[i]))
    return np.array(chosen, dtype=int)


def refit_seeds(found: SearchResult, problem: Problem, minima: int | None = None,
                diverse: int | None = None) -> np.ndarray:
    """The starts of every bootstrap refit: the fit's best ``minima`` distinct minima (the best first, so that
    ``seeds[0]`` gives the fitted values) and ``diverse`` starts of its grid far from them and from each other.

    Starting only from the fit's minima, a replicate can only land in a basin the full data preferred; the grid
    starts let it find another one when its data prefer that. Defaults: :data:`REFIT_MINIMA`,
    :data:`REFIT_DIVERSE` (read at call time).
    """
    minima = REFIT_MINIMA if minima is None else minima
    diverse = REFIT_DIVERSE if diverse is None else diverse
    seeds = found.minima[:minima]
    if found.starts is None or diverse <= 0:
        return seeds
    free = problem.free
    picked = diverse_starts(found.starts[:, free], seeds[:, free], diverse)
    return np.vstack([seeds, found.starts[picked]])


@dataclass
class Refits:
    """Bootstrap refits and how they ended.

    Attributes:
        thetas: Full internal vectors ``(K, P)``; a row of NaN where the refit failed.
        failed: Refits with no finite end point from any start (dropped from the intervals).
        unconverged: Refits whose best start stopped at the iteration limit (kept).
        starts: Starts each refit ran from.
        from_other_starts: Refits whose best end beat the end reached from the fit's own minimum (by more than
            :data:`AT_BEST_TOLERANCE`, relative): refits that another start moved to another basin.
    """

    thetas: np.ndarray
    failed: int
    unconverged: int
    starts: int
    from_other_starts: int

    def to_dict(self) -> dict:
        return {"replicates": int(len(self.thetas)), "refits": int(len(self.thetas)), "failed": int(self.failed),
                "unconverged": int(self.unconverged), "starts": int(self.starts),
                "from_other_starts": int(self.from_other_starts)}


def refit(problem: Problem, seeds: np.ndarray, replicates: int, max_iter: int | None = None,
          ftol: float = 1e-8) -> Refits:
    """Refits ``replicates`` variants of a problem in one batch, each from every seed; keeps each one's best.

    The variants are the rows of ``problem.weights`` or ``problem.target`` (both ``(replicates, n)`` or
    shared): resampled multiplicities or simulated observations.

    Args:
        problem: The problem with per-replicate weights and/or targets.
        seeds: Full internal vectors ``(m, P)`` to start each replicate from (e.g. the full-data minima).
        replicates: Number of variants ``K``.
        max_iter: Iteration limit (default: the optimizer's).
        ftol: Relative decrease below which a replicate stops: looser than a fit's own, since a replicate only
            has to land where its data put it, not to the last digit (measured: at 1e-8 every replicate's
            objective is within 1e-6 of where 300 more iterations take it, in a fifth of the time).

    Returns:
        The refits (a replicate with no finite end point is a row of NaN) and how they ended.
    """
    seeds_free = seeds[:, problem.free]
    m = len(seeds_free)
    spread = problem.with_weights(np.repeat(problem.weights, m, axis=0) if problem.weights.ndim == 2
                                  else problem.weights)
    if problem.target.ndim == 2:
        spread = spread.with_targets(np.repeat(problem.target, m, axis=0))
    batch = spread.minimize(np.tile(seeds_free, (replicates, 1)), max_iter=max_iter, ftol=ftol,
                            groups=np.repeat(np.arange(replicates), m))
    values = batch.f.reshape(replicates, m)
    best = np.argmin(values, axis=1)
    rows = np.arange(replicates)
    chosen = batch.x.reshape(replicates, m, -1)[rows, best]
    finite = np.isfinite(values[rows, best])
    chosen[~finite] = np.nan
    converged = batch.converged.reshape(replicates, m)[rows, best]
    with np.errstate(invalid="ignore"):
        elsewhere = finite & ~(values[rows, best] >= values[:, 0] - AT_BEST_TOLERANCE * np.abs(values[:, 0]))
    return Refits(problem.full(chosen), failed=int(np.sum(~finite)), unconverged=int(np.sum(finite & ~converged)),
                  starts=m, from_other_starts=int(np.sum(elsewhere)))


def bootstrap(problem: Problem, seeds: np.ndarray, replicates: int, rng: np.random.Generator,
              max_iter: int | None = None) -> Refits:
    """Refits on ``replicates`` resamples of the points (with replacement), all replicates in one batch.

    This resamples single points, which is right when every point is an independent run (a table of final
    losses). Evaluations along one run are correlated; :mod:`scaling_laws.fitting.noise` resamples those.

    Args:
        problem: The full-data problem (its weights are replaced).
        seeds: Full internal vectors ``(m, P)`` to start each replicate from.
        replicates: Number of resamples ``K``.
        rng: Source of the resamples.
        max_iter: Iteration limit.

    Returns:
        The refits (see :func:`refit`).
    """
    n = len(problem.target)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(float)
    return refit(problem.with_weights(counts), seeds, replicates, max_iter=max_iter)
