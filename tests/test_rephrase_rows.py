"""What every prompt row carries for the quality gate and the mix: its chunk's tokens and language, and its split
(rephrasings of held-out documents stay held out). Real files and the real SmolLM2 tokenizer; no vLLM."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.rephrase.expand import ExpandUnit
from pipelines.rephrase.prompts import PromptBuilder
from pipelines.rephrase.runner import prepare
from spt.config import load_config
from tests.test_rephrase_data import GOOD, dataset, write_config, write_inputs  # noqa: F401  (module fixture)


def test_rows_carry_their_chunk_tokens_language_and_split(dataset):
    _, _, plan, outputs = dataset
    builder = PromptBuilder(plan.model, False, 512)
    rows = [row for rows in outputs for row in rows[:-1]]
    assert all(r["split"] == "train" and r["input_language"] == "en" for r in rows)
    for row in rows:  # the chunk a prompt holds, in the rephraser's tokens (what the length ratio divides by)
        assert row["input_tokens"] == len(builder.encode(row["original"])[0])


def test_held_out_documents_are_rephrased_into_held_out_rows_only(tmp_path):
    write_inputs(tmp_path / "in")
    held = tmp_path / "held"
    held.mkdir()
    pq.write_table(pa.Table.from_pylist([{"id": "h-0", "text": GOOD[5]}]), held / "heldout.parquet")
    path = write_config(tmp_path, tmp_path / "in", tmp_path / "out", extra=f"input:\n  heldout_paths: [{held}]\n")
    text = path.read_text().replace(f"input:\n  paths: [{tmp_path / 'in'}]\n", "")
    path.write_text(text.replace("  heldout_paths:", f"  paths: [{tmp_path / 'in'}]\n  heldout_paths:"))
    plan = prepare(load_config(path))
    assert [u.split for u in plan.units] == ["train"] * 7 + ["heldout"]
    stage = ExpandUnit(plan.config, plan.styles, plan.weights, plan.model)
    rows = [row for unit in plan.units for row in stage(unit.to_dict()) if row["kind"] == "row"]
    assert {r["split"] for r in rows if r["source_id"] == "h-0"} == {"heldout"}
    assert {r["split"] for r in rows if r["source_id"] != "h-0"} == {"train"}
