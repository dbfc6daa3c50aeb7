"""Honest held-out splits for rephrased sources: which documents are held out of the source they rephrase.

A synthetic source that names ``rephrases: <source>`` must never train on a rephrasing of a document that
``<source>`` holds out: its rows of such documents go to its own held-out split, whatever its ``heldout_fraction``
says. Documents are matched by id: the original's ``id`` column (or jsonl field) against the rephrase rows'
``source_id`` (`spt rephrase` copies ``input.id_column``, ``id`` by default, into it).
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.mix.documents import Document, InputFile, SplitRule
from spt import storage

ID_COLUMN = "id"


def heldout_ids(files: list[tuple[InputFile, SplitRule]], where: str) -> tuple[frozenset, list[str]]:
    """The ids of the documents a source holds out: every id of its held-out files, and the ids of documents its
    ``heldout_fraction`` holds out of its training files.

    Args:
        files: the original source's files with their split rules (as the plan resolved them).
        where: how messages name the synthetic source, e.g. ``mix.sources[3] 'domain_rephrased'``.

    Returns:
        (ids, problems: one line per file without ids)
    """
    ids: set[str] = set()
    problems: list[str] = []
    for item, rule in files:
        if rule.split != "heldout" and rule.heldout_fraction is None:
            continue  # every document of the file trains: none is held out
        rows = _ids_and_texts(item.location, with_text=rule.split != "heldout")
        if rows is None:
            problems.append(
                f"{where}: rephrases a source whose file {item.location!r} has no {ID_COLUMN!r} column to match "
                "rephrased rows (source_id) against its held-out documents"
            )
            continue
        for doc_id, text in rows:
            if rule.split == "heldout" or (text is not None and rule.of(Document(text)) == "heldout"):
                ids.add(doc_id)
    return frozenset(ids), problems


def _ids_and_texts(location: str, with_text: bool) -> list[tuple[str, str | None]] | None:
    """(id, text or None) of every row with an id; None when the file has no id column at all."""
    if location.endswith(".parquet"):
        with storage.open_input(location) as handle:
            names = pq.ParquetFile(handle).schema_arrow.names
        if ID_COLUMN not in names:
            return None
        columns = [ID_COLUMN] + (["text"] if with_text and "text" in names else [])
        table = storage.read_parquet(location, columns=columns)
        ids = table.column(ID_COLUMN).to_pylist()
        texts = _texts(table, with_text and "text" in columns)
        return [(str(i), t) for i, t in zip(ids, texts) if i is not None]
    rows, found = [], False
    for line in storage.read_bytes(location).split(b"\n"):
        try:
            row = json.loads(line)
        except ValueError:
            continue  # blank or corrupt: not a document (the reader counts it)
        if isinstance(row, dict) and row.get(ID_COLUMN) is not None:
            found = True
            text = row.get("text") if with_text and isinstance(row.get("text"), str) else None
            rows.append((str(row[ID_COLUMN]), text))
    return rows if found else None


def _texts(table: pa.Table, wanted: bool) -> list:
    if not wanted:
        return [None] * table.num_rows
    try:
        return table.column("text").to_pylist()
    except (UnicodeDecodeError, pa.ArrowException):
        return [None] * table.num_rows  # undecodable rows are skipped by the reader; they cannot be held out
