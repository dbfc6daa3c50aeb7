"""A corpus of known token counts for the mix tests (shared helpers), and the reading of corrupt inputs.

The tokenizer is a real HF ``tokenizer.json`` with a word-level model: every whitespace-separated word of the
corpus is exactly one token, so a document of n words is n + 1 tokens with its EOS, and each source uses its own
words (``d0..d49``, ``g0..``, ``s0..``), so a sample's ids tell which source it came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.mix.documents import SplitRule, read_documents, resolve_inputs
from spt.config import load_config

WORDS_PER_PREFIX = 50
PREFIXES = ("d", "g", "s", "h")  # domain, general, synthetic, held-out-by-fraction
SEQ_LEN = 16


def word_ids(prefix: str) -> range:
    """Token ids of a source's words (3 special tokens come first)."""
    start = 3 + PREFIXES.index(prefix) * WORDS_PER_PREFIX
    return range(start, start + WORDS_PER_PREFIX)


def make_tokenizer(folder: Path, extra_words: int = 0) -> Path:
    """A word-level tokenizer folder that `pipelines.tokenizer.load_tokenizer` loads (EOS id 0)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, "<|pad|>": 1, "[UNK]": 2}
    for prefix in PREFIXES:
        for index in range(WORDS_PER_PREFIX):
            vocab[f"{prefix}{index}"] = len(vocab)
    for index in range(extra_words):
        vocab[f"x{index}"] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "pad_token": "<|pad|>"}))
    return folder


def document(prefix: str, number: int, words: int) -> str:
    """Document ``number`` of a source: ``words`` words, so ``words + 1`` tokens with EOS."""
    return " ".join(f"{prefix}{(number * 7 + j) % WORDS_PER_PREFIX}" for j in range(words))


def _jsonl(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def make_corpus(root: Path) -> dict[str, Path]:
    """Writes the sources; their counts (tokens include one EOS per document):

    - domain: train.parquet, 12 docs x 40 words = 492 tokens; heldout.parquet, 4 docs x 31 words = 128 tokens.
    - general: train.jsonl, 50 docs x 63 words = 3,200 tokens, plus 4 corrupt lines (invalid JSON, invalid
      UTF-8, empty text, no text field); heldout.jsonl, 2 docs x 47 words = 96 tokens.
    - synthetic: rephrase/ with 3 parquet shards, 20 docs x 23 words = 480 tokens, plus 4 rows with an error
      (a whole shard failed) and 1 empty text.
    - holdout: h.parquet, 40 docs x 15 words = 640 tokens, for heldout_fraction.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "domain").mkdir()
    pq.write_table(pa.table({"text": [document("d", i, 40) for i in range(12)]}), root / "domain" / "train.parquet")
    pq.write_table(pa.table({"text": [document("d", 100 + i, 31) for i in range(4)]}), root / "domain" / "heldout.parquet")
    (root / "general").mkdir()
    good = [json.dumps({"id": i, "text": document("g", i, 63)}).encode() for i in range(50)]
    corrupt = [b'{"text": "g1 g2', b'{"text": "g1 \xff g2"}', b'{"text": "   "}', b'{"body": "g1 g2"}']
    _jsonl(root / "general" / "train.jsonl", good[:20] + corrupt[:2] + good[20:40] + corrupt[2:] + good[40:])
    _jsonl(root / "general" / "heldout.jsonl", [json.dumps({"text": document("g", 200 + i, 47)}).encode() for i in range(2)])
    rephrase = root / "rephrase"
    rephrase.mkdir()
    for shard in range(2):
        texts = [document("s", shard * 10 + i, 23) for i in range(10)]
        errors: list = [None] * 10
        if shard == 0:
            texts += ["", "s1 s2"]
            errors += ["engine died", "timeout"]
        else:
            texts += [" \n"]
            errors += [None]
        table = pa.table({"id": list(range(len(texts))), "text": texts, "error": pa.array(errors, pa.string())})
        pq.write_table(table, rephrase / f"part-{shard:05d}.parquet")
    # a shard in which every row failed
    failed = pa.table({"text": [None, "s3 s4"], "error": ["engine died", "engine died"]})
    pq.write_table(failed, rephrase / "part-00002.parquet")
    (root / "holdout").mkdir()
    pq.write_table(pa.table({"text": [document("h", i, 15) for i in range(40)]}), root / "holdout" / "h.parquet")
    return {"root": root, "tokenizer": make_tokenizer(root / "tokenizer")}


def mix_dict(corpus: dict, output_dir: Path, **top) -> dict:
    """The test mix: T = 2,000 tokens = 125 samples of 16; domain 0.3, synthetic 0.1, general the remainder."""
    root = corpus["root"]
    config = {
        "kind": "mix",
        "name": "test",
        "output_dir": str(output_dir),
        "tokenizer": str(corpus["tokenizer"]),
        "total_tokens": 2000,
        "seq_len": SEQ_LEN,
        "global_batch_size": 4,
        "seed": 0,
        "sources": [
            {
                "name": "domain",
                "role": "domain",
                "paths": [str(root / "domain" / "train.parquet")],
                "heldout_paths": [str(root / "domain" / "heldout.parquet")],
                "fraction": 0.3,
                "max_epochs": 2,
            },
            {
                "name": "general",
                "role": "general",
                "paths": [str(root / "general" / "train.jsonl")],
                "heldout_paths": [str(root / "general" / "heldout.jsonl")],
            },
            {"name": "synthetic", "role": "synthetic", "paths": [str(root / "rephrase")], "fraction": 0.1},
        ],
        "build": {"workers": 2, "batch_documents": 8, "shard_size_bytes": 4096},
    }
    config.update(top)
    return config


def write_mix(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    return make_corpus(tmp_path_factory.mktemp("mix-corpus"))


def test_the_test_config_is_valid(corpus, tmp_path):
    config = load_config(write_mix(tmp_path / "mix.yaml", mix_dict(corpus, tmp_path / "out")))
    assert [float(f) for f in config.resolved_fractions()] == [0.3, 0.6, 0.1]


def test_corrupt_jsonl_rows_are_skipped_and_counted(corpus):
    texts, skipped = read_documents(str(corpus["root"] / "general" / "train.jsonl"))
    assert len(texts) == 50 and texts[20] == document("g", 20, 63)
    assert dict(skipped) == {"invalid JSON": 1, "invalid UTF-8": 1, "empty document": 1, "missing text": 1}


def test_rephrase_rows_with_an_error_are_skipped(corpus):
    texts, skipped = read_documents(str(corpus["root"] / "rephrase" / "part-00000.parquet"))
    assert texts == [document("s", i, 23) for i in range(10)]
    assert dict(skipped) == {"rephrase error": 2}


def test_parquet_without_text_column_and_non_utf8_values_are_counted(tmp_path):
    pq.write_table(pa.table({"body": ["a", "b", "c"]}), tmp_path / "no-text.parquet")
    assert read_documents(str(tmp_path / "no-text.parquet")) == ([], {"missing text": 3})
    pq.write_table(pa.table({"text": pa.array([b"good", b"\xff\xfe", None], pa.binary())}), tmp_path / "bytes.parquet")
    texts, skipped = read_documents(str(tmp_path / "bytes.parquet"))
    assert texts == ["good"] and dict(skipped) == {"invalid UTF-8": 1, "missing text": 1}
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    assert read_documents(str(tmp_path / "ints.parquet")) == ([], {"text not a string": 2})


def test_folders_expand_to_sorted_inputs_with_content_ids(corpus, tmp_path):
    files, problems = resolve_inputs([str(corpus["root"] / "rephrase"), str(tmp_path / "nope")], "mix.sources[2].paths")
    assert [Path(f.location).name for f in files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert all(f.content_id.startswith("sha256:") and f.origin == "mix.sources[2].paths[0]" for f in files)
    assert problems == [f"mix.sources[2].paths[1]={str(tmp_path / 'nope')!r}: no such file or folder"]


def test_heldout_by_fraction_follows_seed_and_document_hash():
    import hashlib

    texts = [document("h", i, 15) for i in range(200)]
    for seed in (0, 1):
        rule = SplitRule("train", 0.25, seed)
        for text in texts:
            digest = hashlib.sha256(f"{seed}:".encode() + hashlib.sha256(text.encode()).digest()).digest()
            expected = "heldout" if int.from_bytes(digest[:8], "big") < 0.25 * 2**64 else "train"
            assert rule.split_of(text) == expected
    held = sum(SplitRule("train", 0.25, 0).split_of(t) == "heldout" for t in texts)
    assert 30 <= held <= 70  # about a quarter of 200


def test_packed_shards_match_streamings_own_encoder(tmp_path):
    import numpy as np
    from streaming import MDSWriter

    from pipelines.mix.pack import SplitWriter

    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, 60_000, size=n).astype(np.uint16) for n in (5, 40, 1, 77, 300, 13)]
    writer = SplitWriter(tmp_path / "ours", 16, "uint16", None, 1 << 9)
    for piece in pieces:
        writer.add(piece, 1)
    stats = writer.close()
    stream = np.concatenate(pieces)
    assert stats == {"documents": 6, "tokens": 436, "samples": 27, "dropped_tokens": 4}
    with MDSWriter(out=str(tmp_path / "theirs"), columns={"tokens": "ndarray:uint16"}, size_limit=1 << 9) as plain:
        for start in range(0, 27 * 16, 16):
            plain.write({"tokens": stream[start : start + 16]})
    ours = sorted(p.name for p in (tmp_path / "ours").iterdir())
    assert ours == sorted(p.name for p in (tmp_path / "theirs").iterdir()) and len(ours) > 2
    for name in ours:
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "theirs" / name).read_bytes()


def test_a_split_without_a_full_sample_writes_nothing(tmp_path):
    import numpy as np

    from pipelines.mix.pack import SplitWriter

    writer = SplitWriter(tmp_path / "none", 16, "uint16", None, 1 << 12)
    writer.add(np.arange(15, dtype=np.uint16), 2)
    assert writer.close() == {"documents": 2, "tokens": 15, "samples": 0, "dropped_tokens": 15}
    assert not (tmp_path / "none").exists()


def test_chunks_of_a_file_read_back_the_whole_file(corpus, tmp_path):
    from collections import Counter

    from pipelines.mix.documents import chunks_of, read_chunk

    groups = tmp_path / "groups.parquet"  # row groups of 5 rows: one chunk each
    texts = [document("d", i, 3) if i % 4 else "" for i in range(23)]
    pq.write_table(pa.table({"text": texts}), groups, row_group_size=5)
    jsonl = corpus["root"] / "general" / "train.jsonl"
    cases = [(jsonl, 1), (jsonl, 1000), (jsonl, 1 << 20), (corpus["root"] / "rephrase" / "part-00000.parquet", 1), (groups, 1)]
    for path, jsonl_bytes in cases:
        read, skipped = [], Counter()
        for chunk in chunks_of(str(path), jsonl_bytes):
            chunk_texts, chunk_skipped = read_chunk(chunk)
            read += chunk_texts
            skipped.update(chunk_skipped)
        assert (read, skipped) == read_documents(str(path)), (path.name, jsonl_bytes)
    assert [(c.start, c.stop) for c in chunks_of(str(groups))] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    assert len(chunks_of(str(jsonl), 1)) == 54  # one per line
    size = jsonl.stat().st_size
    assert [(c.start, c.stop) for c in chunks_of(str(jsonl))] == [(0, size)]
