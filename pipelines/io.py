"""Compatibility shim: the helpers training/ and scaling_laws/ still import from here, now served by
:mod:`spt.storage` (the one storage layer). New code imports ``spt.storage`` directly."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from spt import storage
from spt.storage import sha256_json

__all__ = ["atomic_directory", "read_json", "sha256_file", "sha256_json", "write_json_atomic"]


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes."""
    return storage.sha256(str(path))


def write_json_atomic(path: str | Path, value: Any) -> None:
    """Writes JSON atomically (a temp file and a rename; one upload on S3)."""
    storage.write_json(str(path), value)


def read_json(path: str | Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable."""
    return storage.read_json(str(path))


@contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yields a temp folder; on success it replaces ``final`` (see :func:`spt.storage.staged_folder`)."""
    with storage.staged_folder(str(final)) as tmp:
        yield tmp
