"""Config sections and field types shared by several kinds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from spt.config.loader import StrictModel
from spt.storage import scheme_problem


def _supported_location(value: str) -> str:
    problem = scheme_problem(value)
    if problem:
        raise ValueError(problem)
    return value


#: A local path or an ``s3://bucket/prefix`` URL; other schemes are refused when the config loads.
Location = Annotated[str, AfterValidator(_supported_location)]


class RayCpuConfig(StrictModel):
    """Where a CPU-only stage runs on Ray and with which interpreter (the stage's environment)."""

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


class RayRuntimeConfig(RayCpuConfig):
    """Where a stage that may use GPUs runs on Ray: as :class:`RayCpuConfig`, plus GPUs per worker."""

    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per worker (GPUs)")


Environment = Literal["train", "generate"]
