"""A finished cell's rows in the sweep's tables: its row in results, its evaluations in curves, and one row per
finetune in finetunes, read from the cell's folder (:class:`sweeps.layout.CellLayout`)."""

from __future__ import annotations

from spt import storage
from sweeps.cells import Cell
from sweeps.layout import CellLayout
from sweeps.tables import OPTIONAL_CURVES_COLUMNS
from training.trainer import read_curves


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
                           **{column: point.get(column) for column in OPTIONAL_CURVES_COLUMNS}})
    return row, curves


def finetune_rows(cell: Cell, layout: CellLayout) -> list[dict]:
    """The cell's rows in finetunes: one per finished finetune, the final model's and each snapshot's
    (``tokens``: the pretraining tokens of the model it started from; the loss is the test split's)."""
    run = storage.read_json(layout.run.summary) or {}
    rows = []
    for finetune in [layout.finetune, *(layout.finetune_at(t) for t in cell.finetune_tokens)]:
        summary = storage.read_json(finetune.summary)
        if summary is None:
            continue
        rows.append({"run_id": cell.run_id, "domain_fraction": cell.domain_fraction, "preset": cell.preset,
                     "seed": cell.seed, "tokens": summary.get("base_tokens") or run.get("tokens"),
                     "finetune_domain_loss": summary.get("test_domain_loss"),
                     "pretrained_domain_loss": summary.get("pretrained_domain_loss"), "finetune_dir": finetune.root})
    return sorted(rows, key=lambda row: row["tokens"])
