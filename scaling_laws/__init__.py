"""Scaling-law fitting for specialized pretraining: law forms, multi-start fits, bootstrap intervals, decisions.

Pure functions over arrays and DataFrames (it imports only :mod:`spt`), in four parts:

- :mod:`scaling_laws.laws.base`: the law forms (Chinchilla, Muennighoff, every SPT form) and their registry;
- :mod:`scaling_laws.numerics`: law-agnostic optimizers and objectives;
- :mod:`scaling_laws.fitting.fit`: tables in, multi-start fits and their bootstrap out;
- :mod:`scaling_laws.decision`: delta*, multipliers, validation, reports and plots from a fit.

A sweep folder is read by :mod:`sweeps.tables`; the CLI (:mod:`cli.laws`) and the notebook call these::

    from sweeps.tables import fit_sweep
    from scaling_laws import optimal_fraction
    result = fit_sweep("outputs/quickstart/sweep")      # valid budgets, train + gap, 200 bootstrap refits
    choice = optimal_fraction(result, total_tokens=1e7)  # delta*, its interval, measured compute multiplier
"""

from scaling_laws.decision.choice import FractionChoice
from scaling_laws.decision.optimal import compute_optimal, optimal_fraction
from scaling_laws.decision.validation import validate
from scaling_laws.fitting.evaluations import fit_evaluations
from scaling_laws.fitting.fit import extrapolation_check, fit, predict, predict_table
from scaling_laws.fitting.result import FitResult
from scaling_laws.fitting.spt import fit_spt
from scaling_laws.laws.base import Chinchilla, Law, Muennighoff, Param
from scaling_laws.laws.registry import LAWS, get_law
from scaling_laws.laws.spt import FinetuneGain, SPTGap, SPTOverfit, SPTOverfitN, SPTRegularized, SPTTrain
from scaling_laws.numerics.objective import Objective

__all__ = [
    "LAWS", "Chinchilla", "FinetuneGain", "FitResult", "FractionChoice", "Law", "Muennighoff", "Objective", "Param",
    "SPTGap", "SPTOverfit", "SPTOverfitN", "SPTRegularized", "SPTTrain", "compute_optimal", "extrapolation_check",
    "fit", "fit_evaluations", "fit_spt", "get_law", "optimal_fraction", "predict", "predict_table",
    "validate",
]
