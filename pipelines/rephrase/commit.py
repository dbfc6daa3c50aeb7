"""The output folder: exactly-once commits of work units, the manifest, and a lock against concurrent runs.

Layout::

    <dir>/part-00007.parquet   rows of work unit 7 (no file when a unit produced no rows)
    <dir>/manifest.json        config hash, every committed unit (file, rows, sha256, counts), runs, totals
    <dir>/.lock                held (flock) while a run is active

A unit commits in this order: parquet to a temp name, fsync, rename to ``part-<unit>.parquet``, fsync the
folder, then the manifest (temp, fsync, rename). The manifest is the only truth: at start, any ``part-*`` file
it does not list (a kill between the two renames) and any temp file is deleted, and the units it lists are
skipped. So a kill at any instant loses no committed row and a rerun adds no row twice. Readers (the mix stage)
should take the files listed in the manifest.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.io import sha256_file
from spt.errors import InputError

MANIFEST = "manifest.json"
FORMAT = "spt-rephrase/1"
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() would give; mkstemp's default 0600 would hide shards from other users
_PART = re.compile(r"^part-(\d+)\.parquet$")

#: Columns of every output shard, in order (``original`` only with ``output.keep_original``).
SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source_id", pa.string()),
    ("chunk", pa.int32()),
    ("style", pa.string()),
    ("text", pa.string()),
    ("prompt_tokens", pa.int32()),
    ("output_tokens", pa.int32()),
    ("model", pa.string()),
    ("error", pa.string()),
    ("finish_reason", pa.string()),
])
ORIGINAL = pa.field("original", pa.string())


def part_name(unit: int) -> str:
    return f"part-{unit:05d}.parquet"


def write_json_durable(path: Path, value: Any) -> None:
    """JSON to a temp file, fsync, rename, fsync the folder: survives a kill or a power loss at any point."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutputDir:
    """An output folder opened for one run: locked, cleaned of uncommitted files, with its manifest loaded.

    Args:
        path: the folder (created when missing).
        header: what identifies the work: ``config_hash`` plus descriptive fields stored in the manifest.

    Raises:
        InputError: another run holds the folder, or it holds output of a different config.
    """

    def __init__(self, path: str | Path, header: dict[str, Any]):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise InputError(f"output.dir={str(path)!r}: another spt rephrase run is writing there") from None
        self.manifest = self._load(header)
        self.removed = self._remove_uncommitted()

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def _load(self, header: dict[str, Any]) -> dict[str, Any]:
        path = self.path / MANIFEST
        if not path.exists():
            return {"format": FORMAT, **header, "complete": False, "units": {}, "runs": []}
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise InputError(f"{path}: not valid JSON; move the folder away to start over") from None
        if manifest.get("format") != FORMAT or manifest.get("config_hash") != header["config_hash"]:
            raise InputError(
                f"output.dir={str(self.path)!r} holds rephrased data from a different config; "
                "use another output.dir, or delete the folder to start over"
            )
        manifest.update({k: v for k, v in header.items() if k != "config_hash"})
        return manifest

    def _remove_uncommitted(self) -> list[str]:
        listed = {info["file"] for info in self.manifest["units"].values() if info.get("file")}
        removed = []
        for item in sorted(self.path.iterdir()):
            stray_part = _PART.match(item.name) and item.name not in listed
            temp = item.name.startswith(".part-") or (item.name.startswith(f".{MANIFEST}.") and item.suffix == ".tmp")
            if item.is_file() and (stray_part or temp):
                item.unlink()
                removed.append(item.name)
        for unit, info in list(self.manifest["units"].items()):
            if info.get("file") and not (self.path / info["file"]).exists():
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
                ids.update(pq.read_table(self.path / info["file"], columns=["source_id"]).column(0).to_pylist())
        return ids

    def commit(self, unit: int, table: pa.Table | None, info: dict[str, Any]) -> None:
        """Commits one unit: its rows (None or empty: no file) and its entry in the manifest."""
        name = None
        if table is not None and table.num_rows:
            name = part_name(unit)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.path)
            os.fchmod(fd, _FILE_MODE)
            os.close(fd)
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, self.path / name)
            _fsync_dir(self.path)
            info = {**info, "sha256": sha256_file(self.path / name)}
        self.manifest["units"][str(unit)] = {**info, "file": name}
        self.save()

    def save(self) -> None:
        write_json_durable(self.path / MANIFEST, self.manifest)
