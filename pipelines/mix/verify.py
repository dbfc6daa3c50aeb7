"""Checks that a built mix is what `spt mix build` wrote, before a build reuses its sources and before training.

``source.json`` records every file of a source with its sha256 (and, for sources built since, its size in
bytes); ``manifest.json`` records what each source gives the mix. A source is reused only when its files have
those sizes and hashes (else the build makes it again), and a run starts only when ``streams.json`` agrees with
the manifest, the tokenizer is the one the sources were tokenized with, and every file a stream reads matches
its source's record (else one line names the file and the rerun that fixes it).

Cost: the sizes come from one listing; the hashes read every byte once. Measured 2026-12-05 on a 2-core AVX-512
machine with SHA extensions (`benchmarks/mix_verify_cost.py`, 538 MB of shards in the page cache): 1.08 GB/s,
0.04x the time of one Streaming pass over the same shards (37 MB/s). So every file is hashed in full, locally and
on S3 alike: a changed token that keeps a file's size is found no other way. On S3 the check is one more read of
every shard (12 MB/s from the in-process moto server of the tests, a lower bound; a node's bandwidth on real S3),
and a sweep cell checks twice (its build reuses the sources, its run starts): a source much larger than what a
cell trains on costs its size over that rate each time.
"""

from __future__ import annotations

import sys

from pipelines.mix.layout import SOURCE_MANIFEST
from pipelines.tokenizer import TokenizerLayout
from spt import storage
from spt.errors import InputError

#: The files a split folder holds besides its shards; checked before any shard is hashed (they are small).
INDEX = "index.json"


def source_problem(folder: str, manifest: dict | None) -> tuple[str, str] | None:
    """How the files under a source ``folder`` differ from its ``source.json`` (``manifest``), or None.

    Every recorded file must be there with its recorded size (when recorded) and sha256. Sizes are compared first,
    then indexes hashed, then shards, so a truncated shard is found without hashing the others.

    Returns:
        (the first file that differs, relative to ``folder``; how it differs, a phrase to follow its name)
    """
    if not manifest or not isinstance(manifest.get("files"), dict):
        return SOURCE_MANIFEST, "is missing or unreadable"
    recorded, sizes = manifest["files"], manifest.get("sizes") or {}
    present = {entry.relative: entry for entry in storage.list_files(folder)}
    for relative in sorted(recorded):
        if relative not in present:
            return relative, "is missing"
        if relative in sizes and present[relative].size != sizes[relative]:
            return relative, f"is {present[relative].size:,} bytes where {SOURCE_MANIFEST} recorded {sizes[relative]:,}"
    for relative in sorted(recorded, key=lambda r: not r.endswith(INDEX)):
        if storage.sha256(present[relative].location) != recorded[relative]:
            return relative, f"has other bytes than {SOURCE_MANIFEST} recorded (its sha256 differs)"
    return None


def reusable(folder: str, manifest: dict | None, count_key: str, name: str) -> bool:
    """True when a built source of this content key can be reused: its files are the ones it recorded. A source
    that differs is reported on stderr (it is built again)."""
    if not manifest or manifest.get("count_key") != count_key:
        return False
    problem = source_problem(folder, manifest)
    if problem:
        print(f"mix: source {name!r}: {storage.join(folder, problem[0])} {problem[1]}; building it again",
              file=sys.stderr, flush=True)
    return problem is None


def check_mix(spec: dict) -> None:
    """Refuses a mix whose streams spec, indexes, shards or tokenizer differ from what `spt mix build` wrote.

    Args:
        spec: from :func:`pipelines.mix.streams.read_spec` (``spec["path"]`` is its streams.json).

    Raises:
        InputError: one line naming the file that differs and the rerun that fixes it.
    """
    where = f"mix={spec['path']!r}"
    rebuild = "rerun `spt mix build` with the mix's config to write it again"
    manifest = storage.read_json(storage.join(storage.parent(spec["path"]), "manifest.json"))
    if not manifest or not isinstance(manifest.get("sources"), list):
        raise InputError(f"{where}: manifest.json is missing or unreadable beside it; {rebuild}")
    problem = _spec_problem(spec, {s.get("name"): s for s in manifest["sources"]})
    if problem:
        raise InputError(f"{where}: {problem} (streams.json was changed after the build); {rebuild}")
    tokenizer = _tokenizer_sha256(spec["tokenizer"])
    for folder, name in _source_folders(spec):
        source = storage.read_json(storage.join(folder, SOURCE_MANIFEST))
        if not source:
            raise InputError(f"{where}: {storage.join(folder, SOURCE_MANIFEST)} is missing or unreadable (source "
                             f"{name!r}); rerun `spt mix build` with the mix's config to build it again")
        recorded = (source.get("tokenizer") or {}).get("sha256")
        if source.get("name") != name or recorded != spec.get("tokenizer_sha256"):
            raise InputError(f"{where}: source {name!r} ({folder}) was not built for this streams spec "
                             f"({SOURCE_MANIFEST} names source {source.get('name')!r}, tokenizer sha256 "
                             f"{recorded}; streams.json says {name!r}, {spec.get('tokenizer_sha256')}); {rebuild}")
        if tokenizer != recorded:
            raise InputError(f"{where}: the tokenizer {spec['tokenizer']} changed since source {name!r} was "
                             f"tokenized (sha256 {tokenizer or 'none: tokenizer.json is missing'}, "
                             f"{SOURCE_MANIFEST} recorded {recorded}); rerun `spt mix build` with the mix's config "
                             "to tokenize the sources with it")
        problem = source_problem(folder, source)
        if problem:
            raise InputError(f"{where}: {storage.join(folder, problem[0])} {problem[1]} (source {name!r} changed "
                             "after the build); rerun `spt mix build` with the mix's config to build it again")


def _spec_problem(spec: dict, sources: dict[str, dict]) -> str | None:
    """The first field of streams.json that disagrees with manifest.json, as ``name.field=value``, or None."""
    streams = {s.get("name"): s for s in spec["streams"]}
    if set(streams) != set(sources):
        return f"it lists the sources {sorted(map(str, streams))}, manifest.json {sorted(map(str, sources))}"
    fields = (("choose", "samples"), ("unique_samples", "unique_samples"), ("role", "role"))
    checks = [(name, ours, stream.get(ours), sources[name].get(theirs))
              for name, stream in streams.items() for ours, theirs in fields]
    checks += [(e.get("name"), "samples", e.get("samples"), sources.get(e.get("name"), {}).get("heldout_samples"))
               for e in spec["eval"]]
    checks.append(("total", "samples", spec.get("total_samples"), sum(s.get("samples", 0) for s in sources.values())))
    for name, field, ours, theirs in checks:
        if ours != theirs:
            return f"{name}.{field}={ours} where manifest.json says {theirs}"
    return None


def _source_folders(spec: dict) -> list[tuple[str, str]]:
    """(folder, source name) of every source a run reads, train or held-out split: each split's parent folder."""
    found = {}
    for entry in spec["streams"] + spec["eval"]:
        location = entry.get("remote") or entry.get("local")
        if location and (entry.get("choose") or entry.get("unique_samples") or entry.get("samples")):
            found.setdefault(storage.parent(location.rstrip("/")), entry["name"])
    return list(found.items())


def _tokenizer_sha256(folder: str) -> str | None:
    try:
        return storage.sha256(TokenizerLayout(folder).tokenizer)
    except FileNotFoundError:
        return None
