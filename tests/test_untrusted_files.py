"""Files spt did not write, or that changed since it wrote them, neither run code nor train silently (issue 24):
a crafted checkpoint in a run's folder, credentials in a working directory that `spt submit` uploads, and
shards or specs of a built mix that no longer match what `spt mix build` recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spt.config import load_config
from tests.conftest import tree, two_source_mix_yaml

BATCH, SEQ = 8, 64


@pytest.fixture(scope="module")
def mix_spec(tiny_corpora, tmp_path_factory) -> Path:
    """A two-source mix of 20 batches built by spt from the tiny corpora, in a folder of this module's own."""
    from pipelines.mix.build import build_mix

    root = tmp_path_factory.mktemp("untrusted-mix")
    (root / "mix.yaml").write_text(two_source_mix_yaml(tiny_corpora, root / "mix", 20 * BATCH * SEQ, SEQ, BATCH, "m"))
    return Path(build_mix(load_config(root / "mix.yaml"))["spec"])


def train_yaml(folder: Path, mix: Path, run_dir: Path) -> Path:
    fields = {"kind": "train", "mix": str(mix), "run_dir": str(run_dir), "model": {"preset": "tiny"},
              "global_batch_size": BATCH, "eval_every_tokens": 10 * BATCH * SEQ, "eval_samples": 16,
              "tracking": {"enabled": False}}
    path = folder / "train.yaml"
    path.write_text(json.dumps(fields))  # JSON is YAML
    return path


class Payload:
    """Unpickling this creates ``marker``: what a crafted checkpoint could do instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_a_crafted_checkpoint_runs_nothing_and_is_refused(mix_spec, tmp_path, run_cli):
    import torch

    from training.trainer import start_run

    run_dir, marker = tmp_path / "run", tmp_path / "payload-ran"
    config = train_yaml(tmp_path, mix_spec, run_dir)
    start_run(load_config(config))  # the folder is claimed for this config: its marker is genuine
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir()
    torch.save({"state": {"model": {}}, "rng": [Payload(marker)]}, checkpoints / "ba5-rank0.pt")
    (checkpoints / "latest-rank0.pt").symlink_to("ba5-rank0.pt")  # as Composer links its latest checkpoint

    try:
        code, out, err = run_cli("train", config)
    finally:  # whatever the outcome, the payload must not have run
        assert not marker.exists(), "the crafted checkpoint's payload ran"
    assert (code, err.strip()) == (2, (
        f"error: {checkpoints / 'ba5-rank0.pt'}: refused: unpickling it needs exec, which could run code; "
        "checkpoints written by spt hold only tensors and plain values. Rerun with autoresume=false to train from "
        "scratch (it deletes the run's checkpoints)"))
    assert tree(checkpoints) == ["ba5-rank0.pt", "latest-rank0.pt"]  # refused, not deleted: nothing is lost
