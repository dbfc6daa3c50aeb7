"""The size pilot of issue 25: the shipped plan over three model sizes, and a two-size sweep (its smaller subset)
that `spt fit` turns into a size-aware law and `spt decide` into a cost decision."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from spt.config import load_config
from tests.conftest import finetuning_bases

REPO = Path(__file__).resolve().parents[1]
BATCH, SEQ = 8, 64
TOKENS_PER_BATCH = BATCH * SEQ
BUDGET = 40 * TOKENS_PER_BATCH


def test_the_shipped_size_pilot_plans_three_sizes_five_fractions_a_repeat_and_four_finetunes(run_cli, monkeypatch):
    monkeypatch.chdir(REPO)
    code, out, err = run_cli("sweep", "configs/sweeps/sizes.yaml", "--dry-run", "--no-calibrate")
    assert code == 0, err
    cells = [line.split()[0] for line in out.splitlines() if line.startswith("delta")]
    expected = [f"delta{f:g}-{p}-T400000-seed0"
                for f in (0.0, 0.01, 0.03, 0.1, 0.25) for p in ("tiny", "micro", "mini")]
    assert cells == expected + [f"delta0.1-{p}-T400000-seed1" for p in ("tiny", "micro", "mini")]
    # (the token plan and the finetune budgets need the quickstart's tokenizer, which a fresh clone lacks)
    config = load_config(REPO / "configs/sweeps/sizes.yaml")
    assert config.finetune and config.finetune_at == [0.25, 0.5, 0.75, 1.0]
    assert load_config(REPO / config.train).schedule.kind == "constant"  # every evaluation a budget; snapshots


@pytest.fixture(scope="module")
def work(tiny_corpora, tmp_path_factory) -> Path:
    """A built base mix, and base train and finetune configs (constant rate, no warmup)."""
    work = tmp_path_factory.mktemp("size-pilot")
    finetuning_bases(tiny_corpora, work, BUDGET, SEQ, BATCH)
    (work / "sizes.yaml").write_text(json.dumps({
        "kind": "sweep", "name": "sizes", "mix": str(work / "mix.yaml"), "train": str(work / "train.yaml"),
        "finetune": str(work / "finetune.yaml"), "finetune_at": [0.5, 1.0],
        "grid": {"domain_fraction": [0.0, 0.2, 0.5], "preset": ["tiny", "micro"]},
        "output_dir": str(work / "sweep"), "resources": {"num_cpus": 1}, "max_concurrent": 2}))
    return work


#: Six cells of a train and two finetunes each, every one a process of its own: minutes on 2 cores.
@pytest.mark.slow
def test_a_two_size_sweep_fits_the_size_aware_law_and_decides_its_cost(work, run_cli):
    from sweeps.run import run_sweep

    results = run_sweep(load_config(work / "sizes.yaml"), log=lambda line: None)
    assert list(results.status) == ["ok"] * 6, list(results.error)
    sizes = results.groupby("preset").params.unique()
    assert sizes["tiny"][0] < sizes["micro"][0]  # the presets are two sizes, each recorded per cell
    assert len(pd.read_csv(work / "sweep" / "finetunes.csv")) == 12

    code, out, err = run_cli("fit", "--law", "spt", "--data", work / "sweep", "--bootstrap", "0", "--starts", "16",
                             "--out", work / "fit.json")
    assert code == 0, err
    fit = json.loads((work / "fit.json").read_text())
    assert fit["law"] == "spt-n"
    assert sorted(set(fit["data_ranges"]["params"])) == sorted(float(s[0]) for s in sizes)
    assert ("(best start did not converge)" in out) == (not fit["settings"]["converged"])  # said when it did not

    code, out, err = run_cli("decide", "--fit", work / "fit.json", "--domain-tokens", "3000", "--tokens", "2e4",
                             "--serve-tokens", "1e9", "--finetune-gain", "0.1", "--out", work / "decision.json")
    assert code == 0, err
    decision = json.loads((work / "decision.json").read_text())
    assert sorted((o["kind"], o["params"]) for o in decision["options"]) == sorted(
        (kind, float(s[0])) for s in sizes for kind in ("finetune", "spt"))
    assert "lowest loss at T=2e+04: " in out and "break-even of " in out
