"""`spt mix build`: content-addressed MDS datasets per source, then the mix's streams spec.

Layout under ``output_dir`` (local or ``s3://``)::

    sources/<name>-<hash12>/{train,heldout}/   MDS, column ``tokens`` (ndarray:uint16; uint32 past 65,535 ids)
    sources/<name>-<hash12>/source.json        counts, inputs, shard hashes; written last = the source is complete
    mixes/<mix name>/{plan,manifest,streams}.json
    cache/<count key>.json                     token counts (local output_dir; else cache_dir)

The hash covers the inputs' content, the split rule and seed, the tokenizer, seq_len and the shard layout, so a
mix over the same sources with another δ or T reuses them and only writes a new mixes/<name>/ folder.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

from tqdm import tqdm

from pipelines.io import atomic_directory, sha256_file, write_json_atomic
from pipelines.mix import storage
from pipelines.mix.documents import SPLITS
from pipelines.mix.pack import SplitWriter
from pipelines.mix.plan import MixPlan, SourcePlan, commit_counts, make_plan, mix_location, sources_root
from pipelines.mix.report import plan_json, source_row
from pipelines.mix.streams import SPEC_FORMAT
from spt.config.mix import MixConfig

SOURCE_FORMAT = "spt-mix-source/1"


def write_plan(config: MixConfig) -> tuple[MixPlan, str]:
    """`spt mix plan`: counts (cached), checks, and writes ``mixes/<name>/plan.json``.

    Returns:
        (the plan, the location of plan.json)

    Raises:
        InputError: the mix is impossible; nothing was written.
    """
    plan = make_plan(config)
    commit_counts(plan)
    location = mix_location(config, plan.name, "plan.json")
    storage.write_json(location, plan_json(plan))
    return plan, location


def build_mix(config: MixConfig) -> dict:
    """`spt mix build`: builds missing sources, then writes the mix's plan, manifest and streams spec.

    Returns:
        A report: ``name``, ``spec`` (location of streams.json), ``built`` and ``reused`` source names,
        ``tokenized_documents`` (documents tokenized by this call, 0 when everything was reused), ``plan``.

    Raises:
        InputError: the mix is impossible; nothing was written.
    """
    plan = make_plan(config)
    commit_counts(plan)
    missing = [s for s in plan.used() if not _source_exists(config, s)]
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


def source_location(config: MixConfig, source: SourcePlan, *parts: str) -> str:
    return storage.join(sources_root(config), source.dir_name, *parts)


def _source_exists(config: MixConfig, source: SourcePlan) -> bool:
    manifest = storage.read_json(source_location(config, source, "source.json"))
    return bool(manifest) and manifest.get("count_key") == source.count_key


def build_sources(plan: MixPlan, sources: list[SourcePlan]) -> int:
    """Tokenizes, packs and writes sources in one Ray pass; returns the documents tokenized.

    Locally each source is written to a temp folder renamed into place; for S3 it is written to a local temp
    folder and uploaded, source.json last.
    """
    from pipelines.mix.ray_tokenize import ray_session

    with ExitStack() as stack:
        folders = []
        for source in sources:
            final = source_location(plan.config, source)
            if storage.is_remote(final):
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"spt-mix-{source.name}-")))
            else:
                folder = stack.enter_context(atomic_directory(final))
            folders.append(folder)
        with ray_session(plan.config):
            splits = _write_sources(plan, sources, folders)
        for source, folder, source_splits in zip(sources, folders, splits):
            _check_counts(source, source_splits)
            write_json_atomic(folder / "source.json", _source_manifest(plan, source, folder, source_splits))
            if storage.is_remote(source_location(plan.config, source)):
                storage.upload_directory(folder, source_location(plan.config, source), last="source.json")
    return sum(split["documents"] for source_splits in splits for split in source_splits.values())


def _write_sources(plan: MixPlan, sources: list[SourcePlan], folders: list[Path]) -> list[dict]:
    from pipelines.mix.ray_tokenize import tokenized_tables

    build = plan.config.build
    writers = [
        {split: SplitWriter(folder / split, plan.seq_len, plan.tokenizer.dtype, build.compression,
                            build.shard_size_bytes) for split in SPLITS}
        for folder in folders
    ]
    expected = sum(sum(s.counts.tokens.values()) for s in sources)
    names = ", ".join(s.name for s in sources)
    with tqdm(total=expected, desc=f"build {names}", unit="tok", unit_scale=True, disable=None) as progress:
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
        "counts": source.counts.to_json(),
        "splits": splits,
        "files": {
            p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()
        },
    }


def _split_entry(plan: MixPlan, source: SourcePlan, mix_dir: str, split: str) -> dict:
    """Where a source's split lives, as the spec records it: a local path relative to the mix folder, or a URL."""
    samples = plan.unique_samples(source, split)
    entry = {"name": source.name, "role": source.config.role, "local": None, "remote": None}
    if samples == 0:
        return entry
    location = source_location(plan.config, source, split)
    if storage.is_remote(location):
        entry["remote"] = location
    else:
        entry["local"] = os.path.relpath(location, mix_dir)
    return entry


def _write_mix(plan: MixPlan, built_now: set[str]) -> str:
    """Writes plan.json, manifest.json and, last, streams.json; returns the location of streams.json."""
    config = plan.config
    mix_dir = mix_location(config, plan.name)
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
                                       "unique_samples", "epochs", "documents", "skipped", "heldout_samples")},
                "difference_tokens": round(row["realized_tokens"] - float(plan.asked_tokens(source)), 6),
                "source_dir": storage.join(sources_root(config), source.dir_name),
                "built_now": source.name in built_now,
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
        "left_out": {s.name: s.left_out for s in plan.sources if s.left_out is not None},
    }
    storage.write_json(mix_location(config, plan.name, "plan.json"), plan_json(plan))
    storage.write_json(mix_location(config, plan.name, "manifest.json"), manifest)
    location = mix_location(config, plan.name, "streams.json")
    storage.write_json(location, spec)
    return location
