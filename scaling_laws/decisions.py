"""Decisions from fits: the optimal domain fraction, its compute multiplier, and compute-optimal N and D."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from scaling_laws.result import FitResult
from spt.errors import InputError

#: Grid points over the fraction range before the bounded refinement.
_FRACTION_GRID = 1001
#: Largest compute multiplier searched (beyond it the multiplier is reported as infinite).
_MAX_MULTIPLIER = 1e12


@dataclass
class FractionChoice:
    """The best domain fraction at one token budget.

    Attributes:
        tokens: Total pretraining tokens T.
        fraction: delta*, the domain fraction minimizing the predicted domain test loss.
        loss: Predicted domain test loss at delta* (nats/token).
        fraction_range: The ``[low, high]`` range searched.
        compute_multiplier: Tokens that delta = 0 needs to reach the loss of delta*, divided by T
            (``inf`` when delta = 0 never reaches it).
        fraction_interval: Bootstrap interval of delta* (None without bootstrap).
        multiplier_interval: Bootstrap interval of the compute multiplier.
    """

    tokens: float
    fraction: float
    loss: float
    fraction_range: tuple[float, float]
    compute_multiplier: float
    fraction_interval: tuple[float, float] | None = None
    multiplier_interval: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def domain_epochs(self, domain_tokens: float) -> float:
        """Epochs over a domain set of ``domain_tokens`` tokens that delta* implies: ``T delta* / |D|``."""
        return self.tokens * self.fraction / domain_tokens

    def line(self, domain_tokens: float | None = None) -> str:
        """One machine-readable line; the notebook and ``spt optimal-fraction --lines`` print the same text.

        ``delta_star tokens=1e+09 value=0.1234 low=0.1 high=0.2 loss=3.1 multiplier=1.5 multiplier_low=1.2
        multiplier_high=2.1`` (``low``/``high`` are ``nan`` without bootstrap), plus ``epochs=...`` when
        ``domain_tokens`` is given.
        """
        low, high = self.fraction_interval or (float("nan"), float("nan"))
        m_low, m_high = self.multiplier_interval or (float("nan"), float("nan"))
        text = (f"delta_star tokens={self.tokens:.6g} value={self.fraction:.6g} low={low:.6g} high={high:.6g} "
                f"loss={self.loss:.6g} multiplier={self.compute_multiplier:.6g} multiplier_low={m_low:.6g} "
                f"multiplier_high={m_high:.6g}")
        return text if domain_tokens is None else f"{text} epochs={self.domain_epochs(domain_tokens):.6g}"


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


def _best_fractions(fit: FitResult, thetas: np.ndarray, tokens: float, lo: float, hi: float,
                    params: float | None) -> tuple[np.ndarray, np.ndarray]:
    """delta* and its loss for each internal vector ``(K, P)``: a dense grid, then a bounded 1-D refinement."""
    law = fit.form
    grid = np.linspace(lo, hi, _FRACTION_GRID)
    with np.errstate(all="ignore"):
        losses = law.predict_many(thetas, _inputs(fit, tokens, grid, params))
    losses = np.where(np.isfinite(losses), losses, np.inf)
    best = np.argmin(losses, axis=1)
    fractions, values = grid[best].copy(), losses[np.arange(len(best)), best].copy()
    for k, i in enumerate(best):
        left, right = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]

        def loss_at(fraction, k=k):
            with np.errstate(all="ignore"):
                value = law.predict_many(thetas[k : k + 1], _inputs(fit, tokens, fraction, params))[0, 0]
            return value if np.isfinite(value) else np.inf

        refined = minimize_scalar(loss_at, bounds=(left, right), method="bounded", options={"xatol": 1e-12})
        if refined.fun < values[k]:
            fractions[k], values[k] = refined.x, refined.fun
    return fractions, values


def _multiplier(fit: FitResult, theta: np.ndarray, tokens: float, loss: float, params: float | None) -> float:
    """Tokens at delta = 0 reaching ``loss``, over ``tokens``; by root finding in log tokens."""
    law = fit.form

    def excess(log_ratio: float) -> float:
        inputs = _inputs(fit, tokens * np.exp(log_ratio), 0.0, params)
        with np.errstate(all="ignore"):
            return float(law.predict_many(theta[None, :], inputs)[0, 0]) - loss

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


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100.0 * (1.0 - level) / 2.0
    finite_or_inf = values[~np.isnan(values)]
    # "lower"/"higher" never interpolate, so an infinite multiplier stays infinite instead of turning NaN.
    return (float(np.percentile(finite_or_inf, tail, method="lower")),
            float(np.percentile(finite_or_inf, 100.0 - tail, method="higher")))


def optimal_fraction(fit: FitResult, total_tokens: float, *, low: float | None = None, high: float | None = None,
                     widen: bool = False, params: float | None = None) -> FractionChoice:
    """delta* at a token budget, with bootstrap intervals when the fit has replicates.

    The law is fitted on a range of fractions and is trusted there, so the search covers that range by default
    (``widen`` searches [0, 1]). At delta = 0 the gap coefficient ``a1 delta**a2 exp(a3 delta)`` is 0.

    Args:
        fit: An ``spt`` or ``spt-n`` fit.
        total_tokens: Pretraining budget T (tokens).
        low: Smallest fraction searched (default: the fit data's smallest, or 0 with ``widen``).
        high: Largest fraction searched (default: the fit data's largest, or 1 with ``widen``).
        widen: Search [0, 1] instead of the fitted range.
        params: Model size N (parameters); required for ``spt-n`` fits.

    Returns:
        delta*, its loss, the compute multiplier and intervals.

    Raises:
        InputError: For a non-fraction law, a bad range or budget, or a missing model size.
    """
    _require_fraction_law(fit)
    if not np.isfinite(total_tokens) or total_tokens <= 0:
        raise InputError(f"tokens={total_tokens}: must be a positive number of tokens")
    if "params" in fit.form.inputs and (params is None or not params > 0):
        raise InputError(f"law {fit.law} needs the model size: pass params (a positive number of parameters)")
    lo, hi = fraction_range(fit, low, high, widen)
    fractions, losses = _best_fractions(fit, fit.theta()[None, :], total_tokens, lo, hi, params)
    choice = FractionChoice(
        tokens=float(total_tokens), fraction=float(fractions[0]), loss=float(losses[0]), fraction_range=(lo, hi),
        compute_multiplier=_multiplier(fit, fit.theta(), total_tokens, float(losses[0]), params),
    )
    thetas = fit.sample_thetas()
    if thetas is not None and len(thetas):
        sample_fractions, sample_losses = _best_fractions(fit, thetas, total_tokens, lo, hi, params)
        multipliers = np.array([_multiplier(fit, t, total_tokens, v, params) for t, v in zip(thetas, sample_losses)])
        choice.fraction_interval = _interval(sample_fractions, fit.level)
        choice.multiplier_interval = _interval(multipliers, fit.level)
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
        out["params_interval"] = list(_interval(ns, fit.level))
        out["tokens_interval"] = list(_interval(ds, fit.level))
    return out
