"""Which evaluations of a sweep stand for a budget: the points the SPT law is fitted on.

The law answers "what loss does a run trained to T tokens reach". An evaluation in the middle of a run answers
that only when the run's state at that point does not depend on where it was going to end:

- ``warmup`` evaluations never do (the learning rate is still rising): always left out.
- ``stable`` evaluations (constant learning rate, of a ``constant`` or ``wsd`` schedule) do: a run stopped
  there is the same run whatever its planned length. Their losses are those at the peak rate, above what a
  cooled-down run reaches, by about the same amount for every delta. Except right after warmup: the warmup is
  sized for the run's full length, so at twice its length half of the tokens went into it, which no run trained
  to that budget would do. A stable evaluation stands for its budget only when the warmup took at most
  :data:`MAX_WARMUP_SHARE` of its tokens.
- ``decay``/``cooldown`` evaluations do only at their *end*: the last evaluation of a run whose rate decayed to
  the end (a ``wsd`` or ``cosine`` run), or of a cooldown branch. In between, a cosine run's evaluation at T is
  not what a run trained to T reaches (that run would have decayed earlier): such points are left out.

Stable points and ends of decays are not mixed in one fit: at the same T a cooled run's loss is lower, and the
law would bend to split the difference. The rule (:func:`select_points`): fit the ends of decays when every
fraction has them at three or more budgets (a sweep over budgets, as in the paper); else the stable points;
else (cosine runs, one budget each: too few ends to fit) every evaluation after warmup, with a loud caveat.
Runs written before the sweep recorded phases (empty ``phase``) are kept whole, with a caveat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from spt.errors import InputError

PHASES = ("warmup", "stable", "decay", "cooldown")
ANNEALING = ("decay", "cooldown")
#: Budgets (ends of decays) per fraction needed to fit on ends of decays alone.
MIN_BUDGETS = 3
#: Stable evaluations needed to fit on them (the SPT law has 12 parameters).
MIN_STABLE = 13
#: Largest share of an evaluation's tokens the warmup may have taken for it to stand for its budget. Runs trained
#: to a budget warm up over a few percent of it; a third is generous. Measured on the quickstart pilots (tiny
#: model, 22k-token warmup, 2026-11-30): the evaluations at 2x and 3x the warmup sit on a plateau (delta = 0:
#: 7.29, 7.22 nats at 41k and 61k tokens, then ~0.1 nats lower every 20k) that the law missed by 2-5%; leaving
#: them out cut the first-half validation error (fit up to 200k tokens, predict the rest; delta 0-0.5) from
#: 3.5% and 2.8% (median, seeds 0 and 1) to 1.7% and 1.7%. At a quarter, one more evaluation went (1.2% and 1.2%),
#: but synthetic pilots drawn from the law then lost enough of their range in T to misplace the gap exponent.
MAX_WARMUP_SHARE = 1 / 3


@dataclass
class PointSelection:
    """The evaluations kept for the fit, and why.

    Attributes:
        table: The kept rows (as given), in their original order.
        kind: ``"ends of decays"``, ``"stable phase"``, ``"all evaluations (no phases recorded)"`` or
            ``"after warmup (not valid budgets)"``.
        notes: What was left out, one line each.
        caveats: Limits this choice puts on the decision.
    """

    table: pd.DataFrame
    kind: str
    notes: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)


def _check_phases(phases: pd.Series, source: str) -> None:
    bad = [f"{source}: column 'phase', row {row + 1}: {value!r} (expected one of {', '.join(PHASES)}, or empty)"
           for row, value in enumerate(phases) if value and value not in PHASES]
    if bad:
        raise InputError(bad[:20] + ([f"... and {len(bad) - 20} more bad cells"] if len(bad) > 20 else []))


def point_kinds(table: pd.DataFrame, source: str = "curves") -> np.ndarray:
    """The kind of each row: ``warmup``, ``stable``, ``end`` (last evaluation of a decay or cooldown),
    ``mid-decay`` or ``unknown`` (no phase recorded).

    Rows are read in the order given within each run (``run_id``; without it, the whole table is one run), so
    a cooldown branch written after its stable checkpoint ends where its rows end.

    Raises:
        InputError: For a phase outside ``PHASES``.
    """
    phases = table["phase"].fillna("").astype(str).str.strip().str.lower() if "phase" in table.columns else (
        pd.Series([""] * len(table), index=table.index))
    _check_phases(phases.reset_index(drop=True), source)
    kinds = np.where(phases == "warmup", "warmup", np.where(phases == "stable", "stable", "unknown")).astype(object)
    runs = table["run_id"].astype(str).to_numpy() if "run_id" in table.columns else np.zeros(len(table), str)
    values = phases.to_numpy()
    for run in dict.fromkeys(runs.tolist()):
        rows = np.flatnonzero(runs == run)
        for position, row in enumerate(rows):
            if values[row] in ANNEALING:
                following = values[rows[position + 1]] if position + 1 < len(rows) else ""
                kinds[row] = "mid-decay" if following in ANNEALING else "end"
    return kinds.astype(str)


def warmup_tokens(table: pd.DataFrame, kinds: np.ndarray) -> np.ndarray:
    """Each row's run's warmup length in tokens (0 for a run without warmup evaluations).

    With a ``lr`` column, from a linear warmup's rate: ``tokens * peak / lr`` at a warmup evaluation, the peak
    being the run's largest rate. Without it, the last warmup evaluation's tokens (a lower bound).
    """
    tokens = pd.to_numeric(table["tokens"], errors="coerce").to_numpy(float)
    rates = (pd.to_numeric(table["lr"], errors="coerce").to_numpy(float) if "lr" in table.columns
             else np.full(len(table), np.nan))
    runs = table["run_id"].astype(str).to_numpy() if "run_id" in table.columns else np.zeros(len(table), str)
    out = np.zeros(len(table))
    for run in dict.fromkeys(runs.tolist()):
        rows = runs == run
        warm = rows & (kinds == "warmup")
        if not warm.any():
            continue
        peak = np.nanmax(rates[rows]) if np.isfinite(rates[rows]).any() else np.nan
        with np.errstate(all="ignore"):
            estimates = tokens[warm] * peak / rates[warm]
        estimates = estimates[np.isfinite(estimates) & (estimates > 0)]
        out[rows] = estimates.max() if estimates.size else tokens[warm].max()
    return out


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def select_points(table: pd.DataFrame, source: str = "curves") -> PointSelection:
    """The evaluations that stand for budgets (see the module docstring for the rule).

    Args:
        table: Evaluations with ``run_id``, ``fraction`` (or ``domain_fraction``), ``tokens`` and ``phase``.
        source: Name of the table in messages.

    Raises:
        InputError: For a phase outside ``PHASES``.
    """
    if "phase" not in table.columns:  # a table of runs, not a sweep's curves: every row is a budget
        return PointSelection(table, "all rows (no phase column)")
    kinds = point_kinds(table, source)
    fraction_column = "fraction" if "fraction" in table.columns else "domain_fraction"
    fractions = pd.to_numeric(table[fraction_column], errors="coerce").to_numpy(float)
    tokens = pd.to_numeric(table["tokens"], errors="coerce").to_numpy(float)
    notes = [f"{source}: {_count(int((kinds == 'warmup').sum()), 'warmup evaluation')} left out"] if (
        kinds == "warmup").any() else []
    unknown = kinds == "unknown"
    caveats = ([f"{_count(int(unknown.sum()), 'evaluation')} without a recorded schedule phase (a sweep written "
                f"before phases were recorded): each is taken as a valid budget; if those runs decayed their "
                f"learning rate (cosine), their mid-run losses are higher than runs trained to those budgets "
                f"reach"] if unknown.any() else [])
    early = (kinds == "stable") & (tokens < warmup_tokens(table, kinds) / MAX_WARMUP_SHARE)
    if early.any():
        notes.append(f"{source}: {_count(int(early.sum()), 'evaluation')} right after warmup left out (the warmup "
                     f"took more than a third of their tokens)")
        kinds = np.where(early, "warmup", kinds)
    ends, stable = kinds == "end", kinds == "stable"
    budgets = {f: len(set(tokens[ends & (fractions == f)])) for f in set(fractions[ends | stable | unknown])}
    if ends.any() and budgets and min(budgets.values()) >= MIN_BUDGETS:
        keep, kind = ends | unknown, "ends of decays"
        dropped = int((stable | (kinds == "mid-decay")).sum())
        if dropped:
            notes.append(f"{source}: {_count(dropped, 'evaluation')} before the end of a decay left out "
                         f"(each fitted point is a run trained and cooled down to its budget)")
    elif (stable | unknown).sum() >= MIN_STABLE and len(set(fractions[stable | unknown])) >= 3:
        keep, kind = stable | unknown, "stable phase" if stable.any() else "all evaluations (no phases recorded)"
        dropped = int((ends | (kinds == "mid-decay")).sum())
        if dropped:
            notes.append(f"{source}: {_count(dropped, 'evaluation')} in a learning-rate decay left out (their "
                         f"rate had decayed, unlike the stable-phase evaluations fitted)")
        if stable.any():
            caveats.append("the law is fitted on stable-phase evaluations (constant learning rate): its losses "
                           "are those before a final decay, which lowers every run's loss by a similar amount")
    else:
        keep, kind = kinds != "warmup", "after warmup (not valid budgets)"
        caveats.append("the runs decay their learning rate all along (cosine) and have too few budgets, so "
                       "evaluations in the middle of the decay were fitted: they are NOT valid budgets (a run "
                       "trained to that budget decays earlier and ends lower), which biases the law and delta*; "
                       "use a wsd or constant schedule, or sweep 3 or more budgets per fraction")
    return PointSelection(table[keep], kind, notes, caveats)
