"""Config of a sweep (`spt sweep`): a grid of domain fractions δ, model presets, token budgets and seeds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from spt.config.common import Location
from spt.config.loader import StrictModel
from spt.config.tracking import TrackingConfig


class SweepRepeat(StrictModel):
    """Extra cells that repeat one δ with more seeds (every preset and budget): the seed-to-seed noise floor."""

    domain_fraction: float = Field(ge=0, le=1, description="the δ repeated (fraction)")
    seed: list[int] = Field(min_length=1, description="the extra seeds (integers)")


class SweepGrid(StrictModel):
    """The grid; every combination is one cell (one mix, one training run, optionally one finetune)."""

    domain_fraction: list[float] = Field(min_length=1, description="values of δ, the domain share of tokens (fractions)")
    preset: list[str] | None = Field(None, min_length=1, description="model presets (names); None = the train config's")
    total_tokens: list[int] | None = Field(
        None, min_length=1, description="pretraining budgets T (tokens); None = the mix config's total_tokens"
    )
    seed: list[int] = Field(default_factory=lambda: [0], min_length=1, description="training seeds (integers)")
    synthetic_share: list[float] | None = Field(
        None, min_length=1,
        description="shares of δ taken by rephrasings of the domain source (fractions): each cell sets the domain "
        "source's synthetic_share; the mix needs a domain_synthetic source. None = the mix config's",
    )
    repeat: SweepRepeat | None = Field(
        None, description="more seeds at one δ only, on top of the grid (None: no extra cells)"
    )

    @field_validator("domain_fraction", "synthetic_share")
    @classmethod
    def _fractions(cls, values: list[float] | None) -> list[float] | None:
        if values is None:
            return values
        bad = [v for v in values if not 0.0 <= v <= 1.0]
        if bad:
            raise ValueError(f"each must be between 0 and 1, got {bad}")
        if len(set(values)) != len(values):
            raise ValueError("values must be distinct")
        return values

    @field_validator("total_tokens")
    @classmethod
    def _positive(cls, values: list[int] | None) -> list[int] | None:
        if values is not None and any(v < 1 for v in values):
            raise ValueError("each must be >= 1")
        return values


class SweepResources(StrictModel):
    """What one cell asks Ray for."""

    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per cell (CPUs)")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per cell (GPUs)")


class SweepConfig(StrictModel):
    """`spt sweep`: train every cell of a grid on Ray and collect one tidy results table."""

    kind: Literal["sweep"] = Field(description="config kind (literal 'sweep')")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="the sweep's name (a name)")
    mix: str = Field(description="base mix config; its sources must already build (a path to a local YAML file)")
    train: str = Field(
        description="base train config; mix and run_dir are set per cell (a path to a local YAML file)"
    )
    finetune: str | None = Field(
        None, description="finetune config run after each cell's training; base_run is set per cell (a path to a "
        "local YAML file)"
    )
    finetune_at: list[float] | None = Field(
        None, min_length=1,
        description="also finetune each cell from its model after these shares of its budget (fractions in (0, 1]): "
        "the cell's run exports those snapshots (train snapshot_tokens, rounded down to whole batches; the train "
        "config's schedule must be constant) and each is finetuned into cells/<id>/finetune-T<tokens>/; the final "
        "model is finetuned as without it. Needs finetune. None = the final model only",
    )
    domain_source: str = Field("domain", description="the mix source whose fraction is δ (a source name)")
    grid: SweepGrid = Field(description="the grid of cells")
    output_dir: Location = Field(
        description="folder for cells/, results.csv|parquet and curves.csv|parquet, local or s3:// (a path); "
        "spt owns it: cells that ran with another config are refused unless --force"
    )
    resources: SweepResources = Field(default_factory=SweepResources, description="the resources of one cell")
    max_concurrent: int = Field(1, ge=1, description="cells running at once at most (cells)")
    max_retries: int = Field(0, ge=0, description="retries of a cell that crashed; bad input is not retried (retries)")
    address: str | None = Field(None, description="Ray address; None = the job's cluster or a local Ray (an address)")
    on_failure: Literal["continue", "stop"] = Field(
        "continue", description="what a failed cell does to the others (one of the literals)"
    )
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig,
        description="MLflow tracking: one parent run for the sweep, a child run per cell (cells log into the "
        "sweep's store and experiment, whatever their base train config says)",
    )

    @field_validator("finetune_at")
    @classmethod
    def _shares(cls, values: list[float] | None) -> list[float] | None:
        if values is None:
            return values
        bad = [v for v in values if not 0.0 < v <= 1.0]
        if bad:
            raise ValueError(f"each must be in (0, 1], got {bad}")
        if len(set(values)) != len(values):
            raise ValueError("values must be distinct")
        return values

    @model_validator(mode="after")
    def _finetune_at_needs_a_finetune(self):
        if self.finetune_at and not self.finetune:
            raise ValueError(f"finetune_at={self.finetune_at}: needs a finetune config (finetune: PATH) to run")
        return self

    @field_validator("mix", "train", "finetune")
    @classmethod
    def _local_file(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            raise ValueError("base configs are read from local files (outputs may be on s3://)")
        return value
