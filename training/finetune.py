"""`spt finetune`: continue a pretraining run on the domain data (optionally replaying general data), stopping
early when the domain held-out loss stops improving. The paper's final metric is the best domain loss here."""

from __future__ import annotations

import copy
import csv
import time
from pathlib import Path

from pipelines.io import read_json, sha256_json, write_json_atomic
from spt.config import FinetuneConfig, TrainConfig
from spt.errors import InputError
from training.trainer import RunPlan, compose_trainer, export_model, model_size, read_mix_spec


def replay_spec(spec: dict, replay_fraction: float, samples: int) -> dict:
    """A copy of the mix spec whose train streams are the domain sources (share 1 − r of ``samples``) and the
    general sources (share r), each role split over its sources by their unique samples."""
    out = copy.deepcopy(spec)
    by_role = {"domain": [s for s in out["streams"] if s["role"] == "domain"],
               "general": [s for s in out["streams"] if s["role"] == "general"]}
    if not by_role["domain"]:
        raise InputError("finetune: the mix has no domain source to finetune on")
    if replay_fraction > 0 and not by_role["general"]:
        raise InputError(f"finetune.replay_fraction={replay_fraction}: the mix has no general source to replay")
    wanted = {"domain": samples - round(samples * replay_fraction), "general": round(samples * replay_fraction)}
    out["streams"] = []
    for role, streams in by_role.items():
        unique = sum(s["unique_samples"] for s in streams)
        left = wanted[role]
        for index, stream in enumerate(streams):
            share = left if index == len(streams) - 1 else round(wanted[role] * stream["unique_samples"] / unique)
            left -= share
            if share > 0:
                out["streams"].append({**stream, "choose": share})
    return out


def base_run(config: FinetuneConfig) -> tuple[TrainConfig, dict]:
    run = Path(config.base_run)
    base_config, summary = read_json(run / "config.json"), read_json(run / "summary.json")
    if base_config is None or summary is None:
        raise InputError(f"finetune.base_run={config.base_run!r}: not a finished `spt train` run (no summary.json)")
    return TrainConfig.model_validate(base_config), summary


def run_finetune(config: FinetuneConfig) -> dict:
    """Finetunes and returns the summary: best domain loss, the tokens where it happened, and whether it stopped early."""
    import torch
    from composer.callbacks import EarlyStopper
    from composer.core import Time, TimeUnit
    from composer.metrics.nlp import LanguageCrossEntropy
    from composer.models import HuggingFaceModel

    from training.data import collate_tokens, evaluators
    from training.interpolate import load_model
    from training.presets import count_parameters

    base, base_summary = base_run(config)
    spec = read_mix_spec(config.mix or base.mix)
    run_dir = Path(config.run_dir)
    fingerprint = sha256_json(config.model_dump(mode="json"))
    done = read_json(run_dir / "summary.json")
    if done and done.get("fingerprint") == fingerprint:
        return {**done, "reused": True}
    seq_len = int(spec["seq_len"])
    tokens_per_batch = config.global_batch_size * seq_len
    max_batches = config.duration_tokens // tokens_per_batch
    if max_batches < 1:
        raise InputError(f"finetune.duration_tokens={config.duration_tokens}: smaller than one batch of "
                         f"{tokens_per_batch} tokens")
    size = model_size(base)
    interval = max(1, min(max_batches, config.eval_every_tokens // tokens_per_batch))
    plan = RunPlan(seq_len, tokens_per_batch, max_batches, interval, interval, config.global_batch_size,
                   config.global_batch_size, size, count_parameters(size, int(spec["vocab_size"])))
    from pipelines.mix.streams import train_dataset
    from torch.utils.data import DataLoader

    data = train_dataset(replay_spec(spec, config.replay_fraction, max_batches * config.global_batch_size),
                         shuffle_seed=config.seed, batch_size=config.global_batch_size, num_canonical_nodes=1)
    loader = DataLoader(data, batch_size=config.global_batch_size, collate_fn=collate_tokens, drop_last=True)
    evals, roles, eval_samples = evaluators(spec, config.global_batch_size, config.eval_samples)
    domain_label = next(name for name, role in roles.items() if role == "domain")
    model = HuggingFaceModel(load_model(config.base_run).train(), shift_labels=True, use_logits=True,
                             eval_metrics=[LanguageCrossEntropy()])
    # Composer stops when (batch - best batch) > patience; this makes `patience` evaluations without gain stop.
    stopper = EarlyStopper("LanguageCrossEntropy", domain_label, comp=torch.less, min_delta=config.min_delta,
                           patience=Time(config.patience * interval - 1, TimeUnit.BATCH))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", config.model_dump(mode="json"))
    start = time.time()
    trainer = compose_trainer(run_dir=run_dir, model=model, train_loader=loader, evals=evals, roles=roles,
                              eval_samples=eval_samples, plan=plan, optimizer=config.optimizer,
                              schedule=config.schedule, device=config.device, precision="auto", seed=config.seed,
                              autoresume=True, callbacks=[stopper])
    trainer.fit()
    export_model(trainer, run_dir / "model")
    trained = int(trainer.state.timestamp.batch)
    trainer.close()
    summary = finetune_summary(run_dir / "curves.csv", base_summary, fingerprint, trained, max_batches, tokens_per_batch)
    summary["wall_seconds"] = round(time.time() - start, 1)
    write_json_atomic(run_dir / "summary.json", summary)
    return summary


def finetune_summary(curves: Path, base_summary: dict, fingerprint: str, trained_batches: int, max_batches: int,
                     tokens_per_batch: int) -> dict:
    rows = list(csv.DictReader(curves.open()))
    best = min(rows, key=lambda r: float(r["domain_loss"]))
    return {
        "fingerprint": fingerprint,
        "pretrained_domain_loss": base_summary.get("domain_loss"),
        "pretrained_general_loss": base_summary.get("general_loss"),
        "best_domain_loss": float(best["domain_loss"]),
        "best_tokens": int(best["tokens"]),
        "general_loss_at_best": float(best["general_loss"]) if best.get("general_loss") else None,
        "trained_tokens": trained_batches * tokens_per_batch,
        "stopped_early": trained_batches < max_batches,
        "evaluations": len(rows),
        "reused": False,
    }
