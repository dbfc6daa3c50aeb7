"""Config sections shared by several kinds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from spt.config.loader import StrictModel


class RayRuntimeConfig(StrictModel):
    """Where a stage runs on Ray and with which interpreter (the stage's environment)."""

    address: str | None = Field(
        None, description="Ray address (`auto`, `ray://host:10001`, `http://host:8265`); None starts a local Ray"
    )
    py_executable: str | None = Field(
        None,
        description="path of the Python interpreter for this stage's Ray workers on the cluster (a path); "
        "None uses the local environment built by scripts/setup.sh",
    )
    env_vars: dict[str, str] = Field(default_factory=dict, description="environment variables for the workers (strings)")
    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per worker (CPUs)")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per worker (GPUs)")


Environment = Literal["train", "generate"]
