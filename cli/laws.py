"""`spt fit`, `spt predict`, `spt optimal-fraction`, `spt decide`, `spt compute-optimal` and `spt plot`: thin
wrappers over the library. This module declares the arguments; :mod:`cli.fit` and :mod:`cli.decide` run
them.

Recommended invocation for a sweep (what the quickstart runs):

    spt fit --law spt --data SWEEP_FOLDER --starts 64 --bootstrap 200 --seed 0 --out fit.json
    spt optimal-fraction --fit fit.json --tokens 1e6 1e7 [--lines]
"""

from __future__ import annotations

import argparse

from cli.decide import run_compute_optimal, run_decide, run_optimal_fraction, run_plot
from cli.fit import run_fit, run_predict
from scaling_laws.laws.registry import LAWS


def _output_options(parser: argparse.ArgumentParser, replaced: str, dry_run: str) -> None:
    """``--force`` (replace ``replaced`` that spt did not write, never an input) and ``--dry-run``."""
    parser.add_argument("--force", action="store_true", help=f"replace {replaced} that spt did not write (never an "
                        "input)")
    parser.add_argument("--dry-run", action="store_true", help=dry_run)


def _fit_parser(subparsers) -> None:
    fit = subparsers.add_parser("fit", help="fit a scaling law (spt, chinchilla, muennighoff, ...) to a sweep or CSV")
    fit.add_argument("--law", required=True, choices=[*LAWS, "auto"],
                     help="law form; spt becomes spt-n when the data has several model sizes in 'params'; auto: "
                          "score spt, spt-regularized and spt-epochs by rolling-origin forecasts inside the pilot "
                          "and fit the best")
    fit.add_argument("--data", required=True, type=str,
                     help="CSV with the law's columns, or a sweep output folder, local or s3:// (its curves.csv: valid budgets only, "
                          "fraction := domain_fraction, loss := domain_loss, train loss := domain_train_loss)")
    fit.add_argument("--fraction-column", metavar="NAME", help="CSV column to use as the law's fraction "
                     "(domain_fraction for a sweep's curves.csv)")
    fit.add_argument("--out", type=str,
                     help="fit JSON to write, local or s3:// (checked for writability before fitting)")
    fit.add_argument("--bootstrap", type=int, metavar="K",
                     help="bootstrap refits for intervals (default: 200 for spt laws, 0 for the others)")
    fit.add_argument("--bootstrap-method", choices=("auto", "runs", "points"), default="auto",
                     help="runs: simulated run offsets and correlated noise along runs (default for evaluations "
                          "of runs); points: resample single rows (right only when each row is its own run)")
    fit.add_argument("--level", type=float, default=0.95, help="coverage of the intervals (default 0.95)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the start subset and the bootstrap")
    fit.add_argument("--loss-column", help="column to fit (default: loss; gain for finetune-gain; domain_loss "
                     "for a sweep)")
    fit.add_argument("--fitted", choices=("auto", "train+gap", "held-out"), default="auto",
                     help="spt: fit the train loss and the gap separately (auto: when domain_train_loss is there) "
                          "or the held-out loss alone")
    fit.add_argument("--objective", choices=("huber", "mse"), default="huber",
                     help="sum of Huber losses (default) or mean squared error (the SPT paper's choice)")
    fit.add_argument("--residuals", choices=("log", "linear"), help="residual space (default: the law's, mostly log)")
    fit.add_argument("--huber-delta", type=float,
                     help="Huber transition (default: 1e-2 for spt fits of evaluations, 1e-3 otherwise)")
    fit.add_argument("--starts", type=int, help="use a random subset of this many grid starts")
    fit.add_argument("--no-staged", action="store_true", help="skip the staged start (per-fraction, then joint)")
    fit.add_argument("--fix", type=str, metavar="FIT.json",
                     help="muennighoff: hold E, A, B, alpha, beta at this fit's values")
    fit.add_argument("--holdout", type=float, metavar="SHARE",
                     help="extrapolation check: also fit without the largest SHARE of budgets and report the error")
    fit.add_argument("--holdout-tokens-above", type=float, metavar="T",
                     help="spt validation: refit without evaluations beyond T tokens and print the error on each")
    fit.add_argument("--holdout-fractions", type=float, nargs="+", metavar="DELTA",
                     help="spt validation: refit without these domain fractions and print the error on each")
    _output_options(fit, "an existing --out file", "check the data and print the plan; fit nothing")

    fit.set_defaults(func=run_fit, environment="any")


def _predict_parser(subparsers) -> None:
    pred = subparsers.add_parser("predict", help="add a predicted_loss column to a CSV from a fit JSON")
    pred.add_argument("--fit", required=True, type=str, help="fit JSON")
    pred.add_argument("--data", required=True, type=str, help="CSV with the law's input columns, or a sweep folder")
    pred.add_argument("--fraction-column", metavar="NAME", help="CSV column to use as the law's fraction")
    pred.add_argument("--out", type=str, help="CSV to write (default: print to stdout)")
    _output_options(pred, "an existing --out file", "check the inputs and print a summary; write nothing")

    pred.set_defaults(func=run_predict, environment="any")


def _decision_parsers(subparsers) -> None:
    best = subparsers.add_parser("optimal-fraction", help="print delta*, its interval and the compute multiplier")
    best.add_argument("--fit", required=True, type=str, help="fit JSON of law spt or spt-n")
    best.add_argument("--tokens", required=True, type=float, nargs="+", metavar="T", help="token budgets")
    best.add_argument("--min-fraction", type=float, help="smallest fraction searched (default: the fitted range)")
    best.add_argument("--max-fraction", type=float, help="largest fraction searched (default: the fitted range)")
    best.add_argument("--widen", action="store_true", help="search [0, 1] instead of the fitted fractions")
    best.add_argument("--params", type=float, help="model size N (parameters), for spt-n fits")
    best.add_argument("--basis", choices=("auto", "post-finetune", "pre-finetune"), default="auto",
                      help="decide on the loss after fine-tuning (auto: when every swept fraction was fine-tuned)")
    best.add_argument("--domain-tokens", type=float, metavar="D",
                      help="size |D| of your domain set (tokens): also print the epochs T*delta*/|D|")
    output = best.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--lines", action="store_true", help="print one 'delta_star tokens=... value=... low=... "
                        "high=...' line per budget (the notebook prints the same lines)")
    best.add_argument("--dry-run", action="store_true", help="print the resolved search; compute nothing")
    best.set_defaults(func=run_optimal_fraction, environment="any")

    _decide_parser(subparsers)

    chin = subparsers.add_parser("compute-optimal", help="compute-optimal model size and tokens for FLOP budgets")
    chin.add_argument("--fit", required=True, type=str, help="fit JSON of law chinchilla or muennighoff")
    chin.add_argument("--flops", required=True, type=float, nargs="+", metavar="C", help="FLOP budgets (6 N D)")
    chin.add_argument("--json", action="store_true", help="print JSON instead of a table")
    chin.add_argument("--dry-run", action="store_true", help="print the resolved arguments; compute nothing")
    chin.set_defaults(func=run_compute_optimal, environment="any")

    plot = subparsers.add_parser("plot", help="plot a fit: loss curves, delta* vs budget, residuals (PNG and SVG)")
    plot.add_argument("--fit", required=True, type=str, help="fit JSON")
    plot.add_argument("--data", required=True, type=str, help="the CSV (or sweep folder) that was fitted")
    plot.add_argument("--fraction-column", metavar="NAME", help="CSV column to use as the law's fraction")
    plot.add_argument("--out-dir", required=True, type=str, help="folder for the figures, local or s3://")
    plot.add_argument("--tokens", type=float, nargs="+", metavar="T", help="budgets of the delta* plot")
    plot.add_argument("--widen", action="store_true", help="search delta* over [0, 1]")
    plot.add_argument("--params", type=float, help="model size N for spt-n fits")
    _output_options(plot, "figures in --out-dir", "check the inputs and list the figures; write nothing")
    plot.set_defaults(func=run_plot, environment="any")


def _decide_parser(subparsers) -> None:
    decide = subparsers.add_parser("decide", help="SPT or finetune, at which model size: training plus serving "
                                   "FLOPs, the cheapest option and the served-token break-even")
    decide.add_argument("--fit", required=True, type=str, help="fit JSON of law spt-n (several model sizes)")
    decide.add_argument("--domain-tokens", required=True, type=float, metavar="D",
                        help="size |D| of the domain set (tokens); the default finetune is one epoch of it")
    goal = decide.add_mutually_exclusive_group(required=True)
    goal.add_argument("--tokens", type=float, metavar="T", help="pretraining budget of every option (tokens)")
    goal.add_argument("--target-loss", type=float, metavar="L",
                      help="domain loss to reach (nats/token): each option pretrains the fewest tokens reaching it")
    decide.add_argument("--serve-tokens", required=True, type=float, metavar="S",
                        help="tokens the model will serve (2 N FLOPs each)")
    decide.add_argument("--sizes", type=float, nargs="+", metavar="N",
                        help="model sizes compared (parameters; default: the smallest and largest fitted)")
    decide.add_argument("--finetune-tokens", type=float, metavar="T_FT",
                        help="finetuning tokens of the finetune options (default: --domain-tokens)")
    decide.add_argument("--finetune-gain", type=float, metavar="G",
                        help="loss drop of the finetune after delta = 0 pretraining (nats/token), at every size "
                             "and budget; required (a size-aware fit records no fine-tune gains per size)")
    decide.add_argument("--out", type=str, help="decision JSON to write, local or s3://")
    decide.add_argument("--plot", type=str, help="figure of total cost vs served tokens (.png or .svg)")
    _output_options(decide, "an existing --out or --plot file", "check the inputs and print them; compute nothing")
    decide.set_defaults(func=run_decide, environment="any")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the scaling-law subcommands to the ``spt`` parser."""
    _fit_parser(subparsers)
    _predict_parser(subparsers)
    _decision_parsers(subparsers)
