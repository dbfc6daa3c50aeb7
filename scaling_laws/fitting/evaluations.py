"""A sweep's SPT fit, end to end: the valid evaluations, the law (train and gap, or held-out), its bootstrap,
and what decisions need besides the law (measured curves, fine-tuned runs), with the caveats that apply.

``spt fit --law spt --data SWEEP_FOLDER`` and the notebook both call :func:`fit_sweep`, so they fit the same
rows the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_laws.decision.finetune import GainModel, finetune_record
from scaling_laws.decision.measured import curves_record, measured_multipliers
from scaling_laws.fitting.noise import ASSUMED_OFFSET, RunNoise
from scaling_laws.fitting.points import select_points
from scaling_laws.fitting.regime import regime_caveats
from scaling_laws.fitting.result import FitResult
from scaling_laws.fitting.spt import fit_spt
from scaling_laws.laws.epochs import unique_tokens_of
from spt.errors import InputError

#: Bootstrap replicates of a sweep fit unless told otherwise.
DEFAULT_REPLICATES = 200
#: Swept fractions below which the caveats call the law's shape in delta weakly determined.
WELL_DETERMINED_FRACTIONS = 5


def noise_caveats(result: FitResult) -> list[str]:
    """What the bootstrap had to assume about noise, in plain words."""
    models = result.noise or {}
    assumed = [name for name, model in models.items() if model.get("offset_source") == "assumed"
               and name in ("shared", "held_out", "fitted") and model.get("offset_sd", 0) > 0]
    if not assumed:
        return []
    model = models[assumed[0]]
    return [f"each fraction has one run, so run-to-run variation cannot be measured: the band assumes each run is "
            f"offset by {100 * model['offset_sd']:.2g}% ({ASSUMED_OFFSET:g}x the noise between evaluations of a "
            f"run, {100 * model['offset_sd'] / ASSUMED_OFFSET:.2g}%); sweep 2 or more seeds per fraction to "
            f"measure it"]


def design_caveats(table: pd.DataFrame, results: pd.DataFrame, free_params: int) -> list[str]:
    """What a sweep's design leaves the law unsure of: too few fractions, or one budget per fraction.

    Args:
        table: The fitted evaluations (``fraction``).
        results: The sweep's runs (``status``, ``domain_fraction``, ``tokens``).
        free_params: The law's parameters.
    """
    lines = []
    fractions = pd.to_numeric(table["fraction"]).nunique()
    if fractions < WELL_DETERMINED_FRACTIONS:
        lines.append(f"only {fractions} domain fractions were swept; the law has {free_params} parameters, so its "
                     f"shape between and beyond them is weakly determined (sweep more fractions)")
    ok = results[results["status"].astype(str).str.strip() == "ok"]
    budgets = pd.to_numeric(ok["tokens"]).groupby(pd.to_numeric(ok["domain_fraction"])).nunique()
    if (budgets <= 1).all():
        lines.append("each fraction was trained to a single budget, so the token dependence comes from "
                     "evaluations during one run")
    return lines


def fit_evaluations(table: pd.DataFrame, *, results: pd.DataFrame | None = None,
                    finetunes: pd.DataFrame | None = None, source: str = "curves",
                    bootstrap_replicates: int = DEFAULT_REPLICATES, seed: int = 0, level: float = 0.95,
                    **options) -> FitResult:
    """Fits the SPT law to evaluations (a sweep's curves with ``fraction``), keeping only valid budgets.

    Args:
        table: Evaluations: ``run_id``, ``fraction``, ``tokens``, ``domain_loss``, optionally
            ``domain_train_loss`` and ``phase``.
        results: The sweep's ``results`` (for fine-tuned runs), if any.
        finetunes: The sweep's ``finetunes`` (a row per fine-tune and budget), if any: the fine-tuned runs then.
        source: Name of the table in messages.
        bootstrap_replicates: Refits for the intervals.
        seed: Seed of the starts and the bootstrap.
        level: Coverage of the intervals.
        **options: Passed to :func:`scaling_laws.fitting.spt.fit_spt` (``fitted``, ``objective``, ``n_starts``,
            ``bootstrap_method``, ``loss_column``, ...).

    Returns:
        The fit, with ``settings["points"]`` (which evaluations), ``settings["notes"]``, ``caveats`` and
        ``decision`` (measured curves and multipliers, fine-tuned runs and their gain law per fraction, swept
        fractions).
    """
    selection = select_points(table, source)
    loss_column = options.get("loss_column", "domain_loss")
    result = fit_spt(selection.table, bootstrap_replicates=bootstrap_replicates, seed=seed, level=level,
                     source=source, **options)
    result.settings.update(points=selection.kind, notes=selection.notes)
    try:  # the domain set's size, when the evaluations record epochs: the epoch warnings need it
        result.settings["unique_domain_tokens"] = unique_tokens_of(selection.table, source)
    except InputError:
        pass
    result.caveats = (selection.caveats + result.caveats + noise_caveats(result)
                      + regime_caveats(selection.table, loss_column))
    if results is not None:
        result.caveats += design_caveats(selection.table, results, len(result.params))
    curves = curves_record(selection.table, loss_column)
    fractions = sorted({run["fraction"] for run in curves})
    noise = RunNoise(**result.noise["held_out"]) if result.noise and "held_out" in result.noise else None
    several_sizes = "params" in result.form.inputs
    measured = [] if several_sizes else measured_multipliers(curves, noise, bootstrap_replicates, level, seed)
    if several_sizes:
        result.caveats.append("several model sizes: the measured compute multiplier compares runs of one size and "
                              "is not computed here")
    finetuned = []
    if results is not None and "params" not in result.form.inputs:
        finetuned = [run for run in finetune_record(results, finetunes) if run["fraction"] in set(fractions)]
    gains = GainModel(result.form, result.params, finetuned).table() if finetuned else []
    result.decision = {"fractions": fractions, "curves": curves, "measured": [m.to_dict() for m in measured],
                       "finetune": finetuned, "finetune_gain": gains}
    if 0.0 not in fractions and not several_sizes:
        result.caveats.append("no run had delta = 0, so there is no measured compute multiplier (it compares "
                              "with the delta = 0 runs' best loss)")
    return result


def swept_budgets(result: FitResult) -> np.ndarray:
    """The largest evaluated tokens of each fitted run (its budget)."""
    curves = (result.decision or {}).get("curves") or []
    return np.array([max(run["tokens"]) for run in curves]) if curves else np.array([])
