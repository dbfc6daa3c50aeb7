"""MLflow runs of a sweep: one parent run for the sweep, one child run per cell.

The driver opens the parent run and each cell's child run (tagged and with the cell's grid values as params),
then writes the store, the experiment and the child's run id into the cell's train config, so the cell's
``spt train`` (in a Ray worker, in another process) logs its metrics and artifacts into that child run; the cell's
finetune becomes a child of it. The ids are recorded in ``<output_dir>/tracking.json``: a rerun of the sweep
continues the same parent, and a cell rerun (a failure retried) continues its child; a cell rerun with changed
configs (``--force``) gets a new child.
"""

from __future__ import annotations

import sys

from spt import storage
from spt.config import SweepConfig
from sweeps.cells import Cell
from sweeps.layout import SweepLayout
from training.tracking import (
    TrackedRun, client, existing_run, experiment_id, flat_params, folder_id, log_artifacts, log_params, store_problem,
    store_uri,
)

OFF = {"enabled": False}


class SweepTracking:
    """The parent run of a sweep and its cells' child runs; with tracking off, cells are told so."""

    def __init__(self, config: SweepConfig, layout: SweepLayout):
        self.layout = layout
        self.parent: TrackedRun | None = None
        self.cells: dict[str, dict] = {}
        uri = store_uri(config.tracking, layout.root, "sweep.output_dir")
        if uri is None:
            return
        self.client = client(uri)
        experiment = config.tracking.experiment or config.name
        self.experiment_id = experiment_id(self.client, experiment, uri)
        recorded = storage.read_json(layout.tracking) or {}
        same_store = recorded.get("uri") == uri
        run_id = existing_run(self.client, recorded.get("run_id")) if same_store else None
        if run_id is None:
            run_id = self.client.create_run(self.experiment_id, run_name=config.name,
                                            tags={"spt.stage": "sweep", "spt.output_dir": layout.root}).info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.cells = dict(recorded.get("cells") or {}) if same_store else {}
        log_params(self.client, run_id, flat_params(config.model_dump(mode="json", exclude={"tracking"}), "sweep"))
        self.parent = TrackedRun(uri, experiment, run_id)
        self._save()

    def _save(self) -> None:
        storage.write_json(self.layout.tracking, {"uri": self.parent.uri, "experiment": self.parent.experiment,
                                                  "run_id": self.parent.run_id, "cells": self.cells,
                                                  "folder": folder_id(self.layout.root)})

    def cell_tracking(self, cell: Cell, fingerprint: str) -> tuple[dict, dict]:
        """The ``tracking`` sections of a cell's train and finetune configs; opens the cell's child run."""
        if self.parent is None:
            return OFF, OFF
        known = self.cells.get(cell.run_id) or {}
        run_id = existing_run(self.client, known.get("run_id")) if known.get("fingerprint") == fingerprint else None
        if run_id is None:
            run_id = self.client.create_run(self.experiment_id, run_name=cell.run_id, tags={
                "mlflow.parentRunId": self.parent.run_id, "spt.stage": "sweep cell", "spt.cell": cell.run_id,
                "spt.fingerprint": fingerprint}).info.run_id
            grid = {"cell": cell.run_id, "domain_fraction": cell.domain_fraction, "total_tokens": cell.total_tokens,
                    "seed": cell.seed, "preset": cell.preset}
            if cell.synthetic_share is not None:
                grid["synthetic_share"] = cell.synthetic_share
            log_params(self.client, run_id, grid)
            self.cells[cell.run_id] = {"run_id": run_id, "fingerprint": fingerprint}
            self._save()
        store = {"uri": self.parent.uri, "experiment": self.parent.experiment}
        return {**store, "run_id": run_id}, store

    def cell_done(self, cell: Cell, outcome: dict) -> None:
        """Marks the cell's child run by the cell's outcome (a cell that failed before training has no other
        mark), with the error as a tag."""
        known = self.cells.get(cell.run_id)
        if self.parent is None or not known:
            return
        if outcome.get("error"):
            self.client.set_tag(known["run_id"], "spt.error", str(outcome["error"])[:5000])
        self.client.set_terminated(known["run_id"], status="FINISHED" if outcome["status"] == "ok" else "FAILED")

    def finish(self, status: str = "FINISHED") -> None:
        """Logs the sweep's tables as artifacts of the parent run and ends it."""
        if self.parent is None:
            return

        log_artifacts(self.parent, {name: self.layout.table(stem, suffix)
                                    for name, stem, suffix in (("results.csv", "results", ".csv"),
                                                               ("curves.csv", "curves", ".csv"))})
        self.client.set_terminated(self.parent.run_id, status=status)



def log_decision(folder: str, files: list[str]) -> str | None:
    """Logs what `spt fit` / `spt plot` made of a sweep folder (a fit JSON, figures) as artifacts of the sweep's
    parent MLflow run, when the sweep was tracked (``<folder>/tracking.json``); returns that run's id, else None."""
    if not storage.is_folder(folder):
        return None
    recorded = storage.read_json(storage.join(folder, "tracking.json")) or {}
    if not recorded.get("run_id") or not recorded.get("uri"):
        return None
    problem = store_problem(recorded, folder)
    if problem:
        print(f"note: not logged to MLflow: {storage.join(folder, 'tracking.json')} {problem} (a copied or moved "
              "sweep folder never writes into another folder's store)", file=sys.stderr)
        return None

    parent = TrackedRun(recorded["uri"], recorded.get("experiment") or "", recorded["run_id"])
    log_artifacts(parent, {storage.name(location): location for location in files})
    return parent.run_id
