"""The two environments: the CLI, stage dispatch to the generate environment, and the local SmolLM2 folder."""

from __future__ import annotations

import json
import subprocess

import pytest

from spt import environments, storage
from spt.models import MANIFEST, default_model_dir, verify_model_dir


def test_help_lists_every_command(spt_bin):
    proc = subprocess.run([spt_bin, "--help"], capture_output=True, text=True, check=True)
    for command in ("corpora", "tokenizer", "model"):
        assert command in proc.stdout


def test_train_environment_is_current_and_generate_is_not():
    assert environments.is_current("train")
    assert not environments.is_current("generate")
    assert environments.python_for("generate").exists()


def test_missing_environment_is_a_clear_error(monkeypatch, tmp_path, run_cli):
    monkeypatch.setenv("SPT_GENERATE_PYTHON", str(tmp_path / "nope" / "python"))
    code, _, err = run_cli("model", "check")
    assert code == 2
    assert err.strip().endswith(
        f"the generate environment is not built ({tmp_path / 'nope' / 'python'} is missing): "
        "run scripts/setup.sh generate"
    )


def test_model_manifest_detects_changed_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    files = {p.name: storage.sha256(str(p)) for p in tmp_path.iterdir()}
    assert not verify_model_dir(tmp_path)
    storage.write_json(str(tmp_path / MANIFEST), {"files": files})
    assert verify_model_dir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"weightz")
    assert not verify_model_dir(tmp_path)


def test_local_smollm2_folder_verifies():
    assert verify_model_dir(default_model_dir())
    config = json.loads((default_model_dir() / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30


@pytest.mark.vllm
@pytest.mark.slow  # an engine start of its own (~40 s); the dispatch is also covered by test_rephrase_run's runs
def test_generate_stage_runs_in_generate_environment_with_real_vllm(spt_bin):
    """`spt model check` is a generate stage: from the train environment it re-runs itself under the generate
    interpreter, loads SmolLM2 in vLLM's CPU build and generates."""
    proc = subprocess.run([spt_bin, "model", "check", "--max-tokens", "16"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "running in the generate environment" in proc.stderr
    reply = json.loads(proc.stdout.strip().splitlines()[-1])
    assert reply["model"] == str(default_model_dir())
    assert len(reply["reply"].split()) >= 3
