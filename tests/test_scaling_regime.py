"""The pilot-regime check: a pilot whose δ = 0 loss still falls faster late than early is flagged; a power law is
not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaling_laws import synthetic
from scaling_laws.fitting.evaluations import fit_evaluations
from scaling_laws.fitting.regime import pilot_bend, regime_caveats


def power_law_pilot(seed: int) -> pd.DataFrame:
    _, curves = synthetic.pilot_sweep(seed=seed, seeds=(0, 1))
    return curves[curves.phase != "warmup"].rename(columns={"domain_fraction": "fraction"})


def transient_pilot(seed: int = 0, fractions=(0.0, 0.1, 0.3), runs: int = 2) -> pd.DataFrame:
    """Curves of a small model still leaving its early plateau: the loss drops along a logistic in log tokens whose
    midpoint (1e6) lies past the pilot's last evaluation (4e5), so every run falls faster late than early."""
    rng = np.random.default_rng(seed)
    tokens = np.linspace(4e4, 4e5, 18)
    rows = []
    for fraction in fractions:
        for run in range(runs):
            drop = 2.0 / (1.0 + np.exp(-(np.log(tokens) - np.log(1e6)) / 0.8))
            loss = (7.6 - drop - 0.3 * fraction + 0.5 * fraction ** 2 * tokens / 4e5) \
                * np.exp(rng.normal(0, 0.003) + rng.normal(0, 0.003, tokens.size))
            rows += [{"run_id": f"d{fraction:g}-s{run}", "fraction": fraction, "tokens": t, "domain_loss": v}
                     for t, v in zip(tokens, loss)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(5))
def test_a_power_law_pilot_is_not_flagged(seed):
    table = power_law_pilot(seed)
    bend = pilot_bend(table)
    assert bend.runs == 2 and bend.fraction == 0.0
    assert bend.late > bend.early  # it flattens: the later half falls less
    assert regime_caveats(table) == []


def test_a_pilot_still_steepening_is_flagged_with_its_slopes():
    table = transient_pilot()
    bend = pilot_bend(table)
    assert bend.runs == 2 and bend.late < bend.early < 0
    (caveat,) = regime_caveats(table)
    assert caveat.startswith("the pilot has not reached the regime the law describes: the held-out loss of its "
                             f"delta = 0 run(s) falls {-bend.late:.2g} nats per e-fold of tokens over the later half")
    assert "forecasts past the pilot are unreliable" in caveat


def test_runs_too_short_for_two_slopes_are_not_judged():
    table = transient_pilot()
    short = table.groupby("run_id").head(4)  # 2 points per half: too few for a slope with an error
    assert pilot_bend(short) is None and regime_caveats(short) == []


def test_the_fit_carries_the_caveat():
    result = fit_evaluations(transient_pilot(), form="spt-regularized", fitted="held-out", bootstrap_replicates=0,
                             n_starts=4)
    assert [c for c in result.caveats if c.startswith("the pilot has not reached the regime")]
