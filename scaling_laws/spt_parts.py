"""The two halves of the SPT law, fitted separately as the paper does, and how they sum to the held-out law.

A sweep that measures the loss on a fixed sample of domain *training* sequences (``domain_train_loss``) as well
as on held-out ones (``domain_loss``) splits the held-out loss into ``L_train`` (what the model has learned)
and ``L_gap = held-out - train`` (what it has memorized). Each half then pins its own exponents on its own data,
so the power terms cannot swap roles the way they can when only their sum is fitted.

Each form has its halves (:data:`FORMS`): the paper's (``spt``: :class:`SPTTrain`, :class:`SPTGap`, in
:mod:`scaling_laws.spt_paper`) and the regularized one's (``spt-regularized``, whose gap half has an offset
``c_gap`` that :func:`combine` folds into ``k0``; :mod:`scaling_laws.spt_regularized`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from scaling_laws.laws import Law
from scaling_laws.spt_paper import GAP_NAMES, TRAIN_NAMES, SPTGap, SPTOverfit, SPTTrain
from scaling_laws.spt_regularized import SPTGapRegularized, SPTRegularized, SPTTrainRegularized

#: The held-out law of each form and its train and gap halves, by the held-out law's name.
FORMS: dict[str, tuple[type[Law], type[Law], type[Law]]] = {
    "spt": (SPTOverfit, SPTTrain, SPTGap),
    "spt-regularized": (SPTRegularized, SPTTrainRegularized, SPTGapRegularized),
}

__all__ = ["FORMS", "GAP_NAMES", "TRAIN_NAMES", "SPTGap", "SPTTrain", "combine", "combine_samples"]


def combine(train: Mapping[str, float], gap: Mapping[str, float]) -> dict[str, float]:
    """The held-out law's parameters from the two halves' (a gap offset ``c_gap``, if any, folded into ``k0``)."""
    values = {name: float(train[name]) for name in TRAIN_NAMES}
    values.update({name: float(gap[name]) for name in GAP_NAMES})
    values["k0"] += float(gap.get("c_gap", 0.0))
    return values


def combine_samples(train: np.ndarray, gap: np.ndarray, names: list[str], gap_names: list[str]) -> np.ndarray:
    """Bootstrap replicates of the halves (public values, each half's order) to the held-out law's ``(K, P)``.

    Args:
        train: Replicates of the train half ``(K, 7)``, in :data:`TRAIN_NAMES` order.
        gap: Replicates of the gap half ``(K, G)``, in ``gap_names`` order.
        names: The held-out law's parameter names (its column order).
        gap_names: The gap half's parameter names.
    """
    columns = {name: train[:, i] for i, name in enumerate(TRAIN_NAMES)}
    columns.update({name: gap[:, i] for i, name in enumerate(gap_names)})
    if "c_gap" in columns:
        columns["k0"] = columns["k0"] + columns.pop("c_gap")
    return np.stack([columns[name] for name in names], axis=1)
