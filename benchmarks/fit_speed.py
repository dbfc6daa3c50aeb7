"""Fit speed: the batched optimizers against the baselines one would write first, in the same process.

1. Chinchilla, the default 4,500-start grid: the batched L-BFGS against a naive loop of SciPy minimizations
   (``scipy.optimize.minimize``, L-BFGS-B, finite-difference gradients), run on a subset of the starts and scaled.
2. The SPT sweep fit a user runs (``spt fit --law spt --data SWEEP --starts 64 --bootstrap 200``): a synthetic
   pilot of 6 fractions x 20 evaluations, the train loss and the gap fitted separately, 200 run-bootstrap
   refits, all by batched Levenberg-Marquardt; against the same fit and refits by the batched L-BFGS (whose
   objective lacks the gap's weak priors, so the two land on slightly different fits; delta* is printed).

    python benchmarks/fit_speed.py [--points 250] [--baseline-starts 150] [--replicates 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import minimize

from scaling_laws import fit, fit_spt, get_law, optimal_fraction, synthetic
from scaling_laws.fitting.data import law_inputs
from scaling_laws.fitting.points import select_points
from scaling_laws.numerics.objective import Objective, value_and_grad


def naive_loop(table, starts: np.ndarray) -> tuple[float, float]:
    """Seconds spent and best objective of one finite-difference L-BFGS-B run per start."""
    law = get_law("chinchilla")
    inputs, target = law_inputs(table, law), table["loss"].to_numpy(dtype=float)
    weights, objective = np.ones(len(target)), Objective()
    lower, upper = law.bounds()

    def value(x):
        return value_and_grad(law, x[None, :], inputs, target, weights, objective)[0][0]

    began = time.perf_counter()
    best = np.inf
    for start in starts:
        result = minimize(value, start, method="L-BFGS-B", bounds=list(zip(lower, upper)))
        best = min(best, float(result.fun))
    return time.perf_counter() - began, best


def chinchilla(points: int, baseline_starts: int, seed: int) -> None:
    table = synthetic.chinchilla_table(n=points, noise=0.01, seed=seed)
    law = get_law("chinchilla")
    grid = law.start_grid(law_inputs(table, law), table["loss"].to_numpy())
    began = time.perf_counter()
    result = fit(table, law)
    batched = time.perf_counter() - began
    print(f"chinchilla, batched L-BFGS, analytic gradients: {len(grid)} starts on {points} points in {batched:.2f} s "
          f"(objective {result.objective:.6g})")
    subset = grid[np.random.default_rng(seed).choice(len(grid), baseline_starts, replace=False)]
    seconds, best = naive_loop(table, subset)
    scaled = seconds * len(grid) / len(subset)
    print(f"naive scipy loop, finite differences: {len(subset)} starts in {seconds:.2f} s "
          f"(best objective {best:.6g}); scaled to {len(grid)} starts: {scaled:.1f} s")
    print(f"ratio (naive / batched): {scaled / batched:.1f}x")


def spt_sweep_fit(replicates: int, seed: int) -> None:
    _, curves = synthetic.pilot_sweep(seed=seed, evaluations=21)  # 20 after the warmup evaluation
    table = select_points(curves.rename(columns={"domain_fraction": "fraction"})).table
    timings = {}
    for optimizer in ("lm", "lbfgs"):
        for law in (get_law("spt-train"), get_law("spt-gap")):
            type(law).optimizer = optimizer
        began = time.perf_counter()
        result = fit_spt(table, n_starts=64, bootstrap_replicates=replicates, seed=seed)
        timings[optimizer] = time.perf_counter() - began
        choice = optimal_fraction(result, 5e5)
        print(f"spt sweep fit ({len(table)} evaluations: 6 fractions x 20), 128 starts + {replicates} run-bootstrap "
              f"refits, batched {'Levenberg-Marquardt' if optimizer == 'lm' else 'L-BFGS'}: {timings[optimizer]:.2f} s "
              f"(delta* at 5e5 tokens {choice.fraction:.4f} in [{choice.fraction_interval[0]:.4f}, "
              f"{choice.fraction_interval[1]:.4f}])")
    for law in (get_law("spt-train"), get_law("spt-gap")):
        type(law).optimizer = "lm"
    print(f"ratio (L-BFGS / Levenberg-Marquardt): {timings['lbfgs'] / timings['lm']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=250, help="synthetic runs of the Chinchilla fit")
    parser.add_argument("--baseline-starts", type=int, default=150, help="grid starts the naive loop runs")
    parser.add_argument("--replicates", type=int, default=200, help="bootstrap refits of the SPT sweep fit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    chinchilla(args.points, args.baseline_starts, args.seed)
    spt_sweep_fit(args.replicates, args.seed)


if __name__ == "__main__":
    main()
