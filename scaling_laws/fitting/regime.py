"""Has the pilot reached the regime a power law describes? A check of the δ = 0 curves' bend.

At δ = 0 every SPT form is a power law with a floor, ``L(T) = A T**b + C`` (b < 0): its fall per e-fold of tokens,
``-dL/d ln T = -b A T**b``, shrinks as T grows. A pilot whose δ = 0 loss falls *faster* in the later half of its
token range than in the earlier half is still in its early transient (a small model leaving the plateau near the
unigram entropy, say). No form spt fits can bend that way, so a law fitted there extrapolates the pilot's steepest
stretch: on the forecast benchmark's pilot (the loss falling 0.23 nats per e-fold over its first half and 0.72 over
its second), every form forecast 4x its budget with a median error of 7-20%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Standard errors by which the later half's fall must exceed the earlier half's to count as steepening.
STEEPENING_SE = 2.0
#: Evaluations each half of a run needs for a slope.
MIN_POINTS_PER_HALF = 3
#: How the regime caveat begins (the cost decision repeats it).
CAVEAT_START = "the pilot has not reached the regime the law describes"


@dataclass(frozen=True)
class Bend:
    """The δ = 0 runs' mean slope (nats per e-fold of tokens) over the earlier and the later half of their log-token
    range, with the standard error of the difference."""

    fraction: float
    runs: int
    early: float
    late: float
    se: float

    @property
    def steepening(self) -> bool:
        return self.late < self.early - STEEPENING_SE * self.se

    def caveat(self) -> str:
        return (f"{CAVEAT_START}: the held-out loss of its delta = "
                f"{self.fraction:g} run(s) falls {-self.late:.2g} nats per e-fold of tokens over the later half of "
                f"their range against {-self.early:.2g} over the earlier half; a power law with a floor flattens "
                "instead, so the law extrapolates the pilot's steepest stretch and forecasts past the pilot are "
                "unreliable (train the pilot longer, until that fall slows)")


def _slope(log_tokens: np.ndarray, loss: np.ndarray) -> tuple[float, float] | None:
    """Least-squares slope of loss on log tokens and its squared standard error (None: too few points)."""
    if log_tokens.size < MIN_POINTS_PER_HALF or np.ptp(log_tokens) == 0:
        return None
    centred = log_tokens - log_tokens.mean()
    slope = float(centred @ (loss - loss.mean()) / (centred @ centred))
    residual = loss - loss.mean() - slope * centred
    variance = float(residual @ residual) / max(1, log_tokens.size - 2) / float(centred @ centred)
    return slope, variance


def pilot_bend(table: pd.DataFrame, loss_column: str = "domain_loss") -> Bend | None:
    """The bend of the runs at the smallest swept fraction (δ = 0 when swept), or None when they are too short.

    Each run's log-token range is split at its middle; the two halves' slopes are averaged over the runs, and the
    standard error of their difference combines the fits' errors with the runs' spread.
    """
    fractions = pd.to_numeric(table["fraction"])
    lowest = float(fractions.min())
    rows = table[np.isclose(fractions, lowest)]
    runs = rows.groupby("run_id") if "run_id" in rows.columns else [(None, rows)]
    early, late, variances = [], [], []
    for _, run in runs:
        log_tokens = np.log(pd.to_numeric(run["tokens"]).to_numpy(float))
        loss = pd.to_numeric(run[loss_column]).to_numpy(float)
        earlier = log_tokens <= (log_tokens.min() + log_tokens.max()) / 2
        first, second = _slope(log_tokens[earlier], loss[earlier]), _slope(log_tokens[~earlier], loss[~earlier])
        if first is None or second is None:
            continue
        early.append(first[0])
        late.append(second[0])
        variances.append(first[1] + second[1])
    if not early:
        return None
    differences = np.array(late) - np.array(early)
    spread = float(np.var(differences, ddof=1) / len(differences)) if len(differences) > 1 else 0.0
    se = float(np.sqrt(max(spread, float(np.mean(variances)) / len(differences))))
    return Bend(fraction=lowest, runs=len(early), early=float(np.mean(early)), late=float(np.mean(late)), se=se)


def is_regime_caveat(line: str) -> bool:
    return line.startswith(CAVEAT_START)


def regime_caveats(table: pd.DataFrame, loss_column: str = "domain_loss") -> list[str]:
    """A caveat when the pilot's lowest-fraction curves still steepen (see :class:`Bend`)."""
    bend = pilot_bend(table, loss_column)
    return [bend.caveat()] if bend is not None and bend.steepening else []
