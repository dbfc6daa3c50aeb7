"""Folders written whole: filled in a local staging folder, then put in place (issue 24, findings 7 and 9).

A staged folder replaces only what spt wrote there. Each one it puts in place lists its files in
``.spt-files.json`` (a folder written before that list existed counts the files its manifest, ``last``, names under
``files``, e.g. a mix source's ``source.json``). A file that neither names is someone else's: the rebuild is
refused before any work, with or without ``--force``, instead of deleting it.

A killed build leaves its staging folder ``.<name>.tmp-*`` beside the target (no ``finally`` runs after a
SIGKILL); the next build of the same folder removes those, and only those (the prefix is spt's own).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from spt import storage
from spt.errors import InputError

LISTING = ".spt-files.json"


def owned_files(location: str, last: str | None = None) -> set[str]:
    """The files (relative paths) spt wrote in a staged folder: its listing, else its manifest's ``files``."""
    listing = storage.read_json(storage.join(location, LISTING))
    if isinstance(listing, list):
        return {str(name) for name in listing} | {LISTING}
    manifest = storage.read_json(storage.join(location, last)) if last else None
    recorded = manifest.get("files") if isinstance(manifest, dict) else None
    return (set(recorded) | {last}) if isinstance(recorded, dict) else set()


def check_replaceable(location: str, last: str | None = None) -> None:
    """Refuses to replace a folder that holds files spt did not write.

    Raises:
        InputError: ``<location>: holds files spt did not write (<up to 3>); ...``.
    """
    present = {entry.relative for entry in storage.list_files(location, hidden=True)}
    foreign = sorted(present - owned_files(location, last))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise InputError(f"{location}: holds files spt did not write ({shown}); spt replaces only its own files: "
                         "move them away and rerun")


def remove_stale_staging(final: Path) -> list[Path]:
    """Removes the staging folders ``.<name>.tmp-*`` that a killed build of ``final`` left; returns them."""
    stale = [path for path in final.parent.glob(f".{final.name}.tmp-*") if path.is_dir() and not path.is_symlink()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _write_listing(folder: Path) -> None:
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    (folder / LISTING).write_text(storage.dumps_json(names))


@contextmanager
def staged_folder(location: str, last: str | None = None) -> Iterator[Path]:
    """A local folder to fill; on success it becomes ``location`` (locally one rename; on S3 an upload with
    ``last`` last), listing its files in ``.spt-files.json``.

    Raises:
        InputError: on entry, before any work, when ``location`` holds files spt did not write.
    """
    check_replaceable(location, last)
    if storage.is_remote(location):
        with tempfile.TemporaryDirectory(prefix=f"spt-{storage.name(location)}-") as tmp:
            yield Path(tmp)
            _write_listing(Path(tmp))
            storage.delete_folder(location)
            storage.upload_folder(tmp, location, last)
        return
    final = storage.local_path(location)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        _write_listing(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
