"""Figures of a fit (matplotlib, Agg backend), each saved as PNG and SVG: loss curves, delta* vs budget, residuals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaling_laws.data import check_frame, law_inputs
from scaling_laws.decisions import optimal_fraction
from scaling_laws.fitting import predict
from scaling_laws.result import FitResult


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, stem: Path) -> list[Path]:
    """Saves ``stem.png`` and ``stem.svg``; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return paths


def _budget_axis(axes, largest_fitted: float | None, budgets) -> None:
    """Log budget axis without crowded minor labels; a dotted line where the fitted budgets end, if passed."""
    from matplotlib.ticker import NullFormatter

    axes.xaxis.set_minor_formatter(NullFormatter())
    if largest_fitted is not None and max(budgets) > largest_fitted:
        axes.axvline(largest_fitted, color="grey", linestyle=":", linewidth=1.0, label="largest fitted budget")


def _group_column(fit: FitResult) -> str:
    """Curves are drawn per domain fraction for SPT laws and per model size otherwise."""
    inputs = fit.form.inputs
    return "fraction" if "fraction" in inputs else ("params" if "params" in inputs else "tokens")


def plot_loss_curves(fit: FitResult, table: pd.DataFrame, stem: Path) -> list[Path]:
    """Observed loss vs tokens per group (fraction or model size) with the fitted curves and bootstrap bands.

    Curves run over a token grid with the group's value and, for laws with more inputs (unique tokens for
    ``muennighoff``, model size for ``spt-n``), one curve per combination of those inputs found in the data.
    """
    plt = _pyplot()
    law = fit.form
    target = fit.settings.get("loss_column", law.target)
    checked = check_frame(table, law, target, residuals=fit.settings.get("residuals", "log"),
                          free_params=0, source="data")
    group = _group_column(fit)
    others = [c for c in law.inputs if c not in ("tokens", group)]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, checked[group].nunique()))
    for color, (value, rows) in zip(colors, checked.groupby(group)):
        axes.scatter(rows["tokens"], rows[target], s=14, color=color, label=f"{group}={value:g}")
        for _, curve_rows in (rows.groupby(others) if others else [(None, rows)]):
            tokens = np.geomspace(curve_rows["tokens"].min(), curve_rows["tokens"].max(), 60)
            inputs = {c: np.full_like(tokens, curve_rows[c].iloc[0]) for c in law.inputs if c != "tokens"}
            if "unique_tokens" in inputs:  # a run never sees more unique tokens than it trains on
                tokens = np.geomspace(max(curve_rows["tokens"].min(), inputs["unique_tokens"][0]),
                                      curve_rows["tokens"].max(), 60)
            inputs["tokens"] = tokens
            curve = predict(fit, inputs)
            axes.plot(tokens, curve["predicted"], color=color, linewidth=1.0)
            if "lower" in curve:
                axes.fill_between(tokens, curve["lower"], curve["upper"], color=color, alpha=0.2, linewidth=0)
    axes.set(xscale="log", xlabel="tokens", ylabel=target, title=f"{fit.law} fit")
    axes.legend(fontsize=7, ncol=2)
    return save_figure(figure, stem)


def plot_optimal_fraction(fit: FitResult, budgets, stem: Path, choices=None, **search) -> list[Path]:
    """delta* vs token budget, with its bootstrap band when the fit has replicates.

    Args:
        fit: An SPT fit.
        budgets: Token budgets (x axis).
        stem: Output path without suffix.
        choices: The :class:`FractionChoice` at each budget when already computed (default: computed here).
        **search: Passed to :func:`optimal_fraction` (``low``, ``high``, ``widen``, ``params``).
    """
    plt = _pyplot()
    choices = choices or [optimal_fraction(fit, float(t), **search) for t in budgets]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(budgets, [c.fraction for c in choices], marker="o", color="C0", label="delta*")
    if choices[0].fraction_interval is not None:
        low, high = zip(*(c.fraction_interval for c in choices))
        axes.fill_between(budgets, low, high, color="C0", alpha=0.25, linewidth=0,
                          label=f"{100 * fit.level:g}% bootstrap band")
    axes.set(xscale="log", xlabel="total tokens T", ylabel="optimal domain fraction delta*",
             title="optimal domain fraction vs budget")
    _budget_axis(axes, fit.data_ranges.get("tokens", [None, None])[1], budgets)
    axes.legend(fontsize=8)
    return save_figure(figure, stem)


def plot_compute_multiplier(choices, stem: Path, level: float = 0.95,
                            largest_fitted: float | None = None) -> list[Path]:
    """The compute multiplier of delta* vs token budget (log scale), with its bootstrap band when known.

    Args:
        choices: :class:`FractionChoice` per budget (from :func:`optimal_fraction`).
        stem: Output path without suffix.
        level: Coverage of the band (the fit's ``level``), for the legend.
        largest_fitted: Largest fitted budget (tokens), marked by a dotted line when the budgets go beyond it.
    """
    plt = _pyplot()
    budgets = [c.tokens for c in choices]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(budgets, [c.compute_multiplier for c in choices], marker="o", color="C1", label="compute multiplier")
    if choices[0].multiplier_interval is not None:
        low, high = zip(*(c.multiplier_interval for c in choices))
        # An infinite upper end (delta = 0 never reaches the loss) is drawn to the top of the axes.
        axes.fill_between(budgets, low, np.where(np.isfinite(high), high, 1e12), color="C1", alpha=0.25,
                          linewidth=0, label=f"{100 * level:g}% bootstrap band")
    axes.axhline(1.0, color="grey", linewidth=0.8)
    top = max([c.compute_multiplier for c in choices if np.isfinite(c.compute_multiplier)] + [1.0])
    axes.set(xscale="log", yscale="log", ylim=(None, 100 * top), xlabel="total tokens T",
             ylabel="tokens delta=0 needs / T", title="compute multiplier of delta* over no domain data")
    _budget_axis(axes, largest_fitted, budgets)
    axes.legend(fontsize=8)
    return save_figure(figure, stem)


def plot_residuals(fit: FitResult, table: pd.DataFrame, stem: Path) -> list[Path]:
    """Residuals (in the fit's residual space) vs the law's budget, colored by group."""
    plt = _pyplot()
    law = fit.form
    target = fit.settings.get("loss_column", law.target)
    space = fit.settings.get("residuals", "log")
    checked = check_frame(table, law, target, residuals=space, free_params=0, source="data")
    inputs = law_inputs(checked, law)
    observed, predicted = checked[target].to_numpy(), predict(fit, inputs)["predicted"]
    residual = np.log(observed) - np.log(predicted) if space == "log" else observed - predicted
    group = _group_column(fit)
    figure, axes = plt.subplots(figsize=(6, 4))
    points = axes.scatter(law.budget(inputs), residual, c=checked[group], s=14, cmap="viridis")
    figure.colorbar(points, ax=axes, label=group)
    axes.axhline(0.0, color="grey", linewidth=0.8)
    axes.set(xscale="log", xlabel=law.budget_column, ylabel=f"{space} residual (observed - fitted)",
             title=f"{fit.law} residuals")
    return save_figure(figure, stem)


def plot_all(fit: FitResult, table: pd.DataFrame, out_dir: Path, budgets=None, **search) -> list[Path]:
    """Every figure that applies to the fit's law; returns the written paths."""
    out_dir = Path(out_dir)
    paths = plot_loss_curves(fit, table, out_dir / "loss_curves") + plot_residuals(fit, table, out_dir / "residuals")
    if "fraction" in fit.form.inputs:
        if budgets is None:
            low, high = fit.data_ranges["tokens"]
            budgets = np.geomspace(low, high, 7)
        paths += plot_optimal_fraction(fit, list(budgets), out_dir / "optimal_fraction", **search)
    return paths
