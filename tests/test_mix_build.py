"""`spt mix build` with a real local Ray and real MDS shards, read back through Streaming.

One Ray for the module (its start costs seconds). The corpus has known counts (see test_mix_corpus.py) and each
source has its own token ids, so a sample read back tells which source it came from.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipelines.mix.streams import eval_dataset, read_spec, train_dataset
from spt.errors import InputError
from tests.test_mix_corpus import SEQ_LEN, corpus, mix_dict, word_ids, write_mix  # noqa: F401  (module fixture)

ASKED_SAMPLES = {"domain": 38, "general": 75, "synthetic": 12}
UNIQUE_SAMPLES = {"domain": 30, "general": 200, "synthetic": 30}


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def built(corpus, ray_local, tmp_path_factory):
    """The test mix built once through the CLI."""
    from cli.main import main

    root = tmp_path_factory.mktemp("mix-built")
    path = write_mix(root / "mix.yaml", mix_dict(corpus, root / "out"))
    assert main(["mix", "build", str(path)]) == 0
    return root


def source_of(sample: np.ndarray) -> str:
    """The source a packed sample came from, by its token ids (EOS = 0 belongs to every source)."""
    words = {int(i) for i in sample if i != 0}
    owners = {name for name, prefix in (("domain", "d"), ("general", "g"), ("synthetic", "s"))
              if words & set(word_ids(prefix))}
    assert len(owners) == 1, words
    return owners.pop()


def read_epoch(dataset) -> Counter:
    counts: Counter = Counter()
    for sample in dataset:
        tokens = sample["tokens"]
        assert tokens.shape == (SEQ_LEN,) and tokens.dtype == np.uint16
        counts[source_of(tokens)] += 1
    return counts


def test_one_epoch_realizes_the_asked_tokens_per_source(built):
    spec = read_spec(built / "out" / "mixes" / "test" / "streams.json")
    assert (spec["seq_len"], spec["total_tokens"], spec["vocab_size"], spec["eos_token_id"]) == (16, 2000, 203, 0)
    assert {s["name"]: (s["choose"], s["unique_samples"]) for s in spec["streams"]} == {
        name: (ASKED_SAMPLES[name], UNIQUE_SAMPLES[name]) for name in ASKED_SAMPLES
    }
    dataset = train_dataset(spec, shuffle_seed=3, batch_size=4, num_canonical_nodes=1)
    counts = read_epoch(dataset)
    assert {name: n * SEQ_LEN for name, n in counts.items()} == {"domain": 608, "general": 1200, "synthetic": 192}
    manifest = json.loads((built / "out" / "mixes" / "test" / "manifest.json").read_text())
    for source in manifest["sources"]:
        assert source["realized_tokens"] == counts[source["name"]] * SEQ_LEN
        assert abs(source["difference_tokens"]) < SEQ_LEN and source["built_now"]


def test_ray_data_settings_are_restored_after_the_build(built):
    from ray.data import DataContext

    context = DataContext.get_current()  # process-wide: other stages in this process must not inherit ours
    assert context.execution_options.preserve_order is False and context.enable_progress_bars is True
    assert context.get_config("backpressure_policies.enabled", "unset") == "unset"


def test_held_out_shards_per_source(built):
    spec = read_spec(built / "out" / "mixes" / "test" / "streams.json")
    assert {e["name"]: e["samples"] for e in spec["eval"]} == {"domain": 8, "general": 6}
    # train and eval datasets live side by side: every source split has its own local directory
    train = train_dataset(spec, shuffle_seed=0, batch_size=4, num_canonical_nodes=1)
    domain = [s["tokens"] for s in eval_dataset(spec, "domain", batch_size=4)]
    general = [s["tokens"] for s in eval_dataset(spec, "general", batch_size=4)]
    assert len(domain) == 8 and {source_of(t) for t in domain} == {"domain"}
    assert len(general) == 6 and {source_of(t) for t in general} == {"general"}
    assert len(train) == 125
    with pytest.raises(InputError) as info:
        eval_dataset(spec, "synthetic")
    assert info.value.problems == ["mix 'test': no held-out samples for source 'synthetic' (sources with some: domain, general)"]


def test_packing_joins_documents_with_eos_and_wastes_nothing(built):
    from streaming import StreamingDataset

    from pipelines.mix.streams import created

    spec = read_spec(built / "out" / "mixes" / "test" / "streams.json")
    local = next(s["local"] for s in spec["streams"] if s["name"] == "domain")
    dataset = created(lambda: StreamingDataset(local=local, shuffle=False, batch_size=4))
    stream = np.concatenate([s["tokens"] for s in dataset])
    # 12 documents of 40 words, each followed by EOS: 492 tokens, the first 480 kept as 30 samples
    assert len(stream) == 480 and int((stream == 0).sum()) == 11
    assert stream[40] == 0 and stream[81] == 0 and stream[0] != 0
    index = json.loads((Path(local) / "index.json").read_text())
    assert index["shards"][0]["column_encodings"] == ["ndarray:uint16"]
    assert index["shards"][0]["column_names"] == ["tokens"]


def test_rebuild_with_the_same_seed_is_byte_identical(built, corpus, tmp_path):
    from cli.main import main

    path = write_mix(tmp_path / "mix.yaml", mix_dict(corpus, tmp_path / "out"))
    assert main(["mix", "build", str(path)]) == 0
    first, second = built / "out" / "sources", tmp_path / "out" / "sources"
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
    assert sum(name.endswith(".mds") for name in names) >= 6  # several shards per source (4 KiB shards)
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_new_delta_reuses_the_sources_and_only_writes_a_spec(built, corpus):
    from pipelines.mix.build import build_mix
    from spt.config import load_config

    sources = built / "out" / "sources"
    stamps = {p: p.stat().st_mtime_ns for p in sources.rglob("*")}
    config = load_config(built / "mix.yaml", ["name=delta-50", "sources[0].fraction=0.5", "sources[0].max_epochs=4",
                                              "sources[2].fraction=0.0"])
    report = build_mix(config)
    assert report["built"] == [] and report["reused"] == ["domain", "general", "synthetic"]
    assert report["tokenized_documents"] == 0  # neither the plan nor the build tokenized anything
    assert {p: p.stat().st_mtime_ns for p in sources.rglob("*")} == stamps
    spec = read_spec(report["spec"])
    assert Path(report["spec"]) == built / "out" / "mixes" / "delta-50" / "streams.json"
    assert {s["name"]: s["choose"] for s in spec["streams"]} == {"domain": 63, "general": 62, "synthetic": 0}
    counts = read_epoch(train_dataset(spec, shuffle_seed=1, batch_size=5, num_canonical_nodes=1))
    assert counts == {"domain": 63, "general": 62}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def s3_server(monkeypatch):
    """A local S3-compatible server (moto) on 127.0.0.1, stopped after the test."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3_client().create_bucket(Bucket="spt")
    yield "s3://spt"
    server.stop()


def s3_client():
    """A boto3 client of the test's server: a second S3 implementation to check what spt wrote."""
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])


def test_build_to_s3_and_stream_back(s3_server, corpus, ray_local, tmp_path, run_cli):
    # the synthetic source is read from S3 too (by the Ray workers)
    client = s3_client()
    for shard in sorted((corpus["root"] / "rephrase").iterdir()):
        client.upload_file(str(shard), "spt", f"inputs/rephrase/{shard.name}")
    config = mix_dict(corpus, f"{s3_server}/mix", cache_dir=str(tmp_path / "cache"))
    config["sources"][2]["paths"] = [f"{s3_server}/inputs/rephrase/"]
    code, out, err = run_cli("mix", "build", write_mix(tmp_path / "mix.yaml", config))
    assert code == 0, err
    assert out.splitlines()[-1] == "streams spec: s3://spt/mix/mixes/test/streams.json"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="spt", Prefix="mix/")["Contents"]]
    assert sum(k.endswith("/source.json") for k in keys) == 3 and "mix/mixes/test/manifest.json" in keys
    assert not any(Path(tmp_path / "cache").rglob("*.mds"))  # shards went up, nothing left behind locally
    spec = read_spec("s3://spt/mix/mixes/test/streams.json", cache_dir=str(tmp_path / "streaming"))
    assert all(s["remote"].startswith("s3://spt/mix/sources/") for s in spec["streams"])
    train = train_dataset(spec, shuffle_seed=0, batch_size=4, num_canonical_nodes=1)
    assert read_epoch(train) == ASKED_SAMPLES
    assert len([s for s in eval_dataset(spec, "domain", batch_size=4)]) == 8
    # remote streams: a second live dataset over the same mix reads through its own download cache
    other = read_spec("s3://spt/mix/mixes/test/streams.json", cache_dir=str(tmp_path / "streaming-2"))
    assert read_epoch(train_dataset(other, shuffle_seed=0, batch_size=4, num_canonical_nodes=1)) == ASKED_SAMPLES
    del train
    # a second mix over the same S3 sources only writes a spec
    code, out, err = run_cli("mix", "build", tmp_path / "mix.yaml", "name=more-domain", "sources[0].fraction=0.4")
    assert code == 0, err
    assert "sources built: none; reused: domain, general, synthetic" in out.splitlines()
    assert os.environ["S3_ENDPOINT_URL"].startswith("http://127.0.0.1:")


def test_dataset_creation_holds_the_machine_lock_and_a_lone_process_retries_a_taken_prefix():
    """Streaming's shared-memory race (two processes picking one prefix) cannot happen between spt processes: a
    dataset is created holding a lock that any other process on the machine sees taken."""
    import fcntl

    from pipelines.mix.streams import created, machine_lock_path

    def lock_is_taken() -> bool:
        probe = subprocess.run([sys.executable, "-c", (
            "import fcntl, os, sys\n"
            f"handle = os.open({machine_lock_path()!r}, os.O_RDWR)\n"
            "try:\n    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)")])
        return probe.returncode == 3

    attempts = []

    def make():
        attempts.append(lock_is_taken())
        if len(attempts) == 1:  # another process took the prefix Streaming picked
            raise FileExistsError("/000042_locals")
        return "dataset"

    assert created(make) == "dataset"
    assert attempts == [True, True]  # held while creating, both times
    assert not lock_is_taken()  # and released
    handle = os.open(machine_lock_path(), os.O_RDWR)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # this process can take it too
    os.close(handle)
