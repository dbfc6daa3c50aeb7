"""Scaling-law fitting for specialized pretraining: law forms, multi-start fits, bootstrap intervals, decisions.

Pure functions over arrays and DataFrames; the CLI (:mod:`scaling_laws.cli`) and the notebooks call these.

    from scaling_laws import fit_sweep, optimal_fraction
    result = fit_sweep("outputs/quickstart/sweep")      # valid budgets, train + gap, 200 bootstrap refits
    choice = optimal_fraction(result, total_tokens=1e7)  # delta*, its interval, measured compute multiplier
"""

from scaling_laws.choice import FractionChoice
from scaling_laws.decisions import compute_optimal, optimal_fraction
from scaling_laws.fitting import extrapolation_check, fit, predict, predict_table
from scaling_laws.laws import Chinchilla, Law, Muennighoff, Param
from scaling_laws.objective import Objective
from scaling_laws.registry import LAWS, get_law
from scaling_laws.result import FitResult
from scaling_laws.spt_fit import fit_spt
from scaling_laws.spt_laws import FinetuneGain, SPTOverfitN
from scaling_laws.spt_paper import SPTGap, SPTOverfit, SPTTrain
from scaling_laws.spt_regularized import SPTRegularized
from scaling_laws.sweep_fit import fit_evaluations, fit_sweep
from scaling_laws.validation import validate

__all__ = [
    "LAWS", "Chinchilla", "FinetuneGain", "FitResult", "FractionChoice", "Law", "Muennighoff", "Objective", "Param",
    "SPTGap", "SPTOverfit", "SPTOverfitN", "SPTRegularized", "SPTTrain", "compute_optimal", "extrapolation_check",
    "fit", "fit_evaluations", "fit_spt", "fit_sweep", "get_law", "optimal_fraction", "predict", "predict_table",
    "validate",
]
