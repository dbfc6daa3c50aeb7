"""Where `spt rephrase` takes its seed documents from: files (``paths``) or a Hugging Face dataset (``hf``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from spt.config.common import Location
from spt.config.hf import HfDataset
from spt.config.loader import StrictModel


class RephraseInput(StrictModel):
    """Where the seed documents come from: files (``paths``) or a Hugging Face dataset (``hf``)."""

    hf: HfDataset | None = Field(
        None,
        description="read the documents from a Hugging Face dataset instead of paths: the train environment writes "
        "it once as parquet (columns id, text) under cache_dir and hands that to the generate stage",
    )
    paths: list[Location] = Field(
        default_factory=list, validate_default=True,
        description="parquet/jsonl files, folders of them, or a saved HF dataset folder; local or s3:// (paths); "
        "S3 settings come from $S3_ENDPOINT_URL and the AWS environment. Give paths or hf",
    )
    heldout_hf: HfDataset | None = Field(
        None, description="with hf: documents held out of the original corpus, from a Hugging Face dataset (e.g. "
        "its validation split); their rephrasings are never trained on"
    )
    cache_dir: Location | None = Field(
        None,
        description="folder for hf and heldout_hf datasets written as parquet, content-addressed and reused, local "
        "or s3:// (a path; on a Ray cluster, one the workers can read); None: $SPT_CACHE_DIR/hf, default "
        "<tmp>/spt-cache/hf",
    )
    format: Literal["auto", "parquet", "jsonl", "hf"] = Field(
        "auto", description="file format (one of the literals); auto: by file extension and folder contents"
    )
    id_column: str | None = Field(
        "id", description="column with a unique document id (a column name); None: ids are file:row"
    )
    text_column: str = Field("text", min_length=1, description="column with the document text (a column name)")
    hf_split: str = Field("train", min_length=1, description="split read from a saved HF DatasetDict (a split name)")
    max_documents: int | None = Field(
        None, ge=1, description="read at most this many documents, in input order (documents)"
    )
    sample_fraction: float = Field(
        1.0, gt=0, le=1, description="keep a document when a hash of (seed, id) falls below this (fraction)"
    )
    heldout_paths: list[Location] = Field(
        default_factory=list,
        description="files or folders of documents held out of the original corpus (paths); their rephrasings are "
        "written with split=heldout and never trained on. `paths` must hold training documents only",
    )

    @field_validator("paths")
    @classmethod
    def _paths_or_hf(cls, value: list, info: ValidationInfo) -> list:
        if not value and info.data.get("hf") is None:
            raise ValueError("must not be empty")
        if value and info.data.get("hf") is not None:
            raise ValueError("give paths or hf, not both")
        return value

    @model_validator(mode="after")
    def _heldout_like_training(self):
        # Both are handed to the generate stage as parquet with the columns id and text, or both are files.
        if self.hf is not None and self.heldout_paths:
            raise ValueError("with hf, give the held-out documents as heldout_hf (not heldout_paths)")
        if self.heldout_hf is not None and self.hf is None:
            raise ValueError("heldout_hf goes with hf (with paths, give heldout_paths)")
        return self
