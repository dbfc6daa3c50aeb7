"""The `spt` command line. Thin: it parses arguments and calls library functions that tests call too."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from spt import __version__, environments
from spt.errors import InputError

#: Modules that add subcommands; each has ``register(subparsers)`` and sets ``func`` and ``environment`` defaults.
COMMAND_MODULES = [
    "cli.data",
    "cli.model",
    "cli.mix",
    "cli.rephrase",
    "cli.train",
    "cli.export",
    "cli.sweep",
    "cli.notebook",
    "cli.laws",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spt",
        description="Specialized pretraining: build corpora, rephrase, mix, train, and choose the domain fraction.",
    )
    parser.add_argument("--version", action="version", version=f"spt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one spt command; returns its exit code (2 for bad input, with one line per problem on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    environment = getattr(args, "environment", "any")
    try:
        # --dry-run only validates and prints, which every environment can do.
        if not getattr(args, "dry_run", False) and not environments.is_current(environment):
            # A stage may first do here what only this environment can; it returns the argv to run there.
            prepare = getattr(args, "prepare", None)
            return environments.run_in(environment, ["-m", "cli.main", *(prepare(args, argv) if prepare else argv)])
        return int(args.func(args) or 0)
    except InputError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
