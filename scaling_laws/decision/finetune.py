"""Post-finetune decisions: what fine-tuning adds on top of the pretraining law, per domain fraction.

The paper picks delta* by the loss *after* fine-tuning: the pretraining law plus a fitted fine-tune gain. A
sweep that fine-tuned its cells has ``finetune_domain_loss`` in ``results.csv`` (the final model's), and one
row per fine-tune in ``finetunes.csv``: with ``finetune_at``, each cell's snapshots along its constant-rate run
are fine-tuned too, so one sweep gives every fraction several budgets. For each fine-tuned run the gain
is measured against the law: ``gain = L_law(T_run, delta_run) - finetune_loss``, so that the law plus the gain
reproduces the fine-tuned loss at the run's budget whatever part of the run's final loss the law describes (a
law of stable-phase losses leaves the final decay's drop in the gain). Per fraction, the gain is a
:class:`~scaling_laws.laws.spt.FinetuneGain` law ``a T**b + c`` when that fraction was fine-tuned at 4 or more
budgets, else a constant (the mean over its runs; it is then assumed not to change with T). Between swept
fractions the gain is interpolated by a monotone cubic (PCHIP): smooth, so that delta* does not stick to the
kinks a piecewise-linear gain would put at the swept fractions, and without overshoot; nothing is extrapolated
beyond them.

Uncertainty: bootstrap replicate ``k`` of the post-finetune loss is the law's replicate ``k`` minus a gain
recomputed on runs resampled within each (fraction, budget) cell when the cell has several (seeds); a cell with
one run keeps its gain, and the caveats say that the fine-tuning noise is then not in the band.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.interpolate import PchipInterpolator

from scaling_laws.fitting.fit import fit

#: Budgets per fraction from which the gain is fitted as a function of T (the FinetuneGain law has 3 parameters).
MIN_GAIN_BUDGETS = 4


def finetune_record(results: pd.DataFrame, finetunes: pd.DataFrame | None = None) -> list[dict]:
    """The fine-tuned runs of a sweep: ``run_id``, ``fraction``, ``tokens``, ``finetune_loss``.

    Args:
        results: The sweep's ``results`` (``status``; without ``finetunes``, the fine-tuned losses too).
        finetunes: The sweep's ``finetunes`` (one row per fine-tune and budget), when it has one: its rows of
            runs whose status is ok are the record.
    """
    ok = results[results["status"].astype(str).str.strip() == "ok"]
    if finetunes is not None:
        ok = finetunes[finetunes["run_id"].astype(str).str.strip().isin(set(ok["run_id"].astype(str).str.strip()))]
    losses = pd.to_numeric(ok["finetune_domain_loss"], errors="coerce")
    keep = ok[np.isfinite(losses.to_numpy(float)) & (losses.to_numpy(float) > 0)]
    return [{"run_id": str(row["run_id"]).strip(), "fraction": float(row["domain_fraction"]),
             "tokens": float(row["tokens"]), "finetune_loss": float(row["finetune_domain_loss"])}
            for _, row in keep.iterrows()]


class GainModel:
    """The fine-tune gain of a fit: ``gain(tokens, fractions)`` per bootstrap replicate or for the fit itself.

    Args:
        law: The pretraining law form.
        params: The fit's public parameters (the gains are measured against them).
        runs: Fine-tuned runs as written by :func:`finetune_record`.
        replicates: Bootstrap replicates to prepare (0: none).
        seed: Seed of the resampling of runs within a cell.
    """

    def __init__(self, law, params: dict, runs: list[dict], replicates: int = 0, seed: int = 0):
        self.fractions = np.array(sorted({r["fraction"] for r in runs}))
        tokens = np.array([r["tokens"] for r in runs])
        fractions = np.array([r["fraction"] for r in runs])
        predicted = law.predict(params, {"tokens": tokens, "fraction": fractions})
        self.runs = pd.DataFrame({"fraction": fractions, "tokens": tokens,
                                  "gain": predicted - np.array([r["finetune_loss"] for r in runs])})
        self.fit_notes: dict[float, dict] = {}
        self.fitted = {f: self._per_fraction(self.runs[self.runs["fraction"] == f]) for f in self.fractions}
        cell_sizes = self.runs.groupby(["fraction", "tokens"]).size()
        # Replicates differ from the fit only where a cell has several runs to resample.
        rng = np.random.default_rng(seed)
        self.replicas = [self._resampled(rng) for _ in range(replicates)] if (cell_sizes > 1).any() else []

    def _per_fraction(self, rows: pd.DataFrame):
        """``(a, b, c)`` of ``a T**b + c``: a FinetuneGain fit with enough budgets, else ``(0, 0, mean)``. How a
        fit ended (parameters on a bound, convergence) goes to :attr:`fit_notes`."""
        if rows["tokens"].nunique() >= MIN_GAIN_BUDGETS:
            result = fit(rows, "finetune-gain", staged=False)
            self.fit_notes[float(rows["fraction"].iloc[0])] = {
                "on_bounds": dict(result.settings.get("on_bounds") or {}),
                "converged": bool(result.settings.get("converged", True))}
            return result.params["a"], result.params["b"], result.params["c"]
        return 0.0, 0.0, float(rows["gain"].mean())

    def _resampled(self, rng: np.random.Generator) -> dict:
        """Per-fraction gains on runs resampled within each (fraction, budget) cell; fitted laws are kept."""
        out = {}
        for fraction, coefficients in self.fitted.items():
            rows = self.runs[self.runs["fraction"] == fraction]
            if rows["tokens"].nunique() >= MIN_GAIN_BUDGETS:
                out[fraction] = coefficients
                continue
            picks = [rng.choice(cell["gain"].to_numpy()) for _, cell in rows.groupby("tokens")
                     for _ in range(len(cell))]
            out[fraction] = (0.0, 0.0, float(np.mean(picks)))
        return out

    def covers(self, low: float, high: float, swept: list[float]) -> tuple[bool, str]:
        """Whether every swept fraction in ``[low, high]`` has fine-tuned runs (else why not)."""
        missing = [f for f in swept if low - 1e-12 <= f <= high + 1e-12 and f not in set(self.fractions.tolist())]
        if missing:
            return False, f"no fine-tuned runs at delta={', '.join(f'{f:g}' for f in missing)}"
        return True, ""

    def gain(self, tokens: float, fractions: np.ndarray, replicate: int | None = None) -> np.ndarray:
        """The gain at ``tokens`` for each fraction (interpolated linearly between swept fractions)."""
        table = self.fitted if replicate is None or not self.replicas else self.replicas[replicate]
        at_swept = np.array([a * tokens**b + c for a, b, c in (table[f] for f in self.fractions)])
        fractions = np.clip(np.asarray(fractions, float), self.fractions[0], self.fractions[-1])
        if len(self.fractions) == 1:
            return np.full(fractions.shape, at_swept[0])
        return PchipInterpolator(self.fractions, at_swept)(fractions)

    def table(self) -> list[dict]:
        """Per fraction: the gain law (``fitted``, ``a``, ``b``, ``c``; ``a = b = 0`` for a constant), its budgets
        and the measured gains (``tokens``, ``gain``: the law's loss minus the fine-tuned loss, nats), for the
        fit JSON and the reports."""
        out = []
        for fraction, (a, b, c) in self.fitted.items():
            rows = self.runs[self.runs["fraction"] == fraction].sort_values("tokens")
            out.append({"fraction": float(fraction), "fitted": bool(rows["tokens"].nunique() >= MIN_GAIN_BUDGETS),
                        "a": float(a), "b": float(b), "c": float(c), "budgets": int(rows["tokens"].nunique()),
                        **self.fit_notes.get(float(fraction), {}),
                        "measured": [{"tokens": float(t), "gain": float(g)} for t, g in zip(rows["tokens"],
                                                                                              rows["gain"])]})
        return out


def format_gains(gains: list[dict]) -> list[str]:
    """The fine-tune gain per fraction in plain lines: its law ``a T^b + c`` (or a constant, and why) and the
    measured gains it was fitted to (empty without fine-tuned runs)."""
    if not gains:
        return []
    lines = ["fine-tune gain per delta, dl(T) = a*T^b + c (the law's loss minus the fine-tuned loss, nats):"]
    for row in gains:
        law = (f"a={row['a']:.4g}, b={row['b']:.4g}, c={row['c']:.4g} (fitted on {row['budgets']} budgets)"
               if row["fitted"] else f"constant c={row['c']:.4g}: fewer than {MIN_GAIN_BUDGETS} budgets "
                                     f"({row['budgets']})")
        trouble = [f"{name} on its {side} bound" for name, side in (row.get("on_bounds") or {}).items()]
        if row.get("converged") is False:
            trouble.append("the fit did not converge")
        if trouble:
            law += f" ({', '.join(trouble)}: these budgets do not pin the law; read it as a rough trend)"
        measured = ", ".join(f"{m['tokens']:.4g}: {m['gain']:.4g}" for m in row["measured"])
        lines.append(f"  delta={row['fraction']:g}: {law}; measured (T: dl) {measured}")
    return lines
