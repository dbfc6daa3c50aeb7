"""The one storage layer: every stage reads and writes local paths and ``s3://bucket/prefix`` through it.

A *location* is a plain string: a local path (relative paths are taken from the working directory) or an
``s3://bucket/key`` URL. Any other scheme (``gs://``, ``hdfs://``, ``http://``, ``file://``) is refused up front
with a one-line :class:`~spt.errors.InputError`; nothing is ever written to a local folder named ``s3:``.

Why pyarrow.fs and not fsspec: pyarrow (pinned, 21.0) is in both environments already, its ``S3FileSystem``
takes an ``endpoint_override`` (MinIO, moto, R2), and pyarrow's parquet reader and writer take its file systems
directly. fsspec is installed in the train environment only as a dependency of other packages, and its S3
back end (s3fs + aiobotocore) is in neither; adding it would pin one more async AWS stack beside botocore.

S3 settings come from the environment: the endpoint from ``$S3_ENDPOINT_URL`` (the variable MosaicML
Streaming reads too, so one setting serves writers and readers), the region from ``$AWS_REGION`` or
``$AWS_DEFAULT_REGION``, credentials from the usual AWS chain.

Atomic writes: locally a temp file beside the target, then a rename (``durable=True`` adds the fsyncs that make
it survive a power loss); on S3 one upload, which S3 makes visible only once complete (pyarrow uses a
multipart upload even for small objects; readers never see part of it).

Content identity (:func:`content_id`): ``sha256:<hex>`` of a local file's bytes; for an S3 object the ``ETag``
its server computed (an MD5 of the bytes, or of the parts' MD5s for a multipart upload), read with one HEAD
request instead of a download. Either changes whenever the bytes change. :func:`sha256` always hashes the bytes.

Ownership (``.spt-owner.json`` markers: which stage wrote a folder, for which fingerprint) lives in
:mod:`spt.storage.ownership`, built on this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spt.storage.locations import (  # noqa: F401  (re-exported)
    ENVIRONMENT_VARIABLES, S3, cache_folder, check, check_output, check_writable, environment, is_remote, join, local_path, name, parent, resolve,
    scheme_problem, writable_problem,
)

_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() gives; mkstemp's 0600 would hide outputs from other users


def _type(location: str):
    fs, path = resolve(location)
    return fs.get_file_info(path).type


def exists(location: str) -> bool:
    import pyarrow.fs as pafs

    return _type(location) != pafs.FileType.NotFound


def is_file(location: str) -> bool:
    import pyarrow.fs as pafs

    return _type(location) == pafs.FileType.File


def is_folder(location: str) -> bool:
    """True for a local folder, or an S3 prefix with objects under it (or a bucket)."""
    import pyarrow.fs as pafs

    return _type(location) == pafs.FileType.Directory


def read_bytes(location: str) -> bytes:
    """The whole file or object.

    Raises:
        FileNotFoundError: it does not exist.
    """
    fs, path = resolve(location)
    with fs.open_input_stream(path) as handle:
        return handle.read()


def read_text(location: str) -> str:
    return read_bytes(location).decode("utf-8")


def read_json(location: str) -> Any | None:
    """Parsed JSON, or None when it is missing or unreadable (e.g. half-written by a killed run elsewhere)."""
    try:
        return json.loads(read_bytes(location).decode("utf-8"))
    except (OSError, ValueError):
        return None


def write_bytes(location: str, data: bytes, durable: bool = False) -> None:
    """Writes atomically: readers see the old content or the new, never part of it.

    Args:
        durable: locally, fsync the file and its folder too (survives a power loss, not only a kill).
    """
    if is_remote(location):
        fs, path = resolve(location)
        with fs.open_output_stream(path) as handle:
            handle.write(data)
        return
    path = local_path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(path.parent)


def copy_file(source: str, target: str, block_bytes: int = 1 << 22) -> str:
    """Streams one file to another location, atomically like :func:`write_bytes` (a temp name then a rename
    locally, one upload on S3), so a multi-GB weights file never sits in memory; returns the bytes' sha256."""
    digest = hashlib.sha256()
    src_fs, src_path = resolve(source)
    if is_remote(target):
        dst_fs, dst_path = resolve(target)
        with src_fs.open_input_stream(src_path) as reader, dst_fs.open_output_stream(dst_path) as writer:
            while data := reader.read(block_bytes):
                digest.update(data)
                writer.write(data)
        return digest.hexdigest()
    path = local_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with src_fs.open_input_stream(src_path) as reader, os.fdopen(fd, "wb") as writer:
            while data := reader.read(block_bytes):
                digest.update(data)
                writer.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def fsync_folder(folder: str | Path) -> None:
    """Makes renames inside a local folder durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(location: str, text: str, durable: bool = False) -> None:
    write_bytes(location, text.encode("utf-8"), durable)


def dumps_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def write_json(location: str, value: Any, durable: bool = False) -> None:
    """Writes JSON (sorted keys, indented) atomically."""
    write_text(location, dumps_json(value), durable)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    """Hash of a JSON-able value, independent of key order."""
    return sha256_bytes(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def sha256(location: str, chunk_bytes: int = 1 << 20) -> str:
    """The sha256 of a file's bytes (an S3 object is read through once)."""
    fs, path = resolve(location)
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def content_id(location: str) -> str:
    """An identifier of a file's content: ``sha256:<hex>`` locally, ``etag:<etag>`` on S3 (see module doc).

    Raises:
        FileNotFoundError: it does not exist.
    """
    if not is_remote(location):
        return "sha256:" + sha256(location)
    fs, path = resolve(location)
    with fs.open_input_file(path) as handle:
        etag = (handle.metadata() or {}).get("ETag") or b""
    if not etag:  # a server without ETags: hash the bytes
        return "sha256:" + sha256(location)
    return "etag:" + etag.decode().strip('"')


@dataclass(frozen=True)
class Entry:
    """One file found by :func:`list_files`: its location, its path relative to the listed folder, its size."""

    location: str
    relative: str
    size: int


def list_files(folder: str, suffixes: tuple[str, ...] = (), hidden: bool = False) -> list[Entry]:
    """Every file under ``folder`` (recursively), sorted by relative path; [] when it does not exist.

    Args:
        suffixes: keep only names ending so (e.g. ``(".parquet", ".jsonl")``); empty keeps all.
        hidden: keep files with a part starting with '.' (temp files of writers, markers).
    """
    import pyarrow.fs as pafs

    fs, root = resolve(folder)
    found = []
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(root):].lstrip("/")
        if not hidden and any(part.startswith(".") for part in relative.split("/")):
            continue
        if suffixes and not relative.endswith(suffixes):
            continue
        found.append(Entry(join(folder, relative), relative, info.size))
    return sorted(found, key=lambda e: e.relative)


def is_empty(folder: str) -> bool:
    """True when nothing (no file, hidden ones included) is under ``folder``."""
    return not list_files(folder, hidden=True)


def delete(location: str) -> None:
    """Deletes one file; a missing file is fine."""
    fs, path = resolve(location)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def delete_folder(location: str) -> None:
    """Deletes a folder and everything under it. Call only on folders inside a tree spt owns."""
    if not is_remote(location):
        shutil.rmtree(local_path(location), ignore_errors=True)
        return
    for entry in list_files(location, hidden=True):
        delete(entry.location)


def open_input(location: str):
    """A seekable pyarrow file (``pq.ParquetFile``, ``pa.ipc.open_stream`` and ``.read`` accept it)."""
    fs, path = resolve(location)
    return fs.open_input_file(path)


def parquet_bytes(table, **options) -> bytes:
    """A table as parquet file bytes (``options`` go to ``pq.write_table``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    return sink.getvalue().to_pybytes()


def write_parquet(location: str, table, durable: bool = False, **options) -> str:
    """Writes a table as one parquet file, atomically; returns the sha256 of the bytes written."""
    data = parquet_bytes(table, **options)
    write_bytes(location, data, durable)
    return sha256_bytes(data)


def read_parquet(location: str, columns: list[str] | None = None):
    import pyarrow.parquet as pq

    with open_input(location) as handle:
        return pq.read_table(handle, columns=columns)


def upload_folder(local_dir: str | Path, location: str, last: str | None = None) -> None:
    """Copies every file below a local folder to ``location``; ``last`` (a relative name) is copied last.

    Readers take the ``last`` file (a manifest) as the mark of a complete folder, so it must not arrive first.
    """
    local_dir = Path(local_dir)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(local_dir).as_posix() == last)
    fs, root = resolve(location)
    for path in files:
        target = f"{root}/{path.relative_to(local_dir).as_posix()}"
        if not is_remote(location):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as source, fs.open_output_stream(target) as out:
            shutil.copyfileobj(source, out, 1 << 22)


def download_folder(location: str, local_dir: str | Path) -> Path:
    """Copies every file under ``location`` into a local folder; returns it."""
    local_dir = Path(local_dir)
    fs, _ = resolve(location)
    for entry in list_files(location, hidden=True):
        target = local_dir / entry.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(resolve(entry.location)[1]) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 22)
    return local_dir


__all__ = [
    "ENVIRONMENT_VARIABLES", "environment", "Entry", "cache_folder", "check", "check_output", "check_writable", "content_id", "copy_file", "delete", "delete_folder",
    "download_folder", "exists", "is_empty", "is_file", "is_folder", "is_remote", "join", "list_files",
    "local_path", "name", "open_input", "parent", "read_bytes", "read_json", "read_parquet",
    "read_text", "resolve", "scheme_problem", "sha256", "sha256_json", "upload_folder",
    "writable_problem", "write_bytes", "write_json", "write_parquet", "write_text",
]
