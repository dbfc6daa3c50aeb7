"""An SPT law form whose overfitting is driven by domain epochs: ``spt-epochs``.

The paper's law (:mod:`scaling_laws.laws.spt`) lets the gap grow as a power of the tokens ``T`` with an exponent
linear in the fraction ``delta``. Here the cause is named instead: a domain set of ``U`` unique tokens seen
``E = delta T / U`` times. Repeated tokens teach less than new ones (Muennighoff et al. 2023) and, seen often
enough, are memorized, which raises the held-out loss:

- ``L(T, delta) = L0 + B X**-beta + G E**gamma``;
- ``X = w (1 - delta) T + U f(E)``: the tokens that teach the domain. General tokens count ``w`` each (transfer;
  ``w < 1`` expected); the domain set's first epoch counts in full, repeats less and less:
  ``f(E) = E`` for ``E <= 1``, else ``1 + R* (1 - exp(-(E - 1) / R*))`` (at most ``1 + R*`` epochs' worth);
- ``G E**gamma``: memorization, a power of the epochs (0 at ``delta = 0``).

``U`` is not fitted: it is the domain set's size, from the mix plan or a sweep's ``domain_epochs`` column
(:func:`unique_tokens_of`), and travels with the fit as the constant ``unique_domain_tokens``.

Seven parameters; ``L0``, ``B`` and ``G`` enter linearly and are solved at every start grid point
(:mod:`scaling_laws.laws.projection`). The form is ours, not the paper's; ``spt fit --law auto`` judges it, beside
the paper's form, by how well each forecasts later budgets of the pilot itself
(:mod:`scaling_laws.decision.forms`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from scaling_laws.laws.base import Law, Param
from scaling_laws.laws.projection import projected_starts
from spt.errors import InputError

_LINEAR = (1.0,)  # placeholder grid of a parameter that variable projection solves for


def unique_tokens_of(table: pd.DataFrame, source: str = "data") -> float:
    """The domain set's unique tokens ``U``: a ``unique_domain_tokens`` column, else ``tokens * fraction /
    domain_epochs`` over the rows with ``delta > 0`` (a sweep records the epochs at every evaluation).

    Raises:
        InputError: When neither column gives a positive, consistent value.
    """
    if "unique_domain_tokens" in table.columns:
        values = pd.to_numeric(table["unique_domain_tokens"], errors="coerce").to_numpy(float)
    elif "domain_epochs" in table.columns:
        epochs = pd.to_numeric(table["domain_epochs"], errors="coerce").to_numpy(float)
        tokens = pd.to_numeric(table["tokens"], errors="coerce").to_numpy(float)
        fraction = pd.to_numeric(table["fraction"], errors="coerce").to_numpy(float)
        with np.errstate(all="ignore"):
            values = np.where((fraction > 0) & (epochs > 0), tokens * fraction / epochs, np.nan)
    else:
        raise InputError(f"{source}: law spt-epochs needs the domain set's size: a 'unique_domain_tokens' column, "
                         f"or a sweep's 'domain_epochs' column")
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        raise InputError(f"{source}: law spt-epochs needs the domain set's size, and no row with delta > 0 gives it "
                         f"(unique_domain_tokens or domain_epochs)")
    value = float(np.median(values))
    if np.max(np.abs(values / value - 1.0)) > 0.02:  # epochs are rounded to 4 decimals
        raise InputError(f"{source}: the rows disagree on the domain set's size ({values.min():.6g} to "
                         f"{values.max():.6g} unique tokens): law spt-epochs needs one domain set")
    return value


class SPTEpochs(Law):
    """``L = L0 + B (w (1 - delta) T + U f(delta T / U))**-beta + G (delta T / U)**gamma`` (see the module).

    Inputs: ``tokens`` (T) and ``fraction`` (delta); the constant ``unique_domain_tokens`` (U) is set at
    construction.
    """

    name = "spt-epochs"
    inputs = ("tokens", "fraction")
    target = "domain_loss"
    optimizer = "lm"
    keep_starts = 128
    linear_names = ("L0", "B", "G")
    params = (
        Param("L0", 1e-6, 1e2, log=True, grid=_LINEAR, description="loss floor (nats/token)"),
        Param("B", 1e-8, 1e12, log=True, grid=_LINEAR, description="coefficient of the teaching tokens' power term "
                                                                   "(nats/token)"),
        Param("beta", 0.0, 3.0, grid=(0.1, 0.25, 0.5, 1.0, 1.5), description="exponent of the teaching tokens X"),
        Param("w", 1e-8, 1e4, log=True, grid=(1e-4, 1e-3, 1e-2, 0.1, 1.0),
              description="worth of one general token for the domain, in domain tokens (transfer)"),
        Param("R_star", 1e-2, 1e4, log=True, grid=(0.5, 2.0, 10.0, 50.0),
              description="repeats after which one more epoch teaches 1/e of a new one (epochs)"),
        Param("G", 1e-12, 1e6, log=True, grid=_LINEAR, description="memorization coefficient (nats/token)"),
        Param("gamma", 0.0, 5.0, grid=(0.5, 1.0, 1.5, 2.5), description="exponent of the epochs in memorization"),
    )

    def __init__(self, unique_tokens: float = 1.0):
        if not (np.isfinite(unique_tokens) and unique_tokens > 0):
            raise InputError(f"unique_domain_tokens {unique_tokens!r}: must be a positive number of tokens")
        self.unique_tokens = float(unique_tokens)

    @classmethod
    def from_constants(cls, constants: Mapping[str, float]) -> SPTEpochs:
        if "unique_domain_tokens" not in constants:
            raise InputError("law spt-epochs needs the constant unique_domain_tokens (the domain set's size)")
        return cls(constants["unique_domain_tokens"])

    @property
    def constants(self):
        return {"unique_domain_tokens": self.unique_tokens}

    def _pieces(self, theta, inputs):
        tokens, fraction = inputs["tokens"], inputs["fraction"]
        beta, log_w, log_star, gamma = theta[:, 2:3], theta[:, 3:4], theta[:, 4:5], theta[:, 6:7]
        epochs = fraction * tokens / self.unique_tokens
        repeats = np.maximum(epochs - 1.0, 0.0)
        star = np.exp(log_star)
        decay = np.exp(-repeats / star)
        worth = np.where(epochs <= 1.0, epochs, 1.0 + star * (1.0 - decay))
        d_worth = np.where(epochs <= 1.0, 0.0, star * (1.0 - decay) - repeats * decay)  # d worth / d log R*
        general = np.exp(log_w) * (1.0 - fraction) * tokens
        taught = general + self.unique_tokens * worth
        log_taught = np.log(taught)
        teach = np.exp(-beta * log_taught)
        log_epochs = np.log(np.where(epochs > 0, epochs, 1.0))
        memo = np.where(epochs > 0, np.exp(gamma * log_epochs), 0.0)
        return general, d_worth, taught, log_taught, teach, log_epochs, memo

    def predict_jac(self, theta, inputs):
        floor, b, g = np.exp(theta[:, 0:1]), np.exp(theta[:, 1:2]), np.exp(theta[:, 5:6])
        beta = theta[:, 2:3]
        general, d_worth, taught, log_taught, teach, log_epochs, memo = self._pieces(theta, inputs)
        power = b * teach
        d_taught = -beta * power / taught  # d prediction / d X
        jac = [floor + 0.0 * power, power, -power * log_taught, d_taught * general,
               d_taught * self.unique_tokens * d_worth, g * memo, g * memo * log_epochs]
        return floor + power + g * memo, jac

    def design(self, theta, inputs):
        _, _, _, _, teach, _, memo = self._pieces(theta, inputs)
        return np.stack([np.ones_like(teach), teach, memo], axis=-1)

    def start_grid(self, inputs, target):
        return projected_starts(self, super().start_grid(inputs, target), inputs, target)

    def loss_at(self, values, tokens, fraction, **extra) -> np.ndarray:
        """Predicted held-out domain loss on the broadcast of ``tokens`` and ``fraction`` (public values)."""
        tokens, fraction = np.broadcast_arrays(np.asarray(tokens, float), np.asarray(fraction, float))
        return self.predict(values, {"tokens": tokens.ravel(), "fraction": fraction.ravel()}).reshape(tokens.shape)
