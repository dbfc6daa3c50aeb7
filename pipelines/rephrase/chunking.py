"""Token-aware chunking in the rephraser's own tokens.

A document longer than ``max_tokens`` is cut into the fewest chunks that fit, of nearly equal length (so no tiny
tail chunk), at the best boundary near each ideal cut: a paragraph break, then a line break, then a sentence end,
then a space. Counting in the rephraser's tokens (not characters) is what makes the prompt budget exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from spt.config.rephrase import RephraseChunking


@dataclass
class Chunks:
    """A document's chunks and what happened to it."""

    texts: list[str] = field(default_factory=list)
    num_tokens: int = 0  # tokens in the whole document
    split: bool = False  # more than one chunk
    truncated: bool = False  # part of the document was dropped (long_documents=truncate or max_chunks)


def _boundary_score(text: str, cut: int) -> float:
    """How good a place ``cut`` (a character offset) is to end a chunk."""
    before = text[max(cut - 2, 0):cut]
    after = text[cut:cut + 1]
    if before.endswith("\n\n") or (before.endswith("\n") and after == "\n"):
        return 4.0
    if before.endswith("\n") or after == "\n":
        return 3.0
    if before[-1:] in (".", "!", "?", ":", ";") and (after == "" or after.isspace()):
        return 2.0
    if after.isspace() or before[-1:].isspace():
        return 1.0
    return 0.0


def chunk_document(text: str, starts: list[int], config: RephraseChunking) -> Chunks:
    """Splits ``text`` given the character offset where each of its tokens starts.

    Args:
        text: the cleaned document.
        starts: start offset of every token of ``text`` (from the rephraser's tokenizer), ascending.
        config: chunk size, chunk count limit and what to do with long documents.

    Returns:
        The chunks (stripped, non-empty) and whether the document was split or truncated.
    """
    total = len(starts)
    result = Chunks(num_tokens=total)
    limit = config.max_tokens
    if total <= limit:
        result.texts = [text]
        return result
    needed = math.ceil(total / limit)
    allowed = 1 if config.long_documents == "truncate" else min(needed, config.max_chunks_per_document)
    result.truncated = allowed < needed
    # Balanced pieces when everything fits; full-size pieces when the tail is dropped anyway.
    target = limit if result.truncated else math.ceil(total / needed)
    position = 0
    while position < total and len(result.texts) < allowed:
        left = allowed - len(result.texts)
        if total - position <= limit and not result.truncated:
            cut = total
        else:
            hard = min(position + limit, total)
            earliest = position + max(target // 2, 1)
            if not result.truncated:
                # Never leave more than the remaining pieces can carry, so nothing is dropped.
                earliest = max(earliest, total - (left - 1) * limit)
            ideal = min(position + target, hard)
            candidates = range(min(earliest, hard), hard + 1)
            cut = max(
                candidates,
                key=lambda i: (
                    _boundary_score(text, starts[i] if i < total else len(text)),
                    -abs(i - ideal),
                ),
            )
        end = starts[cut] if cut < total else len(text)
        piece = text[starts[position]:end].strip()
        if piece:
            result.texts.append(piece)
        position = max(cut, position + 1)
    result.split = len(result.texts) > 1
    return result


def token_starts(offsets: list[tuple[int, int]]) -> list[int]:
    """Token start offsets, made non-decreasing (byte-level tokens inside one character share offsets)."""
    starts, last = [], 0
    for start, _ in offsets:
        last = max(last, start)
        starts.append(last)
    return starts


def cut_to_tokens(text: str, starts: list[int], max_tokens: int) -> str:
    """The longest prefix of ``text`` with at most ``max_tokens`` tokens, ending at a word when possible."""
    if len(starts) <= max_tokens:
        return text
    end = starts[max_tokens]
    space = text.rfind(" ", 0, end)
    if space > end * 0.8:
        end = space
    return text[:end].rstrip()
