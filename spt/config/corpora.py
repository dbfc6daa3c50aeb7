"""Configs for the offline sample corpora and the tokenizer trainer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from spt.config.common import Location
from spt.config.hf import HfDataset
from spt.config.loader import StrictModel


class CorpusLimits(StrictModel):
    """Input, size and filtering of one sample corpus."""

    max_documents: int = Field(2000, ge=1, description="documents kept at most, after filtering (documents)")
    max_bytes: int = Field(20_000_000, ge=1, description="UTF-8 bytes kept at most over all documents (bytes)")
    min_chars: int = Field(200, ge=1, description="shortest document kept (characters)")
    max_chars: int = Field(20_000, ge=1, description="longer documents are cut at a line break below this (characters)")
    hf: HfDataset | None = Field(
        None,
        description="read this corpus from a Hugging Face dataset instead of text on this machine; documents are "
        "taken in the dataset's order until the limits are reached (no content filter), split by a hash of "
        "(seed, document id)",
    )

    @model_validator(mode="after")
    def _chars_in_order(self):
        # Else every document is dropped and an empty domain set is written with exit 0 (issue 24, finding 8).
        if self.max_chars < self.min_chars:
            raise ValueError(f"max_chars={self.max_chars} is below min_chars={self.min_chars}")
        return self


class CorporaConfig(StrictModel):
    """`spt corpora`: builds a domain corpus and a general corpus: by default Python source and English prose from
    text on this machine, or, per side, documents of a Hugging Face dataset (``domain.hf``, ``general.hf``)."""

    kind: Literal["corpora"] = Field(description="config kind (literal 'corpora')")
    output_dir: Location = Field(
        description="folder that receives domain/ and general/ parquet files, local or s3:// (a path)"
    )
    seed: int = Field(0, ge=0, description="seed of the document shuffle and the held-out split (integer)")
    heldout_fraction: float = Field(
        0.05, ge=0.0, le=0.5, description="share of documents put in the held-out split (fraction)"
    )
    domain: CorpusLimits = Field(default_factory=CorpusLimits, description="the domain corpus: Python source, or `hf`")
    general: CorpusLimits = Field(
        default_factory=lambda: CorpusLimits(min_chars=300),
        description="the general corpus: English package descriptions and docstrings, or `hf`",
    )


class TokenizerConfig(StrictModel):
    """`spt tokenizer`: trains a byte-level BPE tokenizer, or names an existing HF tokenizer folder."""

    kind: Literal["tokenizer"] = Field(description="config kind (literal 'tokenizer')")
    inputs: list[Location] = Field(
        min_length=1, description="parquet files or folders of them with a `text` column, local or s3:// (paths)"
    )
    output_dir: Location = Field(
        description="folder the tokenizer is saved to, loadable by AutoTokenizer when local; or s3:// (a path)"
    )
    vocab_size: int = Field(4096, ge=300, le=1_000_000, description="vocabulary size including special tokens (tokens)")
    min_frequency: int = Field(2, ge=1, description="pairs seen fewer times are not merged (occurrences)")
    max_documents: int | None = Field(None, ge=1, description="train on at most this many documents (documents)")
    eos_token: str = Field("<|endoftext|>", min_length=1, description="end-of-document token (a string)")
    pad_token: str = Field("<|pad|>", min_length=1, description="padding token (a string)")
    model_max_length: int = Field(2048, ge=1, description="longest sequence the tokenizer advertises (tokens)")
