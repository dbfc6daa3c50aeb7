"""Sweep output folders as fit inputs, and the decision tables built from a fit of them.

A sweep writes ``results.csv`` (one row per run) and ``curves.csv`` (one row per evaluation of every successful
run) into its folder. The SPT law is fitted on the curves with ``fraction := domain_fraction`` and
``loss := domain_loss``: a small sweep has few runs, and the evaluations along each run are what give the fit
enough points. The notebook ``notebooks/choose_repetition_fraction.ipynb`` and ``spt fit --data FOLDER`` both
read a folder through :func:`load_sweep` and :func:`fit_table`, so they fit the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_laws.data import read_table
from scaling_laws.decisions import FractionChoice, optimal_fraction
from scaling_laws.result import FitResult, write_atomic
from spt.errors import InputError

RESULTS_FILE = "results.csv"
CURVES_FILE = "curves.csv"
RESULTS_COLUMNS = ("run_id", "domain_fraction", "preset", "params", "tokens", "seed", "domain_loss", "general_loss",
                   "finetune_domain_loss", "wall_seconds", "status", "error", "log_path")
CURVES_COLUMNS = ("run_id", "domain_fraction", "preset", "params", "seed", "tokens", "domain_loss", "general_loss",
                  "domain_train_loss", "domain_epochs", "phase", "lr")
#: Columns a sweep written before they existed may lack; read as empty.
OPTIONAL_CURVES_COLUMNS = ("domain_train_loss", "domain_epochs", "phase", "lr")
#: Columns of ``curves.csv`` that become the law's ``fraction`` and the fitted column.
FRACTION_COLUMN = "domain_fraction"
LOSS_COLUMN = "domain_loss"
STATUSES = ("ok", "failed")
#: Swept fractions below which the caveats call the law's shape in delta weakly determined.
WELL_DETERMINED_FRACTIONS = 5
#: Bootstrap replicates below which the caveats call the band rough.
MIN_REPLICATES = 50
#: Ids named in a note before the rest are counted.
_MAX_NAMED = 5


@dataclass
class Sweep:
    """A sweep output folder, read and checked.

    Attributes:
        folder: The folder.
        results: ``results.csv`` as text, one row per run.
        curves: The rows of ``curves.csv`` that are fitted, as text: evaluations of runs whose status is ``ok``,
            at a positive number of tokens (a loss before training says nothing about how it falls with tokens).
        notes: What was left out and why, one line each.
    """

    folder: Path
    results: pd.DataFrame
    curves: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def ok_runs(self) -> pd.DataFrame:
        """The runs whose status is ``ok``."""
        return self.results[self.results["status"].str.strip() == "ok"]


def resolve_path(path: str | Path) -> Path:
    """``path`` itself when absolute, else relative to the repository root (so notebooks run from any folder)."""
    from spt.environments import repo_root

    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path


def _require_columns(frame: pd.DataFrame, expected, path: Path) -> None:
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(c) for c in missing)} (a sweep writes {', '.join(expected)})")


def _bad_cells(frame: pd.DataFrame, path: Path, checks: dict[str, str], rows: np.ndarray) -> list[str]:
    """One line per bad cell among ``rows`` (positions): ``checks`` maps a column to ``fraction``, ``positive``
    or ``non-negative``. Rows are numbered from 1 over the file's data rows."""
    problems = []
    for column, rule in checks.items():
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        for row in rows:
            raw, value = str(frame[column].iloc[row]).strip(), values[row]
            if not np.isfinite(value):
                reason = "empty" if raw == "" else f"not a finite number ({raw!r})"
            elif rule == "fraction" and not 0.0 <= value <= 1.0:
                reason = f"{value:g} is outside [0, 1]"
            elif rule == "positive" and not value > 0:
                reason = f"{value:g} is not positive"
            elif rule == "non-negative" and value < 0:
                reason = f"{value:g} is negative"
            else:
                continue
            problems.append(f"{path}: column {column!r}, row {row + 1}: {reason}")
    return problems


def _named(ids) -> str:
    ids = list(ids)
    extra = len(ids) - _MAX_NAMED
    return ", ".join(ids[:_MAX_NAMED]) + (f" and {extra} more" if extra > 0 else "")


def load_sweep(folder: str | Path) -> Sweep:
    """Reads and checks a sweep output folder.

    Every bad cell of the columns the fit uses is reported (file, column, row) before anything is fitted. Runs
    whose status is ``failed`` and evaluations at 0 tokens are left out, with a note.

    Args:
        folder: The sweep's output folder (with ``results.csv`` and ``curves.csv``).

    Returns:
        The sweep.

    Raises:
        InputError: For a missing folder or file, missing columns, bad cells, or no successful run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (expected a sweep output folder with {RESULTS_FILE} "
                         f"and {CURVES_FILE})")
    paths = {name: folder / name for name in (RESULTS_FILE, CURVES_FILE)}
    for path in paths.values():
        if not path.is_file():
            raise InputError(f"{folder}: no {path.name} (a sweep output folder has {RESULTS_FILE} and {CURVES_FILE})")
    results, curves = read_table(paths[RESULTS_FILE]), read_table(paths[CURVES_FILE])
    _require_columns(results, RESULTS_COLUMNS, paths[RESULTS_FILE])
    _require_columns(curves, [c for c in CURVES_COLUMNS if c not in OPTIONAL_CURVES_COLUMNS], paths[CURVES_FILE])
    for column in OPTIONAL_CURVES_COLUMNS:
        if column not in curves.columns:
            curves[column] = ""

    status = results["status"].str.strip()
    problems = [f"{paths[RESULTS_FILE]}: column 'status', row {row + 1}: {value!r} (expected ok or failed)"
                for row, value in enumerate(status) if value not in STATUSES]
    problems += _bad_cells(results, paths[RESULTS_FILE], {FRACTION_COLUMN: "fraction"}, np.arange(len(results)))
    ok_ids = set(results.loc[status == "ok", "run_id"].str.strip())
    of_ok_runs = np.flatnonzero(curves["run_id"].str.strip().isin(ok_ids).to_numpy())
    problems += _bad_cells(curves, paths[CURVES_FILE], {FRACTION_COLUMN: "fraction", "params": "positive",
                                                         "tokens": "non-negative", LOSS_COLUMN: "positive"},
                           of_ok_runs)
    if problems:
        raise InputError(problems)
    if results.empty:
        raise InputError(f"{paths[RESULTS_FILE]}: no runs")
    if not ok_ids:
        raise InputError(f"{paths[RESULTS_FILE]}: no run has status ok ({len(results)} failed)")

    notes = []
    failed = results.loc[status == "failed", "run_id"].str.strip()
    if len(failed):
        notes.append(f"{len(failed)} failed run{'s' if len(failed) > 1 else ''} left out: {_named(failed)}")
    others = sorted(set(curves["run_id"].str.strip()) - ok_ids)
    if others:
        notes.append(f"{CURVES_FILE}: evaluations of {len(others)} run{'s' if len(others) > 1 else ''} without "
                     f"status ok in {RESULTS_FILE} left out: {_named(others)}")
    fitted = curves.iloc[of_ok_runs]
    at_zero = pd.to_numeric(fitted["tokens"]).to_numpy() == 0
    if at_zero.any():
        notes.append(f"{CURVES_FILE}: {int(at_zero.sum())} evaluation{'s' if at_zero.sum() > 1 else ''} "
                     f"at 0 tokens left out")
    fitted = fitted[~at_zero].reset_index(drop=True)
    silent = sorted(ok_ids - set(fitted["run_id"].str.strip()))
    if silent:
        notes.append(f"{len(silent)} ok run{'s have' if len(silent) > 1 else ' has'} no evaluations in "
                     f"{CURVES_FILE}: {_named(silent)}")
    return Sweep(folder=folder, results=results, curves=fitted, notes=notes)


def fit_table(sweep: Sweep) -> pd.DataFrame:
    """The curves as the fitter's input: ``domain_fraction`` renamed to ``fraction`` (text cells, as read).

    Fit it with ``fit(table, "spt", loss_column="domain_loss")``.

    Raises:
        InputError: When no evaluation is left to fit.
    """
    if sweep.curves.empty:
        raise InputError(f"{sweep.folder / CURVES_FILE}: no evaluations of successful runs to fit")
    return sweep.curves.rename(columns={FRACTION_COLUMN: "fraction"})


@dataclass
class FitData:
    """What ``spt fit``, ``spt predict`` and ``spt plot`` read from ``--data``.

    Attributes:
        table: The rows, as text.
        loss_column: The column fitted by default (None: the law's own target).
        notes: Lines to show the user (what a sweep folder left out).
    """

    table: pd.DataFrame
    loss_column: str | None = None
    notes: list[str] = field(default_factory=list)


def read_fit_data(path: str | Path, fraction_column: str | None = None) -> FitData:
    """Reads a CSV, or a sweep output folder through :func:`load_sweep` and :func:`fit_table`.

    Args:
        path: A CSV file or a sweep folder.
        fraction_column: Column of a CSV to use as the law's ``fraction`` (for a sweep ``curves.csv``:
            ``domain_fraction``). A folder always uses ``domain_fraction``.

    Raises:
        InputError: For a missing file or column, or a column name that would replace ``fraction``.
    """
    path = Path(path)
    if path.is_dir():
        if fraction_column not in (None, FRACTION_COLUMN):
            raise InputError(f"{path}: a sweep folder is fitted on {FRACTION_COLUMN}; drop --fraction-column "
                             f"{fraction_column} or pass a CSV")
        sweep = load_sweep(path)
        return FitData(fit_table(sweep), LOSS_COLUMN, sweep.notes)
    table = read_table(path)
    if fraction_column is not None and fraction_column != "fraction":
        if fraction_column not in table.columns:
            raise InputError(f"{path}: no column {fraction_column!r} (given as --fraction-column)")
        if "fraction" in table.columns:
            raise InputError(f"{path}: has a 'fraction' column already; --fraction-column {fraction_column} "
                             f"would replace it")
        table = table.rename(columns={fraction_column: "fraction"})
    return FitData(table)


def run_summary(sweep: Sweep) -> pd.DataFrame:
    """One row per swept cell (fraction, preset, model size, budget): runs, failures, mean final losses."""
    numeric = sweep.results.copy()
    for column in (FRACTION_COLUMN, "params", "tokens", "domain_loss", "general_loss", "finetune_domain_loss",
                   "wall_seconds"):
        numeric[column] = pd.to_numeric(numeric[column], errors="coerce")
    numeric["failed"] = numeric["status"].str.strip() == "failed"
    evaluations = sweep.curves.groupby(sweep.curves["run_id"].str.strip()).size()
    numeric["evaluations"] = numeric["run_id"].str.strip().map(evaluations).fillna(0).astype(int)
    # dropna=False: a cell that failed before its model was built has no model size, and must still show.
    return (numeric.groupby([FRACTION_COLUMN, "preset", "params", "tokens"], as_index=False, dropna=False)
            .agg(runs=("run_id", "size"), failed=("failed", "sum"), evaluations=("evaluations", "sum"),
                 domain_loss=("domain_loss", "mean"), general_loss=("general_loss", "mean"),
                 finetune_domain_loss=("finetune_domain_loss", "mean"), wall_seconds=("wall_seconds", "sum"))
            .sort_values([FRACTION_COLUMN, "params", "tokens"], ignore_index=True))


def resolve_budgets(fit: FitResult, budgets=None) -> list[float]:
    """The token budgets asked for, or (None) the largest fitted budget and 10x and 100x it.

    Raises:
        InputError: For an empty list or a budget that is not a positive number of tokens.
    """
    if budgets is None:
        largest = fit.data_ranges["tokens"][1]
        return [largest, 10.0 * largest, 100.0 * largest]
    budgets = [float(b) for b in np.atleast_1d(budgets)]
    bad = [b for b in budgets if not (np.isfinite(b) and b > 0)]
    if not budgets or bad:
        raise InputError(f"budgets={budgets}: give one or more positive numbers of tokens")
    return budgets


def budget_grid(fit: FitResult, budgets, points: int = 9) -> np.ndarray:
    """Budgets log-spaced from the smallest fitted one to the largest of the fit's and ``budgets`` (for plots)."""
    low, high = fit.data_ranges["tokens"]
    return np.geomspace(low, max(high, *budgets), points)


def model_size(fit: FitResult, params: float | None = None) -> float | None:
    """The model size a delta* is chosen for: None for ``spt``; ``params`` or the largest swept for ``spt-n``."""
    if "params" not in fit.form.inputs:
        return None
    return float(params) if params is not None else fit.data_ranges["params"][1]


def choose_fractions(fit: FitResult, budgets, *, params: float | None = None,
                     widen: bool = False) -> list[FractionChoice]:
    """delta* with its interval and compute multiplier at each budget (see :func:`optimal_fraction`)."""
    return [optimal_fraction(fit, float(t), params=model_size(fit, params), widen=widen) for t in budgets]


def choices_table(choices: list[FractionChoice], domain_tokens: float | None = None) -> pd.DataFrame:
    """The choices as a table; with ``domain_tokens`` (|D|), the epochs ``T delta* / |D|`` too."""
    nan2 = (np.nan, np.nan)
    table = pd.DataFrame({
        "tokens": [c.tokens for c in choices],
        "delta_star": [c.fraction for c in choices],
        "delta_low": [(c.fraction_interval or nan2)[0] for c in choices],
        "delta_high": [(c.fraction_interval or nan2)[1] for c in choices],
        "domain_loss": [c.loss for c in choices],
        "compute_multiplier": [c.compute_multiplier for c in choices],
        "multiplier_low": [(c.multiplier_interval or nan2)[0] for c in choices],
        "multiplier_high": [(c.multiplier_interval or nan2)[1] for c in choices],
    })
    if domain_tokens is not None:
        table["domain_epochs"] = [c.domain_epochs(domain_tokens) for c in choices]
    return table


def caveats(fit: FitResult, choices: list[FractionChoice] = (), sweep: Sweep | None = None) -> list[str]:
    """Plain-words limits of a decision from this fit and sweep, one line each (empty when none apply)."""
    lines = []
    fractions = sorted(pd.to_numeric(sweep.curves[FRACTION_COLUMN]).unique()) if sweep is not None else []
    if sweep is not None and len(fractions) < WELL_DETERMINED_FRACTIONS:
        lines.append(f"only {len(fractions)} domain fractions were swept; the law has {len(fit.params)} parameters, "
                     f"so its shape between and beyond them is weakly determined (sweep more fractions)")
    if sweep is not None:
        budgets = pd.to_numeric(sweep.ok_runs["tokens"]).groupby(sweep.ok_runs[FRACTION_COLUMN]).nunique()
        if (budgets <= 1).all():
            lines.append("each fraction was trained to a single budget, so the token dependence comes from "
                         "evaluations during one run, before its learning rate had decayed; those losses are higher "
                         "than runs trained to those budgets would reach")
    low, high = fit.data_ranges.get("fraction", [0.0, 1.0])
    if low > 0:
        lines.append(f"no run had delta = 0: the compute multiplier compares with a law extrapolated to delta = 0 "
                     f"(the smallest swept fraction is {low:g})")
    tokens_high = fit.data_ranges["tokens"][1]
    far = sorted({c.tokens for c in choices if c.tokens > tokens_high})
    if far:
        lines.append(f"budgets {', '.join(f'{t:.3g}' for t in far)} lie beyond the largest fitted budget "
                     f"{tokens_high:.3g} (up to {max(far) / tokens_high:.3g}x): delta* there is an extrapolation")
    for c in choices:
        edge = [end for end in c.fraction_range if abs(c.fraction - end) < 1e-6 * max(1.0, end)]
        if edge:
            lines.append(f"at T={c.tokens:.3g}, delta* sits at the edge {edge[0]:g} of the fractions searched "
                         f"[{c.fraction_range[0]:g}, {c.fraction_range[1]:g}]: the best delta may lie beyond it")
    replicates = int(fit.settings.get("bootstrap", 0) or 0)
    if replicates == 0:
        lines.append("no bootstrap: there is no uncertainty band (set bootstrap to 50 or more)")
    elif replicates < MIN_REPLICATES:
        lines.append(f"{replicates} bootstrap refits: the band is rough (use {MIN_REPLICATES} or more)")
    if not fit.settings.get("converged", True):
        lines.append("the best start of the fit did not converge (try more starts)")
    return lines


def write_sweep(folder: str | Path, results: pd.DataFrame, curves: pd.DataFrame) -> None:
    """Writes ``results`` and ``curves`` as a sweep does (CSV and Parquet), each file atomically.

    Raises:
        InputError: When a table lacks a column of the sweep format.
    """
    folder = Path(folder)
    for name, frame, columns in ((RESULTS_FILE, results, RESULTS_COLUMNS), (CURVES_FILE, curves, CURVES_COLUMNS)):
        _require_columns(frame, columns, folder / name)
        write_atomic(folder / name, frame.to_csv(index=False))
        partial = folder / f".{name}.parquet.tmp"
        frame.to_parquet(partial, index=False)
        partial.replace((folder / name).with_suffix(".parquet"))
