"""`spt rephrase CONFIG`: synthetic rephrasings of seed documents with vLLM on Ray Data (generate environment)."""

from __future__ import annotations

import argparse
import json

from cli.common import add_config_arguments, open_config
from pipelines.rephrase.hf_input import handoff_overrides
from pipelines.rephrase.runner import run_rephrase
from spt.config import load_config
from spt.config.rephrase import resolve_styles
from spt.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    rephrase = subparsers.add_parser(
        "rephrase", help="rephrase documents into many styles with vLLM on Ray Data (resumable, exactly once)"
    )
    add_config_arguments(rephrase)
    rephrase.add_argument("--force", action="store_true",
                          help="replace output of another config, other inputs or another model in output.dir")
    rephrase.set_defaults(func=run, environment="generate", prepare=prepare)


def prepare(args: argparse.Namespace, argv: list[str]) -> list[str]:
    """The train environment's part, before the stage re-runs in the generate one: a Hugging Face dataset input
    is written as parquet there (see :mod:`pipelines.rephrase.hf_input`); returns the argv the stage runs with."""
    config = load_config(args.config, args.overrides, kind="rephrase")
    if config.input.hf is None:
        return argv

    handoff = handoff_overrides(config)
    return ["rephrase", args.config, *args.overrides, *handoff, *(["--force"] if args.force else [])]


def show_styles(config) -> None:
    """``spt rephrase --dry-run``: the resolved config with the styles in use and their weights."""
    styles, weights = resolve_styles(config)
    print(json.dumps({"config": config.model_dump(mode="json"),
                      "styles": {name: style.model_dump(mode="json") for name, style in styles.items()},
                      "weights": weights}, indent=2))


def run(args: argparse.Namespace) -> int:
    config = open_config(args, "rephrase", show=show_styles)
    if config is None:
        return 0
    if config.input.hf is not None:
        raise InputError(
            "rephrase.input.hf: Hugging Face datasets are read by the train environment, which hands them to this "
            "stage as parquet; start `spt rephrase` with the train environment's spt (with `spt submit`: "
            "--python <the train environment's python>)"
        )
    resolve_styles(config)  # a style problem is refused before Ray starts
    run_rephrase(config, force=args.force)
    return 0
