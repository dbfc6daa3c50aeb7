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

import contextlib
import hashlib
import json
import os
import random
import tempfile
import time
from copy import deepcopy
from pathlib import Path
from typing import Any

from spt import storage
from spt.errors import InputError

SPEC_FORMAT = "spt-mix-streams/1"


def _import_streaming():
    try:
        import streaming
    except ImportError as exc:  # pragma: no cover - the train environment has mosaicml-streaming
        raise ImportError("reading a mix needs mosaicml-streaming: run scripts/setup.sh train") from exc
    return streaming


def default_cache_dir() -> str:
    """Where remote streams are downloaded: ``$SPT_CACHE_DIR/streaming`` (:func:`spt.storage.cache_folder`)."""
    return storage.cache_folder("streaming")


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
    if not any(entry["choose"] > 0 for entry in spec["streams"]):
        raise InputError(f"mix {spec.get('name')!r}: no stream has samples to train on")

    def make():
        # Fresh Stream objects each time: StreamingDataset writes defaults into the ones it is given.
        streams = [
            streaming.Stream(remote=entry["remote"], local=entry["local"], choose=entry["choose"])
            for entry in deepcopy(spec["streams"])
            if entry["choose"] > 0
        ]
        return streaming.StreamingDataset(
            streams=streams, shuffle=shuffle, shuffle_seed=shuffle_seed, batch_size=batch_size, **kw
        )

    return created(make)


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
    return created(lambda: streaming.StreamingDataset(remote=entry["remote"], local=entry["local"], **kw))


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
    return created(lambda: streaming.StreamingDataset(remote=entry["remote"], local=local, **kw))


def created(make, attempts: int = 5):
    """``make()`` (which creates a Streaming dataset), one creation at a time per machine.

    Streaming picks a shared-memory prefix by checking which are free and then creating one, and every rank of a
    distributed run checks on its own, so two processes on one machine that create datasets at the same moment
    can pick the same prefix: one fails with ``FileExistsError: '/000042_locals'``, or a rank finds another job's
    prefix ("shared memory registered does not match local leader"; mosaicml/streaming#884 and #901, open; seen
    here with sweep cells and test runs starting together). So the creation holds a lock on the machine
    (:func:`machine_lock`): a lone process takes it around ``make()``; in a distributed run the local leader takes
    it and all ranks wait for that before they look for a prefix, so no other spt process can register one
    between their checks. A process that does not take the lock can still race a lone one, which then tries
    again and takes the next free prefix (a failed creation leaves nothing behind). Ranks of a distributed run
    synchronize inside that code, so there one rank must not retry alone: the error is raised.
    """
    try:
        import torch.distributed as dist
    except ImportError:
        dist = None
    distributed = dist is not None and dist.is_available() and dist.is_initialized()
    leader = int(os.environ.get("LOCAL_RANK", "0")) == 0
    for attempt in range(attempts):
        with machine_lock() if leader else contextlib.nullcontext():
            if distributed:
                dist.barrier()  # every rank looks for a prefix only once its leader holds the lock
            try:
                return make()
            except FileExistsError:
                if attempt == attempts - 1 or distributed:
                    raise
        time.sleep(random.uniform(0.05, 0.5))


@contextlib.contextmanager
def machine_lock():
    """An exclusive lock shared by every process on this machine (a file in /dev/shm, where Streaming's shared
    memory lives, so it is shared exactly as widely; the system temp folder where there is no /dev/shm)."""
    import fcntl

    try:
        handle = os.open(machine_lock_path(), os.O_CREAT | os.O_RDWR, 0o666)
    except OSError:  # another user's lock file: no lock, and the retries of created() remain
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def machine_lock_path() -> str:
    """The file :func:`machine_lock` locks."""
    folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return os.path.join(folder, "spt-streaming-create.lock")
