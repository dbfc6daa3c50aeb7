"""Configs for pretraining (`spt train`), finetuning (`spt finetune`) and WiSE-FT interpolation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from spt.config.common import Location, RayRuntimeConfig
from spt.config.loader import StrictModel
from spt.config.tracking import RunTrackingConfig
from spt.presets import PRESETS


class ModelConfig(StrictModel):
    """A named preset, or explicit sizes (explicit values override the preset's)."""

    preset: str | None = Field("tiny", description="preset name from spt/presets.py, e.g. tiny, micro, 150m, 1b (a name)")
    d_model: int | None = Field(None, ge=8, description="hidden size (units)")
    n_layers: int | None = Field(None, ge=1, description="decoder layers (layers)")
    n_heads: int | None = Field(None, ge=1, description="attention heads (heads)")
    n_kv_heads: int | None = Field(None, ge=1, description="key/value heads for grouped-query attention (heads)")
    ffn_hidden: int | None = Field(None, ge=8, description="SwiGLU hidden size (units)")

    @model_validator(mode="after")
    def _known_preset(self):
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset={self.preset!r}: unknown preset; one of {', '.join(PRESETS)}")
        explicit = [self.d_model, self.n_layers, self.n_heads, self.n_kv_heads, self.ffn_hidden]
        if self.preset is None and None in explicit:
            raise ValueError("without a preset, d_model, n_layers, n_heads, n_kv_heads and ffn_hidden are required")
        return self


class OptimizerConfig(StrictModel):
    """Decoupled AdamW."""

    lr: float = Field(3e-3, gt=0, le=1, description="peak learning rate (per step)")
    weight_decay: float = Field(0.0, ge=0, le=1, description="decoupled weight decay per step (fraction)")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam first-moment decay (fraction)")
    beta2: float = Field(0.95, ge=0, lt=1, description="Adam second-moment decay (fraction)")
    eps: float = Field(1e-8, gt=0, description="Adam epsilon (a small number)")
    grad_clip_norm: float | None = Field(1.0, gt=0, description="clip gradients to this global L2 norm (norm)")


class ScheduleConfig(StrictModel):
    """Learning-rate schedule: warmup then cosine decay, or warmup-stable-decay (WSD)."""

    kind: Literal["cosine", "wsd", "constant"] = Field("cosine", description="schedule shape (one of the literals)")
    warmup_fraction: float = Field(0.05, ge=0, le=1, description="warmup share of the run (fraction of tokens)")
    decay_fraction: float = Field(0.2, ge=0, le=1, description="WSD only: final decay share of the run (fraction of tokens)")
    final_lr_ratio: float = Field(0.1, ge=0, le=1, description="final learning rate over peak (fraction)")


class TrainConfig(StrictModel):
    """`spt train`: pretrain a Llama-style model with Composer on a built mix."""

    kind: Literal["train"] = Field(description="config kind (literal 'train')")
    mix: Location = Field(description="streams spec written by `spt mix build`, local or s3:// (a path to streams.json)")
    run_dir: Location = Field(
        description="folder for curves, logs, checkpoints and the final model, local or s3:// (a path); "
        "spt owns it: a run of another config or mix there is refused unless --force"
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="the model shape")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="the optimizer")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="the learning-rate schedule")
    duration_tokens: int | None = Field(
        None, ge=1, description="tokens to train on (tokens); None = the mix's total_tokens"
    )
    global_batch_size: int = Field(16, ge=1, description="sequences per optimizer step over all workers (samples)")
    microbatch_size: int | None = Field(
        None, ge=1, description="sequences per forward pass on one worker (samples); None = the whole per-worker batch"
    )
    eval_every_tokens: int = Field(200_000, ge=1, description="evaluate held-out losses every this many tokens (tokens)")
    eval_samples: int = Field(64, ge=1, description="held-out sequences evaluated per source at most (samples)")
    checkpoint_every_tokens: int | None = Field(
        None, ge=1, description="save a resumable checkpoint every this many tokens (tokens); None = at the end only"
    )
    snapshot_tokens: list[int] | None = Field(
        None, min_length=1,
        description="also export the weights after each of these many tokens (rounded down to whole batches) to "
        "<run_dir>/snapshots/T<tokens>/, a safetensors folder like model/ that `spt finetune` can start from "
        "(base_tokens); constant schedule only, past warmup, within the run (tokens); None = no snapshots",
    )
    autoresume: bool = Field(
        True, description="resume from the latest checkpoint in run_dir if there is one, made for the same config "
        "and mix (a switch); false restarts an unfinished run from scratch"
    )
    seed: int = Field(0, ge=0, description="seed of weights, data order and dropout (integer)")
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="where to train (one of the literals)")
    deterministic: bool = Field(
        False, description="torch deterministic algorithms (a switch); costs ~2.7x on CPU and is not needed there "
        "for exact resumption, which the tests check"
    )
    precision: Literal["auto", "fp32", "amp_bf16"] = Field(
        "auto", description="numeric precision: auto = fp32 on CPU, amp_bf16 on GPU (one of the literals)"
    )
    num_workers: int = Field(1, ge=1, description="Ray Train workers; 1 trains in this process (processes)")
    dataloader_workers: int = Field(0, ge=0, description="DataLoader worker processes per training worker (processes)")
    ray: RayRuntimeConfig = Field(default_factory=RayRuntimeConfig, description="the Ray cluster for num_workers > 1")
    tracking: RunTrackingConfig = Field(default_factory=RunTrackingConfig, description="MLflow tracking of the run")

    @field_validator("snapshot_tokens")
    @classmethod
    def _distinct(cls, values: list[int] | None) -> list[int] | None:
        if values is not None and len(set(values)) != len(values):
            raise ValueError("values must be distinct")
        return values

    @model_validator(mode="after")
    def _snapshots_of_a_constant_rate(self):
        if self.snapshot_tokens and self.schedule.kind != "constant":
            raise ValueError(
                f"snapshot_tokens={self.snapshot_tokens}: needs schedule.kind=constant, not {self.schedule.kind}: "
                "only at a constant learning rate is the model after T tokens the model of a T-token run"
            )
        return self

    @model_validator(mode="after")
    def _batches_divide(self):
        if self.global_batch_size % self.num_workers:
            raise ValueError(
                f"global_batch_size={self.global_batch_size} does not divide across num_workers={self.num_workers}"
            )
        per_worker = self.global_batch_size // self.num_workers
        if self.microbatch_size is not None and per_worker % self.microbatch_size:
            raise ValueError(
                f"microbatch_size={self.microbatch_size} does not divide the per-worker batch of {per_worker}"
            )
        return self


class FinetuneConfig(StrictModel):
    """`spt finetune`: continue from a pretraining run on domain data, with optional general replay.

    The domain held-out set is split by document into a validation split (early stopping and the choice of the
    model) and a test split (the reported loss), so the reported loss is not the minimum of what was watched.
    """

    kind: Literal["finetune"] = Field(description="config kind (literal 'finetune')")
    base_run: Location = Field(description="run_dir of a finished `spt train` run, local or s3:// (a path)")
    mix: Location | None = Field(
        None, description="streams spec to take domain/general data from, local or s3:// (a path); None = the base run's"
    )
    run_dir: Location = Field(description="folder for this finetune run, local or s3:// (a path)")
    replay_fraction: float = Field(0.0, ge=0, lt=1, description="share of general data mixed into finetuning (fraction of tokens)")
    base_tokens: int | None = Field(
        None, ge=1, description="start from the base run's snapshot after this many tokens "
        "(<base_run>/snapshots/T<tokens>/, written by its snapshot_tokens) instead of its final model (tokens); "
        "None = the final model"
    )
    duration_tokens: int = Field(ge=1, description="most tokens to finetune on (tokens)")
    optimizer: OptimizerConfig = Field(
        default_factory=lambda: OptimizerConfig(lr=1e-3), description="the optimizer (fresh state)"
    )
    schedule: ScheduleConfig = Field(
        default_factory=lambda: ScheduleConfig(kind="constant", warmup_fraction=0.0), description="the learning-rate schedule"
    )
    global_batch_size: int = Field(16, ge=1, description="sequences per optimizer step (samples)")
    eval_every_tokens: int = Field(50_000, ge=1, description="evaluate every this many tokens (tokens)")
    eval_samples: int = Field(64, ge=1, description="held-out sequences evaluated per source at most (samples)")
    test_fraction: float = Field(
        0.5, gt=0, lt=1,
        description="share of the domain held-out samples set aside as the test split, whose loss is reported; "
        "the rest is the validation split that early stopping watches; split by document (fraction)",
    )
    patience: int = Field(3, ge=1, description="stop after this many evaluations without improvement (evaluations)")
    min_delta: float = Field(
        0.0, ge=0, description="smallest validation-loss drop that counts as improvement (nats)"
    )
    seed: int = Field(0, ge=0, description="seed of the data order (integer)")
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="where to train (one of the literals)")
    tracking: RunTrackingConfig = Field(default_factory=RunTrackingConfig, description="MLflow tracking of the run")


class InterpolateConfig(StrictModel):
    """`spt interpolate`: WiSE-FT, θ(α) = (1 − α)·θ_start + α·θ_end, evaluated for each α."""

    kind: Literal["interpolate"] = Field(description="config kind (literal 'interpolate')")
    start: Location = Field(
        description="run_dir (or model folder) of the α = 0 end, e.g. the pretrained run, local or s3:// (a path)"
    )
    end: Location = Field(
        description="run_dir (or model folder) of the α = 1 end, e.g. the finetuned run, local or s3:// (a path)"
    )
    mix: Location = Field(description="streams spec whose held-out shards are evaluated, local or s3:// (a path)")
    alphas: list[float] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], min_length=1, description="interpolation weights (fractions)"
    )
    eval_samples: int = Field(64, ge=1, description="held-out sequences evaluated per source at most (samples)")
    output: Location = Field(
        description="CSV table written with alpha, domain_loss, general_loss, local or s3:// (a path)"
    )

    @model_validator(mode="after")
    def _alphas_in_range(self):
        bad = [a for a in self.alphas if not 0.0 <= a <= 1.0]
        if bad:
            raise ValueError(f"alphas={bad}: each must be between 0 and 1")
        return self
