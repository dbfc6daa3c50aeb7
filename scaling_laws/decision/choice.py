"""The answer spt gives a user: the domain fraction to pretrain with at a budget, and how sure and how useful it is."""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: Budgets beyond this multiple of the largest trained one are flagged as extrapolations, loudly.
EXTRAPOLATION_LIMIT = 2.0


def _number(value) -> str:
    return "nan" if value is None else f"{value:.6g}"


@dataclass
class FractionChoice:
    """The best domain fraction at one token budget.

    Attributes:
        tokens: Total pretraining tokens T.
        fraction: delta*, the fraction minimizing the predicted domain loss on ``basis``.
        loss: That predicted loss at delta* (nats/token).
        fraction_range: The ``[low, high]`` range searched.
        basis: ``"post-finetune"`` (pretraining law plus the fitted fine-tune gain) or ``"pre-finetune"``.
        fraction_interval: Bootstrap interval of delta* (the basic interval, see
            :data:`scaling_laws.decision.optimal.FRACTION_INTERVAL`), as the replicates give it: delta* may lie outside
            it, which the caveats flag (None without bootstrap).
        budget_ratio: T over the largest trained budget (None when the fit does not record it).
        measured_multiplier: The measured compute multiplier at the swept fraction nearest delta*
            (:class:`scaling_laws.decision.measured.MeasuredMultiplier` as a dict), or None without a delta = 0 run.
        model_multiplier: Tokens delta = 0 needs, by the fitted law, to match delta*'s loss, over T: a model
            extrapolation of the delta = 0 law (``inf`` when it never does).
        model_multiplier_interval: Its bootstrap interval.
    """

    tokens: float
    fraction: float
    loss: float
    fraction_range: tuple[float, float]
    basis: str = "pre-finetune"
    fraction_interval: tuple[float, float] | None = None
    budget_ratio: float | None = None
    measured_multiplier: dict | None = None
    model_multiplier: float | None = None
    model_multiplier_interval: tuple[float, float] | None = None

    @property
    def extrapolated(self) -> bool | None:
        """Whether T is beyond ``EXTRAPOLATION_LIMIT`` times the largest trained budget (None: unknown)."""
        return None if self.budget_ratio is None else self.budget_ratio > EXTRAPOLATION_LIMIT

    def to_dict(self) -> dict:
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        out["extrapolated"] = self.extrapolated
        return out

    def domain_epochs(self, domain_tokens: float) -> float:
        """Epochs over a domain set of ``domain_tokens`` tokens that delta* implies: ``T delta* / |D|``."""
        return self.tokens * self.fraction / domain_tokens

    def warning(self) -> str | None:
        """A loud one-line warning when delta* is an extrapolation in budget, else None."""
        if self.extrapolated is None:
            return (f"WARNING: delta* at T={self.tokens:.3g} cannot be checked against the trained budgets (the "
                    f"fit does not record them): treat it as an extrapolation")
        if self.extrapolated:
            return (f"WARNING: delta* at T={self.tokens:.3g} is an EXTRAPOLATION: {self.budget_ratio:.3g}x the "
                    f"largest trained budget (more than {EXTRAPOLATION_LIMIT:g}x); no run checked the law there")
        return None

    def line(self, domain_tokens: float | None = None) -> str:
        """One machine-readable line; the notebook and ``spt optimal-fraction --lines`` print the same text.

        ``delta_star tokens=1e+09 value=0.12 low=0.1 high=0.2 basis=post-finetune loss=3.1 extrapolated=no
        budget_ratio=1 multiplier=1.5 multiplier_low=1.2 multiplier_high=2.1 multiplier_at=0.1`` (``nan`` for
        what is unknown; ``multiplier=not_reached`` when the swept fraction never reached the delta = 0 runs'
        best loss, ``multiplier_bound=lower`` when it was below it from its first evaluation), plus
        ``epochs=...`` when ``domain_tokens`` is given. ``multiplier`` is the measured one.
        """
        low, high = self.fraction_interval or (None, None)
        flag = {None: "unknown", True: "yes", False: "no"}[self.extrapolated]
        text = (f"delta_star tokens={self.tokens:.6g} value={self.fraction:.6g} low={_number(low)} "
                f"high={_number(high)} basis={self.basis} loss={self.loss:.6g} extrapolated={flag} "
                f"budget_ratio={_number(self.budget_ratio)}")
        measured = self.measured_multiplier
        if measured is None:
            text += " multiplier=nan multiplier_low=nan multiplier_high=nan multiplier_at=nan"
        else:
            m_low, m_high = measured.get("interval") or (None, None)
            value = "not_reached" if measured["reached"] == "no" else _number(measured["value"])
            text += (f" multiplier={value} multiplier_low={_number(m_low)} multiplier_high={_number(m_high)} "
                     f"multiplier_at={measured['fraction']:.6g}")
            if measured["reached"] == "before the first evaluation":
                text += " multiplier_bound=lower"
        return text if domain_tokens is None else f"{text} epochs={self.domain_epochs(domain_tokens):.6g}"
