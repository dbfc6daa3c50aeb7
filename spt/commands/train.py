"""`spt train`, `spt finetune`, `spt interpolate`: Composer pretraining, domain finetuning, WiSE-FT."""

from __future__ import annotations

import argparse
import json

from spt.commands import add_config_arguments, print_config
from spt.config import load_config


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
    config = load_config(args.config, overrides, kind="train")
    from training.trainer import plan_run, read_mix_spec

    plan = plan_run(config, read_mix_spec(config.mix))
    if args.dry_run:
        print_config(config)
        print(json.dumps({"plan": {"batches": plan.max_batches, "tokens": plan.tokens, "params": plan.params,
                                   "tokens_per_batch": plan.tokens_per_batch,
                                   "eval_every_batches": plan.eval_interval_batches,
                                   "per_worker_batch": plan.per_worker_batch}}, indent=2))
        return 0
    if config.num_workers > 1:
        from training.launcher import run_on_ray

        summary = run_on_ray(config, force=args.force)
    else:
        from training.trainer import run_training

        summary = run_training(config, force=args.force)
    print(json.dumps(summary, indent=2))
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides, kind="finetune")
    if args.dry_run:
        print_config(config)
        return 0
    from training.finetune import run_finetune as finetune

    print(json.dumps(finetune(config, force=args.force), indent=2))
    return 0


def run_interpolate(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides, kind="interpolate")
    if args.dry_run:
        print_config(config)
        return 0
    from training.interpolate import format_table, interpolate

    rows = interpolate(config)
    print(format_table(rows))
    print(f"table: {config.output}")
    return 0
