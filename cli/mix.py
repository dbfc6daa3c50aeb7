"""`spt mix plan` and `spt mix build`: a declarative data mix, shown in tokens and epochs, then built."""

from __future__ import annotations

import argparse

from cli.common import add_config_arguments, open_config, print_config
from pipelines.mix.build import build_mix, write_plan
from pipelines.mix.plan import make_plan
from pipelines.mix.report import format_plan

FORCE_HELP = "replace a mix folder of the same name built from another config or other input content"


def register(subparsers: argparse._SubParsersAction) -> None:
    mix = subparsers.add_parser("mix", help="plan and build a token-exact data mix (MDS shards + Streaming streams)")
    actions = mix.add_subparsers(dest="mix_command", metavar="ACTION", required=True)

    plan = actions.add_parser(
        "plan", help="count tokens (cached) and print per source: fraction, tokens asked, unique tokens, epochs"
    )
    add_config_arguments(plan)
    plan.add_argument("--force", action="store_true", help=FORCE_HELP)
    plan.set_defaults(func=run_plan, environment="train")

    build = actions.add_parser(
        "build", help="tokenize with Ray Data, write MDS shards per source (reused) and the mix's streams spec"
    )
    add_config_arguments(build)
    build.add_argument("--force", action="store_true", help=FORCE_HELP)
    build.set_defaults(func=run_build, environment="train")


def show_plan(config) -> None:
    """``--dry-run``: the token plan (counted, checked; nothing written), then the resolved config. A mix that
    `spt mix plan` refuses is refused here too."""
    plan = make_plan(config)
    print_config(config)
    print(format_plan(plan))


def run_plan(args: argparse.Namespace) -> int:
    config = open_config(args, "mix", show=show_plan)
    if config is None:
        return 0

    plan, location = write_plan(config, force=args.force)
    print(format_plan(plan))
    print(f"plan written: {location}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    config = open_config(args, "mix", show=show_plan)
    if config is None:
        return 0

    report = build_mix(config, force=args.force)
    print(format_plan(report["plan"]))
    built = ", ".join(report["built"]) or "none"
    reused = ", ".join(report["reused"]) or "none"
    print(f"sources built: {built}; reused: {reused}")
    print(f"streams spec: {report['spec']}")
    return 0
