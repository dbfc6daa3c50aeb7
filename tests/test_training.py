"""Composer pretraining, resumption, Ray Train workers, finetuning and WiSE-FT on a real tiny mix (CPU)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spt.config import load_config
from tests.conftest import tree, two_source_mix_yaml

BATCH, SEQ = 16, 64
TOKENS_PER_BATCH = BATCH * SEQ


@pytest.fixture(scope="module")
def mix_spec(tiny_corpora) -> Path:
    """A two-source mix of 60 batches built by spt from the tiny corpora."""
    from pipelines.mix.build import build_mix

    path = tiny_corpora / "train-mix.yaml"
    path.write_text(two_source_mix_yaml(tiny_corpora, tiny_corpora / "mix", 60 * TOKENS_PER_BATCH, SEQ, BATCH, "test"))
    return Path(build_mix(load_config(path))["spec"])


def train_yaml(tmp_path: Path, mix: Path, run_dir: Path, **extra) -> Path:
    fields = {
        "kind": "train", "mix": str(mix), "run_dir": str(run_dir), "model": {"preset": "tiny"},
        "global_batch_size": BATCH, "eval_every_tokens": 20 * TOKENS_PER_BATCH, "eval_samples": 32,
        "checkpoint_every_tokens": 20 * TOKENS_PER_BATCH, "optimizer": {"lr": 0.01}, **extra,
    }
    path = tmp_path / f"{run_dir.name}.yaml"
    path.write_text(json.dumps(fields))  # JSON is YAML
    return path


def curve_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "curves.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def reference_run(mix_spec, tmp_path_factory):
    """An uninterrupted 60-batch run; other tests compare against it."""
    from training.trainer import run_training

    root = tmp_path_factory.mktemp("runs")
    config = load_config(train_yaml(root, mix_spec, root / "reference"))
    return run_training(config), root / "reference", root


def test_run_writes_curve_table_summary_and_model(reference_run):
    summary, run_dir, _ = reference_run
    rows = curve_rows(run_dir)
    assert [int(r["tokens"]) for r in rows] == [20 * TOKENS_PER_BATCH, 40 * TOKENS_PER_BATCH, 60 * TOKENS_PER_BATCH]
    assert {"tokens", "domain_loss", "general_loss", "loss_domain", "loss_general"} <= set(rows[0])
    assert float(rows[-1]["domain_loss"]) < float(rows[0]["domain_loss"])
    assert float(rows[-1]["general_loss"]) < float(rows[0]["general_loss"])
    assert summary["tokens"] == 60 * TOKENS_PER_BATCH and summary["world_size"] == 1
    assert summary["domain_loss"] == pytest.approx(float(rows[-1]["domain_loss"]))
    assert (run_dir / "model" / "model.safetensors").exists()
    assert (run_dir / "logs" / "metrics-rank0.log").stat().st_size > 0


def test_curves_record_domain_train_loss_epochs_phase_and_lr(reference_run, mix_spec):
    import torch
    import torch.nn.functional as F

    from pipelines.mix.streams import read_spec, train_sample_dataset
    from training.interpolate import load_model
    from training.schedules import lr_multiplier

    _, run_dir, _ = reference_run
    rows = curve_rows(run_dir)
    spec = read_spec(mix_spec)
    domain = next(s for s in spec["streams"] if s["role"] == "domain")
    share = domain["choose"] / sum(s["choose"] for s in spec["streams"])
    for row in rows:
        tokens = int(row["tokens"])
        assert float(row["domain_epochs"]) == pytest.approx(tokens * share / (domain["unique_samples"] * SEQ), abs=1e-4)
        # The default schedule is cosine after 5% warmup: every evaluation is in its decay.
        assert row["phase"] == "decay"
        # The rate of the last step before the evaluation, set from the progress before that step.
        batches = tokens // TOKENS_PER_BATCH
        assert float(row["lr"]) == pytest.approx(0.01 * lr_multiplier("cosine", (batches - 1) / 60, 0.05, 0.2, 0.1),
                                                 rel=1e-6)
    # The domain training loss is the loss on the first 32 domain training sequences (as many as held out).
    model = load_model(run_dir)
    ids = torch.stack([torch.as_tensor(train_sample_dataset(spec, "domain")[i]["tokens"].astype("int64"))
                       for i in range(32)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1]
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).item()
    assert float(rows[-1]["domain_train_loss"]) == pytest.approx(expected, abs=1e-4)
    assert float(rows[-1]["domain_train_loss"]) != pytest.approx(float(rows[-1]["domain_loss"]), abs=1e-3)


def test_sweep_cell_uses_its_threads_and_constant_lr_is_constant_after_warmup(mix_spec, tmp_path):
    from training.sweep import run_cell_commands

    run_dir = tmp_path / "constant"
    config = train_yaml(tmp_path, mix_spec, run_dir, duration_tokens=20 * TOKENS_PER_BATCH,
                        eval_every_tokens=5 * TOKENS_PER_BATCH, checkpoint_every_tokens=None,
                        schedule={"kind": "constant", "warmup_fraction": 0.3})
    outcome = run_cell_commands(str(tmp_path / "log.txt"), [["train", str(config)]], retries=0, threads=2)
    assert outcome["status"] == "ok", (tmp_path / "log.txt").read_text()[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["torch_threads"] == 2
    rows = curve_rows(run_dir)
    assert [r["phase"] for r in rows] == ["warmup", "stable", "stable", "stable"]
    assert float(rows[0]["lr"]) == pytest.approx(0.01 * (4 / 20) / 0.3)  # step 5 ran at the rate of progress 4/20
    assert [float(r["lr"]) for r in rows[1:]] == [0.01] * 3


def test_rerun_of_a_finished_run_is_a_no_op(reference_run, mix_spec):
    from training.trainer import run_training

    summary, run_dir, root = reference_run
    again = run_training(load_config(train_yaml(root, mix_spec, run_dir)))
    assert again["reused"] is True and again["domain_loss"] == summary["domain_loss"]


def test_sigkill_then_resume_ends_with_the_same_losses(reference_run, mix_spec, tmp_path):
    summary, _, _ = reference_run
    run_dir = tmp_path / "killed"
    config = train_yaml(tmp_path, mix_spec, run_dir)
    env = {**os.environ, "SPT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "spt.cli", "train", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = run_dir / "checkpoints" / "ba20-rank0.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists() and not (run_dir / "summary.json").exists(), "the run was not killed mid-way"

    from training.trainer import run_training

    resumed = run_training(load_config(config))
    assert resumed["domain_loss"] == pytest.approx(summary["domain_loss"], abs=1e-6)
    assert resumed["general_loss"] == pytest.approx(summary["general_loss"], abs=1e-6)
    assert [r["tokens"] for r in curve_rows(run_dir)] == [r["tokens"] for r in curve_rows(reference_run[1])]


def test_two_ray_train_workers_keep_the_global_batch(reference_run, mix_spec, tmp_path, spt_bin):
    summary, _, _ = reference_run
    run_dir = tmp_path / "two-workers"
    config = train_yaml(tmp_path, mix_spec, run_dir)
    env = {**os.environ, "SPT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "RAY_ADDRESS": ""}
    proc = subprocess.run([spt_bin, "train", str(config), "--num-workers", "2"], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((run_dir / "summary.json").read_text())
    assert (two["world_size"], two["global_batch_size"], two["tokens"]) == (2, BATCH, summary["tokens"])
    # Streaming gives every rank its half of the same global batch, and gradients are averaged: the same run.
    assert two["domain_loss"] == pytest.approx(summary["domain_loss"], abs=1e-4)
    assert two["general_loss"] == pytest.approx(summary["general_loss"], abs=1e-4)


@pytest.fixture(scope="module")
def finetuned(reference_run, mix_spec):
    from training.finetune import run_finetune

    _, run_dir, root = reference_run
    (root / "ft.yaml").write_text(json.dumps({
        "kind": "finetune", "base_run": str(run_dir), "run_dir": str(root / "finetune"),
        "duration_tokens": 400 * TOKENS_PER_BATCH, "eval_every_tokens": 10 * TOKENS_PER_BATCH, "patience": 2,
        "global_batch_size": BATCH, "eval_samples": 32, "optimizer": {"lr": 0.03}, "replay_fraction": 0.0,
    }))
    return run_finetune(load_config(root / "ft.yaml")), root / "finetune"


def test_finetune_stops_early_at_the_best_domain_loss(finetuned, reference_run):
    summary, run_dir = finetuned
    rows = curve_rows(run_dir)
    losses = [float(r["domain_loss"]) for r in rows]
    assert summary["stopped_early"] is True
    assert summary["trained_tokens"] < 400 * TOKENS_PER_BATCH
    assert summary["best_domain_loss"] == pytest.approx(min(losses))
    assert summary["best_tokens"] == int(rows[losses.index(min(losses))]["tokens"])
    assert len(rows) - 1 - losses.index(min(losses)) == 2  # stopped after `patience` evaluations without gain
    assert summary["best_domain_loss"] < reference_run[0]["domain_loss"]


def test_interpolation_endpoints_equal_the_two_runs(finetuned, reference_run, mix_spec, run_cli):
    pretrained, run_dir, root = reference_run
    _, ft_dir = finetuned
    (root / "interp.yaml").write_text(json.dumps({
        "kind": "interpolate", "start": str(run_dir), "end": str(ft_dir), "mix": str(mix_spec),
        "alphas": [0.0, 0.5, 1.0], "eval_samples": 32, "output": str(root / "interp.csv")}))
    code, out, err = run_cli("interpolate", root / "interp.yaml")
    assert code == 0, err
    rows = list(csv.DictReader((root / "interp.csv").open()))
    last_ft = curve_rows(ft_dir)[-1]
    assert float(rows[0]["domain_loss"]) == pytest.approx(pretrained["domain_loss"], abs=1e-4)
    assert float(rows[0]["general_loss"]) == pytest.approx(pretrained["general_loss"], abs=1e-4)
    assert float(rows[2]["domain_loss"]) == pytest.approx(float(last_ft["domain_loss"]), abs=1e-4)
    assert float(rows[2]["general_loss"]) == pytest.approx(float(last_ft["general_loss"]), abs=1e-4)
    assert "alpha" in out and f"table: {root / 'interp.csv'}" in out


@pytest.mark.parametrize("extra,overrides,message", [
    ({"model": {"preset": "huge"}}, [],
     "train.model: preset='huge': unknown preset; one of tiny, micro, mini, 20m, 60m, 150m, 350m, 1b"),
    ({}, ["global_batch_size=16", "num_workers=3"],
     "train: global_batch_size=16 does not divide across num_workers=3"),
    ({}, ["microbatch_size=5"], "train: microbatch_size=5 does not divide the per-worker batch of 16"),
    ({}, ["duration_tokens=100"],
     "train.duration_tokens=100: smaller than one batch of 1024 tokens (global_batch_size=16 x seq_len=64)"),
])
def test_bad_train_configs(extra, overrides, message, mix_spec, tmp_path, run_cli):
    run_dir = tmp_path / "run"
    code, out, err = run_cli("train", train_yaml(tmp_path, mix_spec, run_dir, **extra), *overrides)
    assert (code, err.strip(), out) == (2, f"error: {message}", "")
    assert tree(run_dir) == []


def test_missing_mix_is_a_clear_error(tmp_path, run_cli):
    run_dir = tmp_path / "run"
    code, _, err = run_cli("train", train_yaml(tmp_path, tmp_path / "nope.json", run_dir))
    assert code == 2
    assert err.strip() == f"error: mix={str(tmp_path / 'nope.json')!r}: no such file (build the mix first: spt mix build CONFIG)"
    assert tree(run_dir) == []


@pytest.mark.parametrize("kind,progress,phase", [
    ("constant", 0.04, "warmup"), ("constant", 0.05, "stable"), ("constant", 0.99, "stable"),
    ("cosine", 0.04, "warmup"), ("cosine", 0.5, "decay"),
    ("wsd", 0.5, "stable"), ("wsd", 0.8, "stable"), ("wsd", 0.81, "decay"),
])
def test_schedule_phases(kind, progress, phase):
    from training.schedules import lr_multiplier, lr_phase

    assert lr_phase(kind, progress, warmup=0.05, decay=0.2) == phase
    # A stable phase runs at the peak rate: its evaluations are the losses of shorter runs.
    assert (lr_multiplier(kind, progress, 0.05, 0.2, 0.1) == 1.0) == (phase == "stable")
