"""Specialized-pretraining laws besides the paper's SPT law: its model-size extension and the fine-tune gain.

The paper's law is :mod:`scaling_laws.spt_paper` (law ``spt``); the same equations with this project's bounds,
priors and gap offset are :mod:`scaling_laws.spt_regularized` (law ``spt-regularized``). These laws are sums of
power laws and a log term, fitted through ``log(prediction)``; their linear coefficients are solved at each start
grid point by variable projection (:mod:`scaling_laws.projection`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from scaling_laws.laws import Law, Param
from scaling_laws.projection import projected_starts
from scaling_laws.spt_regularized import SPTRegularized

_LINEAR = (1.0,)  # placeholder grid of a parameter that variable projection solves for


def _spt_n_params() -> tuple[Param, ...]:
    # A coarser grid than SPT's, since two more nonlinear parameters multiply its size.
    coarse = {
        "b_train_s": (-0.5, -0.2), "b_train_g": (-0.5, -0.2), "b_gap_s": (0.2, 0.6, 1.2),
        "b_gap_g": (-0.8, -0.3, -0.05), "a2": (0.7, 1.5), "a3": (-3.0, 3.0), "k2": (1e-3, 1e-1),
    }
    base = tuple(replace(p, grid=coarse.get(p.name, p.grid)) for p in SPTRegularized.params)
    return base + (
        Param("A_N", 1e-8, 1e6, log=True, grid=_LINEAR, description="model-size coefficient (nats/token)"),
        Param("alpha_N", 0.0, 2.0, grid=(0.2, 0.5), description="model-size exponent of the train loss"),
        Param("gamma_N", -2.0, 2.0, grid=(-0.2, 0.1, 0.4), description="model-size exponent of the gap"),
    )


class SPTOverfitN(SPTRegularized):
    """Our extension of the SPT law with model size ``N`` (parameters), on the regularized form's bounds and priors.

    ``L_test(N, T, delta) = A_train T**b_train(delta) + C_train(delta) + A_N (N/N_ref)**-alpha_N
    + A_gap(delta) (N/N_ref)**gamma_N T**b_gap(delta)``, with ``N_ref = 1e8`` fixed (not fitted).

    Rationale: a Chinchilla-style capacity term ``A_N N**-alpha_N`` lowers the train loss as the model grows,
    and larger models memorize a repeated domain set faster, so the gap scales by ``(N/N_ref)**gamma_N``
    (``gamma_N > 0`` expected). At ``N = N_ref`` the form is the SPT law with ``k0`` shifted by ``A_N``.

    Status: designed here and checked only on synthetic data generated from this same form (tests recover its
    parameters); no sweeps over model size exist yet, so the form itself is unvalidated against real runs.
    Inputs: ``params`` (N), ``tokens`` (T) and ``fraction`` (delta).
    """

    name = "spt-n"
    inputs = ("params", "tokens", "fraction")
    optimizer = "lm"
    keep_starts = 256
    linear_names = SPTRegularized.linear_names + ("A_N",)
    params = _spt_n_params()
    reference_params = 1e8

    @property
    def constants(self):
        return {"N_ref": self.reference_params}

    def predict_jac(self, theta, inputs):
        log_size = np.log(inputs["params"] / self.reference_params)
        log_a_n, alpha_n, gamma_n = theta[:, 12:13], theta[:, 13:14], theta[:, 14:15]
        train, gap, floor, jac = self._pieces(theta, inputs, gap_scale=np.exp(gamma_n * log_size))
        size_term = np.exp(log_a_n - alpha_n * log_size)
        jac += [size_term, -size_term * log_size, gap * log_size]
        return train + gap + floor + size_term, jac

    def design(self, theta, inputs):
        log_size = np.log(inputs["params"] / self.reference_params)
        base = super().design(theta, inputs)
        base[..., 1] *= np.exp(theta[:, 14:15] * log_size)
        size = np.exp(-theta[:, 13:14] * log_size)
        return np.concatenate([base, size[..., None]], axis=-1)


class FinetuneGain(Law):
    """Post-fine-tune gain of the SPT paper: ``delta_loss(T) = a T**b + c`` (nats/token), fitted in linear space.

    Inputs: ``tokens`` (T, pretraining tokens); target column ``gain`` (loss before minus after fine-tuning,
    which may be negative, hence linear residuals by default).
    """

    name = "finetune-gain"
    inputs = ("tokens",)
    optimizer = "lm"
    target = "gain"
    residuals = "linear"
    keep_starts = 32
    linear_names = ("a", "c")
    params = (
        Param("a", -1e6, 1e6, grid=_LINEAR, description="coefficient (nats/token)"),
        Param("b", -3.0, 3.0, grid=tuple(np.linspace(-1.5, 1.5, 61)), description="exponent of T"),
        Param("c", -100.0, 100.0, grid=_LINEAR, description="offset (nats/token)"),
    )

    def predict_jac(self, theta, inputs):
        log_t = np.log(inputs["tokens"])
        power = np.exp(theta[:, 1:2] * log_t)
        pred = theta[:, 0:1] * power + theta[:, 2:3]
        return pred, [power, theta[:, 0:1] * power * log_t, np.ones_like(power)]

    def design(self, theta, inputs):
        power = np.exp(theta[:, 1:2] * np.log(inputs["tokens"]))
        return np.stack([power, np.ones_like(power)], axis=-1)

    def start_grid(self, inputs, target):
        return projected_starts(self, super().start_grid(inputs, target), inputs, target)
