"""Scaling-law fitting for specialized pretraining: law forms, multi-start fits, bootstrap intervals, decisions.

Pure functions over arrays and DataFrames; the CLI (:mod:`scaling_laws.cli`) and the notebooks call these.

    from scaling_laws import fit, optimal_fraction
    result = fit(table, "spt", loss_column="domain_loss", bootstrap_replicates=200)
    choice = optimal_fraction(result, total_tokens=1e10)
"""

from scaling_laws.decisions import FractionChoice, compute_optimal, optimal_fraction
from scaling_laws.fitting import extrapolation_check, fit, predict, predict_table
from scaling_laws.laws import Chinchilla, Law, Muennighoff, Param
from scaling_laws.objective import Objective
from scaling_laws.registry import LAWS, get_law
from scaling_laws.result import FitResult
from scaling_laws.spt_laws import FinetuneGain, SPTOverfit, SPTOverfitN

__all__ = [
    "LAWS", "Chinchilla", "FinetuneGain", "FitResult", "FractionChoice", "Law", "Muennighoff", "Objective",
    "Param", "SPTOverfit", "SPTOverfitN", "compute_optimal", "extrapolation_check", "fit", "get_law",
    "optimal_fraction", "predict", "predict_table",
]
