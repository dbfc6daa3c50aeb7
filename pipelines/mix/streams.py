"""Reading a built mix: the streams spec, and Streaming datasets that realize it.

This module is how training consumes a mix::

    from pipelines.mix.streams import read_spec, train_dataset, eval_dataset
    spec = read_spec("outputs/quickstart/mix/mixes/quickstart/streams.json")
    train = train_dataset(spec, shuffle_seed=0, batch_size=16)        # one epoch = the whole mix
    heldout = eval_dataset(spec, "domain", batch_size=16)

Every sample is a dict with ``tokens``: a numpy array of ``spec["seq_len"]`` ids (uint16, or uint32 for
vocabularies larger than 65,535). One epoch of :func:`train_dataset` yields exactly ``stream["choose"]`` samples of each
source on one rank (Streaming's ``choose``: whole passes over the source, then a seeded subset), so per-source
tokens are ``choose x seq_len``. With several ranks or canonical nodes Streaming repeats a few samples so that
every rank gets the same number.

Shared memory and local directories: Streaming registers each live ``StreamingDataset`` in shared memory by its
local directories, and creating a dataset whose *remote* stream uses the local directory of another live dataset
fails with "Reused local directory" (Streaming checks this when the second is created, and only while the first
has not started iterating; don't rely on the gap: two readers would share one download folder). Here every
source split has its own directory, so a train dataset and every eval dataset can be alive together, and local
streams (``remote`` None, a mix built to a local folder) never conflict. For remote (S3) mixes the local
directory is a download cache named after the remote URL under ``cache_dir``; for a second live dataset over the
same remote mix in one process (e.g. a test that reads the mix twice), delete the first one first or read the
spec again with another ``cache_dir``. After a crashed process left its registration behind, call
``streaming.base.util.clean_stale_shared_memory()`` once at start-up, before any dataset exists (it removes every
registration, live ones included).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from copy import deepcopy
from pathlib import Path
from typing import Any

from spt.errors import InputError

SPEC_FORMAT = "spt-mix-streams/1"


def _import_streaming():
    try:
        import streaming
    except ImportError as exc:  # pragma: no cover - the train environment has mosaicml-streaming
        raise ImportError("reading a mix needs mosaicml-streaming: run scripts/setup.sh train") from exc
    return streaming


def default_cache_dir() -> str:
    """Where remote streams are downloaded: ``$SPT_STREAMING_CACHE`` or ``<tmp>/spt-streaming``."""
    return os.environ.get("SPT_STREAMING_CACHE") or str(Path(tempfile.gettempdir()) / "spt-streaming")


def _cache_for(remote: str, cache_dir: str) -> str:
    # One folder per remote split: distinct streams never share a local directory.
    tail = "-".join(remote.rstrip("/").split("/")[-2:])
    return str(Path(cache_dir) / f"{hashlib.sha256(remote.encode()).hexdigest()[:16]}-{tail}")


def read_spec(path: str | Path, cache_dir: str | None = None) -> dict[str, Any]:
    """Reads a mix's streams.json (a local path or an ``s3://`` URL).

    Args:
        path: the spec written by `spt mix build` (``<output_dir>/mixes/<name>/streams.json``).
        cache_dir: local folder for downloads of remote streams; None = :func:`default_cache_dir`.

    Returns:
        A dict with ``seq_len``, ``total_tokens``, ``total_samples``, ``tokenizer`` (folder), ``vocab_size``,
        ``eos_token_id``, ``dtype``; ``streams``: per source ``name``, ``role``, ``local`` (absolute path),
        ``remote`` (URL or None), ``choose`` (samples asked per epoch), ``unique_samples``, ``fraction``,
        ``epochs``, ``asked_tokens``, ``realized_tokens``; ``eval``: per source with held-out data ``name``,
        ``role``, ``local``, ``remote``, ``samples`` (0 means nothing to evaluate, and no folder).

    Raises:
        InputError: the file is missing or not a streams spec.
    """
    from spt import storage

    location = str(path)
    try:
        spec = json.loads(storage.read_bytes(location).decode("utf-8"))
    except FileNotFoundError:
        raise InputError(f"mix={location!r}: no such file (build the mix first: spt mix build CONFIG)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"mix={location!r}: unreadable streams spec ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise InputError(f"mix={location!r}: not a streams spec written by `spt mix build` (format {SPEC_FORMAT})")
    base = None if storage.is_remote(location) else Path(location).resolve().parent
    cache = cache_dir or default_cache_dir()
    for entry in spec["streams"] + spec["eval"]:
        if entry.get("remote"):
            entry["local"] = _cache_for(entry["remote"], cache)
        elif entry.get("local") is not None:
            entry["local"] = str((base / entry["local"]).resolve())
    spec["path"] = location
    return spec


def _as_spec(spec: dict | str | Path) -> dict:
    return read_spec(spec) if isinstance(spec, (str, Path)) else spec


def train_dataset(spec: dict | str | Path, *, shuffle_seed: int, batch_size: int, shuffle: bool = True, **kw):
    """The mix's training streams as one ``streaming.StreamingDataset``.

    Args:
        spec: from :func:`read_spec` (or its path).
        shuffle_seed: seed of Streaming's shuffle and of the subset drawn from a partly repeated source.
        batch_size: per-rank batch size the dataset is read with (samples).
        shuffle: shuffle samples across sources.
        **kw: more ``StreamingDataset`` arguments (``num_canonical_nodes``, ``predownload``, ...).

    Returns:
        A StreamingDataset whose epoch yields ``choose`` samples of each source (see the module docstring).
    """
    streaming = _import_streaming()
    spec = _as_spec(spec)
    # Fresh Stream objects each time: StreamingDataset writes defaults into the ones it is given.
    streams = [
        streaming.Stream(remote=entry["remote"], local=entry["local"], choose=entry["choose"])
        for entry in deepcopy(spec["streams"])
        if entry["choose"] > 0
    ]
    if not streams:
        raise InputError(f"mix {spec.get('name')!r}: no stream has samples to train on")
    return streaming.StreamingDataset(
        streams=streams, shuffle=shuffle, shuffle_seed=shuffle_seed, batch_size=batch_size, **kw
    )


def eval_dataset(spec: dict | str | Path, source_name: str, **kw):
    """One source's held-out samples, in order (``shuffle`` defaults to False).

    Args:
        spec: from :func:`read_spec` (or its path).
        source_name: a source with held-out samples (``spec["eval"]``).
        **kw: more ``StreamingDataset`` arguments (``batch_size``, ``num_canonical_nodes``, ...).

    Raises:
        InputError: the source has no held-out samples in this mix.
    """
    streaming = _import_streaming()
    spec = _as_spec(spec)
    entries = {e["name"]: e for e in spec["eval"] if e.get("samples")}
    if source_name not in entries:
        names = ", ".join(sorted(entries)) or "none"
        raise InputError(
            f"mix {spec.get('name')!r}: no held-out samples for source {source_name!r} (sources with some: {names})"
        )
    entry = entries[source_name]
    kw.setdefault("shuffle", False)
    return streaming.StreamingDataset(remote=entry["remote"], local=entry["local"], **kw)


def train_sample_dataset(spec: dict | str | Path, source_name: str, **kw):
    """One source's *training* samples, in order (``shuffle`` defaults to False): a fixed sample of what training
    repeats, to measure the training loss on it like the held-out loss.

    A remote source gets its own download folder (a sibling of the training stream's), since Streaming refuses a
    second live dataset over one local directory of a remote stream (see the module docstring).

    Args:
        spec: from :func:`read_spec` (or its path).
        source_name: a source with training samples (``spec["streams"]``).
        **kw: more ``StreamingDataset`` arguments (``batch_size``, ``num_canonical_nodes``, ...).

    Raises:
        InputError: the mix has no such source with training samples.
    """
    streaming = _import_streaming()
    spec = _as_spec(spec)
    entries = {e["name"]: e for e in spec["streams"] if e.get("unique_samples")}
    if source_name not in entries:
        names = ", ".join(sorted(entries)) or "none"
        raise InputError(f"mix {spec.get('name')!r}: no training samples for source {source_name!r} "
                         f"(sources with some: {names})")
    entry = entries[source_name]
    local = entry["local"] + "-sample" if entry.get("remote") else entry["local"]
    kw.setdefault("shuffle", False)
    return streaming.StreamingDataset(remote=entry["remote"], local=local, **kw)
