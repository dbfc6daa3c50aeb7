"""`spt mix build`: content-addressed MDS datasets per source, then the mix's streams spec.

Layout: see :mod:`pipelines.mix.layout` (computed once per run; local or ``s3://``). Sources are
``sources/<name>-<hash12>/{train,heldout}/`` (MDS, column ``tokens``: ndarray:uint16, uint32 past 65,535 ids)
with ``source.json`` (counts, inputs, every file's sha256 and size) written last.

The hash covers the inputs' content, the split rule and seed, the tokenizer, seq_len and the shard layout, so a
mix over the same sources with another δ or T reuses them and only writes a new mixes/<name>/ folder. A mix
folder holds the fingerprint of what its spec depends on (see :func:`pipelines.mix.plan.fingerprint`); the same
name with another config or other input content is refused unless ``force``.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

from pipelines.mix.documents import SPLITS
from pipelines.mix.layout import SOURCE_MANIFEST, STAGE, MixLayout
from pipelines.mix.pack import SplitWriter
from pipelines.mix.plan import MixPlan, SourcePlan, commit_counts, fingerprint, make_plan
from pipelines.mix.ray_tokenize import ray_session, tokenized_tables
from pipelines.mix.report import domain_groups, plan_json, source_row
from pipelines.mix.streams import SPEC_FORMAT
from pipelines.mix.verify import reusable
from spt import storage
from spt.config.mix import MixConfig
from spt.progress import Progress
from spt.storage import ownership
from spt.storage.staging import staged_folder

SOURCE_FORMAT = "spt-mix-source/1"


def check_outputs(config: MixConfig) -> None:
    """Refuses, before any work, an output folder (or cache folder) that is not writable or not spt's mix store.

    Raises:
        InputError: one line naming the folder and the rule; nothing is written.
    """
    MixLayout.of(config).check_store()


def claim_outputs(plan: MixPlan, force: bool = False) -> None:
    """Claims the store, the cache and the mix's folder (checked first, so a refusal writes nothing).

    Raises:
        InputError: the mix folder holds this mix's name for another config or other inputs (without ``force``).
    """
    layout = plan.layout
    mix_fingerprint, parts = fingerprint(plan)
    where, label = "mix.name", f"mix {plan.name!r} ({layout.mix})"
    ownership.check_claim(layout.mix, STAGE, mix_fingerprint, where=where, parts=parts, force=force, label=label)
    layout.claim_store()
    ownership.claim(layout.mix, STAGE, mix_fingerprint, where=where, parts=parts, force=force, label=label)


def write_plan(config: MixConfig, force: bool = False) -> tuple[MixPlan, str]:
    """`spt mix plan`: counts (cached), checks, and writes ``mixes/<name>/plan.json``.

    Returns:
        (the plan, the location of plan.json)

    Raises:
        InputError: the mix is impossible, or its folders may not be written; nothing was written.
    """
    check_outputs(config)
    plan = make_plan(config)
    claim_outputs(plan, force)
    commit_counts(plan)
    storage.write_json(plan.layout.plan, plan_json(plan))
    return plan, plan.layout.plan


def build_mix(config: MixConfig, force: bool = False) -> dict:
    """`spt mix build`: builds missing sources, then writes the mix's plan, manifest and streams spec.

    Args:
        force: replace a mix folder of the same name that was built from another config or other inputs.

    Returns:
        A report: ``name``, ``spec`` (location of streams.json), ``built`` and ``reused`` source names,
        ``tokenized_documents`` (documents tokenized by this call, 0 when everything was reused), ``plan``.

    Raises:
        InputError: the mix is impossible, or its folders may not be written; nothing was written.
    """
    check_outputs(config)
    plan = make_plan(config)
    claim_outputs(plan, force)
    commit_counts(plan)
    missing = [s for s in plan.used() if not _source_exists(plan.layout, s)]
    tokenized = plan.tokenized_documents
    if missing:
        tokenized += build_sources(plan, missing)
    built = [s.name for s in missing]
    spec_location = _write_mix(plan, built_now=set(built))
    return {
        "name": plan.name,
        "spec": spec_location,
        "built": built,
        "reused": [s.name for s in plan.used() if s.name not in built],
        "tokenized_documents": tokenized,
        "plan": plan,
    }


def _source_exists(layout: MixLayout, source: SourcePlan) -> bool:
    """A complete source: its manifest names this content key and every file it lists is there, with the size and
    sha256 it recorded (see :mod:`pipelines.mix.verify`; a source that differs is built again)."""
    manifest = storage.read_json(layout.source_manifest(source.dir_name))
    return reusable(layout.source(source.dir_name), manifest, source.count_key, source.name)


def build_sources(plan: MixPlan, sources: list[SourcePlan]) -> int:
    """Tokenizes, packs and writes sources in one Ray pass; returns the documents tokenized.

    Each source is written to a local staging folder that becomes its final folder: one rename locally, an
    upload with source.json last on S3 (see :func:`spt.storage.staging.staged_folder`).
    """
    with ExitStack() as stack:
        folders = [
            stack.enter_context(staged_folder(plan.layout.source(s.dir_name), last=SOURCE_MANIFEST))
            for s in sources
        ]
        with ray_session(plan.config):
            splits = _write_sources(plan, sources, folders)
        for source, folder, source_splits in zip(sources, folders, splits):
            _check_counts(source, source_splits)
            storage.write_json(str(folder / SOURCE_MANIFEST), _source_manifest(plan, source, folder, source_splits))
    return sum(split["documents"] for source_splits in splits for split in source_splits.values())


def _write_sources(plan: MixPlan, sources: list[SourcePlan], folders: list[Path]) -> list[dict]:
    build = plan.config.build
    writers = [
        {split: SplitWriter(folder / split, plan.seq_len, plan.tokenizer.dtype, build.compression,
                            build.shard_size_bytes) for split in SPLITS}
        for folder in folders
    ]
    expected = sum(sum(s.counts.tokens.values()) for s in sources)
    names = ", ".join(s.name for s in sources)
    with Progress(f"build {names}", expected, "tokens") as progress:
        for table in tokenized_tables(plan.config, [s.files for s in sources], plan.tokenizer):
            columns = [table.column(c).to_pylist() for c in ("source", "split", "documents")]
            for source, split, documents, tokens in zip(*columns, table.column("tokens")):
                values = tokens.values.to_numpy(zero_copy_only=False)
                writers[source][split].add(values, documents)
                progress.update(len(values))
    return [{split: writer.close() for split, writer in group.items()} for group in writers]


def _check_counts(source: SourcePlan, splits: dict) -> None:
    for split in SPLITS:
        got = (splits[split]["documents"], splits[split]["tokens"])
        want = (source.counts.documents[split], source.counts.tokens[split])
        if got != want:
            raise RuntimeError(
                f"source {source.name!r} {split}: the build tokenized (documents, tokens) = {got}, the plan counted "
                f"{want}; the inputs changed during the build or tokenization is not deterministic"
            )


def _source_manifest(plan: MixPlan, source: SourcePlan, folder: Path, splits: dict) -> dict:
    return {
        "format": SOURCE_FORMAT,
        "name": source.name,
        "role": source.config.role,
        "count_key": source.count_key,
        "seq_len": plan.seq_len,
        "dtype": plan.tokenizer.dtype,
        "tokenizer": {"folder": plan.tokenizer.folder, "sha256": plan.tokenizer.sha256},
        "seed": plan.config.seed,
        "heldout_fraction": source.config.heldout_fraction,
        "inputs": [{"location": f.location, "content": f.content_id, "split": rule.split} for f, rule in source.files],
        "hf": source.hf or None,
        "counts": source.counts.to_json(),
        "splits": splits,
        "files": {
            p.relative_to(folder).as_posix(): storage.sha256(str(p)) for p in sorted(folder.rglob("*")) if p.is_file()
        },
        "sizes": {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()},
    }


def _split_entry(plan: MixPlan, source: SourcePlan, mix_dir: str, split: str) -> dict:
    """Where a source's split lives, as the spec records it: a local path relative to the mix folder, or a URL."""
    samples = plan.unique_samples(source, split)
    entry = {"name": source.name, "role": source.config.role, "local": None, "remote": None}
    if samples == 0:
        return entry
    location = plan.layout.source(source.dir_name, split)
    if storage.is_remote(location):
        entry["remote"] = location
    else:
        entry["local"] = os.path.relpath(location, mix_dir)
    return entry


def _write_mix(plan: MixPlan, built_now: set[str]) -> str:
    """Writes plan.json, manifest.json and, last, streams.json; returns the location of streams.json."""
    config, layout = plan.config, plan.layout
    mix_dir = layout.mix
    streams, evals, manifest_sources = [], [], []
    for source in plan.used():
        row = source_row(plan, source)
        stream = _split_entry(plan, source, mix_dir, "train")
        stream.update(
            {
                "choose": source.samples,
                "unique_samples": row["unique_samples"],
                "fraction": row["fraction"],
                "epochs": row["epochs"],
                "asked_tokens": row["asked_tokens"],
                "realized_tokens": row["realized_tokens"],
            }
        )
        streams.append(stream)
        if source.counts.documents["heldout"]:
            evals.append({**_split_entry(plan, source, mix_dir, "heldout"), "samples": row["heldout_samples"]})
        manifest_sources.append(
            {
                **{k: row[k] for k in ("name", "role", "fraction", "asked_tokens", "realized_tokens", "samples",
                                       "unique_samples", "epochs", "documents", "skipped", "heldout_samples",
                                       "units_missing", "rephrases")},
                "difference_tokens": round(row["realized_tokens"] - float(plan.asked_tokens(source)), 6),
                "source_dir": layout.source(source.dir_name),
                "built_now": source.name in built_now,
                "hf": source.hf or None,
            }
        )
    spec = {
        "format": SPEC_FORMAT,
        "name": plan.name,
        "seq_len": plan.seq_len,
        "total_tokens": config.total_tokens,
        "total_samples": plan.total_samples,
        "tokenizer": plan.tokenizer.folder,
        "tokenizer_sha256": plan.tokenizer.sha256,
        "vocab_size": plan.tokenizer.vocab_size,
        "eos_token_id": plan.tokenizer.eos_token_id,
        "dtype": plan.tokenizer.dtype,
        "streams": streams,
        "eval": evals,
    }
    manifest = {
        "format": "spt-mix-manifest/1",
        "name": plan.name,
        "config": config.model_dump(mode="json"),
        "total_tokens": config.total_tokens,
        "realized_tokens": plan.total_samples * plan.seq_len,
        "sources": manifest_sources,
        "domain_groups": domain_groups(plan),
        "left_out": {s.name: s.left_out for s in plan.sources if s.left_out is not None},
    }
    storage.write_json(layout.plan, plan_json(plan))
    storage.write_json(layout.manifest, manifest)
    storage.write_json(layout.streams, spec)  # last: a spec is there only when the rest is
    return layout.streams
