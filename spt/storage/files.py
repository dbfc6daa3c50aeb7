"""Which single files spt may replace: the file twin of :mod:`spt.storage.ownership` (issue 24, finding 1).

A folder is spt's by its ``.spt-owner.json``; a single output file (``spt fit --out``, ``spt predict --out``) has
no folder of its own, so spt records it in a sidecar beside it, ``.<name>.spt-owner.json``, holding the stage
and the sha256 of the bytes it wrote. An existing file may be replaced only when

- it is not an input of the same command (``spt fit --data X.csv --out X.csv`` once replaced its own data), and
- its sidecar names the bytes it holds now (a file spt wrote and nobody changed since), or ``--force`` is given.

An input is refused even with ``--force``: the command reads it to make what it would write over it.
"""

from __future__ import annotations

import os
import time

from spt import storage
from spt.errors import InputError

FORMAT = "spt-file/1"


def sidecar(location: str) -> str:
    """Where spt records that it wrote ``location``: ``.<name>.spt-owner.json`` in the same folder."""
    return storage.join(storage.parent(location), f".{storage.name(location)}.spt-owner.json")


def _same_file(location: str, other: str) -> bool:
    if storage.is_remote(location) or storage.is_remote(other):
        return str(location).rstrip("/") == str(other).rstrip("/")
    mine, theirs = storage.local_path(location), storage.local_path(other)
    if mine.exists() and theirs.exists():
        return os.path.samefile(mine, theirs)
    return mine.resolve() == theirs.resolve()


def written_by_spt(location: str) -> bool:
    """True when ``location`` holds the bytes its sidecar recorded (spt wrote it and nobody changed it since)."""
    recorded = storage.read_json(sidecar(location))
    if not isinstance(recorded, dict) or recorded.get("format") != FORMAT:
        return False
    try:
        return recorded.get("sha256") == storage.sha256(location)
    except FileNotFoundError:
        return False


def check_file_output(location: str | None, where: str, inputs: dict[str, str | None],
                      force: bool = False, probe: bool = True) -> None:
    """The one check of a single-file output, before any work: the location takes a file
    (:func:`spt.storage.check_output`, which really writes a probe file beside it unless ``probe`` is False), and
    writing it would replace neither an input nor a file spt did not write.

    Args:
        location: the output file (None: nothing is written, nothing to check).
        where: the option that named it, for messages (``--out``).
        inputs: the command's input files by option (``{"--data": "X.csv"}``); a folder input never matches.
        force: replace an existing file spt did not write (never an input).
        probe: write and remove a probe file in the file's folder (False: a dry run, or a folder already probed).

    Raises:
        InputError: ``--out='X.csv': is the input --data of this command; ...``, ``--out='x': exists and spt
            did not write it ...``, or what :func:`spt.storage.check_output` refuses.
    """
    if location is None:
        return
    storage.check_output(location, where, file=True, probe=probe)
    for option, path in inputs.items():
        if path is not None and _same_file(location, str(path)):
            raise InputError(f"{where}={location!r}: is the input {option} of this command; spt never writes over "
                             "its input, even with --force: choose another file")
    if not storage.is_file(location) or force or written_by_spt(location):
        return
    raise InputError(f"{where}={location!r}: exists and spt did not write it (or it changed since: no matching "
                     f"{storage.name(sidecar(location))}); rerun with --force to replace it, or choose another file")


def write_owned(location: str, data: bytes, stage: str) -> None:
    """Writes ``data`` atomically (:func:`spt.storage.write_bytes`), then the sidecar that lets a later command
    replace it; a kill in between leaves a file spt will not replace without ``--force`` (never one it should not)."""
    storage.write_bytes(location, data)
    mark_owned(location, stage, storage.sha256_bytes(data))


def mark_owned(location: str, stage: str, sha256: str | None = None) -> None:
    """Records that ``stage`` wrote ``location`` as it is now (its sha256, read again unless given)."""
    storage.write_json(sidecar(location), {"format": FORMAT, "stage": stage,
                                           "sha256": sha256 or storage.sha256(location),
                                           "written": round(time.time(), 3)})
