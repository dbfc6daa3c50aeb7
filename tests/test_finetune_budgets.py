"""Post-finetune curves from one sweep (issue 22, item 4): each cell's constant-rate run exports snapshots, each
snapshot is finetuned, and the fit reads the fine-tune gain law a T^b + c per δ off the budgets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling_laws import synthetic
from spt.config import load_config
from tests.conftest import finetuning_bases, tree

BATCH, SEQ = 8, 64
TOKENS_PER_BATCH = BATCH * SEQ
#: 40 batches per cell; snapshots after 10, 20 and 30, and the final model after 40.
BUDGET = 40 * TOKENS_PER_BATCH
SHARES = [0.25, 0.5, 0.75, 1.0]


@pytest.fixture(scope="module")
def work(tiny_corpora, tmp_path_factory) -> Path:
    """A built base mix and base train and finetune configs (a constant rate, no warmup) of a tiny model."""
    work = tmp_path_factory.mktemp("finetune-budgets")
    finetuning_bases(tiny_corpora, work, BUDGET, SEQ, BATCH)
    return work


def sweep_yaml(work: Path, name: str, **extra) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(json.dumps({"kind": "sweep", "name": name, "mix": str(work / "mix.yaml"),
                                "train": str(work / "train.yaml"), "finetune": str(work / "finetune.yaml"),
                                "grid": {"domain_fraction": [0.0, 0.2, 0.5]}, "finetune_at": SHARES,
                                "output_dir": str(work / name), "resources": {"num_cpus": 2}, **extra}))
    return path


#: Three cells of a train and four finetunes each, every one a process of its own: 6.6 min on a busy 2-core
#: machine (2026-12-05). The fit's law needs three fractions.
@pytest.mark.slow
def test_a_sweep_finetunes_every_cell_at_four_budgets_and_the_fit_prints_the_gain_law(work, run_cli):
    from sweeps.run import run_sweep

    config = sweep_yaml(work, "budgets")
    code, out, err = run_cli("sweep", config, "--dry-run", "--no-calibrate")
    assert code == 0, err
    assert "delta0.2-tiny-T20480-seed0" in out and "finetuned from (tokens)" in out
    assert out.count("5,120, 10,240, 15,360, 20,480") == 3

    results = run_sweep(load_config(config), log=lambda line: None)
    assert list(results.status) == ["ok"] * 3, list(results.error)
    finetunes = pd.read_csv(work / "budgets" / "finetunes.csv")
    assert sorted(finetunes.groupby("run_id").tokens.apply(list).items()) == [
        (run_id, [5120, 10240, 15360, 20480]) for run_id in results.run_id]
    assert (finetunes.finetune_domain_loss > 0).all() and finetunes.finetune_domain_loss.nunique() == 12
    cell = work / "budgets" / "cells" / "delta0.2-tiny-T20480-seed0"
    assert sorted(p.name for p in (cell / "run" / "snapshots").iterdir()) == ["T10240", "T15360", "T5120"]
    # results keep the final model's finetune; each snapshot's finetune starts from its own weights
    final = finetunes[(finetunes.run_id == cell.name) & (finetunes.tokens == 20480)]
    assert results.set_index("run_id").finetune_domain_loss[cell.name] == pytest.approx(
        final.finetune_domain_loss.iloc[0])
    summary = json.loads((cell / "finetune-T5120" / "summary.json").read_text())
    curve = pd.read_csv(cell / "run" / "curves.csv").set_index("tokens")
    assert summary["base_tokens"] == 5120
    assert summary["pretrained_domain_loss"] == pytest.approx(curve.domain_loss[5120])

    code, out, err = run_cli("fit", "--law", "spt", "--data", work / "budgets", "--bootstrap", "0", "--starts", "2",
                             "--out", work / "fit.json")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("  delta=")]
    assert [line.split(":")[0] for line in lines] == ["  delta=0", "  delta=0.2", "  delta=0.5"]
    assert all("(fitted on 4 budgets)" in line for line in lines)
    gains = json.loads((work / "fit.json").read_text())["decision"]["finetune_gain"]
    assert [(g["fraction"], g["fitted"], len(g["measured"])) for g in gains] == [(0.0, True, 4), (0.2, True, 4),
                                                                                 (0.5, True, 4)]

    # A finetune of a snapshot the run did not write is refused, naming the field and the snapshots there.
    code, _, err = run_cli("finetune", cell / "finetune-T5120.yaml", "base_tokens=6000", f"run_dir={work / 'x'}")
    assert (code, err.strip()) == (2, f"error: finetune.base_tokens=6000: the base run has no snapshot after 6000 "
                                      f"tokens ({cell / 'run' / 'snapshots' / 'T6000'}); its snapshots: 5120, 10240, "
                                      f"15360 (a run writes them for its snapshot_tokens)")
    assert tree(work / "x") == []


@pytest.mark.parametrize("extra,message", [
    ({"finetune": None}, "sweep: finetune_at=[0.25, 0.5, 0.75, 1.0]: needs a finetune config (finetune: PATH) to run"),
    ({"finetune_at": [0.5, 1.5]}, "sweep.finetune_at=[0.5, 1.5]: each must be in (0, 1], got [1.5]"),
    ({"finetune_at": [0.01, 1.0]},
     "sweep.finetune_at=[0.01, 1.0]: share 0.01 of T=20480: 204 is smaller than one batch of 512 tokens"),
    ({"finetune_at": [0.5, 0.51]},
     "sweep.finetune_at=[0.5, 0.51]: at T=20480 two shares round to the same batch of 512 tokens"),
    ({"train": "cosine.yaml"}, "sweep.finetune_at=[0.25, 0.5, 0.75, 1.0]: needs the train config's "
     "schedule.kind=constant, not cosine: only at a constant learning rate is the model after T tokens the model "
     "of a T-token run"),
])
def test_bad_finetune_at_is_refused_in_one_line(extra, message, work, run_cli):
    (work / "cosine.yaml").write_text(json.dumps({"kind": "train", "mix": "m", "run_dir": "r",
                                                  "global_batch_size": BATCH}))
    if "train" in extra:
        extra = {"train": str(work / extra["train"])}
    code, out, err = run_cli("sweep", sweep_yaml(work, "bad", **extra), "--dry-run", "--no-calibrate")
    assert (code, err.strip(), out) == (2, f"error: {message}", "")
    assert tree(work / "bad") == []


@pytest.mark.parametrize("fields,message", [
    ({"snapshot_tokens": [2048]}, "train: snapshot_tokens=[2048]: needs schedule.kind=constant, not cosine: only at "
     "a constant learning rate is the model after T tokens the model of a T-token run"),
    ({"snapshot_tokens": [100], "schedule": {"kind": "constant"}},
     "train.snapshot_tokens=[100]: 100 is smaller than one batch of 512 tokens"),
    ({"snapshot_tokens": [30000], "schedule": {"kind": "constant"}},
     "train.snapshot_tokens=[30000]: 30000 is beyond the run's 20480 tokens"),
    ({"snapshot_tokens": [1024], "schedule": {"kind": "constant", "warmup_fraction": 0.1}},
     "train.snapshot_tokens=[1024]: 1024 falls inside warmup (the first 0.1 of the run's 20480 tokens), where the "
     "rate is not yet constant"),
    ({"snapshot_tokens": [2048, 2048], "schedule": {"kind": "constant"}},
     "train.snapshot_tokens=[2048, 2048]: values must be distinct"),
])
def test_bad_snapshot_tokens_are_refused_in_one_line(fields, message, work, run_cli):
    from spt.storage.locations import local_path

    spec = local_path(str(work / "mix" / "mixes" / "base" / "streams.json"))
    path = work / "snapshots.yaml"
    path.write_text(json.dumps({"kind": "train", "mix": str(spec), "run_dir": str(work / "snap-run"),
                                "global_batch_size": BATCH, **fields}))
    code, out, err = run_cli("train", path)
    assert (code, err.strip(), out) == (2, f"error: {message}", "")
    assert tree(work / "snap-run") == []


def test_gain_law_per_fraction_is_fitted_from_four_budgets_stored_and_printed(tmp_path):
    from scaling_laws.decision.report import format_fit
    from scaling_laws.fitting.result import FitResult
    from sweeps.tables import fit_sweep, write_sweep

    def gain(fraction, tokens):
        return 0.1 + 30.0 * np.asarray(tokens, float) ** -0.3 * (1.0 - np.asarray(fraction, float))

    results, curves = synthetic.spt_sweep(fractions=(0.0, 0.2, 0.5), total_tokens=[2.5e8, 5e8, 1e9, 2e9],
                                          evaluations=6, gain=gain, noise=0.001)
    # One row per fine-tune and budget; delta = 0.5 was fine-tuned at one budget only.
    finetunes = results.assign(pretrained_domain_loss=results.domain_loss, finetune_dir="x")
    finetunes = finetunes[(finetunes.domain_fraction != 0.5) | (finetunes.tokens == 1e9)]
    write_sweep(tmp_path, results.assign(finetune_domain_loss=np.nan), curves, finetunes)
    fit = fit_sweep(tmp_path, bootstrap_replicates=0, n_starts=4)

    gains = FitResult.from_dict(fit.to_dict()).decision["finetune_gain"]
    assert [(g["fraction"], g["fitted"], g["budgets"]) for g in gains] == [(0.0, True, 4), (0.2, True, 4),
                                                                          (0.5, False, 1)]
    for row in gains[:2]:  # the fitted law runs through the measured gains, which carry the SPT law's own
        tokens = np.array([m["tokens"] for m in row["measured"]])  # residuals (up to 4e-3 nats here)
        measured = np.array([m["gain"] for m in row["measured"]])
        assert row["a"] * tokens ** row["b"] + row["c"] == pytest.approx(measured, abs=1e-2)
        assert row["b"] < 0 and measured[0] > measured[-1]  # the gain shrinks with the budget, as drawn
    lines = format_fit(fit).splitlines()
    start = lines.index("fine-tune gain per delta, dl(T) = a*T^b + c (the law's loss minus the fine-tuned loss, "
                        "nats):")
    assert lines[start + 1].startswith("  delta=0: a=") and "(fitted on 4 budgets); measured (T: dl) 2.5e+08: " \
        in lines[start + 1]
    assert lines[start + 3] == (f"  delta=0.5: constant c={gains[2]['c']:.4g}: fewer than 4 budgets (1); measured "
                                f"(T: dl) 1e+09: {gains[2]['measured'][0]['gain']:.4g}")


def test_a_gain_law_the_budgets_do_not_pin_says_so():
    """Gains measured on the quickstart pilot's delta = 0 cell (one seed, 2026-12-05): they jump about by 0.1-0.3
    nats from budget to budget, and the fit of a T^b + c ends with a on its bound; the report must say so."""
    from scaling_laws.decision.finetune import GainModel, format_gains
    from scaling_laws.laws.registry import get_law

    law, params = get_law("spt"), synthetic.SPT
    tokens = np.array([98_304, 198_656, 299_008, 399_360], dtype=float)
    gains = np.array([0.4692, 0.1555, 0.2738, 0.1848])
    predicted = law.predict(params, {"tokens": tokens, "fraction": np.zeros(4)})
    runs = [{"run_id": "d0", "fraction": 0.0, "tokens": t, "finetune_loss": p - g}
            for t, p, g in zip(tokens, predicted, gains)]
    row = GainModel(law, params, runs).table()[0]
    assert row["fitted"] and row["on_bounds"], row
    line = format_gains([row])[1]
    assert "on its" in line and "bound: these budgets do not pin the law; read it as a rough trend" in line
