"""Dataloaders from a built mix: the train streams, one held-out evaluator per source, and one evaluator over
domain *training* sequences (the gap between it and the held-out domain loss is what repetition does)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipelines.mix.streams import eval_dataset, train_dataset, train_sample_dataset


def collate_tokens(samples: list[dict]) -> dict[str, torch.Tensor]:
    """Stacks fixed-length token samples into ``input_ids`` and ``labels`` (the model shifts labels itself)."""
    ids = torch.from_numpy(np.stack([np.asarray(s["tokens"], dtype=np.int64) for s in samples]))
    return {"input_ids": ids, "labels": ids.clone()}


def train_dataloader(spec: dict, per_worker_batch: int, seed: int, num_workers: int = 0) -> DataLoader:
    """The mix's training streams, shuffled with ``seed``; each epoch realizes the asked per-source samples."""
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


def domain_train_evaluator(spec: dict, per_worker_batch: int, eval_samples: dict[str, int], world_size: int = 1):
    """An Evaluator over the first domain training sequences, as many as the held-out domain evaluator reads.

    The sequences are the first ones of the domain source's training shards, in order, so every evaluation of a
    run (and every run of a sweep, whose cells share the built sources) measures the same sample.

    Args:
        spec: The mix's streams spec.
        per_worker_batch: Sequences per evaluation batch on one worker (samples).
        eval_samples: Sequences evaluated per held-out label (from :func:`evaluators`).
        world_size: Training workers.

    Returns:
        (evaluator, its label, sequences it evaluates), or None when the mix has no domain source with both
        training and held-out samples.
    """
    from composer.core import Evaluator

    domain = [s for s in spec["streams"] if s["role"] == "domain" and s.get("unique_samples")]
    held_out = [e for e in spec["eval"] if e["role"] == "domain" and e["name"] in eval_samples]
    if not domain or not held_out:
        return None
    source = domain[0]["name"]
    wanted = next((eval_samples[e["name"]] for e in held_out if e["name"] == source), eval_samples[held_out[0]["name"]])
    used = min(wanted, int(domain[0]["unique_samples"]))
    dataset = train_sample_dataset(spec, source, batch_size=per_worker_batch, num_canonical_nodes=1)
    loader = DataLoader(dataset, batch_size=per_worker_batch, collate_fn=collate_tokens, drop_last=False)
    label = f"{source}_train"
    evaluator = Evaluator(label=label, dataloader=loader, metric_names=["LanguageCrossEntropy"],
                          subset_num_batches=max(1, math.ceil(used / (per_worker_batch * world_size))))
    return evaluator, label, used


def domain_epochs_per_token(spec: dict) -> float | None:
    """Passes over the unique domain training tokens per token trained: the domain's share of the mix's samples
    over its unique samples (the shuffle spreads domain samples evenly in expectation). None without a domain."""
    total = sum(int(s["choose"]) for s in spec["streams"])
    domain = [s for s in spec["streams"] if s["role"] == "domain" and s.get("unique_samples")]
    if not domain or not total:
        return None
    chosen, unique = sum(int(s["choose"]) for s in domain), sum(int(s["unique_samples"]) for s in domain)
    return chosen / total / (unique * int(spec["seq_len"]))
