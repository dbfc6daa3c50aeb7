"""Locations: which strings name a place spt can read and write, and the pyarrow file system behind each.

A location is a local path (relative paths are taken from the working directory) or ``s3://bucket/key``.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from spt.errors import InputError

S3 = "s3://"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")


def scheme_problem(location: str) -> str | None:
    """Why ``location`` is not a supported location (an unsupported or malformed URL), or None."""
    text = str(location)
    match = _SCHEME.match(text)
    if text.startswith(S3):
        bucket = text[len(S3):].split("/", 1)[0]
        return None if bucket else "expected s3://BUCKET/PREFIX"
    if match:
        if match.group(1).lower() == "s3":
            return "expected s3://BUCKET/PREFIX"
        return f"unsupported scheme {match.group(1)}:// (use a local path or s3://BUCKET/PREFIX)"
    return None


def check(location: str, where: str) -> str:
    """``location`` if it is a local path or an ``s3://`` URL.

    Raises:
        InputError: ``<where>='<location>': unsupported scheme ...`` for anything else.
    """
    problem = scheme_problem(location)
    if problem:
        raise InputError(f"{where}={str(location)!r}: {problem}")
    return str(location)


def is_remote(location: str) -> bool:
    return str(location).startswith(S3)


def join(location: str, *parts: str) -> str:
    """Joins parts with '/' for URLs and the OS separator for local paths."""
    if is_remote(location):
        return "/".join([str(location).rstrip("/"), *[str(p).strip("/") for p in parts if str(p)]])
    return str(Path(location, *parts))


def name(location: str) -> str:
    """The last part of a location (a file or folder name)."""
    return str(location).rstrip("/").rsplit("/", 1)[-1] if is_remote(location) else Path(location).name


def parent(location: str) -> str:
    return str(location).rstrip("/").rsplit("/", 1)[0] if is_remote(location) else str(Path(location).parent)


def local_path(location: str) -> Path:
    """The absolute path of a local location (for libraries that only write local files)."""
    if is_remote(location):
        raise ValueError(f"{location} is not a local path")
    check(location, "location")
    return Path(os.path.abspath(os.path.expanduser(str(location))))


def resolve(location: str):
    """(pyarrow FileSystem, path inside it) for a location.

    Raises:
        InputError: an unsupported scheme.
    """
    import pyarrow.fs as pafs

    check(location, "location")
    if is_remote(location):
        return _s3(os.environ.get("S3_ENDPOINT_URL") or "",
                   os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""), \
            str(location)[len(S3):].rstrip("/")
    return pafs.LocalFileSystem(), str(local_path(location))


#: Variables that decide which object store spt reaches and how; workers on other machines need the same.
ENVIRONMENT_VARIABLES = ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                         "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE")


def environment() -> dict[str, str]:
    """The storage variables set here, to pass to Ray workers so they read and write the same store."""
    return {name: os.environ[name] for name in ENVIRONMENT_VARIABLES if name in os.environ}


_S3_CACHE: dict[tuple[str, str], Any] = {}


def _s3(endpoint: str, region: str):
    """One S3FileSystem per (endpoint, region): tests change the endpoint between servers."""
    import pyarrow.fs as pafs
    from urllib.parse import urlparse

    key = (endpoint, region)
    if key not in _S3_CACHE:
        options: dict[str, Any] = {"region": region} if region else {}
        if endpoint:
            parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
            options.update(endpoint_override=parsed.netloc + parsed.path.rstrip("/"), scheme=parsed.scheme)
        _S3_CACHE[key] = pafs.S3FileSystem(**options)
    return _S3_CACHE[key]


def writable_problem(location: str) -> str | None:
    """Why spt could not write at ``location`` (checked without writing), or None.

    Locally: the nearest existing folder must be writable and nothing on the way may be a file. On S3: the
    bucket must exist (permission to write shows only on the first write).
    """
    problem = scheme_problem(location)
    if problem:
        return problem
    if is_remote(location):
        bucket = str(location)[len(S3):].split("/", 1)[0]
        import pyarrow.fs as pafs

        fs, _ = resolve(location)
        try:
            if fs.get_file_info(bucket).type != pafs.FileType.Directory:
                return f"no such bucket {bucket!r}"
        except OSError as exc:
            return f"cannot reach S3 ({str(exc).splitlines()[0]})"
        return None
    path = local_path(location)
    if path.exists() and not path.is_dir():
        return "exists and is not a folder"
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"not writable ({probe} does not allow writing)"
    return None


def check_writable(location: str, where: str) -> None:
    """Raises InputError(``<where>='<location>': <why>``) when spt could not write there."""
    problem = writable_problem(location)
    if problem:
        raise InputError(f"{where}={str(location)!r}: {problem}")


def _probe_folder(path: Path) -> str | None:
    """Why a local folder cannot be written, found by really writing: the folder (with its parents) and a temp
    file in it are created, then removed again, and the times of the folder that was there are put back, so a
    refused command leaves nothing. As root, ``os.access`` says yes to ``/proc``: only a real write tells."""
    created = []
    existing = path
    while not existing.exists():
        created.append(existing)
        existing = existing.parent
    times = existing.stat()
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=".spt-write-probe-", dir=path)
        os.close(handle)
        os.unlink(temp)
    except OSError as exc:
        return f"not writable ({exc.strerror or type(exc).__name__})"
    finally:
        for folder in created:  # deepest first; a folder something else wrote into meanwhile stays
            try:
                folder.rmdir()
            except OSError:
                break
        try:  # the folder that was there looks untouched (its modification time included)
            os.utime(existing, ns=(times.st_atime_ns, times.st_mtime_ns))
        except OSError:
            pass
    return None


def check_output(location: str | None, where: str, file: bool = False, probe: bool = True) -> None:
    """The check every command runs on its outputs before any work: the scheme is supported, and (locally) the
    output folder (a file's parent folder, with ``file=True``) really takes a file: a temp file is written there
    and removed, with any folder made for it (:func:`_probe_folder`); on S3 the bucket must exist. With
    ``probe=False`` (a dry run) nothing is written even for a moment: the folder is judged by its permissions.

    Raises:
        InputError: ``<where>='<location>': <why>`` (for a file: also when the location is a folder).
    """
    if location is None:
        return
    location = str(location)
    problem = scheme_problem(location)
    if problem is None and file and (Path(location).is_dir() if not is_remote(location) else False):
        problem = "is a folder, expected a file path"
    folder = parent(location) if file else location
    if problem is None:
        problem = writable_problem(folder)
    if problem is None and file and not is_remote(location) and Path(location).exists() \
            and not os.access(location, os.W_OK):
        problem = "not writable"
    if problem is None and probe and not is_remote(location):
        problem = _probe_folder(local_path(folder))
    if problem:
        raise InputError(f"{where}={location!r}: {problem}")


def cache_folder(name: str) -> str:
    """spt's one cache convention: ``$SPT_CACHE_DIR/<name>``, where ``$SPT_CACHE_DIR`` defaults to
    ``<tmp>/spt-cache`` (``$TMPDIR`` or ``/tmp``: a node's local scratch). A cache holds copies that can be made
    again: a mix's Streaming downloads (``streaming``), Hugging Face datasets handed to the generate stage as
    parquet (``hf``)."""
    root = os.environ.get("SPT_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "spt-cache")
    return os.path.join(root, name)
