"""Figures of a fit (matplotlib, Agg backend), each saved as PNG and SVG: loss curves, delta* vs budget, residuals."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_laws.decision.choice import EXTRAPOLATION_LIMIT
from scaling_laws.decision.cost import SERVE_FLOPS, CostDecision
from scaling_laws.decision.optimal import optimal_fraction
from scaling_laws.fitting.data import check_frame, law_inputs
from scaling_laws.fitting.fit import predict
from scaling_laws.fitting.result import FitResult
from spt import storage


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, stem: str | Path) -> list[str | Path]:
    """Saves ``stem.png`` and ``stem.svg`` (local paths or ``s3://`` URLs, each written atomically); returns both
    (as Paths for local stems)."""
    paths = []
    for suffix in ("png", "svg"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix, dpi=120, bbox_inches="tight")
        location = f"{stem}.{suffix}"
        storage.write_bytes(location, buffer.getvalue())
        paths.append(location if storage.is_remote(location) else Path(location))
    _pyplot().close(figure)
    return paths


def _under(folder: str | Path, name: str) -> str | Path:
    """``folder/name`` for a local folder (a Path) or an ``s3://`` one (a URL)."""
    return storage.join(str(folder), name) if storage.is_remote(str(folder)) else Path(folder) / name


def _budget_axis(axes, largest_fitted: float | None, budgets) -> None:
    """Log budget axis without crowded minor labels; a dotted line where the fitted budgets end, if passed."""
    from matplotlib.ticker import NullFormatter

    axes.xaxis.set_minor_formatter(NullFormatter())
    if largest_fitted is not None and max(budgets) > largest_fitted:
        axes.axvline(largest_fitted, color="grey", linestyle=":", linewidth=1.0, label="largest fitted budget")


def residual_space(fit: FitResult) -> str:
    """``log`` or ``linear``: the space the fit's (main) residuals were taken in."""
    return "linear" if str(fit.settings.get("residuals", fit.form.residuals)).startswith("linear") else "log"


def _group_column(fit: FitResult) -> str:
    """Curves are drawn per domain fraction for SPT laws and per model size otherwise."""
    inputs = fit.form.inputs
    return "fraction" if "fraction" in inputs else ("params" if "params" in inputs else "tokens")


def plot_loss_curves(fit: FitResult, table: pd.DataFrame, stem: str | Path) -> list[str | Path]:
    """Observed loss vs tokens per group (fraction or model size) with the fitted curves and bootstrap bands.

    Curves run over a token grid with the group's value and, for laws with more inputs (unique tokens for
    ``muennighoff``, model size for ``spt-n``), one curve per combination of those inputs found in the data.
    """
    plt = _pyplot()
    law = fit.form
    target = fit.settings.get("loss_column", law.target)
    checked = check_frame(table, law, target, residuals=residual_space(fit), free_params=0, source="data")
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


def plot_optimal_fraction(fit: FitResult, budgets, stem: str | Path, choices=None, **search) -> list[str | Path]:
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
    largest = fit.data_ranges.get("tokens", [None, None])[1]
    if largest is not None and max(budgets) > EXTRAPOLATION_LIMIT * largest:
        axes.axvspan(EXTRAPOLATION_LIMIT * largest, max(budgets), color="red", alpha=0.08,
                     label=f"extrapolation (> {EXTRAPOLATION_LIMIT:g}x the largest trained budget)")
    basis = choices[0].basis
    axes.set(xscale="log", xlabel="total tokens T", ylabel=f"optimal domain fraction delta* ({basis})",
             title="optimal domain fraction vs budget")
    _budget_axis(axes, largest, budgets)
    axes.legend(fontsize=8)
    return save_figure(figure, stem)


def plot_measured_multiplier(fit: FitResult, stem: str | Path) -> list[str | Path]:
    """The measured compute multiplier of every swept fraction, with its interval; fractions that never reached
    the delta = 0 runs' best loss within the measured data are marked, not given a number."""
    plt = _pyplot()
    measured = (fit.decision or {}).get("measured") or []
    figure, axes = plt.subplots(figsize=(6, 4))
    reached = [m for m in measured if m["value"] is not None]
    for m in reached:
        # the interval as the bootstrap gives it, which need not contain the value (an error bar must)
        if m.get("interval"):
            axes.plot([m["fraction"]] * 2, m["interval"], color="C1", marker="_", markersize=8)
        axes.plot([m["fraction"]], [m["value"]], "o", color="C1", mfc="white" if m["reached"] != "yes" else "C1")
    for m in measured:
        if m["value"] is None:
            axes.annotate("not reached", (m["fraction"], 1.0), rotation=90, ha="center", va="bottom", fontsize=8,
                          color="grey")
    axes.axhline(1.0, color="grey", linewidth=0.8)
    title = ("measured compute multiplier vs delta = 0" if measured else
             "no delta = 0 run: no measured compute multiplier")
    axes.set(xlabel="domain fraction delta (swept)", ylabel="tokens delta=0 needed / tokens needed",
             title=title)
    if measured:
        axes.set_xlim(0.0, max(m["fraction"] for m in measured) * 1.1)
    return save_figure(figure, stem)


def plot_curves_by_epochs(fit: FitResult, table: pd.DataFrame, stem: str | Path) -> list[str | Path]:
    """Measured held-out domain loss against epochs of the domain set, per fraction, with the fitted law.

    Epochs come from the table's ``domain_epochs``; the domain set size ``|D| = T delta / epochs`` they imply
    maps the law's token axis onto epochs.
    """
    plt = _pyplot()
    target = fit.settings.get("loss_column", "domain_loss")
    rows = table.assign(**{c: pd.to_numeric(table[c], errors="coerce") for c in ("tokens", "fraction", target,
                                                                                 "domain_epochs")})
    rows = rows[(rows["fraction"] > 0) & (rows["domain_epochs"] > 0)]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    if rows.empty:
        axes.set(title="no domain epochs recorded")
        return save_figure(figure, stem)
    domain_tokens = float(np.median(rows["tokens"] * rows["fraction"] / rows["domain_epochs"]))
    colors = plt.cm.viridis(np.linspace(0, 0.9, rows["fraction"].nunique()))
    for color, (value, group) in zip(colors, rows.groupby("fraction")):
        axes.scatter(group["domain_epochs"], group[target], s=14, color=color, label=f"delta={value:g}")
        tokens = np.geomspace(group["tokens"].min(), group["tokens"].max(), 60)
        curve = predict(fit, {"tokens": tokens, "fraction": np.full_like(tokens, value)})
        epochs = tokens * value / domain_tokens
        axes.plot(epochs, curve["predicted"], color=color, linewidth=1.0)
        if "lower" in curve:
            axes.fill_between(epochs, curve["lower"], curve["upper"], color=color, alpha=0.2, linewidth=0)
    axes.set(xscale="log", xlabel=f"epochs of the domain set (|D| = {domain_tokens:.3g} tokens)", ylabel=target,
             title="held-out domain loss vs domain epochs")
    axes.legend(fontsize=7, ncol=2)
    return save_figure(figure, stem)


def plot_residuals(fit: FitResult, table: pd.DataFrame, stem: str | Path) -> list[str | Path]:
    """Residuals (in the fit's residual space) vs the law's budget, colored by group."""
    plt = _pyplot()
    law = fit.form
    target = fit.settings.get("loss_column", law.target)
    space = residual_space(fit)
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


#: Every figure :func:`plot_all` may write, as file stems (each is written as PNG and SVG).
FIGURES = ("loss_curves", "residuals", "optimal_fraction", "loss_by_epochs", "compute_multiplier")


def plot_all(fit: FitResult, table: pd.DataFrame, out_dir: str | Path, budgets=None, **search) -> list[str | Path]:
    """Every figure that applies to the fit's law, in a local or ``s3://`` folder; returns the written paths."""
    paths = plot_loss_curves(fit, table, _under(out_dir, "loss_curves")) + \
        plot_residuals(fit, table, _under(out_dir, "residuals"))
    if "fraction" in fit.form.inputs:
        if budgets is None:
            low, high = fit.data_ranges["tokens"]
            budgets = np.geomspace(low, high, 7)
        paths += plot_optimal_fraction(fit, list(budgets), _under(out_dir, "optimal_fraction"), **search)
        if "domain_epochs" in table.columns:
            paths += plot_curves_by_epochs(fit, table, _under(out_dir, "loss_by_epochs"))
        if fit.decision:
            paths += plot_measured_multiplier(fit, _under(out_dir, "compute_multiplier"))
    return paths


def plot_cost(decision: CostDecision, image_format: str = "png") -> bytes:
    """Total FLOPs (training plus serving) against served tokens, log axes, one line per option that reaches its
    target; the break-even of the best SPT and finetune options and the asked served volume marked. Returns the
    image (``png`` or ``svg``) for the caller to write."""
    plt = _pyplot()
    served = decision.question.served_tokens
    marks = [v for v in (served, decision.break_even) if v is not None and np.isfinite(v) and v > 0]
    span = np.geomspace(min(marks, default=1e9) / 1e3, max(marks, default=1e9) * 1e3, 200)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    sizes = sorted({o.params for o in decision.options})
    for option in (o for o in decision.options if o.reached()):
        totals = option.training_flops() + SERVE_FLOPS * option.params * span
        axes.plot(span, totals, color=f"C{sizes.index(option.params)}",
                  linestyle="-" if option.kind == "spt" else "--", label=option.label)
    if decision.break_even is not None and np.isfinite(decision.break_even) and decision.break_even > 0:
        axes.axvline(decision.break_even, color="black", linewidth=1.0,
                     label=f"break-even {decision.break_even:.3g} served tokens")
        if decision.break_even_interval is not None:
            low, high = (min(max(v, span[0]), span[-1]) for v in decision.break_even_interval)
            axes.axvspan(low, high, color="grey", alpha=0.15, label=f"{100 * decision.level:g}% interval")
    axes.axvline(served, color="grey", linestyle=":", linewidth=1.0, label=f"asked: {served:.3g} served tokens")
    axes.set(xscale="log", yscale="log", xlabel="served tokens S", ylabel="total FLOPs (6 N T + 2 N S)",
             title="training plus serving cost")
    axes.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
