"""What the commands share: the config arguments, the opening (load, check outputs, dry run), printing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from operator import attrgetter

from pydantic import BaseModel

from spt import storage
from spt.config import load_config


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


#: Where each kind of config writes: (the field, whether it names a file); checked before any work.
OUTPUTS = {
    "corpora": ("output_dir", False), "tokenizer": ("output_dir", False), "mix": ("output_dir", False),
    "rephrase": ("output.dir", False), "train": ("run_dir", False), "finetune": ("run_dir", False),
    "interpolate": ("output", True), "sweep": ("output_dir", False),
}


def open_config(args: argparse.Namespace, kind: str, overrides: list[str] | None = None,
                show: Callable[[BaseModel], None] = print_config) -> BaseModel | None:
    """The opening every config command shares: load and validate CONFIG with its overrides, check that its
    output can be written (:func:`spt.storage.check_output`), and on ``--dry-run`` show it and stop.

    Args:
        args: The parsed arguments (``config``, ``overrides``, ``dry_run``).
        kind: The config kind the command takes.
        overrides: Overrides to use instead of ``args.overrides`` (a command may add its own).
        show: What ``--dry-run`` prints (default: the resolved config).

    Returns:
        The config, or None after a dry run (the command then returns 0).

    Raises:
        InputError: A malformed config or an output that cannot be written (nothing is written then).
    """
    config = load_config(args.config, args.overrides if overrides is None else overrides, kind=kind)
    field, is_file = OUTPUTS[kind]
    storage.check_output(attrgetter(field)(config), f"{kind}.{field}", file=is_file, probe=not args.dry_run)
    if args.dry_run:
        show(config)
        return None
    return config
