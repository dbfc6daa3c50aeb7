"""The decision as tables and plain words: delta* per budget, its multipliers, and the caveats that apply.

The notebook and ``spt optimal-fraction`` build what they show from these functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_laws.decision.choice import EXTRAPOLATION_LIMIT, FractionChoice
from scaling_laws.decision.finetune import GainModel, format_gains
from scaling_laws.decision.narrowing import undecided_caveat
from scaling_laws.decision.optimal import optimal_fraction
from scaling_laws.fitting.intervals import OUTSIDE_CAUSE, outside
from scaling_laws.fitting.result import FitResult
from spt.errors import InputError

#: Bootstrap replicates below which the caveats call the band rough.
MIN_REPLICATES = 200


def resolve_budgets(fit: FitResult, budgets=None) -> list[float]:
    """The token budgets asked for, or (None) the largest fitted budget and 2x and 10x it.

    Raises:
        InputError: For an empty list or a budget that is not a positive number of tokens.
    """
    if budgets is None:
        if "tokens" not in fit.data_ranges:
            raise InputError("the fit records no token range: give the budgets explicitly")
        largest = fit.data_ranges["tokens"][1]
        return [largest, EXTRAPOLATION_LIMIT * largest, 10.0 * largest]
    budgets = [float(b) for b in np.atleast_1d(budgets)]
    bad = [b for b in budgets if not (np.isfinite(b) and b > 0)]
    if not budgets or bad:
        raise InputError(f"budgets={budgets}: give one or more positive numbers of tokens")
    return budgets


def budget_grid(fit: FitResult, budgets, points: int = 9) -> np.ndarray:
    """Budgets log-spaced from the smallest fitted one to the largest of the fit's and ``budgets`` (for plots)."""
    low, high = fit.data_ranges["tokens"]
    return np.geomspace(low, max(high, *budgets), points)


def model_size(fit: FitResult, params: float | None = None) -> float | None:
    """The model size a delta* is chosen for: None for ``spt``; ``params`` or the largest swept for ``spt-n``."""
    if "params" not in fit.form.inputs:
        return None
    return float(params) if params is not None else fit.data_ranges["params"][1]


def choose_fractions(fit: FitResult, budgets, *, params: float | None = None, widen: bool = False,
                     basis: str = "auto") -> list[FractionChoice]:
    """delta* with its interval and compute multipliers at each budget (see :func:`optimal_fraction`)."""
    return [optimal_fraction(fit, float(t), params=model_size(fit, params), widen=widen, basis=basis)
            for t in budgets]


def choices_table(choices: list[FractionChoice], domain_tokens: float | None = None) -> pd.DataFrame:
    """The choices as a table; with ``domain_tokens`` (|D|), the epochs ``T delta* / |D|`` too.

    ``measured_multiplier`` is measured on the curves at the swept fraction ``multiplier_at`` (NaN: not
    reached within the measured data, or no delta = 0 run); ``model_multiplier_extrapolated`` is the law's
    answer, an extrapolation of the delta = 0 law beyond its data.
    """
    def measured(choice, key):
        m = choice.measured_multiplier or {}
        if key == "interval":
            return m.get("interval") or (np.nan, np.nan)
        return np.nan if m.get(key) is None else m[key]

    nan2 = (np.nan, np.nan)
    table = pd.DataFrame({
        "tokens": [c.tokens for c in choices],
        "delta_star": [c.fraction for c in choices],
        "delta_low": [(c.fraction_interval or nan2)[0] for c in choices],
        "delta_high": [(c.fraction_interval or nan2)[1] for c in choices],
        "basis": [c.basis for c in choices],
        "domain_loss": [c.loss for c in choices],
        "budget_ratio": [np.nan if c.budget_ratio is None else c.budget_ratio for c in choices],
        "extrapolated": [c.extrapolated for c in choices],
        "measured_multiplier": [measured(c, "value") for c in choices],
        "multiplier_low": [measured(c, "interval")[0] for c in choices],
        "multiplier_high": [measured(c, "interval")[1] for c in choices],
        "multiplier_at": [measured(c, "fraction") for c in choices],
        "model_multiplier_extrapolated": [c.model_multiplier for c in choices],
    })
    if domain_tokens is not None:
        table["domain_epochs"] = [c.domain_epochs(domain_tokens) for c in choices]
    return table


def measured_table(fit: FitResult) -> pd.DataFrame:
    """The measured compute multiplier of every swept fraction, with its interval and how it was reached."""
    rows = [{"fraction": m["fraction"], "multiplier": m["value"], "low": (m.get("interval") or [None, None])[0],
             "high": (m.get("interval") or [None, None])[1], "reached": m["reached"], "tokens": m["tokens"],
             "baseline_loss": m["baseline_loss"], "baseline_tokens": m["baseline_tokens"]}
            for m in (fit.decision or {}).get("measured") or []]
    return pd.DataFrame(rows, columns=["fraction", "multiplier", "low", "high", "reached", "tokens", "baseline_loss",
                                       "baseline_tokens"])


def _choice_caveats(fit: FitResult, choices) -> list[str]:
    lines = []
    tokens_high = fit.data_ranges.get("tokens", [None, None])[1]
    far = sorted({c.tokens for c in choices if c.extrapolated})
    if far:
        lines.append(f"EXTRAPOLATION: budgets {', '.join(f'{t:.3g}' for t in far)} are more than "
                     f"{EXTRAPOLATION_LIMIT:g}x the largest trained budget {tokens_high:.3g} (up to "
                     f"{max(far) / tokens_high:.3g}x): delta* there rests on the law's form alone")
    elif any(c.budget_ratio is not None and c.budget_ratio > 1 for c in choices):
        lines.append(f"some budgets lie beyond the largest trained budget {tokens_high:.3g} (at most "
                     f"{EXTRAPOLATION_LIMIT:g}x): delta* there is a short extrapolation, and the law foresees "
                     f"worst a fraction that starts to overfit only past the trained budgets (README, reproduction)")
    for c in choices:
        edge = [end for end in c.fraction_range if abs(c.fraction - end) < 1e-6 * max(1.0, end)]
        if edge:
            lines.append(f"at T={c.tokens:.3g}, delta* sits at the edge {edge[0]:g} of the fractions searched "
                         f"[{c.fraction_range[0]:g}, {c.fraction_range[1]:g}]: the best delta may lie beyond it")
    lines += [line for c in choices if (line := _between_fractions(fit, c))]
    lines += [line for c in choices if (line := epochs_beyond_pilot(fit, c))]
    lines += [line for c in choices if (line := _outside_interval(fit, c))]
    lines += [line for c in choices if (line := undecided_caveat(fit, c))]
    bases = {c.basis for c in choices}
    finetuned = (fit.decision or {}).get("finetune") or []
    cells = pd.Series([(run["fraction"], run["tokens"]) for run in finetuned], dtype=object).value_counts()
    if "post-finetune" in bases and (cells == 1).any():
        lines.append("some fractions were fine-tuned once per budget: the band of the post-finetune delta* carries "
                     "the pretraining law's uncertainty but not the fine-tuning's own noise")
    shaky = [row for row in (fit.decision or {}).get("finetune_gain") or []
             if row.get("on_bounds") or row.get("converged") is False]
    if "post-finetune" in bases and shaky:
        fractions = ", ".join(f"{row['fraction']:g}" for row in shaky)
        lines.append(f"the fine-tune gain law of delta={fractions} has a "
                     f"parameter on a bound or did not converge: its budgets do not pin it, and the post-finetune "
                     f"delta* leans on it (compare --basis pre-finetune)")
    if "pre-finetune" in bases and finetuned:
        lines.append("delta* is chosen on the pretraining loss: fine-tuned runs do not cover every swept fraction")
    elif "pre-finetune" in bases:
        lines.append("delta* is chosen on the pretraining loss (no fine-tuned runs): the paper's delta* is the one "
                     "after fine-tuning, which favours a smaller delta when fine-tuning gains more from it")
    for c in choices:
        m = c.measured_multiplier
        if m and m["reached"] == "no":
            lines.append(f"delta={m['fraction']:g} never reached the delta = 0 runs' best loss "
                         f"{m['baseline_loss']:.4g} within the measured data: no measured compute multiplier")
            break
    return lines


def domain_tokens_of(fit: FitResult) -> float | None:
    """The domain set's unique tokens a fit recorded (``spt-epochs``'s constant, or the sweep's), or None."""
    value = fit.constants.get("unique_domain_tokens") or fit.settings.get("unique_domain_tokens")
    return float(value) if value else None


def epochs_beyond_pilot(fit: FitResult, choice: FractionChoice) -> str | None:
    """A warning when delta* at a budget repeats the domain set more often than any pilot run at a fraction
    >= delta* did: how overfitting grows there was not measured, only forecast by the law's form."""
    unique = domain_tokens_of(fit)
    curves = (fit.decision or {}).get("curves") or []
    if not unique or not curves or choice.fraction <= 0:
        return None
    epochs = choice.tokens * choice.fraction / unique
    reached = [max(run["tokens"]) * run["fraction"] / unique for run in curves
               if run["fraction"] >= choice.fraction * (1 - 1e-9)]
    most = max(reached, default=0.0)
    if epochs <= most * (1 + 1e-9):
        return None
    where = (f"no pilot run at delta >= {choice.fraction:.3g} went past {most:.3g} epochs" if reached else
             f"no pilot run had delta >= {choice.fraction:.3g}")
    return (f"at T={choice.tokens:.3g}, delta* {choice.fraction:.3g} repeats the domain set {epochs:.3g} times "
            f"({unique:.4g} unique tokens), and {where}: how much it overfits there is the law's forecast, not a "
            f"measurement")


#: A delta* between two swept fractions further apart than this ratio is flagged: the law's shape there was not
#: measured (a grid of 0.1 and 0.5 leaves the valley between them to the law's form).
WIDE_GAP = 2.0


def _between_fractions(fit: FitResult, choice: FractionChoice) -> str | None:
    """A caveat when delta* lies in a wide gap of the swept fractions, with the law's loss there against the best
    measured at that budget (pre-finetune, at a trained budget) when the law promises more than was measured."""
    decision = fit.decision or {}
    swept = sorted({float(f) for f in decision.get("fractions") or []})
    below = [f for f in swept if f < choice.fraction - 1e-9]
    above = [f for f in swept if f > choice.fraction + 1e-9]
    on_a_swept_fraction = len(below) + len(above) < len(swept)
    if on_a_swept_fraction or not below or not above or below[-1] <= 0 or above[0] / below[-1] <= WIDE_GAP:
        return None
    low, high = below[-1], above[0]
    line = (f"at T={choice.tokens:.3g}, delta* {choice.fraction:.3g} lies between the swept fractions {low:g} and "
            f"{high:g} (no run in between), where the law's shape is its form's, not a measurement")
    # the runs' losses at this budget (pretraining losses: comparable with a pre-finetune prediction only)
    curves = (decision.get("curves") or []) if choice.basis == "pre-finetune" else []
    measured = []
    for curve in curves:
        tokens = np.asarray(curve["tokens"], dtype=float)
        nearest = int(np.argmin(np.abs(tokens - choice.tokens))) if len(tokens) else None
        if nearest is not None and abs(tokens[nearest] - choice.tokens) <= 0.05 * choice.tokens:
            measured.append((float(curve["loss"][nearest]), float(curve["fraction"])))
    if measured:
        best, at = min(measured)
        if choice.loss < 0.99 * best:
            line += (f"; it predicts {choice.loss:.4g} nats there, {best - choice.loss:.2g} below the best measured "
                     f"at this budget ({best:.4g} at delta={at:g})")
    return line + ": sweep a fraction near delta* before relying on it"


def _outside_interval(fit: FitResult, choice: FractionChoice) -> str | None:
    """A caveat when delta* (or its model multiplier) lies outside its own bootstrap interval."""
    parts = []
    if outside(choice.fraction, choice.fraction_interval):
        low, high = choice.fraction_interval
        parts.append(f"delta* {choice.fraction:.4g} lies outside its {100 * fit.level:g}% interval "
                     f"[{low:.4g}, {high:.4g}]")
    if outside(choice.model_multiplier, choice.model_multiplier_interval):
        low, high = choice.model_multiplier_interval
        parts.append(f"the model multiplier {choice.model_multiplier:.3g}x lies outside its {100 * fit.level:g}% "
                     f"interval [{low:.3g}x, {high:.3g}x]")
    if not parts:
        return None
    return f"at T={choice.tokens:.3g}, {' and '.join(parts)}: {OUTSIDE_CAUSE}"


def caveats(fit: FitResult, choices: list[FractionChoice] = ()) -> list[str]:
    """Plain-words limits of a decision from this fit, one line each (empty when none apply)."""
    lines = list(fit.caveats) + _choice_caveats(fit, choices)
    replicates = int(fit.settings.get("bootstrap", 0) or 0)
    if replicates == 0:
        lines.append(f"no bootstrap: there is no uncertainty band (use {MIN_REPLICATES} or more refits)")
    elif replicates < MIN_REPLICATES:
        lines.append(f"{replicates} bootstrap refits: the band is rough (use {MIN_REPLICATES} or more)")
    if fit.settings.get("bootstrap_method") == "points":
        lines.append("the bootstrap resampled single evaluations as if independent: evaluations of one run are "
                     "correlated, so the band is too narrow (use the runs method)")
    lines += fit_warnings(fit)
    return list(dict.fromkeys(lines))


#: What a share parameter on a bound means for the paper's constraint it encodes.
_SHARE_BOUNDS = {("b_train_g", "upper"): "|b_train_g| = |b_train_s|", ("b_train_g", "lower"): "b_train_g = 0",
                 ("b_gap_s", "upper"): "b_gap(0.1) = 1", ("b_gap_s", "lower"): "b_gap_s = 0"}


def fit_warnings(fit: FitResult) -> list[str]:
    """Plain-words warnings about the fit itself: a best start that did not converge, parameters on a bound."""
    lines = []
    if not fit.settings.get("converged", True):
        lines.append("the best start of the fit did not converge (try more starts)")
    params = {p.name: p for p in fit.form.params}
    on_bounds = []
    for name, side in (fit.settings.get("on_bounds") or {}).items():
        param = params.get(name)
        if (name, side) in _SHARE_BOUNDS:
            on_bounds.append(f"{name} ({_SHARE_BOUNDS[name, side]})")
        elif param is not None:
            on_bounds.append(f"{name} ({side} bound {getattr(param, side):g})")
        else:
            on_bounds.append(f"{name} ({side} bound)")
    if on_bounds:
        lines.append(f"parameters on a bound: {', '.join(on_bounds)}: the bound, not the data, set them, and "
                     f"forecasts that lean on them are the bound's")
    return lines


def _refit_counts(settings: dict) -> str:
    """``; 0 failed, 2 stopped at the iteration limit, 6 starts each`` from ``settings["bootstrap_refits"]``."""
    refits = settings.get("bootstrap_refits")
    if not refits:
        return ""
    halves = " per half" if "train" in refits else ""
    starts = refits["train"]["starts"] if halves else refits["starts"]
    return (f"; {refits['failed']} failed, {refits['unconverged']} of {refits['refits']} stopped at the iteration "
            f"limit, {starts} starts each{halves}, {refits['from_other_starts']} ended in a better basin than the "
            f"fit's own minimum gave")


def _optimum_lines(optimum: dict | None) -> list[str]:
    """One line per fitted law: how many starts reached the best objective, how close the next minima are."""
    if not optimum:
        return []
    parts = {"": optimum} if "starts" in optimum else optimum
    lines = []
    for name, spread in parts.items():
        if not spread:
            continue
        following = ", ".join(f"+{100 * v:.3g}%" for v in spread["next_minima"]) or "none"
        lines.append(f"optimum{' (' + name + ')' if name else ''}: {spread['at_best']} of {spread['starts']} starts "
                     f"ended within {100 * spread['tolerance']:g}% of the best objective; next distinct minima "
                     f"{following}")
    return lines


def finetune_gains(fit: FitResult) -> list[dict]:
    """The fine-tune gain law per fraction that the fit recorded (:meth:`GainModel.table`); computed from its
    fine-tuned runs for a fit written before it recorded them (empty without fine-tuned runs)."""
    decision = fit.decision or {}
    if "finetune_gain" in decision:
        return decision["finetune_gain"] or []
    runs = decision.get("finetune") or []
    return GainModel(fit.form, fit.params, runs).table() if runs and "params" not in fit.form.inputs else []


def format_fit(result: FitResult) -> str:
    """A human-readable summary of a fit: what was fitted on which evaluations, parameters with intervals."""
    s = result.settings
    lines = [f"law {result.law}: {result.n_points} points, {s.get('n_starts')} starts, {s.get('seconds')} s; "
             f"objective {s.get('objective')} ({s.get('residuals')} residuals) = {result.objective:.6g}"
             + ("" if s.get("converged", True) else " (best start did not converge)")]
    if s.get("fitted"):
        what = {"train+gap": f"the train loss ({s.get('train_column')}) and the gap (held-out minus train) "
                             f"separately, summed", "held-out": f"the held-out loss ({s.get('loss_column')}) alone"}
        lines.append(f"fitted: {what.get(s['fitted'], s['fitted'])}; evaluations: {s.get('points', 'all rows')}")
    intervals = result.intervals or {}
    outside_names = set(result.outside_intervals()) if intervals else set()
    for name, value in result.params.items():
        note = " (fixed)" if name in result.fixed else ""
        if name in intervals and not note:
            low, high = intervals[name]
            note = f"  [{low:.6g}, {high:.6g}]" + ("  (fit outside its interval)" if name in outside_names else "")
        lines.append(f"  {name:<10} {value:>14.6g}{note}")
    if intervals:
        lines.append(f"  (intervals: central {100 * result.level:g}% of {s.get('bootstrap')} bootstrap refits, "
                     f"method {s.get('bootstrap_method')}, as the refits give them{_refit_counts(s)})")
    if result.components and "c_gap" in result.components.get("gap", {}).get("params", {}):
        lines.append(f"  gap offset c_gap {result.components['gap']['params']['c_gap']:.4g} (held-out minus train "
                     f"sample, folded into k0)")
    lines += _optimum_lines(s.get("optimum"))
    lines += format_gains(finetune_gains(result))
    lines += [f"warning: {line}" for line in fit_warnings(result)]
    if result.extrapolation:
        e = result.extrapolation
        lines.append(f"extrapolation: fit on {e['n_fit']} rows with {e['budget']} <= {e['threshold']:.4g}; "
                     f"on the {e['n_holdout']} larger: mean |relative error| {100 * e['mean_abs_rel_error']:.3g}%, "
                     f"max {100 * e['max_abs_rel_error']:.3g}%")
    lines += [f"caveat: {line}" for line in result.caveats]
    return "\n".join(lines)
