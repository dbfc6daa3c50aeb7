"""Which evaluations stand for budgets (`scaling_laws.fitting.points`), the measured compute multiplier
(`scaling_laws.decision.measured`), the run-noise model (`scaling_laws.fitting.noise`) and the sweep fit that uses them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling_laws import optimal_fraction, synthetic
from scaling_laws.decision import report
from scaling_laws.decision.measured import measured_multipliers
from scaling_laws.fitting.noise import estimate_noise, simulate
from scaling_laws.fitting.points import point_kinds, select_points
from spt.errors import InputError
from sweeps import tables
from sweeps.tables import fit_sweep


def curves(schedule: str, budgets=(5e5,), evaluations: int = 10, phases: bool = True) -> pd.DataFrame:
    _, table = synthetic.spt_sweep(fractions=(0.0, 0.2, 0.4), total_tokens=list(budgets), evaluations=evaluations,
                                   schedule=schedule, warmup=1, params=synthetic.SPT_PILOT)
    return table if phases else table.assign(phase="")


def test_constant_schedule_keeps_the_stable_phase_once_warmup_is_a_small_share():
    # Synthetic runs warm up over their first evaluation (1/10 of the run), so the 2nd evaluation spent half of
    # its tokens warming up: it is not a budget a run would be trained to.
    selection = select_points(curves("constant"), "c.csv")
    assert selection.kind == "stable phase" and len(selection.table) == 24
    assert sorted(selection.table["tokens"].unique())[0] == pytest.approx(3 * 5e4)
    assert selection.notes == ["c.csv: 3 warmup evaluations left out",
                               "c.csv: 3 evaluations right after warmup left out (the warmup took more than a third "
                               "of their tokens)"]


def test_the_warmup_length_comes_from_the_learning_rate():
    # A linear warmup to 3e-3 over 22k tokens, evaluated every 20k: the first evaluation is at 92% of the peak
    # rate, so the warmup is 20480 / 0.923 = 22.2k tokens and evaluations below 3x that are left out.
    tokens = np.arange(1, 21) * 20480.0
    rates = np.where(tokens < 22187, 3e-3 * tokens / 22187, 3e-3)
    table = pd.DataFrame({"run_id": "a", "fraction": 0.1, "tokens": tokens, "domain_loss": 7.0, "lr": rates,
                          "phase": np.where(tokens < 22187, "warmup", "stable")})
    table = pd.concat([table, table.assign(run_id="b", fraction=0.2), table.assign(run_id="c", fraction=0.3)])
    kept = select_points(table).table
    assert kept["tokens"].min() == 4 * 20480  # 3 x 22.2k = 66.6k: 41k and 61k are left out
    without_rates = select_points(table.drop(columns=["lr"])).table  # lower bound: the last warmup evaluation
    assert without_rates["tokens"].min() == 3 * 20480


def test_wsd_fits_the_stable_phase_and_leaves_the_decay_out():
    table = curves("wsd")
    assert list(point_kinds(table)[:10]) == ["warmup"] + ["stable"] * 7 + ["mid-decay", "end"]
    selection = select_points(table, "c.csv")
    assert selection.kind == "stable phase" and set(selection.table["phase"]) == {"stable"}
    assert selection.notes[2] == ("c.csv: 6 evaluations in a learning-rate decay left out (their rate had decayed, "
                                  "unlike the stable-phase evaluations fitted)")


def test_ends_of_decays_are_fitted_when_every_fraction_has_three_budgets():
    selection = select_points(curves("cosine", budgets=(1e5, 2e5, 4e5)), "c.csv")
    assert selection.kind == "ends of decays" and len(selection.table) == 9
    assert sorted(selection.table["tokens"].unique()) == [1e5, 2e5, 4e5]


def test_cosine_with_one_budget_is_fitted_with_a_loud_caveat():
    selection = select_points(curves("cosine"), "c.csv")
    assert selection.kind == "after warmup (not valid budgets)" and len(selection.table) == 27
    assert "they are NOT valid budgets" in selection.caveats[0]


def test_a_sweep_without_phases_keeps_every_evaluation_and_says_so():
    selection = select_points(curves("cosine", phases=False), "c.csv")
    assert selection.kind == "all evaluations (no phases recorded)" and len(selection.table) == 30
    assert selection.caveats[0].startswith("30 evaluations without a recorded schedule phase")
    table = curves("constant")
    assert select_points(table.drop(columns=["phase"])).kind == "all rows (no phase column)"


def test_a_bad_phase_is_named_by_row():
    table = curves("constant").assign(phase=lambda f: f["phase"].where(f.index != 4, "annealing"))
    with pytest.raises(InputError, match=r"^c.csv: column 'phase', row 5: 'annealing' \(expected one of warmup, "
                                         r"stable, decay, cooldown, or empty\)$"):
        select_points(table, "c.csv")


def run(fraction, tokens, losses):
    return {"run_id": f"d{fraction}", "fraction": fraction, "tokens": list(tokens), "loss": list(losses)}


def test_measured_multiplier_interpolates_within_the_measured_curves():
    tokens = [1e5, 2e5, 4e5, 8e5]
    runs = [run(0.0, tokens, [5.0, 4.5, 4.2, 4.0]),       # best measured loss 4.0 at 8e5
            run(0.1, tokens, [4.8, 4.3, 3.9, 3.7]),       # crosses 4.0 between 2e5 and 4e5
            run(0.3, tokens, [3.9, 3.6, 3.5, 3.4]),       # already below at its first evaluation
            run(0.6, tokens, [4.6, 4.3, 4.1, 4.05])]      # never gets there
    by_fraction = {m.fraction: m for m in measured_multipliers(runs)}
    crossing = np.exp(np.log(2e5) + (4.3 - 4.0) / (4.3 - 3.9) * (np.log(4e5) - np.log(2e5)))
    assert by_fraction[0.1].reached == "yes" and by_fraction[0.1].tokens == pytest.approx(crossing)
    assert by_fraction[0.1].value == pytest.approx(8e5 / crossing)
    assert (by_fraction[0.3].reached, by_fraction[0.3].value) == ("before the first evaluation", 8.0)
    assert by_fraction[0.6].value is None and by_fraction[0.6].reached == "no"
    assert by_fraction[0.6].describe().startswith("not reached within the measured data")
    assert measured_multipliers([r for r in runs if r["fraction"] > 0]) == []  # no delta = 0 run, no multiplier


def test_noise_model_is_recovered_and_repeats_measure_the_offset():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(24), 20)
    order = np.tile(np.arange(20.0), 24)
    cells = groups // 2  # runs come in pairs that repeat a cell (two seeds)
    from scaling_laws.fitting.noise import RunNoise

    truth = RunNoise("log", along_sd=0.004, correlation=0.6, offset_sd=0.006, offset_source="true")
    residuals = simulate(truth, groups, order, 1, rng)[0]
    measured = estimate_noise(residuals, groups, order, cells, "log", free_params=0)
    assert measured.offset_source == "repeats" and measured.repeat_degrees == 12
    assert measured.along_sd == pytest.approx(0.004, rel=0.15)
    assert measured.correlation == pytest.approx(0.6, abs=0.1)
    assert measured.offset_sd == pytest.approx(0.006, rel=0.35)
    assumed = estimate_noise(residuals, groups, order, np.arange(len(groups)) // 20, "log", free_params=0)
    assert assumed.offset_source == "assumed" and assumed.offset_sd == pytest.approx(1.25 * assumed.along_sd)


def test_the_part_all_runs_share_at_a_budget_is_drawn_and_recovered():
    from scaling_laws.fitting.noise import RunNoise

    groups = np.repeat(np.arange(8), 16)
    order = np.tile(np.arange(1.0, 17.0), 8)
    shared_only = RunNoise("log", along_sd=0.0, correlation=0.0, offset_sd=0.0, offset_source="assumed",
                           shared_sd=0.01, shared_correlation=0.5)
    draws = simulate(shared_only, groups, order, 400, np.random.default_rng(1))
    by_budget = draws.reshape(400, 8, 16)
    assert np.ptp(by_budget, axis=1).max() == 0.0  # every run has the same draw at a budget
    assert np.std(by_budget[:, 0, :]) == pytest.approx(0.01, rel=0.1)
    truth = RunNoise("log", along_sd=0.003, correlation=0.5, offset_sd=0.0, offset_source="true",
                     shared_sd=0.006, shared_correlation=0.3)
    residuals = simulate(truth, groups, order, 1, np.random.default_rng(2))[0]
    measured = estimate_noise(residuals, groups, order, np.arange(len(groups)) // 16, "log", free_params=0)
    assert measured.shared_sd == pytest.approx(0.006, rel=0.4)
    assert measured.along_sd == pytest.approx(0.003, rel=0.25)


def test_a_runs_smooth_misfit_is_read_as_its_noise_unless_the_diagnostic_takes_it_out(monkeypatch):
    from scaling_laws.fitting import noise

    groups = np.repeat(np.arange(6), 16)
    order = np.tile(np.geomspace(2e4, 5e5, 16), 6)
    rough = np.random.default_rng(3).normal(0.0, 0.003, len(groups))
    x = np.log(order) - np.log(order).mean()
    misfit = 0.02 * (groups - 2.5) / 2.5 * x  # each run's curve bends its own way: the law's misfit along it
    assert np.allclose(noise.rough_part(misfit, groups, order, 2), 0.0, atol=1e-12)
    as_is = estimate_noise(rough + misfit, groups, order, np.arange(len(groups)) // 16, "log", free_params=0)
    monkeypatch.setattr(noise, "SMOOTH_REMOVED", 2)
    taken_out = estimate_noise(rough + misfit, groups, order, np.arange(len(groups)) // 16, "log", free_params=0)
    assert as_is.along_sd > 3 * taken_out.along_sd and as_is.correlation > 0.8
    assert taken_out.along_sd == pytest.approx(0.003, rel=0.3)


@pytest.fixture(scope="module")
def pilot_fit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pilot") / "sweep"
    tables.write_sweep(folder, *synthetic.pilot_sweep(seed=2, schedule="wsd"))
    return fit_sweep(folder, n_starts=32, bootstrap_replicates=50, seed=0), tables.load_sweep(folder)


def test_a_sweep_fit_records_what_decisions_need(pilot_fit):
    result, sweep = pilot_fit
    assert result.settings["fitted"] == "train+gap" and result.settings["points"] == "stable phase"
    assert result.settings["bootstrap_method"] == "runs" and result.samples.shape == (50, 12)
    assert result.decision["fractions"] == list(synthetic.PILOT_FRACTIONS)
    assert len(result.decision["finetune"]) == 6 and len(result.decision["measured"]) == 5
    assert {"shared", "own_samples", "held_out"} <= set(result.noise)
    assert any("run-to-run variation cannot be measured" in line for line in result.caveats)
    measured = report.measured_table(result)
    assert list(measured["fraction"]) == [0.1, 0.2, 0.3, 0.4, 0.6]


def test_the_sweep_decision_is_post_finetune_with_an_interval(pilot_fit):
    result, sweep = pilot_fit
    after, before = optimal_fraction(result, 5e5), optimal_fraction(result, 5e5, basis="pre-finetune")
    assert after.basis == "post-finetune" and before.basis == "pre-finetune"
    # The synthetic fine-tune gain is largest without domain data: after fine-tuning, less delta is best.
    assert after.fraction < before.fraction
    for choice in (after, before):
        assert choice.fraction_interval is not None
    assert after.measured_multiplier["fraction"] in synthetic.PILOT_FRACTIONS
