"""A real two-node Ray cluster on this machine, with a local S3 server (moto) as the only shared store.

The head (``node_a``) and a second node (``node_b``) are separate ``ray start`` processes with their own Ray temp
dirs, ports, IPs (127.0.0.1 and 127.0.0.2), working directories and ``$TMPDIR`` (see :func:`tests.ray_head.ray_cluster`),
so a stage that writes a local path on the second node leaves it in that node's folders. Inputs are uploaded to
S3 first, as on a real cluster; every job is submitted with ``spt submit`` as users do:

- `spt mix build` with tokenizer tasks on both nodes (each task reserves a node's two CPUs);
- `spt sweep` whose two cells run one on each node (the results table says where, in ``node_id``);
- `spt train` with two Ray Train (gloo) workers, one per node, streaming the mix from S3.

Afterwards the second node's folders hold no outputs. Then the faults: the second node is lost in the middle of a
sweep cell (Ray retries the cell on the head, which resumes it from its S3 checkpoint, and the tables have every
cell once), and in the middle of a Ray Train run (the job fails; once the node is back, a rerun of the same
config resumes from the last checkpoint on S3).

Where each task, cell and worker ran is read from Ray itself (its state API and the results table's node ids)
and printed (run with ``-s`` to see it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from spt import storage
from tests.ray_head import ray_cluster

BATCH, SEQ = 8, 32
TOKENS_PER_BATCH = BATCH * SEQ
BUCKET = "spt-cluster"
#: What Ray and its own agents leave in a node's $TMPDIR, and the Streaming download cache of remote mixes
#: (a cache of S3 shards, re-downloadable, never an output).
NODE_TMP_ALLOWED = ("spt-streaming",)


@pytest.fixture
def s3_env():
    """A moto S3 server on a free port with one bucket; yields the settings every node and client gets."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            patch.delenv("AWS_PROFILE", raising=False)
            patch.delenv("SPT_STREAMING_CACHE", raising=False)  # each node downloads into its own $TMPDIR
            boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
            yield env
    finally:
        server.stop()


def upload_inputs(root: Path, bucket: str) -> dict[str, str]:
    """The tiny corpora and tokenizer, copied to S3 (workers on any node read them there)."""
    uploaded = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.parts[-2] in ("domain", "general", "tok")):
        relative = str(path.relative_to(root))
        storage.write_bytes(f"{bucket}/inputs/{relative}", path.read_bytes())
        uploaded[relative] = f"{bucket}/inputs/{relative}"
    return uploaded


def write_job_folder(folder: Path, bucket: str) -> None:
    """The working directory every job uploads: configs only (inputs and outputs are on S3)."""
    inputs = f"{bucket}/inputs/corpora"
    source = lambda name, fraction: {  # noqa: E731
        "name": name, "role": name, "paths": [f"{inputs}/{name}/train.parquet"],
        "heldout_paths": [f"{inputs}/{name}/heldout.parquet"], **({"fraction": fraction} if fraction else {})}
    configs = {
        # Each tokenizer task reserves a whole node (2 CPUs), so the two concurrent tasks run on different nodes.
        "mix.yaml": {"kind": "mix", "name": "base", "output_dir": f"{bucket}/mix", "tokenizer": f"{bucket}/inputs/tok",
                     "total_tokens": 40 * TOKENS_PER_BATCH, "seq_len": SEQ, "global_batch_size": BATCH,
                     "build": {"workers": 2, "batch_documents": 16}, "ray": {"address": "auto", "num_cpus": 2},
                     "sources": [source("domain", 0.3), source("general", None)]},
        "sweep-train.yaml": {"kind": "train", "mix": "set-per-cell", "run_dir": "set-per-cell",
                             "global_batch_size": BATCH, "eval_every_tokens": 20 * TOKENS_PER_BATCH,
                             "eval_samples": 16, "checkpoint_every_tokens": 10 * TOKENS_PER_BATCH,
                             "optimizer": {"lr": 0.01}},
        # A cell reserves a whole node: the two cells in flight run on different nodes.
        "sweep.yaml": {"kind": "sweep", "name": "cluster", "mix": "mix.yaml", "train": "sweep-train.yaml",
                       "grid": {"domain_fraction": [0.2, 0.5], "preset": ["tiny"],
                                "total_tokens": [20 * TOKENS_PER_BATCH]},
                       "output_dir": f"{bucket}/sweep", "resources": {"num_cpus": 2}, "max_concurrent": 2,
                       "max_retries": 1},
        # A worker reserves a whole node: the two gloo workers run on different nodes.
        "train.yaml": {"kind": "train", "mix": f"{bucket}/mix/mixes/base/streams.json",
                       "run_dir": f"{bucket}/runs/ray", "global_batch_size": BATCH, "num_workers": 2,
                       "model": {"preset": "tiny"}, "duration_tokens": 20 * TOKENS_PER_BATCH,
                       "eval_every_tokens": 10 * TOKENS_PER_BATCH, "eval_samples": 16,
                       "checkpoint_every_tokens": 5 * TOKENS_PER_BATCH, "optimizer": {"lr": 0.01},
                       "ray": {"address": "auto", "num_cpus": 2}},
    }
    folder.mkdir()
    for name, config in configs.items():
        (folder / name).write_text(yaml.safe_dump(config, sort_keys=False))


def submit(spt_bin: str, cluster, job_folder: Path, *command: str, follow: bool = True):
    """``spt submit [--follow] -- spt COMMAND`` from the job folder, as a user on another machine runs it."""
    args = ["submit", "--address", cluster.address, "--token-file", str(cluster.token_file),
            *(["--follow"] if follow else []), "--", "spt", *command]
    return subprocess.run([spt_bin, *args], cwd=job_folder, env=cluster.env, capture_output=True, text=True,
                          timeout=900)


def keys(location: str) -> list[str]:
    return [e.relative for e in storage.list_files(location, hidden=True)]


def ray_state(cluster, what: str, **filters) -> list[dict]:
    """Ray's record of tasks or actors (``ray list tasks|actors``), dead ones included, with their node ids."""
    import sys

    args = [str(Path(sys.executable).parent / "ray"), "list", what, "--format=json", "--detail", "--limit=10000",
            f"--address={cluster.address}"]
    for key, value in filters.items():
        args += ["--filter", f"{key}={value}"]
    listed = subprocess.run(args, env=cluster.env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    return json.loads(listed.stdout) if listed.stdout.lstrip().startswith("[") else []  # or "No resource ..."


@pytest.mark.slow
def test_two_nodes_outputs_only_on_s3_and_a_lost_node_loses_nothing(s3_env, tiny_corpora, tmp_path, spt_bin):
    bucket = f"s3://{BUCKET}"
    upload_inputs(tiny_corpora, bucket)
    jobs = tmp_path / "job"
    write_job_folder(jobs, bucket)
    with ray_cluster(num_cpus=2, env=s3_env) as cluster:
        head, second = cluster.head.node_id, cluster.second.node_id
        print(f"\nnodes: head (node_a) {head}, second (node_b) {second}")

        built = submit(spt_bin, cluster, jobs, "mix", "build", "mix.yaml")
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        tokenizers = ray_state(cluster, "tasks", name="MapBatches(_read_and_tokenize)")
        print("tokenizer tasks:", sorted((t["node_id"], t["state"]) for t in tokenizers))


        trained = submit(spt_bin, cluster, jobs, "train", "train.yaml")
        print(trained.stdout[-3000:], trained.stderr[-3000:])
        workers = ray_state(cluster, "actors", class_name="RayTrainWorker")
        print("workers:", sorted((a["node_id"], a["state"]) for a in workers))
        for node in (cluster.head, cluster.second):
            print(node.name, sorted(str(p.relative_to(node.root)) for p in node.root.rglob("*")
                                    if "/logs/" not in str(p) and "sockets" not in str(p)))
