"""Synthetic sweep tables drawn from a law with known parameters plus multiplicative log-normal noise.

Used by the tests (parameter recovery), the benchmark and to try the CLI without real sweeps. The parameter
sets are plausible, not measured: Chinchilla's are near Besiroglu et al. (2024), the data-constrained ones near
Muennighoff et al. (2023); the SPT ones are chosen so that the gap term is visible at the larger fractions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_laws.registry import get_law

CHINCHILLA = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.35, "beta": 0.37}
MUENNIGHOFF = {"E": 1.87, "A": 521.0, "B": 1488.0, "alpha": 0.35, "beta": 0.353, "R_D_star": 15.4,
               "R_N_star": 5.31}
SPT = {"A_train": 30.0, "b_train_s": -0.15, "b_train_g": -0.12, "b_gap_s": 0.45, "b_gap_g": 0.25, "a1": 3e-3,
       "a2": 1.5, "a3": 1.0, "k0": 1.0, "k1": 0.05, "k2": 0.01, "k3": 0.3}
SPT_N = {**SPT, "A_N": 0.5, "alpha_N": 0.3, "gamma_N": 0.3}
FINETUNE_GAIN = {"a": -2.0, "b": -0.1, "c": 0.5}

#: Domain fractions of the synthetic SPT sweeps.
SPT_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def _noisy(law_name: str, params: dict, inputs: dict, noise: float, rng: np.random.Generator,
           target: str = "loss") -> pd.DataFrame:
    law = get_law(law_name)
    clean = law.predict(params, inputs)
    if law.residuals == "log":
        observed = clean * np.exp(rng.normal(0.0, noise, len(clean)))
    else:
        observed = clean + rng.normal(0.0, noise, len(clean))
    return pd.DataFrame({**inputs, target: observed})


def chinchilla_table(n: int = 250, noise: float = 0.01, seed: int = 0, params: dict = CHINCHILLA) -> pd.DataFrame:
    """``n`` runs with model sizes 1e7..1e10 and tokens 1e8..1e11 drawn log-uniformly."""
    rng = np.random.default_rng(seed)
    inputs = {"params": np.exp(rng.uniform(np.log(1e7), np.log(1e10), n)),
              "tokens": np.exp(rng.uniform(np.log(1e8), np.log(1e11), n))}
    return _noisy("chinchilla", params, inputs, noise, rng)


def muennighoff_table(noise: float = 0.005, seed: int = 0, params: dict = MUENNIGHOFF) -> pd.DataFrame:
    """180 runs: 6 model sizes (1e7..1e9) x 5 unique-data sizes (1e8..1e10) x 6 epoch counts (1..40)."""
    rng = np.random.default_rng(seed)
    sizes, unique, epochs = (a.ravel() for a in np.meshgrid(
        np.geomspace(1e7, 1e9, 6), np.geomspace(1e8, 1e10, 5), [1.0, 2.0, 4.0, 8.0, 16.0, 40.0]))
    inputs = {"params": sizes, "tokens": unique * epochs, "unique_tokens": unique}
    return _noisy("muennighoff", params, inputs, noise, rng)


def spt_table(noise: float = 0.001, seed: int = 0, params: dict = SPT, target: str = "loss",
              fractions=SPT_FRACTIONS, num_budgets: int = 9) -> pd.DataFrame:
    """A grid of token budgets (1e8..1e10) x domain fractions."""
    rng = np.random.default_rng(seed)
    tokens, fraction = (a.ravel() for a in np.meshgrid(np.geomspace(1e8, 1e10, num_budgets), fractions))
    return _noisy("spt", params, {"tokens": tokens, "fraction": fraction}, noise, rng, target=target)


def spt_n_table(noise: float = 0.001, seed: int = 0, params: dict = SPT_N) -> pd.DataFrame:
    """3 model sizes (3e7, 1e8, 3e8) x 7 budgets (1e8..1e10) x 6 fractions (0..0.4)."""
    rng = np.random.default_rng(seed)
    sizes, tokens, fraction = (a.ravel() for a in np.meshgrid(
        [3e7, 1e8, 3e8], np.geomspace(1e8, 1e10, 7), [0.0, 0.01, 0.03, 0.1, 0.2, 0.4]))
    return _noisy("spt-n", params, {"params": sizes, "tokens": tokens, "fraction": fraction}, noise, rng)


def finetune_gain_table(noise: float = 0.002, seed: int = 0, params: dict = FINETUNE_GAIN) -> pd.DataFrame:
    """12 budgets (1e8..1e11) with additive noise on the gain."""
    rng = np.random.default_rng(seed)
    return _noisy("finetune-gain", params, {"tokens": np.geomspace(1e8, 1e11, 12)}, noise, rng, target="gain")


def spt_sweep(fractions=(0.0, 0.2, 0.5), total_tokens: float = 1e9, evaluations: int = 8, seeds=(0,),
              noise: float = 0.002, seed: int = 0, params: dict = SPT, preset: str = "micro",
              model_params: float = 7e5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep's ``results`` and ``curves`` tables in the sweep runner's format, drawn from the SPT law.

    One run per fraction and seed, evaluated every ``total_tokens / evaluations`` tokens. The domain loss follows
    the law with log-normal noise; the general loss is the law's delta = 0 loss at the run's general tokens
    ``(1 - delta) T`` (more domain data, less general data); the fine-tuned loss is a placeholder 2% below.
    """
    law = get_law("spt")
    rng = np.random.default_rng(seed)
    tokens = np.arange(1, evaluations + 1) * (total_tokens / evaluations)
    results, curves = [], []
    for fraction in fractions:
        for run_seed in seeds:
            run_id = f"d{fraction:g}-s{run_seed}"
            domain = law.loss_at(params, tokens, fraction) * np.exp(rng.normal(0.0, noise, evaluations))
            general = law.loss_at(params, (1.0 - fraction) * tokens + 1.0, 0.0) * np.exp(
                rng.normal(0.0, noise, evaluations))
            run = {"run_id": run_id, "domain_fraction": fraction, "preset": preset, "params": model_params,
                   "seed": run_seed}
            curves += [{**run, "tokens": t, "domain_loss": d, "general_loss": g}
                       for t, d, g in zip(tokens, domain, general)]
            results.append({**run, "tokens": total_tokens, "domain_loss": domain[-1], "general_loss": general[-1],
                            "finetune_domain_loss": 0.98 * domain[-1], "wall_seconds": total_tokens / 1e7,
                            "status": "ok", "error": "", "log_path": f"runs/{run_id}/train.log"})
    from scaling_laws.sweeps import CURVES_COLUMNS, RESULTS_COLUMNS

    return pd.DataFrame(results)[list(RESULTS_COLUMNS)], pd.DataFrame(curves)[list(CURVES_COLUMNS)]
