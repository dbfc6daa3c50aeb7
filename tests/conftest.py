"""Shared fixtures. Tests run in the train environment; generate-stage tests reach vLLM through spt's own
environment dispatch, exactly as users do."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests never reach the Hugging Face Hub, and `datasets` prepares local files in a cache of this test run's own
# (set before anything imports `datasets` or `huggingface_hub`, which read these once; subprocesses inherit them).
os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="spt-test-hf-datasets-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)


#: The order `make test` hands test files to its two processes (pytest-xdist, `--dist loadfile
#: --no-loadscope-reorder`): the longest files first (measured with --durations), since a run that ends with one
#: long file alone on one core takes longer. xdist gives each process two files at the start and then one whenever
#: one is done, so the second longest opens the second process and a short file sits behind the longest: the first
#: process runs test_rephrase_run.py (about 5 min) and test_tokenizer.py while the second runs the next two.
SCHEDULE_FIRST = ["test_rephrase_run.py", "test_training.py", "test_tokenizer.py", "test_sweep.py",
                  "test_s3_pipeline.py", "test_scaling_coverage.py", "test_export.py", "test_generate_stage.py",
                  "test_storage.py"]


def pytest_collection_modifyitems(config, items):
    """The files of :data:`SCHEDULE_FIRST` first (in that order), every file's tests in their own order."""
    rank = {name: index for index, name in enumerate(SCHEDULE_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def run_cli(capsys):
    """Runs ``spt ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from cli.main import main

    def run(*args: str):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def spt_bin() -> str:
    """The installed console script of the running environment."""
    return str(Path(sys.executable).parent / "spt")


@contextmanager
def moto_s3(bucket: str, **extra_env: str):
    """A moto S3 server on a free port of 127.0.0.1 (in this process) with one bucket, and the environment a user
    would set for it (plus ``extra_env``) while it runs; yields that environment."""
    import logging
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}", **extra_env}
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            patch.delenv("AWS_PROFILE", raising=False)
            boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"]).create_bucket(Bucket=bucket)
            yield env
    finally:
        server.stop()


def tree(path: Path) -> list[str]:
    """Every path under ``path`` (empty when it does not exist): to assert that nothing was written."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    # Two cores: keep BLAS/torch from oversubscribing when tests start subprocesses.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))


@pytest.fixture(scope="session")
def tiny_corpora(tmp_path_factory) -> Path:
    """Small sample corpora and a 512-token tokenizer, built by spt itself (shared by the mix-consuming tests).

    Layout: ``corpora/{domain,general}/{train,heldout}.parquet`` and ``tok/``.
    """
    from pipelines.corpora import build_corpora
    from pipelines.tokenizer import train_tokenizer
    from spt.config import load_config

    root = tmp_path_factory.mktemp("tiny")
    corpora = root / "corpora"
    build_corpora(load_config(REPO / "configs/corpora/quickstart.yaml", [
        f"output_dir={corpora}", "domain.max_documents=40", "general.max_documents=300", "heldout_fraction=0.1"]))
    train_tokenizer(load_config(REPO / "configs/tokenizer/quickstart.yaml", [
        f"inputs=[{corpora}/domain/train.parquet,{corpora}/general/train.parquet]", f"output_dir={root}/tok",
        "vocab_size=512"]))
    return root


def built_base_mix(root: Path, work: Path, out: Path, total_tokens: int, seq_len: int, batch: int,
                   name: str) -> Path:
    """``work/mix.yaml``, a :func:`two_source_mix_yaml` writing to ``out``, with its sources built (a sweep's
    cells then only write new streams specs); returns the config's path."""
    from pipelines.mix.build import build_mix
    from spt.config import load_config

    path = work / "mix.yaml"
    path.write_text(two_source_mix_yaml(root, out, total_tokens, seq_len, batch, name))
    build_mix(load_config(path))
    return path


def finetuning_bases(root: Path, work: Path, total_tokens: int, seq_len: int, batch: int) -> None:
    """What a sweep that finetunes starts from: :func:`built_base_mix` (into ``work/mix``), ``work/train.yaml`` (a
    constant rate without warmup, so every budget can be snapshotted; an evaluation every 5 batches) and
    ``work/finetune.yaml`` (4 batches at most, an evaluation every 2, stopping after one without improvement)."""
    built_base_mix(root, work, work / "mix", total_tokens, seq_len, batch, "base")
    (work / "train.yaml").write_text(json.dumps({
        "kind": "train", "mix": "set-per-cell", "run_dir": "set-per-cell", "global_batch_size": batch,
        "eval_every_tokens": 5 * batch * seq_len, "eval_samples": 16, "optimizer": {"lr": 0.01},
        "schedule": {"kind": "constant", "warmup_fraction": 0.0}}))
    (work / "finetune.yaml").write_text(json.dumps({
        "kind": "finetune", "base_run": "set-per-cell", "run_dir": "set-per-cell",
        "duration_tokens": 4 * batch * seq_len, "eval_every_tokens": 2 * batch * seq_len, "global_batch_size": batch,
        "eval_samples": 16, "patience": 1, "optimizer": {"lr": 0.01}}))


def two_source_mix_yaml(root: Path, out: Path, total_tokens: int, seq_len: int, batch: int, name: str,
                        domain_fraction: float = 0.3) -> str:
    """A mix of the tiny corpora: the Python-source domain at ``domain_fraction`` and English for the rest."""
    corpora = root / "corpora"
    return f"""
kind: mix
name: {name}
output_dir: {out}
tokenizer: {root}/tok
total_tokens: {total_tokens}
seq_len: {seq_len}
global_batch_size: {batch}
sources:
  - {{name: domain, role: domain, paths: [{corpora}/domain/train.parquet],
      heldout_paths: [{corpora}/domain/heldout.parquet], fraction: {domain_fraction}}}
  - {{name: general, role: general, paths: [{corpora}/general/train.parquet],
      heldout_paths: [{corpora}/general/heldout.parquet], fraction: remainder}}
build: {{workers: 1}}
"""
