"""`spt corpora` and `spt tokenizer`: the offline sample corpora and the tokenizer."""

from __future__ import annotations

import argparse

from cli.common import add_config_arguments, open_config
from pipelines.corpora import build_corpora, format_summary
from pipelines.tokenizer import load_tokenizer, train_tokenizer

FORCE_HELP = "replace this command's earlier output of another config or other inputs in the output folder"


def register(subparsers: argparse._SubParsersAction) -> None:
    corpora = subparsers.add_parser(
        "corpora", help="build the domain (Python source) and general (English) sample corpora from this machine"
    )
    add_config_arguments(corpora)
    corpora.add_argument("--force", action="store_true", help=FORCE_HELP)
    corpora.set_defaults(func=run_corpora, environment="any")

    tokenizer = subparsers.add_parser("tokenizer", help="train a byte-level BPE tokenizer on parquet corpora")
    add_config_arguments(tokenizer)
    tokenizer.add_argument("--force", action="store_true", help=FORCE_HELP)
    tokenizer.set_defaults(func=run_tokenizer, environment="any")


def run_corpora(args: argparse.Namespace) -> int:
    config = open_config(args, "corpora")
    if config is None:
        return 0

    summary = build_corpora(config, force=args.force)
    print(format_summary(summary))
    state = "already built, reused" if summary["reused"] else "written"
    print(f"corpora {state}: {config.output_dir}")
    return 0


def run_tokenizer(args: argparse.Namespace) -> int:
    config = open_config(args, "tokenizer")
    if config is None:
        return 0

    folder = train_tokenizer(config, force=args.force)
    tokenizer, _ = load_tokenizer(folder)
    print(f"tokenizer: {tokenizer.get_vocab_size()} tokens in {folder}")
    return 0
