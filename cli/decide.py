"""`spt optimal-fraction`, `spt decide`, `spt compute-optimal` and `spt plot`: decisions and figures from a fit
JSON."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from cli.fit import log_to_sweep, print_arguments, read_data
from scaling_laws.decision.cost import CostQuestion, cost_caveats, decide_cost, positive, require_size_aware
from scaling_laws.decision.finetune import format_gains
from scaling_laws.decision.optimal import compute_optimal, fraction_range, optimal_fraction
from scaling_laws.decision.plots import FIGURES, plot_all, plot_cost
from scaling_laws.decision.report import caveats, finetune_gains
from scaling_laws.fitting.data import check_frame
from scaling_laws.fitting.points import select_points
from scaling_laws.fitting.result import FitResult
from spt import storage
from spt.errors import InputError
from spt.storage import files


def _interval(pair, digits: str = ".4g", suffix: str = "") -> str:
    return "-" if not pair else f"[{pair[0]:{digits}}{suffix}, {pair[1]:{digits}}{suffix}]"


def _measured(choice) -> str:
    m = choice.measured_multiplier
    if m is None:
        return "- (no delta=0 run)"
    if m["reached"] == "no":
        return f"not reached (at {m['fraction']:g})"
    bound = ">=" if m["reached"] != "yes" else ""
    return f"{bound}{m['value']:.3g}x {_interval(m.get('interval'), '.3g', 'x')} at {m['fraction']:g}"


def print_choices(result: FitResult, choices, domain_tokens: float | None) -> None:
    """The decision table: delta*, its band, the basis, the measured multiplier, the model multiplier."""
    level = f"{100 * result.level:g}%"
    print(f"{'tokens':>10}  {'delta*':>8}  {level + ' interval':>20}  {'basis':>13}  {'loss':>8}  "
          f"{'measured compute multiplier':>36}  {'model multiplier*':>17}" + ("  epochs" if domain_tokens else ""))
    for c in choices:
        flag = " (EXTRAPOLATED)" if c.extrapolated else ""
        print(f"{c.tokens:>10.4g}  {c.fraction:>8.4g}  {_interval(c.fraction_interval):>20}  {c.basis:>13}  "
              f"{c.loss:>8.4f}  {_measured(c):>36}  {c.model_multiplier:>16.3g}x"
              + (f"  {c.domain_epochs(domain_tokens):.4g}" if domain_tokens else "") + flag)
    print("measured: tokens the swept fraction nearest delta* needed to reach the delta=0 runs' best measured loss, "
          "vs the tokens delta=0 needed (interpolated within the measured curves)")
    print("* model multiplier: the same comparison by the fitted law, a MODEL EXTRAPOLATION of the delta=0 law")


def run_optimal_fraction(args: argparse.Namespace) -> int:
    """`spt optimal-fraction`: delta*, its interval, basis and compute multipliers per budget, with warnings."""
    result = FitResult.load(args.fit)
    if "fraction" not in result.form.inputs:
        raise InputError(f"{args.fit}: optimal-fraction needs an spt fit; this fit is law {result.law}")
    if result.form.target == "gap":  # the gap half alone has no loss to minimize: it printed delta*=0, loss 5
        raise InputError(f"{args.fit}: optimal-fraction needs a fit of the loss; law {result.law} fits only the gap "
                         "between held-out and train loss (fit law spt or spt-regularized)")
    low, high = fraction_range(result, args.min_fraction, args.max_fraction, args.widen)
    if "params" in result.form.inputs and args.params is None:
        raise InputError(f"law {result.law} needs --params (the model size, in parameters)")
    if args.domain_tokens is not None and not (np.isfinite(args.domain_tokens) and args.domain_tokens > 0):
        raise InputError(f"--domain-tokens {args.domain_tokens:g}: must be a positive number of tokens")
    bad = [t for t in args.tokens if not (np.isfinite(t) and t > 0)]
    if bad:
        raise InputError(f"--tokens {bad[0]:g}: must be a positive number of tokens")
    if args.dry_run:
        print(f"spt optimal-fraction (dry run): law {result.law}, fractions searched [{low:g}, {high:g}]")
        print_arguments(args)
        return 0
    choices = [optimal_fraction(result, t, low=low, high=high, params=args.params, basis=args.basis)
               for t in args.tokens]
    for choice in choices:
        if choice.warning():
            print(choice.warning(), file=sys.stderr)
    if args.json:
        print(json.dumps([c.to_dict() for c in choices], indent=2))
        return 0
    if args.lines:
        print("\n".join(c.line(args.domain_tokens) for c in choices))
        return 0
    print(f"law {result.law}: fractions searched [{low:g}, {high:g}]" +
          (f", model size {args.params:g}" if args.params else "")
          + f"; fitted: {result.settings.get('fitted', 'held-out')}")
    print_choices(result, choices, args.domain_tokens)
    for line in format_gains(finetune_gains(result)):
        print(line)
    for line in caveats(result, choices):
        print(f"caveat: {line}")
    return 0


def _cost_question(args: argparse.Namespace, result: FitResult) -> CostQuestion:
    """The question of `spt decide`, every number checked under its option's name."""
    for option in ("domain_tokens", "tokens", "target_loss", "serve_tokens", "finetune_tokens"):
        if getattr(args, option) is not None:
            positive(getattr(args, option), "--" + option.replace("_", "-"), zero=option == "serve_tokens")
    for size in args.sizes or []:
        positive(size, "--sizes")
    if args.finetune_gain is None:
        raise InputError(f"{args.fit}: --finetune-gain is required: a size-aware fit records no fine-tune gains per "
                         "model size, so give the loss drop of finetuning after delta = 0 pretraining (nats/token)")
    positive(args.finetune_gain, "--finetune-gain", zero=True)
    sizes = args.sizes or sorted(set(result.data_ranges.get("params", [])))
    if not sizes:
        raise InputError(f"{args.fit}: the fit does not record its model sizes: pass --sizes")
    return CostQuestion(sizes=tuple(sizes), domain_tokens=args.domain_tokens, served_tokens=args.serve_tokens,
                        finetune_gain=args.finetune_gain, tokens=args.tokens, target_loss=args.target_loss,
                        finetune_tokens=args.finetune_tokens)


def _number_with(value: float, pair, digits: str = ".4g") -> str:
    return f"{value:{digits}} {_interval(pair, digits)}" if pair else f"{value:{digits}}"


def _option_row(option, served: float, level: float) -> str:
    fraction, tokens, loss = (_number_with(option.value(key), option.interval(key, level))
                              for key in ("fraction", "tokens", "loss"))
    total = _number_with(option.total_flops(served), option.interval("total", level, served))
    return (f"{option.params:>8.3g}  {option.kind:>8}  {fraction:>24}  {tokens:>32}  {loss:>26}  "
            f"{option.training_flops():>14.4g}  {option.serving_flops(served):>13.4g}  {total:>34}")


def print_cost(decision) -> None:
    """The options table, the cheapest option and the break-even of `spt decide`."""
    question, level, served = decision.question, decision.level, decision.question.served_tokens
    band = f"[{100 * level:g}%]"
    print(f"{'size N':>8}  {'option':>8}  {'delta* ' + band:>24}  {'pretrain tokens ' + band:>32}  "
          f"{'loss ' + band:>26}  {'training FLOPs':>14}  {'serving FLOPs':>13}  {'total FLOPs ' + band:>34}")
    for option in decision.options:
        print(_option_row(option, served, level))
    goal = (f"cheapest reaching loss {question.target_loss:g}" if question.target_loss is not None
            else f"lowest loss at T={question.tokens:.4g}")
    choice = decision.choice
    if choice is None:
        print(f"{goal}: none (no option reaches it)")
    else:
        share = "" if decision.choice_share is None else (f"; the same choice in {100 * decision.choice_share:.0f}% "
                                                         f"of {choice.replicates} bootstrap replicates")
        total = _number_with(choice.total_flops(served), choice.interval("total", level, served))
        print(f"{goal}: {choice.label} (delta*={choice.fraction:.4g}, T={choice.tokens:.4g}, loss "
              f"{choice.loss:.4g}): {total} FLOPs with {served:.4g} served tokens{share}")
    if decision.break_even is None:
        print("break-even: none (no spt or no finetune option reaches the target)")
        return
    pair, interval = f"{decision.spt.label} and {decision.finetune.label}", decision.break_even_interval
    # A replicate whose lines never cross counts as inf: an interval of only those says nothing more than "never".
    shown = f" {_interval(interval)}" if interval and np.isfinite(interval[0]) else ""
    if np.isfinite(decision.break_even):
        print(f"break-even of {pair}: {decision.break_even:.4g} served tokens{shown}; "
              f"{decision.cheaper_beyond} is cheaper beyond it")
    else:
        print(f"break-even of {pair}: never (the cost lines do not cross at S >= 0){shown}; "
              f"{decision.cheaper_beyond} is cheaper at every served volume")


def run_decide(args: argparse.Namespace) -> int:
    """`spt decide`: SPT or finetune, at which size, counting training and serving FLOPs, with intervals."""
    result = FitResult.load(args.fit)
    require_size_aware(result, f"{args.fit}: spt decide")
    question = _cost_question(args, result)
    if args.plot is not None and not str(args.plot).endswith((".png", ".svg")):
        raise InputError(f"--plot={args.plot!r}: must end in .png or .svg")
    for location, where in ((args.out, "--out"), (args.plot, "--plot")):
        files.check_file_output(location, where, {"--fit": args.fit}, args.force, probe=not args.dry_run)
    if args.dry_run:
        print(f"spt decide (dry run): law {result.law}, sizes {', '.join(f'{n:.3g}' for n in question.sizes)}")
        print_arguments(args)
        return 0
    decision = decide_cost(result, question)
    low, high = fraction_range(result)
    print(f"law {result.law}: fractions searched [{low:g}, {high:g}]; {question.served_tokens:.4g} served tokens; "
          f"finetune {question.tokens_of_finetune:.4g} tokens with gain {question.finetune_gain:g} nats/token; "
          "FLOPs: training 6 N T (+ 6 N T_ft), serving 2 N per served token")
    print_cost(decision)
    for line in cost_caveats(result, decision):
        print(f"caveat: {line}")
    if args.out is not None:
        files.write_owned(args.out, (json.dumps(decision.to_dict(), indent=2) + "\n").encode(), "decide")
        print(f"wrote {args.out}")
    if args.plot is not None:
        files.write_owned(args.plot, plot_cost(decision, str(args.plot).rsplit(".", 1)[1]), "decide")
        print(f"wrote {args.plot}")
    return 0


def run_compute_optimal(args: argparse.Namespace) -> int:
    """`spt compute-optimal`: N* and D* per FLOP budget from a Chinchilla-type fit."""
    result = FitResult.load(args.fit)
    if args.dry_run:
        print(f"spt compute-optimal (dry run): law {result.law}")
        print_arguments(args)
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
    """`spt plot`: loss curves, residuals and (SPT fits) delta* vs budget, as PNG and SVG (local or s3://)."""
    storage.check_output(args.out_dir, "--out-dir", probe=not args.dry_run)
    for figure in (storage.join(args.out_dir, f"{stem}.{suffix}") for stem in FIGURES for suffix in ("png", "svg")):
        # (the folder was probed just above: each figure is checked for what it would replace)
        files.check_file_output(figure, "--out-dir figure", {"--fit": args.fit, "--data": args.data}, args.force,
                                probe=False)
    result = FitResult.load(args.fit)
    table = read_data(args).table
    if "fraction" in result.form.inputs:  # show the evaluations the fit used (valid budgets only)

        table = select_points(table, str(args.data)).table
    target = result.settings.get("loss_column", result.form.target)
    check_frame(table, result.form, target, residuals="log" if result.form.residuals == "log" else "linear",
                free_params=0, source=str(args.data))
    if "params" in result.form.inputs and "fraction" in result.form.inputs and args.params is None:
        raise InputError(f"law {result.law} needs --params (model size) for the delta* plot")
    if args.dry_run:
        print(f"spt plot (dry run): law {result.law}, {len(table)} rows; figures loss_curves, residuals"
              + (", optimal_fraction" if "fraction" in result.form.inputs else "") + " (PNG and SVG)")
        print_arguments(args)
        return 0

    search = {"widen": args.widen, "params": args.params} if "fraction" in result.form.inputs else {}
    written = [str(path) for path in plot_all(result, table, args.out_dir, budgets=args.tokens, **search)]
    for path in written:
        files.mark_owned(path, "plot")
        print(f"wrote {path}")
    log_to_sweep(str(args.data), written)
    return 0
