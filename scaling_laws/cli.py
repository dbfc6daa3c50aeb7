"""`spt fit`, `spt predict`, `spt optimal-fraction`, `spt compute-optimal` and `spt plot`: thin wrappers over the
library functions in :mod:`scaling_laws.fitting`, :mod:`scaling_laws.decisions` and :mod:`scaling_laws.plots`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from scaling_laws.data import check_frame, resolve_law, summarize
from scaling_laws.laws import Muennighoff
from scaling_laws.objective import Objective
from scaling_laws.registry import LAWS
from scaling_laws.result import FitResult, write_atomic
from scaling_laws.sweeps import FitData, read_fit_data
from spt.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the scaling-law subcommands to the ``spt`` parser."""
    fit = subparsers.add_parser("fit", help="fit a scaling law (chinchilla, muennighoff, spt) to a CSV of runs")
    fit.add_argument("--law", required=True, choices=list(LAWS),
                     help="law form; spt becomes spt-n when the data has several model sizes in 'params'")
    fit.add_argument("--data", required=True, type=Path,
                     help="CSV with the law's columns, or a sweep output folder (fits its curves.csv with "
                          "fraction := domain_fraction, loss := domain_loss)")
    fit.add_argument("--fraction-column", metavar="NAME", help="CSV column to use as the law's fraction "
                     "(domain_fraction for a sweep's curves.csv)")
    fit.add_argument("--out", type=Path, help="fit JSON to write")
    fit.add_argument("--bootstrap", type=int, default=0, metavar="K", help="bootstrap refits for intervals")
    fit.add_argument("--seed", type=int, default=0, help="seed of the start subset and the bootstrap")
    fit.add_argument("--loss-column", help="column to fit (default: loss; gain for finetune-gain)")
    fit.add_argument("--objective", choices=("huber", "mse"), default="huber",
                     help="sum of Huber losses (default) or mean squared error (the SPT paper's choice)")
    fit.add_argument("--residuals", choices=("log", "linear"), help="residual space (default: the law's, mostly log)")
    fit.add_argument("--huber-delta", type=float, default=1e-3, help="Huber transition (default 1e-3)")
    fit.add_argument("--starts", type=int, help="use a random subset of this many grid starts")
    fit.add_argument("--no-staged", action="store_true", help="skip the staged start (per-fraction, then joint)")
    fit.add_argument("--fix", type=Path, metavar="FIT.json",
                     help="muennighoff: hold E, A, B, alpha, beta at this fit's values")
    fit.add_argument("--holdout", type=float, metavar="SHARE",
                     help="extrapolation check: also fit without the largest SHARE of budgets and report the error")
    fit.add_argument("--dry-run", action="store_true", help="check the data and print the plan; fit nothing")
    fit.set_defaults(func=run_fit, environment="any")

    pred = subparsers.add_parser("predict", help="add a predicted_loss column to a CSV from a fit JSON")
    pred.add_argument("--fit", required=True, type=Path, help="fit JSON")
    pred.add_argument("--data", required=True, type=Path, help="CSV with the law's input columns, or a sweep folder")
    pred.add_argument("--fraction-column", metavar="NAME", help="CSV column to use as the law's fraction")
    pred.add_argument("--out", type=Path, help="CSV to write (default: print to stdout)")
    pred.add_argument("--dry-run", action="store_true", help="check the inputs and print a summary; write nothing")
    pred.set_defaults(func=run_predict, environment="any")

    best = subparsers.add_parser("optimal-fraction", help="print delta*, its interval and the compute multiplier")
    best.add_argument("--fit", required=True, type=Path, help="fit JSON of law spt or spt-n")
    best.add_argument("--tokens", required=True, type=float, nargs="+", metavar="T", help="token budgets")
    best.add_argument("--min-fraction", type=float, help="smallest fraction searched (default: the fitted range)")
    best.add_argument("--max-fraction", type=float, help="largest fraction searched (default: the fitted range)")
    best.add_argument("--widen", action="store_true", help="search [0, 1] instead of the fitted fractions")
    best.add_argument("--params", type=float, help="model size N (parameters), for spt-n fits")
    best.add_argument("--domain-tokens", type=float, metavar="D",
                      help="size |D| of your domain set (tokens): also print the epochs T*delta*/|D|")
    output = best.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--lines", action="store_true", help="print one 'delta_star tokens=... value=... low=... "
                        "high=...' line per budget (the notebook prints the same lines)")
    best.add_argument("--dry-run", action="store_true", help="print the resolved search; compute nothing")
    best.set_defaults(func=run_optimal_fraction, environment="any")

    chin = subparsers.add_parser("compute-optimal", help="compute-optimal model size and tokens for FLOP budgets")
    chin.add_argument("--fit", required=True, type=Path, help="fit JSON of law chinchilla or muennighoff")
    chin.add_argument("--flops", required=True, type=float, nargs="+", metavar="C", help="FLOP budgets (6 N D)")
    chin.add_argument("--json", action="store_true", help="print JSON instead of a table")
    chin.add_argument("--dry-run", action="store_true", help="print the resolved arguments; compute nothing")
    chin.set_defaults(func=run_compute_optimal, environment="any")

    plot = subparsers.add_parser("plot", help="plot a fit: loss curves, delta* vs budget, residuals (PNG and SVG)")
    plot.add_argument("--fit", required=True, type=Path, help="fit JSON")
    plot.add_argument("--data", required=True, type=Path, help="the CSV (or sweep folder) that was fitted")
    plot.add_argument("--fraction-column", metavar="NAME", help="CSV column to use as the law's fraction")
    plot.add_argument("--out-dir", required=True, type=Path, help="folder for the figures")
    plot.add_argument("--tokens", type=float, nargs="+", metavar="T", help="budgets of the delta* plot")
    plot.add_argument("--widen", action="store_true", help="search delta* over [0, 1]")
    plot.add_argument("--params", type=float, help="model size N for spt-n fits")
    plot.add_argument("--dry-run", action="store_true", help="check the inputs and list the figures; write nothing")
    plot.set_defaults(func=run_plot, environment="any")


def _print_arguments(args: argparse.Namespace) -> None:
    for key, value in sorted(vars(args).items()):
        if key not in ("func", "environment", "dry_run"):
            print(f"  {key}: {value}")


def _read_data(args: argparse.Namespace) -> FitData:
    """``--data`` (a CSV or a sweep folder); notes on what a sweep folder left out go to stderr."""
    data = read_fit_data(args.data, args.fraction_column)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    return data


def _fit_options(args: argparse.Namespace, law, default_loss: str | None = None) -> dict:
    fixed = None
    if args.fix is not None:
        if not isinstance(law, Muennighoff):
            raise InputError(f"--fix applies to --law muennighoff, not {law.name}")
        base = FitResult.load(args.fix)
        missing = [name for name in Muennighoff.base_names if name not in base.params]
        if missing:
            raise InputError(f"{args.fix}: fit of law {base.law} lacks {', '.join(missing)}")
        fixed = {name: base.params[name] for name in Muennighoff.base_names}
    if args.bootstrap < 0:
        raise InputError(f"--bootstrap {args.bootstrap}: must be 0 or more")
    if args.starts is not None and args.starts < 1:
        raise InputError(f"--starts {args.starts}: must be 1 or more")
    if not args.huber_delta > 0:
        raise InputError(f"--huber-delta {args.huber_delta}: must be positive")
    objective = Objective(kind=args.objective, huber_delta=args.huber_delta,
                          residuals=args.residuals or law.residuals)
    return {"loss_column": args.loss_column or default_loss or law.target, "objective": objective, "fixed": fixed,
            "n_starts": args.starts, "staged": not args.no_staged, "seed": args.seed, "source": str(args.data)}


def run_fit(args: argparse.Namespace) -> int:
    """`spt fit`: checks the table, fits (optionally bootstraps and checks extrapolation), writes the JSON."""
    from scaling_laws.fitting import extrapolation_check, fit

    data = _read_data(args)
    table = data.table
    law = resolve_law(args.law, table)
    options = _fit_options(args, law, data.loss_column)
    free = len(law.params) - len(options["fixed"] or {})
    checked = check_frame(table, law, options["loss_column"], residuals=options["objective"].residuals,
                          free_params=free, source=str(args.data))
    if args.holdout is not None and not 0.0 < args.holdout < 1.0:
        raise InputError(f"--holdout {args.holdout}: must be in (0, 1)")
    if args.dry_run:
        print(f"spt fit (dry run): law {law.name}, {free} free parameters")
        _print_arguments(args)
        print("\n".join(summarize(checked)))
        grid = np.prod([len(p.grid) for p in law.params if p.name not in (options["fixed"] or {})])
        kept = getattr(law, "keep_starts", None)
        note = f" (the best {kept} by least squares become starts)" if kept and grid > kept else ""
        print(f"start grid: {grid} points{note}; nothing fitted or written")
        return 0
    result = fit(table, law, bootstrap_replicates=args.bootstrap, **options)
    if args.holdout is not None:
        result.extrapolation = extrapolation_check(table, law, holdout=args.holdout, **options)
    print(format_fit(result))
    if args.out is not None:
        result.save(args.out)
        print(f"wrote {args.out}")
    return 0


def format_fit(result: FitResult) -> str:
    """A human-readable summary of a fit."""
    s = result.settings
    lines = [f"law {result.law}: {result.n_points} points, {s.get('n_starts')} starts, {s.get('seconds')} s; "
             f"objective {s.get('objective')} ({s.get('residuals')} residuals) = {result.objective:.6g}"
             + ("" if s.get("converged", True) else " (best start did not converge)")]
    intervals = result.intervals or {}
    for name, value in result.params.items():
        note = " (fixed)" if name in result.fixed else ""
        if name in intervals and not note:
            low, high = intervals[name]
            note = f"  [{low:.6g}, {high:.6g}]"
        lines.append(f"  {name:<10} {value:>14.6g}{note}")
    if intervals:
        lines.append(f"  (intervals: central {100 * result.level:g}% of {s.get('bootstrap')} bootstrap refits)")
    if result.extrapolation:
        e = result.extrapolation
        lines.append(f"extrapolation: fit on {e['n_fit']} rows with {e['budget']} <= {e['threshold']:.4g}; "
                     f"on the {e['n_holdout']} larger: mean |relative error| {100 * e['mean_abs_rel_error']:.3g}%, "
                     f"max {100 * e['max_abs_rel_error']:.3g}%")
    return "\n".join(lines)


def run_predict(args: argparse.Namespace) -> int:
    """`spt predict`: the table with ``predicted_loss`` (and its band) as CSV, to ``--out`` or stdout."""
    from scaling_laws.fitting import predict_table

    result = FitResult.load(args.fit)
    table = _read_data(args).table
    checked = check_frame(table, result.form, target=None, source=str(args.data))
    if args.dry_run:
        print(f"spt predict (dry run): law {result.law}")
        _print_arguments(args)
        print("\n".join(summarize(checked)))
        print("nothing written")
        return 0
    out = predict_table(result, table, source=str(args.data))
    if args.out is None:
        out.to_csv(sys.stdout, index=False)
    else:
        write_atomic(args.out, out.to_csv(index=False))
        print(f"wrote {args.out} ({len(out)} rows)")
    return 0


def _note_extrapolation(result: FitResult, column: str, values) -> None:
    low, high = result.data_ranges.get(column, [-np.inf, np.inf])
    for value in values:
        if not low <= value <= high:
            print(f"note: {column}={value:g} is outside the fitted range [{low:g}, {high:g}]", file=sys.stderr)


def run_optimal_fraction(args: argparse.Namespace) -> int:
    """`spt optimal-fraction`: delta*, its interval and the compute multiplier per budget."""
    from scaling_laws.decisions import fraction_range, optimal_fraction

    result = FitResult.load(args.fit)
    if "fraction" not in result.form.inputs:
        raise InputError(f"{args.fit}: optimal-fraction needs an spt fit; this fit is law {result.law}")
    low, high = fraction_range(result, args.min_fraction, args.max_fraction, args.widen)
    if "params" in result.form.inputs and args.params is None:
        raise InputError(f"law {result.law} needs --params (the model size, in parameters)")
    if args.domain_tokens is not None and not (np.isfinite(args.domain_tokens) and args.domain_tokens > 0):
        raise InputError(f"--domain-tokens {args.domain_tokens:g}: must be a positive number of tokens")
    if args.dry_run:
        print(f"spt optimal-fraction (dry run): law {result.law}, fractions searched [{low:g}, {high:g}]")
        _print_arguments(args)
        return 0
    _note_extrapolation(result, "tokens", args.tokens)
    choices = [optimal_fraction(result, t, low=low, high=high, params=args.params) for t in args.tokens]
    if args.json:
        print(json.dumps([c.to_dict() for c in choices], indent=2))
        return 0
    if args.lines:
        print("\n".join(c.line(args.domain_tokens) for c in choices))
        return 0
    level = f"{100 * result.level:g}%"
    print(f"law {result.law}: fractions searched [{low:g}, {high:g}]" +
          (f", model size {args.params:g}" if args.params else ""))
    epochs = args.domain_tokens is not None
    print(f"{'tokens':>10}  {'delta*':>8}  {level + ' interval':>20}  {'loss':>8}  {'multiplier':>10}  "
          f"{level + ' interval':>20}" + (f"  {'epochs':>8}" if epochs else ""))
    for c in choices:
        interval = f"[{c.fraction_interval[0]:.4g}, {c.fraction_interval[1]:.4g}]" if c.fraction_interval else "-"
        spread = (f"[{c.multiplier_interval[0]:.3g}x, {c.multiplier_interval[1]:.3g}x]"
                  if c.multiplier_interval else "-")
        print(f"{c.tokens:>10.4g}  {c.fraction:>8.4g}  {interval:>20}  {c.loss:>8.4f}  "
              f"{c.compute_multiplier:>9.3g}x  {spread:>20}"
              + (f"  {c.domain_epochs(args.domain_tokens):>8.4g}" if epochs else ""))
    return 0


def run_compute_optimal(args: argparse.Namespace) -> int:
    """`spt compute-optimal`: N* and D* per FLOP budget from a Chinchilla-type fit."""
    from scaling_laws.decisions import compute_optimal

    result = FitResult.load(args.fit)
    if args.dry_run:
        print(f"spt compute-optimal (dry run): law {result.law}")
        _print_arguments(args)
        return 0
    rows = [compute_optimal(result, flops) for flops in args.flops]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'flops':>10}  {'params N*':>10}  {'tokens D*':>10}  {'loss':>8}  intervals (N*, D*)")
    for row in rows:
        spans = ""
        if "params_interval" in row:
            (n0, n1), (d0, d1) = row["params_interval"], row["tokens_interval"]
            spans = f"[{n0:.3g}, {n1:.3g}], [{d0:.3g}, {d1:.3g}]"
        print(f"{row['flops']:>10.4g}  {row['params']:>10.4g}  {row['tokens']:>10.4g}  {row['loss']:>8.4f}  {spans}")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    """`spt plot`: loss curves, residuals and (SPT fits) delta* vs budget, as PNG and SVG."""
    result = FitResult.load(args.fit)
    table = _read_data(args).table
    target = result.settings.get("loss_column", result.form.target)
    checked = check_frame(table, result.form, target, residuals=result.settings.get("residuals", "log"),
                          free_params=0, source=str(args.data))
    if "params" in result.form.inputs and "fraction" in result.form.inputs and args.params is None:
        raise InputError(f"law {result.law} needs --params (model size) for the delta* plot")
    if args.dry_run:
        print(f"spt plot (dry run): law {result.law}, {len(checked)} rows; figures loss_curves, residuals"
              + (", optimal_fraction" if "fraction" in result.form.inputs else "") + " (PNG and SVG)")
        _print_arguments(args)
        return 0
    from scaling_laws.plots import plot_all

    search = {"widen": args.widen, "params": args.params} if "fraction" in result.form.inputs else {}
    for path in plot_all(result, table, args.out_dir, budgets=args.tokens, **search):
        print(f"wrote {path}")
    return 0
