"""`spt train`, `spt finetune`, `spt interpolate`: Composer pretraining, domain finetuning, WiSE-FT."""

from __future__ import annotations

import argparse
import json

from cli.common import add_config_arguments, open_config, print_config
from training.interpolate import format_table, interpolate
from training.launcher import run_on_ray
from training.trainer import plan_run, read_mix_spec, run_training


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="pretrain a Llama-style model with Composer on a built mix")
    add_config_arguments(train)
    train.add_argument("--num-workers", type=int, default=None,
                       help="Ray Train workers (overrides num_workers); 1 trains in this process")
    train.add_argument("--force", action="store_true",
                       help="run_dir holds a run of another config or mix: delete its files and train from scratch")
    train.set_defaults(func=run_train, environment="train")

    finetune = subparsers.add_parser("finetune", help="finetune a pretrained run on domain data, with early stopping")
    add_config_arguments(finetune)
    finetune.add_argument("--force", action="store_true",
                          help="run_dir holds a finetune of another config or base run: delete it and start over")
    finetune.set_defaults(func=run_finetune, environment="train")

    interpolate = subparsers.add_parser("interpolate", help="WiSE-FT: evaluate weight interpolations of two runs")
    add_config_arguments(interpolate)
    interpolate.set_defaults(func=run_interpolate, environment="train")


def run_train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.num_workers is not None:
        overrides.append(f"num_workers={args.num_workers}")
    config = open_config(args, "train", overrides, show=show_train_plan)
    if config is None:
        return 0
    plan_run(config, read_mix_spec(config.mix))  # a mix the run cannot use is refused before any work
    if config.num_workers > 1:
        summary = run_on_ray(config, force=args.force)
    else:
        summary = run_training(config, force=args.force)
    print(json.dumps(summary, indent=2))
    return 0


def show_train_plan(config) -> None:
    """``spt train --dry-run``: the resolved config and the run's plan (batches, tokens, model size)."""
    plan = plan_run(config, read_mix_spec(config.mix))
    print_config(config)
    print(json.dumps({"plan": {"batches": plan.max_batches, "tokens": plan.tokens, "params": plan.params,
                               "tokens_per_batch": plan.tokens_per_batch,
                               "eval_every_batches": plan.eval_interval_batches,
                               "per_worker_batch": plan.per_worker_batch}}, indent=2))


def run_finetune(args: argparse.Namespace) -> int:
    config = open_config(args, "finetune")
    if config is None:
        return 0
    from training.finetune import run_finetune as finetune  # expensive: imports composer

    print(json.dumps(finetune(config, force=args.force), indent=2))
    return 0


def run_interpolate(args: argparse.Namespace) -> int:
    config = open_config(args, "interpolate")
    if config is None:
        return 0

    rows = interpolate(config)
    print(format_table(rows))
    print(f"table: {config.output}")
    return 0
