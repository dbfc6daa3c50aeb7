"""`spt fit` and `spt predict`: read the data, fit (with validation), write the fit JSON or predictions."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from scaling_laws.decision.forms import CANDIDATES, PAPER_FORM, fit_best_form, format_selection
from scaling_laws.decision.report import format_fit
from scaling_laws.decision.validation import format_validation, validate
from scaling_laws.fitting.data import check_frame, resolve_law, summarize
from scaling_laws.fitting.evaluations import fit_evaluations
from scaling_laws.fitting.fit import extrapolation_check, fit, predict_table
from scaling_laws.fitting.points import select_points
from scaling_laws.fitting.result import FitResult
from scaling_laws.fitting.spt import form_of
from scaling_laws.laws.base import Muennighoff
from scaling_laws.laws.registry import get_law
from scaling_laws.numerics.objective import Objective
from spt.errors import InputError
from spt.storage import files
from sweeps.tables import FitData, read_fit_data
from sweeps.tracking import log_decision

#: Laws fitted by :func:`scaling_laws.fitting.evaluations.fit_evaluations` (valid budgets, halves, run bootstrap).
SPT_LAWS = ("spt", "spt-regularized", "spt-n", "spt-epochs", "auto")


def print_arguments(args: argparse.Namespace) -> None:
    for key, value in sorted(vars(args).items()):
        if key not in ("func", "environment", "dry_run"):
            print(f"  {key}: {value}")


def dry_run_summary(headline: str, args: argparse.Namespace, checked, closing: str) -> int:
    """A dry run's report: what would run, the options, the checked table's columns; returns exit code 0."""
    print(headline)
    print_arguments(args)
    print("\n".join(summarize(checked)))
    print(closing)
    return 0


def read_data(args: argparse.Namespace) -> FitData:
    """``--data`` (a CSV or a sweep folder); notes on what a sweep folder left out go to stderr."""
    data = read_fit_data(args.data, args.fraction_column)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    return data


def _objective(args: argparse.Namespace, law, spt: bool) -> Objective:
    delta = args.huber_delta if args.huber_delta is not None else (1e-2 if spt else 1e-3)
    if not delta > 0:
        raise InputError(f"--huber-delta {args.huber_delta}: must be positive")
    return Objective(kind=args.objective, huber_delta=delta, residuals=args.residuals or law.residuals)


def _fixed(args: argparse.Namespace, law) -> dict | None:
    if args.fix is None:
        return None
    if not isinstance(law, Muennighoff):
        raise InputError(f"--fix applies to --law muennighoff, not {law.name}")
    base = FitResult.load(args.fix)
    missing = [name for name in Muennighoff.base_names if name not in base.params]
    if missing:
        raise InputError(f"{args.fix}: fit of law {base.law} lacks {', '.join(missing)}")
    return {name: base.params[name] for name in Muennighoff.base_names}


def _check_args(args: argparse.Namespace, spt: bool) -> int:
    """Validates the numeric options; returns the number of bootstrap refits."""
    replicates = args.bootstrap if args.bootstrap is not None else (200 if spt else 0)
    if replicates < 0:
        raise InputError(f"--bootstrap {args.bootstrap}: must be 0 or more")
    if args.starts is not None and args.starts < 1:
        raise InputError(f"--starts {args.starts}: must be 1 or more")
    if not 0.0 < args.level < 1.0:
        raise InputError(f"--level {args.level}: must be in (0, 1)")
    if args.holdout is not None and not 0.0 < args.holdout < 1.0:
        raise InputError(f"--holdout {args.holdout}: must be in (0, 1)")
    validating = args.holdout_tokens_above is not None or args.holdout_fractions
    if validating and not spt:
        raise InputError(f"--holdout-tokens-above and --holdout-fractions apply to --law spt, not {args.law}")
    if args.holdout_tokens_above is not None and not (np.isfinite(args.holdout_tokens_above)
                                                      and args.holdout_tokens_above > 0):
        raise InputError(f"--holdout-tokens-above {args.holdout_tokens_above:g}: must be a positive number of tokens")
    bad = [f for f in args.holdout_fractions or () if not 0.0 <= f <= 1.0]
    if bad:
        raise InputError(f"--holdout-fractions {bad[0]:g}: must be in [0, 1]")
    return replicates


def run_fit(args: argparse.Namespace) -> int:
    """`spt fit`: checks the options, the output path and the table, fits (bootstrap, validation), writes JSON."""
    files.check_file_output(args.out, "--out", {"--data": args.data, "--fix": args.fix}, force=args.force,
                            probe=not args.dry_run)
    data = read_data(args)
    table = data.table
    law = resolve_law(args.law, table) if args.law != "auto" else get_law(PAPER_FORM)
    spt = law.name in SPT_LAWS
    replicates = _check_args(args, spt)
    objective, fixed = _objective(args, law, spt), _fixed(args, law)
    loss_column = args.loss_column or data.loss_column or law.target
    free = len(law.params) - len(fixed or {})
    checked = check_frame(table, law, loss_column, residuals=objective.residuals, free_params=free,
                          source=str(args.data))
    if args.law == "auto" and "fraction" not in table.columns:
        raise InputError("--law auto compares SPT forms: the data needs a fraction column (a sweep folder has one)")
    if args.dry_run:
        what = (f"law auto (the best forecaster of {', '.join(CANDIDATES)})" if args.law == "auto"
                else f"law {law.name}, {free} free parameters")
        return dry_run_summary(f"spt fit (dry run): {what}, {replicates} bootstrap refits", args, checked,
                               "nothing fitted or written")
    options = {"objective": objective, "n_starts": args.starts, "seed": args.seed}
    if spt:
        result = _fit_spt(args, data, loss_column, replicates, options)
    else:
        result = fit(table, law, loss_column=loss_column, fixed=fixed, staged=not args.no_staged,
                     bootstrap_replicates=replicates, bootstrap_method=args.bootstrap_method, level=args.level,
                     source=str(args.data), **options)
    if args.holdout is not None:
        result.extrapolation = extrapolation_check(table, law, holdout=args.holdout, loss_column=loss_column,
                                                   fixed=fixed, source=str(args.data), **options)
    print(format_fit(result))
    if args.out is not None:
        files.write_owned(args.out, (json.dumps(result.to_dict(), indent=2) + "\n").encode(), "fit")
        print(f"wrote {args.out}")
        log_to_sweep(str(args.data), [args.out])
    return 0


def log_to_sweep(data: str, files: list[str]) -> None:
    """Adds what was written from a tracked sweep folder to the sweep's MLflow run (see
    :func:`sweeps.tracking.log_decision`)."""
    run_id = log_decision(data, files)
    if run_id is not None:
        print(f"logged {len(files)} file(s) to the sweep's MLflow run {run_id}")


def _fit_spt(args, data: FitData, loss_column: str, replicates: int, options: dict) -> FitResult:
    source = str(args.data)
    common = dict(results=data.sweep.results if data.sweep else None,
                  finetunes=data.sweep.finetunes if data.sweep else None, source=source, bootstrap_replicates=replicates,
                  level=args.level, loss_column=loss_column, fitted=args.fitted, staged=not args.no_staged,
                  bootstrap_method=args.bootstrap_method, **options)
    if args.law == "auto":
        result = fit_best_form(data.table, **common)
        print(format_selection(result.settings["form_selection"], result.law))
    else:
        result = fit_evaluations(data.table, form=form_of(args.law), **common)
    if data.sweep is not None:
        result.settings["notes"] = data.notes + result.settings.get("notes", [])
    if args.holdout_tokens_above is not None or args.holdout_fractions:
        selected = select_points(data.table, source).table
        result.validation = validate(selected, holdout_tokens_above=args.holdout_tokens_above,
                                     holdout_fractions=args.holdout_fractions or (), loss_column=loss_column,
                                     source=source, fitted=args.fitted, form=form_of(result.law), **options)
        print(format_validation(result.validation))
    return result


def run_predict(args: argparse.Namespace) -> int:
    """`spt predict`: the table with ``predicted_loss`` (and its band) as CSV, to ``--out`` or stdout."""
    files.check_file_output(args.out, "--out", {"--fit": args.fit, "--data": args.data}, force=args.force,
                            probe=not args.dry_run)
    result = FitResult.load(args.fit)
    table = read_data(args).table
    checked = check_frame(table, result.form, target=None, source=str(args.data))
    if args.dry_run:
        return dry_run_summary(f"spt predict (dry run): law {result.law}", args, checked, "nothing written")
    out = predict_table(result, table, source=str(args.data))
    if args.out is None:
        out.to_csv(sys.stdout, index=False)
    else:
        files.write_owned(args.out, out.to_csv(index=False).encode(), "predict")
        print(f"wrote {args.out} ({len(out)} rows)")
    return 0
