"""Input files of a mix source and the documents in them.

Inputs are parquet files with a ``text`` column (the corpora and the rephrase output) and jsonl files with a
``text`` field, local or on S3. A bad row is skipped and counted by reason, never fatal; a missing path or a file
that is not parquet at all is an error. Rephrase output rows also carry ``error`` (the engine failed: skipped),
``rejected`` (the quality gate's reason: skipped, counted as ``rejected: <reason>``), ``source_id`` and ``split``.

A folder written by `spt rephrase` contributes only the shards its manifest lists (a shard of a killed run
that the manifest does not list yet is not an input), and only when the run is complete, unless the source
allows an incomplete one (:func:`rephrase_status`).

Honest held-out splits: rows that carry a ``source_id`` (every style and chunk of one rephrased document) are
split by a hash of that id, so one source document never lands on both sides; rows with ``split == "heldout"``
(rephrasings of held-out documents) and rows whose ``source_id`` is held out of the source they rephrase always go
to the held-out split.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spt import storage

SUFFIXES = (".parquet", ".jsonl")
SPLITS = ("train", "heldout")

# Reasons a row is skipped; they appear in plans and manifests.
INVALID_JSON = "invalid JSON"
INVALID_UTF8 = "invalid UTF-8"
MISSING_TEXT = "missing text"
NOT_A_STRING = "text not a string"
EMPTY = "empty document"
REPHRASE_ERROR = "rephrase error"
REJECTED = "rejected"  # counted as "rejected: <the gate's reason>"


class UnreadableFile(Exception):
    """A file that cannot be parsed at all (not a row-level problem)."""


@dataclass(frozen=True)
class InputFile:
    """One input file and an identifier of its content (:func:`spt.storage.content_id`: ``sha256:...`` locally,
    ``etag:...`` on S3)."""

    location: str
    content_id: str
    origin: str = ""  # the config entry that named it, e.g. mix.sources[0].paths[1]


@dataclass(frozen=True)
class Document:
    """One usable row: its text, the id of the document it was made from (rephrase output), its marked split."""

    text: str
    source_id: str | None = None
    split: str | None = None  # "heldout" for rephrasings of held-out documents


@dataclass(frozen=True)
class SplitRule:
    """Where a file's documents go: all to one split, or held out by a hash of (seed, document).

    The document is its ``source_id`` when it has one (all rows of one source document share a side), else its
    text. Rows marked held out, and rows of documents in ``heldout_ids`` (held out of the source they
    rephrase), are held out whatever the rule.
    """

    split: str = "train"
    heldout_fraction: float | None = None
    seed: int = 0
    heldout_ids: frozenset = frozenset()

    def split_of(self, text: str, source_id: str | None = None, marked: str | None = None) -> str:
        if marked == "heldout" or (source_id is not None and source_id in self.heldout_ids):
            return "heldout"
        if self.heldout_fraction is None:
            return self.split
        if source_id is not None:
            digest = hashlib.sha256(f"{self.seed}:document:{source_id}".encode()).digest()
        else:
            digest = hashlib.sha256(f"{self.seed}:".encode() + hashlib.sha256(text.encode()).digest()).digest()
        held = int.from_bytes(digest[:8], "big") / 2**64 < self.heldout_fraction
        return "heldout" if held else "train"

    def of(self, document: "Document") -> str:
        """The split of a document as read (:func:`read_chunk_documents`)."""
        return self.split_of(document.text, document.source_id, document.split)


@dataclass(frozen=True)
class RephraseStatus:
    """A `spt rephrase` output folder as its manifest tells it."""

    location: str
    units_committed: int
    units_total: int

    @property
    def complete(self) -> bool:
        return self.units_committed >= self.units_total

    @property
    def units_missing(self) -> int:
        return max(self.units_total - self.units_committed, 0)


def rephrase_status(location: str) -> RephraseStatus | None:
    """The committed and total work units of a `spt rephrase` output folder, or None for other paths."""
    manifest = _rephrase_manifest(location) if storage.is_folder(location) else None
    if manifest is None:
        return None
    committed = len(manifest.get("units", {}))
    total = manifest.get("units_total")
    return RephraseStatus(location, committed, committed if total is None else int(total))


def resolve_inputs(paths: list[str], where: str, allow_incomplete: bool = False) -> tuple[list[InputFile], list[str]]:
    """Expands files and folders (local or ``s3://``) into input files with content ids.

    Args:
        paths: the config's list of files and folders.
        where: the config path of the list for messages, e.g. ``mix.sources[0].paths``.
        allow_incomplete: take the committed shards of an unfinished `spt rephrase` output instead of refusing it.

    Returns:
        (files in order: each entry's files sorted by name, problems: one line per bad entry)
    """
    files: list[InputFile] = []
    problems: list[str] = []
    for index, item in enumerate(paths):
        # Absolute: Ray workers read these files, and their working directory need not be ours.
        location = item if storage.is_remote(item) else str(storage.local_path(item))
        status = rephrase_status(location)
        if status is not None and not status.complete and not allow_incomplete:
            problems.append(
                f"{where}[{index}]={item!r}: rephrase output is incomplete ({status.units_committed} of "
                f"{status.units_total} units committed); finish it with `spt rephrase`, or set "
                "allow_incomplete: true on the source to use its committed shards only"
            )
            continue
        found, problem = _input_files(location)
        if problem:
            problems.append(f"{where}[{index}]={item!r}: {problem}")
        files.extend(InputFile(f, storage.content_id(f), f"{where}[{index}]") for f in found)
    return files, problems


def _input_files(location: str) -> tuple[list[str], str | None]:
    if storage.is_folder(location):
        listed = _rephrase_shards(location)
        if listed is not None:
            found = listed
        else:
            found = [e.location for e in storage.list_files(location, suffixes=SUFFIXES)]
        return (found, None) if found else ([], "folder has no .parquet or .jsonl files")
    if storage.is_file(location):
        if not location.endswith(SUFFIXES):
            return [], "not a .parquet or .jsonl file"
        return [location], None
    return [], "no such file or folder"


def _rephrase_manifest(folder: str) -> dict | None:
    manifest = storage.read_json(storage.join(folder, "manifest.json"))
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith("spt-rephrase/"):
        return None
    return manifest


def _rephrase_shards(folder: str) -> list[str] | None:
    """The shards a `spt rephrase` manifest lists (committed units only), or None for other folders."""
    manifest = _rephrase_manifest(folder)
    if manifest is None:
        return None
    names = sorted(info["file"] for info in manifest.get("units", {}).values() if info.get("file"))
    return [storage.join(folder, name) for name in names]


@dataclass(frozen=True)
class Chunk:
    """The part of one input file that one build task reads: rows [start, stop) of a parquet file (whole row
    groups), or bytes [start, stop) of a jsonl file (whole lines); ``stop`` None means to the end."""

    location: str
    start: int = 0
    stop: int | None = None


#: About this many bytes of a jsonl file go to one build task (cut at the next line end).
JSONL_CHUNK_BYTES = 4 << 20


def chunks_of(location: str, jsonl_bytes: int = JSONL_CHUNK_BYTES) -> list[Chunk]:
    """Cuts a file into the pieces build tasks read, so that a large file is tokenized by several workers.

    A parquet file (local or S3: only its footer is read) is cut at row-group boundaries (a row group is decoded
    as a whole, so a smaller piece would decode it again for every piece); a local jsonl file into about
    ``jsonl_bytes`` of whole lines. A remote jsonl file is one piece (cutting it would need a download just to
    find the cuts).
    """
    try:
        if location.endswith(".parquet"):
            with storage.open_input(location) as handle:
                metadata = pq.ParquetFile(handle).metadata
            sizes = [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]
            starts = np.cumsum([0, *sizes]).tolist()
            return [Chunk(location, a, b) for a, b in zip(starts, starts[1:])] or [Chunk(location)]
        if storage.is_remote(location):
            return [Chunk(location)]
        data = storage.read_bytes(location)
    except (pa.ArrowException, OSError):
        return [Chunk(location)]  # read_chunk reports what is wrong with it
    cuts = [0]
    while cuts[-1] + jsonl_bytes < len(data):
        line_end = data.find(b"\n", cuts[-1] + jsonl_bytes)
        if line_end < 0:
            break
        cuts.append(line_end + 1)
    if cuts[-1] != len(data):
        cuts.append(len(data))
    return [Chunk(location, a, b) for a, b in zip(cuts, cuts[1:])] or [Chunk(location)]


def read_documents(location: str) -> tuple[list[str], Counter]:
    """The texts of the usable documents of one file, in file order, and the skipped rows counted by reason.

    Raises:
        UnreadableFile: the file is not parquet (for ``.parquet``) or cannot be read at all.
    """
    return read_chunk(Chunk(location))


def read_chunk(chunk: Chunk) -> tuple[list[str], Counter]:
    """The texts of the usable documents of one chunk (see :func:`read_chunk_documents`)."""
    documents, skipped = read_chunk_documents(chunk)
    return [d.text for d in documents], skipped


def read_chunk_documents(chunk: Chunk) -> tuple[list[Document], Counter]:
    """The usable documents of one chunk, in file order, and the skipped rows counted by reason.

    Raises:
        UnreadableFile: the file is not parquet (for ``.parquet``) or cannot be read at all.
    """
    skipped: Counter = Counter()
    try:
        with storage.open_input(chunk.location) as handle:
            if chunk.location.endswith(".parquet"):
                texts = _parquet_documents(handle, skipped, chunk.start, chunk.stop)
            else:
                handle.seek(chunk.start)
                data = handle.read() if chunk.stop is None else handle.read(chunk.stop - chunk.start)
                texts = _jsonl_documents(data, skipped)
    except FileNotFoundError:
        raise UnreadableFile("no such file") from None
    except OSError as exc:
        raise UnreadableFile(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    return texts, skipped


def _unreadable(exc: Exception) -> UnreadableFile:
    return UnreadableFile(f"not a readable parquet file ({str(exc).splitlines()[0]})")


#: Columns of rephrase output the reader uses besides ``text``, when a file has them.
_EXTRA_COLUMNS = ("error", "rejected", "source_id", "split")


def _parquet_documents(source, skipped: Counter, start: int = 0, stop: int | None = None) -> list[Document]:
    try:
        handle = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(exc) from None
    names = handle.schema_arrow.names
    total = handle.metadata.num_rows
    stop = total if stop is None else min(stop, total)
    if "text" not in names:
        skipped[MISSING_TEXT] += max(0, stop - start)
        return []
    columns = ["text"] + [c for c in _EXTRA_COLUMNS if c in names]
    texts: list[Document] = []
    offset = 0
    for group in range(handle.num_row_groups):
        rows = handle.metadata.row_group(group).num_rows
        first, offset = offset, offset + rows
        if offset <= start or first >= stop:
            continue  # outside the chunk: not decoded
        try:
            table = handle.read_row_group(group, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(exc) from None
        table = table.slice(max(start - first, 0), min(stop, offset) - max(start, first))
        extra = {c: table.column(c).to_pylist() if c in columns else [None] * table.num_rows for c in _EXTRA_COLUMNS}
        for row, value in enumerate(_column_values(table.column("text"))):
            if extra["error"][row] is not None:
                skipped[REPHRASE_ERROR] += 1
            elif extra["rejected"][row] is not None:
                skipped[f"{REJECTED}: {extra['rejected'][row]}"] += 1
            elif value is None:
                skipped[MISSING_TEXT] += 1
            elif isinstance(value, _Bad):
                skipped[value.reason] += 1
            else:
                _keep(_document(value, extra["source_id"][row], extra["split"][row]), texts, skipped)
    return texts


def _document(text: str, source_id, marked) -> Document:
    return Document(text, None if source_id is None else str(source_id), marked if isinstance(marked, str) else None)


@dataclass(frozen=True)
class _Bad:
    """A value that cannot become a document, and why."""

    reason: str


def _column_values(column: pa.ChunkedArray) -> list:
    """The values of a text column as Python strings, None for nulls, or _Bad for values that are not text."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            return column.to_pylist()
        except UnicodeDecodeError:
            # Parquet writers can store bytes that are not UTF-8 in a string column; decode row by row.
            column = column.cast(pa.large_binary())
    elif not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        return [None if v is None else _Bad(NOT_A_STRING) for v in column.to_pylist()]
    values = []
    for raw in column.to_pylist():
        try:
            values.append(None if raw is None else raw.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(_Bad(INVALID_UTF8))
    return values


def _keep(document: Document, texts: list[Document], skipped: Counter) -> None:
    if document.text.strip():
        texts.append(document)
    else:
        skipped[EMPTY] += 1


def _jsonl_documents(data: bytes, skipped: Counter) -> list[Document]:
    texts: list[Document] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue  # blank lines separate nothing in jsonl; they are not rows
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            skipped[INVALID_UTF8] += 1
            continue
        except ValueError:
            skipped[INVALID_JSON] += 1
            continue
        if isinstance(row, dict) and row.get("error") is not None:
            skipped[REPHRASE_ERROR] += 1
        elif isinstance(row, dict) and row.get("rejected") is not None:
            skipped[f"{REJECTED}: {row['rejected']}"] += 1
        elif not isinstance(row, dict) or row.get("text") is None:
            skipped[MISSING_TEXT] += 1
        elif not isinstance(row["text"], str):
            skipped[NOT_A_STRING] += 1
        else:
            _keep(_document(row["text"], row.get("source_id"), row.get("split")), texts, skipped)
    return texts
