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


def _inside(name: str, kind=str) -> property:
    """A location ``name`` inside the layout's root, as a path (``kind=str``) or a layout of its own."""
    return property(lambda self: kind(storage.join(self.root, name)), doc=f"``<root>/{name}``")


@dataclass(frozen=True)
class CellLayout:
    """Every location of one sweep cell."""

    root: str

    mix_config = _inside("mix.yaml")
    train_config = _inside("train.yaml")
    finetune_config = _inside("finetune.yaml")
    log = _inside("log.txt")
    run = _inside("run", RunLayout)
    finetune = _inside("finetune", RunLayout)


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
