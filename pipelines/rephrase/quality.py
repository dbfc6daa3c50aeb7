"""Decoding and seed-quality rules. Every rejected document gets one reason, which the report counts.

The rules are a small subset of Gopher's quality heuristics (Rae et al. 2021): length, word count, mean word
length, share of words with letters, share of symbol characters, repeated lines. BeyondWeb found that the quality
of the seed data matters more than anything else about a rephrasing run, so filtering happens before any tokens
are spent on generation.
"""

from __future__ import annotations

import hashlib

from spt.config.rephrase import RephraseFilter

#: Reasons a document produces no rows, in the order they are checked (the report lists them this way).
INVALID_UTF8 = "invalid UTF-8"
MISSING_TEXT = "missing text"
MISSING_ID = "missing id"
EMPTY = "empty or whitespace"
DUPLICATE_ID = "duplicate id"
NOT_SAMPLED = "not sampled"


def decode_text(value) -> tuple[str | None, str | None]:
    """(text, None) for usable text, else (None, reason). Bytes must be strict UTF-8; str must encode to it."""
    if value is None or not isinstance(value, (str, bytes)):
        return None, MISSING_TEXT
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None, INVALID_UTF8
    try:
        # Lone surrogates (e.g. "\\ud800" escapes in JSON) decode to str but cannot be written as UTF-8.
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None, INVALID_UTF8
    text = value.replace("\r\n", "\n").replace("\x00", "").strip()
    return (text, None) if text else (None, EMPTY)


def sampled(seed: int, source_id: str, fraction: float) -> bool:
    """Whether a document is in the sample: a hash of (seed, id), so the choice is stable across runs."""
    if fraction >= 1.0:
        return True
    # Salted: an unsalted hash of (seed, id) is what `spt corpora` uses for its held-out split, and reusing it
    # would sample only from one end of that distribution.
    digest = hashlib.sha256(f"rephrase-sample:{seed}:{source_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def quality_problem(text: str, rules: RephraseFilter) -> str | None:
    """The first rule ``text`` fails, as ``filter: <rule>``, or None when it passes (or rules are off)."""
    if not rules.enabled:
        return None
    if len(text) < rules.min_chars:
        return "filter: min_chars"
    if rules.max_chars is not None and len(text) > rules.max_chars:
        return "filter: max_chars"
    words = text.split()
    if len(words) < max(rules.min_words, 1):
        return "filter: min_words"
    mean_length = sum(len(w) for w in words) / len(words)
    if not rules.min_mean_word_length <= mean_length <= rules.max_mean_word_length:
        return "filter: mean_word_length"
    if sum(any(ch.isalpha() for ch in w) for w in words) / len(words) < rules.min_alpha_word_fraction:
        return "filter: alpha_word_fraction"
    symbols = sum(not (ch.isalnum() or ch.isspace()) for ch in text)
    if symbols / len(text) > rules.max_symbol_fraction:
        return "filter: symbol_fraction"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        repeated = len(lines) - len(set(lines))
        if repeated / len(lines) > rules.max_duplicate_line_fraction:
            return "filter: duplicate_line_fraction"
    return None
