"""Bootstrap intervals, reported as the replicates give them, and what a point outside one means.

The interval of a parameter, a loss or a multiplier is the central ``level`` percentile interval of the
replicates; delta*'s is the basic interval (:func:`basic_interval`: the same percentiles reflected about the
estimate), which corrects for a bias the refits show instead of doubling it
(:data:`scaling_laws.decision.optimal.FRACTION_INTERVAL`). Neither is widened. An interval need not contain the
estimate it belongs to: when the estimator is biased (the refits land systematically to one side of the fit) or
unstable (the fit's minimum is not where refits of similar data go), the estimate falls outside the central
interval of its replicates (and then outside the basic interval too). That is a signal about the fit, so spt does
not hide it by widening the interval: it reports the interval as it is and says, in a caveat (its cause:
:data:`OUTSIDE_CAUSE`), that the estimate lies outside it and what that likely means. (Until 2026-12, spt widened
such intervals to contain the estimate; issue 23.)
"""

from __future__ import annotations

import numpy as np

#: What an estimate outside its own bootstrap interval most likely means, in the caveats' words.
OUTSIDE_CAUSE = ("the refits land away from the fit, a sign of a biased or unstable fit (the law's shape pulls "
                 "the estimate, or the fit's minimum is not where refits of similar data go)")


def percentile_interval(draws, level: float) -> tuple[float, float] | None:
    """Central ``level`` percentile interval of ``draws`` (NaN ignored, infinities kept).

    Args:
        draws: Bootstrap replicates of one quantity.
        level: Coverage, e.g. 0.95.

    Returns:
        ``(low, high)``, or None when no replicate is usable.
    """
    values = np.asarray(draws, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    tail = 100.0 * (1.0 - level) / 2.0
    # "lower"/"higher" never interpolate, so an infinite replicate stays infinite instead of turning NaN.
    low = float(np.percentile(values, tail, method="lower"))
    high = float(np.percentile(values, 100.0 - tail, method="higher"))
    return low, high


def basic_interval(point: float, draws, level: float, bounds: tuple[float, float] | None = None
                   ) -> tuple[float, float] | None:
    """The basic bootstrap interval of an estimate: its central ``level`` percentile interval reflected about it,
    ``(2 point - high, 2 point - low)``, cut to ``bounds`` (the values the quantity can take) when given.

    The percentile interval reads the replicates as draws of the truth; the basic interval reads their spread
    about the estimate as the spread of the estimate about the truth. The two differ when the replicates land
    to one side of the fit: the estimator is biased in the bootstrap's world, and the basic interval moves the
    other way, to correct for it, where the percentile interval moves with the bias and doubles it. It holds the
    estimate exactly when the percentile interval does.

    Returns:
        ``(low, high)``, or None when no replicate is usable.
    """
    central = percentile_interval(draws, level)
    if central is None:
        return None
    low, high = 2.0 * point - central[1], 2.0 * point - central[0]
    if bounds is not None:
        low, high = min(max(low, bounds[0]), bounds[1]), min(max(high, bounds[0]), bounds[1])
    return float(low), float(high)


def percentile_bands(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise central ``level`` intervals of ``draws`` ``(K, n)`` (interpolated percentiles of the finite
    replicates; NaN where a column has none)."""
    tail = 100.0 * (1.0 - level) / 2.0
    with np.errstate(all="ignore"):
        finite = np.where(np.isfinite(draws), draws, np.nan)
        if np.all(np.isnan(finite)):
            return np.full(draws.shape[1], np.nan), np.full(draws.shape[1], np.nan)
        low, high = np.nanpercentile(finite, [tail, 100.0 - tail], axis=0)
    return low, high


def outside(point: float | None, interval) -> bool:
    """Whether ``point`` lies outside ``interval`` (False when either is missing or the point is NaN)."""
    if point is None or interval is None or np.isnan(point):
        return False
    low, high = interval
    return bool(point < low or point > high)

