"""Configs for synthetic rephrasing (`spt rephrase`, kind ``rephrase``) and its style library (kind ``styles``).

A style library is its own YAML file (``configs/rephrase/styles.yaml``)::

    kind: styles
    styles:
      wiki:
        description: rewrite as a neutral encyclopedia article
        template: "Rewrite the following text in the style of Wikipedia ...\\n\\n{text}"
        max_output_tokens: 512
        min_length_ratio: 0.3           # output tokens / input tokens below this: rejected after generation
        max_length_ratio: 3.0

Templates are Python format strings: ``{text}`` (required) is the chunk, ``{num_words}`` its word count; literal
braces are written ``{{`` and ``}}``. Users add a style by adding an entry; no code changes.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from spt.config.common import Location, RayRuntimeConfig
from spt.config.loader import ConfigError, StrictModel, read_yaml, validate
from spt.config.rephrase_input import RephraseInput
from spt.environments import repo_root

#: Placeholders a style template may use, and what they are filled with.
PLACEHOLDERS = {"text": "the chunk of the source document", "num_words": "the chunk's word count"}
_STYLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def template_problem(template: str) -> str | None:
    """Why a style template is unusable (malformed, unknown placeholder, no ``{text}``), or None."""
    allowed = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
    try:
        fields = [(name, conv, spec) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"malformed template: {exc} (write literal braces as {{{{ and }}}})"
    for name, conv, spec in fields:
        if name not in PLACEHOLDERS:
            shown = "{}" if name == "" else f"{{{name}}}"
            return f"unknown placeholder {shown} (allowed: {allowed})"
        if conv or spec:
            return f"placeholder {{{name}}} takes no conversion or format spec"
    if "text" not in {name for name, _, _ in fields}:
        return "must contain the placeholder {text}"
    return None


def _check_styles(styles: dict, where: str) -> list[str]:
    problems = []
    for name, style in styles.items():
        if not _STYLE_NAME.match(name):
            problems.append(f"{where}.{name}: style names are lowercase letters, digits and _ (at most 40)")
        problem = template_problem(style.template)
        if problem:
            problems.append(f"{where}.{name}.template: {problem}")
        if style.max_input_tokens is not None and style.min_input_tokens > style.max_input_tokens:
            problems.append(
                f"{where}.{name}: min_input_tokens={style.min_input_tokens} is above "
                f"max_input_tokens={style.max_input_tokens}"
            )
        if style.min_length_ratio > style.max_length_ratio:
            problems.append(
                f"{where}.{name}: min_length_ratio={style.min_length_ratio:g} is above "
                f"max_length_ratio={style.max_length_ratio:g}"
            )
    return problems


class StyleSpec(StrictModel):
    """One rephrasing style: the prompt and its token limits."""

    description: str = Field(description="what the style produces, for people reading the library (text)")
    system: str | None = Field(
        None, description="system message sent before the prompt (text); None: the model's default"
    )
    template: str = Field(
        description="the user prompt, a format string with {text} and optionally {num_words} (text)"
    )
    max_output_tokens: int = Field(512, ge=1, description="longest generation for this style (tokens)")
    max_input_tokens: int | None = Field(
        None, ge=16, description="chunks are cut to this length for this style (tokens); None: the chunk size"
    )
    min_input_tokens: int = Field(0, ge=0, description="chunks shorter than this skip this style (tokens)")
    min_length_ratio: float = Field(
        0.1, ge=0, description="quality gate: output tokens / input chunk tokens below this rejects the row (ratio)"
    )
    max_length_ratio: float = Field(
        5.0, gt=0, description="quality gate: output tokens / input chunk tokens above this rejects the row (ratio)"
    )


class StyleLibrary(StrictModel):
    """A style library file (``kind: styles``): named styles that rephrase configs choose from by weight."""

    kind: Literal["styles"] = Field(description="config kind (literal 'styles')")
    styles: dict[str, StyleSpec] = Field(min_length=1, description="styles by name (a mapping)")

    @model_validator(mode="after")
    def _templates(self):
        problems = _check_styles(self.styles, "styles")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class RephraseFilter(StrictModel):
    """Seed-quality rules (after Gopher's heuristics): a document failing any rule is skipped and counted."""

    enabled: bool = Field(True, description="apply the rules below (true or false)")
    min_chars: int = Field(200, ge=0, description="shorter documents are skipped (characters)")
    max_chars: int | None = Field(None, ge=1, description="longer documents are skipped (characters); None: no limit")
    min_words: int = Field(30, ge=0, description="documents with fewer words are skipped (words)")
    min_mean_word_length: float = Field(3.0, ge=0, description="lower bound of the mean word length (characters)")
    max_mean_word_length: float = Field(10.0, gt=0, description="upper bound of the mean word length (characters)")
    min_alpha_word_fraction: float = Field(
        0.7, ge=0, le=1, description="share of words that must contain a letter (fraction)"
    )
    max_symbol_fraction: float = Field(
        0.2, ge=0, le=1,
        description="largest share of characters that are neither letters, digits nor spaces (fraction)",
    )
    max_duplicate_line_fraction: float = Field(
        0.3, ge=0, le=1, description="largest share of non-empty lines that repeat an earlier line (fraction)"
    )


#: The phrases that open a refusal or a reply about the request instead of the rewrite (case-insensitive regexes,
#: matched at the start of the output).
REFUSAL_PATTERNS = [
    r"i(?:'|’| a)?m sorry", r"sorry,", r"i apologi[sz]e", r"i (?:can(?:'|’)?t|cannot|can not)\b",
    r"i(?:'|’| a)?m (?:unable|not able)", r"as an ai\b", r"as a language model", r"unfortunately,? i\b",
]


class RephraseQuality(StrictModel):
    """The quality gate after generation (as BeyondWeb and Nemotron-CC filter synthetic text). A failing row is
    kept in the output with its ``rejected`` reason, counted per style and reason, and never trained on."""

    enabled: bool = Field(True, description="apply the gate (true or false); false: no row is rejected")
    language: str | None = Field(
        "source",
        description="'source': the output's language must be the source chunk's, both identified offline by "
        "langid; a language code (e.g. 'en'): the output must be in it (use this for code or other text whose "
        "language cannot be identified); None: no language check",
    )
    min_language_words: int = Field(
        8, ge=1, description="outputs with fewer words skip the language check: too short to identify (words)"
    )
    min_language_confidence: float = Field(
        0.9, ge=0, le=1,
        description="a language identified with a lower probability counts as unknown, not compared (probability)",
    )
    ngram_words: int = Field(4, ge=1, description="length of the word n-grams the repetition rule counts (words)")
    max_duplicate_ngram_share: float = Field(
        0.35, ge=0, le=1,
        description="largest share of an output's word n-grams that repeat an earlier n-gram of it (fraction)",
    )
    refusal_patterns: list[str] = Field(
        default_factory=lambda: list(REFUSAL_PATTERNS),
        description="an output starting with one of these case-insensitive regexes is a refusal (regexes)",
    )

    @model_validator(mode="after")
    def _patterns(self):
        if self.language is not None and self.language != "source" and not re.fullmatch(r"[a-z]{2,3}", self.language):
            raise ValueError(f"language={self.language!r}: must be 'source', a language code such as 'en', or null")
        for index, pattern in enumerate(self.refusal_patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"refusal_patterns[{index}]={pattern!r}: not a regex ({exc})") from None
        return self


class RephraseChunking(StrictModel):
    """Token-aware chunking with the rephraser's own tokenizer."""

    max_tokens: int = Field(512, ge=16, description="chunk length at most (tokens of the rephraser)")
    max_chunks_per_document: int = Field(
        8, ge=1, description="chunks kept per document; the rest of a longer document is dropped and counted (chunks)"
    )
    long_documents: Literal["split", "truncate"] = Field(
        "split",
        description="a document longer than max_tokens is split into chunks, or truncated to its first chunk "
        "(one of the literals)",
    )


class RephraseStyles(StrictModel):
    """Which styles to use and how often: a weighted draw of styles per document."""

    library: str | None = Field(
        "configs/rephrase/styles.yaml",
        description="style library YAML (a path; relative to the working directory, then the repository)",
    )
    inline: dict[str, StyleSpec] = Field(
        default_factory=dict, description="extra styles defined here; they override library styles of the same name"
    )
    weights: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="relative weight per style name (unitless); empty: every style with weight 1; unlisted: unused",
    )
    per_document: int = Field(
        2, ge=1, description="styles drawn per document by weight, without replacement (styles)"
    )


class RephraseEngine(StrictModel):
    """The vLLM engine and how Ray places it."""

    model: str = Field(
        ".spt/models/SmolLM2-135M-Instruct",
        description="model folder (a path; relative to the working directory, then the repository) or a hub id",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="weight and activation dtype (one of the literals); auto: bfloat16 on GPUs and on CPUs with "
        "avx512_bf16 or amx_bf16, float32 on other CPUs (3x faster there than emulated bfloat16)",
    )
    max_model_len: int = Field(2048, ge=64, description="context length: prompt plus output (tokens)")
    batch_size: int = Field(32, ge=1, description="rows handed to the engine per call (rows)")
    concurrent_batches: int = Field(
        4, ge=1, description="batches in one replica at once, so a batch's slowest row never idles it (batches)"
    )
    concurrency: int = Field(1, ge=1, description="engine replicas, one Ray actor each (replicas)")
    tensor_parallel_size: int = Field(1, ge=1, description="devices one replica spans (devices)")
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="where engines run (one of the literals); auto: GPUs when the Ray cluster has them"
    )
    enforce_eager: bool = Field(True, description="skip graph capture/compilation, faster start (true or false)")
    cpu_kv_cache_gib: int = Field(2, ge=1, description="KV cache of the CPU build, VLLM_CPU_KVCACHE_SPACE (GiB)")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="share of GPU memory vLLM may take on GPUs (fraction)"
    )
    use_chat_template: bool = Field(
        True, description="wrap prompts in the model's chat template (true or false); false for base models"
    )


class RephraseSampling(StrictModel):
    """Sampling, shared by all styles (each style caps max_tokens with its own max_output_tokens)."""

    temperature: float = Field(0.7, ge=0, le=5, description="sampling temperature (unitless); 0 is greedy")
    top_p: float = Field(0.9, gt=0, le=1, description="nucleus sampling mass (fraction)")
    max_tokens: int = Field(512, ge=1, description="output length cap for every style (tokens)")
    repetition_penalty: float = Field(1.1, gt=0, le=2, description="penalty on repeated tokens (unitless); 1 is none")
    seed: int = Field(0, ge=0, description="the engine's random seed, per run (integer)")


class RephraseOutput(StrictModel):
    """Where rows go: parquet shards plus manifest.json, committed exactly once per input shard."""

    dir: Location = Field(description="output folder, local, a shared file system, or s3:// (a path)")
    documents_per_shard: int = Field(
        64, ge=1, description="input documents per work unit; each unit commits one part-*.parquet (documents)"
    )
    keep_original: bool = Field(False, description="add the source chunk as column `original` (true or false)")


class RephraseConfig(StrictModel):
    """`spt rephrase`: rephrase seed documents into many styles with vLLM on Ray Data."""

    kind: Literal["rephrase"] = Field(description="config kind (literal 'rephrase')")
    seed: int = Field(0, ge=0, description="seed of document sampling and style draws (integer)")
    input: RephraseInput = Field(description="the seed documents")
    filter: RephraseFilter = Field(default_factory=RephraseFilter, description="the seed-quality rules")
    chunking: RephraseChunking = Field(default_factory=RephraseChunking, description="the token-aware chunking")
    styles: RephraseStyles = Field(default_factory=RephraseStyles, description="the style library and weights")
    engine: RephraseEngine = Field(default_factory=RephraseEngine, description="the vLLM engine")
    sampling: RephraseSampling = Field(default_factory=RephraseSampling, description="the sampling parameters")
    quality: RephraseQuality = Field(
        default_factory=RephraseQuality, description="the quality gate applied to every generated row"
    )
    output: RephraseOutput = Field(description="the output folder and shard size")
    ray: RayRuntimeConfig = Field(default_factory=RayRuntimeConfig, description="the Ray cluster and worker settings")

    @model_validator(mode="after")
    def _cross_field_rules(self):
        # Root-level, so each message reads `rephrase: <path>: <rule>` without echoing whole sections.
        problems = _check_styles(self.styles.inline, "styles.inline")
        if self.styles.weights and not any(w > 0 for w in self.styles.weights.values()):
            problems.append("styles.weights: at least one style needs a positive weight")
        if self.styles.library is None and not self.styles.inline:
            problems.append("styles: no styles (set styles.library or styles.inline)")
        rules = self.filter
        if rules.max_chars is not None and rules.max_chars < rules.min_chars:
            problems.append(f"filter.max_chars={rules.max_chars} is below filter.min_chars={rules.min_chars}")
        if rules.max_mean_word_length < rules.min_mean_word_length:
            problems.append("filter.max_mean_word_length is below filter.min_mean_word_length")
        if self.chunking.max_tokens >= self.engine.max_model_len:
            problems.append(
                f"chunking.max_tokens={self.chunking.max_tokens} leaves no room for the prompt and output in "
                f"engine.max_model_len={self.engine.max_model_len}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def resolve_repo_path(path: str) -> Path:
    """A relative path as given from the working directory if it exists there, else from the repository."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate.resolve()
    in_repo = repo_root() / candidate
    return in_repo.resolve() if in_repo.exists() else candidate.resolve()


def load_style_library(path: str | Path) -> StyleLibrary:
    """Loads and validates a style library; problems are prefixed with the file's path."""
    try:
        data = read_yaml(path)
        if data.get("kind") not in (None, "styles"):  # any other kind, known or not, is the wrong file
            raise ConfigError([f"kind={data['kind']!r}: this command expects a 'styles' config"])
        return validate(data, {"styles": StyleLibrary}, expected_kind="styles")
    except ConfigError as exc:
        raise ConfigError([p if p.startswith(str(path)) else f"{path}: {p}" for p in exc.problems]) from None


def resolve_styles(config: RephraseConfig) -> tuple[dict[str, StyleSpec], dict[str, float]]:
    """The styles in use and their weights: library styles, overridden/extended by inline ones.

    Raises:
        ConfigError: unknown style names in weights, too few styles for ``per_document``, or a style whose
            token budget cannot fit ``engine.max_model_len``.
    """
    section = config.styles
    styles: dict[str, StyleSpec] = {}
    if section.library is not None:
        styles.update(load_style_library(resolve_repo_path(section.library)).styles)
    styles.update(section.inline)
    weights = dict(section.weights) if section.weights else {name: 1.0 for name in styles}
    problems = [
        f"rephrase.styles.weights.{name}: unknown style (known: {', '.join(sorted(styles))})"
        for name in weights
        if name not in styles
    ]
    active = {name: w for name, w in weights.items() if w > 0 and name in styles}
    if not problems and section.per_document > len(active):
        problems.append(
            f"rephrase.styles.per_document={section.per_document}: only {len(active)} styles have a positive weight"
        )
    for name in active:
        style = styles[name]
        input_tokens = min(style.max_input_tokens or config.chunking.max_tokens, config.chunking.max_tokens)
        output_tokens = min(style.max_output_tokens, config.sampling.max_tokens)
        if input_tokens + output_tokens >= config.engine.max_model_len:
            problems.append(
                f"rephrase.styles: style {name!r} needs {input_tokens} input + {output_tokens} output tokens, "
                f"more than engine.max_model_len={config.engine.max_model_len} (lower chunking.max_tokens or "
                "the style's max_output_tokens)"
            )
    if problems:
        raise ConfigError(problems)
    return {name: styles[name] for name in sorted(active)}, {name: active[name] for name in sorted(active)}
