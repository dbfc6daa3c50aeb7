"""Can a size-aware law be believed? The size pilot's validation of issue 25.

Runs ``configs/sweeps/sizes.yaml`` (tiny, micro and mini x 5 domain fractions with 0, runs of 400k tokens at a
constant learning rate, a second seed at δ = 0.1 for every size), building the quickstart's data first when it is
missing. Then fits the size-aware law (``spt-n``, the form ``spt fit`` and ``spt decide`` use on several sizes) twice,
each time on part of the pilot, and judges it on the rest:

1. **held-out size**: fitted on the two smaller sizes (every budget), it predicts the largest size's curves;
2. **held-out budgets**: fitted on every size's evaluations up to :data:`EARLY_TOKENS`, it predicts the later ones.

For each it prints the median absolute error of the predicted held-out domain loss over the points held out, and,
per judged size at the last budget, the δ the law puts best among the swept ones beside the measured best, the
**regret** of the law's pick (its measured loss minus the best's) and one seed standard deviation of a difference
(from the repeated δ of that size). A fit of the whole pilot is printed beside them, for reference.

The pass rule is fixed here, before the pilot first ran, and mirrors issue 22's forecast rule: **a validation passes
when the median error is <= 3% and, for every size it judges, the regret is <= max(0.02 nats, one seed SD of a
difference)**. Exits 1 when either fails.

    .venv/train/bin/python benchmarks/spt_sizes.py [--skip-sweep] [--starts N] [--figure PATH]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.spt_reproduction import fitted_points, load, sweep_parser, swept_folder  # noqa: E402

#: The held-out budgets validation fits evaluations up to this budget (tokens) and predicts the later ones.
EARLY_TOKENS = 200_000
#: The pass rule (fixed before the pilot first ran).
MAX_MEDIAN_ERROR_PCT = 3.0
MIN_REGRET_ALLOWANCE = 0.02


def inputs_of(table: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: pd.to_numeric(table[name]).to_numpy(float) for name in ("params", "tokens", "fraction")}


def judge_size(fit, table: pd.DataFrame, params: float) -> dict:
    """At one size's last budget: the law's pick among the swept δ, the measured best, the regret and the noise."""
    from scaling_laws.decision.validation import seed_noise

    runs = table[np.isclose(table["params"], params)]
    last = runs[np.isclose(runs["tokens"], runs["tokens"].max())]
    grouped = last.groupby("fraction")["domain_loss"]
    measured, counts = grouped.mean(), grouped.count()
    fractions = measured.index.to_numpy(float)
    predicted = fit.form.predict(fit.params, {"params": np.full(len(fractions), params),
                                              "tokens": np.full(len(fractions), float(last["tokens"].max())),
                                              "fraction": fractions})
    pick, best = float(fractions[np.argmin(predicted)]), float(measured.idxmin())
    sd = seed_noise(last)
    band = None if sd is None else float(sd * np.sqrt(1 / counts[pick] + 1 / counts[best]))
    regret = float(measured[pick] - measured[best])
    return {"params": int(params), "preset": str(runs["preset"].iloc[0]) if "preset" in runs else "",
            "tokens": float(last["tokens"].max()), "pick": pick, "best": best, "regret": regret,
            "seed_sd_difference": band, "ok": regret <= max(MIN_REGRET_ALLOWANCE, band or 0.0) + 1e-12,
            "measured": {float(f): round(float(v), 3) for f, v in measured.items()},
            "predicted": {float(f): round(float(v), 3) for f, v in zip(fractions, predicted)}}


def validate(name: str, table: pd.DataFrame, fitted: pd.Series, starts: int | None) -> dict:
    """Fits the rows in ``fitted``, predicts the others; the median error there and the judged sizes' picks."""
    from scaling_laws.fitting.evaluations import fit_evaluations

    started = time.time()
    train, held = table[fitted].reset_index(drop=True), table[~fitted].reset_index(drop=True)
    fit = fit_evaluations(train, source=name, bootstrap_replicates=0, n_starts=starts, seed=0)
    result = {"name": name, "fit": fit, "law": fit.law, "fitted_points": len(train), "held_points": len(held),
              "converged": fit.settings.get("converged"), "on_bounds": fit.settings.get("on_bounds"),
              "seconds": time.time() - started}
    if len(held):
        predicted = fit.form.predict(fit.params, inputs_of(held))
        errors = 100 * np.abs(predicted - held["domain_loss"].to_numpy(float)) / held["domain_loss"].to_numpy(float)
        result["median_error_pct"] = float(np.median(errors))
        judged = sorted(held["params"].unique())
    else:
        result["median_error_pct"] = None
        judged = sorted(table["params"].unique())
    result["sizes"] = [judge_size(fit, table, params) for params in judged]
    result["ok"] = (result["median_error_pct"] is None or result["median_error_pct"] <= MAX_MEDIAN_ERROR_PCT) \
        and all(size["ok"] for size in result["sizes"])
    return result


def report(result: dict) -> None:
    from scaling_laws.fitting.regime import is_regime_caveat

    error = result["median_error_pct"]
    print(f"\n{result['name']}: law {result['law']} on {result['fitted_points']} points, "
          f"{result['held_points']} held out; converged {result['converged']}, on bounds "
          f"{', '.join(f'{k} ({v})' for k, v in (result['on_bounds'] or {}).items()) or 'none'} "
          f"({result['seconds']:.0f} s)")
    for caveat in result["fit"].caveats:
        if is_regime_caveat(caveat):  # the regime check every sweep fit runs
            print(f"  caveat: {caveat}")
    if error is not None:
        print(f"  median absolute error on the held-out points: {error:.2f}% (rule <= {MAX_MEDIAN_ERROR_PCT:g}%)")
    for size in result["sizes"]:
        band = size["seed_sd_difference"]
        allowance = max(MIN_REGRET_ALLOWANCE, band or 0.0)
        print(f"  {size['preset'] or size['params']} ({size['params']:,} params) at {size['tokens']:,.0f} tokens: "
              f"law's best δ {size['pick']:g}, measured best {size['best']:g}, regret {size['regret']:.4f} nats "
              f"(rule <= {allowance:.4f}; seed SD of a difference "
              f"{'n/a' if band is None else f'{band:.4f}'}) -> {'ok' if size['ok'] else 'FAIL'}")
        print(f"    measured {size['measured']}\n    law      {size['predicted']}")
    if error is not None:
        print(f"  {result['name']}: {'PASS' if result['ok'] else 'FAIL'}")


def plot(table: pd.DataFrame, fit, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(table["params"].unique())
    figure, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 3.8), sharey=True)
    colors = plt.get_cmap("viridis")
    fractions = sorted(table["fraction"].unique())
    for axis, params in zip(np.atleast_1d(axes), sizes):
        runs = table[np.isclose(table["params"], params)]
        for index, fraction in enumerate(fractions):
            color = colors(index / max(1, len(fractions) - 1))
            mean = runs[runs["fraction"] == fraction].groupby("tokens")["domain_loss"].mean()
            axis.plot(mean.index, mean.to_numpy(), "o", ms=2.5, color=color, label=f"δ={fraction:g}")
            grid = np.geomspace(mean.index.min(), mean.index.max(), 100)
            curve = fit.form.predict(fit.params, {"params": np.full(grid.size, params), "tokens": grid,
                                                  "fraction": np.full(grid.size, fraction)})
            axis.plot(grid, curve, color=color, lw=1)
        axis.set(xscale="log", xlabel="tokens", title=f"{runs['preset'].iloc[0]} ({params / 1e6:.2f}M params)")
    np.atleast_1d(axes)[0].set_ylabel("held-out domain loss (nats)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    figure.suptitle(f"size pilot: runs (dots) and {fit.law} fitted on the two smaller sizes (lines)", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    print(f"figure: {path}")


def main() -> int:
    parser = sweep_parser(__doc__, "configs/sweeps/sizes.yaml", "sizes.png")
    parser.add_argument("--starts", type=int, default=None, help="fit starting points (default: the law's)")
    args = parser.parse_args()

    started = time.time()
    folder, seconds = swept_folder(args)
    table = fitted_points(folder)
    table["params"] = pd.to_numeric(table["params"])
    sizes = sorted(table["params"].unique())
    if len(sizes) < 3:
        raise SystemExit(f"{folder}: {len(sizes)} model size(s); the validation needs three")
    print(f"sweep {folder}: {table['run_id'].nunique()} runs, {len(table)} evaluations, sizes "
          f"{', '.join(f'{n:,.0f}' for n in sizes)} params"
          + (f"; swept in {seconds / 60:.1f} min (load {load()})" if seconds is not None else ""))

    size_check = validate("held-out size", table, table["params"] < sizes[-1], args.starts)
    budget_check = validate(f"held-out budgets (> {EARLY_TOKENS:,})", table, table["tokens"] <= EARLY_TOKENS,
                            args.starts)
    whole = validate("whole pilot (reference, in sample)", table, pd.Series(True, index=table.index), args.starts)
    for result in (size_check, budget_check, whole):
        report(result)
    plot(table, size_check["fit"], Path(args.figure) if args.figure else folder / "sizes.png")
    ok = size_check["ok"] and budget_check["ok"]
    print(f"\nsize benchmark {'PASSED' if ok else 'FAILED'} in {(time.time() - started) / 60:.1f} min "
          f"(load {load()})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
