"""Tokenizing documents: the batched-encode stage shared by `plan` (called directly) and `build` (in Ray Data),
and the exact per-source token counts, cached by content hash.

A document contributes ``len(ids) + 1`` tokens: its ids, then EOS. Packing joins a split's documents in order and
cuts fixed ``seq_len`` samples, so a split's samples are ``tokens // seq_len`` and fewer than ``seq_len`` tokens
are left over at its end.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.mix.documents import SPLITS, Chunk, InputFile, SplitRule, UnreadableFile, read_chunk_documents
from pipelines.tokenizer import TokenizerLayout, load_tokenizer
from spt import storage
from spt.errors import InputError
from spt.progress import track

#: Bumped when the meaning of a count or of a packed sample changes, so caches and built sources are not reused.
#: 2: rows with a source_id are split by document, rejected rephrase rows are skipped.
FORMAT_VERSION = 2


@dataclass(frozen=True)
class TokenizerInfo:
    """What a mix needs to know of its tokenizer; ``folder`` is an absolute local path or an ``s3://`` URL."""

    folder: str
    sha256: str
    vocab_size: int
    eos_token_id: int

    @property
    def dtype(self) -> str:
        """Unsigned integer type of stored tokens: uint16 up to 65,535 ids, uint32 beyond."""
        return "uint16" if self.vocab_size <= 65535 else "uint32"


def tokenizer_info(folder: str, where: str = "mix.tokenizer") -> TokenizerInfo:
    """Loads a tokenizer folder (local or S3) with ``pipelines.tokenizer.load_tokenizer``; problems name ``where``.

    Raises:
        InputError: no such folder, no tokenizer.json, or no EOS token.
    """
    if not storage.is_folder(folder):
        raise InputError(f"{where}={folder!r}: no such tokenizer folder")
    location = folder if storage.is_remote(folder) else str(storage.local_path(folder))
    try:
        tokenizer, eos_id = load_tokenizer(location)
    except InputError as exc:
        raise InputError([f"{where}={folder!r}: {p.split(': ', 1)[-1]}" for p in exc.problems]) from None
    except Exception as exc:  # a tokenizer.json that `tokenizers` cannot parse
        raise InputError(f"{where}={folder!r}: unreadable tokenizer.json ({str(exc).splitlines()[0]})") from None
    digest = storage.sha256(TokenizerLayout(location).tokenizer)
    return TokenizerInfo(location, digest, tokenizer.get_vocab_size(with_added_tokens=True), eos_id)


class TokenizeStage:
    """Encodes a batch of documents and joins the documents of each split, each followed by EOS.

    Input batch: ``text`` and ``split`` columns, and optionally ``source`` (an integer), as a pyarrow Table or a
    dict of lists. Output: one row per (source, split) present, in first-seen order, with ``split``,
    ``documents``, ``tokens`` (the joined ids) and ``source`` when given. Works as a Ray Data ``map_batches``
    callable class and when called directly.
    """

    def __init__(self, tokenizer_dir: str, dtype: str, eos_token_id: int, threads: int | None = None):
        from tokenizers import Tokenizer

        if threads is not None:
            # One Ray worker per CPU: the Rust thread pool would otherwise take every core in each worker.
            os.environ["TOKENIZERS_PARALLELISM"] = "false" if threads == 1 else "true"
        # Through the storage layer: Ray workers on other nodes read an s3:// tokenizer the same way.
        self.tokenizer = Tokenizer.from_str(storage.read_text(TokenizerLayout(str(tokenizer_dir)).tokenizer))
        self.dtype = np.dtype(dtype)
        self.eos = eos_token_id

    def __call__(self, batch) -> pa.Table:
        if isinstance(batch, pa.Table):
            batch = {name: batch.column(name).to_pylist() for name in batch.column_names}
        texts, splits = list(batch["text"]), list(batch["split"])
        sources = list(batch["source"]) if "source" in batch else [None] * len(texts)
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        joined: dict[tuple, list[int]] = {}
        documents: Counter = Counter()
        for key, encoding in zip(zip(sources, splits), encodings):
            ids = joined.setdefault(key, [])
            ids.extend(encoding.ids)
            ids.append(self.eos)
            documents[key] += 1
        keys = list(joined)
        arrays = [np.array(joined[key], dtype=self.dtype) for key in keys]
        values = np.concatenate(arrays) if arrays else np.zeros(0, self.dtype)
        offsets = np.cumsum([0] + [len(a) for a in arrays], dtype=np.int64)
        table = {
            "split": pa.array([split for _, split in keys], pa.string()),
            "documents": pa.array([documents[key] for key in keys], pa.int64()),
            "tokens": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values)),
        }
        if "source" in batch:
            table["source"] = pa.array([source for source, _ in keys], pa.int64())
        return pa.table(table)


@functools.lru_cache(maxsize=4)
def _cached_stage(tokenizer_dir: str, sha256: str, dtype: str, eos_token_id: int, threads: int | None) -> TokenizeStage:
    # sha256 is part of the key only: a tokenizer.json rewritten in place must not be served from the cache.
    return TokenizeStage(tokenizer_dir, dtype, eos_token_id, threads)


def tokenize_batch(
    batch, tokenizer_dir: str, tokenizer_sha256: str, dtype: str, eos_token_id: int, threads: int | None = None
) -> pa.Table:
    """TokenizeStage as a plain function for Ray Data tasks: a worker process loads the tokenizer once and
    keeps it for every later batch and pipeline (actors would load it again for each pipeline)."""
    return _cached_stage(tokenizer_dir, tokenizer_sha256, dtype, eos_token_id, threads)(batch)


@dataclass
class SourceCounts:
    """Exact counts of one source: usable documents and tokens (with one EOS each) per split, skipped rows."""

    documents: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})
    tokens: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})
    skipped: dict[str, int] = field(default_factory=dict)

    def add_skipped(self, skipped: Counter) -> None:
        for reason, count in skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        self.skipped = dict(sorted(self.skipped.items()))

    def add_tokens(self, table: pa.Table) -> None:
        """Adds a TokenizeStage output."""
        lengths = pc.list_value_length(table.column("tokens")).to_pylist()
        columns = (table.column("split").to_pylist(), table.column("documents").to_pylist(), lengths)
        for split, docs, length in zip(*columns):
            self.documents[split] += docs
            self.tokens[split] += length

    def to_json(self) -> dict:
        return {"documents": self.documents, "tokens": self.tokens, "skipped": self.skipped}

    @classmethod
    def from_json(cls, value: dict) -> "SourceCounts":
        return cls(dict(value["documents"]), dict(value["tokens"]), dict(value["skipped"]))


def count_files(
    files: list[tuple[InputFile, SplitRule]], stage: TokenizeStage, batch_documents: int, desc: str
) -> tuple[SourceCounts, list[tuple[InputFile, str]]]:
    """Reads and tokenizes every file; returns the counts and (file, reason) of each unreadable file."""
    counts = SourceCounts()
    unreadable: list[tuple[InputFile, str]] = []
    for item, rule in track(files, f"count {desc}", "files"):
        try:
            documents, skipped = read_chunk_documents(Chunk(item.location))
        except UnreadableFile as exc:
            unreadable.append((item, str(exc)))
            continue
        counts.add_skipped(skipped)
        for start in range(0, len(documents), batch_documents):
            chunk = documents[start : start + batch_documents]
            counts.add_tokens(stage({"text": [d.text for d in chunk], "split": [rule.of(d) for d in chunk]}))
    return counts, unreadable


class CountCache:
    """Per-source counts, one JSON file per content key (inputs, split rule, tokenizer), in the mix's cache folder
    (local or S3)."""

    def __init__(self, layout):
        self.layout = layout

    def get(self, key: str) -> SourceCounts | None:
        value = storage.read_json(self.layout.count(key))
        return SourceCounts.from_json(value["counts"]) if value and value.get("key") == key else None

    def put(self, key: str, counts: SourceCounts, about: dict) -> None:
        storage.write_json(self.layout.count(key), {"key": key, "counts": counts.to_json(), "about": about})
