"""A real two-node Ray cluster on this machine, with a local S3 server (moto) as the only shared store.

The head (``node_a``) and a second node (``node_b``) are separate ``ray start`` processes with their own Ray temp
dirs, ports, IPs, working directories, ``$TMPDIR`` and mount namespaces (see :func:`tests.ray_head.ray_cluster`):
what one node writes locally, the other does not see. Inputs are uploaded to S3 first, as on a real cluster;
every job is submitted with ``spt submit`` as users do:

- `spt mix build` with tokenizer tasks on both nodes (each task reserves a node's two CPUs);
- `spt sweep` whose two cells run one on each node (the results table says where, in ``node_id``);
- `spt train` with two Ray Train (gloo) workers, one per node, streaming the mix from S3;
- `spt rephrase` (the generate environment's driver and engines) with one vLLM engine on each node, reading its
  input from S3 and committing its units there.

Afterwards the second node holds no outputs. Then the faults: the second node is lost in the middle of a sweep
cell (Ray retries the cell on the head, which resumes it from its S3 checkpoint, and the tables have every cell
once), and in the middle of a Ray Train run (Ray Train waits until there is room for its two workers again; once
the node is back, the same job resumes the run from its last checkpoint on S3).

Where each task, cell and worker ran comes from Ray itself (its state API, and the node ids in the results table),
printed with ``-s``.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from spt import storage
from spt.models import default_model_dir
from tests.conftest import REPO, moto_s3
from tests.ray_head import own_disk_prefix, ray_cluster

BATCH, SEQ = 8, 32
TOKENS_PER_BATCH = BATCH * SEQ
BUCKET = "spt-cluster"
#: What a node may keep in its $TMPDIR, none of it an output: MosaicML Streaming's download cache of remote mixes
#: (S3 shards) and the empty lock files it makes for each dataset, and the module file torch.distributed writes
#: into a temp folder when it is imported. Neither library removes its files.
NODE_TMP_ALLOWED = re.compile(
    r"^(spt-cache/streaming/.*|\d{6}_(barrier|cache)_filelock|tmp[^/]+/_remote_module_non_scriptable\.py)$")


@pytest.fixture
def s3_env(monkeypatch):
    """A moto S3 server on a free port with one bucket; yields the settings every node and client gets."""
    monkeypatch.delenv("SPT_CACHE_DIR", raising=False)  # each node downloads into its own $TMPDIR
    with moto_s3(BUCKET) as env:
        yield env


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
                     "build": {"workers": 2, "batch_documents": 16}, "ray": {"num_cpus": 2},
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
        # An engine reserves 1.5 of a node's 2 CPUs (the expand tasks take 0.5): the two engines run on different
        # nodes. 8 sampled documents in 4 units of 2, 16 new tokens per row.
        "rephrase.yaml": {"kind": "rephrase", "seed": 0,
                          "input": {"paths": [f"{inputs}/general/train.parquet"], "sample_fraction": 0.03},
                          "chunking": {"max_tokens": 128, "max_chunks_per_document": 1},
                          "styles": {"library": str(REPO / "configs/rephrase/styles.yaml"), "per_document": 1,
                                     "weights": {"wiki": 1, "qa": 1}},
                          "engine": {"model": str(default_model_dir()), "max_model_len": 512, "batch_size": 4,
                                     "concurrency": 2},
                          "sampling": {"max_tokens": 16},
                          "output": {"dir": f"{bucket}/rephrase", "documents_per_shard": 2},
                          "ray": {"num_cpus": 1.5}},
        "train.yaml": {"kind": "train", "mix": f"{bucket}/mix/mixes/base/streams.json",
                       "run_dir": f"{bucket}/runs/ray", "global_batch_size": BATCH, "num_workers": 2,
                       "model": {"preset": "tiny"}, "duration_tokens": 20 * TOKENS_PER_BATCH,
                       "eval_every_tokens": 10 * TOKENS_PER_BATCH, "eval_samples": 16,
                       "checkpoint_every_tokens": 5 * TOKENS_PER_BATCH, "optimizer": {"lr": 0.01},
                       "ray": {"num_cpus": 2}},
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


def read_table(location: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(storage.read_text(location)))


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def local_outputs(node, other, job_folder: Path) -> list[str]:
    """What ``node`` wrote outside Ray's own bookkeeping, while it runs: its working directory, its ``$TMPDIR``
    (but caches), the jobs' working directories beyond the uploaded configs, and the other node's folder as
    ``node`` sees it (a write to a path only the other node has lands there, and on a real cluster is lost)."""
    uploaded = set(files_under(job_folder))
    found = [f"work/{f}" for f in files_under(node.work_dir)]
    found += [f"tmp/{f}" for f in files_under(node.tmp_dir) if not NODE_TMP_ALLOWED.match(f)]
    for package in Path(node.temp_dir, "session_latest", "runtime_resources", "working_dir_files").glob("_ray_pkg_*"):
        found += [f"job/{f}" for f in files_under(package) if f not in uploaded]
    found += [f"{other.name}/{f}" for f in files_under(node.seen(other.root))]
    return found


def processes_training(node) -> dict[int, str]:
    """PID -> run_dir of every `spt train` running on ``node`` (read from the config each one was started with)."""
    import psutil

    from tests.ray_head import _processes_of

    runs = {}
    for proc in _processes_of(node.temp_dir):
        try:
            cmdline = proc.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "cli.main" in cmdline and "train" in cmdline:
            config = Path(cmdline[cmdline.index("train") + 1])
            if config.is_file():
                runs[proc.pid] = yaml.safe_load(config.read_text())["run_dir"]
    return runs


def lose_node_mid_run(cluster, run_dirs) -> tuple[str, int]:
    """Waits until a run in ``run_dirs()`` (a function: the run dirs the second node trains now) has a checkpoint
    on S3 and no summary, then loses the second node; returns (that run dir, the batch of its last checkpoint)."""
    deadline = time.time() + 600
    while time.time() < deadline:
        for run_dir in run_dirs():
            link = f"{run_dir}/checkpoints/latest-rank0.pt.symlink"
            if storage.exists(link):
                cluster.stop_second()
                assert not storage.exists(f"{run_dir}/summary.json"), "the run finished before the node was lost"
                return run_dir, int(storage.read_text(link).removeprefix("ba").split("-")[0])
        time.sleep(0.2)
    raise AssertionError("no run on the second node reached a checkpoint within 600 s")


def follow_job(spt_bin: str, cluster, job_folder: Path, *command: str) -> subprocess.Popen:
    """``spt submit --follow`` in the background (it exits with the job's outcome)."""
    args = ["submit", "--address", cluster.address, "--token-file", str(cluster.token_file), "--follow", "--",
            "spt", *command]
    return subprocess.Popen([spt_bin, *args], cwd=job_folder, env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_nodes_outputs_only_on_s3_and_a_lost_node_loses_nothing(s3_env, tiny_corpora, tmp_path, spt_bin):
    if own_disk_prefix([]) is None:
        pytest.skip("this machine cannot give a Ray node a mount namespace of its own (unshare --mount)")
    bucket = f"s3://{BUCKET}"
    upload_inputs(tiny_corpora, bucket)
    jobs = tmp_path / "job"
    write_job_folder(jobs, bucket)
    with ray_cluster(num_cpus=2, env=s3_env) as cluster:
        head, second = cluster.head.node_id, cluster.second.node_id
        print(f"\nnodes: head (node_a) {head}, second (node_b) {second}")

        # The mix: tokenizer tasks on both nodes, shards and spec on S3.
        built = submit(spt_bin, cluster, jobs, "mix", "build", "mix.yaml")
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        tokenizers = ray_state(cluster, "tasks", name="MapBatches(_read_and_tokenize)")
        print("tokenizer tasks (node, state):", sorted((t["node_id"], t["state"]) for t in tokenizers))
        assert {t["node_id"] for t in tokenizers} == {head, second}
        assert {t["state"] for t in tokenizers} == {"FINISHED"}
        assert "streams.json" in keys(f"{bucket}/mix/mixes/base")

        # A sweep whose two cells run one on each node; the table says where.
        swept = submit(spt_bin, cluster, jobs, "sweep", "sweep.yaml")
        assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
        first = read_table(f"{bucket}/sweep/results.csv").set_index("run_id")
        print("sweep cells (node):", first.node_id.to_dict())
        assert list(first.status) == ["ok", "ok"] and set(first.node_id) == {head, second}

        # Ray Train: two gloo workers, one per node, streaming the mix from S3.
        trained = submit(spt_bin, cluster, jobs, "train", "train.yaml")
        assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
        workers = ray_state(cluster, "actors", class_name="RayTrainWorker")
        print("Ray Train workers (node):", sorted(a["node_id"] for a in workers))
        assert sorted(a["node_id"] for a in workers) == sorted([head, second])
        summary = storage.read_json(f"{bucket}/runs/ray/summary.json")
        assert (summary["world_size"], summary["start_batch"], summary["trained_batches"]) == (2, 0, 20)
        assert {"model/model.safetensors", "curves.csv", "checkpoints/latest-rank0.pt.symlink"} <= set(
            keys(f"{bucket}/runs/ray"))

        # Rephrasing on the cluster: the job's driver joins it ($RAY_ADDRESS), one engine per node, output on S3.
        rephrased = submit(spt_bin, cluster, jobs, "rephrase", "rephrase.yaml")
        assert rephrased.returncode == 0, rephrased.stdout[-3000:] + rephrased.stderr[-3000:]
        assert "(generate environment," in rephrased.stdout
        # Ray Data names an actor class after its operator: MapWorker(MapBatches(GenerateStage)).
        engines = [a for a in ray_state(cluster, "actors") if "GenerateStage" in a.get("class_name", "")]
        print("rephrase engines (node):", sorted(a["node_id"] for a in engines))
        assert sorted(a["node_id"] for a in engines) == sorted([head, second])
        manifest = storage.read_json(f"{bucket}/rephrase/manifest.json")
        assert manifest["complete"] and len(manifest["units"]) >= 2
        assert manifest["runs"][-1].get("ray_temp_dir") is None  # the cluster's Ray, not a private one

        # Nothing was left on the second node; everything is on S3.
        left = local_outputs(cluster.second, cluster.head, jobs)
        assert left == [], "\n".join(left)
        for cell in first.index:
            assert {"log.txt", "run/summary.json", "run/model/model.safetensors"} <= set(
                keys(f"{bucket}/sweep/cells/{cell}"))

        # Lose the second node in the middle of a sweep cell: Ray retries the cell on the head, which resumes it
        # from its S3 checkpoint; the finished cells are not rerun, and the tables have every cell once.
        long = 120 * TOKENS_PER_BATCH
        sweeping = follow_job(spt_bin, cluster, jobs, "sweep", "sweep.yaml",
                              f"grid.total_tokens=[{20 * TOKENS_PER_BATCH},{long}]")
        lost_run, checkpoint_batch = lose_node_mid_run(cluster, lambda: processes_training(cluster.second).values())
        out, _ = sweeping.communicate(timeout=900)
        assert sweeping.returncode == 0, out[-5000:]
        assert "2 cells done, 2 to run" in out
        results = read_table(f"{bucket}/sweep/results.csv")
        print("sweep cells after the loss (node):", dict(zip(results.run_id, results.node_id)))
        lost_cell = lost_run.split("/cells/")[1].split("/")[0]
        new_cells = {f"delta{d}-tiny-T{long}-seed0" for d in (0.2, 0.5)}
        assert lost_cell in new_cells
        assert sorted(results.run_id) == sorted({*first.index, *new_cells}) and (results.status == "ok").all()
        by_cell = results.set_index("run_id").node_id
        assert by_cell[lost_cell] == head and all(by_cell[c] == first.node_id[c] for c in first.index)
        resumed = storage.read_json(f"{lost_run}/summary.json")
        assert 0 < checkpoint_batch < 120
        assert (resumed["start_batch"], resumed["trained_batches"]) == (checkpoint_batch, 120 - checkpoint_batch)
        curves = read_table(f"{bucket}/sweep/curves.csv")
        assert not curves.duplicated(["run_id", "tokens"]).any()
        assert sorted(curves.groupby("run_id").size().items()) == sorted(
            [(c, 1) for c in first.index] + [(c, 6) for c in new_cells])

        # Lose the second node (back first) in the middle of a Ray Train run. Ray Train either waits for room for
        # both workers and restarts them once the node is back, or fails the job (both seen, depending on how it
        # classifies the lost worker); then a rerun of the same command resumes. Either way the run resumes from
        # its last checkpoint on S3.
        cluster.start_second()
        # Long enough that the node is lost before the last checkpoint (at 120 batches, one run lost it after).
        run_dir, batches = f"{bucket}/runs/ray-lost", 240
        command = ("train", "train.yaml", f"run_dir={run_dir}", f"duration_tokens={batches * TOKENS_PER_BATCH}")
        training = follow_job(spt_bin, cluster, jobs, *command)
        _, checkpoint_batch = lose_node_mid_run(cluster, lambda: [run_dir])
        cluster.start_second()
        out, _ = training.communicate(timeout=900)
        if training.returncode != 0:
            assert ": FAILED" in out and "node has died" in out, out[-5000:]
            print("Ray Train failed the job when its node was lost; rerunning it")
            rerun = submit(spt_bin, cluster, jobs, *command)
            assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        resumed = storage.read_json(f"{run_dir}/summary.json")
        assert 0 < checkpoint_batch < batches
        assert (resumed["world_size"], resumed["start_batch"], resumed["trained_batches"]) == (
            2, checkpoint_batch, batches - checkpoint_batch)
        restarted = {a["node_id"] for a in ray_state(cluster, "actors", class_name="RayTrainWorker")}
        print(f"Ray Train resumed at batch {checkpoint_batch}; workers ever on nodes {sorted(restarted)}; "
              f"the second node came back as {cluster.second.node_id}")
        assert cluster.second.node_id in restarted and head in restarted
