"""`spt notebook`: execute a notebook top to bottom with parameters; save the executed copy (and HTML)."""

from __future__ import annotations

import argparse
from pathlib import Path

from spt import storage
from spt.config.loader import load_yaml_text
from spt.errors import InputError
from spt.notebooks import check_parameters, execute_notebook, load_notebook, save_copies, stdout_lines
from spt.storage import ownership

STAGE = "notebook"
#: Executed copies are replaced on every run: the marker only keeps spt out of folders it did not make.
COPIES = "executed-copies"


def register(subparsers: argparse._SubParsersAction) -> None:
    notebook = subparsers.add_parser("notebook", help="execute a notebook with parameters and save executed copies")
    notebook.add_argument("notebook", help="the .ipynb file (e.g. notebooks/choose_repetition_fraction.ipynb)")
    notebook.add_argument("--out", required=True,
                          help="folder for the executed .ipynb and .html copies, local or s3:// (a path)")
    notebook.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                          help="a parameter, value parsed as YAML (e.g. -p budgets=[1e6,1e7]); repeatable")
    notebook.add_argument("--dry-run", action="store_true", help="print the parameters and exit")
    notebook.set_defaults(func=run_notebook, environment="train")


def parse_parameters(items: list[str]) -> dict:
    import yaml

    values = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.isidentifier():
            raise InputError(f"-p {item!r}: expected NAME=VALUE with a Python name")
        try:
            values[name] = load_yaml_text(raw)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InputError(f"-p {item!r}: the value is not valid YAML ({problem})") from None
    return values


def run_notebook(args: argparse.Namespace) -> int:
    notebook = load_notebook(args.notebook)
    parameters = parse_parameters(args.parameter)
    check_parameters(notebook, parameters)
    storage.check_output(args.out, "--out", probe=not args.dry_run)
    if args.dry_run:
        print(parameters)
        return 0
    ownership.claim(args.out, STAGE, COPIES, where="--out")  # before executing: a bad --out costs no run

    executed = execute_notebook(Path(args.notebook), parameters, workdir=Path.cwd())
    for line in stdout_lines(executed):
        if line.startswith(("delta_star ", "caveat:")):
            print(line)
    for copy in save_copies(executed, Path(args.notebook).stem, args.out):
        print(f"wrote {copy}")
    return 0
