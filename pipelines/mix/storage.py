"""Locations that are either local paths or ``s3://bucket/key`` URLs, with the few operations a mix needs.

S3 goes through boto3 with the endpoint in ``$S3_ENDPOINT_URL`` when set: the same variable Streaming reads, so
one setting serves the writer, the reader and any S3-compatible server (MinIO, moto, R2).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from pipelines.io import write_json_atomic

S3_PREFIX = "s3://"


def is_remote(location: str) -> bool:
    return str(location).startswith(S3_PREFIX)


def join(location: str, *parts: str) -> str:
    """Joins path parts with '/' for URLs and the OS separator for local paths."""
    if is_remote(location):
        return "/".join([str(location).rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(location, *parts))


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    bucket, _, key = url[len(S3_PREFIX):].partition("/")
    return bucket, key


def s3_client():
    """A boto3 S3 client for ``$S3_ENDPOINT_URL`` (None = AWS)."""
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - the train environment has boto3
        raise ImportError("s3:// locations need boto3: run scripts/setup.sh train") from exc
    return boto3.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None)


def _missing(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


def read_bytes(location: str) -> bytes:
    """The whole object or file; FileNotFoundError when it does not exist."""
    if not is_remote(location):
        return Path(location).read_bytes()
    bucket, key = split_url(location)
    try:
        return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if _missing(exc):
            raise FileNotFoundError(location) from None
        raise


def read_json(location: str) -> Any | None:
    """Parsed JSON, or None when missing or unreadable."""
    try:
        return json.loads(read_bytes(location).decode("utf-8"))
    except (OSError, ValueError):
        return None


def write_json(location: str, value: Any) -> None:
    """Writes JSON atomically (local: temp file and rename; S3: a single PUT is atomic)."""
    if not is_remote(location):
        write_json_atomic(location, value)
        return
    bucket, key = split_url(location)
    body = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
    s3_client().put_object(Bucket=bucket, Key=key, Body=body)


def list_objects(url: str) -> Iterator[tuple[str, str]]:
    """(url, ETag) of every object under an ``s3://`` prefix, sorted by key."""
    bucket, prefix = split_url(url)
    paginator = s3_client().get_paginator("list_objects_v2")
    found = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found.append((f"{S3_PREFIX}{bucket}/{item['Key']}", item["ETag"].strip('"')))
    yield from sorted(found)


def object_etag(url: str) -> str | None:
    """The ETag of one object (a content hash the server keeps), or None when it does not exist."""
    bucket, key = split_url(url)
    try:
        return s3_client().head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    except Exception as exc:
        if _missing(exc):
            return None
        raise


def upload_directory(local_dir: Path, url: str, last: str | None = None) -> None:
    """Uploads every file below ``local_dir`` under the ``url`` prefix; ``last`` (a relative name) goes last.

    Readers treat the ``last`` file (a manifest) as the mark of a complete upload, so it must not arrive first.
    """
    client = s3_client()
    bucket, prefix = split_url(url)
    files = sorted(p for p in Path(local_dir).rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(local_dir).as_posix() == last)
    for path in files:
        key = "/".join(filter(None, [prefix.rstrip("/"), path.relative_to(local_dir).as_posix()]))
        client.upload_file(str(path), bucket, key)
