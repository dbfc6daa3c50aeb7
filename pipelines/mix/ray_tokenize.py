"""Where the build's tokenization runs: a Ray Data pipeline of tasks that each read and encode one file piece.

This is the only module that knows about Ray. Without an address (and outside a Ray job, whose cluster it joins)
it starts a local Ray sized for the tokenizer tasks (``ray.init(num_cpus=..., include_dashboard=False)``) and
stops it afterwards; a Ray that is already running in the process (a test fixture, a notebook) is used as it is
and left running. With a cluster address the workers read the inputs themselves, so inputs must be on S3 or on a
filesystem every node mounts at the same path; they run ``ray.py_executable`` (the train environment's
interpreter in the worker image; default: the local one). Tokenizer tasks ask for no GPU: HF tokenizers run on
CPUs only.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from typing import Iterator

import pyarrow as pa

from pipelines.mix.documents import Chunk, InputFile, SplitRule, chunks_of, read_chunk_documents
from pipelines.mix.tokens import TokenizerInfo, tokenize_batch
from spt import cluster, storage
from spt.config.mix import MixConfig
from spt.environments import ray_runtime_env

_UNSET = object()
POLICIES_KEY = "backpressure_policies.enabled"  # DataContext.set_config key of Ray Data's backpressure policies


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the train environment has ray[data]
        raise ImportError("spt mix build needs ray[data]: run scripts/setup.sh train") from exc
    return ray


@contextmanager
def ray_session(config: MixConfig) -> Iterator[None]:
    """Ray for the tokenizer tasks (:func:`spt.cluster.ray_session`): the cluster, or a local Ray sized for them."""
    _import_ray()
    per_worker = max(1, math.ceil(config.ray.num_cpus))
    local = {"num_cpus": config.build.workers * per_worker}
    if config.ray.py_executable:
        local["runtime_env"] = {"py_executable": config.ray.py_executable}
    # The cluster's workers run the train environment's interpreter: ray.py_executable, or the local one.
    with cluster.ray_session(config.ray.address, local=local, log_to_driver=False, logging_level=logging.WARNING,
                             runtime_env=lambda: ray_runtime_env("train", config.ray.py_executable,
                                                                 _worker_env(config))):
        yield


def _read_and_tokenize(batch: pa.Table, batch_documents: int, heldout_ids: dict, **tokenizer) -> pa.Table:
    """Ray Data task: reads each chunk row's documents and encodes them ``batch_documents`` at a time.

    ``heldout_ids`` maps a source index (as a string) to the ids of the documents held out of the source it
    rephrases (see :mod:`pipelines.mix.heldout`). Returns TokenizeStage outputs with a ``source`` column, in
    document order.
    """
    outputs = []
    for row in batch.to_pylist():
        documents, _ = read_chunk_documents(Chunk(row["location"], row["start"], row["stop"]))
        held = frozenset(heldout_ids.get(str(row["source"]), ()))
        rule = SplitRule(row["split"], row["heldout_fraction"], row["seed"], held)
        for start in range(0, max(len(documents), 1), batch_documents):
            part = documents[start : start + batch_documents]
            outputs.append(tokenize_batch({"text": [d.text for d in part], "split": [rule.of(d) for d in part],
                                           "source": [row["source"]] * len(part)}, **tokenizer))
    return pa.concat_tables(outputs)


def _worker_env(config: MixConfig) -> dict:
    # The workers reach the same object store as the driver.
    return {**storage.environment(), **config.ray.env_vars}


@contextmanager
def _pipeline_settings() -> Iterator[None]:
    """Ray Data settings for the build pipeline, restored afterwards (the DataContext is process-wide)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False  # our own progress bar counts tokens
    policies = _policies_without_resource_budget()
    saved_policies = context.get_config(POLICIES_KEY, _UNSET) if policies is not None else _UNSET
    if policies is not None:
        context.set_config(POLICIES_KEY, policies)
    # Ray Data's per-dataset INFO lines (and its "progress bars disabled" notice) would repeat our progress bar.
    loggers = {
        logging.getLogger("ray.data"): logging.WARNING,
        logging.getLogger("ray.data._internal.progress"): logging.ERROR,
    }
    saved_levels = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(level)
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        if policies is not None:
            if saved_policies is _UNSET:
                context.remove_config(POLICIES_KEY)
            else:
                context.set_config(POLICIES_KEY, saved_policies)
        for logger, level in saved_levels.items():
            logger.setLevel(level)


def _policies_without_resource_budget() -> list | None:
    """Ray Data's backpressure policies minus the resource-budget one (None if this Ray has no such knob).

    That policy runs one task alone until it has measured a first output; with tasks of a whole row group it
    idles every other worker for a task's length (measured: 2 workers 1.3x of 1 with it, 1.8x without). The
    outputs here are small and drained at once by the packer; downstream-capacity backpressure stays on.
    """
    try:  # not public API: Ray 2.60 is pinned, and without the knob the build is only slower to start
        from ray.data._internal.execution.backpressure_policy import ENABLED_BACKPRESSURE_POLICIES
        from ray.data._internal.execution.backpressure_policy.resource_budget_backpressure_policy import (
            ResourceBudgetBackpressurePolicy,
        )
    except ImportError:
        return None
    return [p for p in ENABLED_BACKPRESSURE_POLICIES if p is not ResourceBudgetBackpressurePolicy]


def tokenized_tables(
    config: MixConfig, sources: list[list[tuple[InputFile, SplitRule]]], tokenizer: TokenizerInfo
) -> Iterator[pa.Table]:
    """Tokenizes the files of several sources in one Ray Data pipeline (one pass, one pool of tasks).

    Yields TokenizeStage outputs (``source`` = index into ``sources``) in document order: order is preserved
    (``preserve_order``) so packing, and therefore every shard byte, is the same on every run.
    """
    ray = _import_ray()
    from ray.data import TaskPoolStrategy

    # One task per chunk (a parquet row group, a few MiB of jsonl): the pool shares every file that has several,
    # and a task reads exactly what it tokenizes (one Ray Data operator, nothing for Ray to regroup).
    items = [
        {"source": index, "location": chunk.location, "start": chunk.start, "stop": chunk.stop,
         "split": rule.split, "heldout_fraction": rule.heldout_fraction, "seed": rule.seed}
        for index, files in enumerate(sources)
        for f, rule in files
        for chunk in chunks_of(f.location)
    ]
    env = _worker_env(config)
    remote_args = {"runtime_env": {"env_vars": env}} if env else {}
    tokenizer_args = {
        "batch_documents": config.build.batch_documents,
        # Once per pipeline, not per chunk row: a rephrased source may hold out many document ids.
        "heldout_ids": {str(index): sorted(files[0][1].heldout_ids) for index, files in enumerate(sources)
                        if files and files[0][1].heldout_ids},
        "tokenizer_dir": tokenizer.folder,
        "tokenizer_sha256": tokenizer.sha256,
        "dtype": tokenizer.dtype,
        "eos_token_id": tokenizer.eos_token_id,
        "threads": max(1, math.ceil(config.ray.num_cpus)),
    }
    with _pipeline_settings():
        dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
            _read_and_tokenize,
            fn_kwargs=tokenizer_args,
            batch_size=1,
            batch_format="pyarrow",
            compute=TaskPoolStrategy(size=config.build.workers),
            num_cpus=config.ray.num_cpus,
            num_gpus=0,
            **remote_args,
        )
        yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
