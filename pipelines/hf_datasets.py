"""Hugging Face datasets as corpus input (``hf:`` in corpora, mix and rephrase configs), read with `datasets`.

Where loading happens: only here, in the process that runs the stage's driver in the train environment (the
generate environment has no `datasets`). ``spt corpora`` iterates the documents directly (it keeps a sample and
writes its own parquet); ``spt mix`` and ``spt rephrase`` first *materialize* the split to parquet (columns ``id``
and ``text``) in a content-addressed cache through :mod:`spt.storage` and read that with their existing readers.
Materializing once on the driver means Ray workers (and the generate environment) read plain parquet, locally or
from S3, and never need `datasets`, the HF cache or the network.

How a split is opened: a folder written by ``save_to_disk`` with ``load_from_disk`` (memory-mapped Arrow);
anything else (hub ids, local data folders, ``json``/``parquet``/``csv``/``text`` with ``data_files``) with
``load_dataset_builder``, then ``download_and_prepare`` + ``as_dataset(in_memory=False)``, or
``as_streaming_dataset`` when ``streaming: true``. That is `load_dataset`'s own sequence; calling it step by step
resolves the hub revision once and keeps the builder, whose ``hash`` is the resolved commit (part of the identity).

Streaming choice: documents are always read as Arrow batches of :data:`ROWS_PER_BATCH` rows, so memory is bounded
by one batch whatever the dataset's size. By default the split is prepared once in the HF cache (memory-mapped,
never loaded into memory, reused offline with ``HF_HUB_OFFLINE=1``); ``streaming: true`` skips that copy for sets
larger than the disk (the HF cache is not used then, so hub sets need the network). ``ray.data.from_huggingface``
was not used: for a local ``Dataset`` it copies the whole table into the object store, for hub sets it reads the
hub's parquet export over HTTP on the workers (ignoring the cache and offline mode), and its block order is not
the document order that byte-identical outputs and content-addressed caches need.

Identity (what a change of the dataset changes): ``Dataset._fingerprint`` when there is one, the builder's hash
(the resolved hub commit), the requested revision, and the content (sha256) of local data files or of a saved
dataset's Arrow files. The materialization cache is keyed by it; consumers then fingerprint the parquet content.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from spt import storage
from spt.config.hf import HfDataset
from spt.errors import InputError
from spt.progress import Progress
from spt.storage import ownership, sha256_json
from spt.storage.staging import staged_folder

FORMAT = "spt-hf-parquet/1"
MANIFEST = "_hf-input.json"  # "_": readers of the folder (rephrase, mix, tokenizer) skip it
ROWS_PER_BATCH = 4096  # also the parquet row group: the mix cuts its build tasks at row groups
BYTES_PER_FILE = 256 << 20  # text bytes per materialized part file (bytes)
SCHEMA = pa.schema([("id", pa.string()), ("text", pa.large_string())])
_SAVED_MARKERS = ("state.json", "dataset_dict.json")


@dataclass
class HfInput:
    """An opened split: its config, how messages name it, the `datasets` object and its identity."""

    spec: HfDataset
    where: str  # the config path of the ``hf`` section, e.g. ``mix.sources[0].hf``
    dataset: Any  # datasets.Dataset or datasets.IterableDataset
    identity: dict

    @property
    def key(self) -> str:
        """The content address of the materialized parquet: identity and the columns read."""
        spec = self.spec
        return sha256_json({"format": FORMAT, "identity": self.identity, "text_column": spec.text_column,
                            "id_column": spec.id_column})

    def record(self) -> dict:
        """What manifests and summaries record about the input."""
        return {"dataset": self.spec.model_dump(mode="json"), "identity": self.identity, "key": self.key}


def _import_datasets(where: str):
    try:
        import datasets
    except ImportError:
        raise InputError(f"{where}: reading Hugging Face datasets needs the `datasets` package of the train "
                         "environment (run spt with .venv/train/bin/spt)") from None
    return datasets


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` forbids the network."""
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def open_dataset(spec: HfDataset, where: str) -> HfInput:
    """Opens one split and checks its columns; nothing is written but the HF cache's own files.

    Raises:
        InputError: one line: path not found, offline and not cached, unknown split, missing or non-text column.
    """
    datasets = _import_datasets(where)
    local = Path(spec.path).expanduser()
    if any((local / marker).is_file() for marker in _SAVED_MARKERS):
        dataset, identity = _open_saved(datasets, spec, local, where)
    else:
        dataset, identity = _open_with_builder(datasets, spec, where)
    _check_columns(datasets, spec, dataset, where)
    return HfInput(spec, where, dataset, identity)


def _open_saved(datasets, spec: HfDataset, folder: Path, where: str):
    for field in ("name", "revision", "data_files"):
        if getattr(spec, field) is not None:
            raise InputError(f"{where}.{field}: not used by a dataset saved with save_to_disk ({spec.path!r})")
    try:
        loaded = datasets.load_from_disk(str(folder), keep_in_memory=False)
    except Exception as exc:  # noqa: BLE001 - a damaged folder (missing Arrow files, bad state.json): one line
        raise InputError(f"{where}.path={spec.path!r}: unreadable saved dataset ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if spec.split not in loaded:
            raise InputError(f"{where}.split={spec.split!r}: no such split in {spec.path!r} "
                             f"(splits: {', '.join(loaded)})")
        loaded = loaded[spec.split]
    elif loaded.split is not None and str(loaded.split) != spec.split:
        raise InputError(f"{where}.split={spec.split!r}: {spec.path!r} holds the split {str(loaded.split)!r}")
    files = [storage.content_id(f["filename"]) for f in loaded.cache_files]
    return loaded, {"kind": "saved", "fingerprint": loaded._fingerprint, "split": spec.split, "files": files}


def _open_with_builder(datasets, spec: HfDataset, where: str):
    try:
        builder = datasets.load_dataset_builder(spec.path, spec.name, data_files=spec.data_files,
                                                revision=spec.revision)
        if spec.streaming:
            dataset = builder.as_streaming_dataset(split=spec.split)
        else:
            builder.download_and_prepare()
            dataset = builder.as_dataset(split=spec.split, in_memory=False)
    except ValueError as exc:
        message = str(exc).splitlines()[0]
        if "split" in message.lower():
            raise InputError(f"{where}.split={spec.split!r}: {message}") from None
        raise InputError(f"{where}: cannot load {spec.label()!r}: {message}") from None
    except ConnectionError as exc:
        why = ("offline mode is on (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE) and it is not in the HF cache"
               if offline() else f"cannot reach the Hugging Face Hub ({exc})")
        raise InputError(f"{where}.path={spec.path!r}: not a local dataset, and {why}") from None
    except FileNotFoundError as exc:
        raise InputError(f"{where}.path={spec.path!r}: not found ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # noqa: BLE001 - malformed data files, gated repos...: one line, not a traceback
        raise InputError(f"{where}: cannot load {spec.label()!r}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    identity = {
        "kind": "hub" if builder.config.data_files and _on_hub(builder) else "files",
        "path": spec.path, "name": builder.config.name, "split": spec.split, "revision": spec.revision,
        "builder_hash": builder.hash, "data_files": _data_files_identity(builder),
        "fingerprint": getattr(dataset, "_fingerprint", None), "streaming": spec.streaming,
    }
    return dataset, identity


def _on_hub(builder) -> bool:
    return any(str(f).startswith("hf://") for files in builder.config.data_files.values() for f in files)


def _data_files_identity(builder) -> dict[str, list[str]]:
    """Each split's data files: local files by content (sha256), remote ones by URL (a hub URL names the commit)."""
    found = {}
    for split, files in sorted((builder.config.data_files or {}).items()):
        found[str(split)] = [storage.content_id(str(f)) if os.path.isfile(str(f)) else str(f) for f in files]
    return found


def _check_columns(datasets, spec: HfDataset, dataset, where: str) -> None:
    features = dataset.features
    if features is None:  # a streamed set whose schema is known only once read
        first = next(iter(dataset.take(1)), None)
        names = list(first) if first is not None else []
    else:
        names = list(features)
    for field, column in (("text_column", spec.text_column), ("id_column", spec.id_column)):
        if column is not None and column not in names:
            raise InputError(f"{where}.{field}={column!r}: no such column in {spec.label()!r} "
                             f"(columns: {', '.join(names) or 'none'})")
    kind = features.get(spec.text_column) if features is not None else None
    if kind is not None and not (isinstance(kind, datasets.Value) and kind.dtype in ("string", "large_string")):
        raise InputError(f"{where}.text_column={spec.text_column!r}: holds {kind}, not text")


def batches(source: HfInput) -> Iterator[pa.Table]:
    """The split as tables of :data:`SCHEMA` (``id``, ``text``), :data:`ROWS_PER_BATCH` rows each (the last may be
    shorter), in the dataset's order. Without an id column the id is ``<split>:<row number>``."""
    spec = source.spec
    columns = [spec.text_column] + ([spec.id_column] if spec.id_column else [])
    row = 0
    for table in source.dataset.select_columns(columns).with_format("arrow").iter(batch_size=ROWS_PER_BATCH):
        if spec.id_column:
            ids = table.column(spec.id_column).cast(pa.string())
        else:
            ids = pa.array([f"{spec.split}:{n}" for n in range(row, row + table.num_rows)], pa.string())
        text = table.column(spec.text_column).cast(pa.large_string())
        row += table.num_rows
        yield pa.table([ids, text], schema=SCHEMA)


def documents(source: HfInput) -> Iterator[tuple[str, str | None]]:
    """(id, text) of every row, in the dataset's order (text None for a null)."""
    for table in batches(source):
        yield from zip(table.column("id").to_pylist(), table.column("text").to_pylist())


@dataclass(frozen=True)
class Materialized:
    """A split written as parquet: its folder, the part files in order, the rows, and whether it was reused."""

    folder: str
    files: list[str]
    rows: int
    reused: bool


def claim_cache(folder: str, where: str) -> None:
    """Claims a folder of its own for materialized datasets (content-addressed: any config may add to it).

    Raises:
        InputError: the folder is not writable, or holds files spt did not write or another stage's output.
    """
    ownership.claim(folder, "hf-cache", "content-addressed", where=where)


def materialize(source: HfInput, cache: str) -> Materialized:
    """Writes the split as parquet under ``cache/<name>-<key>/`` (local or ``s3://``), unless it is there.

    The folder holds ``part-NNNNN.parquet`` files (``id``, ``text``; :data:`ROWS_PER_BATCH`-row groups) and
    ``_hf-input.json`` (written last: the mark of a complete folder). The same rows give the same bytes.
    """
    # Absolute: Ray workers and the generate stage read these files, and their working directory need not be ours.
    cache = cache if storage.is_remote(cache) else str(storage.local_path(cache))
    folder = storage.join(cache, f"{_slug(source.spec)}-{source.key[:16]}")
    manifest = storage.read_json(storage.join(folder, MANIFEST))
    if manifest and manifest.get("key") == source.key:
        files = [storage.join(folder, name) for name in manifest["files"]]
        if all(storage.is_file(f) for f in files):
            return Materialized(folder, files, int(manifest["rows"]), True)
    with staged_folder(folder, last=MANIFEST) as staging:
        parts = _Parts(staging)
        total = getattr(source.dataset, "num_rows", None)  # None for a streamed set
        with Progress(f"parquet of {source.spec.label()}", total, "docs") as progress:
            for table in batches(source):
                parts.add(table)
                progress.update(table.num_rows)
        files = parts.close()
        storage.write_json(str(staging / MANIFEST), {"format": FORMAT, **source.record(), "rows": parts.rows,
                                                     "files": files})
    return Materialized(folder, [storage.join(folder, name) for name in files], parts.rows, False)


class _Parts:
    """The part files of a materialized split: ``part-NNNNN.parquet``, a new one after :data:`BYTES_PER_FILE` of
    text, one row group per batch."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, dict] = {}  # name -> rows and sha256
        self.rows = 0
        self._writer, self._name, self._rows, self._bytes = None, "", 0, 0

    def add(self, table: pa.Table) -> None:
        if self._writer is None:
            self._name, self._rows, self._bytes = f"part-{len(self.files):05d}.parquet", 0, 0
            self._writer = pq.ParquetWriter(str(self.folder / self._name), SCHEMA, compression="zstd")
        self._writer.write_table(table, row_group_size=ROWS_PER_BATCH)
        self._rows += table.num_rows
        self._bytes += table.column("text").nbytes
        self.rows += table.num_rows
        if self._bytes >= BYTES_PER_FILE:
            self._finish()

    def _finish(self) -> None:
        self._writer.close()
        self._writer = None
        self.files[self._name] = {"rows": self._rows, "sha256": storage.sha256(str(self.folder / self._name))}

    def close(self) -> dict[str, dict]:
        """Finishes the last file; an empty split still gets one (zero-row) file, so readers call it empty."""
        if self._writer is None and not self.files:
            self.add(SCHEMA.empty_table())
        if self._writer is not None:
            self._finish()
        return self.files


def _slug(spec: HfDataset) -> str:
    base = Path(spec.path.rstrip("/")).name or "dataset"
    text = "-".join(p for p in (base, spec.name, spec.split) if p)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:60].strip("-.") or "dataset"
