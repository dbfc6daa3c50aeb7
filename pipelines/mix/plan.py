"""The token plan of a mix: what a config means in tokens, samples and epochs, checked before anything is built.

Per source i with share f_i of T = total_tokens and L = seq_len: the asked tokens are ``f_i * T``; the mix has
``N = T // L`` samples, split by largest remainder so each source gets ``floor`` or ``ceil`` of ``f_i * T / L``
samples and realizes its asked tokens to within one sample. A source's unique samples are its packed training
tokens ``// L``; its epochs are samples / unique samples, which is also realized tokens / unique tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from pipelines.hf_datasets import materialize, open_dataset
from pipelines.mix.documents import InputFile, SplitRule, rephrase_status, resolve_inputs
from pipelines.mix.heldout import heldout_ids
from pipelines.mix.layout import MixLayout
from pipelines.mix.tokens import (
    FORMAT_VERSION, CountCache, SourceCounts, TokenizerInfo, TokenizeStage, count_files, tokenizer_info,
)
from spt import storage
from spt.config.mix import MixConfig, MixSource
from spt.errors import InputError
from spt.storage import sha256_json

_MISSING = ("no such file or folder", "folder has no .parquet or .jsonl files")


@dataclass
class SourcePlan:
    """One source's inputs, identity and numbers in the plan."""

    index: int
    config: MixSource
    fraction: Fraction
    files: list[tuple[InputFile, SplitRule]] = field(default_factory=list)
    count_key: str = ""
    dir_name: str = ""
    counts: SourceCounts | None = None
    counts_from: str = ""  # "source" (a built source), "cache", or "tokenized" (counted now)
    left_out: str | None = None  # why a fraction-0 source without data is not part of the mix
    samples: int = 0
    units_missing: int = 0  # work units an incomplete rephrase output (allow_incomplete) has not committed yet
    heldout_ids: frozenset = frozenset()  # documents held out of the source this one rephrases
    hf: dict = field(default_factory=dict)  # per `hf`/`heldout_hf` field: the dataset's identity and parquet folder

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def label(self) -> str:
        return f"mix.sources[{self.index}] {self.name!r}"


@dataclass
class MixPlan:
    """The resolved mix: every source's plan, the tokenizer, and where things go."""

    config: MixConfig
    tokenizer: TokenizerInfo
    sources: list[SourcePlan]
    name: str = ""
    tokenized_documents: int = 0
    layout: MixLayout | None = None

    @property
    def seq_len(self) -> int:
        return self.config.seq_len

    @property
    def total_samples(self) -> int:
        return self.config.total_tokens // self.config.seq_len

    def used(self) -> list[SourcePlan]:
        """Sources that are part of the mix (every source but fraction-0 ones without data)."""
        return [s for s in self.sources if s.left_out is None]

    def unique_samples(self, source: SourcePlan, split: str = "train") -> int:
        return source.counts.tokens[split] // self.seq_len if source.counts else 0

    def epochs(self, source: SourcePlan) -> float:
        unique = self.unique_samples(source)
        return source.samples / unique if unique else (0.0 if source.samples == 0 else math.inf)

    def asked_tokens(self, source: SourcePlan) -> Fraction:
        return source.fraction * self.config.total_tokens


def allocate_samples(fractions: list[Fraction], total_tokens: int, seq_len: int) -> list[int]:
    """Splits ``total_tokens // seq_len`` samples by largest remainder of each share's exact quota (ties: order)."""
    quotas = [f * total_tokens / seq_len for f in fractions]
    samples = [math.floor(q) for q in quotas]
    extra = total_tokens // seq_len - sum(samples)
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - samples[i]), i))
    for i in order[: max(extra, 0)]:
        samples[i] += 1
    return samples


def make_plan(config: MixConfig) -> MixPlan:
    """Resolves inputs, counts tokens (cached by content) and checks that the mix can be realized.

    Args:
        config: the validated mix config.

    Raises:
        InputError: every problem found, one line each (nothing is written before this returns).
    """
    tokenizer = tokenizer_info(config.tokenizer)
    fractions = config.resolved_fractions()
    sources = [SourcePlan(i, s, fractions[i]) for i, s in enumerate(config.sources)]
    opened, problems = _open_hf(config)
    for source in sources:
        problems += _resolve_source(config, source)
    if problems:
        raise InputError(problems)
    if opened:
        _add_hf_files(config, sources, opened)
    problems += _link_rephrased(config, sources)
    if problems:
        raise InputError(problems)
    for source in sources:
        _identify(config, source, tokenizer)
    plan = MixPlan(config, tokenizer, sources)
    plan.name = config.name or "mix-" + sha256_json(_mix_identity(plan))[:12]
    plan.layout = MixLayout.of(config, plan.name)
    _count(plan)
    fractions_used = [s.fraction if s.left_out is None else Fraction(0) for s in sources]
    for source, samples in zip(sources, allocate_samples(fractions_used, config.total_tokens, config.seq_len)):
        source.samples = samples
    problems = [p for s in plan.used() for p in _check(plan, s)]
    if problems:
        raise InputError(problems)
    return plan


def _resolve_source(config: MixConfig, source: SourcePlan) -> list[str]:
    """Finds the source's files and gives each its split rule."""
    spec = source.config
    where = f"mix.sources[{source.index}]"
    files, problems = resolve_inputs(spec.paths, f"{where}.paths", spec.allow_incomplete)
    heldout, heldout_problems = resolve_inputs(spec.heldout_paths or [], f"{where}.heldout_paths",
                                               spec.allow_incomplete)
    if source.fraction == 0 and problems and all(p.endswith(_MISSING) for p in problems) and spec.hf is None:
        # A fraction-0 source may name data that does not exist yet (e.g. rephrase output): it is left out.
        source.left_out = "no data yet: " + "; ".join(problems)
        return []
    problems += heldout_problems
    statuses = [rephrase_status(p if storage.is_remote(p) else str(storage.local_path(p)))
                for p in [*spec.paths, *(spec.heldout_paths or [])]]
    source.units_missing = sum(s.units_missing for s in statuses if s is not None)
    train_rule = SplitRule("train", spec.heldout_fraction, config.seed)
    source.files = [(f, train_rule) for f in files] + [(f, SplitRule("heldout")) for f in heldout]
    return problems


def _open_hf(config: MixConfig) -> tuple[dict, list[str]]:
    """Every ``hf``/``heldout_hf`` dataset of the config, opened and checked: ({(index, field): HfInput}, problems)."""
    opened, problems = {}, []
    for index, spec in enumerate(config.sources):
        for name, dataset in (("hf", spec.hf), ("heldout_hf", spec.heldout_hf)):
            if dataset is None:
                continue
            try:
                opened[index, name] = open_dataset(dataset, f"mix.sources[{index}].{name}")
            except InputError as exc:
                problems += exc.problems
    return opened, problems


def _add_hf_files(config: MixConfig, sources: list[SourcePlan], opened: dict) -> None:
    """Materializes the datasets as parquet in the mix's cache (claimed first) and adds the files to their sources:
    ``hf`` files train (split by ``heldout_fraction`` when set), ``heldout_hf`` files are held out."""
    layout = MixLayout.of(config)
    layout.claim_store()
    for (index, name), dataset in opened.items():
        source, where = sources[index], f"mix.sources[{index}].{name}"
        written = materialize(dataset, layout.hf)
        files = [InputFile(f, storage.content_id(f), where) for f in written.files]
        source.hf[name] = {**dataset.record(), "folder": written.folder, "rows": written.rows}
        if name == "hf":
            rule = SplitRule("train", source.config.heldout_fraction, config.seed)
            source.files = [(f, rule) for f in files] + source.files
        else:
            source.files = source.files + [(f, SplitRule("heldout")) for f in files]


def _link_rephrased(config: MixConfig, sources: list[SourcePlan]) -> list[str]:
    """Holds out, in every source that rephrases another, the rows of documents that other source holds out."""
    problems = []
    for source in sources:
        target = config.rephrased_source(source.index)
        if target is None or source.left_out is not None:
            continue
        ids, found = heldout_ids(sources[target].files, source.label)
        problems += found
        source.heldout_ids = ids
        source.files = [(f, SplitRule(r.split, r.heldout_fraction, r.seed, ids)) for f, r in source.files]
    return problems


def _identify(config: MixConfig, source: SourcePlan, tokenizer: TokenizerInfo) -> None:
    """The source's content key (inputs, split rule, tokenizer) and its folder name in the store."""
    if source.left_out is not None:
        return
    spec = source.config
    source.count_key = sha256_json(
        {
            "format": FORMAT_VERSION,
            "inputs": [f.content_id for f, rule in source.files if rule.split == "train"],
            "heldout_inputs": [f.content_id for f, rule in source.files if rule.split == "heldout"],
            "heldout_fraction": spec.heldout_fraction,
            "heldout_ids": sha256_json(sorted(source.heldout_ids)) if source.heldout_ids else None,
            "seed": config.seed,
            "tokenizer": tokenizer.sha256,
            "eos_token_id": tokenizer.eos_token_id,
        }
    )
    layout = {"seq_len": config.seq_len, "dtype": tokenizer.dtype, "compression": config.build.compression,
              "shard_size_bytes": config.build.shard_size_bytes}
    source.dir_name = f"{spec.name}-{sha256_json({'counts': source.count_key, **layout})[:12]}"


def _mix_identity(plan: MixPlan) -> dict:
    config = plan.config
    return {
        "sources": [[s.name, s.config.role, s.dir_name, str(s.fraction), s.left_out is None] for s in plan.sources],
        "total_tokens": config.total_tokens,
        "seq_len": config.seq_len,
    }


def _count(plan: MixPlan) -> None:
    """Fills every used source's counts: from its built source, the count cache, or by tokenizing now."""
    config, cache = plan.config, CountCache(plan.layout)
    stage: TokenizeStage | None = None
    problems: list[str] = []
    for source in plan.used():
        built = storage.read_json(plan.layout.source_manifest(source.dir_name))
        if built and built.get("count_key") == source.count_key:
            source.counts, source.counts_from = SourceCounts.from_json(built["counts"]), "source"
            continue
        cached = cache.get(source.count_key)
        if cached is not None:
            source.counts, source.counts_from = cached, "cache"
            continue
        if stage is None:
            stage = TokenizeStage(plan.tokenizer.folder, plan.tokenizer.dtype, plan.tokenizer.eos_token_id)
        counts, unreadable = count_files(source.files, stage, config.build.batch_documents, source.name)
        problems += [f"{f.origin}={f.location!r}: {reason}" for f, reason in unreadable]
        source.counts, source.counts_from = counts, "tokenized"
        plan.tokenized_documents += sum(counts.documents.values())
    if problems:
        raise InputError(problems)


def _check(plan: MixPlan, source: SourcePlan) -> list[str]:
    counts, fraction = source.counts, float(source.fraction)
    if fraction == 0:
        return []
    if counts.documents["train"] == 0:
        skipped = sum(counts.skipped.values())
        detail = ", ".join(f"{n} {reason}" for reason, n in counts.skipped.items())
        why = f"{skipped} rows skipped: {detail}" if skipped else "no rows"
        return [f"{source.label}: fraction {fraction:.6g} but no usable training documents ({why})"]
    if plan.unique_samples(source) == 0:
        return [
            f"{source.label}: fraction {fraction:.6g} but its {counts.tokens['train']} training tokens make "
            f"no sample of seq_len={plan.seq_len}"
        ]
    epochs, limit = plan.epochs(source), source.config.max_epochs
    if limit is not None and epochs > limit * (1 + 1e-9):
        return [
            f"{source.label}: {epochs:.4g} epochs exceed max_epochs={limit:g} "
            f"({source.samples} samples asked of {plan.unique_samples(source)} unique)"
        ]
    return []


def commit_counts(plan: MixPlan) -> None:
    """Caches counts that were tokenized in this run (called once the plan is known to be valid)."""
    cache = CountCache(plan.layout)
    for source in plan.used():
        if source.counts_from == "tokenized":
            about = {"source": source.name, "inputs": [f.location for f, _ in source.files]}
            cache.put(source.count_key, source.counts, about)


def fingerprint(plan: MixPlan) -> tuple[str, dict[str, str]]:
    """What a mix folder's streams spec depends on: (hash, its parts ``config`` and ``inputs``).

    ``config``: tokens, sequence length, seed, each source's name, role, share and held-out rule, and the shard
    layout; ``inputs``: the content ids of every input file and of the tokenizer. Not where files live, not
    Ray or speed settings, not checks that refuse a mix (max_epochs, global_batch_size).
    """
    config = plan.config
    parts = {
        "config": sha256_json({
            "total_tokens": config.total_tokens,
            "seq_len": config.seq_len,
            "seed": config.seed,
            "sources": [[s.name, s.config.role, str(s.fraction), s.config.heldout_fraction] for s in plan.sources],
            "shards": [config.build.compression, config.build.shard_size_bytes],
        }),
        "inputs": sha256_json({
            "tokenizer": plan.tokenizer.sha256,
            "sources": [None if s.left_out else [[f.content_id, rule.split] for f, rule in s.files]
                        for s in plan.sources],
            "heldout_ids": [sha256_json(sorted(s.heldout_ids)) for s in plan.sources],
        }),
    }
    return sha256_json(parts), parts
