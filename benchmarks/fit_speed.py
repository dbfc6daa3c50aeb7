"""Times the default 4,500-start Chinchilla fit against a naive loop of SciPy minimizations.

The baseline is what one would write first: for each start, ``scipy.optimize.minimize`` (L-BFGS-B) of the same
Huber objective with finite-difference gradients. It is run on a random subset of the grid and its time scaled
to the full grid (printed as such), since running all 4,500 starts that way takes minutes.

    python benchmarks/fit_speed.py [--points 250] [--baseline-starts 150]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import minimize

from scaling_laws import fit, get_law, synthetic
from scaling_laws.data import law_inputs
from scaling_laws.objective import Objective, value_and_grad


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=250, help="synthetic runs to fit")
    parser.add_argument("--baseline-starts", type=int, default=150, help="grid starts the naive loop runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    table = synthetic.chinchilla_table(n=args.points, noise=0.01, seed=args.seed)
    law = get_law("chinchilla")
    grid = law.start_grid(law_inputs(table, law), table["loss"].to_numpy())

    began = time.perf_counter()
    result = fit(table, law)
    batched = time.perf_counter() - began
    print(f"batched L-BFGS, analytic gradients: {len(grid)} starts on {args.points} points in {batched:.2f} s "
          f"(objective {result.objective:.6g})")

    subset = grid[np.random.default_rng(args.seed).choice(len(grid), args.baseline_starts, replace=False)]
    seconds, best = naive_loop(table, subset)
    scaled = seconds * len(grid) / len(subset)
    print(f"naive scipy loop, finite differences: {len(subset)} starts in {seconds:.2f} s "
          f"(best objective {best:.6g}); scaled to {len(grid)} starts: {scaled:.1f} s")
    print(f"ratio (naive / batched): {scaled / batched:.1f}x")
    print("fitted vs true:", ", ".join(f"{k} {result.params[k]:.4g} ({v:g})" for k, v in synthetic.CHINCHILLA.items()))


if __name__ == "__main__":
    main()
