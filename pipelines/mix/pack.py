"""Packing joined token streams into fixed-length samples and writing them as MDS shards.

Documents arrive already joined with EOS, in order; a split's samples are consecutive ``seq_len`` slices of that
stream, so no token is padding and at most ``seq_len - 1`` tokens at the end of the split are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: The one column of every sample: ``seq_len`` token ids.
TOKENS_COLUMN = "tokens"


class SplitWriter:
    """Packs one split of one source and writes its samples with ``streaming.MDSWriter``.

    The writer (and its folder) is created on the first full sample, so a split with no sample writes nothing.
    """

    def __init__(self, folder: Path, seq_len: int, dtype: str, compression: str | None, shard_size_bytes: int):
        self.folder = Path(folder)
        self.seq_len = seq_len
        self.dtype = np.dtype(dtype)
        self.compression = compression
        self.shard_size_bytes = shard_size_bytes
        self._writer = None
        self._rest = np.zeros(0, self.dtype)
        self.samples = 0
        self.tokens = 0
        self.documents = 0

    def add(self, tokens: np.ndarray, documents: int) -> None:
        """Appends joined tokens (documents each ending in EOS) and writes every sample they complete."""
        self.tokens += len(tokens)
        self.documents += documents
        data = np.concatenate([self._rest, tokens.astype(self.dtype, copy=False)]) if len(self._rest) else tokens
        full = len(data) // self.seq_len
        if full:
            writer = self._open(data[: self.seq_len])
            for sample in data[: full * self.seq_len].reshape(full, self.seq_len):
                writer.write({TOKENS_COLUMN: sample})
            self.samples += full
        self._rest = np.array(data[full * self.seq_len :], dtype=self.dtype)

    def _open(self, first: np.ndarray):
        if self._writer is None:
            from streaming import MDSWriter

            writer = MDSWriter(
                out=str(self.folder),
                columns={TOKENS_COLUMN: f"ndarray:{self.dtype.name}"},
                compression=self.compression,
                size_limit=self.shard_size_bytes,
            )
            # Every sample has the same shape and dtype, so its MDS bytes are one fixed prefix (column size and
            # ndarray header) and the raw ids. Take the prefix from Streaming's own encoder, check it on the first
            # sample, and skip the per-sample encoder, which costs more than tokenizing in the driver's budget.
            reference = writer.encode_sample({TOKENS_COLUMN: first})
            prefix = reference[: len(reference) - first.nbytes]
            if prefix + first.tobytes() != reference:  # pragma: no cover - a Streaming format change
                raise RuntimeError("unexpected MDS encoding of a fixed-length token sample")
            writer.encode_sample = lambda sample: prefix + sample[TOKENS_COLUMN].tobytes()
            self._writer = writer
        return self._writer

    def close(self) -> dict:
        """Finishes the last shard; returns documents, tokens, samples and dropped tokens of the split."""
        if self._writer is not None:
            self._writer.finish()
        return {
            "documents": self.documents,
            "tokens": self.tokens,
            "samples": self.samples,
            "dropped_tokens": len(self._rest),
        }
