"""CLI subcommands, one module per group. Each module has ``register(subparsers)``."""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import BaseModel


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every config-driven command shares: CONFIG, overrides and --dry-run."""
    parser.add_argument("config", metavar="CONFIG", help="YAML config file")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="override config values, e.g. seed=3 domain.max_documents=50"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")


def print_config(config: BaseModel, file=None) -> None:
    """Prints a resolved config as YAML-compatible JSON (what --dry-run shows)."""
    print(json.dumps(config.model_dump(mode="json"), indent=2), file=file or sys.stdout)
