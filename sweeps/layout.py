"""Where a sweep's files go, computed once from its output folder (a local path or ``s3://``)::

    <output_dir>/.spt-owner.json       stage sweep (every cell carries its own fingerprint)
    <output_dir>/results.{csv,parquet} one row per cell;  curves.{csv,parquet}: one row per evaluation
    <output_dir>/cells/<run_id>/       .spt-owner.json (the cell's fingerprint), mix.yaml, train.yaml,
                                       finetune.yaml, log.txt, run/ (a run dir), finetune/ (a run dir)
    <output_dir>/tracking.json         the MLflow store and the sweep's parent run
    <output_dir>/mlflow.db, mlartifacts/  the default MLflow store of the sweep and all its cells
"""

from __future__ import annotations

from dataclasses import dataclass

from spt import storage
from training.layout import RunLayout


@dataclass(frozen=True)
class CellLayout:
    """Every location of one sweep cell."""

    root: str

    @property
    def mix_config(self) -> str:
        return storage.join(self.root, "mix.yaml")

    @property
    def train_config(self) -> str:
        return storage.join(self.root, "train.yaml")

    @property
    def finetune_config(self) -> str:
        return storage.join(self.root, "finetune.yaml")

    @property
    def log(self) -> str:
        return storage.join(self.root, "log.txt")

    @property
    def run(self) -> RunLayout:
        return RunLayout(storage.join(self.root, "run"))

    @property
    def finetune(self) -> RunLayout:
        return RunLayout(storage.join(self.root, "finetune"))


@dataclass(frozen=True)
class SweepLayout:
    """Every location of a sweep's output folder."""

    root: str

    def table(self, name: str, suffix: str) -> str:
        """``results`` or ``curves``, as ``.csv`` or ``.parquet``."""
        return storage.join(self.root, f"{name}{suffix}")

    @property
    def results(self) -> str:
        return self.table("results", ".csv")

    @property
    def curves(self) -> str:
        return self.table("curves", ".csv")

    @property
    def tracking(self) -> str:
        return storage.join(self.root, "tracking.json")

    def cell(self, run_id: str) -> CellLayout:
        return CellLayout(storage.join(self.root, "cells", run_id))
