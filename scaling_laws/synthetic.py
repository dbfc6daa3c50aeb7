"""Synthetic sweep tables drawn from a law with known parameters plus multiplicative log-normal noise.

Used by the tests (parameter recovery), the benchmark and to try the CLI without real sweeps. The parameter
sets are plausible, not measured: Chinchilla's are near Besiroglu et al. (2024), the data-constrained ones near
Muennighoff et al. (2023); the SPT ones are chosen so that the gap term is visible at the larger fractions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_laws.laws.registry import get_law
from scaling_laws.laws.spt import GAP_NAMES

CHINCHILLA = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.35, "beta": 0.37}
MUENNIGHOFF = {"E": 1.87, "A": 521.0, "B": 1488.0, "alpha": 0.35, "beta": 0.353, "R_D_star": 15.4,
               "R_N_star": 5.31}
SPT = {"A_train": 30.0, "b_train_s": -0.15, "b_train_g": -0.12, "b_gap_s": 0.6, "b_gap_g": -0.2, "a1": 0.02,
       "a2": 1.5, "a3": 1.0, "k0": 1.0, "k1": 0.05, "k2": 0.01, "k3": 0.3}
#: A small CPU pilot: 2.5e4..5e5 tokens, a domain set of ``PILOT_DOMAIN_TOKENS`` (30 epochs at delta = 0.6 and
#: 5e5 tokens), losses from about 7 down to 3.4 nats; held-out loss rises at the end of the largest delta's run.
SPT_PILOT = {"A_train": 400.0, "b_train_s": -0.55, "b_train_g": -0.45, "b_gap_s": 0.6, "b_gap_g": -0.2,
             "a1": 1.5e-2, "a2": 1.0, "a3": 2.0, "k0": 2.6, "k1": 0.05, "k2": 0.03, "k3": 0.1}
PILOT_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.6)
PILOT_DOMAIN_TOKENS = 1e4
#: Held-out minus training-sample loss of the pilot's domain samples that memorization does not explain.
PILOT_GAP_OFFSET = 0.02
#: A steep law of the paper's form (slopes per unit fraction: ``a3 = -100`` is -1 per percent): its 10% curve
#: turns up near 6.4e10 tokens and 2% overtakes 5% near 9.9e10, both far beyond budgets of 1e9..1e10 (chosen so,
#: before any fit was run; see ``tests/test_scaling_forecast_paper_law.py``).
SPT_STEEP = {"A_train": 300.0, "b_train_s": -0.8, "b_train_g": -0.3, "k0": 1.5, "k1": 0.01, "k2": 0.003, "k3": 0.0,
             "a1": 1e4, "a2": 1.5, "a3": -100.0, "b_gap_g": -0.3, "b_gap_s": 3.7}
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
              fractions=SPT_FRACTIONS, num_budgets: int = 9, train_column: str | None = None,
              gap_offset: float = 0.0) -> pd.DataFrame:
    """A grid of token budgets (1e8..1e10) x domain fractions; with ``train_column``, also the train-sample loss
    (the law minus the gap: its gap half plus ``gap_offset``, :func:`gap_loss`), with the
    same multiplicative noise draw as the held-out loss plus its own draw."""
    rng = np.random.default_rng(seed)
    tokens, fraction = (a.ravel() for a in np.meshgrid(np.geomspace(1e8, 1e10, num_budgets), fractions))
    table = _noisy("spt", params, {"tokens": tokens, "fraction": fraction}, noise, rng, target=target)
    if train_column is not None:
        gap = gap_loss(params, tokens, fraction, gap_offset)
        clean = get_law("spt").predict(params, {"tokens": tokens, "fraction": fraction})
        shared = table[target].to_numpy() / clean
        table[train_column] = (clean - gap) * shared * np.exp(rng.normal(0.0, noise / 4, len(clean)))
    return table


def gap_loss(params: dict, tokens, fraction, offset: float = 0.0) -> np.ndarray:
    """Held-out minus train-sample loss: the SPT law's gap half (:class:`scaling_laws.laws.spt.SPTGap`) plus a
    constant ``offset`` (the two samples are different texts; the regularized form's ``c_gap``)."""
    inputs = {"tokens": np.asarray(tokens, dtype=float), "fraction": np.asarray(fraction, dtype=float)}
    return get_law("spt-gap").predict({n: params[n] for n in GAP_NAMES}, inputs) + offset


def spt_halves_table(params: dict, fractions, budgets, noise: float, seed: int = 0) -> pd.DataFrame:
    """One run per fraction evaluated at every budget (tokens): the held-out loss of the SPT law and the train-sample
    loss (held-out minus the gap half), each with its own multiplicative log-normal noise (sd ``noise``).

    Independent noise on the two losses is the hard case for the gap (their difference carries both); evaluations
    of one checkpoint usually share most of it (see :func:`spt_sweep`).
    """
    rng = np.random.default_rng(seed)
    tokens, fraction = (a.ravel() for a in np.meshgrid(np.asarray(budgets, float), np.asarray(fractions, float)))
    held_out = get_law("spt").predict(params, {"tokens": tokens, "fraction": fraction})
    train = held_out - gap_loss(params, tokens, fraction)
    return pd.DataFrame({"run_id": [f"d{f:g}" for f in fraction], "tokens": tokens, "fraction": fraction,
                         "domain_loss": held_out * np.exp(rng.normal(0.0, noise, len(tokens))),
                         "domain_train_loss": train * np.exp(rng.normal(0.0, noise, len(tokens)))})


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


def pilot_gain(fraction, tokens):
    """The synthetic pilot's fine-tune gain (nats/token): largest without domain data in pretraining."""
    return 0.12 * (1.0 - np.asarray(fraction, dtype=float)) ** 2 + 0.0 * np.asarray(tokens, dtype=float)


def _phases(count: int, schedule: str, warmup: int) -> list[str]:
    """Schedule phase of each of ``count`` evaluations: warmup, then stable, decay (wsd: the last 20%)."""
    decay_from = {"constant": count, "wsd": count - max(1, count // 5), "cosine": warmup}[schedule]
    return ["warmup" if k < warmup else ("decay" if k >= decay_from else "stable") for k in range(count)]


def _schedule(phases: list[str], progress: np.ndarray, schedule: str) -> tuple[np.ndarray, np.ndarray]:
    """Loss multiplier relative to the constant-rate law, and the learning rate, at each evaluation."""
    phases = np.array(phases)
    scale, rate = np.ones(len(phases)), np.ones(len(phases))
    warm = phases == "warmup"
    scale[warm], rate[warm] = 1.05, progress[warm] / max(progress[warm].max(initial=0.0), 1e-12)
    decay = phases == "decay"
    if decay.any():
        first = int(np.flatnonzero(decay)[0])
        start = progress[first - 1] if first > 0 else 0.0
        share = (progress - start) / max(1.0 - start, 1e-12)
        bonus = {"wsd": 0.02, "cosine": 0.03}.get(schedule, 0.0)
        scale[decay], rate[decay] = 1.0 - bonus * share[decay], 1.0 - 0.9 * share[decay]
    return scale, 3e-3 * rate


def _ar1(rng: np.random.Generator, count: int, sd: float, rho: float) -> np.ndarray:
    """A stationary AR(1) series with marginal standard deviation ``sd``."""
    series = np.empty(count)
    series[0] = rng.normal(0.0, sd)
    for k in range(1, count):
        series[k] = rho * series[k - 1] + rng.normal(0.0, sd * np.sqrt(1.0 - rho**2))
    return series


def spt_sweep(fractions=(0.0, 0.2, 0.5), total_tokens=1e9, evaluations: int = 8, seeds=(0,), noise: float = 0.002,
              seed: int = 0, params: dict = SPT, preset: str = "micro", model_params: float = 7e5, *,
              offset_sd: float = 0.0, ar_rho: float = 0.0, eval_noise: float | None = None,
              gap_offset: float = 0.0, domain_tokens: float | None = None, schedule: str = "constant",
              warmup: int = 0, gain=pilot_gain) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep's ``results`` and ``curves`` tables (the columns of a sweep's, for ``sweeps.tables.write_sweep``),
    drawn from the SPT law.

    One run per fraction, budget (``total_tokens``: a number or a list) and seed, evaluated every ``budget /
    evaluations`` tokens. The law gives the held-out domain loss at constant learning rate; the training-sample loss
    is that minus the gap (the law's gap half plus ``gap_offset``, :func:`gap_loss`). Noise is multiplicative and
    shared by both losses of an evaluation, as a checkpoint's quality is: a per-run offset (sd ``offset_sd``) plus
    an AR(1) series along the run (marginal sd ``noise``, lag-1 correlation ``ar_rho``); each loss also gets
    independent evaluation noise (sd ``eval_noise``, default ``noise / 4``). Schedules: ``constant`` (all stable
    after ``warmup`` evaluations), ``wsd`` (the last 20% decay, 2% below the law at the end) and ``cosine`` (all
    decay after warmup, 3% below the law at the end); warmup evaluations are 5% above the law. The fine-tuned loss
    is the final held-out loss minus ``gain``.
    """
    eval_noise = noise / 4.0 if eval_noise is None else eval_noise
    budgets = [float(t) for t in np.atleast_1d(total_tokens)]
    setup = {"params": params, "gap_offset": gap_offset, "schedule": schedule, "warmup": warmup,
             "evaluations": evaluations, "domain_tokens": domain_tokens or max(budgets) * max(max(fractions), 1e-3)
             / 20.0, "noise": (offset_sd, noise, ar_rho, eval_noise), "gain": gain}
    rng = np.random.default_rng(seed)
    results, curves = [], []
    for fraction in fractions:
        for budget in budgets:
            for run_seed in seeds:
                run_id = f"d{fraction:g}-T{budget:g}-s{run_seed}" if len(budgets) > 1 else f"d{fraction:g}-s{run_seed}"
                run = {"run_id": run_id, "domain_fraction": fraction, "preset": preset, "params": model_params,
                       "seed": run_seed}
                result, rows = _synthetic_run(run, fraction, budget, setup, rng)
                results.append(result)
                curves += rows
    return pd.DataFrame(results), pd.DataFrame(curves)


def _synthetic_run(run: dict, fraction: float, budget: float, setup: dict, rng: np.random.Generator):
    """One synthetic run's ``results`` row and ``curves`` rows (see :func:`spt_sweep`)."""
    law, params, count = get_law("spt"), setup["params"], setup["evaluations"]
    offset_sd, noise, ar_rho, eval_noise = setup["noise"]
    tokens = np.arange(1, count + 1) * (budget / count)
    phases = _phases(count, setup["schedule"], setup["warmup"])
    scale, lr = _schedule(phases, tokens / budget, setup["schedule"])
    common = rng.normal(0.0, offset_sd) + _ar1(rng, count, noise, ar_rho)
    heldout_clean = law.loss_at(params, tokens, fraction)
    gap_clean = gap_loss(params, tokens, np.full(count, fraction), setup["gap_offset"])
    heldout = heldout_clean * scale * np.exp(common + rng.normal(0.0, eval_noise, count))
    train = (heldout_clean - gap_clean) * scale * np.exp(common + rng.normal(0.0, eval_noise, count))
    general = law.loss_at(params, (1.0 - fraction) * tokens + 1.0, 0.0) * np.exp(rng.normal(0.0, noise, count))
    rows = [{**run, "tokens": t, "domain_loss": d, "general_loss": g, "domain_train_loss": r,
             "domain_epochs": t * fraction / setup["domain_tokens"], "phase": p, "lr": rate}
            for t, d, g, r, p, rate in zip(tokens, heldout, general, train, phases, lr)]
    finetuned = heldout[-1] - float(setup["gain"](fraction, budget)) + rng.normal(0.0, eval_noise)
    result = {**run, "tokens": budget, "domain_loss": heldout[-1], "general_loss": general[-1],
              "finetune_domain_loss": finetuned, "wall_seconds": budget / 1e7, "status": "ok", "error": "",
              "log_path": f"runs/{run['run_id']}/train.log"}
    return result, rows


def pilot_sweep(seed: int = 0, **options) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep like a small CPU pilot's (:data:`SPT_PILOT`): 6 fractions x 20 evaluations to 5e5 tokens, one
    seed, noise 0.5% (AR(1), lag-1 correlation 0.7) plus run offsets of 0.5%; options override any of these."""
    settings = dict(fractions=PILOT_FRACTIONS, total_tokens=5e5, evaluations=20, noise=0.005, params=SPT_PILOT,
                    offset_sd=0.005, ar_rho=0.7, gap_offset=PILOT_GAP_OFFSET, domain_tokens=PILOT_DOMAIN_TOKENS,
                    schedule="constant", warmup=1, model_params=1e6)
    settings.update(options)
    return spt_sweep(seed=seed, **settings)
