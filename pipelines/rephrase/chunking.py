"""Token-aware chunking in the rephraser's own tokens.

A document longer than ``max_tokens`` is cut into the fewest chunks that fit, of nearly equal length (so no tiny
tail chunk), at the best boundary near each ideal cut: a paragraph break, then a line break, then a sentence end,
then a space. Counting in the rephraser's tokens (not characters) is what makes the prompt budget exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from spt.config.rephrase import RephraseChunking


_FILL = 0.85


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

    Cuts are chosen together (dynamic programming over candidate boundaries), maximizing boundary quality with
    a penalty for pieces far from the balanced length, under the hard limit of ``max_tokens`` per piece.

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
    # Plan pieces at ~85% of the limit when allowed: the slack lets cuts move to paragraph and sentence ends.
    fewest = math.ceil(total / limit)
    if config.long_documents == "truncate":
        pieces = 1
    else:
        pieces = min(math.ceil(total / (limit * _FILL)), config.max_chunks_per_document)
    result.truncated = pieces < fewest
    end = total
    if result.truncated:
        # Keep what the pieces can hold, ending at the best boundary in the last quarter of that span.
        hard = pieces * limit
        end = max(range(hard - limit // 4, hard + 1), key=lambda i: (_score_at(text, starts, i), i))
    cuts = _best_cuts(text, starts, end, pieces, limit)
    bounds = [0, *cuts, end]
    for lo, hi in zip(bounds, bounds[1:]):
        piece = text[starts[lo]:_offset(text, starts, hi)].strip()
        if piece:
            result.texts.append(piece)
    result.split = len(result.texts) > 1
    return result


def _offset(text: str, starts: list[int], index: int) -> int:
    return starts[index] if index < len(starts) else len(text)


def _score_at(text: str, starts: list[int], index: int) -> float:
    return _boundary_score(text, _offset(text, starts, index))


def _candidates(text: str, starts: list[int], end: int, limit: int) -> tuple[list[int], dict[int, float]]:
    """Token indexes where a piece may end: sentence or better; words, then any token, only in long gaps."""
    score = {i: _score_at(text, starts, i) for i in range(1, end)}
    points = [0, *(i for i in range(1, end) if score[i] >= 2), end]
    chosen = set(points)
    for a, b in zip(points, points[1:]):
        if b - a > limit // 2:
            words = [i for i in range(a + 1, b) if score[i] >= 1]
            chosen.update(words)
            edges = [a, *words, b]
            for c, d in zip(edges, edges[1:]):
                if d - c > limit // 4:  # no spaces either (code, tables, long URLs): any token will do
                    chosen.update(range(c + 1, d))
    return sorted(chosen), score


def _best_cuts(text: str, starts: list[int], end: int, pieces: int, limit: int) -> list[int]:
    """The ``pieces - 1`` interior cuts in [0, end) with the best total score (see :func:`chunk_document`)."""
    if pieces <= 1:
        return []
    candidates, score = _candidates(text, starts, end, limit)
    target = end / pieces
    position = {c: k for k, c in enumerate(candidates)}
    inf = float("inf")
    cost = [[inf] * len(candidates) for _ in range(pieces + 1)]
    back = [[-1] * len(candidates) for _ in range(pieces + 1)]
    cost[0][0] = 0.0
    for piece in range(1, pieces + 1):
        for k, cut in enumerate(candidates):
            if cut == 0 or (piece == pieces) != (cut == end):
                continue
            gain = 0.0 if cut == end else score[cut]
            j = k - 1
            while j >= 0 and cut - candidates[j] <= limit:
                if cost[piece - 1][j] < inf:
                    balance = 4.0 * ((cut - candidates[j] - target) / target) ** 2
                    value = cost[piece - 1][j] + balance - gain
                    if value < cost[piece][k]:
                        cost[piece][k], back[piece][k] = value, j
                j -= 1
    k = position[end]
    if cost[pieces][k] == inf:  # cannot happen with enough candidates; fall back to even cuts
        return [round(end * i / pieces) for i in range(1, pieces)]
    cuts = []
    for piece in range(pieces, 1, -1):
        k = back[piece][k]
        cuts.append(candidates[k])
    return sorted(cuts)


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
