"""The stage before the engine: one work unit -> one prompt row per (chunk, style), plus one unit row.

Reading, decoding, filtering, chunking and prompt building all happen here, in Ray tasks spread over the
cluster, so the driver only commits. The last row of every unit is a *unit row* (``kind == "unit"``) carrying the
unit's counts and how many prompt rows it produced: that is how the committer knows a unit is complete.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow as pa

from pipelines.rephrase import quality
from pipelines.rephrase.chunking import chunk_document
from pipelines.rephrase.gate import OutputGate
from pipelines.rephrase.prompts import PromptBuilder, draw_styles, row_id
from pipelines.rephrase.sources import Unit, read_unit
from spt.config.rephrase import RephraseConfig, StyleSpec

ROW, UNIT = "row", "unit"

#: Schema of the rows this stage emits (explicit, so a unit without rows has the same column types).
ROW_SCHEMA = pa.schema([
    ("unit", pa.int64()),
    ("kind", pa.string()),
    ("id", pa.string()),
    ("source_id", pa.string()),
    ("chunk", pa.int64()),
    ("style", pa.string()),
    ("prompt_token_ids", pa.list_(pa.int32())),
    ("prompt_tokens", pa.int64()),
    ("max_tokens", pa.int64()),
    ("original", pa.string()),
    ("split", pa.string()),
    ("input_tokens", pa.int64()),
    ("input_language", pa.string()),
    ("unit_rows", pa.int64()),
    ("unit_stats", pa.string()),
])


class ExpandUnit:
    """Turns a work unit into prompt rows. Callable on a unit dict; also usable as a Ray Data ``flat_map``.

    Args:
        config: the resolved rephrase config.
        styles: the styles in use, by name.
        weights: their weights.
        model: the resolved model folder or hub id (for the tokenizer and chat template).
    """

    def __init__(self, config: RephraseConfig, styles: dict[str, StyleSpec], weights: dict[str, float], model: str):
        self.config = config
        self.styles = styles
        self.weights = weights
        self.builder = PromptBuilder(model, config.engine.use_chat_template, config.engine.max_model_len)
        self.gate = OutputGate(config.quality, styles)

    def __call__(self, unit_row: dict[str, Any]) -> list[dict[str, Any]]:
        unit = Unit(**{k: unit_row[k] for k in Unit.__dataclass_fields__})
        config = self.config
        skipped: Counter = Counter()
        style_skipped: Counter = Counter()
        stats = Counter()
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for doc in read_unit(unit, config.input):
            stats["documents"] += 1
            text, problem = None, doc.problem
            if problem is None:
                text, problem = quality.decode_text(doc.text)
            if problem is None and doc.source_id is None:
                problem = quality.MISSING_ID
            if problem is None and doc.source_id in seen:
                problem = quality.DUPLICATE_ID
            if problem is None and not quality.sampled(config.seed, doc.source_id, config.input.sample_fraction):
                problem = quality.NOT_SAMPLED
            if problem is None:
                problem = quality.quality_problem(text, config.filter)
            if doc.source_id is not None:
                seen.add(doc.source_id)
            if problem is not None:
                skipped[problem] += 1
                continue
            ids, starts = self.builder.encode(text)
            chunks = chunk_document(text, starts, config.chunking)
            stats["kept"] += 1
            stats["document_tokens"] += chunks.num_tokens
            stats["split"] += chunks.split
            stats["truncated"] += chunks.truncated
            stats["chunks"] += len(chunks.texts)
            languages = [self.gate.source_language(chunk) for chunk in chunks.texts]  # the same for every style
            for style_name in draw_styles(config.seed, doc.source_id, self.weights, config.styles.per_document):
                for index, chunk in enumerate(chunks.texts):
                    row = self._row(unit, doc.source_id, index, chunk, style_name, languages[index])
                    if isinstance(row, str):
                        style_skipped[f"{style_name}: {row}"] += 1
                        continue
                    stats["prompts_truncated"] += row.pop("_truncated")
                    rows.append(row)
        stats_doc = {
            **{k: int(v) for k, v in sorted(stats.items())},
            "skipped": dict(sorted(skipped.items())),
            "style_skipped": dict(sorted(style_skipped.items())),
        }
        rows.append(unit_marker(unit.index, len(rows), stats_doc))
        return rows

    def _row(self, unit: Unit, source_id: str, chunk: int, text: str, style_name: str,
             language: str) -> dict[str, Any] | str:
        style = self.styles[style_name]
        config = self.config
        input_tokens = min(style.max_input_tokens or config.chunking.max_tokens, config.chunking.max_tokens)
        output_tokens = min(style.max_output_tokens, config.sampling.max_tokens)
        if style.min_input_tokens and len(self.builder.encode(text)[0]) < style.min_input_tokens:
            return "chunk below min_input_tokens"
        ids, truncated, text_tokens = self.builder.prompt(style, text, input_tokens, output_tokens)
        if ids is None:
            return "prompt does not fit max_model_len"
        return {
            "unit": unit.index,
            "kind": ROW,
            "id": row_id(source_id, chunk, style_name),
            "source_id": source_id,
            "chunk": chunk,
            "style": style_name,
            "prompt_token_ids": ids,
            "prompt_tokens": len(ids),
            "max_tokens": output_tokens,
            "original": text if config.output.keep_original else "",
            "split": unit.split,
            "input_tokens": text_tokens,
            "input_language": language,
            "unit_rows": 0,
            "unit_stats": "",
            "_truncated": int(truncated),
        }


def expand_batch(units: pa.Table, stage: ExpandUnit) -> pa.Table:
    """Ray Data form of the stage: a batch of units in, all their rows out (with :data:`ROW_SCHEMA`)."""
    rows = [row for unit in units.to_pylist() for row in stage(unit)]
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


def unit_marker(unit: int, num_rows: int, stats: dict) -> dict[str, Any]:
    """The row that closes a unit: how many prompt rows it has, and its counts."""
    return {
        "unit": unit,
        "kind": UNIT,
        "id": "",
        "source_id": "",
        "chunk": -1,
        "style": "",
        "prompt_token_ids": [],
        "prompt_tokens": 0,
        "max_tokens": 0,
        "original": "",
        "split": "",
        "input_tokens": 0,
        "input_language": "",
        "unit_rows": num_rows,
        "unit_stats": json.dumps(stats, sort_keys=True),
    }
