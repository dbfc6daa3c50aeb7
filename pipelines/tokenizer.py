"""Training a byte-level BPE tokenizer with HF `tokenizers`, and loading any tokenizer folder (local or S3).

The saved folder loads with ``transformers.AutoTokenizer.from_pretrained`` (when local) and round-trips text
exactly (byte-level pre-tokenizer and decoder, no normalizer, no added prefix space).
"""

from __future__ import annotations

import sys

from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from spt import storage
from spt.config import TokenizerConfig
from spt.errors import InputError
from spt.storage import ownership, sha256_json

STAGE = "tokenizer"
TEXT_COLUMN = "text"


@dataclass(frozen=True)
class TokenizerLayout:
    """The files of a tokenizer folder; ``spt-tokenizer.json`` (fingerprint, vocabulary size, inputs) is
    written last and marks a complete folder."""

    root: str

    @property
    def tokenizer(self) -> str:
        return storage.join(self.root, "tokenizer.json")

    @property
    def hf_config(self) -> str:
        return storage.join(self.root, "tokenizer_config.json")

    @property
    def special_tokens(self) -> str:
        return storage.join(self.root, "special_tokens_map.json")

    @property
    def meta(self) -> str:
        return storage.join(self.root, "spt-tokenizer.json")


def parquet_files(inputs: list[str], where: str = "inputs") -> list[str]:
    """Expands files and folders into a sorted list of parquet files that have a ``text`` column.

    Raises:
        InputError: a missing path, a folder without parquet files, a file that is not parquet or has no
            ``text`` column; one line each.
    """
    files: list[str] = []
    problems = []
    for index, item in enumerate(inputs):
        label = f"{where}[{index}]={item!r}"
        if storage.is_folder(item):
            found = [entry.location for entry in storage.list_files(item, suffixes=(".parquet",))]
            if not found:
                problems.append(f"{label}: folder has no .parquet files")
        elif storage.is_file(item):
            found = [item]
        else:
            problems.append(f"{label}: no such file or folder")
            continue
        for location in found:
            problem = _text_column_problem(location)
            if problem:
                problems.append(f"{label}: {problem}" if location == item else f"{label}: {location}: {problem}")
        files.extend(found)
    if problems:
        raise InputError(problems)
    return files


def _text_column_problem(location: str) -> str | None:
    try:
        with storage.open_input(location) as handle:
            schema = pq.ParquetFile(handle).schema_arrow
            names = schema.names
    except (pa.ArrowException, OSError) as exc:
        return f"not a readable parquet file ({str(exc).splitlines()[0]})"
    if TEXT_COLUMN not in names:
        return f"no column {TEXT_COLUMN!r} (columns: {', '.join(names) or 'none'})"
    column_type = schema.field(TEXT_COLUMN).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        # Found here, before the output folder is claimed: training on it died with a traceback (issue 24).
        return f"column {TEXT_COLUMN!r} holds {column_type}, expected text (string)"
    return None


def check_documents(files: list[str]) -> None:
    """Refuses inputs without a single row: BPE would train on nothing and save a 258-token alphabet.

    Raises:
        InputError: ``tokenizer.inputs: no documents (<n> parquet files, 0 rows)``.
    """
    rows = 0
    for location in files:
        with storage.open_input(location) as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
    if rows == 0:
        raise InputError(f"tokenizer.inputs: no documents ({len(files)} parquet file(s), 0 rows)")


def iter_texts(files: list[str], max_documents: int | None = None) -> Iterator[str]:
    count = 0
    for location in files:
        table = storage.read_parquet(location, columns=[TEXT_COLUMN])
        for text in table.column(TEXT_COLUMN).to_pylist():
            if text:
                yield text
                count += 1
                if max_documents is not None and count >= max_documents:
                    return


def train_tokenizer(config: TokenizerConfig, force: bool = False) -> str:
    """Trains the tokenizer and saves it to ``config.output_dir``; a rerun with the same config and the same
    input content does nothing.

    Args:
        force: replace this stage's output of another config or other inputs.

    Returns:
        The tokenizer folder (as given in the config).

    Raises:
        InputError: bad inputs, or an output folder spt may not write; found before anything is written.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    layout = TokenizerLayout(config.output_dir)
    storage.check_writable(layout.root, "tokenizer.output_dir")
    files = parquet_files(config.inputs)
    check_documents(files)
    parts = {
        "config": sha256_json(config.model_dump(mode="json", exclude={"inputs", "output_dir"})),
        "inputs": sha256_json([storage.content_id(f) for f in files]),
    }
    fingerprint = sha256_json(parts)
    claim = ownership.claim(layout.root, STAGE, fingerprint, where="tokenizer.output_dir", parts=parts, force=force)
    if claim.state == "same" and (storage.read_json(layout.meta) or {}).get("fingerprint") == fingerprint:
        return config.output_dir
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
    if tokenizer.get_vocab_size() < config.vocab_size:
        print(f"warning: tokenizer: trained {tokenizer.get_vocab_size()} tokens of the vocab_size="
              f"{config.vocab_size} asked: the inputs hold too little text to merge more", file=sys.stderr)
    storage.delete(layout.meta)  # incomplete until the new meta file is written
    storage.write_text(layout.tokenizer, tokenizer.to_str(pretty=True))
    storage.write_json(layout.hf_config, {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": config.eos_token,
        "bos_token": config.eos_token,
        "pad_token": config.pad_token,
        "unk_token": None,
        "model_max_length": config.model_max_length,
        "clean_up_tokenization_spaces": False,
        "add_prefix_space": False,
    })
    storage.write_json(layout.special_tokens,
                       {"eos_token": config.eos_token, "bos_token": config.eos_token, "pad_token": config.pad_token})
    storage.write_json(layout.meta, {"fingerprint": fingerprint, "parts": parts,
                                     "vocab_size": tokenizer.get_vocab_size(), "files": files})
    return config.output_dir


def load_tokenizer(folder: str):
    """A `tokenizers.Tokenizer` from any HF tokenizer folder (ours or a model's, local or S3) with tokenizer.json.

    Returns:
        (tokenizer, eos_token_id)
    """
    from tokenizers import Tokenizer

    layout = TokenizerLayout(str(folder))
    try:
        text = storage.read_text(layout.tokenizer)
    except FileNotFoundError:
        raise InputError(f"tokenizer={str(folder)!r}: no tokenizer.json there (train one with `spt tokenizer`)") from None
    tokenizer = Tokenizer.from_str(text)
    settings = storage.read_json(layout.hf_config) or {}
    eos = settings.get("eos_token")
    if isinstance(eos, dict):
        eos = eos.get("content")
    eos_id = tokenizer.token_to_id(eos) if eos else None
    if eos_id is None:
        raise InputError(f"tokenizer={str(folder)!r}: no eos_token in tokenizer_config.json")
    return tokenizer, eos_id
