"""Law forms: named parameters with bounds, a start grid, and batched predictions with analytic Jacobians.

A law is evaluated for many parameter vectors at once. ``theta`` always has shape ``(S, P)``: one row per start
(or bootstrap replicate), in the law's *internal* coordinates, where a parameter marked ``log`` is stored as its
logarithm (so positive quantities stay positive and the log-sum-exp forms are linear in them). ``inputs`` is a
mapping from column name to a 1-D array of ``n`` rows. Predictions come back with shape ``(S, n)``; a Jacobian
is a list of ``P`` arrays, one per parameter, each broadcastable to ``(S, n)`` (a list, not one stacked
``(S, n, P)`` array, because stacking costs more than the whole law on a 4,500-start grid).

This module holds the base class and the two classical laws (Chinchilla, data-constrained); the specialized
pretraining laws live in :mod:`scaling_laws.laws.spt`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Inputs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Param:
    """One named parameter of a law.

    Attributes:
        name: The public name written to fit JSON (``alpha``, ``R_D_star``, ``k2``, ...).
        lower: Smallest allowed value, in public units.
        upper: Largest allowed value, in public units.
        log: Fitted as ``log(value)``; the value must be positive.
        grid: Start values (public units, or shares for a ``share``) for the multi-start search.
        description: What the parameter means, with its unit.
        share: Fitted as a share of a range that other parameters of the law set (see
            :meth:`Law.internal_array`), so that a constraint between parameters holds by construction;
            ``lower``, ``upper`` and ``grid`` are then shares, not values of the parameter.
    """

    name: str
    lower: float
    upper: float
    log: bool = False
    grid: tuple[float, ...] = ()
    description: str = ""
    share: bool = False

    def internal(self, value):
        """Public value(s) to internal coordinates."""
        return np.log(value) if self.log else np.asarray(value, dtype=float)

    def public(self, value):
        """Internal value(s) to public units."""
        return np.exp(value) if self.log else np.asarray(value, dtype=float)


class Law:
    """Base class of a law form. Subclasses set the class attributes and implement one Jacobian method.

    Attributes:
        name: The law's name on the command line and in fit JSON.
        params: The parameters, in internal-vector order.
        inputs: Input columns the law reads (the fitted target column is separate).
        target: Default name of the fitted column.
        residuals: Default residual space, ``"log"`` (needs positive predictions) or ``"linear"``.
        budget_column: Column (or derived quantity) ordering rows from small to large runs, for extrapolation checks.
        optimizer: The batched optimizer of its fits: ``"lbfgs"`` (:mod:`scaling_laws.numerics.lbfgs`) or ``"lm"``
            (Levenberg-Marquardt, :mod:`scaling_laws.numerics.lm`).
    """

    name = ""
    optimizer = "lbfgs"
    params: tuple[Param, ...] = ()
    inputs: tuple[str, ...] = ()
    target = "loss"
    residuals = "log"
    budget_column = "tokens"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def constants(self) -> dict[str, float]:
        """Fixed numbers of the form that are not fitted (written to fit JSON)."""
        return {}

    @classmethod
    def from_constants(cls, constants: Mapping[str, float]) -> Law:
        """The form with the fixed numbers a fit recorded (:attr:`constants`); most forms have none to set."""
        return cls()

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds in internal coordinates, each of shape ``(P,)``."""
        lower = np.array([p.internal(p.lower) for p in self.params], dtype=float)
        upper = np.array([p.internal(p.upper) for p in self.params], dtype=float)
        return lower, upper

    def to_internal(self, values: Mapping[str, float]) -> np.ndarray:
        """Public parameter values (all names present) to an internal vector of shape ``(P,)``."""
        return self.internal_array(np.array([float(values[p.name]) for p in self.params], dtype=float))

    def internal_array(self, public: np.ndarray) -> np.ndarray:
        """Public values ``(..., P)`` in law order to internal coordinates, same shape. Laws with ``share``
        parameters override this and :meth:`to_public` (the share depends on other parameters)."""
        public = np.asarray(public, dtype=float)
        return np.stack([p.internal(public[..., i]) for i, p in enumerate(self.params)], axis=-1)

    def to_public(self, theta: np.ndarray) -> np.ndarray:
        """Internal vectors ``(..., P)`` to public units, same shape."""
        theta = np.asarray(theta, dtype=float)
        return np.stack([p.public(theta[..., i]) for i, p in enumerate(self.params)], axis=-1)

    def on_bounds(self, theta: np.ndarray, tolerance: float = 1e-6) -> dict[str, str]:
        """Parameters whose internal coordinate sits on a finite bound: ``{name: "lower" | "upper"}``.

        A fitted value on a bound means the bound, not the data, decided it: its interval and any forecast
        that leans on it say more about the bound than about the runs.
        """
        lower, upper = self.bounds()
        theta = np.asarray(theta, dtype=float)
        out = {}
        for i, p in enumerate(self.params):
            for side, bound in (("lower", lower[i]), ("upper", upper[i])):
                if np.isfinite(bound) and abs(theta[i] - bound) <= tolerance * max(1.0, abs(bound)):
                    out[p.name] = side
        return out

    def budget(self, inputs: Inputs) -> np.ndarray:
        """Per-row size of the run, used to split small from large budgets."""
        return np.asarray(inputs[self.budget_column], dtype=float)

    def start_grid(self, inputs: Inputs, target: np.ndarray) -> np.ndarray:
        """Internal start vectors ``(S, P)``: the product of every parameter's ``grid`` values."""
        axes = [p.internal(np.asarray(p.grid, dtype=float)) for p in self.params]
        return np.array(list(itertools.product(*axes)), dtype=float)

    # Subclasses implement one of the two; each defaults to the other.
    def log_predict_jac(self, theta: np.ndarray, inputs: Inputs) -> tuple[np.ndarray, list[np.ndarray]]:
        """Log prediction ``(S, n)`` and its Jacobian columns wrt the internal parameters."""
        pred, jac = self.predict_jac(theta, inputs)
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = 1.0 / pred
            return np.log(pred), [column * inverse for column in jac]

    def predict_jac(self, theta: np.ndarray, inputs: Inputs) -> tuple[np.ndarray, list[np.ndarray]]:
        """Prediction ``(S, n)`` and its Jacobian columns wrt the internal parameters."""
        log_pred, jac = self.log_predict_jac(theta, inputs)
        pred = np.exp(log_pred)
        return pred, [column * pred for column in jac]

    def predict_many(self, theta: np.ndarray, inputs: Inputs) -> np.ndarray:
        """Predictions ``(S, n)`` for internal vectors ``(S, P)``."""
        return self.predict_jac(np.atleast_2d(theta), _as_arrays(inputs))[0]

    def predict(self, values: Mapping[str, float], inputs: Inputs) -> np.ndarray:
        """Predictions ``(n,)`` for one set of public parameter values."""
        return self.predict_many(self.to_internal(values)[None, :], inputs)[0]


def _as_arrays(inputs: Inputs) -> dict[str, np.ndarray]:
    return {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in inputs.items()}


def _log_sum_exp(terms: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """``log(sum(exp(t)))`` over a list of broadcastable arrays, and each term's softmax weight."""
    peak = terms[0]
    for term in terms[1:]:
        peak = np.maximum(peak, term)
    exps = [np.exp(t - peak) for t in terms]
    total = exps[0] + exps[1]
    for extra in exps[2:]:
        total += extra
    inverse = 1.0 / total
    return peak + np.log(total), [e * inverse for e in exps]


_EXPONENT_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)
_COEFF_GRID = tuple(float(np.exp(v)) for v in (0.0, 5.0, 10.0, 15.0, 20.0, 25.0))
_E_GRID = tuple(float(np.exp(v)) for v in (-1.0, -0.5, 0.0, 0.5, 1.0))


class Chinchilla(Law):
    """Chinchilla (Hoffmann et al. 2022): ``L = E + A / N**alpha + B / D**beta``.

    Fitted in the log-sum-exp form ``log L = LSE(a - alpha log N, b - beta log D, e)`` with ``A = exp(a)``,
    ``B = exp(b)``, ``E = exp(e)`` (Besiroglu et al. 2024). The default grid has 5 x 6 x 6 x 5 x 5 = 4,500 starts.
    Inputs: ``params`` (N, parameters) and ``tokens`` (D, training tokens).
    """

    name = "chinchilla"
    inputs = ("params", "tokens")
    budget_column = "flops"
    params = (
        Param("E", 1e-6, 1e2, log=True, grid=_E_GRID, description="irreducible loss (nats/token)"),
        Param("A", 1e-6, 1e15, log=True, grid=_COEFF_GRID, description="model-size coefficient (nats/token)"),
        Param("B", 1e-6, 1e15, log=True, grid=_COEFF_GRID, description="data coefficient (nats/token)"),
        Param("alpha", 0.0, 3.0, grid=_EXPONENT_GRID, description="model-size exponent"),
        Param("beta", 0.0, 3.0, grid=_EXPONENT_GRID, description="data exponent"),
    )

    def budget(self, inputs: Inputs) -> np.ndarray:
        """Training compute ``6 N D`` (FLOPs)."""
        return 6.0 * np.asarray(inputs["params"], dtype=float) * np.asarray(inputs["tokens"], dtype=float)

    def log_predict_jac(self, theta, inputs):
        log_n, log_d = np.log(inputs["params"]), np.log(inputs["tokens"])
        e, a, b, alpha, beta = (theta[:, i : i + 1] for i in range(5))
        log_pred, (w_e, w_a, w_b) = _log_sum_exp([e, a - alpha * log_n, b - beta * log_d])
        return log_pred, [w_e, w_a, w_b, -w_a * log_n, -w_b * log_d]


def _saturating(repeats: np.ndarray, log_star: np.ndarray) -> tuple[np.ndarray, ...]:
    """The data-constrained decay ``f = 1 + R*(1 - exp(-R/R*))`` and its pieces.

    Returns ``f``, ``exp(-R/R*)`` and ``d f / d log R*``.
    """
    star = np.exp(log_star)
    decay = np.exp(-repeats / star)
    f = 1.0 + star * (1.0 - decay)
    d_log_star = star * (1.0 - decay) - repeats * decay
    return f, decay, d_log_star


class Muennighoff(Law):
    """Data-constrained scaling (Muennighoff et al. 2023).

    ``D' = U_D + U_D R*_D (1 - exp(-R_D / R*_D))`` with ``R_D = D / U_D - 1``;
    ``N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N))`` with ``U_N = min(N, N_opt(U_D))`` and ``R_N = N / U_N - 1``;
    ``L = E + A / N'**alpha + B / D'**beta``. ``N_opt(U_D) = (alpha A / (beta B))**(1/alpha) U_D**(beta/alpha)``
    is the Chinchilla compute-optimal model size for ``U_D`` tokens (from ``alpha A N^-alpha = beta B D^-beta``).

    Inputs: ``params`` (N), ``tokens`` (D, tokens trained on) and ``unique_tokens`` (U_D); ``U_D`` is capped at
    ``D`` because a run shorter than one epoch only sees ``D`` unique tokens.
    """

    name = "muennighoff"
    inputs = ("params", "tokens", "unique_tokens")
    budget_column = "flops"
    base_names = ("E", "A", "B", "alpha", "beta")
    params = (
        Param("E", 1e-6, 1e2, log=True, grid=tuple(float(np.exp(v)) for v in (-1.0, 0.0, 1.0)),
              description="irreducible loss (nats/token)"),
        Param("A", 1e-6, 1e15, log=True, grid=tuple(float(np.exp(v)) for v in (0.0, 10.0, 20.0)),
              description="model-size coefficient (nats/token)"),
        Param("B", 1e-6, 1e15, log=True, grid=tuple(float(np.exp(v)) for v in (0.0, 10.0, 20.0)),
              description="data coefficient (nats/token)"),
        Param("alpha", 0.02, 3.0, grid=(0.2, 0.5, 1.0), description="model-size exponent"),
        Param("beta", 0.02, 3.0, grid=(0.2, 0.5, 1.0), description="data exponent"),
        Param("R_D_star", 1e-2, 1e4, log=True, grid=(5.0, 30.0),
              description="repetitions of the data after which repeated tokens are worth 1/e of new ones (epochs)"),
        Param("R_N_star", 1e-2, 1e4, log=True, grid=(2.0, 20.0),
              description="excess-parameter ratio with the same 1/e decay for model size (multiples of N_opt)"),
    )

    def budget(self, inputs: Inputs) -> np.ndarray:
        """Training compute ``6 N D`` (FLOPs)."""
        return 6.0 * np.asarray(inputs["params"], dtype=float) * np.asarray(inputs["tokens"], dtype=float)

    def log_predict_jac(self, theta, inputs):
        log_n = np.log(inputs["params"])
        log_d = np.log(inputs["tokens"])
        log_ud = np.minimum(np.log(inputs["unique_tokens"]), log_d)
        e, a, b, alpha, beta, r_d, r_n = (theta[:, i : i + 1] for i in range(7))

        # Effective data D'.
        f_d, _, df_d = _saturating(np.exp(log_d - log_ud) - 1.0, r_d)
        log_d_eff = log_ud + np.log(f_d)
        dlogd_eff_dr_d = df_d / f_d

        # Effective parameters N', where U_N depends on the base parameters through N_opt(U_D).
        log_n_opt = (np.log(alpha) - np.log(beta) + a - b + beta * log_ud) / alpha
        capped = log_n_opt < log_n
        log_un = np.where(capped, log_n_opt, log_n)
        ratio = np.exp(log_n - log_un)  # N / U_N >= 1
        f_n, decay_n, df_n = _saturating(ratio - 1.0, r_n)
        log_n_eff = log_un + np.log(f_n)
        dlogn_eff_dr_n = df_n / f_n
        # d log N' / d log U_N at fixed N: 1 - (N/U_N) exp(-R_N/R*_N) / f.
        dlogn_eff_dlogun = np.where(capped, 1.0 - ratio * decay_n / f_n, 0.0)
        dlogun = {  # d log N_opt / d theta, per base parameter
            "a": 1.0 / alpha,
            "b": -1.0 / alpha,
            "alpha": (1.0 - alpha * log_n_opt) / alpha**2,
            "beta": (log_ud - 1.0 / beta) / alpha,
        }
        dn = {k: dlogn_eff_dlogun * v for k, v in dlogun.items()}

        log_pred, (w_e, w_a, w_b) = _log_sum_exp([e, a - alpha * log_n_eff, b - beta * log_d_eff])
        jac = [
                w_e,
                w_a * (1.0 - alpha * dn["a"]),
                w_b - w_a * alpha * dn["b"],
                -w_a * (log_n_eff + alpha * dn["alpha"]),
                -w_b * log_d_eff - w_a * alpha * dn["beta"],
                -w_b * beta * dlogd_eff_dr_d,
                -w_a * alpha * dlogn_eff_dr_n,
        ]
        return log_pred, jac


def optimal_params_for_data(values: Mapping[str, float], unique_tokens) -> np.ndarray:
    """Compute-optimal model size ``N_opt(U_D)`` of the Chinchilla part of a fit (parameters)."""
    alpha, beta = values["alpha"], values["beta"]
    coef = (alpha * values["A"] / (beta * values["B"])) ** (1.0 / alpha)
    return coef * np.asarray(unique_tokens, dtype=float) ** (beta / alpha)
