"""Does the SPT law, fitted to a small pilot, predict what it did not see? A reproduction on 2 CPU cores.

Runs ``configs/sweeps/reproduce.yaml`` (7 domain fractions with 0, three seeds each; a constant learning rate, so
every evaluation past warmup is a valid shorter budget), building the quickstart's corpora, tokenizer, rephrasings
and mix first when they are missing. Then checks the law twice with the library's own validation
(:func:`scaling_laws.decision.validation.validate`, the same as ``spt fit --holdout-...``), on the evaluations a sweep fit
uses (:func:`scaling_laws.fitting.points.select_points`):

- **first halves**: the fit sees every curve up to half its budget and predicts the second halves;
- **all but the largest δ**: the fit sees every curve but the largest δ's and predicts that curve.

For every held-out evaluation it prints the measured and predicted held-out domain loss and the error (%), then the
median absolute error, the seed-to-seed differences (the noise floor), whether the predicted best δ at the final
budget (among the swept ones) is the measured best or tied with it within the seed noise
(:func:`scaling_laws.decision.validation.best_fraction_verdict`), and writes a figure.

    .venv/train/bin/python benchmarks/spt_reproduction.py [--sweep configs/sweeps/reproduce.yaml] [--skip-sweep]
        [--starts 64] [--figure outputs/reproduce/reproduction.png]

Exits 1 when a median error is above :data:`MAX_MEDIAN_ERROR` or the runs put a predicted best δ behind the
measured best by more than one standard deviation of that difference's seed noise.
"""

from __future__ import annotations

import argparse
import os
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
                 ["rephrase", "configs/rephrase/quickstart.yaml"], ["mix", "build", "configs/mix/quickstart.yaml"])
#: The acceptance bound on each validation's median absolute error (%).
MAX_MEDIAN_ERROR = 2.0


def load() -> str:
    """The 1-minute load average (the machine may be shared: timings need it)."""
    return f"{os.getloadavg()[0]:.1f}"


def run_sweep(sweep_config: str) -> tuple[Path, float]:
    """Builds what is missing and runs the sweep (finished cells are skipped); returns its folder and seconds."""
    from spt.config import load_config
    from sweeps.run import run_sweep as sweep

    for command in PREREQUISITES:
        started = time.time()
        subprocess.run([sys.executable, "-m", "cli.main", *command], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        print(f"{command[0]}: {time.time() - started:.0f} s (load {load()})")
    config = load_config(REPO / sweep_config, kind="sweep")
    started = time.time()
    results = sweep(config)
    if (results["status"] != "ok").any():
        raise SystemExit(f"failed cells: {', '.join(results.loc[results['status'] != 'ok', 'run_id'])}")
    return REPO / config.output_dir, time.time() - started


def sweep_parser(doc: str, sweep: str, figure: str) -> argparse.ArgumentParser:
    """The options both sweep benchmarks share: the sweep config, --skip-sweep and the figure's path."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--sweep", default=sweep, help="the sweep config")
    parser.add_argument("--skip-sweep", action="store_true", help="fit the sweep's folder as it is")
    parser.add_argument("--figure", default=None, help=f"PNG path (default: SWEEP_FOLDER/{figure})")
    return parser


def swept_folder(args: argparse.Namespace) -> tuple[Path, float | None]:
    """The sweep's folder, after running the sweep (and its seconds) unless ``--skip-sweep``."""
    if args.skip_sweep:
        from spt.config import load_config

        return REPO / load_config(REPO / args.sweep, kind="sweep").output_dir, None
    return run_sweep(args.sweep)


def fitted_points(folder: Path) -> pd.DataFrame:
    """The sweep's evaluations a fit uses (:func:`scaling_laws.fitting.points.select_points`), with numeric columns."""
    from scaling_laws.fitting.points import select_points
    from sweeps.tables import fit_table, load_sweep

    selection = select_points(fit_table(load_sweep(folder)), str(folder))
    for note in selection.notes:
        print(f"note: {note}")
    table = selection.table.copy()
    for column in ("fraction", "tokens", "domain_loss", "seed"):
        table[column] = pd.to_numeric(table[column])
    return table.reset_index(drop=True)


def noise_floor(table: pd.DataFrame) -> float | None:
    """Prints the seed-to-seed differences of the domain loss at each fraction swept with several seeds, over the
    curve and at the final budget; returns the median over fractions of the difference at the final budget (nats),
    or None without a repeated fraction."""
    seeds = table.groupby("fraction")["seed"].nunique()
    finals = []
    for fraction in seeds[seeds > 1].index:
        pivot = table[table["fraction"] == fraction].pivot_table(index="tokens", columns="seed", values="domain_loss")
        spread = (pivot.max(axis=1) - pivot.min(axis=1)).dropna()
        relative = 100 * spread / pivot.mean(axis=1)
        finals.append(spread.iloc[-1])
        print(f"noise floor at δ={fraction:g} ({pivot.shape[1]} seeds): seed-to-seed difference median "
              f"{spread.median():.4f} nats ({relative.median():.2f}%), max {spread.max():.4f} ({relative.max():.2f}%), "
              f"at T={spread.index[-1]:,.0f} {spread.iloc[-1]:.4f}")
    return float(np.median(finals)) if finals else None


def margins(final: dict) -> tuple[float, float]:
    """How far apart the fit and the runs put the predicted and the measured best fraction at the final budget
    (nats; both >= 0): the fit's predicted loss at the measured best minus at its own, and the runs' measured loss
    at the predicted best minus at theirs."""
    fractions = final["fractions"]
    at_measured, at_predicted = fractions.index(final["measured_best"]), fractions.index(final["predicted_best"])
    return (final["predicted"][at_measured] - final["predicted"][at_predicted],
            final["measured"][at_predicted] - final["measured"][at_measured])


def checks(table: pd.DataFrame, starts: int, law: str) -> dict[str, dict]:
    """The two validations: first halves of every curve (all runs share one budget), all but the largest δ."""
    from scaling_laws.decision.validation import validate

    budgets = table.groupby("run_id")["tokens"].max()
    if budgets.nunique() != 1:
        raise SystemExit(f"the runs have different budgets ({sorted(budgets.unique())}): 'first halves' needs one")
    options = dict(n_starts=starts, seed=0, source="reproduction", form=law)
    return {"first halves": validate(table, holdout_tokens_above=float(budgets.iloc[0]) / 2, **options),
            "all but the largest δ": validate(table, holdout_fractions=[table["fraction"].max()], **options)}


def plot(table: pd.DataFrame, reports: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scaling_laws.decision.validation import holdout_mask
    from scaling_laws.laws.spt import SPTOverfit

    law = SPTOverfit()
    figure, panels = plt.subplots(1, len(reports), figsize=(6 * len(reports), 4.5))
    colors = plt.get_cmap("viridis")
    fractions = sorted(table["fraction"].unique())
    for axes, (name, report) in zip(np.atleast_1d(panels), reports.items()):
        held = holdout_mask(table, report["holdout_tokens_above"], report["holdout_fractions"])
        for index, fraction in enumerate(fractions):
            color = colors(index / max(1, len(fractions) - 1))
            rows = table["fraction"] == fraction
            axes.scatter(table["tokens"][rows & ~held], table["domain_loss"][rows & ~held], color=color, s=12)
            axes.scatter(table["tokens"][rows & held], table["domain_loss"][rows & held], facecolors="none",
                         edgecolors=color, s=20)
            grid = np.linspace(table["tokens"][rows].min(), table["tokens"][rows].max(), 100)
            axes.plot(grid, law.loss_at(report["params"], grid, fraction), color=color, label=f"δ={fraction:g}")
        # The measured range: a prediction far off leaves the panel instead of flattening the measurements.
        axes.set_ylim(table["domain_loss"].min() - 0.2, table["domain_loss"].max() + 0.5)
        axes.set(title=f"fit on {name} (hollow: held out)", xlabel="tokens", ylabel="held-out domain loss (nats)")
        axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    print(f"figure: {path}")


def main() -> int:
    from scaling_laws.decision.validation import format_validation, verdict_text

    parser = sweep_parser(__doc__, "configs/sweeps/reproduce.yaml", "reproduction.png")
    parser.add_argument("--starts", type=int, default=64, help="fit starting points")
    parser.add_argument("--law", default="spt-regularized", choices=("spt", "spt-regularized"),
                        help="the SPT form (README's figures: spt-regularized, the form they were measured with)")
    args = parser.parse_args()

    started = time.time()
    folder, seconds = swept_folder(args)
    table = fitted_points(folder)
    print(f"sweep {folder}: {table['run_id'].nunique()} runs, {len(table)} evaluations fitted"
          + (f", swept in {seconds / 60:.1f} min (load {load()})" if seconds is not None else ""))
    noise = noise_floor(table)
    reports = checks(table, args.starts, args.law)
    passed = True
    for name, report in reports.items():
        print(f"\n== fit on {name}")
        print(format_validation(report, max_rows=len(report["rows"])))
        passed &= report["median_abs_pct_error"] <= MAX_MEDIAN_ERROR and report["final"]["right"]
    print("\n== summary")
    for name, report in reports.items():
        final = report["final"]
        print(f"{name:>22}: median |error| {report['median_abs_pct_error']:.2f}% (bound {MAX_MEDIAN_ERROR:g}%), "
              f"best δ at T={final['tokens']:,.0f}: measured {final['measured_best']:g}, predicted "
              f"{final['predicted_best']:g} ({verdict_text(final)})")
        if not final["same"]:
            fit_margin, run_margin = margins(final)
            print(f"{'':>24}the fit puts them {fit_margin:.3f} nats apart, the runs {run_margin:.3f}"
                  + (f" (seeds of one δ differ there by {noise:.3f}, median)" if noise is not None else ""))
    plot(table, reports, Path(args.figure) if args.figure else folder / "reproduction.png")
    print(f"reproduction {'passed' if passed else 'FAILED'} in {(time.time() - started) / 60:.1f} min")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
