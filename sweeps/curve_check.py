"""Does a pilot sweep show what the SPT law needs? Two checks on its measured curves, per seed:

1. **δ* falls with the budget**: the δ with the lowest held-out domain loss at the smallest fitted budget (the
   first evaluation the SPT fit uses) is larger than the best δ at the largest budget.
2. **Overfitting shows**: the largest δ's held-out domain loss reaches its minimum before the end of its run and
   ends at least :data:`MIN_RISE` nats above that minimum.

``benchmarks/quickstart_curves.py`` prints these for a sweep folder; the quickstart prints them too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scaling_laws.fitting.points import select_points
from spt import storage
from spt.errors import InputError
from sweeps.layout import SweepLayout

#: Nats the largest δ's final domain loss must lie above its minimum for the upturn to count.
MIN_RISE = 0.05


@dataclass
class SeedCheck:
    """Both checks for one seed."""

    seed: int
    first_tokens: int
    first_best: float
    first_losses: dict[float, float]
    last_tokens: int
    last_best: float
    last_losses: dict[float, float]
    largest: float
    minimum: float
    minimum_tokens: int
    minimum_epochs: float | None
    final: float

    @property
    def falls(self) -> bool:
        return self.first_best > self.last_best

    @property
    def rise(self) -> float:
        return self.final - self.minimum

    @property
    def turns_up(self) -> bool:
        return self.minimum_tokens < self.last_tokens and self.rise >= MIN_RISE

    @property
    def shown(self) -> bool:
        return self.falls and self.turns_up


def fitted_points(curves: pd.DataFrame) -> pd.DataFrame:
    """Evaluations a fit uses (:func:`scaling_laws.fitting.points.select_points`: past warmup, not right after it) and
    after some training."""
    return select_points(curves[pd.to_numeric(curves["tokens"]) > 0]).table


def check_seed(curves: pd.DataFrame, seed: int) -> SeedCheck:
    """Both checks on one seed's curves (one run per δ, all to the same budget, evaluated at the same tokens)."""
    points = fitted_points(curves[curves["seed"] == seed])
    by_tokens = points.pivot_table(index="tokens", columns="domain_fraction", values="domain_loss")
    complete = by_tokens.dropna()
    if len(by_tokens.columns) < 2 or complete.empty:
        raise InputError(f"seed {seed}: needs at least two domain fractions evaluated at the same tokens")
    first, last = complete.iloc[0], complete.iloc[-1]
    largest = max(by_tokens.columns)
    curve = points[points["domain_fraction"] == largest].sort_values("tokens")
    at_min = curve.loc[curve["domain_loss"].idxmin()]
    epochs = at_min.get("domain_epochs")
    return SeedCheck(
        seed=int(seed), first_tokens=int(complete.index[0]), first_best=float(first.idxmin()),
        first_losses={float(k): float(v) for k, v in first.items()}, last_tokens=int(complete.index[-1]),
        last_best=float(last.idxmin()), last_losses={float(k): float(v) for k, v in last.items()},
        largest=float(largest), minimum=float(at_min["domain_loss"]), minimum_tokens=int(at_min["tokens"]),
        minimum_epochs=float(epochs) if epochs is not None and pd.notna(epochs) else None,
        final=float(curve["domain_loss"].iloc[-1]),
    )


def check_sweep(folder: str | Path) -> list[SeedCheck]:
    """Both checks for every seed of a sweep folder's ``curves.csv``.

    Raises:
        InputError: When the folder has no curves, or a seed has fewer than two fractions.
    """
    path = SweepLayout(str(folder)).curves  # local or s3://
    try:
        curves = pd.read_csv(io.StringIO(storage.read_text(path)))
    except FileNotFoundError:
        raise InputError(f"{folder}: no curves.csv (run the sweep first)") from None
    if curves.empty:
        raise InputError(f"{path}: no evaluations")
    return [check_seed(curves, seed) for seed in sorted(curves["seed"].unique())]


def format_check(check: SeedCheck) -> str:
    """Plain lines: the best δ early and late, and the largest δ's minimum and final loss."""
    yes = lambda ok: "yes" if ok else "NO"  # noqa: E731
    losses = lambda row: ", ".join(f"δ={k:g}: {v:.3f}" for k, v in sorted(row.items()))  # noqa: E731
    epochs = f", {check.minimum_epochs:.1f} domain epochs" if check.minimum_epochs is not None else ""
    return "\n".join([
        f"seed {check.seed}:",
        f"  best δ at the smallest fitted budget ({check.first_tokens:,} tokens): {check.first_best:g}  "
        f"[{losses(check.first_losses)}]",
        f"  best δ at the largest budget ({check.last_tokens:,} tokens): {check.last_best:g}  "
        f"[{losses(check.last_losses)}]",
        f"  best δ falls as the budget grows: {yes(check.falls)}",
        f"  largest δ={check.largest:g}: minimum domain loss {check.minimum:.3f} at {check.minimum_tokens:,} tokens"
        f"{epochs}; final {check.final:.3f} (+{check.rise:.3f} nats)",
        f"  its held-out domain loss turns upward (min before the end, final >= min + {MIN_RISE:g}): "
        f"{yes(check.turns_up)}",
    ])
