"""`spt notebook`: execute a notebook top to bottom with parameters; save the executed copy (and HTML)."""

from __future__ import annotations

import argparse
from pathlib import Path

from spt.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    notebook = subparsers.add_parser("notebook", help="execute a notebook with parameters and save executed copies")
    notebook.add_argument("notebook", help="the .ipynb file (e.g. notebooks/choose_repetition_fraction.ipynb)")
    notebook.add_argument("--out", required=True, help="folder for the executed .ipynb and .html copies")
    notebook.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                          help="a parameter, value parsed as YAML (e.g. -p budgets=[1e6,1e7]); repeatable")
    notebook.add_argument("--dry-run", action="store_true", help="print the parameters and exit")
    notebook.set_defaults(func=run_notebook, environment="train")


def parse_parameters(items: list[str]) -> dict:
    from spt.config.loader import load_yaml_text

    values = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.isidentifier():
            raise InputError(f"-p {item!r}: expected NAME=VALUE with a Python name")
        values[name] = load_yaml_text(raw)
    return values


def run_notebook(args: argparse.Namespace) -> int:
    path = Path(args.notebook)
    if not path.is_file():
        raise InputError(f"{args.notebook}: no such notebook")
    parameters = parse_parameters(args.parameter)
    if args.dry_run:
        print(parameters)
        return 0
    from spt.notebooks import execute_notebook, save_copies, stdout_lines

    notebook = execute_notebook(path, parameters, workdir=Path.cwd())
    for line in stdout_lines(notebook):
        if line.startswith(("delta_star ", "caveat:")):
            print(line)
    for copy in save_copies(notebook, path.stem, args.out):
        print(f"wrote {copy}")
    return 0
