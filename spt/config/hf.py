"""A Hugging Face dataset as a corpus input (``hf:``), accepted wherever spt reads documents.

::

    hf: {path: EleutherAI/proof-pile-2, name: arxiv, split: train, text_column: text, revision: main}
    hf: {path: outputs/chempile-saved}                      # a folder written by Dataset.save_to_disk
    hf: {path: json, data_files: [data/docs.jsonl]}        # local json/parquet/csv/text files, read by `datasets`

The dataset is read by `datasets` in the train environment (:mod:`pipelines.hf_datasets`), from the HF cache when
it is there; ``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1`` are honoured (a dataset that is not cached is then
an error, never a download).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from spt.config.loader import StrictModel


class HfDataset(StrictModel):
    """One split of a Hugging Face dataset: where it is, which column holds the text, which the document id."""

    path: str = Field(
        min_length=1,
        description="a hub id (org/name), a local folder written by Dataset.save_to_disk, a local data folder, or "
        "a builder name (json, parquet, csv, text) with data_files (a name or path)",
    )
    name: str | None = Field(None, description="the dataset's configuration (subset) name (a name); None: default")
    split: str = Field(
        "train", min_length=1,
        description="the split read (a split name; slices such as train[:10%] work unless streaming)",
    )
    text_column: str = Field("text", min_length=1, description="column with the document text (a column name)")
    id_column: str | None = Field(
        None,
        description="column with a unique document id (a column name); None: '<split>:<row number>' (the row "
        "number within the split)",
    )
    revision: str | None = Field(
        None, description="hub revision: a branch, tag or commit (a name); None: main. The resolved commit is "
        "recorded and is part of the input's identity",
    )
    data_files: list[str] | dict[str, list[str]] | None = Field(
        None,
        description="data files for a builder name or a hub repository (paths or glob patterns): a list (all in "
        "split 'train') or a mapping from split name to list; local files are identified by content",
    )
    streaming: bool = Field(
        False,
        description="read lazily without preparing a copy in the HF cache (true or false): for sets larger than "
        "the local disk; needs the network on every read of a hub dataset. false: download and prepare once "
        "into the HF cache (memory-mapped Arrow, reused offline)",
    )

    @field_validator("path")
    @classmethod
    def _no_url(cls, value: str) -> str:
        if "://" in value:
            raise ValueError("give a hub id (org/name), a builder name or a local path, not a URL")
        return value

    @field_validator("data_files", mode="before")
    @classmethod
    def _files(cls, value):
        # One rule for the list-or-mapping union, instead of one error per union branch.
        if value is None:
            return value
        if isinstance(value, str):
            value = [value]
        if isinstance(value, dict):
            if not value or not all(isinstance(k, str) and _strings(v) for k, v in value.items()):
                raise ValueError("must map split names to non-empty lists of paths")
            return {k: [v] if isinstance(v, str) else list(v) for k, v in value.items()}
        if not _strings(value):
            raise ValueError("must be a non-empty list of paths, or a mapping from split name to such lists")
        return list(value)

    def label(self) -> str:
        """How messages and manifests name the dataset: ``path[/name]:split``."""
        return f"{self.path}{'/' + self.name if self.name else ''}:{self.split}"


def _strings(value) -> bool:
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, str) and v for v in value)
