"""Does the SPT law, fitted to a small pilot, predict what it did not see? A reproduction on 2 CPU cores.

Runs ``configs/sweeps/reproduce.yaml`` (6 domain fractions with 0, one of them with a second seed; a constant
learning rate, so every evaluation past warmup is a valid shorter budget), building the quickstart's corpora,
tokenizer and mix first when they are missing. Then fits the law twice and checks each fit on what it did not see:

- **first halves**: every curve's evaluations up to half its tokens; predicts the second halves;
- **all but the largest δ**: every curve but the largest δ's; predicts that curve.

For every held-out evaluation it prints the measured and predicted held-out domain loss and the absolute error
(%), then the median absolute error, the seed-to-seed difference at the repeated δ (the noise floor), whether the
predicted best δ at the final budget (among the swept ones) is the measured best, and writes a figure.

    .venv/train/bin/python benchmarks/spt_reproduction.py [--sweep configs/sweeps/reproduce.yaml] [--skip-sweep]
        [--starts 64] [--figure outputs/reproduce/reproduction.png]

Measured 2026-11-30 on a 2-core AVX-512 machine shared with other jobs (load average 4-27): the sweep took 38 min
(cells 93-482 s); on the same machine at load ~2 a 400k-token quickstart cell takes 40-58 s, so the 7 cells of
300k tokens take about 5 min unloaded. The two fits take seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: The data the sweep's base mix reads, made by the quickstart's first steps (each skips work already done).
PREREQUISITES = (["corpora", "configs/corpora/quickstart.yaml"], ["tokenizer", "configs/tokenizer/quickstart.yaml"],
                 ["mix", "build", "configs/mix/quickstart.yaml"])


def run_sweep(sweep_config: str) -> tuple[Path, float]:
    """Builds what is missing and runs the sweep (finished cells are skipped); returns its folder and seconds."""
    from spt.config import load_config
    from training.sweep import run_sweep as sweep

    for command in PREREQUISITES:
        subprocess.run([sys.executable, "-m", "spt.cli", *command], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    config = load_config(REPO / sweep_config, kind="sweep")
    started = time.time()
    results = sweep(config)
    if (results["status"] != "ok").any():
        raise SystemExit(f"failed cells: {', '.join(results.loc[results['status'] != 'ok', 'run_id'])}")
    return REPO / config.output_dir, time.time() - started


def fitted_points(folder: Path) -> pd.DataFrame:
    """The sweep's evaluations a fit may use (successful runs, past warmup), numeric, with ``fraction``."""
    from scaling_laws.sweeps import fit_table, load_sweep

    table = fit_table(load_sweep(folder))
    table = table[table["phase"].fillna("").astype(str) != "warmup"].copy()
    for column in ("fraction", "tokens", "domain_loss", "seed"):
        table[column] = pd.to_numeric(table[column])
    return table.reset_index(drop=True)


def fit_law(table: pd.DataFrame, starts: int):
    """The one place that fits: the SPT law on the held-out domain loss (swap in validated fitters here)."""
    from scaling_laws import fit

    return fit(table, "spt", loss_column="domain_loss", n_starts=starts, seed=0)


def predicted_loss(result, tokens, fractions) -> np.ndarray:
    from scaling_laws import predict

    return predict(result, {"tokens": np.asarray(tokens, float), "fraction": np.asarray(fractions, float)})["predicted"]


def holdout_report(name: str, table: pd.DataFrame, held_out: np.ndarray, starts: int) -> tuple[pd.DataFrame, object]:
    """Fits on the rows not ``held_out``; prints every held-out row's measured and predicted loss."""
    result = fit_law(table[~held_out], starts)
    rows = table[held_out].copy()
    rows["predicted"] = predicted_loss(result, rows["tokens"], rows["fraction"])
    rows["abs_error_pct"] = 100 * (rows["predicted"] - rows["domain_loss"]).abs() / rows["domain_loss"]
    print(f"\n== fit on {name}: {int((~held_out).sum())} points fitted, {int(held_out.sum())} held out")
    print(rows[["run_id", "tokens", "domain_loss", "predicted", "abs_error_pct"]]
          .to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"median absolute error: {rows['abs_error_pct'].median():.2f}%  (max {rows['abs_error_pct'].max():.2f}%)")
    return rows, result


def best_fraction_report(name: str, table: pd.DataFrame, result) -> bool:
    """Whether the fit's best swept δ at the final budget is the measured best (final losses, mean over seeds)."""
    from scaling_laws import optimal_fraction

    final_tokens = table["tokens"].max()
    final = table[table["tokens"] == final_tokens].groupby("fraction")["domain_loss"].mean()
    predicted = pd.Series(predicted_loss(result, np.full(len(final), final_tokens), final.index), index=final.index)
    choice = optimal_fraction(result, float(final_tokens))
    same = predicted.idxmin() == final.idxmin()
    print(f"{name}: at T={final_tokens:,.0f} the measured best δ is {final.idxmin():g} ({final.min():.4f}); the fit's "
          f"best swept δ is {predicted.idxmin():g} (δ* = {choice.fraction:.3g} over the swept range): "
          f"{'same' if same else 'DIFFERENT'}")
    return bool(same)


def noise_floor(table: pd.DataFrame) -> None:
    """Seed-to-seed differences of the domain loss at the fraction swept with several seeds."""
    seeds = table.groupby("fraction")["seed"].nunique()
    for fraction in seeds[seeds > 1].index:
        pivot = table[table["fraction"] == fraction].pivot_table(index="tokens", columns="seed", values="domain_loss")
        spread = (pivot.max(axis=1) - pivot.min(axis=1)).dropna()
        relative = 100 * spread / pivot.mean(axis=1)
        print(f"noise floor at δ={fraction:g} ({pivot.shape[1]} seeds): seed-to-seed difference median "
              f"{spread.median():.4f} nats ({relative.median():.2f}%), max {spread.max():.4f} ({relative.max():.2f}%)")


def plot(table: pd.DataFrame, fits: dict[str, object], held: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, len(fits), figsize=(6 * len(fits), 4.5))
    colors = plt.get_cmap("viridis")
    fractions = sorted(table["fraction"].unique())
    for axes, (name, result) in zip(np.atleast_1d(panels), fits.items()):
        for index, fraction in enumerate(fractions):
            color = colors(index / max(1, len(fractions) - 1))
            rows = table[table["fraction"] == fraction]
            out = held[name][table["fraction"] == fraction]
            axes.scatter(rows["tokens"][~out], rows["domain_loss"][~out], color=color, s=12)
            axes.scatter(rows["tokens"][out], rows["domain_loss"][out], facecolors="none", edgecolors=color, s=20)
            grid = np.linspace(rows["tokens"].min(), rows["tokens"].max(), 100)
            axes.plot(grid, predicted_loss(result, grid, np.full(100, fraction)), color=color, label=f"δ={fraction:g}")
        # The measured range: a prediction far off leaves the panel instead of flattening the measurements.
        axes.set_ylim(table["domain_loss"].min() - 0.2, table["domain_loss"].max() + 0.5)
        axes.set(title=f"fit on {name} (hollow: held out)", xlabel="tokens", ylabel="held-out domain loss (nats)")
        axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="configs/sweeps/reproduce.yaml", help="the sweep config")
    parser.add_argument("--skip-sweep", action="store_true", help="fit the sweep's folder as it is")
    parser.add_argument("--starts", type=int, default=64, help="fit starting points")
    parser.add_argument("--figure", default=None, help="PNG path (default: SWEEP_FOLDER/reproduction.png)")
    args = parser.parse_args()

    if args.skip_sweep:
        from spt.config import load_config

        folder, seconds = REPO / load_config(REPO / args.sweep, kind="sweep").output_dir, None
    else:
        folder, seconds = run_sweep(args.sweep)
    table = fitted_points(folder)
    print(f"sweep {folder}: {table['run_id'].nunique()} runs, {len(table)} evaluations past warmup"
          + (f", swept in {seconds / 60:.1f} min" if seconds is not None else ""))
    noise_floor(table)
    half = table["tokens"] > table.groupby("run_id")["tokens"].transform("max") / 2
    largest = table["fraction"] == table["fraction"].max()
    held = {"first halves": half.to_numpy(), "all but the largest δ": largest.to_numpy()}
    fits, same = {}, {}
    for name, mask in held.items():
        _, fits[name] = holdout_report(name, table, mask, args.starts)
        same[name] = best_fraction_report(name, table, fits[name])
    plot(table, fits, held, Path(args.figure) if args.figure else folder / "reproduction.png")


if __name__ == "__main__":
    main()
