"""The curve check of a pilot sweep folder (benchmarks/quickstart_curves.py): the best δ falls with the budget, and
the largest δ's held-out domain loss turns upward before the end of its run."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO

TOKENS = [10, 20, 30, 40, 50]
#: Held-out domain losses per δ at TOKENS: δ = 0.5 leads early, bottoms out at 30 and ends 0.2 above its minimum.
SHOWN = {0.0: [7.0, 6.8, 6.6, 6.5, 6.4], 0.1: [6.9, 6.6, 6.4, 6.2, 6.1], 0.5: [6.7, 6.5, 6.3, 6.4, 6.5]}


def write_curves(folder, losses: dict[float, list[float]], seed: int = 0, phases=None, append=False):
    rows = [{"run_id": f"d{d}-s{seed}", "domain_fraction": d, "seed": seed, "tokens": t, "domain_loss": loss,
             "domain_epochs": t * d, "phase": (phases or {}).get(t, "stable")}
            for d, curve in losses.items() for t, loss in zip(TOKENS, curve)]
    frame = pd.DataFrame(rows)
    if append:
        frame = pd.concat([pd.read_csv(folder / "curves.csv"), frame])
    frame.to_csv(folder / "curves.csv", index=False)


def test_a_sweep_that_shows_the_finding(tmp_path):
    from sweeps.curve_check import check_sweep

    write_curves(tmp_path, SHOWN)
    (check,) = check_sweep(tmp_path)
    assert (check.first_tokens, check.first_best, check.last_tokens, check.last_best) == (10, 0.5, 50, 0.1)
    assert (check.largest, check.minimum, check.minimum_tokens, check.minimum_epochs) == (0.5, 6.3, 30, 15.0)
    assert check.rise == pytest.approx(0.2) and check.falls and check.turns_up and check.shown


def test_warmup_and_the_evaluations_right_after_it_are_not_budgets(tmp_path):
    from sweeps.curve_check import check_sweep

    # At 10 tokens (warmup) δ = 0 leads, and at 20 tokens (half of them spent warming up) δ = 0.1 does; the first
    # budget the fit uses (scaling_laws.fitting.points) is 30, where δ = 0.5 leads.
    losses = {d: list(curve) for d, curve in SHOWN.items()}
    losses[0.0][0], losses[0.1][1] = 6.0, 6.4
    write_curves(tmp_path, losses, phases={10: "warmup"})
    (check,) = check_sweep(tmp_path)
    assert (check.first_tokens, check.first_best) == (30, 0.5)


@pytest.mark.parametrize("change,falls,turns_up", [
    ({0.5: [6.7, 6.5, 6.3, 6.2, 6.0]}, False, False),     # the largest δ keeps falling and stays best
    ({0.5: [6.7, 6.5, 6.3, 6.31, 6.33]}, True, False),    # best δ falls, but the upturn is under 0.05 nats
    ({0.5: [7.1, 6.5, 6.3, 6.4, 6.5]}, False, True),      # upturn, but δ = 0.5 never led at the first budget
])
def test_a_sweep_that_does_not(tmp_path, change, falls, turns_up):
    from sweeps.curve_check import check_sweep

    write_curves(tmp_path, {**SHOWN, **change})
    (check,) = check_sweep(tmp_path)
    assert (check.falls, check.turns_up, check.shown) == (falls, turns_up, False)


def test_every_seed_is_checked_and_the_script_says_so(tmp_path):
    write_curves(tmp_path, SHOWN, seed=0)
    write_curves(tmp_path, {**SHOWN, 0.5: [6.7, 6.5, 6.3, 6.2, 6.0]}, seed=1, append=True)
    script = [sys.executable, str(REPO / "benchmarks" / "quickstart_curves.py"), str(tmp_path)]
    proc = subprocess.run(script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "seed 0:" in proc.stdout and "seed 1:" in proc.stdout
    assert "largest δ=0.5: minimum domain loss 6.300 at 30 tokens, 15.0 domain epochs; final 6.500 (+0.200 nats)" \
        in proc.stdout
    assert proc.stdout.strip().endswith("finding shown for every seed: NO")
    assert subprocess.run([*script, "--strict"], capture_output=True).returncode == 1


def test_a_folder_without_curves_is_an_input_error(tmp_path):
    from spt.errors import InputError
    from sweeps.curve_check import check_sweep

    with pytest.raises(InputError, match="no curves.csv"):
        check_sweep(tmp_path)
