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


#: Credentials a working directory may hold (each an example of a pattern spt never uploads).
PLANTED_SECRETS = {".env": "AWS_SECRET_ACCESS_KEY=x\n", ".aws/credentials": "[default]\n", "id_rsa": "-----BEGIN\n",
                   ".ray/auth_token": "token\n", "keys/server.pem": "-----BEGIN\n", ".netrc": "machine h\n"}


def zipped_by_ray(folder: Path, tmp_path: Path) -> list[str]:
    """The files Ray's own packaging puts in a job's working-directory package made from ``folder`` (what
    ``JobSubmissionClient.submit_job`` uploads; .gitignore followed, as Ray does by default)."""
    import zipfile

    from ray._private.runtime_env.packaging import create_package

    package = tmp_path / "package.zip"
    package.unlink(missing_ok=True)
    create_package(str(folder), package, include_gitignore=True)
    return sorted(n for n in zipfile.ZipFile(package).namelist() if not n.endswith("/"))


@pytest.mark.parametrize("git", [True, False], ids=["git work tree", "plain folder"])
def test_submit_uploads_code_and_configs_never_credentials(git, tmp_path, run_cli):
    import subprocess

    work = tmp_path / "work"
    code = {"sweep.yaml": "kind: sweep\nmix: base/mix.yaml\ntrain: base/train.yaml\n", "base/mix.yaml": "kind: mix\n",
            "base/train.yaml": "kind: train\n", "lib/helper.py": "x = 1\n", ".gitignore": "base/\nscratch.txt\n"}
    for relative, text in {**code, **PLANTED_SECRETS, "scratch.txt": "notes\n", "outputs/run/x.pt": "x"}.items():
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).write_text(text)
    (work / "link-to-home").symlink_to(tmp_path / ".aws-elsewhere")
    (tmp_path / ".aws-elsewhere").write_text("[default]\n")
    if git:  # the worst case: the credentials are even tracked
        subprocess.run(["git", "init", "-q", str(work)], check=True)
        subprocess.run(["git", "-C", str(work), "add", ".", *PLANTED_SECRETS], check=True)

    expected = ["base/mix.yaml", "base/train.yaml", "lib/helper.py", "sweep.yaml"]
    command = ["--", "spt", "sweep", "sweep.yaml"]
    status, out, err = run_cli("submit", "--address", "http://127.0.0.1:1", "--working-dir", work, "--python",
                               "/cluster/python", "--dry-run", *command)
    sizes = {relative: len(code[relative]) for relative in expected}
    basis = ("files git tracks or would track (.gitignore followed)" if git
             else "every file not excluded or ignored") + " and the files the command names"
    assert (status, err) == (0, "")
    assert out.splitlines()[3:] == [
        f"upload ({basis}):", *(f"  {f'{size} B':>9}  {relative}" for relative, size in sizes.items()),
        f"upload: 4 files, {sum(sizes.values())} B",
        *(f"not uploaded: {relative} (credentials)" for relative in sorted(PLANTED_SECRETS)),
        "not uploaded: link-to-home (a link out of the folder)"]
    # What Ray zips and uploads for the job: exactly those files, no credential among them.
    from spt.cluster import upload_for
    from spt.commands.sweep import UPLOAD_EXCLUDES

    with upload_for(work, command, UPLOAD_EXCLUDES).staged() as staged:
        assert zipped_by_ray(staged, tmp_path) == expected
