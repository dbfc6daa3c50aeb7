"""Noise along runs, and bootstrap replicates that respect it.

A sweep's curves hold many evaluations of each run. They are not independent measurements: a run whose seed
gave it a slightly better start stays better (a per-run offset), and a checkpoint that happens to be good is
followed by one that is good too (correlation along the run). Resampling single evaluations as if they were
independent, as the classic bootstrap does, treats 16 evaluations of one run as 16 runs, and its intervals are
far too narrow: on synthetic pilots (:func:`scaling_laws.synthetic.pilot_sweep`: 6 fractions x 16 evaluations,
run offsets 0.5%, AR(1) noise 0.5% with lag-1 correlation 0.7) its nominal 90% intervals for delta* covered the
true delta* in 42.5% of 40 sweeps, against 95% for the method here (``tests/test_scaling_coverage.py``; figures
of percentile intervals, before delta*'s became the basic interval: now 40% and 85%).

What is done instead is a *parametric bootstrap with a fitted noise model*. The residuals of the fit (log or
linear, as fitted) are read as a per-run offset plus an AR(1) series along the run; the model's three numbers
are estimated from them (:func:`estimate_noise`); replicate data sets are the fitted values plus freshly drawn
noise of that model (:func:`simulate`), and each is refitted. (For an SPT fit of the train loss and the gap,
:mod:`scaling_laws.fitting.spt` draws the noise the two losses of a checkpoint share and the noise of their own
samples separately.) Why not the alternatives:

- *Resampling whole runs* (cluster bootstrap) drops whole fractions from a replicate when each fraction has one
  run, and a law of 12 parameters cannot be fitted without them; with two seeds per fraction, a resample of two
  runs has half the variance of the truth.
- *Block resampling along a run* keeps the correlation but cannot see the run offset at all.

Two corrections make the model honest. The fit absorbs part of the noise into its parameters, and correlated
noise carries fewer independent values than it has evaluations, so the residual variance is scaled by
``n_eff / (n_eff - parameters)`` with ``n_eff`` the effective number of independent evaluations. And the run
offset cannot be told apart from the law's own shape in delta when each fraction has one run: the fit absorbs
it and the residuals do not show it. It is measured from runs that repeat a cell (same fraction and budget,
other seeds) when the sweep has them; without them it is *assumed* (``ASSUMED_OFFSET`` times the noise along a
run; ``FitResult.noise`` records which, and the caveats say so). With repeats, the measurement is pooled with
the assumption as a prior worth 2 degrees of freedom.

A third part is shared by all runs at the same point of training: when the law's shape in T misses the curves
(a tiny model's loss plateau before its first drop, say), every fraction misses the same way at the same
tokens. Read as per-run noise, that miss would move each fraction's curve on its own in the replicates and
scatter delta* far more than the data do; it is estimated as the mean residual across runs at each evaluated
budget (corrected for the per-run noise the mean still holds) and drawn once per budget for all runs. On the
quickstart pilot (5 fractions, 17 fitted evaluations each, 2026-11-30) it was half the residual variance.

The residuals hold the law's misfit besides the noise: where the law cannot follow a run's curve, they form a
smooth curve along it, which the model reads as that run's noise (strongly correlated, so the run's level is
uncertain by a multiple of the misfit). That is how a misfit that differs between fractions reaches delta*'s band,
and on real pilots it is much of the band (``benchmarks/misfit_band.py``: 1.5 to 4 times the band the noise
between evaluations gives alone). When the law's form is wrong the band is wide: on pilots of an epoch-driven law
it spans three quarters of the fractions searched, and its nominal 90% covered the true delta* in 100% of 60
sweeps as a percentile interval, 77% as the basic interval (README, *How far the intervals can be trusted*).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from scaling_laws.fitting.refits import Refits, bootstrap, refit

#: Weight (degrees of freedom) of the assumed run offset when repeats measure it too.
PRIOR_DEGREES = 2.0
#: The assumed run offset, as a multiple of the noise the residuals show between evaluations of a run, when no
#: repeats measure it. Seed-to-seed differences of a small model's final loss are usually larger than the noise
#: between consecutive evaluations of one run (which see the same evaluation set), and the bootstrap from fitted
#: parameters is optimistic besides. Chosen on synthetic pilots whose true offset equals the noise along a run
#: (tests/test_scaling_coverage.py): nominal 90% intervals for delta* covered the truth in 82.5% of 40 sweeps at
#: 1.0x, 95% at 1.25x and 97.5% at 1.5x (median widths 0.0147, 0.0168, 0.0195 around a true delta* of 0.406,
#: whose estimates spread by 0.0048), with the offset scaled by the absorption-corrected noise; scaled by the
#: noise as seen (as now), 92.5% at 1.25x (median width 0.0165). (Percentile intervals; as the basic interval,
#: delta*'s since 2026-12-06, 85% at 1.25x.)
ASSUMED_OFFSET = 1.25
#: Largest lag-1 correlation used (beyond it a run is one long drift, and the estimate is unreliable).
MAX_CORRELATION = 0.95
#: Runs that must share an evaluated budget for the shared part to be estimated there.
MIN_SHARING_RUNS = 3
#: Budgets shared by that many runs needed to estimate the shared part at all.
MIN_SHARED_BUDGETS = 4
#: Largest variance inflation for noise absorbed by the fit (when the law has nearly as many parameters as the
#: evaluations have independent values, the residuals say little about the noise).
MAX_ABSORPTION = 4.0
#: ``None`` (the method): the noise model is estimated from the residuals as they are, so the law's lack of fit
#: along a run (a smooth curve the law cannot follow) is read as noise of that run and reaches the intervals. An
#: integer ``k`` (a diagnostic, never the default): each run's least-squares polynomial of degree ``k`` in log
#: tokens is removed first (:func:`rough_part`), leaving the noise without the misfit, to show how much of a band
#: is the law's misfit (``benchmarks/misfit_band.py``).
SMOOTH_REMOVED: int | None = None


@dataclass
class RunNoise:
    """Noise of the evaluations of one fitted quantity, in its residual space.

    Attributes:
        space: ``"log"`` (relative noise) or ``"linear"`` (nats/token).
        along_sd: Marginal standard deviation of the AR(1) noise along a run.
        correlation: Lag-1 correlation of that noise between consecutive evaluations.
        offset_sd: Standard deviation of the per-run offset.
        offset_source: ``"repeats"`` (measured from runs repeating a cell, pooled with the assumption) or
            ``"assumed"`` (no repeats: taken equal to ``along_sd``), or ``"independent"`` (one evaluation per run).
        repeat_degrees: Degrees of freedom of the measurement from repeats.
        shared_sd: Standard deviation of the part all runs share at one budget (0: not estimated).
        shared_correlation: Lag-1 correlation of the shared part between consecutive budgets.
    """

    space: str
    along_sd: float
    correlation: float
    offset_sd: float
    offset_source: str
    repeat_degrees: float = 0.0
    shared_sd: float = 0.0
    shared_correlation: float = 0.0

    def to_dict(self) -> dict:
        return {k: (round(v, 8) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _mean_variance_factor(correlation: float, length: int) -> float:
    """``n Var(mean) / sigma^2`` of ``length`` consecutive values of a stationary AR(1) series."""
    lags = np.arange(1, length)
    return float(1.0 + 2.0 * np.sum((1.0 - lags / length) * correlation**lags)) if length > 1 else 1.0


def _runs(groups: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """Row indices of each run, in evaluation order."""
    runs = []
    for key in dict.fromkeys(groups.tolist()):
        rows = np.flatnonzero(groups == key)
        runs.append(rows[np.argsort(order[rows], kind="stable")])
    return runs


def _shared_part(residuals: np.ndarray, groups: np.ndarray, order: np.ndarray
                 ) -> tuple[np.ndarray, float, float, float]:
    """The part of the residuals every run shares at one budget.

    Returns:
        (the residuals less the shared part, rescaled so that their variance estimates the per-run noise; the
        shared part's standard deviation; its lag-1 correlation; the number of runs averaged). The input
        unchanged and zeros when too few runs share budgets.
    """
    budgets, index = np.unique(order, return_inverse=True)
    runs_at = np.array([len(set(groups[index == b].tolist())) for b in range(len(budgets))])
    shared_budgets = runs_at >= MIN_SHARING_RUNS
    if shared_budgets.sum() < MIN_SHARED_BUDGETS or len(set(groups.tolist())) < MIN_SHARING_RUNS:
        return residuals, 0.0, 0.0, 0.0
    means = np.array([residuals[index == b].mean() if shared_budgets[b] else 0.0 for b in range(len(budgets))])
    rows = shared_budgets[index]
    count = float(np.mean(runs_at[shared_budgets]))
    rest = residuals.copy()
    # Each row less its budget's mean keeps (count - 1) / count of the per-run variance: scale it back.
    rest[rows] = (residuals[rows] - means[index[rows]]) * np.sqrt(count / (count - 1.0))
    series = means[shared_budgets] - means[shared_budgets].mean()
    per_run_var = float(np.mean(rest[rows] ** 2))
    # The mean of `count` runs still holds 1/count of their own noise.
    shared_var = max(float(np.mean(series**2)) - per_run_var / count, 0.0)
    lagged = float(np.sum(series[1:] * series[:-1]) / np.sum(series**2)) if np.sum(series**2) > 0 else 0.0
    return rest, float(np.sqrt(shared_var)), float(np.clip(lagged, 0.0, MAX_CORRELATION)), count


def pooled_spread(values: np.ndarray, groups: np.ndarray) -> tuple[float, int]:
    """The squared deviations of ``values`` from their group's mean, summed over groups, and their degrees of
    freedom (values minus groups; a group of one adds neither): ``spread / degrees`` is the pooled variance."""
    values, groups = np.asarray(values, dtype=float), np.asarray(groups)
    spread, degrees = 0.0, 0
    for group in dict.fromkeys(groups.tolist()):
        members = values[groups == group]
        if len(members) > 1:
            spread += float(np.sum((members - members.mean()) ** 2))
            degrees += len(members) - 1
    return spread, degrees


def estimate_noise(residuals: np.ndarray, groups: np.ndarray, order: np.ndarray, cells: np.ndarray,
                   space: str, free_params: int, offset_prior: float = ASSUMED_OFFSET) -> RunNoise:
    """Estimates the offset + AR(1) noise model from a fit's residuals.

    Args:
        residuals: Observed minus fitted, in the fit's residual space ``(n,)``.
        groups: Run of each row ``(n,)``.
        order: Position of each row along its run (tokens) ``(n,)``.
        cells: Cell of each row ``(n,)``; runs sharing a cell (same fraction and budget, other seeds) measure
            the run offset.
        space: The residual space, recorded in the result.
        free_params: Parameters fitted (their absorption of residual variance is corrected for).
        offset_prior: The assumed run offset, as a multiple of the noise along a run (``ASSUMED_OFFSET`` for a
            loss; 0 for the difference of two losses of one checkpoint, in which a run's offset cancels).

    Returns:
        The noise model.
    """
    groups, order = np.asarray(groups), np.asarray(order, dtype=float)
    runs = _runs(groups, order)
    long_runs = [rows for rows in runs if len(rows) >= 3]
    n = len(residuals)
    if not long_runs:  # one evaluation per run: independent runs, the classic setting
        sd = float(np.sqrt(np.sum(residuals**2) / max(n - free_params, 1)))
        return RunNoise(space, sd, 0.0, 0.0, "independent")
    residuals, shared_sd, shared_correlation, _ = _shared_part(np.asarray(residuals, dtype=float), groups, order)
    if SMOOTH_REMOVED is not None:
        residuals = rough_part(residuals, groups, order, SMOOTH_REMOVED)
    centered = [residuals[rows] - residuals[rows].mean() for rows in long_runs]
    lengths = np.array([len(c) for c in centered], dtype=float)
    sum_sq = sum(float(np.sum(c**2)) for c in centered)
    lag_sum = sum(float(np.sum(c[1:] * c[:-1])) for c in centered)
    raw = lag_sum / sum_sq if sum_sq > 0 else 0.0
    mean_length = float(np.mean(lengths))
    # Centering each run biases the lag-1 estimate down by about (1 + 3 rho) / n (Marriott and Pope 1954).
    correlation = (mean_length * raw + 1.0) / (mean_length - 3.0) if mean_length > 4 else raw
    correlation = float(np.clip(correlation, 0.0, MAX_CORRELATION))
    kept = sum(length - _mean_variance_factor(correlation, int(length)) for length in lengths)
    # The law's parameters absorb part of the noise, more than their count suggests when the noise is
    # correlated: n correlated evaluations carry only about n / factor independent ones (n_eff), and the fit
    # takes free_params of those. Without this, replicates came out 1.35x too narrow on synthetic pilots.
    effective = sum(length / _mean_variance_factor(correlation, int(length)) for length in lengths)
    absorbed = min(effective / max(effective - free_params, 1.0), MAX_ABSORPTION)
    seen_var = sum_sq / max(kept, 1.0)  # the noise between evaluations of a run, as the residuals show it
    along_var = seen_var * absorbed
    # The assumed offset scales with the noise the residuals show, not with its absorption-corrected size:
    # the correction says how much noise the fit hid, which has nothing to do with how far seeds drift apart.
    # (Scaled by the corrected noise, the quickstart pilot's assumed offset was 2.6%, four times the fraction-
    # specific seed-to-seed spread measured on it, 0.6%; the band then spanned every fraction searched.)
    prior_var = offset_prior**2 * seen_var
    offset_var, source = prior_var, "assumed"
    means, cell_of = np.array([residuals[rows].mean() for rows in runs]), np.array([cells[rows[0]] for rows in runs])
    spread, degrees = pooled_spread(means, cell_of)
    if degrees > 0:
        mean_part = along_var * _mean_variance_factor(correlation, int(round(mean_length))) / mean_length
        measured = max(spread / degrees - mean_part, 0.0)
        offset_var = (degrees * measured + PRIOR_DEGREES * prior_var) / (degrees + PRIOR_DEGREES)
        source = "repeats"
    return RunNoise(space, float(np.sqrt(along_var)), correlation, float(np.sqrt(offset_var)), source, degrees,
                    shared_sd, shared_correlation)


def rough_part(residuals: np.ndarray, groups: np.ndarray, order: np.ndarray, degree: int) -> np.ndarray:
    """The residuals less each run's least-squares polynomial of ``degree`` in log tokens: what is left when the
    smooth curve of a run (the law's misfit along it, and the slowest part of its noise) is taken out. Runs too
    short for the polynomial are left as they are."""
    rest, order = np.array(residuals, dtype=float), np.asarray(order, dtype=float)
    for rows in _runs(np.asarray(groups), order):
        if len(rows) > degree + 2:
            x = np.log(np.maximum(order[rows], 1.0))
            basis = np.vander(x - x.mean(), degree + 1)
            coefficients, *_ = np.linalg.lstsq(basis, rest[rows], rcond=None)
            rest[rows] -= basis @ coefficients
    return rest


def simulate(noise: RunNoise, groups: np.ndarray, order: np.ndarray, replicates: int,
             rng: np.random.Generator) -> np.ndarray:
    """Draws ``replicates`` noise vectors ``(K, n)`` of the model: an offset per run plus AR(1) along each run,
    plus an AR(1) series over budgets that every run evaluated at a budget shares."""
    groups, order = np.asarray(groups), np.asarray(order, dtype=float)
    out = np.zeros((replicates, len(groups)))
    if noise.shared_sd > 0:
        budgets, index = np.unique(order, return_inverse=True)
        series = np.zeros((replicates, len(budgets)))
        series[:, 0] = rng.normal(0.0, noise.shared_sd, replicates)
        step = noise.shared_sd * np.sqrt(1.0 - noise.shared_correlation**2)
        for b in range(1, len(budgets)):
            series[:, b] = noise.shared_correlation * series[:, b - 1] + rng.normal(0.0, step, replicates)
        out += series[:, index]
    innovation = noise.along_sd * np.sqrt(1.0 - noise.correlation**2)
    for rows in _runs(groups, order):
        offset = rng.normal(0.0, noise.offset_sd, replicates)
        level = rng.normal(0.0, noise.along_sd, replicates)
        out[:, rows[0]] += offset + level  # added to the shared part drawn above
        for row in rows[1:]:
            level = noise.correlation * level + rng.normal(0.0, innovation, replicates)
            out[:, row] += offset + level
    return out


def perturb(fitted: np.ndarray, draws: np.ndarray, space: str) -> np.ndarray:
    """Replicate observations: fitted values with noise draws applied in the residual space."""
    return fitted[None, :] * np.exp(draws) if space == "log" else fitted[None, :] + draws


@dataclass
class RunGroups:
    """Which run each row belongs to, its position along the run, and its cell (for repeated runs).

    Attributes:
        groups: Run of each row ``(n,)`` (any hashable labels).
        order: Position along the run ``(n,)`` (tokens).
        cells: Cell of each row ``(n,)``: rows of runs that repeat one another (same fraction, budget and model)
            share it.
    """

    groups: np.ndarray
    order: np.ndarray
    cells: np.ndarray

    @property
    def has_runs(self) -> bool:
        """Whether some run has several evaluations (else every row is its own run)."""
        return len(set(self.groups.tolist())) < len(self.groups)

    def subset(self, rows: np.ndarray) -> RunGroups:
        return RunGroups(self.groups[rows], self.order[rows], self.cells[rows])


def run_layout(table, checked) -> RunGroups:
    """The layout of a fit table: runs from its ``run_id`` column (else every row is a run), order by tokens,
    cells by the run's fraction, model size and budget (its largest evaluated tokens).

    Args:
        table: The table as given (its ``run_id`` column, if any, is read).
        checked: The float columns the law uses, row-aligned with ``table``.
    """
    n = len(checked)
    groups = (table["run_id"].astype(str).str.strip().to_numpy() if "run_id" in table.columns
              else np.arange(n).astype(str))
    order = checked["tokens"].to_numpy(dtype=float) if "tokens" in checked.columns else np.zeros(n)
    budget = {g: order[groups == g].max() for g in dict.fromkeys(groups.tolist())}
    keys = [c for c in ("fraction", "params") if c in checked.columns]
    cells = np.array(["|".join([*(f"{checked[c].iloc[i]:.10g}" for c in keys), f"{budget[groups[i]]:.10g}"])
                      for i in range(n)])
    return RunGroups(groups, order, cells)


def resolve_method(method: str, layout: RunGroups | None) -> str:
    """``auto`` becomes ``runs`` when rows come in runs of several evaluations, else ``points``.

    Raises:
        ValueError: For an unknown method.
    """
    if method not in ("auto", "runs", "points"):
        raise ValueError(f"bootstrap method {method!r}: expected auto, runs or points")
    if method == "auto":
        return "runs" if layout is not None and layout.has_runs else "points"
    return method


def bootstrap_fits(problem, seeds: np.ndarray, replicates: int, method: str, layout: RunGroups,
                   rng: np.random.Generator,
                   offset_prior: float = ASSUMED_OFFSET) -> tuple[Refits, RunNoise | None]:
    """Bootstrap refits of a fitted problem: ``points`` (resample rows) or ``runs`` (simulated run noise).

    Args:
        problem: The full-data :class:`scaling_laws.fitting.search.Problem`.
        seeds: Starts of every refit, the fit's best minimum first (``seeds[0]`` gives the fitted values; see
            :func:`scaling_laws.fitting.refits.refit_seeds`).
        replicates: Number of refits ``K``.
        method: ``points`` or ``runs`` (see the module docstring).
        layout: Runs of the rows.
        rng: Source of the resamples.
        offset_prior: See :func:`estimate_noise`.

    Returns:
        The refits (internal vectors ``(K, P)``, NaN rows where a refit failed, and their count) and the noise
        model (``runs`` only).
    """
    if method == "points":
        return bootstrap(problem, seeds, replicates, rng), None
    space = problem.objective.residuals
    with np.errstate(all="ignore"):
        fitted = problem.law.predict_many(seeds[:1], problem.inputs)[0]
        residuals = np.log(problem.target) - np.log(fitted) if space == "log" else problem.target - fitted
    noise = estimate_noise(residuals, layout.groups, layout.order, layout.cells, space, len(problem.free),
                           offset_prior)
    targets = perturb(fitted, simulate(noise, layout.groups, layout.order, replicates, rng), space)
    return refit(problem.with_targets(targets), seeds, replicates), noise
