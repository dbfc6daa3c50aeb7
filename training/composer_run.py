"""Composer's Trainer with spt's conventions, shared by pretraining and finetuning."""

from __future__ import annotations

import os
from contextlib import nullcontext

from composer.core import Callback, State
from composer.loggers import Logger

from spt.progress import Progress
from training.layout import RunLayout
from training.schedules import ProgressScheduler, lr_phase


def compose_trainer(*, layout: RunLayout, files, model, train_loader, evals, roles, eval_samples, plan, optimizer,
                    schedule, device: str, precision: str, seed: int, autoresume: bool, deterministic: bool = False,
                    callbacks=(), domain_epochs_per_token: float | None = None, tracking=None):
    """Composer's Trainer with spt's conventions: intervals in batches derived from tokens, decoupled AdamW,
    the curve table (with the schedule's phase and, given ``domain_epochs_per_token``, the domain epochs seen),
    resumable checkpoints and a file log (where :class:`training.run_files.RunFiles` puts them).

    Args:
        layout: the run's folder (local or ``s3://``).
        files: the run's :class:`~training.run_files.RunFiles`.
        autoresume: resume from the latest checkpoint in the run's checkpoints folder, if there is one. Only
            pass True for a folder claimed for this run's fingerprint (:func:`training.trainer.claim_run`).
        tracking: the :class:`~training.tracking.TrackedRun` that Composer's MLflow logger logs into, or None.
    """
    from composer import Trainer
    from composer.algorithms import GradientClipping
    from composer.loggers import FileLogger
    from composer.optim import DecoupledAdamW
    from composer.utils import reproducibility

    from training.curves import CurveTable  # expensive: imports composer
    from training.run_files import LOG_NAME, code_free_checkpoints  # expensive: imports composer

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
    log = FileLogger(str(files.log_folder / LOG_NAME), flush_interval=1, capture_stdout=False, capture_stderr=False)
    curves = CurveTable(layout.curves, roles, eval_samples, plan.tokens_per_batch,
                        domain_epochs_per_token=domain_epochs_per_token, max_batches=plan.max_batches,
                        phase_at=lambda progress: lr_phase(schedule.kind, progress, schedule.warmup_fraction,
                                                           schedule.decay_fraction))
    loggers = [log] + ([tracking.composer_logger()] if tracking else [])
    # Autoresume loads the latest checkpoint while the Trainer is built: as tensors and plain values, never code.
    with tracking.attached() if tracking else nullcontext(), code_free_checkpoints(layout.checkpoints):
        return Trainer(
            run_name=layout.name,
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
            # No save_folder: the saver among the callbacks is the Trainer's checkpointer (see training.run_files).
            autoresume=autoresume,
            callbacks=[files.checkpoint_saver(plan.checkpoint_interval_batches), curves, *files.callbacks(),
                       TokenProgress(plan.tokens_per_batch, plan.max_batches), *callbacks],
            loggers=loggers,
            # spt's own progress (a bar on a terminal, plain lines in logs) replaces Composer's bar.
            progress_bar=False,
            log_to_console=True,
            console_log_interval=f"{plan.eval_interval_batches}ba",
            python_log_level=None,
        )


class TokenProgress(Callback):
    """Training progress in tokens (rank 0): a bar on a terminal, plain lines in logs (see :mod:`spt.progress`).
    A resumed run starts from the tokens its checkpoint had trained."""

    def __init__(self, tokens_per_batch: int, max_batches: int):
        self.tokens_per_batch, self.max_batches = tokens_per_batch, max_batches
        self.progress = None

    def fit_start(self, state: State, logger: Logger) -> None:
        if int(os.environ.get("RANK", "0")) == 0:
            self.progress = Progress("train", self.max_batches * self.tokens_per_batch, "tokens",
                                     initial=int(state.timestamp.batch) * self.tokens_per_batch)

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.progress is not None:
            self.progress.update(self.tokens_per_batch)

    def fit_end(self, state: State, logger: Logger) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None


def resolve_device(device: str, precision: str) -> tuple[str, str]:
    import torch

    if device == "auto":
        device = "gpu" if torch.cuda.is_available() else "cpu"
    if precision == "auto":
        precision = "amp_bf16" if device == "gpu" else "fp32"
    return device, precision
