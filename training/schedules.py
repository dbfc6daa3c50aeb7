"""Learning-rate schedules as Composer schedulers (multipliers of the peak rate, over training progress)."""

from __future__ import annotations

import math


def lr_multiplier(kind: str, progress: float, warmup: float, decay: float, final_ratio: float) -> float:
    """The multiplier of the peak learning rate at ``progress`` in [0, 1] of the run.

    Args:
        kind: ``cosine`` (warmup, then cosine to ``final_ratio``), ``wsd`` (warmup, constant, then a linear decay
            over the last ``decay`` share) or ``constant`` (warmup, then constant).
        progress: fraction of training done.
        warmup: warmup share of the run.
        decay: WSD decay share of the run.
        final_ratio: final learning rate over peak.
    """
    if warmup > 0 and progress < warmup:
        return progress / warmup
    if kind == "constant":
        return 1.0
    if kind == "cosine":
        span = max(1e-12, 1.0 - warmup)
        t = min(1.0, (progress - warmup) / span)
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
    decay_start = 1.0 - decay
    if progress < decay_start or decay <= 0:
        return 1.0
    t = min(1.0, (progress - decay_start) / decay)
    return 1.0 - (1.0 - final_ratio) * t


def lr_phase(kind: str, progress: float, warmup: float, decay: float) -> str:
    """The schedule's phase at ``progress``: ``warmup``, ``stable`` (constant peak rate) or ``decay``.

    A constant schedule is ``stable`` from the end of warmup to the end of the run; a cosine one is ``decay``
    after warmup (its losses are not those of shorter runs, so a fitter should not read budgets off them); WSD is
    ``stable`` until its final ``decay`` share. (``cooldown`` is reserved for short decay branches taken from a
    stable run's checkpoints, which spt does not make yet.)
    """
    if warmup > 0 and progress < warmup:
        return "warmup"
    if kind == "constant" or (kind == "wsd" and (decay <= 0 or progress <= 1.0 - decay)):
        return "stable"
    return "decay"


class ProgressScheduler:
    """A Composer scheduler (``(state, ssr) -> multiplier``) driven by the fraction of max_duration done."""

    def __init__(self, kind: str, warmup: float, decay: float, final_ratio: float):
        self.kind, self.warmup, self.decay, self.final_ratio = kind, warmup, decay, final_ratio

    def __call__(self, state, ssr: float = 1.0) -> float:
        progress = state.get_elapsed_duration()
        progress = 0.0 if progress is None else float(progress.value) / ssr
        return lr_multiplier(self.kind, progress, self.warmup, self.decay, self.final_ratio)
