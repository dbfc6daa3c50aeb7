"""Staged starts: fit the easy parts of a law first, then hand the joint fit one informed start.

- ``muennighoff``: the Chinchilla base on single-epoch rows, then ``R*_D`` and ``R*_N`` with the base held fixed
  (the order of Muennighoff et al. 2023).
- ``spt``: each domain fraction on its own (``c + p T**bt + q T**bg`` by variable projection), then the fraction
  dependence of the joint law by small regressions over fractions: ``bt`` and ``bg`` linear in delta,
  ``log q = log a1 + a2 log delta + a3 delta``, ``c = k0 - k1 log(delta + k2) - k3 delta``; finally the linear
  coefficients (``A_train, a1, k0, k1, k3``) are re-solved jointly by least squares for those exponents.

The staged start joins the grid; the joint fit keeps whichever start ends lowest.
"""

from __future__ import annotations

import numpy as np

from scaling_laws.fitting.search import Problem, search
from scaling_laws.laws.base import Chinchilla, Inputs, Law, Muennighoff
from scaling_laws.laws.projection import projected_starts
from scaling_laws.laws.spt import SPTOverfit
from scaling_laws.numerics.objective import Objective

#: Minimum rows for a stage to be attempted.
_MIN_ROWS = 6


def staged_starts(law: Law, inputs: Inputs, target: np.ndarray, objective: Objective) -> np.ndarray:
    """Full internal start vectors ``(k, P)`` from a staged fit (``k = 0`` when the law needs none or data is thin)."""
    empty = np.empty((0, len(law.params)))
    try:
        if type(law) is Muennighoff:
            start = _muennighoff_start(law, inputs, target, objective)
        elif isinstance(law, SPTOverfit) and len(law.params) == len(SPTOverfit.params):  # not spt-n
            start = _spt_start(law, inputs, target)
        else:
            return empty
    except (ValueError, np.linalg.LinAlgError):  # a stage that cannot be fitted just contributes no start
        return empty
    if start is None or not np.all(np.isfinite(start)):
        return empty
    lower, upper = law.bounds()
    return np.clip(start, lower, upper)[None, :]


def _muennighoff_start(law: Muennighoff, inputs, target, objective) -> np.ndarray | None:
    single_epoch = inputs["tokens"] <= inputs["unique_tokens"]
    if single_epoch.sum() < _MIN_ROWS:
        return None
    base = Chinchilla()
    subset = {k: v[single_epoch] for k, v in inputs.items()}
    grid = base.start_grid(subset, target[single_epoch])[::9]  # 500 of the 4,500 starts is plenty as a seed
    stage1 = search(Problem(base, subset, target[single_epoch], objective), grid, polish=1)
    fixed = dict(zip(base.names, base.to_public(stage1.theta)))
    repeats = Problem(law, inputs, target, objective, fixed=fixed)
    stage2 = search(repeats, law.start_grid(inputs, target), polish=1)
    return stage2.theta


def _slice_fit(log_tokens: np.ndarray, values: np.ndarray, with_gap: bool) -> tuple[float, ...] | None:
    """Best ``(p, bt, q, bg, c)`` of ``c + p T**bt + q T**bg`` (``p, q >= 0``) on one fraction, or None.

    A grid over the exponents with least squares for ``p, q, c`` at each point (weighted to relative error).
    """
    train_exponents = np.linspace(-0.8, -0.02, 40)
    # The gap grows with T at a fixed fraction (more repetitions of the domain set), so bg >= 0.
    gap_exponents = np.linspace(0.0, 1.2, 25) if with_gap else np.array([0.0])
    bt, bg = (a.ravel() for a in np.meshgrid(train_exponents, gap_exponents))
    columns = [np.exp(bt[:, None] * log_tokens), np.ones((len(bt), len(log_tokens)))]
    if with_gap:
        columns.insert(1, np.exp(bg[:, None] * log_tokens))
    weight = 1.0 / values
    design = np.stack(columns, axis=-1) * weight[None, :, None]
    scale = np.linalg.norm(design, axis=1, keepdims=True)
    design = design / scale
    gram = design.transpose(0, 2, 1) @ design + 1e-10 * np.eye(design.shape[-1])
    rhs = design.transpose(0, 2, 1) @ (values * weight)[None, :, None]
    coef = np.linalg.solve(gram, rhs)[..., 0] / scale[:, 0, :]
    residual = np.einsum("snk,sk->sn", design * scale, coef) - values * weight
    error = np.sum(residual**2, axis=1)
    error[np.any(coef[:, :-1] < 0, axis=1)] = np.inf  # both power-law terms add to the loss
    if not np.isfinite(error).any():
        return None
    best = int(np.argmin(error))
    if with_gap:
        p, q, c = coef[best]
        return p, bt[best], q, bg[best], c
    p, c = coef[best]
    return p, bt[best], 0.0, 0.0, c


def _spt_start(law: SPTOverfit, inputs, target) -> np.ndarray | None:
    fractions, log_tokens = inputs["fraction"], np.log(inputs["tokens"])
    slices = {}
    for fraction in np.unique(fractions):
        rows = fractions == fraction
        if rows.sum() >= _MIN_ROWS:
            found = _slice_fit(log_tokens[rows], target[rows], with_gap=fraction > 0)
            if found is not None:
                slices[fraction] = found
    if len(slices) < 3:
        return None
    delta = np.array(list(slices))
    p, bt, q, bg, c = (np.array(v, dtype=float) for v in zip(*slices.values()))
    values = {"A_train": float(np.median(p[p > 0])) if np.any(p > 0) else 1.0}
    slope = np.linalg.lstsq(np.stack([delta, 1.0 - delta], axis=1), bt, rcond=None)[0]
    values["b_train_s"], values["b_train_g"] = slope

    gap = (delta > 0) & (q > 0)
    if gap.sum() >= 2:
        values["b_gap_s"], values["b_gap_g"] = np.linalg.lstsq(
            np.stack([delta[gap], 1.0 - delta[gap]], axis=1), bg[gap], rcond=None)[0]
    else:
        values["b_gap_s"] = values["b_gap_g"] = 0.3
    values.update(a1=float(np.median(q[gap] / delta[gap])) if gap.any() else 1e-3, a2=1.0, a3=0.0)
    if gap.sum() >= 3:
        log_a1, a2, a3 = np.linalg.lstsq(
            np.stack([np.ones(gap.sum()), np.log(delta[gap]), delta[gap]], axis=1), np.log(q[gap]), rcond=None)[0]
        if 0.1 <= a2 <= 5.0:  # otherwise the slices' gap estimates are too noisy to trust: keep delta**1
            values.update(a1=float(np.exp(log_a1)), a2=float(a2), a3=float(a3))

    values.update(k0=float(np.median(c)), k1=0.0, k2=0.01, k3=0.0)
    best_error = np.inf
    for k2 in np.logspace(-4, 0, 41):
        design = np.stack([np.ones_like(delta), -np.log(delta + k2), -delta], axis=1)
        (k0, k1, k3), *_ = np.linalg.lstsq(design, c, rcond=None)
        error = float(np.sum((design @ np.array([k0, k1, k3]) - c) ** 2))
        if 0.0 <= k1 <= 1.0 and error < best_error:  # the floor falls as domain data is added
            best_error = error
            values.update(k0=float(k0), k1=float(k1), k2=float(k2), k3=float(k3))
    # The paper's signs (a share needs a negative b_train_s to be defined), then each bound in the fitted coordinates.
    values["b_train_s"] = min(values["b_train_s"], -1e-3)
    values["b_gap_g"], values["b_gap_s"] = min(values["b_gap_g"], 0.0), max(values["b_gap_s"], 0.0)
    clipped = {p.name: values[p.name] if p.share else float(np.clip(values[p.name], p.lower, p.upper))
               for p in law.params}
    lower, upper = law.bounds()
    start = np.clip(law.to_internal(clipped), lower, upper)
    # The exponents are the stages' real contribution; re-solve the linear coefficients jointly for them.
    return projected_starts(law, start[None, :], inputs, target)[0]
