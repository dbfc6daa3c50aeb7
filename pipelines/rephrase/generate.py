"""The engine stage: a Ray Data actor class holding one vLLM engine (``AsyncLLMEngine``).

``GenerateStage(engine=..., sampling=..., gate=...)`` is built once per replica; each call takes a batch of prompt
rows (pyarrow) and returns it with ``text``, ``output_tokens``, ``error``, ``rejected`` (the quality gate's reason,
see :mod:`.gate`; checked here so the gate scales with the replicas, not in the driver), the engine's dtype and
CPU, and timing columns added. Unit rows pass through untouched. The call is async: Ray Data keeps several
batches in one actor at once and the engine batches their requests together, which is what keeps a map_batches
pipeline as fast as one big ``LLM.generate`` call.

Errors that belong to a row (vLLM rejects a prompt, e.g. too long for the context) become that row's ``error``;
a dead engine raises, so the job stops and a rerun redoes the unfinished units, instead of committing rows that
never had a chance.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any

import pyarrow as pa

from pipelines.engine import describe_cpu, import_vllm, make_async_llm, resolve_dtype
from pipelines.rephrase.expand import ROW
from pipelines.rephrase.gate import OutputGate
from spt.config.rephrase import RephraseQuality, StyleSpec

#: Columns the stage adds to every row.
OUTPUT_COLUMNS = {
    "text": pa.string(),
    "output_tokens": pa.int64(),
    "error": pa.string(),
    "rejected": pa.string(),
    "finish_reason": pa.string(),
    "engine_dtype": pa.string(),
    "engine_cpu": pa.string(),
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
    """One vLLM engine replica. Works as ``ds.map_batches(GenerateStage, fn_constructor_kwargs=...)`` (an async
    actor: several batches are in the engine at once, so one batch's slowest row never leaves it idle) and when
    awaited directly on a pyarrow table: ``asyncio.run(stage(table))``.

    Args:
        engine: ``RephraseEngine.model_dump()`` with ``model`` resolved and ``device`` (cpu or gpu) decided.
        sampling: ``RephraseSampling.model_dump()``.
        gate: ``{"quality": RephraseQuality dump, "styles": {name: StyleSpec dump}}``; None: no row is rejected.
    """

    def __init__(self, engine: dict[str, Any], sampling: dict[str, Any], gate: dict[str, Any] | None = None):
        for key, value in engine_env(engine["cpu_kv_cache_gib"]).items():
            os.environ.setdefault(key, value)

        self.vllm = import_vllm()
        device = engine.get("device", "cpu")
        extra = {}
        if device == "gpu":
            extra["gpu_memory_utilization"] = engine["gpu_memory_utilization"]
        # Resolved on the replica's own node: that is the CPU whose flags decide.
        self.dtype = resolve_dtype(engine["dtype"], device)
        self.cpu = "gpu" if device == "gpu" else describe_cpu()
        self.engine = make_async_llm(
            engine["model"],
            dtype=self.dtype,
            max_model_len=engine["max_model_len"],
            enforce_eager=engine["enforce_eager"],
            tensor_parallel_size=engine["tensor_parallel_size"],
            seed=sampling["seed"],
            device=device,
            **extra,
        )
        self.gate = _make_gate(gate)
        self.sampling = sampling
        self.ready = time.time()
        self.replica = f"{os.uname().nodename}:{os.getpid()}"

    def __del__(self):
        # Ray Data deletes the stage when its pipeline ends (graceful actor shutdown). vLLM's shutdown stops the
        # engine process before its output handler, which then logs an EngineDeadError traceback although every
        # request finished: silence exactly that record, then shut down.
        engine = getattr(self, "engine", None)
        if engine is not None:
            logging.getLogger("vllm.v1.engine.async_llm").addFilter(_EndOfRunFilter())
            try:
                engine.shutdown()
            except Exception:  # pragma: no cover - best effort at exit
                pass

    async def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        start = time.time()
        results = await asyncio.gather(*(self._generate(row) for row in rows))
        seconds = time.time() - start
        columns: dict[str, list] = {name: [] for name in OUTPUT_COLUMNS}
        for row, (text, tokens, error, finish) in zip(rows, results):
            columns["text"].append(text)
            columns["output_tokens"].append(tokens)
            columns["error"].append(error)
            columns["rejected"].append(self._rejected(row, text, tokens, error, finish))
            columns["finish_reason"].append(finish)
            columns["engine_dtype"].append(self.dtype)
            columns["engine_cpu"].append(self.cpu)
            columns["batch_seconds"].append(seconds)
            columns["engine_ready"].append(self.ready)
            columns["replica"].append(self.replica)
        for name, kind in OUTPUT_COLUMNS.items():
            batch = batch.append_column(name, pa.array(columns[name], kind))
        return batch

    def _rejected(self, row: dict, text: str, tokens: int, error: str | None, finish: str | None) -> str | None:
        if row["kind"] != ROW or error is not None or self.gate is None:
            return None  # rows with an engine error are skipped for their error, not judged
        return self.gate.reason({**row, "text": text, "output_tokens": tokens, "finish_reason": finish})

    async def _generate(self, row: dict) -> tuple[str, int, str | None, str | None]:
        if row["kind"] != ROW:
            return "", 0, None, None
        from vllm.inputs import TokensPrompt

        prompt = TokensPrompt(prompt_token_ids=list(row["prompt_token_ids"]))
        params = sampling_params(self.vllm, self.sampling, row["max_tokens"])
        final = None
        try:
            async for output in self.engine.generate(prompt=prompt, sampling_params=params,
                                                     request_id=uuid.uuid4().hex):
                final = output
        except Exception as exc:
            if not _row_error(exc):
                raise  # a dead engine: stop, and let a rerun redo the unfinished units
            cause = exc.__cause__ if exc.__cause__ is not None and type(exc).__name__ == "EngineGenerateError" else exc
            return "", 0, f"{type(cause).__name__}: {cause}"[:500], None
        return _result(final)


def _row_error(exc: Exception) -> bool:
    """Errors that belong to one request (vLLM rejected or failed it), as opposed to a dead engine."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "EngineDeadError" in names:
        return False
    return bool(names & {"VLLMClientError", "EngineGenerateError"}) or type(exc) is ValueError


class _EndOfRunFilter(logging.Filter):
    """Drops the output handler's failure record that vLLM's own shutdown causes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("AsyncLLM output_handler failed")


def _make_gate(gate: dict[str, Any] | None):
    if gate is None:
        return None

    styles = {name: StyleSpec.model_validate(spec) for name, spec in gate["styles"].items()}
    return OutputGate(RephraseQuality.model_validate(gate["quality"]), styles)


def _result(output) -> tuple[str, int, str | None, str | None]:
    """(text, output tokens, error, finish reason); an empty text is the gate's to reject, not an error."""
    completion = output.outputs[0]
    return completion.text.strip(), len(completion.token_ids), None, completion.finish_reason
