"""Law forms judged by their own forecasts: rolling-origin validation inside the pilot (``spt fit --law auto``).

A pilot is trained at a small budget and the law is asked about a larger one. Which form to trust is therefore a
question about forecasts, not about in-sample fit: a 12-parameter law can describe every evaluation and still
turn the wrong way beyond them. So each candidate form is fitted on the evaluations up to an origin ``t`` and
scored on those beyond it, for several origins, all inside the pilot (the larger budgets the decision is for are
never looked at):

- the origins are :data:`ORIGINS`, shares of the log-token range of the fitted evaluations: with a range of 20x
  they leave 3.3x, 2.5x and 1.8x to forecast, the horizons a user asks about;
- the score of a form at one origin is the RMS of the log errors (in %) of its forecasts of the held-out loss
  beyond the origin; its score is the mean over origins. RMS, not the median: a form that forecasts most points
  well and one fraction's turn-up badly should lose, because that turn-up decides delta*;
- the form with the lowest score is chosen. A form whose fit fails at an origin scores infinity there.

These rules were fixed before any benchmark was run with them (issue 22) and are not tuned on the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaling_laws.decision.optimal import optimal_fraction
from scaling_laws.decision.report import resolve_budgets
from scaling_laws.decision.validation import validate
from scaling_laws.fitting.evaluations import fit_evaluations
from scaling_laws.fitting.points import select_points
from scaling_laws.fitting.result import FitResult
from scaling_laws.laws.epochs import unique_tokens_of
from spt.errors import InputError

#: The form the paper states: its delta* is printed beside the chosen form's.
PAPER_FORM = "spt"
#: The candidate forms, the paper's first (see :mod:`scaling_laws.laws.spt` and :mod:`scaling_laws.laws.epochs`).
CANDIDATES = ("spt", "spt-regularized", "spt-epochs")
#: Origins of the rolling-origin validation, as shares of the log-token range of the fitted evaluations.
ORIGINS = (0.6, 0.7, 0.8)
#: The fewest evaluations per fraction a fit at an origin needs (else the origin is skipped).
MIN_EVALUATIONS_PER_FRACTION = 3


@dataclass
class FormScore:
    """One form's rolling-origin forecasts: per origin, the RMS and median of its errors (%)."""

    form: str
    origins: list[float]
    rms_pct: list[float]
    median_pct: list[float]
    fitted: list[str | None]
    errors: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Mean over origins of the RMS log error (%); infinity when any origin failed."""
        return float(np.mean(self.rms_pct)) if self.rms_pct and np.all(np.isfinite(self.rms_pct)) else float("inf")

    def to_dict(self) -> dict:
        return {"form": self.form, "origins": self.origins, "rms_pct": self.rms_pct, "median_pct": self.median_pct,
                "fitted": self.fitted, "score": self.score, "errors": self.errors}


def origin_tokens(table: pd.DataFrame, origins=ORIGINS) -> list[float]:
    """The origins in tokens: ``low * (high / low) ** share`` over the evaluations' token range, each moved down
    to the nearest evaluated budget (so "fit on budgets <= t" is what it says); origins that leave fewer than
    :data:`MIN_EVALUATIONS_PER_FRACTION` evaluations per fraction to fit, or nothing to forecast, are dropped.

    Raises:
        InputError: When no origin is left (the pilot has too few evaluations per run).
    """
    tokens = pd.to_numeric(table["tokens"]).to_numpy(float)
    fractions = pd.to_numeric(table["fraction"]).to_numpy(float)
    budgets = np.unique(tokens)
    low, high = budgets[0], budgets[-1]
    chosen = []
    for share in origins:
        target = low * (high / low) ** share
        at = budgets[budgets <= target * (1 + 1e-9)]
        if not len(at) or at[-1] >= high:
            continue
        t = float(at[-1])
        fitted_per_fraction = pd.Series(tokens <= t).groupby(fractions).sum()
        if fitted_per_fraction.min() >= MIN_EVALUATIONS_PER_FRACTION and t not in chosen:
            chosen.append(t)
    if not chosen:
        raise InputError(f"rolling-origin validation needs at least {MIN_EVALUATIONS_PER_FRACTION} evaluations per "
                         f"fraction before an origin and some after it; this pilot has budgets {low:.4g} to "
                         f"{high:.4g} only")
    return chosen


def score_form(table: pd.DataFrame, form: str, origins: list[float], loss_column: str = "domain_loss",
               **fit_options) -> FormScore:
    """Fits ``form`` on budgets <= each origin and scores its forecasts of the held-out loss beyond it."""
    score = FormScore(form, [], [], [], [])
    for t in origins:
        score.origins.append(t)
        try:
            report = validate(table, holdout_tokens_above=t, loss_column=loss_column, form=form,
                              source=f"rolling origin {t:.4g}", **fit_options)
        except InputError as exc:
            score.rms_pct.append(float("inf"))
            score.median_pct.append(float("inf"))
            score.fitted.append(None)
            score.errors.append(f"origin {t:.4g}: {exc}")
            continue
        rows = report["rows"]
        observed = np.array([r["observed"] for r in rows])
        predicted = np.array([r["predicted"] for r in rows])
        with np.errstate(all="ignore"):
            log_error = np.log(predicted / observed)
        rms = float(100 * np.sqrt(np.mean(log_error**2))) if np.all(np.isfinite(log_error)) else float("inf")
        score.rms_pct.append(rms)
        score.median_pct.append(report["median_abs_pct_error"])
        score.fitted.append(report["fitted"])
    return score


def rank_forms(table: pd.DataFrame, forms=CANDIDATES, origins=ORIGINS, loss_column: str = "domain_loss",
               **fit_options) -> dict:
    """Every form's rolling-origin score and the chosen form (lowest score; ties go to the earlier form).

    Args:
        table: The evaluations a sweep fit uses (valid budgets only, :mod:`scaling_laws.fitting.points`).
        forms: Candidate form names (``spt-epochs`` is skipped, with a note, when the table does not give the
            domain set's size).
        origins: Shares of the log-token range (:data:`ORIGINS`).
        loss_column: The held-out domain loss.
        **fit_options: Passed to :func:`scaling_laws.fitting.spt.fit_spt` (``n_starts``, ``seed``, ``objective``,
            ``fitted``...; no bootstrap).

    Returns:
        ``origins`` (tokens), ``scores`` (:meth:`FormScore.to_dict` per form, in ``forms`` order), ``chosen``,
        ``rule`` (the rule in words) and ``notes``.

    Raises:
        InputError: When no form could be scored.
    """
    at = origin_tokens(table, origins)
    scores, notes = [], []
    for form in forms:
        if form == "spt-epochs":
            try:
                unique_tokens_of(table)
            except InputError as exc:
                notes.append(f"spt-epochs not scored: {exc}")
                continue
        scores.append(score_form(table, form, at, loss_column, **fit_options))
    finite = [s for s in scores if np.isfinite(s.score)]
    if not finite:
        raise InputError("no law form could be fitted at the rolling origins: "
                         + "; ".join(e for s in scores for e in s.errors))
    chosen = min(finite, key=lambda s: s.score)
    return {"origins": at, "scores": [s.to_dict() for s in scores], "chosen": chosen.form, "notes": notes,
            "rule": "fit on budgets <= each origin, forecast the held-out loss beyond it; score = mean over origins "
                    "of the RMS log error (%); the lowest score is chosen"}


def format_ranking(ranking: dict) -> str:
    """The rolling-origin table: one line per form, its error at each origin, its score, and the choice."""
    origins = ranking["origins"]
    head = "  ".join(f"{'<=' + format(t, '.3g'):>10}" for t in origins)
    lines = ["law forms judged by their forecasts inside the pilot (RMS log error of the held-out loss beyond each "
             "origin, %):", f"  {'form':<16}  {head}  {'score':>7}  fitted"]
    for s in ranking["scores"]:
        cells = "  ".join(f"{v:>10.3g}" for v in s["rms_pct"])
        fitted = ", ".join(sorted({f for f in s["fitted"] if f}))
        mark = "  <- chosen" if s["form"] == ranking["chosen"] else ""
        lines.append(f"  {s['form']:<16}  {cells}  {s['score']:>7.3g}  {fitted}{mark}")
        lines += [f"    {error}" for error in s["errors"]]
    lines += [f"  note: {note}" for note in ranking["notes"]]
    return "\n".join(lines)


def fit_best_form(table: pd.DataFrame, *, source: str = "curves", loss_column: str = "domain_loss",
                  fitted: str = "auto", forms=CANDIDATES, **options) -> FitResult:
    """``spt fit --law auto``: ranks the forms (:func:`rank_forms`), fits the chosen one with its bootstrap
    (:func:`scaling_laws.fitting.evaluations.fit_evaluations`), and fits the paper's form on the same data (no
    bootstrap) to put its delta* beside the chosen form's.

    Args:
        table: The sweep's evaluations (all of them; the fit selects the valid budgets).
        source: Name of the table in messages.
        loss_column: The held-out domain loss.
        fitted: ``auto``, ``train+gap`` or ``held-out`` (the forms with halves).
        forms: Candidate forms.
        **options: Passed to ``fit_evaluations`` (``results``, ``bootstrap_replicates``, ``level``, ``n_starts``,
            ``seed``, ``objective``, ...); the rolling-origin fits get the fit options only, without a bootstrap.

    Returns:
        The chosen form's fit; ``settings["form_selection"]`` holds the ranking, ``delta_star`` (per default
        budget: ``tokens``, ``chosen``, ``paper``) and ``paper_form_params``.
    """
    fit_options = {k: v for k, v in options.items()
                   if k in ("n_starts", "seed", "objective", "staged", "train_column")}
    ranking = rank_forms(select_points(table, source).table, forms, loss_column=loss_column, fitted=fitted,
                         **fit_options)
    result = fit_evaluations(table, source=source, loss_column=loss_column, fitted=fitted, form=ranking["chosen"],
                             **options)
    paper = result
    if result.law != PAPER_FORM:
        paper_options = {**options, "bootstrap_replicates": 0}
        paper = fit_evaluations(table, source=source, loss_column=loss_column, fitted=fitted, form=PAPER_FORM,
                                **paper_options)
    rows = [{"tokens": tokens, "chosen": optimal_fraction(result, tokens).fraction,
             "paper": optimal_fraction(paper, tokens).fraction} for tokens in resolve_budgets(result)]
    result.settings["form_selection"] = {**ranking, "delta_star": rows, "paper_form_params": paper.params,
                                         "paper_form_fitted": paper.settings.get("fitted")}
    return result


def format_selection(selection: dict, chosen_law: str) -> str:
    """The ranking table, then delta* of the chosen form and of the paper's form at each default budget."""
    lines = [format_ranking(selection),
             f"delta* (point estimates) of the chosen form {chosen_law} and of the paper's form {PAPER_FORM} "
             f"(fitted: {selection.get('paper_form_fitted')}):"]
    for row in selection["delta_star"]:
        lines.append(f"  T={row['tokens']:.4g}: {chosen_law} {row['chosen']:.4g}   {PAPER_FORM} {row['paper']:.4g}")
    return "\n".join(lines)
