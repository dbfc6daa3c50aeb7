"""Where a run's files go, computed once from the config (local paths or ``s3://``)::

    <run_dir>/.spt-owner.json          stage train (or finetune), fingerprint of the config and the mix's content
    <run_dir>/config.json              the resolved config
    <run_dir>/curves.csv               one row per evaluation (rewritten after each)
    <run_dir>/logs/metrics-rank<r>.log Composer's file log (on S3: written locally, uploaded at every evaluation)
    <run_dir>/checkpoints/             Composer checkpoints, ba<batch>-rank<r>.pt and latest-rank<r>.pt(.symlink)
    <run_dir>/model/                   the final (finetune: the best validated) weights, a safetensors HF folder
    <run_dir>/snapshots/T<tokens>/     train with snapshot_tokens: the weights after <tokens> tokens, a folder like
                                       model/ (each written whole when the run passes it; a resumed run writes
                                       again, with the same content, those its checkpoint had not passed)
    <run_dir>/summary.json             written last: a run with a summary is finished
    <run_dir>/tracking.json            the MLflow store and run this run logs into (a resumed run continues it)
    <run_dir>/mlflow.db, mlartifacts/  the default MLflow store and its artifacts (tracking.uri unset, local run_dir)
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from spt import storage
from spt.errors import InputError
from spt.storage.staging import check_replaceable, owned_files

#: The files spt (through Composer) writes under checkpoints/ and logs/: a restart deletes these and no others.
CHECKPOINT_PATTERNS = ("ba*-rank*.pt", "latest-rank*.pt", "latest-rank*.pt.symlink")
LOG_PATTERNS = ("metrics-rank*.log",)
#: A snapshot folder's name, and the staging folder a killed export of one leaves (spt's own, deleted on restart).
SNAPSHOT_NAME = re.compile(r"T\d+")
SNAPSHOT_STAGING = re.compile(r"\.T\d+\.tmp-.+")


@dataclass(frozen=True)
class RunLayout:
    """Every location of one training (or finetuning) run."""

    root: str

    @property
    def remote(self) -> bool:
        return storage.is_remote(self.root)

    @property
    def config(self) -> str:
        return storage.join(self.root, "config.json")

    @property
    def summary(self) -> str:
        return storage.join(self.root, "summary.json")

    @property
    def curves(self) -> str:
        return storage.join(self.root, "curves.csv")

    @property
    def logs(self) -> str:
        return storage.join(self.root, "logs")

    @property
    def model(self) -> str:
        return storage.join(self.root, "model")

    @property
    def snapshots(self) -> str:
        return storage.join(self.root, "snapshots")

    def snapshot(self, tokens: int) -> str:
        """The snapshot after ``tokens`` tokens (``snapshots/T<tokens>``)."""
        return storage.join(self.snapshots, f"T{tokens}")

    def snapshot_tokens(self) -> list[int]:
        """The tokens of the snapshots present, ascending."""
        names = {e.relative.split("/")[0] for e in storage.list_files(self.snapshots)}
        return sorted(int(n[1:]) for n in names if SNAPSHOT_NAME.fullmatch(n))

    def _snapshot_files(self) -> tuple[list, list[str]]:
        """(the files spt wrote under snapshots/, the relative paths of those it did not)."""
        mine, foreign = [], []
        for entry in storage.list_files(self.snapshots, hidden=True):
            top, _, rest = entry.relative.partition("/")
            staging = SNAPSHOT_STAGING.fullmatch(top) is not None
            if staging or (SNAPSHOT_NAME.fullmatch(top) and rest in owned_files(self.snapshot(int(top[1:])))):
                mine.append(entry)
            else:
                foreign.append(entry.relative)
        return mine, foreign

    def check_replaceable(self) -> None:
        """Refuses a run folder whose model/ or snapshots/ hold files spt did not write (a run replaces both).

        Raises:
            InputError: naming the folder and up to 3 of the files.
        """
        check_replaceable(self.model)
        foreign = self._snapshot_files()[1]
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise InputError(f"{self.snapshots}: holds files spt did not write ({shown}); spt replaces only its "
                             "own files: move them away and rerun")

    @property
    def checkpoints(self) -> str:
        return storage.join(self.root, "checkpoints")

    @property
    def tracking(self) -> str:
        return storage.join(self.root, "tracking.json")

    @property
    def name(self) -> str:
        return storage.name(self.root)

    def clear(self) -> None:
        """Deletes the run's own files (a run restarted from scratch must not resume from, or keep rows of, them;
        it gets a new MLflow run, and the old one stays in the store). Only files spt wrote go: a file someone put
        in checkpoints/, model/, snapshots/ or logs/ stays (``spt train --force`` once emptied both folders)."""
        self.check_replaceable()  # before deleting anything
        for location in (self.summary, self.curves, self.config, self.tracking):
            storage.delete(location)
        mine = {self.checkpoints: lambda name: any(fnmatch.fnmatch(name, p) for p in CHECKPOINT_PATTERNS),
                self.logs: lambda name: any(fnmatch.fnmatch(name, p) for p in LOG_PATTERNS),
                self.model: owned_files(self.model).__contains__}
        for folder, written_by_spt in mine.items():
            for entry in storage.list_files(folder, hidden=True):
                if written_by_spt(entry.relative):
                    storage.delete(entry.location)
            _remove_if_empty(folder)
        for entry in self._snapshot_files()[0]:
            storage.delete(entry.location)
        _remove_if_empty(self.snapshots)  # with the empty snapshot folders in it


def _remove_if_empty(folder: str) -> None:
    if not storage.is_remote(folder) and storage.is_folder(folder) and storage.is_empty(folder):
        storage.delete_folder(folder)
