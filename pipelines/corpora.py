"""Offline sample corpora from text already on this machine, for the quickstart and the tests.

- domain: Python source files of the standard library (a narrow "domain" with its own vocabulary);
- general: English prose found in installed packages: the long descriptions in ``*.dist-info/METADATA``
  and docstrings of third-party modules.

Either side may instead read a Hugging Face dataset (``domain.hf``/``general.hf``, see
:mod:`pipelines.hf_datasets`): its documents are taken in the dataset's order, without the content filter, and a
document's id is made from its id column (or ``<split>:<row>``), not from where the dataset lies, so the same
rows saved with ``save_to_disk`` or written as json give the same corpus.

Nothing is read from the network or from the repository (unless a hub dataset is not yet in the HF cache). The
output is deterministic for a seed on a given machine and environment: files are listed in sorted order, shuffled
with the seed, and each document's split is a hash of (seed, id), so it does not move when the corpus size changes.
"""

from __future__ import annotations

import ast
import email.parser
import hashlib
import random
import re
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa

from pipelines.hf_datasets import documents, open_dataset
from spt import storage
from spt.config import CorporaConfig, CorpusLimits
from spt.progress import Progress
from spt.storage import ownership, sha256_json

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string())])
SPLITS = ("train", "heldout")
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__", "lib2to3"}
_WORD = re.compile(r"[A-Za-z]+")
_COMMON_ENGLISH = {"the", "and", "of", "to", "is", "in", "a", "for", "this", "that", "with", "be", "are"}


@dataclass
class CorpusStats:
    """Counts for one corpus: what was kept per split, and what was skipped and why."""

    documents: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})
    bytes: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _cut(text: str, max_chars: int) -> str:
    """Cuts at the last line break before ``max_chars`` so documents end on a whole line."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    newline = head.rfind("\n")
    return head[: newline + 1] if newline > max_chars // 2 else head


def is_english_prose(text: str) -> bool:
    """A cheap test for English prose: mostly letters and spaces, and common function words."""
    if not text:
        return False
    letters = sum(ch.isascii() and (ch.isalpha() or ch.isspace()) for ch in text)
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < 30 or letters / len(text) < 0.8:
        return False
    return sum(w in _COMMON_ENGLISH for w in words) / len(words) >= 0.08


def python_source_files(stdlib: Path) -> list[Path]:
    """The standard library's ``.py`` files, sorted, without tests and bundled third-party code."""
    return sorted(
        p for p in stdlib.rglob("*.py") if not _SKIP_DIRS.intersection(p.relative_to(stdlib).parts[:-1])
    )


def domain_documents(stats: CorpusStats, stdlib: Path | None = None) -> Iterator[tuple[str, str]]:
    """Yields (source, text) for each readable stdlib source file."""
    stdlib = stdlib or Path(sysconfig.get_paths()["stdlib"])
    for path in python_source_files(stdlib):
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            stats.skip("unreadable or not UTF-8")
            continue
        yield f"python-stdlib:{path.relative_to(stdlib).as_posix()}", text


def _metadata_description(path: Path) -> str:
    message = email.parser.Parser().parsestr(path.read_text(encoding="utf-8"))
    return (message.get_payload() or message.get("Description") or "").strip()


def _docstrings(source: str) -> Iterator[str]:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


def general_documents(stats: CorpusStats, seed: int, site_packages: Path | None = None) -> Iterator[tuple[str, str]]:
    """Yields (source, text): package descriptions first, then module docstrings in a seeded order."""
    site = site_packages or Path(sysconfig.get_paths()["purelib"])
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        try:
            yield f"pkg-metadata:{meta.parent.name}", _metadata_description(meta)
        except (OSError, UnicodeDecodeError):
            stats.skip("unreadable or not UTF-8")
    modules = sorted(p for p in site.rglob("*.py") if "test" not in p.relative_to(site).as_posix())
    random.Random(seed).shuffle(modules)
    for path in modules:
        try:
            docs = list(_docstrings(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
            stats.skip("unparsable module")
            continue
        for number, doc in enumerate(docs):
            yield f"docstring:{path.relative_to(site).as_posix()}#{number}", doc


def split_of(seed: int, doc_id: str, heldout_fraction: float) -> str:
    """A document's split from a hash of (seed, id): stable when the corpus grows or shrinks."""
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") / 2**64 < heldout_fraction else "train"


def collect(
    documents: Iterable[tuple[str, str]],
    limits: CorpusLimits,
    keep: Callable[[str], bool],
    stats: CorpusStats,
    seed: int,
    heldout_fraction: float,
    name: str,
) -> dict[str, list[dict]]:
    """Filters, deduplicates and splits documents until the corpus limits are reached."""
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    total_bytes = 0
    progress = Progress(f"corpus {name}", limits.max_documents, "docs")
    for source, raw in documents:
        text = _cut(raw.strip().replace("\r\n", "\n"), limits.max_chars)
        if not text.strip():
            stats.skip("empty")
            continue
        if len(text) < limits.min_chars:
            stats.skip("shorter than min_chars")
            continue
        if not keep(text):
            stats.skip("failed the content filter")
            continue
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:
            stats.skip("duplicate")
            continue
        size = len(text.encode())
        if total_bytes + size > limits.max_bytes:
            stats.skip("over max_bytes")
            continue
        seen.add(digest)
        doc_id = f"{name}-{hashlib.sha256(source.encode()).hexdigest()[:16]}"
        split = split_of(seed, doc_id, heldout_fraction)
        rows[split].append({"id": doc_id, "text": text, "source": source})
        stats.documents[split] += 1
        stats.bytes[split] += size
        total_bytes += size
        progress.update(1)
        if sum(stats.documents.values()) >= limits.max_documents:
            break
    progress.close()
    return rows


def _hf_rows(config: CorporaConfig, name: str, source, stats: CorpusStats) -> dict[str, list[dict]]:
    docs = ((f"hf:{doc_id}", text or "") for doc_id, text in documents(source))
    limits = getattr(config, name)
    return collect(docs, limits, lambda _: True, stats, config.seed, config.heldout_fraction, name)


def _domain_rows(config: CorporaConfig, stats: CorpusStats) -> dict[str, list[dict]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = list(domain_documents(stats, stdlib))
    random.Random(config.seed).shuffle(files)
    return collect(files, config.domain, lambda _: True, stats, config.seed, config.heldout_fraction, "domain")


def _general_rows(config: CorporaConfig, stats: CorpusStats) -> dict[str, list[dict]]:
    docs = general_documents(stats, config.seed)
    return collect(docs, config.general, is_english_prose, stats, config.seed, config.heldout_fraction, "general")


STAGE = "corpora"


@dataclass(frozen=True)
class CorporaLayout:
    """Where `spt corpora` writes, computed once: ``<root>/{domain,general}/{train,heldout}.parquet``, then
    ``summary.json`` (written last: the mark of a complete build), and the ownership marker."""

    root: str

    def parquet(self, corpus: str, split: str) -> str:
        return storage.join(self.root, corpus, f"{split}.parquet")

    @property
    def summary(self) -> str:
        return storage.join(self.root, "summary.json")

    def files(self) -> dict[str, str]:
        """Relative name -> location of every data file."""
        return {f"{c}/{s}.parquet": self.parquet(c, s) for c in ("domain", "general") for s in SPLITS}


def build_corpora(config: CorporaConfig, force: bool = False) -> dict:
    """Builds ``output_dir/{domain,general}/{train,heldout}.parquet`` and ``summary.json`` (local or ``s3://``).

    A rerun with the same config finds the summary, checks the files' hashes, and does nothing; a build that
    does not verify (killed, files changed by hand) is redone.

    Args:
        force: replace this stage's output of another config (see :mod:`spt.storage.ownership`).

    Returns:
        The summary: per corpus and split, documents and bytes; skipped documents by reason; file hashes.

    Raises:
        InputError: ``output_dir`` is not writable, holds foreign files, or (without ``force``) holds corpora of
            another config. Nothing is written then.
    """
    layout = CorporaLayout(config.output_dir)
    storage.check_writable(layout.root, "corpora.output_dir")
    hf_sources = _open_hf(config)
    # Where the corpora go is not what they are: the fingerprint leaves output_dir out.
    config_hash = sha256_json(config.model_dump(mode="json", exclude={"output_dir"}))
    parts = {"config": config_hash}
    if hf_sources:  # a changed dataset is another input, noticed like a changed config
        parts["inputs"] = sha256_json({name: source.identity for name, source in hf_sources.items()})
    fingerprint = sha256_json(parts) if hf_sources else config_hash
    claim = ownership.claim(layout.root, STAGE, fingerprint, where="corpora.output_dir", parts=parts, force=force)
    previous = storage.read_json(layout.summary) if claim.state == "same" else None
    if previous and previous.get("fingerprint", previous.get("config_hash")) == fingerprint \
            and _files_verify(layout, previous):
        previous["reused"] = True
        return previous
    storage.delete(layout.summary)  # the folder reads as incomplete until the new summary is written
    summary: dict = {"config": config.model_dump(mode="json"), "config_hash": config_hash, "corpora": {},
                     "files": {}}
    if hf_sources:
        summary["fingerprint"] = fingerprint
        summary["inputs"] = {name: source.record() for name, source in hf_sources.items()}
    for name, make_rows in (("domain", _domain_rows), ("general", _general_rows)):
        stats = CorpusStats()
        if name in hf_sources:
            rows = _hf_rows(config, name, hf_sources[name], stats)
        else:
            rows = make_rows(config, stats)
        for split in SPLITS:
            table = pa.Table.from_pylist(rows[split], schema=SCHEMA)
            summary["files"][f"{name}/{split}.parquet"] = storage.write_parquet(
                layout.parquet(name, split), table, compression="zstd", row_group_size=1024)
        summary["corpora"][name] = {
            "documents": stats.documents,
            "bytes": stats.bytes,
            "skipped": dict(sorted(stats.skipped.items())),
        }
    summary["files"] = dict(sorted(summary["files"].items()))
    storage.write_json(layout.summary, summary)
    summary["reused"] = False
    return summary


def _open_hf(config: CorporaConfig) -> dict:
    """The Hugging Face datasets the config names, opened and checked before anything is written."""
    sides = {name: getattr(config, name).hf for name in ("domain", "general")}
    return {name: open_dataset(spec, f"corpora.{name}.hf") for name, spec in sides.items() if spec is not None}


def _files_verify(layout: CorporaLayout, summary: dict) -> bool:
    files = summary.get("files") or {}
    locations = layout.files()
    try:
        return set(files) == set(locations) and all(storage.sha256(locations[n]) == h for n, h in files.items())
    except FileNotFoundError:
        return False


def format_summary(summary: dict) -> str:
    """A small table: corpus, split, documents, bytes; then the skip counts."""
    lines = [f"{'corpus':<8} {'split':<8} {'documents':>10} {'bytes':>12}"]
    for name, info in summary["corpora"].items():
        for split in SPLITS:
            lines.append(f"{name:<8} {split:<8} {info['documents'][split]:>10,} {info['bytes'][split]:>12,}")
        if info["skipped"]:
            skipped = ", ".join(f"{reason}: {count}" for reason, count in info["skipped"].items())
            lines.append(f"  {name} skipped: {skipped}")
    return "\n".join(lines)
