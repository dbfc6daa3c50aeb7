"""The cost decision: which model size, whether to pretrain with the domain set (SPT) or finetune a general model,
counting the tokens the model will serve as well as its training.

The options, at each model size N of a size-aware law (``spt-n``):

- ``spt``: pretrain T tokens with the domain set at delta*, the fraction the law finds best at (N, T) (searched
  on the fitted fractions, as ``spt optimal-fraction`` searches); no finetune.
- ``finetune``: pretrain T tokens at delta = 0, then finetune on T_ft domain tokens. Its loss is the law at
  (N, T, 0) minus a fine-tune gain.

T is either the given budget, or the smallest budget at which the option's predicted domain loss reaches a target.

Cost (FLOPs): training ``6 N T`` (plus ``6 N T_ft`` for the finetune) and serving ``2 N`` per served token (a
forward pass). Both are linear in the served tokens S, so two options cost the same at one S, solved in closed form
(:func:`crossing`).

The fine-tune gain is a constant (nats/token) given by the user, the same at every size and budget. spt fit does
not keep the fine-tuned runs of a size-aware fit (their gains are not modelled per size,
:func:`scaling_laws.decision.optimal.gain_model`), so no fitted gain can be taken from the fit; the constant is an
assumption the output states, and its own uncertainty is not in the intervals.

Intervals: every number is recomputed on each bootstrap replicate of the law (delta*, T, loss, costs, the
cheapest option, the break-even), and reported as the central percentile interval at the fit's level, as the
replicates give it; delta*'s as the basic interval, as ``spt optimal-fraction`` reports it
(:data:`scaling_laws.decision.optimal.FRACTION_INTERVAL`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq

from scaling_laws.decision.choice import EXTRAPOLATION_LIMIT
from scaling_laws.decision.optimal import best_fractions, fraction_interval, fraction_range
from scaling_laws.decision.report import fit_warnings
from scaling_laws.fitting.intervals import percentile_interval
from scaling_laws.fitting.regime import is_regime_caveat
from scaling_laws.fitting.result import FitResult
from spt.errors import InputError

#: FLOPs per parameter and trained token (forward and backward pass).
TRAIN_FLOPS = 6.0
#: FLOPs per parameter and served token (forward pass).
SERVE_FLOPS = 2.0
#: Pretraining budgets searched for a target loss (tokens), 10 per decade; the first one reaching the target is
#: refined by root finding in log T.
TOKEN_GRID = np.geomspace(1e3, 1e16, 131)
#: Fractions of the grid searched for each budget of ``TOKEN_GRID`` (delta* itself is then refined at the budget).
_SEARCH_FRACTIONS = 201
KINDS = ("spt", "finetune")


def positive(value: float, name: str, zero: bool = False) -> float:
    """``value`` if finite and positive (or zero, with ``zero``).

    Raises:
        InputError: ``NAME=VALUE: must be a finite number > 0`` (``>= 0``).
    """
    if value is None or not np.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise InputError(f"{name}={value}: must be a finite number {'>= 0' if zero else '> 0'}")
    return float(value)


@dataclass(frozen=True)
class CostQuestion:
    """What the decision is asked.

    Attributes:
        sizes: Model sizes N compared (parameters).
        domain_tokens: Size of the domain set |D| (tokens).
        served_tokens: Tokens the model will serve over its life, S.
        finetune_gain: Loss drop of the finetune after delta = 0 pretraining (nats/token), at every N and T.
        tokens: Pretraining budget T (tokens), or None with ``target_loss``.
        target_loss: Domain loss to reach (nats/token), or None with ``tokens``.
        finetune_tokens: Finetuning tokens T_ft (default: one epoch of the domain set, ``domain_tokens``).
    """

    sizes: tuple[float, ...]
    domain_tokens: float
    served_tokens: float
    finetune_gain: float
    tokens: float | None = None
    target_loss: float | None = None
    finetune_tokens: float | None = None

    def __post_init__(self):
        if (self.tokens is None) == (self.target_loss is None):
            raise InputError("give exactly one of tokens (a budget) and target_loss")
        if not self.sizes:
            raise InputError("sizes: give at least one model size")
        for size in self.sizes:
            positive(size, "sizes")
        positive(self.domain_tokens, "domain_tokens")
        positive(self.served_tokens, "served_tokens", zero=True)
        positive(self.finetune_gain, "finetune_gain", zero=True)
        for name in ("tokens", "target_loss", "finetune_tokens"):
            if getattr(self, name) is not None:
                positive(getattr(self, name), name)

    @property
    def tokens_of_finetune(self) -> float:
        return self.domain_tokens if self.finetune_tokens is None else self.finetune_tokens


@dataclass
class Option:
    """One way to get the domain model, with what the law predicts for it.

    Attributes:
        kind: ``spt`` or ``finetune`` (see the module docstring).
        params: Model size N (parameters).
        fraction: Domain fraction of pretraining: delta* (0 for ``finetune``).
        tokens: Pretraining tokens T (``inf``: the target is never reached).
        loss: Predicted domain loss (nats/token), after the finetune for ``finetune`` (NaN: target not reached).
        finetune_tokens: Finetuning tokens T_ft (0 for ``spt``).
        draws: ``fraction``, ``tokens`` and ``loss`` per bootstrap replicate, arrays ``(K,)`` (empty without).
    """

    kind: str
    params: float
    fraction: float
    tokens: float
    loss: float
    finetune_tokens: float = 0.0
    draws: dict[str, np.ndarray] = field(default_factory=dict)
    fraction_range: tuple[float, float] = (0.0, 1.0)

    @property
    def label(self) -> str:
        return f"{self.kind} N={self.params:.3g}"

    @property
    def replicates(self) -> int:
        return len(self.draws["tokens"]) if self.draws else 0

    def value(self, key: str, replicate: int | None = None) -> float:
        """``fraction``, ``tokens`` or ``loss``: the fit's (``replicate`` None) or a bootstrap replicate's."""
        return float(getattr(self, key) if replicate is None else self.draws[key][replicate])

    def reached(self, replicate: int | None = None) -> bool:
        return bool(np.isfinite(self.value("tokens", replicate)))

    def training_flops(self, replicate: int | None = None) -> float:
        return TRAIN_FLOPS * self.params * (self.value("tokens", replicate) + self.finetune_tokens)

    def serving_flops(self, served_tokens: float) -> float:
        return SERVE_FLOPS * self.params * served_tokens

    def total_flops(self, served_tokens: float, replicate: int | None = None) -> float:
        return self.training_flops(replicate) + self.serving_flops(served_tokens)

    def interval(self, key: str, level: float, served_tokens: float = 0.0) -> tuple[float, float] | None:
        """Bootstrap interval of ``fraction``, ``tokens``, ``loss`` or ``total`` (FLOPs at ``served_tokens``):
        delta*'s as :func:`scaling_laws.decision.optimal.optimal_fraction` gives it (the basic interval, in the
        fractions searched), the others the central percentile interval."""
        if not self.replicates:
            return None
        if key == "fraction":
            return fraction_interval(self.fraction, self.draws[key], level, self.fraction_range)
        if key == "total":
            return percentile_interval([self.total_flops(served_tokens, k) for k in range(self.replicates)], level)
        return percentile_interval(self.draws[key], level)

    def to_dict(self, served_tokens: float, level: float) -> dict:
        out = {"kind": self.kind, "params": self.params, "fraction": self.fraction, "tokens": _json(self.tokens),
               "loss": _json(self.loss), "finetune_tokens": self.finetune_tokens,
               "training_flops": _json(self.training_flops()), "serving_flops": self.serving_flops(served_tokens),
               "total_flops": _json(self.total_flops(served_tokens))}
        for key in ("fraction", "tokens", "loss", "total"):
            pair = self.interval(key, level, served_tokens)
            out[f"{key}_interval"] = None if pair is None else [_json(v) for v in pair]
        return out


def _json(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _law(fit: FitResult, theta: np.ndarray, params: float, tokens, fractions) -> np.ndarray:
    """The law's losses at one size on paired ``tokens`` and ``fractions`` (inf where not finite)."""
    tokens, fractions = np.broadcast_arrays(np.asarray(tokens, float), np.asarray(fractions, float))
    inputs = {"params": np.full(tokens.size, float(params)), "tokens": tokens.ravel(), "fraction": fractions.ravel()}
    with np.errstate(all="ignore"):
        losses = fit.form.predict_many(theta[None, :], inputs)[0].reshape(tokens.shape)
    return np.where(np.isfinite(losses), losses, np.inf)


def first_reaching(loss_of_tokens, target: float) -> float:
    """The smallest budget of :data:`TOKEN_GRID`'s range at which ``loss_of_tokens(T array)`` reaches ``target``:
    the first grid point at or below it, refined by a root in log T from the point before (``inf``: never)."""
    excess = loss_of_tokens(TOKEN_GRID) - target
    below = np.flatnonzero(excess <= 0)
    if not below.size:
        return float("inf")
    i = int(below[0])
    if i == 0:
        return float(TOKEN_GRID[0])

    def at(log_tokens: float) -> float:
        return float(loss_of_tokens(np.array([np.exp(log_tokens)]))[0] - target)

    return float(np.exp(brentq(at, np.log(TOKEN_GRID[i - 1]), np.log(TOKEN_GRID[i]), xtol=1e-10)))


def _spt_draw(fit, theta, params, question, search, refine) -> tuple[float, float, float]:
    """``(delta*, T, loss)`` of the SPT option at one size for one internal vector."""
    tokens = question.tokens
    if tokens is None:
        grid = np.linspace(*search, _SEARCH_FRACTIONS)

        def best_loss(budgets):
            return _law(fit, theta, params, budgets[:, None], grid[None, :]).min(axis=1)

        tokens = first_reaching(best_loss, question.target_loss)
        if not np.isfinite(tokens):
            return float("nan"), tokens, float("nan")
    fractions, losses = best_fractions(fit, theta[None, :], tokens, *search, params=params, refine=refine)
    return float(fractions[0]), float(tokens), float(losses[0])


def _finetune_draw(fit, theta, params, question) -> tuple[float, float, float]:
    """``(0, T, loss after the finetune)`` of the finetune option at one size for one internal vector."""

    def finetuned(budgets):
        return _law(fit, theta, params, budgets, 0.0) - question.finetune_gain

    tokens = question.tokens if question.tokens is not None else first_reaching(finetuned, question.target_loss)
    loss = float(finetuned(np.array([tokens]))[0]) if np.isfinite(tokens) else float("nan")
    return 0.0, float(tokens), loss


def require_size_aware(fit: FitResult, who: str = "the cost decision") -> None:
    """Raises InputError (``<who> needs a size-aware fit ...``) unless the fit's law takes model size and domain
    fraction (``spt-n``)."""
    if "params" not in fit.form.inputs or "fraction" not in fit.form.inputs:
        raise InputError(f"{who} needs a size-aware fit (law spt-n, fitted on several model sizes); this fit is law "
                         f"{fit.law}")


def cost_options(fit: FitResult, question: CostQuestion) -> list[Option]:
    """The ``spt`` and ``finetune`` option at each size, with their bootstrap draws (see the module docstring).

    Raises:
        InputError: For a fit that is not size-aware.
    """
    require_size_aware(fit)
    search = fraction_range(fit)
    thetas = fit.sample_thetas()
    options = []
    for params in question.sizes:
        for kind in KINDS:
            def draw(theta, refine, kind=kind, params=params):
                if kind == "spt":
                    return _spt_draw(fit, theta, params, question, search, refine)
                return _finetune_draw(fit, theta, params, question)

            fraction, tokens, loss = draw(fit.theta(), True)
            option = Option(kind, float(params), fraction, tokens, loss,
                            question.tokens_of_finetune if kind == "finetune" else 0.0, fraction_range=search)
            if thetas is not None and len(thetas):
                columns = np.array([draw(theta, False) for theta in thetas])
                option.draws = dict(zip(("fraction", "tokens", "loss"), columns.T))
            options.append(option)
    return options


def choose(options: list[Option], served_tokens: float, target_loss: float | None = None,
           replicate: int | None = None, kind: str | None = None) -> Option | None:
    """The best option (of ``kind``, if given): with a target, the cheapest in total FLOPs at ``served_tokens``
    among those that reach it; at a fixed budget, the lowest predicted loss (then the cheaper). None if none do."""
    pool = [o for o in options if (kind is None or o.kind == kind) and o.reached(replicate)
            and np.isfinite(o.value("loss", replicate))]
    if not pool:
        return None
    if target_loss is not None:
        return min(pool, key=lambda o: o.total_flops(served_tokens, replicate))
    return min(pool, key=lambda o: (o.value("loss", replicate), o.total_flops(served_tokens, replicate)))


def crossing(first: Option, second: Option, replicate: int | None = None) -> tuple[float, str]:
    """Served tokens at which two options cost the same, and which is cheaper beyond it.

    Solves ``C1 + 2 N1 S = C2 + 2 N2 S`` for S (``C``: training FLOPs). Returns ``(S, kind cheaper for larger S)``;
    ``S = inf`` ("never") when the lines do not cross at S >= 0, and the kind is then the one cheaper at every S
    (``"equal"`` for the same line).
    """
    c1, c2 = first.training_flops(replicate), second.training_flops(replicate)
    s1, s2 = SERVE_FLOPS * first.params, SERVE_FLOPS * second.params
    if s1 != s2:
        served = (c1 - c2) / (s2 - s1)
        if np.isfinite(served) and served >= 0:
            return float(served), first.kind if s1 < s2 else second.kind
    if (c1, s1) == (c2, s2):
        return float("inf"), "equal"
    cheaper = first if (c1 < c2 if c1 != c2 else s1 < s2) else second
    return float("inf"), cheaper.kind


@dataclass
class CostDecision:
    """The options, the cheapest one and the SPT/finetune break-even, with bootstrap intervals.

    Attributes:
        question: What was asked.
        options: Every option (:func:`cost_options`).
        level: Coverage of the intervals.
        choice: The cheapest option that reaches the target (fixed budget: the lowest loss), or None.
        choice_share: Share of bootstrap replicates whose own choice is the same option (None without bootstrap).
        spt: The best ``spt`` option (by the same rule), or None.
        finetune: The best ``finetune`` option, or None.
        break_even: Served tokens at which ``spt`` and ``finetune`` cost the same (``inf``: never).
        cheaper_beyond: The kind cheaper for more served tokens than ``break_even`` (at every S when never).
        break_even_interval: Its bootstrap interval (a replicate whose lines never cross counts as ``inf``).
    """

    question: CostQuestion
    options: list[Option]
    level: float
    choice: Option | None = None
    choice_share: float | None = None
    spt: Option | None = None
    finetune: Option | None = None
    break_even: float | None = None
    cheaper_beyond: str | None = None
    break_even_interval: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        served, level = self.question.served_tokens, self.level

        def described(option):
            return None if option is None else {"kind": option.kind, "params": option.params}

        return {"question": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self.question).items()},
                "level": level, "options": [o.to_dict(served, level) for o in self.options],
                "choice": described(self.choice), "choice_share": self.choice_share,
                "spt": described(self.spt), "finetune": described(self.finetune),
                "break_even_served_tokens": None if self.break_even is None else _json(self.break_even),
                "cheaper_beyond": self.cheaper_beyond,
                "break_even_interval": None if self.break_even_interval is None
                else [_json(v) for v in self.break_even_interval]}


def decide_cost(fit: FitResult, question: CostQuestion) -> CostDecision:
    """The cost decision for ``question`` under a size-aware fit (see the module docstring).

    Raises:
        InputError: For a fit that is not size-aware.
    """
    options = cost_options(fit, question)
    served, target = question.served_tokens, question.target_loss
    decision = CostDecision(question, options, fit.level, choice=choose(options, served, target),
                            spt=choose(options, served, target, kind="spt"),
                            finetune=choose(options, served, target, kind="finetune"))
    if decision.spt is not None and decision.finetune is not None:
        decision.break_even, decision.cheaper_beyond = crossing(decision.spt, decision.finetune)
    replicates = options[0].replicates
    if not replicates:
        return decision
    picks = [choose(options, served, target, k) for k in range(replicates)]
    if decision.choice is not None:
        decision.choice_share = float(np.mean([pick is decision.choice for pick in picks]))
    crossings = []
    for k in range(replicates):
        spt, finetune = choose(options, served, target, k, "spt"), choose(options, served, target, k, "finetune")
        crossings.append(crossing(spt, finetune, k)[0] if spt and finetune else float("nan"))
    decision.break_even_interval = percentile_interval(crossings, fit.level)
    return decision


def cost_caveats(fit: FitResult, decision: CostDecision) -> list[str]:
    """What the decision rests on beyond the fit: the assumed gain, sizes and budgets outside the fitted ones,
    options that never reach the target."""
    question = decision.question
    lines = [f"the finetune gain {question.finetune_gain:g} nats/token is an assumption, the same at every size and "
             f"budget; its uncertainty is not in the intervals"]
    low, high = fit.data_ranges.get("params", [None, None])
    outside = [n for n in question.sizes if low is not None and not low <= n <= high]
    if outside:
        lines.append(f"model sizes {', '.join(f'{n:.3g}' for n in outside)} lie outside the fitted sizes "
                     f"[{low:.3g}, {high:.3g}]: the law is extrapolated in N there")
    largest = fit.data_ranges.get("tokens", [None, None])[1]
    beyond = [o for o in decision.options if largest and o.reached() and o.tokens > EXTRAPOLATION_LIMIT * largest]
    if beyond:
        lines.append(f"pretraining budgets up to {max(o.tokens for o in beyond):.3g} tokens exceed "
                     f"{EXTRAPOLATION_LIMIT:g}x the largest fitted budget {largest:.3g}: the law is extrapolated in T")
    lines += [f"{o.label} never reaches loss {question.target_loss:g} within {TOKEN_GRID[-1]:.0e} pretraining "
              f"tokens" for o in decision.options if not o.reached()]
    # the fit's own limits carry into every option: an unconverged fit, parameters on a bound (alpha_N at 0: the
    # pilot measured no gain with size, so the law's losses at other sizes are its form's), a pilot too early
    lines += fit_warnings(fit) + [c for c in fit.caveats if is_regime_caveat(c)]
    return lines
