"""Seed documents: list the inputs (local paths or s3://) and cut them into deterministic work units.

Formats: parquet; jsonl (one JSON object per line); a local Hugging Face dataset saved with ``save_to_disk``
(Arrow stream files listed in ``state.json``, or a ``DatasetDict`` folder with one such folder per split).

A work unit is a fixed range of one file: rows ``[start, stop)`` of a parquet/Arrow file, or the lines starting
in bytes ``[start, stop)`` of a jsonl file. Files are sorted and ranges are fixed-size, so a rerun derives the
same units with the same indexes, which is what lets the manifest name finished work.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import asdict, dataclass
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spt import storage
from spt.config.rephrase import RephraseInput
from spt.errors import InputError

_EXTENSIONS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".arrow": "hf"}


@dataclass(frozen=True)
class Unit:
    """One work unit: a fixed range of one input file."""

    index: int
    path: str  # filesystem path (no scheme); s3 paths are bucket/key
    scheme: str  # "file" or "s3"
    format: str  # parquet | jsonl | hf
    label: str  # the file's name relative to its input root, used in generated ids
    start: int  # first row (parquet/hf) or byte offset (jsonl)
    stop: int  # one past the last row, or the byte offset where the next unit starts
    first_row: int  # row number of the unit's first document within its file
    rows: int  # documents (rows or lines) in the unit
    split: str = "train"  # "heldout" for input.heldout_paths: its rephrasings are never trained on

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RawDocument:
    """A document as read: its id, its text (str, bytes or None), and its row number in the file."""

    source_id: str | None
    text: str | bytes | None
    row: int
    problem: str | None = None  # set when the row could not be parsed at all


def location(scheme: str, path: str) -> str:
    """The storage location of an input file (``path`` as a unit records it)."""
    return f"s3://{path}" if scheme == "s3" else path


def filesystem(scheme: str, path: str) -> pafs.FileSystem:
    """The pyarrow file system of an input file, from the one storage layer (S3 settings: ``spt.storage``)."""
    return storage.resolve(location(scheme, path))[0]


def _split_uri(uri: str, where: str) -> tuple[str, str]:
    storage.check(uri, where)
    if storage.is_remote(uri):
        return "s3", uri[len("s3://"):].rstrip("/")
    return "file", str(storage.local_path(uri))


def _hf_files(fs: pafs.FileSystem, folder: str, split: str) -> list[str] | None:
    """Arrow files of a dataset saved by ``datasets.save_to_disk``, or None when ``folder`` is not one."""
    def read(name: str):
        info = fs.get_file_info(posixpath.join(folder, name))
        if info.type != pafs.FileType.File:
            return None
        with fs.open_input_stream(info.path) as handle:
            return json.loads(handle.read().decode("utf-8"))

    if (splits := read("dataset_dict.json")) is not None:
        if split not in splits.get("splits", []):
            raise InputError(f"DatasetDict has no split {split!r} (splits: {', '.join(splits.get('splits', []))})")
        return _hf_files(fs, posixpath.join(folder, split), split)
    if (state := read("state.json")) is not None:
        return [posixpath.join(folder, item["filename"]) for item in state.get("_data_files", [])]
    return None


def list_files(spec: RephraseInput) -> list[tuple[str, str, str, str, str]]:
    """Every input file as (scheme, path, format, label, split), sorted within each input path: first those of
    ``paths`` (split ``train``), then those of ``heldout_paths`` (split ``heldout``).

    Raises:
        InputError: a path is missing, a folder holds no supported files, or a format is unknown.
    """
    found, problems = [], []
    entries = [("paths", "train", i, uri) for i, uri in enumerate(spec.paths)]
    entries += [("heldout_paths", "heldout", i, uri) for i, uri in enumerate(spec.heldout_paths)]
    for field, split, index, uri in entries:
        where = f"input.{field}[{index}]={uri!r}"
        try:
            scheme, path = _split_uri(uri, f"input.{field}[{index}]")
            fs = filesystem(scheme, path)
            info = fs.get_file_info(path)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        except OSError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if info.type == pafs.FileType.NotFound:
            problems.append(f"{where}: no such file or folder")
            continue
        if info.type == pafs.FileType.File:
            files, root = [path], posixpath.dirname(path)
        else:
            root = path
            try:
                files = _hf_files(fs, path, spec.hf_split) if spec.format in ("auto", "hf") else None
            except InputError as exc:
                problems.append(f"{where}: {exc.problems[0]} (set input.hf_split)")
                continue
            if files is None:
                selector = pafs.FileSelector(path, recursive=True)
                files = sorted(
                    f.path for f in fs.get_file_info(selector)
                    if f.type == pafs.FileType.File and _format_of(f.path, "auto") is not None
                    and not posixpath.basename(f.path).startswith((".", "_"))
                )
            if not files:
                problems.append(f"{where}: folder has no .parquet, .jsonl or .arrow files")
                continue
        for file in files:
            fmt = _format_of(file, spec.format)
            if fmt is None:
                problems.append(f"{where}: {file}: unknown format (set input.format)")
                continue
            found.append((scheme, file, fmt, posixpath.relpath(file, root) if root else file, split))
    if problems:
        raise InputError(problems)
    return found


def _format_of(path: str, configured: str) -> str | None:
    if configured != "auto":
        return configured
    return next((fmt for ext, fmt in _EXTENSIONS.items() if path.endswith(ext)), None)


def plan_units(spec: RephraseInput, documents_per_unit: int) -> list[Unit]:
    """Cuts every input file into units of ``documents_per_unit`` documents, honouring ``max_documents``.

    Raises:
        InputError: unreadable files, or files without the configured columns (checked before any work).
    """
    units: list[Unit] = []
    budget = spec.max_documents
    problems = []
    for scheme, path, fmt, label, split in list_files(spec):
        if budget is not None and budget <= 0:
            break
        fs = filesystem(scheme, path)
        try:
            ranges = _ranges(fs, path, fmt, spec, documents_per_unit, budget)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        except (OSError, pa.ArrowException, ValueError) as exc:
            shown = f"s3://{path}" if scheme == "s3" else path
            problems.append(f"{shown}: cannot read: {exc}")
            continue
        for start, stop, first_row, rows in ranges:
            budget = None if budget is None else budget - rows
            units.append(Unit(len(units), path, scheme, fmt, label, start, stop, first_row, rows, split))
    if problems:
        raise InputError(problems)
    return units


def _check_columns(path: str, names: list[str], spec: RephraseInput) -> None:
    wanted = [spec.text_column] + ([spec.id_column] if spec.id_column else [])
    missing = [c for c in wanted if c not in names]
    if missing:
        raise InputError(
            f"{path}: no column {missing[0]!r} (columns: {', '.join(names)}); set input.text_column/id_column"
        )


def _ranges(fs, path: str, fmt: str, spec: RephraseInput, size: int, limit: int | None) -> list[tuple]:
    """(start, stop, first_row, rows) per unit of one file, covering at most ``limit`` documents."""
    limit = float("inf") if limit is None else limit
    if fmt in ("parquet", "hf"):
        with fs.open_input_file(path) as handle:
            if fmt == "parquet":
                meta = pq.ParquetFile(handle).metadata
                _check_columns(path, meta.schema.to_arrow_schema().names, spec)
                total = meta.num_rows
            else:
                reader = pa.ipc.open_stream(handle)
                _check_columns(path, reader.schema.names, spec)
                total = sum(batch.num_rows for batch in reader)
        total = int(min(total, limit))
        return [(s, min(s + size, total), s, min(size, total - s)) for s in range(0, total, size)]
    # jsonl: byte offsets of every size-th line start, found in one pass
    ranges, offset, line, unit_start, unit_line = [], 0, 0, 0, 0
    with fs.open_input_stream(path) as handle:
        carry = b""
        while line < limit and (block := handle.read(1 << 22)):
            block = carry + block
            cut = block.rfind(b"\n") + 1
            carry = block[cut:]
            for piece in block[:cut].split(b"\n")[:-1]:
                offset += len(piece) + 1
                line += 1
                if line - unit_line == size or line == limit:
                    ranges.append((unit_start, offset, unit_line, line - unit_line))
                    unit_start, unit_line = offset, line
                if line == limit:
                    break
        if carry and line < limit:
            offset += len(carry)
            line += 1
    if line > unit_line:
        ranges.append((unit_start, offset, unit_line, line - unit_line))
    return ranges


def read_unit(unit: Unit, spec: RephraseInput) -> Iterator[RawDocument]:
    """The unit's documents in file order. Rows that cannot be parsed come back with ``problem`` set."""
    fs = filesystem(unit.scheme, unit.path)
    if unit.format == "jsonl":
        yield from _read_jsonl(fs, unit, spec)
        return
    if unit.format == "parquet":
        table = _parquet_slice(fs, unit, spec)
    else:
        table = _arrow_slice(fs, unit, spec)
    texts = _as_binary(table.column(spec.text_column))
    ids = table.column(spec.id_column).to_pylist() if spec.id_column else [None] * table.num_rows
    for offset, (source_id, text) in enumerate(zip(ids, texts)):
        row = unit.first_row + offset
        if spec.id_column is None:
            source_id = f"{unit.label}:{row}"
        yield RawDocument(None if source_id is None else str(source_id), text, row)


def _as_binary(column: pa.ChunkedArray) -> list:
    """Text values as bytes (decoded later, so invalid UTF-8 is one counted bad row, not a crash)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.large_binary())
    return column.to_pylist()  # non-text values (numbers...) are reported later as missing text


def _parquet_slice(fs, unit: Unit, spec: RephraseInput) -> pa.Table:
    columns = [spec.text_column] + ([spec.id_column] if spec.id_column else [])
    with fs.open_input_file(unit.path) as handle:
        parquet = pq.ParquetFile(handle)
        groups, first, row = [], None, 0
        for index in range(parquet.metadata.num_row_groups):
            count = parquet.metadata.row_group(index).num_rows
            if row + count > unit.start and row < unit.stop:
                groups.append(index)
                first = row if first is None else first
            row += count
        table = parquet.read_row_groups(groups, columns=columns) if groups else None
    if table is None:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return table.slice(unit.start - first, unit.stop - unit.start)


def _arrow_slice(fs, unit: Unit, spec: RephraseInput) -> pa.Table:
    columns = [spec.text_column] + ([spec.id_column] if spec.id_column else [])
    batches, row = [], 0
    with fs.open_input_file(unit.path) as handle:
        reader = pa.ipc.open_stream(handle)
        schema = reader.schema
        for batch in reader:
            if row + batch.num_rows > unit.start and row < unit.stop:
                lo = max(unit.start - row, 0)
                batches.append(batch.slice(lo, min(unit.stop - row, batch.num_rows) - lo))
            row += batch.num_rows
            if row >= unit.stop:
                break
    return pa.Table.from_batches(batches, schema=schema).select(columns)


def _read_jsonl(fs, unit: Unit, spec: RephraseInput) -> Iterator[RawDocument]:
    with fs.open_input_file(unit.path) as handle:
        handle.seek(unit.start)
        data = handle.read(unit.stop - unit.start)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for offset, raw in enumerate(lines):
        row = unit.first_row + offset
        fallback_id = f"{unit.label}:{row}"
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            yield RawDocument(fallback_id, "", row)  # a blank line: an empty document
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield RawDocument(fallback_id, None, row, "invalid UTF-8")
            continue
        except ValueError:
            yield RawDocument(fallback_id, None, row, "invalid JSON")
            continue
        if not isinstance(record, dict):
            yield RawDocument(fallback_id, None, row, "invalid JSON")
            continue
        source_id = record.get(spec.id_column) if spec.id_column else fallback_id
        yield RawDocument(None if source_id is None else str(source_id), record.get(spec.text_column), row)
