"""The ``tracking`` section of train, finetune and sweep configs: MLflow runs with params, metrics and artifacts."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from spt.config.loader import StrictModel


class TrackingConfig(StrictModel):
    """Where runs are tracked with MLflow. By default a local SQLite store beside the outputs, opened with
    ``mlflow ui --backend-store-uri sqlite:///<run_dir or output_dir>/mlflow.db``."""

    enabled: bool = Field(True, description="log runs to MLflow (a switch)")
    uri: str | None = Field(
        None,
        description="MLflow tracking URI: a server (http://host:5000), sqlite:///path.db, or a local path (a .db "
        "file, or a folder that gets mlflow.db) (a URI or path); None = <run_dir>/mlflow.db (sweeps: "
        "<output_dir>/mlflow.db), a SQLite store beside the outputs with artifacts in mlartifacts/ next to it; "
        "on an s3:// run_dir or output_dir without a uri, tracking is off (the store is a local file)",
    )
    experiment: str | None = Field(
        None, min_length=1, description="MLflow experiment (a name); None = 'spt' for runs, the sweep's name for sweeps"
    )

    @field_validator("uri")
    @classmethod
    def _no_s3_store(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("s3://"):
            raise ValueError("an MLflow tracking store cannot be on s3://; name a server (http://...) or a local "
                             "folder (artifacts of a server may live on S3)")
        return value


class RunTrackingConfig(TrackingConfig):
    """Tracking of one train or finetune run: as :class:`TrackingConfig`, plus the MLflow run to continue."""

    run_id: str | None = Field(
        None,
        description="an existing MLflow run to log into (a 32-hex-digit id); set by `spt sweep` for its cells. "
        "None = the run recorded in run_dir (a resumed run continues it), else a new one",
    )

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{32}", value):
            raise ValueError("an MLflow run id is 32 hexadecimal digits")
        return value
