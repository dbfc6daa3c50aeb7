"""A resolved train config becomes a Composer Trainer; each function is short enough to read at once."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.io import read_json, sha256_json, write_json_atomic
from spt.config import TrainConfig
from spt.errors import InputError
from training.presets import PRESETS, LlamaSize, count_parameters, llama_config


@dataclass(frozen=True)
class RunPlan:
    """What a train config means in steps: every interval in batches, derived from tokens."""

    seq_len: int
    tokens_per_batch: int
    max_batches: int
    eval_interval_batches: int
    checkpoint_interval_batches: int
    per_worker_batch: int
    microbatch: int
    size: LlamaSize
    params: int

    @property
    def tokens(self) -> int:
        return self.max_batches * self.tokens_per_batch


def read_mix_spec(path: str | Path) -> dict:
    """The streams spec of a built mix; a missing or unreadable one is an input error naming the path."""
    from pipelines.mix.streams import read_spec

    if not Path(path).exists():
        raise InputError(f"mix={str(path)!r}: no such file (build the mix first: spt mix build CONFIG)")
    return read_spec(path)


def model_size(config: TrainConfig) -> LlamaSize:
    base = PRESETS[config.model.preset].to_dict() if config.model.preset else {}
    explicit = config.model.model_dump(exclude={"preset"}, exclude_none=True)
    size = LlamaSize(**{**base, **explicit})
    if size.d_model % size.n_heads or size.n_heads % size.n_kv_heads:
        raise InputError(
            f"train.model: d_model={size.d_model} must divide by n_heads={size.n_heads}, "
            f"and n_heads by n_kv_heads={size.n_kv_heads}"
        )
    return size


def plan_run(config: TrainConfig, spec: dict) -> RunPlan:
    """Turns token quantities into batch counts; refuses a run shorter than one batch."""
    seq_len = int(spec["seq_len"])
    tokens_per_batch = config.global_batch_size * seq_len
    duration = config.duration_tokens or int(spec["total_tokens"])
    max_batches = duration // tokens_per_batch
    if max_batches < 1:
        raise InputError(
            f"train.duration_tokens={duration}: smaller than one batch of {tokens_per_batch} tokens "
            f"(global_batch_size={config.global_batch_size} x seq_len={seq_len})"
        )
    per_worker = config.global_batch_size // config.num_workers
    size = model_size(config)
    return RunPlan(
        seq_len=seq_len,
        tokens_per_batch=tokens_per_batch,
        max_batches=max_batches,
        eval_interval_batches=max(1, min(max_batches, config.eval_every_tokens // tokens_per_batch)),
        checkpoint_interval_batches=max(1, (config.checkpoint_every_tokens or duration) // tokens_per_batch),
        per_worker_batch=per_worker,
        microbatch=config.microbatch_size or per_worker,
        size=size,
        params=count_parameters(size, int(spec["vocab_size"])),
    )


def build_model(plan: RunPlan, spec: dict, seed: int):
    """A randomly initialized Llama in Composer's HuggingFaceModel, with token cross-entropy metrics."""
    import torch
    from composer.metrics.nlp import LanguageCrossEntropy
    from composer.models import HuggingFaceModel
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    hf_config = llama_config(plan.size, int(spec["vocab_size"]), plan.seq_len, int(spec["eos_token_id"]))
    model = LlamaForCausalLM(hf_config)
    return HuggingFaceModel(model, shift_labels=True, eval_metrics=[LanguageCrossEntropy()], use_logits=True)


def resolve_device(device: str, precision: str) -> tuple[str, str]:
    import torch

    if device == "auto":
        device = "gpu" if torch.cuda.is_available() else "cpu"
    if precision == "auto":
        precision = "amp_bf16" if device == "gpu" else "fp32"
    return device, precision


def build_trainer(config: TrainConfig, spec: dict, plan: RunPlan, world_size: int = 1):
    """The Composer Trainer for a pretraining run of ``plan`` on the mix ``spec``."""
    from training.curves import DOMAIN_TRAIN_ROLE
    from training.data import domain_epochs_per_token, domain_train_evaluator, evaluators, train_dataloader

    evals, roles, eval_samples = evaluators(spec, plan.per_worker_batch, config.eval_samples, world_size)
    train_sample = domain_train_evaluator(spec, plan.per_worker_batch, eval_samples, world_size)
    if train_sample is not None:
        evaluator, label, used = train_sample
        evals.append(evaluator)
        roles[label], eval_samples[label] = DOMAIN_TRAIN_ROLE, used
    return compose_trainer(
        run_dir=Path(config.run_dir),
        model=build_model(plan, spec, config.seed),
        train_loader=train_dataloader(spec, plan.per_worker_batch, config.seed, config.dataloader_workers),
        evals=evals,
        roles=roles,
        eval_samples=eval_samples,
        plan=plan,
        optimizer=config.optimizer,
        schedule=config.schedule,
        device=config.device,
        precision=config.precision,
        seed=config.seed,
        autoresume=config.autoresume,
        deterministic=config.deterministic,
        domain_epochs_per_token=domain_epochs_per_token(spec),
    )


def compose_trainer(*, run_dir: Path, model, train_loader, evals, roles, eval_samples, plan: RunPlan, optimizer,
                    schedule, device: str, precision: str, seed: int, autoresume: bool, deterministic: bool = False,
                    callbacks=(), domain_epochs_per_token: float | None = None):
    """Composer's Trainer with spt's conventions: intervals in batches derived from tokens, decoupled AdamW,
    the curve table (with the schedule's phase and, given ``domain_epochs_per_token``, the domain epochs seen),
    resumable checkpoints in ``run_dir/checkpoints`` and a file log."""
    from composer import Trainer
    from composer.algorithms import GradientClipping
    from composer.loggers import FileLogger
    from composer.optim import DecoupledAdamW
    from composer.utils import reproducibility

    from training.curves import CurveTable
    from training.schedules import ProgressScheduler, lr_phase

    reproducibility.seed_all(seed)
    adamw = DecoupledAdamW(
        model.parameters(), lr=optimizer.lr, betas=(optimizer.beta1, optimizer.beta2), eps=optimizer.eps,
        weight_decay=optimizer.weight_decay,
    )
    scheduler = ProgressScheduler(schedule.kind, schedule.warmup_fraction, schedule.decay_fraction,
                                  schedule.final_lr_ratio)
    clipping = [GradientClipping(clipping_type="norm", clipping_threshold=optimizer.grad_clip_norm)] \
        if optimizer.grad_clip_norm else []
    device, precision = resolve_device(device, precision)
    log = FileLogger(str(run_dir / "logs" / "metrics-rank{rank}.log"), flush_interval=1, capture_stdout=False,
                     capture_stderr=False)
    return Trainer(
        run_name=run_dir.name,
        model=model,
        train_dataloader=train_loader,
        eval_dataloader=evals,
        max_duration=f"{plan.max_batches}ba",
        eval_interval=f"{plan.eval_interval_batches}ba",
        optimizers=adamw,
        schedulers=scheduler,
        step_schedulers_every_batch=True,
        algorithms=clipping,
        device=device,
        precision=precision,
        device_train_microbatch_size=plan.microbatch,
        seed=seed,
        deterministic_mode=deterministic,
        save_folder=str(run_dir / "checkpoints"),
        save_interval=f"{plan.checkpoint_interval_batches}ba",
        save_filename="ba{batch}-rank{rank}.pt",
        save_num_checkpoints_to_keep=2,
        # A kill between writing a checkpoint and moving the `latest` link leaves a file the resumed run will
        # write again (with the same content: the run is deterministic), so overwriting is safe and needed.
        save_overwrite=True,
        autoresume=autoresume,
        callbacks=[CurveTable(run_dir / "curves.csv", roles, eval_samples, plan.tokens_per_batch,
                              domain_epochs_per_token=domain_epochs_per_token, max_batches=plan.max_batches,
                              phase_at=lambda progress: lr_phase(schedule.kind, progress, schedule.warmup_fraction,
                                                                 schedule.decay_fraction)),
                   *callbacks],
        loggers=[log],
        progress_bar=os.environ.get("SPT_PROGRESS", "1") == "1",
        log_to_console=True,
        console_log_interval=f"{plan.eval_interval_batches}ba",
        python_log_level=None,
    )


def export_model(trainer, folder: Path) -> None:
    """Saves the trained weights as a safetensors HF folder (finetune and interpolate load this, no pickle)."""
    composer_model = trainer.state.model
    composer_model = getattr(composer_model, "module", composer_model)  # unwrap DistributedDataParallel
    composer_model.model.save_pretrained(folder, safe_serialization=True)


def config_fingerprint(config: TrainConfig) -> str:
    return sha256_json(config.model_dump(mode="json", exclude={"autoresume", "num_workers", "ray", "dataloader_workers"}))


def run_training(config: TrainConfig, world_size: int = 1, rank: int = 0) -> dict:
    """Trains (or resumes, or finds finished) the run in ``config.run_dir``; returns its summary.

    The summary has the final domain/general losses (the last evaluation), tokens, parameters and wall time.
    """
    spec = read_mix_spec(config.mix)
    plan = plan_run(config, spec)
    run_dir = Path(config.run_dir)
    fingerprint = config_fingerprint(config)
    summary_path = run_dir / "summary.json"
    done = read_json(summary_path)
    if done and done.get("fingerprint") == fingerprint:
        done["reused"] = True
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", config.model_dump(mode="json"))
    start = time.time()
    trainer = build_trainer(config, spec, plan, world_size)
    trainer.fit()
    summary = _summary(config, plan, fingerprint, run_dir, time.time() - start, world_size)
    if rank == 0:
        export_model(trainer, run_dir / "model")
        write_json_atomic(summary_path, summary)
    trainer.close()
    return summary


def _summary(config, plan: RunPlan, fingerprint: str, run_dir: Path, seconds: float, world_size: int) -> dict:
    import csv

    import torch

    rows = list(csv.DictReader((run_dir / "curves.csv").open())) if (run_dir / "curves.csv").exists() else []
    last = rows[-1] if rows else {}
    as_float = lambda v: float(v) if v not in (None, "") else None  # noqa: E731
    return {
        "fingerprint": fingerprint,
        "run_dir": str(run_dir),
        "params": plan.params,
        "model": json.loads(json.dumps(plan.size.to_dict())),
        "tokens": plan.tokens,
        "batches": plan.max_batches,
        "global_batch_size": config.global_batch_size,
        "world_size": world_size,
        "domain_loss": as_float(last.get("domain_loss")),
        "general_loss": as_float(last.get("general_loss")),
        "losses": {k[5:]: as_float(v) for k, v in last.items() if k.startswith("loss_")},
        "wall_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "reused": False,
    }
