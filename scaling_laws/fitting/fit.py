"""Fitting a law to a table: ``fit(table, law) -> FitResult``, predictions with intervals, extrapolation checks."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import pandas as pd

from scaling_laws.fitting.data import check_frame, data_caveats, law_inputs, resolve_law
from scaling_laws.fitting.intervals import percentile_bands
from scaling_laws.fitting.noise import bootstrap_fits, resolve_method, run_layout
from scaling_laws.fitting.refits import refit_seeds
from scaling_laws.fitting.result import FitResult, bootstrap_caveats
from scaling_laws.fitting.search import Problem, SearchResult, search
from scaling_laws.fitting.staged import staged_starts
from scaling_laws.laws.base import Law
from scaling_laws.laws.registry import get_law
from scaling_laws.numerics.objective import Objective
from spt.errors import InputError


def _resolve(table: pd.DataFrame, law: str | Law) -> Law:
    return resolve_law(law, table) if isinstance(law, str) else law


def search_law(law: Law, inputs: dict, values: np.ndarray, objective: Objective, *, fixed: Mapping | None = None,
               n_starts: int | None = None, staged: bool = True, rng: np.random.Generator | None = None,
               prior_noise: float | None = None) -> tuple[Problem, SearchResult]:
    """The multi-start search of one law on arrays: its start grid (a random subset of ``n_starts``), the staged
    start where the law has one, the batched optimizer and a polish.

    Raises:
        InputError: When no start gives a finite objective.
    """
    rng = rng or np.random.default_rng(0)
    fixed = dict(fixed or {})
    starts = law.start_grid(inputs, values)
    if n_starts is not None and n_starts < len(starts):
        starts = starts[np.sort(rng.choice(len(starts), size=n_starts, replace=False))]
    if staged and not fixed:
        starts = np.vstack([staged_starts(law, inputs, values, objective), starts])
    problem = Problem(law, inputs, values, objective, fixed=fixed, prior_noise=prior_noise)
    try:
        return problem, search(problem, starts)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def fit(
    table: pd.DataFrame,
    law: str | Law,
    *,
    loss_column: str | None = None,
    objective: Objective | None = None,
    fixed: Mapping[str, float] | None = None,
    n_starts: int | None = None,
    staged: bool = True,
    bootstrap_replicates: int = 0,
    bootstrap_method: str = "auto",
    level: float = 0.95,
    seed: int = 0,
    source: str = "data",
) -> FitResult:
    """Fits a law form to a table by multi-start batched optimization.

    Args:
        table: One row per run, or per evaluation of a run (with a ``run_id`` column), with the law's input
            columns and the fitted column.
        law: A law name (``chinchilla``, ``muennighoff``, ``spt``, ``spt-regularized``, ``spt-n``, ``spt-train``,
            ``spt-gap``, ``finetune-gain``, ...) or form. ``spt`` becomes ``spt-n`` when the table has a
            ``params`` column with several values. (A sweep's SPT fit, with the train loss and the gap fitted
            separately, is :func:`scaling_laws.fitting.spt.fit_spt`.)
        loss_column: Column to fit (default: the law's target, ``loss`` or ``gain``).
        objective: What to minimize (default: sum of Huber losses, delta 1e-3, in the law's residual space).
        fixed: Public values of parameters held fixed, by name (e.g. a Chinchilla base for ``muennighoff``).
        n_starts: Use a random subset of this many grid starts (default: the whole grid).
        staged: Add a staged start where the law has one (see :mod:`scaling_laws.fitting.staged`).
        bootstrap_replicates: Number of bootstrap refits for intervals (0: none).
        bootstrap_method: ``points`` (resample rows: right when each row is its own run), ``runs`` (simulated
            run offsets and correlated noise along runs, :mod:`scaling_laws.fitting.noise`), or ``auto`` (``runs`` when a
            ``run_id`` groups several rows).
        level: Coverage of the bootstrap intervals.
        seed: Seed of the start subset and the resamples.
        source: Name of the table in error messages.

    Returns:
        The fit; ``settings`` records ``converged``, ``on_bounds`` (parameters whose fitted coordinate sits on a
        bound: ``{name: "lower" | "upper"}``) and ``optimum`` (how many starts reached the best objective and
        the next distinct minima, :func:`scaling_laws.fitting.search.optimum_spread`).

    Raises:
        InputError: For bad data, unknown fixed parameters (or any, for a law with ``share`` parameters), or
            data on which no start gives a finite objective.
    """
    started = time.perf_counter()
    law = _resolve(table, law)
    target = loss_column or law.target
    objective = objective or Objective(residuals=law.residuals)
    fixed = {k: float(v) for k, v in (fixed or {}).items()}
    unknown = sorted(set(fixed) - set(law.names))
    if unknown:
        raise InputError(f"cannot fix {', '.join(unknown)}: law {law.name} has {', '.join(law.names)}")
    shares = [p.name for p in law.params if p.share]
    if fixed and shares:
        raise InputError(f"cannot fix parameters of law {law.name}: it fits {', '.join(shares)} as shares of "
                         f"other parameters (so that the paper's constraints hold), not on their own")
    checked = check_frame(table, law, target, residuals=objective.residuals,
                          free_params=len(law.params) - len(fixed), source=source)
    inputs, values = law_inputs(checked, law), checked[target].to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    problem, found = search_law(law, inputs, values, objective, fixed=fixed, n_starts=n_starts, staged=staged,
                                rng=rng)
    samples, noise, method, refits = None, None, None, None
    if bootstrap_replicates > 0:
        layout = run_layout(table, checked)
        method = resolve_method(bootstrap_method, layout)
        refits, noise = bootstrap_fits(problem, refit_seeds(found, problem), bootstrap_replicates, method, layout,
                                       rng)
        samples = law.to_public(refits.thetas)
    result = FitResult(
        law=law.name,
        params=dict(zip(law.names, map(float, law.to_public(found.theta)))),
        objective=found.value,
        n_points=len(values),
        settings={
            "objective": objective.kind, "huber_delta": objective.huber_delta, "residuals": objective.residuals,
            "loss_column": target, "n_starts": found.n_starts, "staged": staged and not fixed,
            "bootstrap": bootstrap_replicates, "bootstrap_method": method, "seed": seed,
            **({"bootstrap_refits": refits.to_dict()} if refits is not None else {}),
            "converged": found.converged, "on_bounds": law.on_bounds(found.theta), "optimum": found.spread,
            "seconds": round(time.perf_counter() - started, 3),
        },
        fixed=sorted(fixed),
        data_ranges={c: [float(checked[c].min()), float(checked[c].max())] for c in law.inputs},
        constants=law.constants,
        samples=samples,
        level=level,
        noise={"fitted": noise.to_dict()} if noise is not None else None,
    )
    result.caveats += data_caveats(checked, law, target) + bootstrap_caveats(result)
    return result


def predict(fit_result: FitResult, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Predictions of a fit, with bootstrap intervals when the fit has replicates.

    Args:
        fit_result: A fit.
        inputs: The law's input columns as arrays.

    Returns:
        ``{"predicted": (n,)}`` plus ``"lower"`` and ``"upper"`` (central percentile interval of the
        replicates' predictions at the fit's level, not widened to contain the prediction) when the fit was
        bootstrapped.
    """
    law = fit_result.form
    out = {"predicted": law.predict(fit_result.params, inputs)}
    thetas = fit_result.sample_thetas()
    if thetas is not None and len(thetas):
        with np.errstate(all="ignore"):
            draws = law.predict_many(thetas, {k: np.asarray(v, dtype=float) for k, v in inputs.items()})
        out["lower"], out["upper"] = percentile_bands(draws, fit_result.level)
    return out


def predict_table(fit_result: FitResult, table: pd.DataFrame, column: str = "predicted_loss",
                  source: str = "data") -> pd.DataFrame:
    """The table with a ``predicted_loss`` column (and ``_lower``/``_upper`` with bootstrap) added.

    Raises:
        InputError: When the law's input columns are missing or bad.
    """
    law = fit_result.form
    checked = check_frame(table, law, target=None, source=source)
    result = predict(fit_result, law_inputs(checked, law))
    out = table.copy()
    out[column] = result["predicted"]
    if "lower" in result:
        out[f"{column}_lower"], out[f"{column}_upper"] = result["lower"], result["upper"]
    return out


def extrapolation_check(table: pd.DataFrame, law: str | Law, *, holdout: float = 0.25, **fit_options) -> dict:
    """Fits on the smaller budgets and reports the error on the larger ones.

    Rows are ordered by the law's budget (compute ``6 N D`` for Chinchilla-type laws, tokens otherwise); the
    largest ``holdout`` share of rows is held out.

    Args:
        table: The full table.
        law: Law name or form.
        holdout: Share of rows (the largest budgets) held out, in (0, 1).
        **fit_options: Passed to :func:`fit` (``loss_column``, ``objective``, ``n_starts``, ...).

    Returns:
        ``budget``, ``threshold`` (largest fitted budget), ``n_fit``, ``n_holdout``, the held-out errors
        ``mean_abs_rel_error``, ``max_abs_rel_error``, ``rmse_log``, and the parameters fitted on the subset.

    Raises:
        InputError: When ``holdout`` is outside (0, 1) or too few rows remain on either side.
    """
    if not 0.0 < holdout < 1.0:
        raise InputError(f"holdout={holdout}: must be in (0, 1)")
    law = _resolve(table, law)
    target = fit_options.get("loss_column") or law.target
    checked = check_frame(table, law, target, source=fit_options.get("source", "data"))
    budget = law.budget(law_inputs(checked, law))
    order = np.argsort(budget, kind="stable")
    n_holdout = int(round(holdout * len(order)))
    threshold = budget[order[len(order) - n_holdout - 1]]
    small = budget <= threshold
    if n_holdout < 1 or small.all():
        raise InputError(f"holdout={holdout}: leaves no rows with budgets above the fitted ones")
    partial = fit(table[small], law, **fit_options)
    predicted = law.predict(partial.params, law_inputs(checked[~small], law))
    observed = checked[target].to_numpy(dtype=float)[~small]
    relative = np.abs(predicted - observed) / np.abs(observed)
    with np.errstate(all="ignore"):
        log_error = np.log(observed) - np.log(predicted)
    return {
        "budget": law.budget_column,
        "threshold": float(threshold),
        "n_fit": int(small.sum()),
        "n_holdout": int((~small).sum()),
        "mean_abs_rel_error": float(np.mean(relative)),
        "max_abs_rel_error": float(np.max(relative)),
        "rmse_log": float(np.sqrt(np.mean(log_error**2))),
        "params": partial.params,
    }


__all__ = ["Objective", "extrapolation_check", "fit", "get_law", "predict", "predict_table"]
