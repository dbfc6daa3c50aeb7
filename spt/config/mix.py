"""Config of a declarative data mix (`spt mix plan` / `spt mix build`).

A mix states, per source, the share of all ``total_tokens`` it supplies. A small domain set given a large share
is repeated: its epochs are ``total_tokens * fraction / unique tokens``. The plan shows that before any compute
is spent; the build writes one MDS dataset per source (content-addressed, reused across mixes) and a streams
spec that realizes the asked token counts to within one sample per source.

Rephrasings of the domain set reduce its repetition. A ``domain_synthetic`` source holds them and is accounted
with its domain source: the domain source's ``fraction`` is δ, the share of both together, and its
``synthetic_share`` says how much of δ the rephrasings take::

    - {name: domain, role: domain, paths: [...], fraction: 0.4, synthetic_share: 0.5}   # δ = 0.4
    - {name: domain_rephrased, role: domain_synthetic, paths: [rephrase output]}       # gets 0.4 x 0.5

A sweep varies δ through ``sources[i].fraction`` and, at a fixed δ, the synthetic share through
``sources[i].synthetic_share``.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Literal

from pydantic import Field, field_validator, model_validator

from spt.config.common import Location, RayCpuConfig
from spt.config.hf import HfDataset
from spt.config.loader import StrictModel

#: Two fractions that differ by less than this are equal (YAML decimals such as 0.1 + 0.2 + 0.7).
FRACTION_TOLERANCE = 1e-6
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def exact_fraction(value: float) -> Fraction:
    """The decimal a user wrote (0.3 -> 3/10), not the binary float nearest to it."""
    return Fraction(repr(float(value)))


class MixSource(StrictModel):
    """One source of documents and the share of the mix's tokens it supplies."""

    name: str = Field(min_length=1, description="the source's name: letters, digits, '_', '-', '.' (a name)")
    role: Literal["general", "synthetic", "domain", "domain_synthetic"] = Field(
        description="the part the source plays in specialized pretraining (one of the literals): domain_synthetic "
        "holds rephrasings of a domain source and shares its fraction (see synthetic_share)"
    )
    paths: list[Location] = Field(
        default_factory=list,
        description="parquet or jsonl files, or folders of them, local or s3:// (paths); rows need a `text` "
        "column, and rows with a non-null `error` column (rephrase output) are skipped. Give paths or hf",
    )
    hf: HfDataset | None = Field(
        None,
        description="read the source's documents from a Hugging Face dataset instead of paths; it is written once "
        "as parquet under the mix's cache_dir (hf/), keyed by the dataset's identity",
    )
    fraction: float | Literal["remainder"] = Field(
        "remainder",
        description="share of total_tokens taken from this source (fraction); 'remainder' (the default, "
        "allowed on one source) takes what the others leave; on a domain source with synthetic_share, the share "
        "of the domain and its rephrasings together (δ); not given on domain_synthetic sources",
    )
    synthetic_share: float | None = Field(
        None, ge=0.0, le=1.0,
        description="domain sources only: the share of this source's fraction that its domain_synthetic sources "
        "(rephrasings of it) supply, split evenly among them (fraction); None: no rephrasings",
    )
    rephrases: str | None = Field(
        None,
        description="the name of the source whose documents this source's rows rephrase; rows of documents that "
        "source holds out are held out here too (matched by id). Default for domain_synthetic: the domain source",
    )
    allow_incomplete: bool = Field(
        False,
        description="accept a `spt rephrase` output that is still incomplete: only its committed shards are read, "
        "and the plan says how many work units are missing (true or false)",
    )
    max_epochs: float | None = Field(
        None, gt=0, description="refuse the mix if this source would be repeated more often than this (epochs)"
    )
    heldout_paths: list[Location] | None = Field(
        None, min_length=1, description="files or folders of held-out documents for evaluation (paths)"
    )
    heldout_hf: HfDataset | None = Field(
        None, description="held-out documents for evaluation from a Hugging Face dataset (e.g. its validation split)"
    )
    heldout_fraction: float | None = Field(
        None,
        ge=0.0,
        le=0.5,
        description="share of this source's documents held out for evaluation, chosen by a hash of the seed "
        "and the document (fraction); exclusive with heldout_paths and heldout_hf",
    )

    @field_validator("fraction", mode="before")
    @classmethod
    def _fraction_in_range(cls, value):
        # One rule for the number-or-'remainder' union, instead of one error per union branch.
        if value == "remainder":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number between 0 and 1, or 'remainder'")
        if not 0.0 <= value <= 1.0:
            raise ValueError("must be between 0 and 1")
        return float(value)


class MixBuildOptions(StrictModel):
    """How `spt mix build` tokenizes and writes; none of it changes the tokens, only the shard files' layout."""

    workers: int = Field(2, ge=1, description="concurrent tokenizer tasks in the Ray Data pipeline (workers)")
    batch_documents: int = Field(
        256, ge=1, description="documents per batched encode call in a Ray task (documents)"
    )
    shard_size_bytes: int = Field(
        1 << 26, ge=1 << 12, lt=1 << 32, description="an MDS shard is closed when it would grow past this (bytes)"
    )
    compression: Literal["zstd", "gz"] | None = Field(
        None, description="MDS shard compression, or none (one of the literals)"
    )


class MixConfig(StrictModel):
    """`spt mix plan|build`: a token-exact mix of sources, compiled to MDS shards and a Streaming streams spec."""

    kind: Literal["mix"] = Field(description="config kind (literal 'mix')")
    name: str | None = Field(
        None,
        description="the mix's folder under output_dir/mixes/ (a name); None = 'mix-' and a hash of the mix",
    )
    output_dir: Location = Field(
        description="folder for sources/, mixes/ and the count cache, local or s3:// (a path)"
    )
    tokenizer: Location = Field(
        description="HF tokenizer folder with tokenizer.json, e.g. from `spt tokenizer`, local or s3:// (a path)"
    )
    total_tokens: int = Field(ge=1, description="tokens the whole mix supplies per pass, T (tokens)")
    seq_len: int = Field(2048, ge=2, le=1 << 20, description="length of every packed training sample (tokens)")
    global_batch_size: int = Field(
        16, ge=1, description="sequences per optimizer step; total_tokens must fill at least one batch (samples)"
    )
    seed: int = Field(0, ge=0, description="seed of the held-out split by document hash (integer)")
    sources: list[MixSource] = Field(min_length=1, description="the sources and their token fractions")
    build: MixBuildOptions = Field(default_factory=MixBuildOptions, description="the tokenize-and-write pipeline")
    # No num_gpus: tokenization (HF tokenizers) runs on CPUs only; reserving GPUs would only idle them.
    ray: RayCpuConfig = Field(
        default_factory=RayCpuConfig,
        description="where the build's Ray Data pipeline runs; num_cpus is per tokenizer task",
    )
    cache_dir: Location | None = Field(
        None,
        description="folder of the token-count cache, local or s3:// (a path); None = output_dir/cache",
    )

    @model_validator(mode="after")
    def _consistent(self):
        for problem in _problems(self):
            raise ValueError(problem)
        return self

    def rephrased_source(self, index: int) -> int | None:
        """The index of the source that ``sources[index]`` rephrases (``rephrases``, or for a domain_synthetic
        source without one, the only domain source), or None."""
        source = self.sources[index]
        names = [s.name for s in self.sources]
        if source.rephrases is not None:
            return names.index(source.rephrases) if source.rephrases in names else None
        if source.role == "domain_synthetic":
            domains = [i for i, s in enumerate(self.sources) if s.role == "domain"]
            return domains[0] if len(domains) == 1 else None
        return None

    def synthetic_of(self, index: int) -> list[int]:
        """The domain_synthetic sources that rephrase ``sources[index]``."""
        return [i for i, s in enumerate(self.sources)
                if s.role == "domain_synthetic" and self.rephrased_source(i) == index]

    def resolved_fractions(self) -> list[Fraction]:
        """Each source's exact share of total_tokens, with the remainder filled in and the sum scaled to 1.

        A domain source with ``synthetic_share`` s and fraction δ keeps δ(1 - s); its domain_synthetic sources
        share δ s evenly.
        """
        shares = [Fraction(0) if s.role == "domain_synthetic" or s.fraction == "remainder"
                  else exact_fraction(s.fraction) for s in self.sources]
        rest = max(Fraction(0), 1 - sum(shares, Fraction(0)))
        shares = [rest if s.fraction == "remainder" and s.role != "domain_synthetic" else shares[i]
                  for i, s in enumerate(self.sources)]
        for index, source in enumerate(self.sources):
            synthetic = self.synthetic_of(index)
            if source.role != "domain" or source.synthetic_share is None or not synthetic:
                continue
            delta, share = shares[index], exact_fraction(source.synthetic_share)
            shares[index] = delta * (1 - share)
            for other in synthetic:
                shares[other] = delta * share / len(synthetic)
        total = sum(shares, Fraction(0))
        return [share / total for share in shares] if total else shares


def _label(index: int, source: MixSource) -> str:
    return f"sources[{index}] {source.name!r}"


def _rephrasing_problems(config: MixConfig):
    """The rules that tie rephrased sources to the sources they rephrase."""
    names = [s.name for s in config.sources]
    bad_links = False
    for index, source in enumerate(config.sources):  # first: the other rules follow these links
        if source.rephrases is not None and source.rephrases not in names:
            bad_links = True
            yield f"{_label(index, source)}: rephrases={source.rephrases!r}: no such source ({', '.join(names)})"
        elif source.rephrases == source.name:
            bad_links = True
            yield f"{_label(index, source)}: a source cannot rephrase itself"
    if bad_links:
        return
    for index, source in enumerate(config.sources):
        label = _label(index, source)
        if source.synthetic_share is not None and source.role != "domain":
            yield f"{label}: synthetic_share is for domain sources (role domain), this one is {source.role}"
        if source.role == "domain" and source.synthetic_share is not None and not config.synthetic_of(index):
            yield f"{label}: synthetic_share={source.synthetic_share:g} but no domain_synthetic source rephrases it"
        if source.role == "domain" and source.synthetic_share is not None and source.fraction == "remainder":
            yield f"{label}: a domain source with synthetic_share needs a fraction (δ), not the remainder"
        if source.role != "domain_synthetic":
            continue
        target = config.rephrased_source(index)
        if target is None:
            yield f"{label}: role domain_synthetic needs rephrases: <a domain source> (there is not exactly one)"
        elif config.sources[target].role != "domain":
            yield f"{label}: rephrases {config.sources[target].name!r}, which is not a domain source"
        elif config.sources[target].synthetic_share is None:
            yield (f"{label}: its share comes from the domain source: set sources[{target}].synthetic_share "
                   "(the share of its fraction δ the rephrasings take)")
        if "fraction" in source.model_fields_set:
            yield f"{label}: a domain_synthetic source takes no fraction; it gets δ x synthetic_share of its domain"


def _problems(config: MixConfig):
    """Cross-field rules, first problem first (the formatter prefixes each with ``mix:``)."""
    if config.name is not None and not _NAME.match(config.name):
        yield f"name={config.name!r} must be a folder name: letters, digits, '_', '-', '.'"
    seen: dict[str, int] = {}
    for index, source in enumerate(config.sources):
        if not _NAME.match(source.name):
            yield f"{_label(index, source)}: name must be letters, digits, '_', '-', '.'"
        if source.name in seen:
            yield f"source name {source.name!r} is used by sources[{seen[source.name]}] and sources[{index}]"
        seen.setdefault(source.name, index)
        if bool(source.paths) == (source.hf is not None):
            yield f"{_label(index, source)}: give paths or hf" + (", not both" if source.paths else "")
        heldout = [n for n in ("heldout_paths", "heldout_hf", "heldout_fraction") if getattr(source, n) is not None]
        if len(heldout) == 2:
            yield f"{_label(index, source)}: give {heldout[0]} or {heldout[1]}, not both"
        elif len(heldout) == 3:
            yield f"{_label(index, source)}: give only one of {', '.join(heldout)}"
    yield from _rephrasing_problems(config)
    remainder = [i for i, s in enumerate(config.sources) if s.fraction == "remainder" and s.role != "domain_synthetic"]
    if len(remainder) > 1:
        named = ", ".join(f"sources[{i}]" for i in remainder)
        yield f"only one source may take the remainder; {named} give no fraction"
    fixed = sum((exact_fraction(s.fraction) for s in config.sources
                 if s.fraction != "remainder" and s.role != "domain_synthetic"), Fraction(0))
    if remainder and fixed > 1 + FRACTION_TOLERANCE:
        yield (
            f"fractions sum to {float(fixed):.6g} before the remainder source sources[{remainder[0]}], "
            "expected at most 1"
        )
    if not remainder and abs(fixed - 1) > FRACTION_TOLERANCE:
        yield f"fractions sum to {float(fixed):.6g}, expected 1"
    batch_tokens = config.global_batch_size * config.seq_len
    if config.total_tokens < batch_tokens:
        yield (
            f"total_tokens={config.total_tokens} is less than one batch of {batch_tokens} tokens "
            f"(global_batch_size={config.global_batch_size} x seq_len={config.seq_len})"
        )
