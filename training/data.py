"""Dataloaders from a built mix: the train streams and one held-out evaluator per source."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DataLoader


def collate_tokens(samples: list[dict]) -> dict[str, torch.Tensor]:
    """Stacks fixed-length token samples into ``input_ids`` and ``labels`` (the model shifts labels itself)."""
    ids = torch.from_numpy(np.stack([np.asarray(s["tokens"], dtype=np.int64) for s in samples]))
    return {"input_ids": ids, "labels": ids.clone()}


def train_dataloader(spec: dict, per_worker_batch: int, seed: int, num_workers: int = 0) -> DataLoader:
    """The mix's training streams, shuffled with ``seed``; each epoch realizes the asked per-source samples."""
    from pipelines.mix.streams import train_dataset

    dataset = train_dataset(spec, shuffle_seed=seed, batch_size=per_worker_batch, num_canonical_nodes=1)
    return DataLoader(
        dataset, batch_size=per_worker_batch, collate_fn=collate_tokens, num_workers=num_workers, drop_last=True
    )


def evaluators(spec: dict, per_worker_batch: int, eval_samples: int, world_size: int = 1) -> tuple[list, dict[str, str], dict[str, int]]:
    """One Composer Evaluator per source with held-out shards, labelled by source name.

    Returns:
        (evaluators, role of each source, samples evaluated per source)
    """
    from composer.core import Evaluator

    from pipelines.mix.streams import eval_dataset

    result, roles, samples = [], {}, {}
    for entry in spec["eval"]:
        if not entry.get("samples"):
            continue
        dataset = eval_dataset(spec, entry["name"], batch_size=per_worker_batch, num_canonical_nodes=1)
        loader = DataLoader(dataset, batch_size=per_worker_batch, collate_fn=collate_tokens, drop_last=False)
        used = min(eval_samples, entry["samples"])
        result.append(
            Evaluator(
                label=entry["name"],
                dataloader=loader,
                metric_names=["LanguageCrossEntropy"],
                subset_num_batches=max(1, math.ceil(used / (per_worker_batch * world_size))),
            )
        )
        roles[entry["name"]] = entry["role"]
        samples[entry["name"]] = used
    return result, roles, samples
