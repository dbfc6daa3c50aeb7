"""What a fitted SPT law forecasts beyond its data: where a fraction's held-out loss turns up, and from which budget
a smaller fraction overtakes a larger one.

Both are read off the law's curves in tokens (a dense log-spaced grid, then a root or minimum refined between its
neighbours), so they work for any law with ``tokens`` and ``fraction`` inputs, the paper's or another form.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from scaling_laws.fitting.result import FitResult
from spt.errors import InputError

#: Grid points per decade of tokens before refinement (a minimum or crossing is bracketed within 0.5%).
_POINTS_PER_DECADE = 400


def _curve(fit: FitResult, fraction: float):
    law = fit.form

    def loss(log_tokens):
        tokens = np.exp(np.atleast_1d(np.asarray(log_tokens, dtype=float)))
        return law.predict(fit.params, {"tokens": tokens, "fraction": np.full(tokens.shape, float(fraction))})

    return loss


def _grid(low: float, high: float) -> np.ndarray:
    if not (0 < low < high and np.isfinite(high)):
        raise InputError(f"tokens range [{low:g}, {high:g}]: need 0 < low < high")
    count = max(3, int(_POINTS_PER_DECADE * np.log10(high / low)) + 1)
    return np.linspace(np.log(low), np.log(high), count)


def loss_minimum_tokens(fit: FitResult, fraction: float, low: float, high: float) -> float:
    """Tokens at which the held-out loss of ``fraction`` is lowest, within ``[low, high]``.

    Args:
        fit: A fit of a law with ``tokens`` and ``fraction`` inputs.
        fraction: Domain fraction of the curve (fraction in [0, 1]).
        low: Smallest budget considered (tokens).
        high: Largest budget considered (tokens).

    Returns:
        The budget of the minimum (tokens); ``inf`` when the loss still falls at ``high`` (the curve does not
        turn up within the range), ``low`` when it already rises there.
    """
    grid, loss = _grid(low, high), _curve(fit, fraction)
    values = loss(grid)
    best = int(np.nanargmin(values))
    if best == len(grid) - 1:
        return float("inf")
    if best == 0:
        return float(low)
    found = minimize_scalar(lambda x: float(loss(x)[0]), bounds=(grid[best - 1], grid[best + 1]), method="bounded",
                            options={"xatol": 1e-6})
    return float(np.exp(found.x))


def crossover_tokens(fit: FitResult, smaller: float, larger: float, low: float, high: float) -> float | None:
    """The budget from which the smaller fraction's held-out loss is below the larger one's, within ``[low, high]``.

    Early in training more domain data wins; once the larger fraction's domain set is repeated enough it overfits
    and the smaller fraction overtakes it. This is the first budget where the sign of
    ``loss(smaller) - loss(larger)`` turns from positive to negative.

    Args:
        fit: A fit of a law with ``tokens`` and ``fraction`` inputs.
        smaller: The smaller domain fraction.
        larger: The larger domain fraction.
        low: Smallest budget considered (tokens).
        high: Largest budget considered (tokens).

    Returns:
        The crossover budget (tokens), or None when the smaller fraction never overtakes within the range (or is
        already ahead at ``low``).
    """
    grid = _grid(low, high)
    first, second = _curve(fit, smaller), _curve(fit, larger)

    def difference(x):
        return float(first(x)[0] - second(x)[0])

    values = first(grid) - second(grid)
    turns = np.flatnonzero((values[:-1] > 0) & (values[1:] <= 0))
    if turns.size == 0:
        return None
    i = int(turns[0])
    if values[i + 1] == 0:
        return float(np.exp(grid[i + 1]))
    return float(np.exp(brentq(difference, grid[i], grid[i + 1], xtol=1e-9)))
