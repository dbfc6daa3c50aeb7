"""Synthetic pilots the bootstrap does not assume: data to test whether δ*'s interval covers when the world is not
the model (issue 23).

The run bootstrap (:mod:`scaling_laws.fitting.noise`) simulates the SPT law plus per-run offsets and Gaussian
AR(1) noise. Each generator here breaks one of those assumptions, on the shape of a small CPU pilot
(:func:`scaling_laws.synthetic.pilot_sweep`: fractions 0..0.6, one run each, 17 evaluations to 5e5 tokens, a
domain set of 1e4 tokens, 0.5% run offsets and 0.5% AR(1) noise with lag-1 correlation 0.7):

- ``epochs``: overfitting driven by domain epochs ``E = δT/|D|``, not by the SPT law's form: the domain is learned
  from Muennighoff-style effective repeated tokens plus a little transfer from general text, and the held-out
  minus train gap grows as ``E**0.8`` (:func:`epoch_law`);
- ``heavy-tails``: the SPT pilot law with every noise draw (offsets, AR(1) innovations, evaluation noise) from a
  Student-t with 3 degrees of freedom, scaled to the same standard deviation;
- ``shape-jitter``: the SPT pilot law with each run's four exponents multiplied by ``1 + N(0, 0.05)``, so runs
  differ in shape, not only in level; the truth is the unjittered law's.

The truth is each generator's own argmin over δ in the searched range [0, 0.6], on a grid of 0.001.
The generators' constants were written down before any interval was computed on their data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_laws.decision.optimal import best_fractions, optimal_fraction
from scaling_laws.fitting.intervals import percentile_interval
from scaling_laws.fitting.points import select_points
from scaling_laws.fitting.spt import fit_spt
from scaling_laws.laws.registry import get_law
from scaling_laws.synthetic import (
    PILOT_DOMAIN_TOKENS, PILOT_FRACTIONS, PILOT_GAP_OFFSET, SPT_PILOT, _ar1, _phases, _schedule, gap_loss,
)

GENERATORS = ("epochs", "heavy-tails", "shape-jitter")
BUDGET = 5e5
EVALUATIONS = 17
#: The fractions δ* is searched over (the swept range).
SEARCHED = (0.0, 0.6)
#: The epoch-driven law: floor, coefficient and exponent of the domain term, Muennighoff's repeat scale R*,
#: transfer efficiency of general tokens, and the gap's coefficient and exponent in epochs.
EPOCH_LAW = {"k0": 2.6, "A": 400.0, "alpha": 0.5, "repeat_scale": 15.0, "transfer": 0.02, "gap": 0.05,
             "gap_power": 0.8}
#: Noise of every generator (as the pilot's): run offset sd, AR(1) marginal sd and lag-1 correlation, and
#: independent evaluation noise sd (fractions of the loss, applied multiplicatively).
NOISE = {"offset": 0.005, "ar": 0.005, "rho": 0.7, "evaluation": 0.00125}
T_DEGREES = 3
JITTER = 0.05
EXPONENTS = ("b_train_s", "b_train_g", "b_gap_s", "b_gap_g")


def epoch_law(tokens, fraction, domain_tokens: float = PILOT_DOMAIN_TOKENS, params: dict = EPOCH_LAW):
    """Held-out and train-sample domain loss when overfitting follows domain epochs (nats/token, each).

    Effective domain tokens follow Muennighoff et al. (2023): ``U (1 + R* (1 - exp(-(E - 1)/R*)))`` after the
    first epoch, with ``E = δT/U`` epochs of a domain set of ``U`` tokens; general text adds ``transfer`` of its
    tokens. The gap (held-out minus train sample) is ``gap E**gap_power`` plus the pilots' constant offset.
    """
    tokens, fraction = np.asarray(tokens, dtype=float), np.asarray(fraction, dtype=float)
    domain = fraction * tokens
    epochs = domain / domain_tokens
    repeats = np.maximum(epochs - 1.0, 0.0)
    scale = params["repeat_scale"]
    effective = np.where(epochs <= 1.0, domain,
                         domain_tokens * (1.0 + scale * (1.0 - np.exp(-repeats / scale))))
    seen = effective + params["transfer"] * (1.0 - fraction) * tokens + 1.0
    learned = params["k0"] + params["A"] * seen ** -params["alpha"]
    gap = params["gap"] * epochs ** params["gap_power"]
    return learned + gap, learned - PILOT_GAP_OFFSET


def true_delta_star(generator: str, budget: float) -> float:
    """The generator's own best δ at ``budget`` tokens: the argmin of its held-out loss over :data:`SEARCHED`."""
    grid = np.round(np.arange(SEARCHED[0], SEARCHED[1] + 1e-9, 0.001), 6)
    if generator == "epochs":
        loss = epoch_law(np.full(len(grid), budget), grid)[0]
    else:
        loss = get_law("spt").predict(SPT_PILOT, {"tokens": np.full(len(grid), budget), "fraction": grid})
    return float(grid[int(np.argmin(loss))])


def _draws(rng: np.random.Generator, generator: str, size, sd: float) -> np.ndarray:
    if generator == "heavy-tails":  # unit variance: a t(3) has variance 3
        return sd * rng.standard_t(T_DEGREES, size) / np.sqrt(T_DEGREES / (T_DEGREES - 2.0))
    return rng.normal(0.0, sd, size)


def _run_noise(rng: np.random.Generator, generator: str, count: int) -> np.ndarray:
    """A run's offset plus AR(1) series (log scale), with the generator's distribution."""
    series = np.empty(count)
    innovation = NOISE["ar"] * np.sqrt(1.0 - NOISE["rho"] ** 2)
    if generator == "heavy-tails":
        series[0] = _draws(rng, generator, None, NOISE["ar"])
        for k in range(1, count):
            series[k] = NOISE["rho"] * series[k - 1] + _draws(rng, generator, None, innovation)
    else:
        series = _ar1(rng, count, NOISE["ar"], NOISE["rho"])
    return _draws(rng, generator, None, NOISE["offset"]) + series


def _clean(generator: str, tokens: np.ndarray, fraction: float, rng: np.random.Generator):
    """A run's noiseless held-out and train-sample losses."""
    if generator == "epochs":
        return epoch_law(tokens, np.full(len(tokens), fraction))
    params = dict(SPT_PILOT)
    if generator == "shape-jitter":
        params.update({name: params[name] * (1.0 + rng.normal(0.0, JITTER)) for name in EXPONENTS})
    fractions = np.full(len(tokens), fraction)
    held_out = get_law("spt").predict(params, {"tokens": tokens, "fraction": fractions})
    return held_out, held_out - gap_loss(params, tokens, fractions, PILOT_GAP_OFFSET)


def stress_sweep(generator: str, seed: int) -> pd.DataFrame:
    """A pilot's evaluations (the fitter's input: ``run_id``, ``fraction``, ``tokens``, ``domain_loss``,
    ``domain_train_loss``, ``phase``, ``lr``) drawn from ``generator``."""
    if generator not in GENERATORS:
        raise ValueError(f"generator {generator!r}: expected one of {', '.join(GENERATORS)}")
    rng = np.random.default_rng(seed)
    tokens = np.arange(1, EVALUATIONS + 1) * (BUDGET / EVALUATIONS)
    phases = _phases(EVALUATIONS, "constant", 1)
    scale, lr = _schedule(phases, tokens / BUDGET, "constant")
    rows = []
    for fraction in PILOT_FRACTIONS:
        held_out, train = _clean(generator, tokens, fraction, rng)
        common = _run_noise(rng, generator, EVALUATIONS)
        held_out = held_out * scale * np.exp(common + _draws(rng, generator, EVALUATIONS, NOISE["evaluation"]))
        train = train * scale * np.exp(common + _draws(rng, generator, EVALUATIONS, NOISE["evaluation"]))
        rows += [{"run_id": f"d{fraction:g}-s0", "fraction": fraction, "tokens": t, "domain_loss": h,
                  "domain_train_loss": r, "phase": p, "lr": rate}
                 for t, h, r, p, rate in zip(tokens, held_out, train, phases, lr)]
    return pd.DataFrame(rows)


def wilson_interval(hits: int, count: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's 95% score interval of a proportion (``hits`` of ``count``)."""
    share = hits / count
    centre = (share + z * z / (2 * count)) / (1 + z * z / count)
    half = z * np.sqrt(share * (1 - share) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    return float(centre - half), float(centre + half)


def coverage(generator: str, sweeps: int, replicates: int, level: float = 0.9, form: str = "spt-regularized",
             first_seed: int = 5000, horizons=(1.0, 4.0)) -> list[dict]:
    """How often δ*'s nominal ``level`` interval holds the generator's true δ*, at multiples of the pilot budget.

    Each sweep is fitted as a user's pilot is (:func:`scaling_laws.fitting.spt.fit_spt` on the valid points,
    train + gap, the run bootstrap with ``replicates`` refits), and δ* is chosen over :data:`SEARCHED`.

    Returns:
        One row per horizon: generator, horizon (multiple of the pilot budget), sweeps, nominal, observed,
        Wilson interval, median width relative to the searched range, the true δ*, the estimates' bias and
        standard deviation over the sweeps, and (for comparison) the coverage and median width of the central
        percentile interval of the same refits, the interval spt reported until 2026-12-06.
    """
    truths = {h: true_delta_star(generator, h * BUDGET) for h in horizons}
    outcomes = {h: [] for h in horizons}
    span = SEARCHED[1] - SEARCHED[0]
    for sweep in range(sweeps):
        table = select_points(stress_sweep(generator, first_seed + sweep)).table
        result = fit_spt(table, form=form, n_starts=16, bootstrap_replicates=replicates, level=level, seed=sweep)
        for horizon in horizons:
            truth = truths[horizon]
            choice = optimal_fraction(result, horizon * BUDGET, low=SEARCHED[0], high=SEARCHED[1])
            low, high = choice.fraction_interval
            draws, _ = best_fractions(result, result.sample_thetas(), horizon * BUDGET, *SEARCHED, refine=False)
            old_low, old_high = percentile_interval(draws, level)
            outcomes[horizon].append({"hit": low <= truth <= high, "width": (high - low) / span,
                                      "estimate": choice.fraction, "old_hit": old_low <= truth <= old_high,
                                      "old_width": (old_high - old_low) / span})
    rows = []
    for horizon, found in outcomes.items():
        hits = sum(row["hit"] for row in found)
        estimates = np.array([row["estimate"] for row in found])
        rows.append({"generator": generator, "horizon": horizon, "sweeps": sweeps, "nominal": level,
                     "observed": hits / sweeps, "wilson": wilson_interval(hits, sweeps),
                     "median_width": float(np.median([row["width"] for row in found])), "truth": truths[horizon],
                     "bias": float(estimates.mean() - truths[horizon]),
                     "spread": float(estimates.std(ddof=1)) if sweeps > 1 else 0.0,
                     "percentile_observed": float(np.mean([row["old_hit"] for row in found])),
                     "percentile_width": float(np.median([row["old_width"] for row in found]))})
    return rows
