"""The engine stage: a Ray Data actor class holding one vLLM engine.

``GenerateStage(engine=..., sampling=...)`` is built once per replica; each call takes a batch of prompt rows
(pyarrow) and returns it with ``text``, ``output_tokens``, ``error`` and timing columns added. Unit rows pass
through untouched. Errors that belong to a row (vLLM rejects a prompt, e.g. too long for the context) become that
row's ``error``; a dead engine raises, so the job stops and a rerun redoes the unfinished units, instead of
committing rows that never had a chance.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pyarrow as pa

from pipelines.rephrase.expand import ROW

#: Columns the stage adds to every row.
OUTPUT_COLUMNS = {
    "text": pa.string(),
    "output_tokens": pa.int64(),
    "error": pa.string(),
    "finish_reason": pa.string(),
    "batch_seconds": pa.float64(),
    "engine_ready": pa.float64(),
    "replica": pa.string(),
}


def engine_env(cpu_kv_cache_gib: int) -> dict[str, str]:
    """Environment variables the engine's process needs (also passed to Ray workers)."""
    return {
        "VLLM_CPU_KVCACHE_SPACE": str(cpu_kv_cache_gib),
        "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
        "TOKENIZERS_PARALLELISM": "false",
    }


def sampling_params(vllm, sampling: dict, max_tokens: int):
    """vLLM SamplingParams for one row. No per-request seed: the engine's seed is the run's seed (a per-request
    seed was seen to kill the CPU engine at large batches)."""
    return vllm.SamplingParams(
        temperature=sampling["temperature"],
        top_p=sampling["top_p"],
        repetition_penalty=sampling["repetition_penalty"],
        max_tokens=int(max_tokens),
    )


class GenerateStage:
    """One vLLM engine replica. Works as ``ds.map_batches(GenerateStage, fn_constructor_kwargs=...)`` and when
    called directly on a pyarrow table.

    Args:
        engine: ``RephraseEngine.model_dump()`` with ``model`` resolved.
        sampling: ``RephraseSampling.model_dump()``.
    """

    def __init__(self, engine: dict[str, Any], sampling: dict[str, Any]):
        for key, value in engine_env(engine["cpu_kv_cache_gib"]).items():
            os.environ.setdefault(key, value)
        from pipelines.engine import import_vllm, make_llm

        self.vllm = import_vllm()
        extra = {}
        if engine.get("device") == "gpu":
            extra["gpu_memory_utilization"] = engine["gpu_memory_utilization"]
        self.llm = make_llm(
            engine["model"],
            dtype=engine["dtype"],
            max_model_len=engine["max_model_len"],
            enforce_eager=engine["enforce_eager"],
            tensor_parallel_size=engine["tensor_parallel_size"],
            seed=sampling["seed"],
            **extra,
        )
        self.sampling = sampling
        self.ready = time.time()
        self.replica = f"{os.uname().nodename}:{os.getpid()}"

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        todo = [i for i, row in enumerate(rows) if row["kind"] == ROW]
        results: dict[int, tuple[str, int, str | None, str | None]] = {}
        start = time.time()
        if todo:
            results = self._generate([rows[i] for i in todo], todo)
        seconds = time.time() - start
        columns: dict[str, list] = {name: [] for name in OUTPUT_COLUMNS}
        for index in range(len(rows)):
            text, tokens, error, finish = results.get(index, ("", 0, None, None))
            columns["text"].append(text)
            columns["output_tokens"].append(tokens)
            columns["error"].append(error)
            columns["finish_reason"].append(finish)
            columns["batch_seconds"].append(seconds)
            columns["engine_ready"].append(self.ready)
            columns["replica"].append(self.replica)
        for name, kind in OUTPUT_COLUMNS.items():
            batch = batch.append_column(name, pa.array(columns[name], kind))
        return batch

    def _generate(self, rows: list[dict], positions: list[int]) -> dict[int, tuple]:
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(row["prompt_token_ids"])) for row in rows]
        params = [sampling_params(self.vllm, self.sampling, row["max_tokens"]) for row in rows]
        try:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        except Exception as exc:
            if not _row_error(exc):
                raise
            # vLLM validates the whole call before running any of it: retry one by one to isolate bad rows.
            return {
                position: self._one(prompt, param)
                for position, prompt, param in zip(positions, prompts, params)
            }
        return {position: _result(output) for position, output in zip(positions, outputs)}

    def _one(self, prompt, param) -> tuple:
        try:
            return _result(self.llm.generate([prompt], param, use_tqdm=False)[0])
        except Exception as exc:
            if not _row_error(exc):
                raise
            return "", 0, f"{type(exc).__name__}: {exc}"[:500], None


def _row_error(exc: Exception) -> bool:
    """Errors caused by one request's input (vLLM validation), as opposed to a broken engine."""
    try:
        from vllm.exceptions import VLLMValidationError

        if isinstance(exc, VLLMValidationError):
            return True
    except ImportError:  # older/newer vLLM without the class: fall back to plain ValueError
        pass
    return type(exc) is ValueError


def _result(output) -> tuple[str, int, str | None, str | None]:
    completion = output.outputs[0]
    text = completion.text.strip()
    tokens = len(completion.token_ids)
    if not text:
        return "", tokens, "empty output", completion.finish_reason
    return text, tokens, None, completion.finish_reason
