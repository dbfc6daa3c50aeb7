"""The pilots the bootstrap does not assume (issue 23, item 2): each generator breaks the assumption it names, and a
small coverage run of :func:`scaling_laws.stress.coverage` reports what the benchmark prints. The 60-sweep study
itself is ``benchmarks/interval_coverage.py`` (minutes); this is its deterministic small version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling_laws import stress
from scaling_laws.laws.registry import get_law
from scaling_laws.synthetic import PILOT_FRACTIONS, SPT_PILOT


def test_every_generator_draws_a_pilot_of_the_studys_shape_and_the_same_one_for_a_seed():
    for generator in stress.GENERATORS:
        table = stress.stress_sweep(generator, 3)
        assert sorted(table["fraction"].unique()) == list(PILOT_FRACTIONS)
        assert table.groupby("run_id").size().eq(stress.EVALUATIONS).all()
        assert table["tokens"].max() == pytest.approx(stress.BUDGET)
        assert (table["domain_loss"] > 0).all() and (table["domain_train_loss"] > 0).all()
        pd.testing.assert_frame_equal(table, stress.stress_sweep(generator, 3))
        assert not table.equals(stress.stress_sweep(generator, 4))
    with pytest.raises(ValueError, match="generator 'gauss'"):
        stress.stress_sweep("gauss", 0)


def test_the_epoch_driven_truth_is_its_own_argmin_and_not_the_spt_laws():
    truth = stress.true_delta_star("epochs", stress.BUDGET)
    losses = stress.epoch_law(np.full(3, stress.BUDGET), np.array([truth - 0.01, truth, truth + 0.01]))[0]
    assert losses[1] < losses[0] and losses[1] < losses[2]
    # Overfitting follows epochs: at 4x the budget the same fraction repeats the domain set 4x as often, and the
    # best fraction falls.
    assert stress.true_delta_star("epochs", 4 * stress.BUDGET) < truth
    assert truth != stress.true_delta_star("heavy-tails", stress.BUDGET)


def test_heavy_tails_keep_the_noise_size_and_fatten_its_tails():
    draws = stress._draws(np.random.default_rng(0), "heavy-tails", 400_000, 0.01)
    normal = stress._draws(np.random.default_rng(0), "epochs", 400_000, 0.01)
    assert np.std(draws) == pytest.approx(0.01, rel=0.1) and np.std(normal) == pytest.approx(0.01, rel=0.01)
    share_beyond = lambda x: float(np.mean(np.abs(x) > 0.04))  # noqa: E731  (4 sd)
    assert share_beyond(draws) > 20 * max(share_beyond(normal), 1e-6)


def test_jittered_runs_differ_in_shape_not_only_in_level():
    tokens = np.linspace(5e4, stress.BUDGET, stress.EVALUATIONS)
    law = get_law("spt").predict(SPT_PILOT, {"tokens": tokens, "fraction": np.full(len(tokens), 0.3)})
    first, _ = stress._clean("shape-jitter", tokens, 0.3, np.random.default_rng(1))
    second, _ = stress._clean("shape-jitter", tokens, 0.3, np.random.default_rng(2))
    plain, _ = stress._clean("heavy-tails", tokens, 0.3, np.random.default_rng(1))
    np.testing.assert_allclose(plain, law)
    for jittered in (first, second):
        ratio = np.log(jittered / law)
        assert np.ptp(ratio) > 1e-3  # not a constant factor: a change of shape along the run
    assert not np.allclose(first, second)


def test_wilson_interval_matches_the_score_formula():
    low, high = stress.wilson_interval(45, 60)
    assert (round(low, 4), round(high, 4)) == (0.6277, 0.8422)
    assert stress.wilson_interval(60, 60)[1] == pytest.approx(1.0)


def test_a_small_coverage_run_reports_what_the_benchmark_prints():
    rows = stress.coverage("heavy-tails", sweeps=2, replicates=8, first_seed=9000)
    assert [row["horizon"] for row in rows] == [1.0, 4.0]
    for row in rows:
        assert row["sweeps"] == 2 and row["nominal"] == 0.9
        assert row["observed"] in (0.0, 0.5, 1.0) and row["percentile_observed"] in (0.0, 0.5, 1.0)
        assert row["wilson"] == stress.wilson_interval(round(row["observed"] * 2), 2)
        assert 0.0 < row["median_width"] < 1.0 and 0.0 < row["percentile_width"] < 1.0
        assert row["truth"] == stress.true_delta_star("heavy-tails", row["horizon"] * stress.BUDGET)
        # Two pilots of other seeds give other estimates: their spread is a measured one, not zero.
        assert np.isfinite(row["bias"]) and row["spread"] > 0.0
    assert rows == stress.coverage("heavy-tails", sweeps=2, replicates=8, first_seed=9000)
