"""Places the same Composer trainer on N Ray Train workers (gloo on CPU, nccl on GPU).

The launcher only sets up the distributed environment; :func:`training.trainer.train` does the work in every
worker, exactly as in a single process. The driver claims the run folder first (:func:`training.trainer.start_run`),
so every worker resumes from the same checkpoint or none. Each worker gets ``global_batch_size / num_workers``
sequences per step, so the global batch is the same as a one-process run.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from spt import storage
from spt.cluster import ray_session
from spt.config import TrainConfig
from spt.errors import InputError
from training.layout import RunLayout
from training.tracking import TrackedRun
from training.trainer import RunStart, plan_run, read_mix_spec, start_run, train


def _worker_loop(loop_config: dict) -> None:
    import ray.train
    import torch.distributed as dist

    context = ray.train.get_context()
    config = TrainConfig.model_validate(loop_config["config"])
    rank, world = context.get_world_rank(), context.get_world_size()
    # Composer reads these to join the process group Ray already made.
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(context.get_local_rank()),
        LOCAL_WORLD_SIZE=str(context.get_local_world_size()),
        NODE_RANK=str(context.get_node_rank()),
    )
    spec = read_mix_spec(config.mix)
    tracking = TrackedRun(**loop_config["tracking"]) if loop_config["tracking"] else None
    start = RunStart(spec, plan_run(config, spec), RunLayout(config.run_dir), loop_config["fingerprint"],
                     tracking=tracking)
    summary = train(config, start, world_size=world, rank=rank)
    if dist.is_initialized():
        dist.barrier()
    ray.train.report({k: v for k, v in summary.items() if isinstance(v, (int, float, str)) or v is None})


def worker_resources(config: TrainConfig, device: str) -> tuple[bool, dict[str, float]]:
    """(use_gpu, resources of one Ray Train worker): ``ray.num_cpus`` CPUs and ``ray.num_gpus`` GPUs.

    On a GPU device a worker needs a GPU: ``ray.num_gpus`` 0 (the default) means one per worker.

    Raises:
        InputError: GPUs asked for a run on the CPU.
    """
    gpus = config.ray.num_gpus
    if device == "gpu":
        gpus = gpus or 1.0
    elif gpus:
        raise InputError(f"train.ray.num_gpus={gpus:g}: the run trains on the CPU (device={config.device}); "
                         "set device: gpu or num_gpus: 0")
    return gpus > 0, {"CPU": config.ray.num_cpus, **({"GPU": gpus} if gpus else {})}


def run_on_ray(config: TrainConfig, force: bool = False) -> dict:
    """Trains with ``config.num_workers`` Ray Train workers on the local Ray or ``config.ray.address``.

    Returns:
        The run summary written by rank 0 (or the finished run's, reused).
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from training.composer_run import resolve_device  # expensive: imports composer

    device, _ = resolve_device(config.device, config.precision)
    use_gpu, resources = worker_resources(config, device)
    start = start_run(config, force)
    if start.done is not None:
        return start.done
    # Rank 0 reports progress as plain lines (a worker's stderr is no terminal), forwarded to this driver.
    env_vars = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                "SPT_PROGRESS": os.environ.get("SPT_PROGRESS", "1"),
                **storage.environment(), **config.ray.env_vars}
    runtime_env = {"env_vars": env_vars}
    if config.ray.py_executable:
        runtime_env["py_executable"] = config.ray.py_executable
    # Inside a Ray job the driver has the job's runtime env, which sets some of the same variables
    # (OMP_NUM_THREADS): the two are combined, this run's values winning.
    with ray_session(config.ray.address, runtime_env=runtime_env, local={"runtime_env": runtime_env},
                     combine_job_env=True, log_to_driver=True, configure_logging=False):
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={"config": config.model_dump(mode="json"), "fingerprint": start.fingerprint,
                               "tracking": dataclasses.asdict(start.tracking) if start.tracking else None},
            scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=use_gpu,
                                         resources_per_worker=resources),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            # Ray Train's own bookkeeping (not the run's outputs, which go to run_dir): a local temp folder.
            run_config=RunConfig(name=start.layout.name,
                                 storage_path=str(Path(tempfile.gettempdir()) / "spt-ray-train")),
        )
        trainer.fit()
    summary = storage.read_json(start.layout.summary)
    if summary is None:
        raise RuntimeError(f"Ray Train finished but {start.layout.summary} is missing")
    return summary
