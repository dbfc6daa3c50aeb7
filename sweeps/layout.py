"""Where a sweep's files go, computed once from its output folder (a local path or ``s3://``)::

    <output_dir>/.spt-owner.json       stage sweep (every cell carries its own fingerprint)
    <output_dir>/results.{csv,parquet} one row per cell;  curves.{csv,parquet}: one row per evaluation
    <output_dir>/cells/<run_id>/       .spt-owner.json (the cell's fingerprint), mix.yaml, train.yaml,
                                       finetune.yaml, log.txt, run/ (a run dir), finetune/ (a run dir);
                                       with finetune_at: finetune-T<tokens>.yaml and finetune-T<tokens>/ (a run
                                       dir: the finetune of run/'s snapshot after <tokens> tokens)
    <output_dir>/finetunes.{csv,parquet} one row per finetune of a cell (each budget it was finetuned from)
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

    def finetune_config_at(self, tokens: int) -> str:
        """The config of the finetune of the snapshot after ``tokens`` tokens."""
        return storage.join(self.root, f"finetune-T{tokens}.yaml")

    def finetune_at(self, tokens: int) -> RunLayout:
        """The finetune of the snapshot after ``tokens`` tokens (``finetune-T<tokens>``)."""
        return RunLayout(storage.join(self.root, f"finetune-T{tokens}"))


@dataclass(frozen=True)
class SweepLayout:
    """Every location of a sweep's output folder."""

    root: str

    def table(self, name: str, suffix: str) -> str:
        """``results``, ``curves`` or ``finetunes``, as ``.csv`` or ``.parquet``."""
        return storage.join(self.root, f"{name}{suffix}")

    @property
    def results(self) -> str:
        return self.table("results", ".csv")

    @property
    def curves(self) -> str:
        return self.table("curves", ".csv")

    @property
    def finetunes(self) -> str:
        return self.table("finetunes", ".csv")

    @property
    def tracking(self) -> str:
        return storage.join(self.root, "tracking.json")

    def cell(self, run_id: str) -> CellLayout:
        return CellLayout(storage.join(self.root, "cells", run_id))
