"""Decisions from fits: the optimal domain fraction (before or after fine-tuning), its compute multipliers, and
compute-optimal N and D."""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from scaling_laws.decision.choice import FractionChoice
from scaling_laws.decision.finetune import GainModel
from scaling_laws.fitting.intervals import basic_interval, percentile_interval
from scaling_laws.fitting.result import FitResult
from spt.errors import InputError

#: Grid points over the fraction range before the bounded refinement (of the fit; replicates use the grid).
_FRACTION_GRID = 1001
#: How delta*'s interval is read from its replicates' delta*: ``"basic"``, the basic bootstrap interval
#: (:func:`scaling_laws.fitting.intervals.basic_interval`), or ``"percentile"``, their central interval (spt's
#: method until 2026-12-06). On synthetic pilots of an epoch-driven law, whose delta* the SPT law puts 0.05 too
#: high (about one standard deviation of the estimate over pilots), the refits land 0.04 higher still, so the
#: percentile interval doubles the bias; the basic interval reflects it (development pilots 40000-40099 of
#: :mod:`scaling_laws.stress`, 100 refits, nominal 90%: 84% coverage against 100% at the pilot's budget, 89%
#: against 5% at 4x it; per-run exponent jitter 72% against 67%; Student-t noise 89% against 92%). Coverage on
#: fresh pilots: README.
FRACTION_INTERVAL = "basic"
#: Largest compute multiplier searched (beyond it the multiplier is reported as infinite).
_MAX_MULTIPLIER = 1e12
BASES = ("auto", "post-finetune", "pre-finetune")


def _require_fraction_law(fit: FitResult) -> None:
    if "fraction" not in fit.form.inputs:
        raise InputError(f"optimal fraction needs an spt fit; this fit is law {fit.law}")


def _inputs(fit: FitResult, tokens, fraction, params: float | None) -> dict[str, np.ndarray]:
    tokens, fraction = np.broadcast_arrays(np.atleast_1d(np.asarray(tokens, float)),
                                           np.atleast_1d(np.asarray(fraction, float)))
    inputs = {"tokens": tokens, "fraction": fraction}
    if "params" in fit.form.inputs:
        inputs["params"] = np.full(tokens.shape, float(params))
    return inputs


def fraction_range(fit: FitResult, low: float | None = None, high: float | None = None,
                   widen: bool = False) -> tuple[float, float]:
    """The fractions searched: the fitted data's range by default, ``[0, 1]`` with ``widen``, or as given.

    Raises:
        InputError: When the range is empty or leaves [0, 1].
    """
    fitted = fit.data_ranges.get("fraction", [0.0, 1.0])
    lo = low if low is not None else (0.0 if widen else fitted[0])
    hi = high if high is not None else (1.0 if widen else fitted[1])
    if not 0.0 <= lo < hi <= 1.0:
        raise InputError(f"fraction range [{lo}, {hi}]: must satisfy 0 <= low < high <= 1")
    return float(lo), float(hi)


def gain_model(fit: FitResult, basis: str = "auto", low: float = 0.0, high: float = 1.0,
               replicates: int = 0) -> tuple[GainModel | None, str]:
    """The fine-tune gain to decide on, and the basis it gives (with why, when it falls back).

    Returns:
        ``(model or None, basis)``: ``post-finetune`` with a model when the fit records fine-tuned runs at
        every swept fraction in ``[low, high]``; otherwise ``pre-finetune`` (asking for ``post-finetune``
        then is an error).

    Raises:
        InputError: For an unknown basis, or ``post-finetune`` without the fine-tuned runs it needs.
    """
    if basis not in BASES:
        raise InputError(f"basis={basis!r}: expected one of {', '.join(BASES)}")
    runs = (fit.decision or {}).get("finetune") or []
    swept = (fit.decision or {}).get("fractions") or []
    problem = ""
    if basis == "pre-finetune":
        return None, "pre-finetune"
    if not runs:
        problem = "the fit records no fine-tuned runs (results.csv has no finetune_domain_loss)"
    elif "params" in fit.form.inputs:
        problem = f"law {fit.law} spans several model sizes; fine-tune gains are not modelled per size"
    else:
        model = GainModel(fit.form, fit.params, runs, replicates=replicates, seed=int(fit.settings.get("seed", 0)))
        ok, problem = model.covers(low, high, swept)
        if ok:
            return model, "post-finetune"
    if basis == "post-finetune":
        raise InputError(f"cannot decide after fine-tuning: {problem}")
    return None, "pre-finetune"


def _losses(fit, thetas, tokens, fractions, params, gains, replicate_gains):
    """Predicted losses ``(K, G)`` on the basis: the law, minus the fine-tune gain when there is one."""
    with np.errstate(all="ignore"):
        losses = fit.form.predict_many(thetas, _inputs(fit, tokens, fractions, params))
    if gains is not None:
        if replicate_gains:
            losses = losses - np.stack([gains.gain(tokens, fractions, k) for k in range(len(thetas))])
        else:
            losses = losses - gains.gain(tokens, fractions)[None, :]
    return np.where(np.isfinite(losses), losses, np.inf)


def _best_fractions(fit, thetas, tokens, lo, hi, params, gains=None, replicate_gains=False, refine=True):
    """delta* and its loss for each internal vector ``(K, P)``: a dense grid, then (``refine``) a bounded 1-D
    refinement around the best grid point."""
    grid = np.linspace(lo, hi, _FRACTION_GRID)
    losses = _losses(fit, thetas, tokens, grid, params, gains, replicate_gains)
    best = np.argmin(losses, axis=1)
    fractions, values = grid[best].copy(), losses[np.arange(len(best)), best].copy()
    if not refine:
        return fractions, values
    for k, i in enumerate(best):
        left, right = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]

        def loss_at(fraction, k=k):
            return float(_losses(fit, thetas[k : k + 1], tokens, np.array([fraction]), params, gains, False)[0, 0])

        refined = minimize_scalar(loss_at, bounds=(left, right), method="bounded", options={"xatol": 1e-12})
        if refined.fun < values[k]:
            fractions[k], values[k] = refined.x, refined.fun
    return fractions, values


def best_fractions(fit: FitResult, thetas: np.ndarray, tokens: float, low: float, high: float,
                   params: float | None = None, refine: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """delta* and its predicted pretraining loss at ``tokens`` for each internal vector ``(K, P)``, searched on
    ``[low, high]`` as :func:`optimal_fraction` searches it (before fine-tuning); ``refine=False`` keeps the grid's
    best, as the bootstrap replicates of :func:`optimal_fraction` do."""
    return _best_fractions(fit, thetas, tokens, low, high, params, refine=refine)


def _model_multiplier(fit, theta, tokens, loss, params, gains=None) -> float:
    """Tokens at delta = 0 reaching ``loss`` by the law (minus the gain at 0), over ``tokens``; root finding in
    log tokens."""

    def excess(log_ratio: float) -> float:
        budget = tokens * np.exp(log_ratio)
        value = _losses(fit, theta[None, :], budget, np.array([0.0]), params, gains, False)[0, 0]
        return float(value) - loss

    at_budget = excess(0.0)
    if not np.isfinite(at_budget) or abs(at_budget) <= 1e-12 * abs(loss):
        return 1.0 if np.isfinite(at_budget) else float("nan")
    direction = 1.0 if at_budget > 0 else -1.0  # delta = 0 is worse: it needs more tokens
    previous = 0.0
    for step in np.arange(1, int(np.log2(_MAX_MULTIPLIER)) + 1):
        log_ratio = direction * step * np.log(2.0)
        value = excess(log_ratio)
        if np.isfinite(value) and np.sign(value) != np.sign(at_budget):
            return float(np.exp(brentq(excess, min(previous, log_ratio), max(previous, log_ratio), xtol=1e-12)))
        previous = log_ratio
    return float("inf") if direction > 0 else 0.0


def fraction_interval(point: float, draws, level: float, searched: tuple[float, float]
                      ) -> tuple[float, float] | None:
    """delta*'s interval from its replicates, read as :data:`FRACTION_INTERVAL` says (None without usable
    replicates or a finite delta*)."""
    if FRACTION_INTERVAL == "percentile":
        return percentile_interval(draws, level)
    return basic_interval(point, draws, level, searched) if np.isfinite(point) else None


def _nearest_measured(fit: FitResult, fraction: float) -> dict | None:
    measured = (fit.decision or {}).get("measured") or []
    if not measured:
        return None
    return min(measured, key=lambda m: (abs(m["fraction"] - fraction), m["fraction"]))


def optimal_fraction(fit: FitResult, total_tokens: float, *, low: float | None = None, high: float | None = None,
                     widen: bool = False, params: float | None = None, basis: str = "auto") -> FractionChoice:
    """delta* at a token budget, with its interval, its budget ratio and compute multipliers.

    The law is fitted on a range of fractions and is trusted there, so the search covers that range by default
    (``widen`` searches [0, 1]). With fine-tuned runs at every swept fraction, delta* minimizes the predicted
    loss *after* fine-tuning (:mod:`scaling_laws.decision.finetune`), as the paper's does; otherwise the pretraining
    loss; ``FractionChoice.basis`` says which.

    Args:
        fit: An ``spt`` or ``spt-n`` fit.
        total_tokens: Pretraining budget T (tokens).
        low: Smallest fraction searched (default: the fit data's smallest, or 0 with ``widen``).
        high: Largest fraction searched (default: the fit data's largest, or 1 with ``widen``).
        widen: Search [0, 1] instead of the fitted range.
        params: Model size N (parameters); required for ``spt-n`` fits.
        basis: ``auto``, ``post-finetune`` or ``pre-finetune``.

    Raises:
        InputError: For a non-fraction law, a bad range or budget, a missing model size, or a basis the fit
            cannot give.
    """
    _require_fraction_law(fit)
    if not np.isfinite(total_tokens) or total_tokens <= 0:
        raise InputError(f"tokens={total_tokens}: must be a positive number of tokens")
    if "params" in fit.form.inputs and (params is None or not params > 0):
        raise InputError(f"law {fit.law} needs the model size: pass params (a positive number of parameters)")
    lo, hi = fraction_range(fit, low, high, widen)
    thetas = fit.sample_thetas()
    replicates = 0 if thetas is None else len(thetas)
    gains, used = gain_model(fit, basis, lo, hi, replicates)
    fractions, losses = _best_fractions(fit, fit.theta()[None, :], total_tokens, lo, hi, params, gains)
    largest = fit.data_ranges.get("tokens", [None, None])[1]
    choice = FractionChoice(
        tokens=float(total_tokens), fraction=float(fractions[0]), loss=float(losses[0]), fraction_range=(lo, hi),
        basis=used, budget_ratio=None if not largest else float(total_tokens / largest),
        measured_multiplier=_nearest_measured(fit, float(fractions[0])),
        model_multiplier=_model_multiplier(fit, fit.theta(), total_tokens, float(losses[0]), params, gains),
    )
    if replicates:
        sample_fractions, sample_losses = _best_fractions(fit, thetas, total_tokens, lo, hi, params, gains,
                                                          replicate_gains=gains is not None, refine=False)
        choice.fraction_interval = fraction_interval(choice.fraction, sample_fractions, fit.level, (lo, hi))
        multipliers = [_model_multiplier(fit, t, total_tokens, v, params, gains)
                       for t, v in zip(thetas, sample_losses)]
        choice.model_multiplier_interval = percentile_interval(multipliers, fit.level)
    return choice


def compute_optimal(fit: FitResult, flops: float) -> dict:
    """Compute-optimal model size and tokens for a FLOP budget ``C = 6 N D`` under the Chinchilla part of a fit.

    Minimizing ``A/N**alpha + B/D**beta`` on ``6 N D = C`` gives ``N* = G (C/6)**(beta/(alpha+beta))`` and
    ``D* = (C/6)**(alpha/(alpha+beta)) / G`` with ``G = (alpha A / (beta B))**(1/(alpha+beta))``.

    Args:
        fit: A ``chinchilla`` or ``muennighoff`` fit.
        flops: Training compute (FLOPs).

    Returns:
        ``flops``, ``params`` (N*), ``tokens`` (D*), ``loss`` (Chinchilla loss there), and
        ``params_interval``/``tokens_interval`` when the fit has bootstrap replicates.

    Raises:
        InputError: For a law without the Chinchilla parameters, or a non-positive budget.
    """
    names = ("E", "A", "B", "alpha", "beta")
    if not all(name in fit.params for name in names):
        raise InputError(f"compute-optimal sizes need a chinchilla or muennighoff fit; this fit is law {fit.law}")
    if not np.isfinite(flops) or flops <= 0:
        raise InputError(f"flops={flops}: must be a positive number of FLOPs")

    def solve(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        e, a, b, alpha, beta = values
        g = (alpha * a / (beta * b)) ** (1.0 / (alpha + beta))
        n = g * (flops / 6.0) ** (beta / (alpha + beta))
        d = (flops / 6.0) ** (alpha / (alpha + beta)) / g
        return n, d, e + a / n**alpha + b / d**beta

    n, d, loss = solve(np.array([fit.params[name] for name in names]))
    out = {"flops": float(flops), "params": float(n), "tokens": float(d), "loss": float(loss)}
    if fit.samples is not None:
        index = [fit.form.names.index(name) for name in names]
        with np.errstate(all="ignore"):
            ns, ds, _ = solve(fit.samples[:, index].T)
        out["params_interval"] = list(percentile_interval(ns, fit.level))
        out["tokens_interval"] = list(percentile_interval(ds, fit.level))
    return out
