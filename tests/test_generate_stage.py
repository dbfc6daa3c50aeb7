"""The generate stage on a real vLLM engine (CPU build, SmolLM2): a request the engine rejects marks its row and the
rest of the batch is generated. Runs in the generate environment, as the rephrase stage's Ray workers do."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipelines.engine import resolve_dtype
from spt import environments
from spt.models import default_model_dir

pytestmark = pytest.mark.vllm
REPO = Path(__file__).resolve().parents[1]

GENERATION_ERROR_SCRIPT = """
import asyncio, json, sys
import pyarrow as pa
from pipelines.rephrase.expand import ROW_SCHEMA, unit_marker
from pipelines.rephrase.generate import GenerateStage
from pipelines.rephrase.prompts import PromptBuilder
from spt.config.rephrase import RephraseEngine, RephraseSampling, StyleSpec

if __name__ == "__main__":
    model = sys.argv[1]
    engine = RephraseEngine(model=model, max_model_len=256).model_dump()
    stage = GenerateStage(engine=engine, sampling=RephraseSampling(max_tokens=16).model_dump())
    style = StyleSpec(description="d", template="Say this in other words: {text}")
    ids, _ = PromptBuilder(model, True, 256).prompt_ids(style, "The sky is blue on a clear day.", 200, 16)
    def row(key, ids):
        return {"unit": 0, "kind": "row", "id": key, "source_id": key, "chunk": 0, "style": "s",
                "prompt_token_ids": ids, "prompt_tokens": len(ids), "max_tokens": 16, "original": "",
                "unit_rows": 0, "unit_stats": ""}
    rows = [row("good", ids), row("too-long", [100] * 300), row("good-2", ids), unit_marker(0, 3, {})]
    out = asyncio.run(stage(pa.Table.from_pylist(rows, schema=ROW_SCHEMA)))
    columns = ["id", "kind", "text", "output_tokens", "error", "engine_dtype"]
    print("RESULT " + json.dumps(out.select(columns).to_pylist()))
"""


def test_generation_error_is_a_row_error_and_the_batch_goes_on(tmp_path):
    """A request vLLM rejects (a prompt longer than the context) marks its row; the rest of the batch is generated."""
    script = tmp_path / "stage.py"
    script.write_text(GENERATION_ERROR_SCRIPT)
    proc = subprocess.run([str(environments.python_for("generate")), str(script), str(default_model_dir())],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    good, bad, good_2, marker = json.loads(line[len("RESULT "):])
    assert {row["engine_dtype"] for row in (good, bad, good_2, marker)} == {resolve_dtype("auto", "cpu")}
    assert bad["text"] == "" and bad["output_tokens"] == 0
    assert bad["error"].startswith("VLLMValidationError: This model's maximum context length is 256 tokens. "
                                   "However, your prompt contains 300 input tokens")
    for row in (good, good_2):
        assert row["error"] is None and row["text"] and 0 < row["output_tokens"] <= 16
    assert marker["kind"] == "unit" and marker["text"] == "" and marker["error"] is None
