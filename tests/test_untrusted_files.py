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
def ray_local():
    """One local Ray for the module's mix builds (its start costs seconds)."""
    import ray

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def mix_yaml(tiny_corpora: Path, folder: Path) -> Path:
    """A two-source mix of 20 batches of the tiny corpora, built into ``folder``/mix."""
    path = folder / "mix.yaml"
    path.write_text(two_source_mix_yaml(tiny_corpora, folder / "mix", 20 * BATCH * SEQ, SEQ, BATCH, "m"))
    return path


@pytest.fixture(scope="module")
def mix_spec(tiny_corpora, ray_local, tmp_path_factory) -> Path:
    """The module's mix, built by spt in a folder of its own (tests that change it change a copy)."""
    from pipelines.mix.build import build_mix

    return Path(build_mix(load_config(mix_yaml(tiny_corpora, tmp_path_factory.mktemp("untrusted-mix"))))["spec"])


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
    from cli.sweep import UPLOAD_EXCLUDES
    from spt.upload import upload_for

    with upload_for(work, command, UPLOAD_EXCLUDES).staged() as staged:
        assert zipped_by_ray(staged, tmp_path) == expected


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def flip_a_token(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


def edit_samples(index: Path) -> None:
    """Changes a digit of the first shard's sample count in an MDS index, as a hand edit would (same size)."""
    import re

    text = index.read_text()
    index.write_text(re.sub(r'("samples": ?)(\d)', lambda m: m[1] + str((int(m[2]) + 1) % 10), text, count=1))


def other_tokenizer(spec: dict, folder: Path) -> None:
    """Points the spec at a copy of its tokenizer whose tokenizer.json has one more byte."""
    import shutil

    copy = shutil.copytree(spec["tokenizer"], folder / "tok-edited")
    (copy / "tokenizer.json").write_text((copy / "tokenizer.json").read_text() + " ")
    spec["tokenizer"] = str(copy)


#: (what changes after the build, how, the problem `spt train` reports). In messages, {domain} and {general} are
#: the sources' folders and {tok} the edited tokenizer.
CHANGES = [
    ("truncated shard", lambda mix, spec: truncate(next(mix.glob("sources/domain-*/train/shard.00000.mds"))),
     "{domain}/train/shard.00000.mds is {size:,} bytes where source.json recorded {recorded:,} (source 'domain' "
     "changed after the build); rerun `spt mix build` with the mix's config to build it again"),
    ("changed token", lambda mix, spec: flip_a_token(next(mix.glob("sources/general-*/train/shard.00000.mds"))),
     "{general}/train/shard.00000.mds has other bytes than source.json recorded (its sha256 differs) (source "
     "'general' changed after the build); rerun `spt mix build` with the mix's config to build it again"),
    ("edited index", lambda mix, spec: edit_samples(next(mix.glob("sources/general-*/heldout/index.json"))),
     "{general}/heldout/index.json has other bytes than source.json recorded (its sha256 differs) (source "
     "'general' changed after the build); rerun `spt mix build` with the mix's config to build it again"),
    ("edited choose", lambda mix, spec: spec["streams"][0].update(choose=spec["streams"][0]["choose"] + 1),
     "domain.choose=49 where manifest.json says 48 (streams.json was changed after the build); rerun `spt mix "
     "build` with the mix's config to write it again"),
    ("edited tokenizer_sha256", lambda mix, spec: spec.update(tokenizer_sha256="0" * 64),
     "source 'domain' ({domain}) was not built for this streams spec (source.json names source 'domain', "
     "tokenizer sha256 {tokenizer_sha256}; streams.json says 'domain', " + "0" * 64 + "); rerun `spt mix build` "
     "with the mix's config to write it again"),
    ("other tokenizer", lambda mix, spec: other_tokenizer(spec, mix),
     "the tokenizer {tok} changed since source 'domain' was tokenized (sha256 {edited_sha256}, source.json "
     "recorded {tokenizer_sha256}); rerun `spt mix build` with the mix's config to tokenize the sources with it"),
]


@pytest.mark.parametrize("change,message", [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_a_mix_that_changed_after_its_build_is_refused_before_training(change, message, mix_spec, tmp_path, run_cli):
    import hashlib
    import shutil

    mix = Path(shutil.copytree(mix_spec.parents[2], tmp_path / "mix"))  # streams.json holds relative paths
    spec_path = mix / "mixes" / "m" / "streams.json"
    domain, general = (next(mix.glob(f"sources/{name}-*")).resolve() for name in ("domain", "general"))
    recorded = json.loads((domain / "source.json").read_text())
    intact_size = (domain / "train/shard.00000.mds").stat().st_size
    edit_json(spec_path, lambda spec: change(mix, spec))
    spec = json.loads(spec_path.read_text())
    tok = Path(spec["tokenizer"])
    config = train_yaml(tmp_path, spec_path, tmp_path / "run")

    code, out, err = run_cli("train", config)
    assert (code, err.strip()) == (2, f"error: mix={str(spec_path)!r}: " + message.format(
        domain=domain, general=general, tok=tok, tokenizer_sha256=recorded["tokenizer"]["sha256"],
        edited_sha256=hashlib.sha256((tok / "tokenizer.json").read_bytes()).hexdigest(),
        size=(domain / "train/shard.00000.mds").stat().st_size,
        recorded=intact_size))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_build_reuses_only_sources_whose_files_match_and_rebuilds_a_changed_one(mix_spec, tiny_corpora, tmp_path,
                                                                                 run_cli):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(mix_spec.parents[2], folder / "mix")
    shard = next((folder / "mix").glob("sources/domain-*/train/shard.00000.mds")).resolve()
    intact = shard.read_bytes()
    truncate(shard)

    code, out, err = run_cli("mix", "build", mix_yaml(tiny_corpora, folder))
    assert code == 0
    assert f"mix: source 'domain': {shard} is {len(intact) - 100:,} bytes where source.json recorded " \
           f"{len(intact):,}; building it again" in err
    assert shard.read_bytes() == intact  # built again (the build is deterministic), not reused
    from pipelines.mix.streams import read_spec
    from pipelines.mix.verify import check_mix

    check_mix(read_spec(folder / "mix" / "mixes" / "m" / "streams.json"))
