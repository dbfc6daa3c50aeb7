"""Where the build's tokenization runs: a Ray Data pipeline (read files -> batched encode in a pool of tasks).

This is the only module that knows about Ray. Without an address it starts a local Ray sized for the tokenizer tasks
(``ray.init(num_cpus=..., include_dashboard=False)``) and stops it afterwards; a Ray that is already running in
the process (a test fixture, a notebook) is used as it is and left running.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from typing import Iterator

import pyarrow as pa

from pipelines.mix.documents import InputFile, SplitRule, documents_table
from pipelines.mix.tokens import TokenizerInfo, tokenize_batch
from spt.config.mix import MixConfig

#: Variables the workers need to reach the same object store as the driver.
_STORAGE_VARIABLES = ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                      "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE")

#: Target size of the pipeline's blocks (bytes): a few hundred documents of text each.
BLOCK_BYTES = 1 << 19


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the train environment has ray[data]
        raise ImportError("spt mix build needs ray[data]: run scripts/setup.sh train") from exc
    return ray


@contextmanager
def ray_session(config: MixConfig) -> Iterator[None]:
    """Connects to ``config.ray.address``, or starts a local Ray, unless Ray is already running here."""
    ray = _import_ray()
    if ray.is_initialized():
        yield
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if config.ray.address:
        ray.init(address=config.ray.address, **quiet)
    else:
        per_worker = max(1, math.ceil(config.ray.num_cpus))
        # One CPU beyond the tokenizer tasks, for the read tasks that feed them.
        ray.init(num_cpus=config.build.workers * per_worker + 1, include_dashboard=False, **quiet)
    try:
        yield
    finally:
        ray.shutdown()


def _read_files(batch: pa.Table) -> pa.Table:
    """Ray Data stage: the documents of each file row, with their split and source index."""
    tables = []
    for row in batch.to_pylist():
        table = documents_table(row["location"], SplitRule(row["split"], row["heldout_fraction"], row["seed"]))
        tables.append(table.append_column("source", pa.array([row["source"]] * len(table), pa.int64())))
    return pa.concat_tables(tables)


def _worker_env(config: MixConfig) -> dict:
    env = {name: os.environ[name] for name in _STORAGE_VARIABLES if name in os.environ}
    env.update(config.ray.env_vars)
    return env


def tokenized_tables(
    config: MixConfig, sources: list[list[tuple[InputFile, SplitRule]]], tokenizer: TokenizerInfo
) -> Iterator[pa.Table]:
    """Tokenizes the files of several sources in one Ray Data pipeline (one pass, one pool of tasks).

    Yields TokenizeStage outputs (``source`` = index into ``sources``) in document order: order is preserved
    (``preserve_order``) so packing, and therefore every shard byte, is the same on every run.
    """
    ray = _import_ray()
    from ray.data import DataContext, TaskPoolStrategy

    context = DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars, context.target_max_block_size)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    # Small blocks: Ray Data hands a whole block to one task, so one big file in one block would use one worker.
    context.target_max_block_size = BLOCK_BYTES
    # Our own progress bar says how far the build is; Ray Data's per-dataset INFO lines would repeat it.
    data_logger = logging.getLogger("ray.data")
    saved_level = data_logger.level
    data_logger.setLevel(logging.WARNING)
    try:
        items = [
            {"source": index, "location": f.location, "split": rule.split,
             "heldout_fraction": rule.heldout_fraction, "seed": rule.seed}
            for index, files in enumerate(sources)
            for f, rule in files
        ]
        env = _worker_env(config)
        remote_args = {"runtime_env": {"env_vars": env}} if env else {}
        threads = max(1, math.ceil(config.ray.num_cpus))
        dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        # A different CPU request keeps reading a separate operator (Ray would otherwise fuse it into the
        # tokenize tasks), so the documents of one large file are spread over the whole pool.
        dataset = dataset.map_batches(_read_files, batch_size=1, batch_format="pyarrow", num_cpus=0.5, **remote_args)
        # Tasks, not actors: pooled worker processes keep their tokenizer (tokenize_batch caches it) from one
        # pipeline to the next, where an actor pool would start and load everything again each time.
        dataset = dataset.map_batches(
            tokenize_batch,
            fn_kwargs={
                "tokenizer_dir": tokenizer.folder,
                "dtype": tokenizer.dtype,
                "eos_token_id": tokenizer.eos_token_id,
                "threads": threads,
            },
            batch_size=config.build.batch_documents,
            batch_format="pyarrow",
            compute=TaskPoolStrategy(size=config.build.workers),
            num_cpus=config.ray.num_cpus,
            num_gpus=0,
            **remote_args,
        )
        yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")
    finally:
        (context.execution_options.preserve_order, context.enable_progress_bars,
         context.target_max_block_size) = saved
        data_logger.setLevel(saved_level)
