"""Bootstrap intervals that always contain their point estimate.

A percentile interval of bootstrap replicates need not contain the estimate it belongs to: when the estimator
is biased or its distribution is lopsided (delta* near the edge of the searched range, a multiplier that is
infinite in some replicates), the estimate can fall outside the central 95% of the replicates. spt never
prints such a pair. The interval reported is the central ``level`` percentile interval of the replicates,
widened just enough to contain the point estimate; the widening only ever makes it more conservative.
"""

from __future__ import annotations

import numpy as np


def percentile_interval(draws, point: float, level: float) -> tuple[float, float] | None:
    """Central ``level`` interval of ``draws`` (NaN ignored, infinities kept), widened to contain ``point``.

    Args:
        draws: Bootstrap replicates of one quantity.
        point: The estimate from the data.
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
    if np.isfinite(point) or np.isinf(point):
        low, high = min(low, point), max(high, point)
    return low, high


def percentile_bands(draws: np.ndarray, point: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise :func:`percentile_interval` of ``draws`` ``(K, n)`` around ``point`` ``(n,)`` (interpolated
    percentiles; NaN where a column has no finite replicate)."""
    tail = 100.0 * (1.0 - level) / 2.0
    with np.errstate(all="ignore"):
        finite = np.where(np.isfinite(draws), draws, np.nan)
        if np.all(np.isnan(finite)):
            return np.full(draws.shape[1], np.nan), np.full(draws.shape[1], np.nan)
        low, high = np.nanpercentile(finite, [tail, 100.0 - tail], axis=0)
    return np.fmin(low, point), np.fmax(high, point)
