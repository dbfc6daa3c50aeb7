"""Every output on S3 (a local moto server started here), with no local output folder.

The acceptance test (slow) runs `spt mix build` -> `spt train` (killed, then resumed from its S3 checkpoints) ->
`spt sweep` (2 cells) -> `spt fit` and `spt plot` as users run them, in subprocesses of the installed CLI, with the
S3 settings in the environment (``S3_ENDPOINT_URL`` and keys). The default run covers the same code in-process:
a training run, its finetune and an interpolation on S3, and fits, predictions and plots of a sweep on S3.
Inputs (the tiny corpora and tokenizer) are local files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from spt import storage
from spt.config import load_config
from tests.conftest import moto_s3, tree, two_source_mix_yaml

BATCH, SEQ = 8, 32
TOKENS_PER_BATCH = BATCH * SEQ
BUCKET = "spt-acceptance"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free port with one bucket, and the environment a user would set for it."""
    # Streaming's download cache of the remote shards: a cache, not an output
    with moto_s3(BUCKET, SPT_CACHE_DIR=str(tmp_path_factory.mktemp("streaming-cache")), SPT_PROGRESS="0",
                 OMP_NUM_THREADS="1", RAY_ADDRESS=""):
        yield f"s3://{BUCKET}"


def keys(location: str) -> list[str]:
    return [e.relative for e in storage.list_files(location, hidden=True)]


def spt(spt_bin: str, *args, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([spt_bin, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def write_configs(folder: Path, corpora: Path, bucket: str) -> None:
    folder.mkdir()
    (folder / "mix.yaml").write_text(json.dumps({
        "kind": "mix", "name": "base", "output_dir": f"{bucket}/mix", "tokenizer": str(corpora / "tok"),
        "total_tokens": 30 * TOKENS_PER_BATCH, "seq_len": SEQ, "global_batch_size": BATCH, "build": {"workers": 1},
        "sources": [
            {"name": "domain", "role": "domain", "paths": [str(corpora / "corpora/domain/train.parquet")],
             "heldout_paths": [str(corpora / "corpora/domain/heldout.parquet")], "fraction": 0.3},
            {"name": "general", "role": "general", "paths": [str(corpora / "corpora/general/train.parquet")],
             "heldout_paths": [str(corpora / "corpora/general/heldout.parquet")]}]}))
    (folder / "train.yaml").write_text(json.dumps({
        "kind": "train", "mix": f"{bucket}/mix/mixes/base/streams.json", "run_dir": f"{bucket}/runs/pretrain",
        "global_batch_size": BATCH, "eval_every_tokens": 5 * TOKENS_PER_BATCH, "eval_samples": 16,
        "checkpoint_every_tokens": 5 * TOKENS_PER_BATCH, "optimizer": {"lr": 0.01},
        "schedule": {"kind": "constant", "warmup_fraction": 0.0}}))
    (folder / "sweep.yaml").write_text(json.dumps({
        "kind": "sweep", "name": "s3", "mix": str(folder / "mix.yaml"), "train": str(folder / "train.yaml"),
        "grid": {"domain_fraction": [0.3], "preset": ["tiny", "micro"], "total_tokens": [20 * TOKENS_PER_BATCH]},
        "output_dir": f"{bucket}/sweep", "max_concurrent": 1}))


def kill_after_an_s3_checkpoint(spt_bin: str, config: Path, run_dir: str, cwd: Path) -> int:
    """Starts `spt train`, kills it once its `latest` link is on S3; returns the batch that link names."""
    link = f"{run_dir}/checkpoints/latest-rank0.pt.symlink"
    proc = subprocess.Popen([spt_bin, "train", str(config)], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not storage.exists(link) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert storage.exists(link) and not storage.exists(f"{run_dir}/summary.json"), "not killed before its summary"
    return int(storage.read_text(link).removeprefix("ba").split("-")[0])


@pytest.mark.slow
def test_mix_train_sweep_fit_on_s3_write_nothing_locally(s3, tiny_corpora, tmp_path, spt_bin):
    work = tmp_path / "work"
    work.mkdir()
    write_configs(tmp_path / "configs", tiny_corpora, s3)
    configs = tmp_path / "configs"
    before = tree(tmp_path)

    built = spt(spt_bin, "mix", "build", configs / "mix.yaml", cwd=work)
    assert built.returncode == 0, built.stderr[-3000:]
    assert built.stdout.splitlines()[-1] == f"streams spec: {s3}/mix/mixes/base/streams.json"

    # Composer uploads each checkpoint and then its `latest` link (once the upload is confirmed); the run is
    # killed after that, so the link names a checkpoint at some batch up to the last.
    run_dir = f"{s3}/runs/pretrain"
    checkpoint_batch = kill_after_an_s3_checkpoint(spt_bin, configs / "train.yaml", run_dir, work)
    resumed = spt(spt_bin, "train", configs / "train.yaml", cwd=work)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = storage.read_json(f"{run_dir}/summary.json")
    assert 0 < checkpoint_batch <= 30
    assert (summary["start_batch"], summary["trained_batches"]) == (checkpoint_batch, 30 - checkpoint_batch)
    assert {"config.json", "curves.csv", "summary.json", "model/model.safetensors", "logs/metrics-rank0.log",
            f"checkpoints/ba{checkpoint_batch}-rank0.pt", "checkpoints/latest-rank0.pt.symlink"} <= set(keys(run_dir))

    swept = spt(spt_bin, "sweep", configs / "sweep.yaml", cwd=work)
    assert swept.returncode == 0, swept.stdout[-2000:] + swept.stderr[-3000:]
    assert swept.stdout.splitlines()[-1] == f"results: {s3}/sweep/results.csv"
    cells = ["delta0.3-micro-T5120-seed0", "delta0.3-tiny-T5120-seed0"]
    sweep_keys = set(keys(f"{s3}/sweep"))
    assert {"results.csv", "results.parquet", "curves.csv", "curves.parquet", ".spt-owner.json"} <= sweep_keys
    for cell in cells:
        assert {f"cells/{cell}/{name}" for name in ("mix.yaml", "train.yaml", "log.txt", "run/summary.json",
                                                   "run/model/model.safetensors", ".spt-owner.json")} <= sweep_keys

    fitted = spt(spt_bin, "fit", "--law", "chinchilla", "--data", f"{s3}/sweep/curves.csv", "--loss-column",
                 "domain_loss", "--starts", 8, "--out", f"{s3}/fit/fit.json", cwd=work)
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    plotted = spt(spt_bin, "plot", "--fit", f"{s3}/fit/fit.json", "--data", f"{s3}/sweep/curves.csv",
                  "--out-dir", f"{s3}/fit/plots", cwd=work)
    assert plotted.returncode == 0, plotted.stderr[-3000:]
    assert storage.read_json(f"{s3}/fit/fit.json")["law"] == "chinchilla"
    assert {"loss_curves.png", "loss_curves.svg", "residuals.png", "residuals.svg"} <= set(keys(f"{s3}/fit/plots"))

    assert tree(tmp_path) == before  # no local output folder, no 's3:' folder
    rerun = spt(spt_bin, "sweep", configs / "sweep.yaml", cwd=work)
    assert rerun.returncode == 0 and "2 cells done, 0 to run" in rerun.stdout, rerun.stderr[-3000:]
    assert tree(tmp_path) == before


@pytest.fixture(scope="module")
def local_mix(tiny_corpora) -> Path:
    """The mix tests/test_training.py trains on (built once per session: the second build reuses it)."""
    from pipelines.mix.build import build_mix

    path = tiny_corpora / "train-mix.yaml"
    path.write_text(two_source_mix_yaml(tiny_corpora, tiny_corpora / "mix", 60 * 16 * 64, 64, 16, "test"))
    return Path(build_mix(load_config(path))["spec"])


def test_train_finetune_and_interpolate_on_s3(s3, local_mix, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    run_dir, ft_dir = f"{s3}/runs/train", f"{s3}/runs/finetune"
    (tmp_path / "train.yaml").write_text(json.dumps({
        "kind": "train", "mix": str(local_mix), "run_dir": run_dir, "global_batch_size": 16,
        "duration_tokens": 10 * 16 * 64, "eval_every_tokens": 5 * 16 * 64, "eval_samples": 16,
        "checkpoint_every_tokens": 5 * 16 * 64}))
    (tmp_path / "finetune.yaml").write_text(json.dumps({
        "kind": "finetune", "base_run": run_dir, "run_dir": ft_dir, "duration_tokens": 10 * 16 * 64,
        "eval_every_tokens": 5 * 16 * 64, "eval_samples": 16, "global_batch_size": 16}))
    (tmp_path / "interpolate.yaml").write_text(json.dumps({
        "kind": "interpolate", "start": run_dir, "end": ft_dir, "mix": str(local_mix), "alphas": [0.0, 1.0],
        "eval_samples": 16, "output": f"{s3}/interpolate.csv"}))
    before = tree(tmp_path)
    for command in ("train", "finetune", "interpolate"):
        code, out, err = run_cli(command, tmp_path / f"{command}.yaml")
        assert code == 0, err
    assert tree(tmp_path) == before  # no local run folder, no 's3:' folder
    summary = storage.read_json(f"{run_dir}/summary.json")
    assert (summary["start_batch"], summary["trained_batches"], summary["run_dir"]) == (0, 10, run_dir)
    assert {".spt-owner.json", "config.json", "curves.csv", "summary.json", "logs/metrics-rank0.log",
            "model/model.safetensors", "checkpoints/ba5-rank0.pt", "checkpoints/ba10-rank0.pt",
            "checkpoints/latest-rank0.pt.symlink"} <= set(keys(run_dir))
    # Composer's credential check stays inside the run, not at the bucket's root.
    assert not [k for k in keys(s3) if k.startswith(".credentials")]
    assert storage.read_text(f"{run_dir}/checkpoints/latest-rank0.pt.symlink") == "ba10-rank0.pt"
    finetuned = storage.read_json(f"{ft_dir}/summary.json")
    assert finetuned["test_domain_loss"] > 0 and "model/model.safetensors" in keys(ft_dir)
    assert storage.read_text(f"{s3}/interpolate.csv").startswith("alpha,domain_loss,general_loss")
    # A rerun reuses the finished run; another config is refused, naming what changed.
    code, out, _ = run_cli("train", tmp_path / "train.yaml")
    assert code == 0 and json.loads(out)["reused"] is True
    code, _, err = run_cli("train", tmp_path / "train.yaml", "seed=1")
    assert code == 2 and f"train.run_dir={run_dir!r}: holds `spt train` output made before its config changed" in err


def test_fit_predict_and_plot_read_and_write_s3(s3, tmp_path, monkeypatch, run_cli):
    from scaling_laws import synthetic
    from sweeps import tables

    monkeypatch.chdir(tmp_path)
    folder = f"{s3}/synthetic-sweep"
    tables.write_sweep(folder, *synthetic.spt_sweep(fractions=(0.0, 0.2, 0.5), evaluations=8, seed=1))
    code, out, err = run_cli("fit", "--law", "spt", "--data", folder, "--starts", "4", "--bootstrap", "0",
                             "--out", f"{s3}/fit/fit.json")
    assert code == 0, err
    assert out.splitlines()[-1] == f"wrote {s3}/fit/fit.json"
    code, out, err = run_cli("predict", "--fit", f"{s3}/fit/fit.json", "--data", folder, "--out",
                             f"{s3}/fit/predicted.csv")
    assert code == 0, err
    code, out, err = run_cli("plot", "--fit", f"{s3}/fit/fit.json", "--data", folder, "--out-dir", f"{s3}/fit/plots")
    assert code == 0, err
    assert {"fit.json", "predicted.csv", "plots/loss_curves.png", "plots/optimal_fraction.svg",
            "plots/residuals.png"} <= set(keys(f"{s3}/fit"))
    assert tree(tmp_path) == []
    # A sweep folder on S3 reads like a local one; a missing one is named.
    assert len(tables.load_sweep(folder).results) == 3
    code, _, err = run_cli("fit", "--law", "spt", "--data", f"{s3}/nowhere", "--out", f"{s3}/fit/other.json")
    assert (code, err.strip()) == (2, f"error: {s3}/nowhere: no such file")
    code, _, err = run_cli("fit", "--law", "spt", "--data", folder, "--out", "gs://bucket/fit.json")
    assert (code, err.strip()) == (2, "error: --out='gs://bucket/fit.json': unsupported scheme gs:// (use a local path "
                                      "or s3://BUCKET/PREFIX)")
    assert tree(tmp_path) == []
