"""Byte-level BPE tokenizer: exact round trips, AutoTokenizer compatibility, reuse."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.tokenizer import load_tokenizer, train_tokenizer
from spt.config import TokenizerConfig

TRICKY = [
    "def f(x):\n\treturn x  # tabs, two spaces\n",
    "  leading spaces and trailing  ",
    "Unicode: naïve café — 東京 🚀 \u00a0nbsp",
    "",
    "<|endoftext|> looks special but is text here",
    "\r\nwindows\r\nlines",
]


@pytest.fixture(scope="module")
def corpus_texts():
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [(stdlib / name).read_text() for name in ("textwrap.py", "shlex.py", "this.py", "colorsys.py")]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, corpus_texts):
    root = tmp_path_factory.mktemp("tok")
    pq.write_table(pa.table({"text": corpus_texts}), root / "docs.parquet")
    config = TokenizerConfig(kind="tokenizer", inputs=[str(root)], output_dir=str(root / "tok"), vocab_size=600)
    return Path(train_tokenizer(config)), config


def test_round_trip_is_exact(tokenizer_dir, corpus_texts):
    tokenizer, eos_id = load_tokenizer(tokenizer_dir[0])
    assert tokenizer.get_vocab_size() == 600
    assert tokenizer.id_to_token(eos_id) == "<|endoftext|>"
    for text in corpus_texts + TRICKY:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert tokenizer.decode(ids, skip_special_tokens=False) == text
    # merges were learned: source code compresses well below one token per byte
    sample = corpus_texts[0]
    assert len(tokenizer.encode(sample).ids) < 0.5 * len(sample.encode())


def test_autotokenizer_loads_the_folder(tokenizer_dir, corpus_texts):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tokenizer_dir[0])
    tokenizer, eos_id = load_tokenizer(tokenizer_dir[0])
    assert hf.eos_token_id == eos_id
    for text in corpus_texts[:2] + TRICKY:
        ids = hf(text, add_special_tokens=False)["input_ids"]
        assert ids == tokenizer.encode(text, add_special_tokens=False).ids
        assert hf.decode(ids) == text


def test_rerun_with_same_config_keeps_the_folder(tokenizer_dir):
    folder, config = tokenizer_dir
    before = (folder / "tokenizer.json").stat().st_mtime_ns
    assert Path(train_tokenizer(config)) == folder
    assert (folder / "tokenizer.json").stat().st_mtime_ns == before


def test_training_is_deterministic(tmp_path, tokenizer_dir):
    folder, config = tokenizer_dir
    again = Path(train_tokenizer(config.model_copy(update={"output_dir": str(tmp_path / "again")})))
    assert (again / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()


def test_missing_tokenizer_folder_is_a_clear_error(tmp_path):
    from spt.errors import InputError

    with pytest.raises(InputError) as info:
        load_tokenizer(tmp_path)
    assert info.value.problems == [f"tokenizer={str(tmp_path)!r}: no tokenizer.json there (train one with `spt tokenizer`)"]


def test_changed_input_content_is_refused_and_force_retrains(tmp_path):
    from spt.errors import InputError

    texts = ["alpha beta gamma delta " * 20, "epsilon zeta eta theta " * 20]
    pq.write_table(pa.table({"text": texts}), tmp_path / "docs.parquet")
    config = TokenizerConfig(kind="tokenizer", inputs=[str(tmp_path / "docs.parquet")],
                             output_dir=str(tmp_path / "tok"), vocab_size=300)
    train_tokenizer(config)
    trained = (tmp_path / "tok" / "tokenizer.json").read_bytes()
    # the same file name and size, other content: not the tokenizer's input any more
    pq.write_table(pa.table({"text": [t.replace("alpha", "ALPHA") for t in texts]}), tmp_path / "docs.parquet")
    with pytest.raises(InputError) as info:
        train_tokenizer(config)
    assert info.value.problems[0].startswith(f"tokenizer.output_dir={str(tmp_path / 'tok')!r}: holds `spt tokenizer` "
                                             "output made before its inputs changed (fingerprint ")
    assert (tmp_path / "tok" / "tokenizer.json").read_bytes() == trained
    train_tokenizer(config, force=True)
    assert (tmp_path / "tok" / "tokenizer.json").read_bytes() != trained
    assert train_tokenizer(config) == str(tmp_path / "tok")  # now the same again: reused
