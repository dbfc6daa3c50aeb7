"""The quality gate after generation: every generated row is checked, and a failing row keeps its text with a
``rejected`` reason (never trained on: the mix skips it), counted per style and reason in the report.

BeyondWeb (Maini et al. 2025) and Nemotron-CC (Su et al. 2024) both filter synthetic text after generation; a
135M rephraser needs it: the quickstart's first 54 rows held Spanish answers to English sources and replies that
only repeat themselves. The rules, checked in this order (a row gets the first reason it fails):

- ``empty``: no text at all;
- ``refusal``: the output opens like a refusal or a remark about the request (``quality.refusal_patterns``);
- ``repetition``: more than ``max_duplicate_ngram_share`` of its word n-grams repeat an earlier one (a loop);
- ``length_ratio``: output tokens / input chunk tokens (both in the rephraser's tokens) outside the style's
  ``[min_length_ratio, max_length_ratio]``; an output that stopped at its token cap is never too short;
- ``language``: the output's language (offline language identification with ``langid``) differs from the source
  chunk's, or from a fixed ``quality.language``.
"""

from __future__ import annotations

import re
from typing import Any

from spt.config.rephrase import RephraseQuality, StyleSpec

EMPTY = "empty"
REFUSAL = "refusal"
REPETITION = "repetition"
LENGTH_RATIO = "length_ratio"
LANGUAGE = "language"
#: Every reason, in the order the rules are checked.
REASONS = (EMPTY, REFUSAL, REPETITION, LENGTH_RATIO, LANGUAGE)
#: What ``input_language`` holds when the source's language was not identified confidently.
UNKNOWN = ""

_IDENTIFIER = None


def _identifier():
    global _IDENTIFIER
    if _IDENTIFIER is None:
        try:
            from langid.langid import LanguageIdentifier, model
        except ImportError:  # pragma: no cover - both environments install it (pyproject)
            raise ImportError(
                "the rephrase quality gate needs langid (offline language identification): "
                "pip install 'langid==1.1.6' in the train and generate environments (scripts/setup.sh does)"
            ) from None
        _IDENTIFIER = LanguageIdentifier.from_modelstring(model, norm_probs=True)  # ~1.7 s, once per process
    return _IDENTIFIER


def identify_language(text: str, min_confidence: float) -> str:
    """The language code of ``text`` (ISO 639-1, e.g. ``en``), or :data:`UNKNOWN` below ``min_confidence``."""
    language, probability = _identifier().classify(text)
    return language if probability >= min_confidence else UNKNOWN


def duplicate_ngram_share(text: str, n: int) -> float:
    """Share of the word n-grams of ``text`` (lowercased) that repeat an earlier n-gram of it (0 when it has none)."""
    words = text.lower().split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


class OutputGate:
    """Decides each generated row's ``rejected`` reason (None: accepted).

    Args:
        quality: the config's ``quality`` section.
        styles: the styles in use (their length-ratio bounds).
    """

    def __init__(self, quality: RephraseQuality, styles: dict[str, StyleSpec]):
        self.quality = quality
        self.bounds = {name: (s.min_length_ratio, s.max_length_ratio) for name, s in styles.items()}
        self.refusal = re.compile("|".join(f"(?:{p})" for p in quality.refusal_patterns), re.IGNORECASE) \
            if quality.refusal_patterns else None

    @property
    def needs_source_language(self) -> bool:
        """True when the source chunks' language must be identified (before generation)."""
        return self.quality.enabled and self.quality.language == "source"

    def source_language(self, chunk: str) -> str:
        """The language an output of ``chunk`` must be in ("" when unknown or not checked)."""
        if not self.quality.enabled or self.quality.language is None:
            return UNKNOWN
        if self.quality.language != "source":
            return self.quality.language
        return identify_language(chunk, self.quality.min_language_confidence)

    def reason(self, row: dict[str, Any]) -> str | None:
        """The first rule a row fails, or None.

        Args:
            row: ``style``, ``text``, ``output_tokens``, ``input_tokens`` (the chunk's tokens), ``finish_reason``
                and ``input_language`` (from :meth:`source_language`).
        """
        if not self.quality.enabled:
            return None
        text = (row.get("text") or "").strip()
        if not text:
            return EMPTY
        if self.refusal is not None and self.refusal.match(text.lstrip("\"'*# ")):
            return REFUSAL
        if duplicate_ngram_share(text, self.quality.ngram_words) > self.quality.max_duplicate_ngram_share:
            return REPETITION
        low, high = self.bounds.get(row["style"], (0.0, float("inf")))
        ratio = row["output_tokens"] / max(row["input_tokens"], 1)
        if ratio > high or (ratio < low and row.get("finish_reason") != "length"):
            return LENGTH_RATIO
        expected = row.get("input_language") or UNKNOWN
        if expected != UNKNOWN and len(text.split()) >= self.quality.min_language_words:
            found = identify_language(text, self.quality.min_language_confidence)
            if found != UNKNOWN and found != expected:
                return LANGUAGE
        return None
