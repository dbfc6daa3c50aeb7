"""When the pilot cannot decide: a delta* band spanning most of the fractions searched, and the cheapest cells
that would narrow it.

A band wider than half the searched range (:data:`UNDECIDED_SHARE`) says the pilot does not tell the fractions
apart at that budget. Two kinds of cell narrow it, and both are cheap next to a new pilot: more seeds at the swept
fraction nearest delta* (repeats measure the run-to-run noise the band otherwise assumes, and average it down
where the decision is made), and one new fraction inside the widest gap of the grid that the band covers (where
the law's shape is its form's, not a measurement). The suggestion is written as the overrides a user appends to
``spt sweep CONFIG`` (``grid.domain_fraction=[...]`` and ``grid.repeat={...}``, see
:class:`spt.config.sweep.SweepGrid`); a rerun skips the cells already done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scaling_laws.decision.choice import FractionChoice
from scaling_laws.fitting.result import FitResult

#: A delta* interval wider than this share of the fractions searched is called undecided.
UNDECIDED_SHARE = 0.5
#: Extra seeds suggested at the swept fraction nearest delta*.
EXTRA_SEEDS = 2


@dataclass
class Narrowing:
    """Cells that would narrow delta*'s band.

    Attributes:
        repeat_fraction: The swept fraction nearest delta*, to repeat (fraction).
        seeds: The new seeds to run there (integers not used by the sweep's runs).
        new_fraction: A fraction inside the widest gap of the grid within the band (None: no gap there).
        gap: That gap's swept ends ``(low, high)`` (fractions), or None.
        fractions: The grid with ``new_fraction`` added (fractions).
    """

    repeat_fraction: float
    seeds: list[int]
    new_fraction: float | None
    gap: tuple[float, float] | None
    fractions: list[float]

    def overrides(self) -> list[str]:
        """The ``spt sweep CONFIG`` overrides that add these cells."""
        out = []
        if self.new_fraction is not None:
            out.append(f"grid.domain_fraction=[{', '.join(f'{f:g}' for f in self.fractions)}]")
        out.append(f"grid.repeat={{domain_fraction: {self.repeat_fraction:g}, "
                   f"seed: [{', '.join(str(s) for s in self.seeds)}]}}")
        return out


def undecided(choice: FractionChoice) -> bool:
    """Whether delta*'s interval spans more than :data:`UNDECIDED_SHARE` of the fractions searched."""
    if choice.fraction_interval is None:
        return False
    low, high = choice.fraction_interval
    searched = choice.fraction_range[1] - choice.fraction_range[0]
    return searched > 0 and (high - low) > UNDECIDED_SHARE * searched


def _used_seeds(fit: FitResult) -> set[int]:
    """Seeds named in the fitted runs' ids (``...-seed3``, as sweeps name cells); {0} when none are."""
    seeds = set()
    for run in (fit.decision or {}).get("curves") or []:
        found = re.search(r"seed(\d+)$", str(run.get("run_id", "")))
        if found:
            seeds.add(int(found.group(1)))
    return seeds or {0}


def _inside_gap(low: float, high: float) -> float:
    """A round fraction strictly inside ``(low, high)``: the midpoint to two significant digits (or more when
    rounding lands on an end)."""
    middle = 0.5 * (low + high)
    for digits in range(2, 8):
        rounded = float(f"{middle:.{digits}g}")
        if low < rounded < high:
            return rounded
    return middle


def narrowing(fit: FitResult, choice: FractionChoice) -> Narrowing | None:
    """The cheapest cells that would narrow delta*'s band (None without a band or swept fractions).

    The rule: :data:`EXTRA_SEEDS` new seeds at the swept fraction nearest delta*, and a fraction inside the
    widest gap between consecutive swept fractions that overlaps the band (by width in fraction).
    """
    swept = sorted({float(f) for f in (fit.decision or {}).get("fractions") or []})
    if choice.fraction_interval is None or not swept:
        return None
    low, high = choice.fraction_interval
    nearest = min(swept, key=lambda f: (abs(f - choice.fraction), f))
    start = max(_used_seeds(fit)) + 1
    gaps = [(a, b) for a, b in zip(swept, swept[1:]) if b > low and a < high]
    gap = max(gaps, key=lambda pair: (pair[1] - pair[0], -pair[0])) if gaps else None
    new = _inside_gap(*gap) if gap else None
    fractions = sorted(swept + ([new] if new is not None else []))
    return Narrowing(nearest, list(range(start, start + EXTRA_SEEDS)), new, gap, fractions)


def undecided_caveat(fit: FitResult, choice: FractionChoice) -> str | None:
    """The caveat for an undecided delta*, with the overrides that add the cells of :func:`narrowing`."""
    if not undecided(choice):
        return None
    low, high = choice.fraction_interval
    lo, hi = choice.fraction_range
    share = (high - low) / (hi - lo)
    line = (f"at T={choice.tokens:.3g}, delta*'s {100 * fit.level:g}% interval [{low:.3g}, {high:.3g}] spans "
            f"{100 * share:.0f}% of the fractions searched [{lo:g}, {hi:g}]: this pilot cannot decide delta* at "
            f"this budget")
    cells = narrowing(fit, choice)
    if cells is None:
        return line
    seeds = ", ".join(str(s) for s in cells.seeds)
    what = f"seeds {seeds} at delta={cells.repeat_fraction:g} (the swept fraction nearest delta*)"
    if cells.new_fraction is not None:
        what += (f" and delta={cells.new_fraction:g} (inside the widest gap of the grid in the band, "
                 f"{cells.gap[0]:g} to {cells.gap[1]:g})")
    quoted = " ".join(f"'{o}'" for o in cells.overrides())
    return (f"{line}; the cheapest cells to narrow it: {what}: run spt sweep CONFIG {quoted} (add --dry-run to see "
            f"the plan; the repeat replaces any grid.repeat of CONFIG, and done cells are skipped)")
