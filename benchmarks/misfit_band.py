"""How much of δ*'s band is the law's misfit? (issue 23, item 4)

The run bootstrap estimates its noise model from the fit's residuals as they are
(:mod:`scaling_laws.fitting.noise`). Where the law cannot follow a run's curve, the residuals along that run form
a smooth curve, and that misfit is read as noise of the run: it reaches δ*'s band, and it differs between
fractions because each run has its own. This prints, for each pilot, δ* and its band at the pilot's largest
budget twice: with the method as it is, and with each run's smooth curve (a quadratic in log tokens) taken out of
the residuals before the noise is estimated (``noise.SMOOTH_REMOVED = 2``, a diagnostic, never the default). The
difference is the part of the band that is the law's misfit; what is left is what the noise between
evaluations, and the assumed run offsets it scales, would give on their own.

Pilots: sweep folders (``--sweep FOLDER``, repeatable; ``--max-tokens`` keeps the evaluations up to a budget, so
the forecast sweep's first 400k tokens are its pilot) and the stress generators of :mod:`scaling_laws.stress`
(``--stress N``: N pilots of each, seeds from ``--first-seed``).

    .venv/train/bin/python benchmarks/misfit_band.py --sweep outputs/quickstart/sweep \\
        --sweep outputs/forecast/sweep --max-tokens 4e5 [--stress 12] [--law spt-regularized]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.spt_reproduction import fitted_points  # noqa: E402
from scaling_laws import fit_spt, optimal_fraction, stress  # noqa: E402
from scaling_laws.fitting import noise  # noqa: E402
from scaling_laws.fitting.points import select_points  # noqa: E402

LEVEL = 0.9
SMOOTH_DEGREE = 2


@contextlib.contextmanager
def smooth_removed(degree: int | None):
    """The noise model estimated with each run's smooth curve of ``degree`` taken out (None: the method)."""
    saved = noise.SMOOTH_REMOVED
    noise.SMOOTH_REMOVED = degree
    try:
        yield
    finally:
        noise.SMOOTH_REMOVED = saved


def band(table: pd.DataFrame, law: str, replicates: int, seed: int, degree: int | None,
         searched: tuple[float, float] | None) -> dict:
    """δ*, its band and the noise the bootstrap drew from, at the table's largest budget."""
    with smooth_removed(degree):
        result = fit_spt(table, form=law, n_starts=16, bootstrap_replicates=replicates, level=LEVEL, seed=seed)
    budget = float(pd.to_numeric(table["tokens"]).max())
    low, high = searched or (None, None)
    choice = optimal_fraction(result, budget, low=low, high=high)
    lo, hi = choice.fraction_range
    models = result.noise or {}
    drawn = models.get("shared") or models.get("fitted") or models.get("held_out") or {}
    return {"fraction": choice.fraction, "interval": choice.fraction_interval,
            "width": (choice.fraction_interval[1] - choice.fraction_interval[0]) / (hi - lo),
            "along": drawn.get("along_sd", float("nan")), "correlation": drawn.get("correlation", float("nan")),
            "offset": drawn.get("offset_sd", float("nan")), "fitted": result.settings.get("fitted")}


def report(name: str, table: pd.DataFrame, law: str, replicates: int, seed: int,
           searched: tuple[float, float] | None = None, truth: float | None = None) -> dict:
    rows = {}
    for label, degree in (("method", None), ("misfit out", SMOOTH_DEGREE)):
        started = time.time()
        row = rows[label] = band(table, law, replicates, seed, degree, searched)
        low, high = row["interval"]
        print(f"{name:<28} {label:<10} {row['fitted']:<9} delta* {row['fraction']:.3f} [{low:.3f}, {high:.3f}] "
              f"width/range {row['width']:.2f}  noise along {100 * row['along']:.2f}% (rho {row['correlation']:.2f}),"
              f" offset {100 * row['offset']:.2f}%"
              + (f"  truth {truth:.3f} {'in' if low <= truth <= high else 'OUT'}" if truth is not None else "")
              + f"  ({time.time() - started:.0f} s)", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="append", default=[], help="a sweep folder (repeatable)")
    parser.add_argument("--max-tokens", type=float, default=None, help="fit the evaluations up to this budget")
    parser.add_argument("--stress", type=int, default=0, help="pilots of each stress generator")
    parser.add_argument("--first-seed", type=int, default=9000)
    parser.add_argument("--law", default="spt-regularized", choices=["spt", "spt-regularized", "spt-epochs"])
    parser.add_argument("--replicates", type=int, default=200)
    args = parser.parse_args()
    if not args.sweep and not args.stress:
        parser.error("give --sweep FOLDER and/or --stress N")
    for folder in args.sweep:
        path = Path(folder)
        if not (path / "curves.csv").exists() and not (path / "curves.parquet").exists():
            parser.error(f"--sweep {folder}: no curves.csv or curves.parquet there (run the sweep first)")
        table = fitted_points(path)  # the evaluations a fit uses; then the pilot's, as spt_forecast.py cuts them
        if args.max_tokens:
            table = table[table["tokens"] <= args.max_tokens].reset_index(drop=True)
        report(path.name if path.name != "sweep" else path.parent.name, table, args.law, args.replicates, 0)
    widths = {}
    for generator in stress.GENERATORS if args.stress else ():
        truth = stress.true_delta_star(generator, stress.BUDGET)
        for seed in range(args.first_seed, args.first_seed + args.stress):
            table = select_points(stress.stress_sweep(generator, seed)).table
            rows = report(f"{generator} {seed}", table, args.law, args.replicates, seed, stress.SEARCHED, truth)
            for label, row in rows.items():
                widths.setdefault((generator, label), []).append(row["width"])
    for (generator, label), values in widths.items():
        print(f"{generator:<13} {label:<10} median width/range {np.median(values):.2f} over {len(values)} pilots")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
