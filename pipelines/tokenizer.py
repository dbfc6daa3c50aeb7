"""Training a byte-level BPE tokenizer with HF `tokenizers`, and loading any tokenizer folder.

The saved folder loads with ``transformers.AutoTokenizer.from_pretrained`` and round-trips text exactly
(byte-level pre-tokenizer and decoder, no normalizer, no added prefix space).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from pipelines.io import atomic_directory, read_json, sha256_json
from spt.config import TokenizerConfig
from spt.errors import InputError


def parquet_files(inputs: list[str]) -> list[Path]:
    """Expands files and folders into a sorted list of parquet files; a missing path is an error."""
    files: list[Path] = []
    problems = []
    for index, item in enumerate(inputs):
        path = Path(item)
        if path.is_dir():
            found = sorted(path.rglob("*.parquet"))
            if not found:
                problems.append(f"inputs[{index}]={item!r}: folder has no .parquet files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"inputs[{index}]={item!r}: no such file or folder")
    if problems:
        raise InputError(problems)
    return files


def iter_texts(files: list[Path], max_documents: int | None = None) -> Iterator[str]:
    count = 0
    for path in files:
        table = pq.read_table(path, columns=["text"])
        for text in table.column("text").to_pylist():
            if text:
                yield text
                count += 1
                if max_documents is not None and count >= max_documents:
                    return


def train_tokenizer(config: TokenizerConfig) -> Path:
    """Trains the tokenizer and saves it to ``config.output_dir``; a rerun with the same config does nothing.

    Returns:
        The tokenizer folder.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out = Path(config.output_dir)
    files = parquet_files(config.inputs)
    fingerprint = sha256_json(
        {"config": config.model_dump(mode="json"), "inputs": [[str(f), f.stat().st_size] for f in files]}
    )
    if (read_json(out / "spt-tokenizer.json") or {}).get("fingerprint") == fingerprint:
        return out
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=[config.eos_token, config.pad_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(iter_texts(files, config.max_documents), trainer)
    with atomic_directory(out) as tmp:
        tokenizer.save(str(tmp / "tokenizer.json"))
        hf_config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": config.eos_token,
            "bos_token": config.eos_token,
            "pad_token": config.pad_token,
            "unk_token": None,
            "model_max_length": config.model_max_length,
            "clean_up_tokenization_spaces": False,
            "add_prefix_space": False,
        }
        (tmp / "tokenizer_config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        special = {"eos_token": config.eos_token, "bos_token": config.eos_token, "pad_token": config.pad_token}
        (tmp / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
        meta = {"fingerprint": fingerprint, "vocab_size": tokenizer.get_vocab_size(), "files": [str(f) for f in files]}
        (tmp / "spt-tokenizer.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_tokenizer(folder: str | Path):
    """A `tokenizers.Tokenizer` from any HF tokenizer folder (ours or a model's) that has ``tokenizer.json``.

    Returns:
        (tokenizer, eos_token_id)
    """
    from tokenizers import Tokenizer

    folder = Path(folder)
    path = folder / "tokenizer.json"
    if not path.exists():
        raise InputError(f"tokenizer={str(folder)!r}: no tokenizer.json there (train one with `spt tokenizer`)")
    tokenizer = Tokenizer.from_file(str(path))
    settings = read_json(folder / "tokenizer_config.json") or {}
    eos = settings.get("eos_token")
    if isinstance(eos, dict):
        eos = eos.get("content")
    eos_id = tokenizer.token_to_id(eos) if eos else None
    if eos_id is None:
        raise InputError(f"tokenizer={str(folder)!r}: no eos_token in tokenizer_config.json")
    return tokenizer, eos_id
