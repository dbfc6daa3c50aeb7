"""Validation built in: refit without some budgets and/or whole fractions, and measure how well the law predicts them.

This is the check a user can run on their own sweep before trusting an extrapolated delta*: hold out the
largest budgets (``holdout_tokens_above``) to see how the law extrapolates in T, or whole fractions
(``holdout_fractions``) to see how it interpolates or extrapolates in delta.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_laws.decision.optimal import optimal_fraction
from scaling_laws.fitting.noise import pooled_spread
from scaling_laws.fitting.spt import fit_spt
from spt.errors import InputError


def holdout_mask(table: pd.DataFrame, tokens_above: float | None = None, fractions=()) -> np.ndarray:
    """Rows held out: tokens above ``tokens_above`` and/or a fraction in ``fractions`` (to 1e-9)."""
    tokens = pd.to_numeric(table["tokens"]).to_numpy(float)
    fraction = pd.to_numeric(table["fraction"]).to_numpy(float)
    held = np.zeros(len(table), dtype=bool)
    if tokens_above is not None:
        held |= tokens > tokens_above
    for value in fractions or ():
        held |= np.isclose(fraction, float(value), rtol=0.0, atol=1e-9)
    return held


def validate(table: pd.DataFrame, *, holdout_tokens_above: float | None = None, holdout_fractions=(),
             loss_column: str = "domain_loss", source: str = "data", **fit_options) -> dict:
    """Fits the SPT law without the held-out rows and reports its error on each of them.

    Args:
        table: The evaluations the full fit uses (valid budgets only; see :mod:`scaling_laws.fitting.points`).
        holdout_tokens_above: Hold out evaluations beyond this many tokens.
        holdout_fractions: Hold out every evaluation at these fractions.
        loss_column: The held-out domain loss (what is predicted).
        source: Name of the table in messages.
        **fit_options: Passed to :func:`scaling_laws.fitting.spt.fit_spt` (no bootstrap is run).

    Returns:
        ``holdout_tokens_above``, ``holdout_fractions``, ``n_fit``, ``n_holdout``, ``fitted`` (what the
        reduced fit used), ``median_abs_pct_error``, ``max_abs_pct_error``, ``rows`` (one dict per held-out
        evaluation: ``run_id``, ``fraction``, ``tokens``, ``observed``, ``predicted``, ``error_pct`` =
        100 (predicted - observed) / observed), ``params`` of the reduced fit and ``final`` (the best swept
        fraction at the largest budget, measured and predicted: :func:`final_choice`).

    Raises:
        InputError: When nothing is held out, or too little is left to fit.
    """
    if holdout_tokens_above is None and not holdout_fractions:
        raise InputError("validation needs --holdout-tokens-above and/or --holdout-fractions")
    if holdout_tokens_above is not None and not (np.isfinite(holdout_tokens_above) and holdout_tokens_above > 0):
        raise InputError(f"holdout tokens above {holdout_tokens_above:g}: must be a positive number of tokens")
    held = holdout_mask(table, holdout_tokens_above, holdout_fractions)
    if not held.any():
        raise InputError(f"{source}: the holdout (tokens above {holdout_tokens_above}, fractions "
                         f"{list(holdout_fractions) or 'none'}) matches no evaluation")
    if held.all():
        raise InputError(f"{source}: the holdout matches every evaluation; nothing is left to fit")
    fit_options = {k: v for k, v in fit_options.items() if k not in ("bootstrap_replicates", "level")}
    reduced = fit_spt(table[~held], loss_column=loss_column, source=f"{source} (without the holdout)",
                      **fit_options)
    rows = table[held]
    inputs = {"tokens": pd.to_numeric(rows["tokens"]).to_numpy(float),
              "fraction": pd.to_numeric(rows["fraction"]).to_numpy(float)}
    predicted = reduced.form.predict(reduced.params, inputs)
    observed = pd.to_numeric(rows[loss_column]).to_numpy(float)
    error = 100.0 * (predicted - observed) / observed
    run_ids = rows["run_id"].astype(str).tolist() if "run_id" in rows.columns else [""] * len(rows)
    return {
        "holdout_tokens_above": holdout_tokens_above, "holdout_fractions": [float(f) for f in holdout_fractions],
        "n_fit": int((~held).sum()), "n_holdout": int(held.sum()), "fitted": reduced.settings.get("fitted"),
        "median_abs_pct_error": float(np.median(np.abs(error))), "max_abs_pct_error": float(np.max(np.abs(error))),
        "rows": [{"run_id": r, "fraction": float(f), "tokens": float(t), "observed": float(o), "predicted": float(p),
                  "error_pct": float(e)}
                 for r, f, t, o, p, e in zip(run_ids, inputs["fraction"], inputs["tokens"], observed, predicted,
                                             error)],
        "params": reduced.params,
        "final": final_choice(table, reduced, loss_column),
    }


def seed_noise(last: pd.DataFrame, loss_column: str = "domain_loss") -> float | None:
    """The standard deviation of one run's loss at one budget, from the fractions run with several seeds.

    Pooled over fractions: the squared deviations of each run from its fraction's mean, over the degrees of
    freedom (runs minus fractions). None when no fraction has two runs.
    """
    spread, degrees = pooled_spread(pd.to_numeric(last[loss_column]).to_numpy(float),
                                    pd.to_numeric(last["fraction"]).to_numpy(float))
    return float(np.sqrt(spread / degrees)) if degrees else None


def best_fraction_verdict(measured: pd.Series, runs: pd.Series, predicted_best: float,
                          noise_sd: float | None) -> dict:
    """Whether a predicted best fraction is the measured best, or tied with it within the runs' seed noise.

    The runs can only rank two fractions when their mean losses differ by more than that difference's seed
    noise: one standard deviation, ``noise_sd * sqrt(1/n_a + 1/n_b)`` with ``n`` runs averaged at each. A
    predicted best that the runs put behind the measured best by less than that is ``tied``; by more, ``different``.
    Without repeated runs there is no noise estimate and only ``same`` or ``different`` can be said.

    Args:
        measured: Mean measured loss per fraction (index: fraction).
        runs: Runs averaged per fraction (same index).
        predicted_best: The fraction the fit puts best.
        noise_sd: One run's loss standard deviation at this budget (:func:`seed_noise`), or None.

    Returns:
        ``measured_best``, ``verdict`` (``same``, ``tied`` or ``different``), ``right`` (not ``different``),
        ``regret`` (nats the runs put the predicted best behind the measured best), ``tie_band`` (the one
        standard deviation it is compared with; None without a noise estimate) and ``tied_with`` (the other
        fractions the runs cannot separate from the measured best, by the same rule).
    """
    best = float(measured.idxmin())
    regret = float(measured[predicted_best] - measured[best])

    def band_with(fraction):
        return None if noise_sd is None else float(noise_sd * np.sqrt(1 / runs[fraction] + 1 / runs[best]))

    band = band_with(predicted_best)
    tied_with = [float(f) for f in measured.index
                 if f != best and noise_sd is not None and measured[f] - measured[best] < band_with(f)]
    if predicted_best == best:
        verdict = "same"
    elif band is not None and regret < band:
        verdict = "tied"
    else:
        verdict = "different"
    return {"measured_best": best, "verdict": verdict, "right": verdict != "different", "regret": regret,
            "tie_band": band, "tied_with": tied_with}


def final_choice(table: pd.DataFrame, fit, loss_column: str = "domain_loss") -> dict:
    """Which swept fraction is best at the largest budget of ``table``: measured (the mean loss of the runs'
    evaluations there, over seeds) and predicted by ``fit`` (at the same fractions), whether the runs can tell
    the two apart (:func:`best_fraction_verdict`), and the fit's delta* over the swept range.

    Returns:
        ``tokens``, ``fractions``, ``measured`` and ``predicted`` (losses per fraction, same order), ``runs``
        (runs averaged per fraction), ``noise_sd``, ``measured_best``, ``predicted_best``, ``same`` (the two
        are one fraction), ``verdict``, ``right``, ``regret``, ``tie_band``, ``tied_with`` and ``delta_star``.
    """
    tokens = pd.to_numeric(table["tokens"]).to_numpy(float)
    last = table[tokens == tokens.max()]
    by_fraction = pd.to_numeric(last[loss_column]).groupby(pd.to_numeric(last["fraction"]).to_numpy(float))
    measured, runs = by_fraction.mean(), by_fraction.count()
    fractions = measured.index.to_numpy(float)
    predicted = fit.form.predict(fit.params, {"tokens": np.full(len(fractions), tokens.max()), "fraction": fractions})
    swept = pd.to_numeric(table["fraction"]).to_numpy(float)
    best_predicted = float(fractions[np.argmin(predicted)])
    noise_sd = seed_noise(last, loss_column)
    verdict = best_fraction_verdict(measured, runs, best_predicted, noise_sd)
    choice = optimal_fraction(fit, float(tokens.max()), low=float(swept.min()), high=float(swept.max()))
    return {"tokens": float(tokens.max()), "fractions": fractions.tolist(), "measured": measured.tolist(),
            "predicted": [float(v) for v in predicted], "runs": [int(n) for n in runs], "noise_sd": noise_sd,
            "predicted_best": best_predicted, "same": verdict["verdict"] == "same", **verdict,
            "delta_star": float(choice.fraction)}


def verdict_text(final: dict) -> str:
    """The best-fraction verdict in words: ``same``, ``tied: ...`` or ``DIFFERENT: ...``."""
    if final["verdict"] == "same":
        others = [f"{f:g}" for f in final["tied_with"]]
        return "same" + (f"; within one standard deviation of seed noise (one run: {final['noise_sd']:.3f} nats) the "
                         f"runs cannot separate it from {', '.join(others)}" if others else "")
    behind = f"the runs put the predicted {final['regret']:.3f} nats behind"
    if final["tie_band"] is None:
        return f"DIFFERENT: {behind}; no fraction was run with several seeds to tell whether that is noise"
    tied = final["verdict"] == "tied"
    return (f"{'tied' if tied else 'DIFFERENT'}: {behind}, {'within' if tied else 'beyond'} one standard "
            f"deviation of that difference from seed to seed ({final['tie_band']:.3f})")


def validation_table(report: dict) -> pd.DataFrame:
    """The held-out evaluations with observed and predicted loss and the error in percent."""
    return pd.DataFrame(report["rows"], columns=["run_id", "fraction", "tokens", "observed", "predicted",
                                                 "error_pct"])


def format_validation(report: dict, max_rows: int = 40) -> str:
    """The validation as text: a header, one line per held-out evaluation (at most ``max_rows``), the summary."""
    what = []
    if report["holdout_tokens_above"] is not None:
        what.append(f"tokens above {report['holdout_tokens_above']:.4g}")
    if report["holdout_fractions"]:
        what.append(f"delta in {', '.join(f'{f:g}' for f in report['holdout_fractions'])}")
    lines = [f"validation: fit on {report['n_fit']} evaluations ({report['fitted']}), predicting the "
             f"{report['n_holdout']} held out ({' and '.join(what)})"]
    if max_rows > 0:
        lines.append(f"  {'run':<24} {'delta':>6} {'tokens':>10} {'observed':>9} {'predicted':>9} {'error %':>8}")
    for row in report["rows"][:max_rows]:
        lines.append(f"  {row['run_id'][:24]:<24} {row['fraction']:>6.3g} {row['tokens']:>10.4g} "
                     f"{row['observed']:>9.4f} {row['predicted']:>9.4f} {row['error_pct']:>+8.2f}")
    if 0 < max_rows < len(report["rows"]):
        lines.append(f"  ... and {len(report['rows']) - max_rows} more")
    lines.append(f"  median |error| {report['median_abs_pct_error']:.3g}%, max {report['max_abs_pct_error']:.3g}%")
    final = report.get("final")
    if final:
        losses = ", ".join(f"{f:g}: {m:.3f} / {p:.3f}" for f, m, p in
                           zip(final["fractions"], final["measured"], final["predicted"]))
        lines.append(f"  at T={final['tokens']:.4g} (delta: measured / predicted loss): {losses}")
        lines.append(f"  best swept delta there: measured {final['measured_best']:g}, predicted "
                     f"{final['predicted_best']:g} ({verdict_text(final)}); delta* of the reduced fit "
                     f"{final['delta_star']:.3g}")
    return "\n".join(lines)
