"""The measured compute multiplier: how many fewer tokens SPT needed to reach what no domain data reached.

Definition (the paper's): the delta = 0 runs' best measured held-out domain loss ``L0`` is reached by them at
``T0`` tokens; a run with domain fraction delta first reaches ``L0`` at ``T_delta`` tokens; the multiplier is
``T0 / T_delta``. Everything comes from the measured curves (the fitted evaluations, averaged over runs that
repeat a fraction): ``T_delta`` is interpolated linearly in log tokens between the two evaluations around the
crossing, and nothing is extrapolated. A fraction whose curve never gets down to ``L0`` gets no number but the
words "not reached within the measured data"; one that is already below ``L0`` at its first evaluation gets a
lower bound.

Interval: each run's measured losses are perturbed by fresh draws of the fitted noise model of the held-out
loss (:mod:`scaling_laws.fitting.noise`: run offset plus AR(1) along the run), and the multiplier recomputed; the
central interval of those replicates, widened to contain the measured value, is reported. The spread of a
statistic of ``y + noise`` around its value at ``y`` approximates the spread of its value at ``y`` around the
truth (exactly so for a smooth statistic); this one has a minimum and a first crossing in it, so the interval
is approximate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from scaling_laws.fitting.intervals import percentile_interval
from scaling_laws.fitting.noise import RunNoise, simulate


@dataclass
class MeasuredMultiplier:
    """The measured multiplier of one swept fraction.

    Attributes:
        fraction: The swept delta.
        value: ``T0 / T_delta``; a lower bound when ``reached`` is ``"before the first evaluation"``; None when
            not reached.
        reached: ``"yes"``, ``"before the first evaluation"`` or ``"no"``.
        tokens: ``T_delta`` (None when not reached).
        interval: Central interval of the replicates (widened to contain ``value``), or None.
        baseline_loss: ``L0`` (nats/token).
        baseline_tokens: ``T0``.
    """

    fraction: float
    value: float | None
    reached: str
    tokens: float | None
    baseline_loss: float
    baseline_tokens: float
    interval: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        """Plain words: ``1.6x fewer tokens`` or ``not reached within the measured data``."""
        if self.reached == "no":
            return (f"not reached within the measured data (delta={self.fraction:g} never got to "
                    f"{self.baseline_loss:.4g})")
        bound = "at least " if self.reached != "yes" else ""
        return f"{bound}{self.value:.3g}x (delta={self.fraction:g} reached {self.baseline_loss:.4g} at " \
               f"{self.tokens:.3g} tokens; delta=0 at {self.baseline_tokens:.3g})"


def curves_record(table: pd.DataFrame, loss_column: str) -> list[dict]:
    """The fitted evaluations per run, for the fit JSON: ``run_id``, ``fraction``, ``tokens``, ``loss``.

    Without a ``run_id`` column every row is its own run (a table of final losses); the rows of one fraction
    then form its curve over budgets.
    """
    if "run_id" in table.columns:
        runs = table["run_id"].astype(str).str.strip()
    else:
        runs = pd.Series([f"delta={float(f):g}" for f in pd.to_numeric(table["fraction"])], index=table.index)
    out = []
    for run in dict.fromkeys(runs):
        rows = table[runs == run]
        tokens = pd.to_numeric(rows["tokens"]).to_numpy(float)
        order = np.argsort(tokens, kind="stable")
        out.append({"run_id": run, "fraction": float(pd.to_numeric(rows["fraction"]).iloc[0]),
                    "tokens": tokens[order].tolist(),
                    "loss": pd.to_numeric(rows[loss_column]).to_numpy(float)[order].tolist()})
    return out


class _Grouping:
    """Where each evaluation goes in the per-fraction mean curves (computed once, reused by every replicate)."""

    def __init__(self, runs: list[dict]):
        fractions = np.concatenate([[r["fraction"]] * len(r["tokens"]) for r in runs])
        tokens = np.concatenate([np.asarray(r["tokens"], float) for r in runs])
        keys, self.index = np.unique(np.stack([fractions, tokens], axis=1), axis=0, return_inverse=True)
        self.index = self.index.ravel()
        self.counts = np.bincount(self.index, minlength=len(keys))
        self.keys = keys

    def curves(self, losses: np.ndarray) -> dict[float, tuple[np.ndarray, np.ndarray]]:
        """Per fraction: sorted tokens and the mean loss of the runs evaluated there."""
        means = np.bincount(self.index, weights=losses, minlength=len(self.keys)) / self.counts
        return {float(f): (self.keys[self.keys[:, 0] == f, 1], means[self.keys[:, 0] == f])
                for f in np.unique(self.keys[:, 0])}


def _crossing(tokens: np.ndarray, loss: np.ndarray, target: float) -> tuple[float | None, str]:
    """First tokens where ``loss`` gets down to ``target`` (linear in log tokens), and how it was reached."""
    below = np.flatnonzero(loss <= target)
    if below.size == 0:
        return None, "no"
    i = int(below[0])
    if i == 0:
        return float(tokens[0]), "before the first evaluation"
    share = (loss[i - 1] - target) / (loss[i - 1] - loss[i])
    return float(np.exp(np.log(tokens[i - 1]) + share * (np.log(tokens[i]) - np.log(tokens[i - 1])))), "yes"


def _multipliers(curves) -> dict[float, tuple[float | None, str, float | None, float, float]] | None:
    if 0.0 not in curves:
        return None
    base_tokens, base_loss = curves[0.0]
    best = int(np.argmin(base_loss))
    loss0, tokens0 = float(base_loss[best]), float(base_tokens[best])
    out = {}
    for fraction, (tokens, loss) in curves.items():
        if fraction > 0:
            reached_at, how = _crossing(tokens, loss, loss0)
            out[fraction] = (tokens0 / reached_at if reached_at else None, how, reached_at, loss0, tokens0)
    return out


def measured_multipliers(runs: list[dict], noise: RunNoise | None = None, replicates: int = 0, level: float = 0.95,
                         seed: int = 0) -> list[MeasuredMultiplier]:
    """The measured multiplier of every swept fraction above 0 (empty without a delta = 0 run).

    Args:
        runs: Per-run curves as written by :func:`curves_record`.
        noise: Noise model of the held-out loss (log space) for the interval; None: no interval.
        replicates: Perturbed replicates for the interval.
        level: Coverage of the interval.
        seed: Seed of the perturbations.
    """
    if not runs:
        return []
    grouping = _Grouping(runs)
    flat = np.concatenate([np.asarray(r["loss"], float) for r in runs])
    point = _multipliers(grouping.curves(flat))
    if point is None:
        return []
    draws = {f: [] for f in point}
    if noise is not None and replicates > 0:
        groups = np.concatenate([[i] * len(r["tokens"]) for i, r in enumerate(runs)])
        order = np.concatenate([r["tokens"] for r in runs])
        noise_draws = simulate(noise, groups, order, replicates, np.random.default_rng(seed))
        for k in range(replicates):
            perturbed = flat * np.exp(noise_draws[k]) if noise.space == "log" else flat + noise_draws[k]
            for fraction, (value, *_rest) in _multipliers(grouping.curves(perturbed)).items():
                draws[fraction].append(np.inf if value is None else value)
    out = []
    for fraction, (value, how, reached_at, loss0, tokens0) in sorted(point.items()):
        interval = None
        if draws[fraction] and value is not None:
            interval = percentile_interval(draws[fraction], level)
        out.append(MeasuredMultiplier(fraction, value, how, reached_at, loss0, tokens0, interval))
    return out
