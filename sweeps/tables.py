"""A sweep's two tables, the one writer and the one reader of them, local or ``s3://`` (:mod:`spt.storage`).

A sweep writes ``results.csv`` (one row per run) and ``curves.csv`` (one row per evaluation of every successful
run) into its folder, and a sweep that finetunes ``finetunes.csv`` (one row per finetune: each budget a cell was
finetuned from, with ``finetune_at`` several per cell; results' ``finetune_domain_loss`` is the final model's). The SPT law is fitted on the curves with ``fraction := domain_fraction`` and
``loss := domain_loss``: a small sweep has few runs, and the evaluations along each run are what give the fit
enough points. The notebook ``notebooks/choose_repetition_fraction.ipynb`` and ``spt fit --data FOLDER`` both
read a folder through :func:`load_sweep` and :func:`fit_table`, so they fit the same rows. The sweep runner
(:mod:`sweeps.run`), the synthetic sweeps of the tests and the benchmarks all write through :func:`write_sweep`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_laws.decision.forms import fit_best_form
from scaling_laws.fitting.data import read_table
from scaling_laws.fitting.evaluations import fit_evaluations
from scaling_laws.fitting.result import FitResult
from spt import storage
from spt.environments import repo_root
from spt.errors import InputError
from sweeps.layout import SweepLayout

RESULTS_FILE = "results.csv"
CURVES_FILE = "curves.csv"
#: One row per finetune of a sweep that finetunes (each budget a cell was finetuned from); absent otherwise.
FINETUNES_FILE = "finetunes.csv"
FINETUNES_COLUMNS = ("run_id", "domain_fraction", "preset", "seed", "tokens", "finetune_domain_loss",
                     "pretrained_domain_loss", "finetune_dir")
RESULTS_COLUMNS = ("run_id", "domain_fraction", "synthetic_share", "preset", "params", "tokens", "seed", "domain_loss",
                   "general_loss", "finetune_domain_loss", "wall_seconds", "status", "error", "log_path")
#: Columns a sweep written before they existed may lack (and a sweep that does not vary them may leave empty).
OPTIONAL_RESULTS_COLUMNS = ("synthetic_share",)
CURVES_COLUMNS = ("run_id", "domain_fraction", "preset", "params", "seed", "tokens", "domain_loss", "general_loss",
                  "domain_train_loss", "domain_epochs", "phase", "lr")
#: Columns of results for people, not for fits: the Ray node a cell ran on (its last attempt's; empty when it
#: never ran, e.g. its mix could not be built).
RESULT_EXTRAS = ("node_id",)
#: Columns a sweep written before they existed may lack; read as empty.
OPTIONAL_CURVES_COLUMNS = ("domain_train_loss", "domain_epochs", "phase", "lr")
#: Columns of ``curves.csv`` that become the law's ``fraction`` and the fitted column.
FRACTION_COLUMN = "domain_fraction"
LOSS_COLUMN = "domain_loss"
STATUSES = ("ok", "failed")
#: Ids named in a note before the rest are counted.
_MAX_NAMED = 5


@dataclass
class Sweep:
    """A sweep output folder, read and checked.

    Attributes:
        folder: The folder (a local path or an ``s3://`` URL).
        results: ``results.csv`` as text, one row per run.
        curves: The rows of ``curves.csv`` that are fitted, as text: evaluations of runs whose status is ``ok``,
            at a positive number of tokens (a loss before training says nothing about how it falls with tokens).
        notes: What was left out and why, one line each.
        finetunes: ``finetunes.csv`` as text (one row per finetune and budget), or None when the sweep has none.
    """

    folder: str | Path
    results: pd.DataFrame
    curves: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    finetunes: pd.DataFrame | None = None

    @property
    def ok_runs(self) -> pd.DataFrame:
        """The runs whose status is ``ok``."""
        return self.results[self.results["status"].str.strip() == "ok"]


def resolve_path(path: str | Path) -> str | Path:
    """``path`` itself when absolute or an ``s3://`` URL, else relative to the repository root (so notebooks run
    from any folder)."""
    if storage.is_remote(str(path)):
        return storage.check(str(path), "path")
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path


def read_csv_text(location: str) -> pd.DataFrame:
    """A CSV at a local path or an ``s3://`` URL, every cell as text (:func:`scaling_laws.fitting.data.read_table`).

    Raises:
        InputError: When the file is missing or not a CSV.
    """
    if not storage.is_remote(location):
        return read_table(location)
    try:
        text = storage.read_text(location)
    except FileNotFoundError:
        raise InputError(f"{location}: no such file") from None
    try:  # the options of read_table
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{location}: not a readable CSV ({str(exc).strip()})") from None


def _require_columns(frame: pd.DataFrame, expected, path: Path) -> None:
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(c) for c in missing)} (a sweep writes {', '.join(expected)})")


def _bad_cells(frame: pd.DataFrame, path: Path, checks: dict[str, str], rows: np.ndarray) -> list[str]:
    """One line per bad cell among ``rows`` (positions): ``checks`` maps a column to ``fraction``, ``positive``
    or ``non-negative``, with ``?`` appended when an empty cell is allowed (an optional column). Rows are
    numbered from 1 over the file's data rows."""
    problems = []
    for column, rule in checks.items():
        optional, rule = rule.endswith("?"), rule.rstrip("?")
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        for row in rows:
            raw, value = str(frame[column].iloc[row]).strip(), values[row]
            if optional and raw in ("", "nan"):
                continue
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
        folder: The sweep's output folder (with ``results.csv`` and ``curves.csv``), local or ``s3://``.

    Returns:
        The sweep.

    Raises:
        InputError: For a missing folder or file, missing columns, bad cells, or no successful run.
    """
    folder = storage.check(str(folder), "folder")
    if not storage.is_folder(folder):
        raise InputError(f"{folder}: no such folder (expected a sweep output folder with {RESULTS_FILE} "
                         f"and {CURVES_FILE})")
    paths = {name: storage.join(folder, name) for name in (RESULTS_FILE, CURVES_FILE)}
    for name, path in paths.items():
        if not storage.is_file(path):
            raise InputError(f"{folder}: no {name} (a sweep output folder has {RESULTS_FILE} and {CURVES_FILE})")
    results, curves = read_csv_text(paths[RESULTS_FILE]), read_csv_text(paths[CURVES_FILE])
    _require_columns(results, [c for c in RESULTS_COLUMNS if c not in OPTIONAL_RESULTS_COLUMNS],
                     paths[RESULTS_FILE])
    for column in OPTIONAL_RESULTS_COLUMNS:
        if column not in results.columns:
            results[column] = ""
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
                                                         "tokens": "non-negative", LOSS_COLUMN: "positive",
                                                         "domain_train_loss": "positive?",
                                                         "domain_epochs": "non-negative?", "lr": "non-negative?"},
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
    return Sweep(folder=folder, results=results, curves=fitted, notes=notes, finetunes=_read_finetunes(folder))


def _read_finetunes(folder: str) -> pd.DataFrame | None:
    """``finetunes.csv`` of a sweep folder, checked (None when there is none)."""
    location = storage.join(folder, FINETUNES_FILE)
    if not storage.is_file(location):
        return None
    finetunes = read_csv_text(location)
    _require_columns(finetunes, FINETUNES_COLUMNS, location)
    problems = _bad_cells(finetunes, location, {FRACTION_COLUMN: "fraction", "tokens": "positive",
                                                "finetune_domain_loss": "positive?"}, np.arange(len(finetunes)))
    if problems:
        raise InputError(problems)
    return finetunes


def fit_table(sweep: Sweep) -> pd.DataFrame:
    """The curves as the fitter's input: ``domain_fraction`` renamed to ``fraction`` (text cells, as read).

    Fit it with :func:`scaling_laws.fitting.evaluations.fit_evaluations` (which keeps the valid budgets) or
    ``fit(table, "spt", loss_column="domain_loss")`` (every row).

    Raises:
        InputError: When no evaluation is left to fit.
    """
    if sweep.curves.empty:
        raise InputError(f"{storage.join(str(sweep.folder), CURVES_FILE)}: no evaluations of successful runs to fit")
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
    sweep: Sweep | None = None


def read_fit_data(path: str | Path, fraction_column: str | None = None) -> FitData:
    """Reads a CSV, or a sweep output folder through :func:`load_sweep` and :func:`fit_table`.

    Args:
        path: A CSV file or a sweep folder, local or ``s3://``.
        fraction_column: Column of a CSV to use as the law's ``fraction`` (for a sweep ``curves.csv``:
            ``domain_fraction``). A folder always uses ``domain_fraction``.

    Raises:
        InputError: For a missing file or column, or a column name that would replace ``fraction``.
    """
    path = storage.check(str(path), "--data")
    if storage.is_folder(path):
        if fraction_column not in (None, FRACTION_COLUMN):
            raise InputError(f"{path}: a sweep folder is fitted on {FRACTION_COLUMN}; drop --fraction-column "
                             f"{fraction_column} or pass a CSV")
        sweep = load_sweep(path)
        return FitData(fit_table(sweep), LOSS_COLUMN, sweep.notes, sweep)
    table = read_csv_text(path)
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


def write_sweep(folder: str | Path, results: pd.DataFrame, curves: pd.DataFrame,
                finetunes: pd.DataFrame | None = None) -> None:
    """Writes ``results``, ``curves`` and (given) ``finetunes`` in the sweep format (CSV and Parquet), each file
    atomically, to a local folder or an ``s3://`` one. Columns are put in the format's order; extra result columns
    (``node_id``) follow.

    Raises:
        InputError: When a table lacks a column of the sweep format.
    """
    folder = storage.check(str(folder), "folder")
    tables = [(RESULTS_FILE, results, RESULTS_COLUMNS), (CURVES_FILE, curves, CURVES_COLUMNS)]
    if finetunes is not None:
        tables.append((FINETUNES_FILE, finetunes, FINETUNES_COLUMNS))
    for name, frame, columns in tables:
        optional = OPTIONAL_RESULTS_COLUMNS if name == RESULTS_FILE else ()
        _require_columns(frame, [c for c in columns if c not in optional], storage.join(folder, name))
        extras = [c for c in (RESULT_EXTRAS if name == RESULTS_FILE else ()) if c in frame.columns]
        frame = frame.reindex(columns=[*columns, *extras])
        storage.write_text(storage.join(folder, name), frame.to_csv(index=False))
        storage.write_bytes(storage.join(folder, name.removesuffix(".csv") + ".parquet"), frame.to_parquet(index=False))


def fit_sweep(sweep: Sweep | str | Path, form: str = "spt", **options) -> FitResult:
    """:func:`scaling_laws.fitting.evaluations.fit_evaluations` on a sweep folder's curves (and its results and
    finetunes, for the fine-tuned runs); ``form="auto"`` ranks the forms by their rolling-origin forecasts first and fits the
    best (:func:`scaling_laws.decision.forms.fit_best_form`)."""
    sweep = sweep if isinstance(sweep, Sweep) else load_sweep(sweep)
    fitter = fit_best_form if form == "auto" else partial(fit_evaluations, form=form)
    result = fitter(fit_table(sweep), results=sweep.results, finetunes=sweep.finetunes,
                    source=storage.join(str(sweep.folder), CURVES_FILE), **options)
    result.settings["notes"] = sweep.notes + result.settings.get("notes", [])
    return result


def write_tables(layout: SweepLayout, rows: dict[str, dict], curves: dict[str, list[dict]],
                 finetunes: dict[str, list[dict]] | None = None) -> None:
    """Rewrites the sweep's tables from its cells' rows, ordered by run id (through :func:`write_sweep`);
    ``finetunes`` only when given (a sweep that finetunes)."""
    results = pd.DataFrame([rows[k] for k in sorted(rows)], columns=[*RESULTS_COLUMNS, *RESULT_EXTRAS])
    points = pd.DataFrame([p for k in sorted(curves) for p in curves[k]], columns=list(CURVES_COLUMNS))
    tuned = None if finetunes is None else _numeric(pd.DataFrame(
        [r for k in sorted(finetunes) for r in finetunes[k]], columns=list(FINETUNES_COLUMNS)))
    write_sweep(layout.root, results, _numeric(points), tuned)


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """Loss columns as numbers (rows read back from a run's CSV hold text), so Parquet gets one type each."""
    for column in frame.columns:
        if column not in ("run_id", "preset", "phase", "finetune_dir"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def load_tables(layout: SweepLayout) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """The rows of an earlier run of the sweep, by run id (empty when there is none)."""
    if not storage.is_file(layout.results):
        return {}, {}
    results = read_results(layout).astype(object)
    rows = {r["run_id"]: {k: (None if pd.isna(v) else v) for k, v in r.items()} for r in results.to_dict("records")}
    curves: dict[str, list[dict]] = {}
    if storage.is_file(layout.curves):
        for point in pd.read_csv(io.StringIO(storage.read_text(layout.curves))).to_dict("records"):
            curves.setdefault(point["run_id"], []).append(point)
    return rows, curves


def load_finetunes(layout: SweepLayout) -> dict[str, list[dict]]:
    """The finetune rows of an earlier run of the sweep, by run id (empty when there are none)."""
    if not storage.is_file(layout.finetunes):
        return {}
    finetunes: dict[str, list[dict]] = {}
    for row in pd.read_csv(io.StringIO(storage.read_text(layout.finetunes))).to_dict("records"):
        finetunes.setdefault(row["run_id"], []).append(row)
    return finetunes


def read_results(layout: SweepLayout) -> pd.DataFrame:
    """The sweep's results table with typed columns (as the runner reads it back)."""
    return pd.read_csv(io.StringIO(storage.read_text(layout.results)))
