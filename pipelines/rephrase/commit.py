"""The output folder: exactly-once commits of work units, the manifest, ownership, and a lock against concurrent
runs. Local folders and ``s3://`` prefixes work the same way through :mod:`spt.storage`.

Layout (:class:`RephraseLayout`)::

    <dir>/.spt-owner.json      stage rephrase and the run's fingerprint (config, inputs' content, model)
    <dir>/part-00007.parquet   rows of work unit 7 (no file when a unit produced no rows)
    <dir>/manifest.json        fingerprint, every committed unit (file, rows, sha256, counts), runs, totals
    <dir>/.lock                local only: held (flock) while a run is active

A unit commits in this order: the parquet shard (locally a temp name, fsync, rename, fsync the folder; on S3
one upload), then the manifest (the same way). The manifest is the only truth: at start, any ``part-*`` file it
does not list (a kill between the two writes) and any temp file is deleted, and the units it lists are skipped.
So a kill at any instant loses no committed row and a rerun adds no row twice. Readers (the mix stage) take the
files listed in the manifest.

Deleting is confined to folders this stage owns: a non-empty folder without the marker, another stage's
folder, or this stage's folder for another fingerprint (without ``--force``) is refused before anything is
written. S3 has no locks: on S3, don't run two rephrase jobs on one output prefix at once.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from spt import storage
from spt.errors import InputError
from spt.storage import ownership

STAGE = "rephrase"
MANIFEST = "manifest.json"
FORMAT = "spt-rephrase/1"
_PART = re.compile(r"^part-(\d+)\.parquet$")
#: Test hook: with this variable set to N, the run stops (sleeps) once the N-th shard it writes is in place and
#: before the manifest lists it, so a test can kill it exactly there (between the two writes of a commit).
PAUSE_HOOK = "SPT_TEST_PAUSE_BEFORE_MANIFEST"
_shards_written = 0

#: Columns of every output shard, in order (``original`` only with ``output.keep_original``).
SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source_id", pa.string()),
    ("chunk", pa.int32()),
    ("style", pa.string()),
    ("text", pa.string()),
    ("prompt_tokens", pa.int32()),
    ("input_tokens", pa.int32()),  # tokens of the source chunk the prompt holds (the rephraser's tokens)
    ("output_tokens", pa.int32()),
    ("model", pa.string()),
    ("error", pa.string()),  # the engine failed this row: no text
    ("rejected", pa.string()),  # the quality gate's reason (pipelines.rephrase.gate): text kept, never trained on
    ("split", pa.string()),  # "heldout" for documents of input.heldout_paths: never trained on
    ("finish_reason", pa.string()),
])
ORIGINAL = pa.field("original", pa.string())


def part_name(unit: int) -> str:
    return f"part-{unit:05d}.parquet"


@dataclass(frozen=True)
class RephraseLayout:
    """Every location of a rephrase output folder, computed once."""

    root: str

    def part(self, unit: int) -> str:
        return storage.join(self.root, part_name(unit))

    def file(self, name: str) -> str:
        return storage.join(self.root, name)

    @property
    def manifest(self) -> str:
        return storage.join(self.root, MANIFEST)

    @property
    def lock(self) -> str | None:
        return None if storage.is_remote(self.root) else storage.join(self.root, ".lock")


class OutputDir:
    """An output folder opened for one run: claimed, locked, cleaned of uncommitted files, its manifest loaded.

    Args:
        path: the folder, local or ``s3://`` (created when missing).
        header: what identifies the work: ``config_hash`` (the fingerprint), ``fingerprint_parts`` (its parts by
            name, for messages) plus descriptive fields stored in the manifest.
        force: replace this stage's output of another fingerprint (its parts and manifest are deleted).

    Raises:
        InputError: the folder is not spt's, another stage's, this stage's for another fingerprint (without
            ``force``), or another local run holds it. Nothing has been written then.
    """

    def __init__(self, path: str, header: dict[str, Any], force: bool = False):
        self.layout = RephraseLayout(str(path))
        self.path = str(path)
        claim_args = dict(where="output.dir", parts=header.get("fingerprint_parts"), force=force)
        if ownership.check_claim(self.path, STAGE, header["config_hash"], **claim_args).state == "new":
            claim = ownership.claim(self.path, STAGE, header["config_hash"], **claim_args)  # the marker comes first
            self._lock = self._acquire()
        else:  # lock first: a forced re-claim must not change the marker under a running run
            self._lock = self._acquire()
            try:
                claim = ownership.claim(self.path, STAGE, header["config_hash"], **claim_args)
            except BaseException:
                self.close()
                raise
        self.removed: list[str] = []
        if claim.state == "replaced":
            self.removed = self._remove_all_parts()
        self.manifest = self._load(header)
        self.removed += self._remove_uncommitted()

    def _acquire(self):
        if self.layout.lock is None:
            return None
        handle = open(self.layout.lock, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise InputError(f"output.dir={self.path!r}: another spt rephrase run is writing there") from None
        return handle

    def close(self) -> None:
        if self._lock is not None and not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def _load(self, header: dict[str, Any]) -> dict[str, Any]:
        try:
            text = storage.read_text(self.layout.manifest)
        except FileNotFoundError:
            return {"format": FORMAT, **header, "complete": False, "units": {}, "runs": []}
        manifest = storage.read_json(self.layout.manifest)
        if manifest is None:
            raise InputError(f"{self.layout.manifest}: not valid JSON ({text[:40]!r}); rerun with --force to start over")
        if manifest.get("format") != FORMAT or manifest.get("config_hash") != header["config_hash"]:
            # The marker said this folder is ours for this fingerprint; a manifest that disagrees was edited.
            raise InputError(f"{self.layout.manifest}: written for another fingerprint than the folder's "
                             f"{ownership.MARKER}; rerun with --force to start over")
        manifest.update({k: v for k, v in header.items() if k != "config_hash"})
        return manifest

    def _own_files(self) -> list[storage.Entry]:
        return [e for e in storage.list_files(self.path, hidden=True) if "/" not in e.relative]

    def _remove_all_parts(self) -> list[str]:
        """--force over another fingerprint's output: its shards and manifest go (only names this stage writes)."""
        removed = []
        for entry in self._own_files():
            if _PART.match(entry.relative) or entry.relative == MANIFEST:
                storage.delete(entry.location)
                removed.append(entry.relative)
        return removed

    def _remove_uncommitted(self) -> list[str]:
        listed = {info["file"] for info in self.manifest["units"].values() if info.get("file")}
        removed = []
        for entry in self._own_files():
            item = entry.relative
            stray_part = _PART.match(item) and item not in listed
            temp = item.startswith(".part-") or (item.startswith(f".{MANIFEST}.") and item.endswith(".tmp"))
            if stray_part or temp:
                storage.delete(entry.location)
                removed.append(item)
        present = {entry.relative for entry in self._own_files()}
        for unit, info in list(self.manifest["units"].items()):
            if info.get("file") and info["file"] not in present:
                # Listed but gone (deleted by hand): redo the unit rather than report rows that are not there.
                del self.manifest["units"][unit]
                removed.append(f"{info['file']} (listed, missing: unit redone)")
        return removed

    def done(self) -> set[int]:
        """Indexes of committed units."""
        return {int(unit) for unit in self.manifest["units"]}

    def committed_source_ids(self) -> set[str]:
        """Source ids of every committed row (to drop an id that reappears in a later unit)."""
        ids: set[str] = set()
        for info in self.manifest["units"].values():
            if info.get("file"):
                table = storage.read_parquet(self.layout.file(info["file"]), columns=["source_id"])
                ids.update(table.column(0).to_pylist())
        return ids

    def commit(self, unit: int, table: pa.Table | None, info: dict[str, Any]) -> None:
        """Commits one unit: its rows (None or empty: no file) and its entry in the manifest."""
        name = None
        if table is not None and table.num_rows:
            name = part_name(unit)
            digest = storage.write_parquet(self.layout.part(unit), table, durable=True, compression="zstd")
            info = {**info, "sha256": digest}
            _pause_hook(unit, name)
        self.manifest["units"][str(unit)] = {**info, "file": name}
        self.save()

    def save(self) -> None:
        storage.write_json(self.layout.manifest, self.manifest, durable=True)


def _pause_hook(unit: int, name: str) -> None:
    global _shards_written
    _shards_written += 1
    if os.environ.get(PAUSE_HOOK) == str(_shards_written):
        print(f"rephrase: test hook: paused after {name}, before the manifest lists it", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)
