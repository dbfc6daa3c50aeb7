"""A sweep's two tables, read and written through :mod:`spt.storage` (local or ``s3://``): ``results`` (one row
per cell) and ``curves`` (one row per evaluation of every successful cell), each as CSV and Parquet.

The column lists belong to their reader (:mod:`scaling_laws.sweeps`), so the writer here and the fitter cannot
drift apart.
"""

from __future__ import annotations

import io

import pandas as pd

from scaling_laws.sweeps import CURVES_COLUMNS, RESULTS_COLUMNS
from spt import storage
from training.layout import CellLayout, SweepLayout
from training.sweep_cells import Cell
from training.trainer import read_curves

#: Columns of a run's curves.csv copied into the sweep's curves table as they are.
CURVE_EXTRAS = ("domain_train_loss", "domain_epochs", "phase", "lr")
#: Columns of results for people, not for fits: the Ray node a cell ran on (its last attempt's; empty when it
#: never ran, e.g. its mix could not be built).
RESULT_EXTRAS = ("node_id",)


def result_row(cell: Cell, layout: CellLayout, outcome: dict) -> tuple[dict, list[dict]]:
    """The cell's row in results, and its rows in curves (empty when it failed).

    ``finetune_domain_loss`` is the finetune's *test* split loss (never the validation loss it stopped on).
    """
    row = {"run_id": cell.run_id, "domain_fraction": cell.domain_fraction, "synthetic_share": cell.synthetic_share,
           "preset": cell.preset, "tokens": cell.total_tokens, "seed": cell.seed, "log_path": layout.log, **outcome}
    summary = storage.read_json(layout.run.summary) or {}
    finetune = storage.read_json(layout.finetune.summary) or {}
    row.update(params=summary.get("params"), domain_loss=summary.get("domain_loss"),
               general_loss=summary.get("general_loss"), finetune_domain_loss=finetune.get("test_domain_loss"))
    curves = []
    if outcome["status"] == "ok":
        for point in read_curves(layout.run.curves):
            curves.append({"run_id": cell.run_id, "domain_fraction": cell.domain_fraction, "preset": cell.preset,
                           "params": summary.get("params"), "seed": cell.seed, "tokens": int(point["tokens"]),
                           "domain_loss": point["domain_loss"], "general_loss": point["general_loss"],
                           **{column: point.get(column) for column in CURVE_EXTRAS}})
    return row, curves


def write_tables(layout: SweepLayout, rows: dict[str, dict], curves: dict[str, list[dict]]) -> None:
    """Rewrites results.{csv,parquet} and curves.{csv,parquet}, each file atomically, ordered by run id."""
    tables = {
        "results": pd.DataFrame([rows[k] for k in sorted(rows)], columns=[*RESULTS_COLUMNS, *RESULT_EXTRAS]),
        "curves": _numeric(pd.DataFrame([p for k in sorted(curves) for p in curves[k]], columns=list(CURVES_COLUMNS))),
    }
    for name, frame in tables.items():
        storage.write_text(layout.table(name, ".csv"), frame.to_csv(index=False))
        storage.write_bytes(layout.table(name, ".parquet"), frame.to_parquet(index=False))


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """Loss columns as numbers (rows read back from a run's CSV hold text), so Parquet gets one type each."""
    for column in frame.columns:
        if column not in ("run_id", "preset", "phase"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def load_tables(layout: SweepLayout) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """The rows of an earlier run of the sweep, by run id (empty when there is none)."""
    try:
        results = pd.read_csv(io.StringIO(storage.read_text(layout.results))).astype(object)
    except FileNotFoundError:
        return {}, {}
    rows = {r["run_id"]: {k: (None if pd.isna(v) else v) for k, v in r.items()} for r in results.to_dict("records")}
    curves: dict[str, list[dict]] = {}
    try:
        for point in pd.read_csv(io.StringIO(storage.read_text(layout.curves))).to_dict("records"):
            curves.setdefault(point["run_id"], []).append(point)
    except FileNotFoundError:
        pass
    return rows, curves


def read_results(layout: SweepLayout) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(storage.read_text(layout.results)))
