"""Places the same Composer trainer on N Ray Train workers (gloo on CPU, nccl on GPU).

The launcher only sets up the distributed environment; :func:`training.trainer.run_training` does the work in
every worker, exactly as in a single process. Each worker gets ``global_batch_size / num_workers`` sequences per
step, so the global batch is the same as a one-process run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from spt.config import TrainConfig


def _worker_loop(loop_config: dict) -> None:
    import ray.train
    import torch.distributed as dist

    from training.trainer import run_training

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
    summary = run_training(config, world_size=world, rank=rank)
    if dist.is_initialized():
        dist.barrier()
    ray.train.report({k: v for k, v in summary.items() if isinstance(v, (int, float, str)) or v is None})


def run_on_ray(config: TrainConfig) -> dict:
    """Trains with ``config.num_workers`` Ray Train workers on the local Ray or ``config.ray.address``.

    Returns:
        The run summary written by rank 0.
    """
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipelines.io import read_json
    from training.trainer import resolve_device

    device, _ = resolve_device(config.device, config.precision)
    use_gpu = device == "gpu"
    env_vars = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "SPT_PROGRESS": "0", **config.ray.env_vars}
    runtime_env = {"env_vars": env_vars}
    if config.ray.py_executable:
        runtime_env["py_executable"] = config.ray.py_executable
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=config.ray.address, runtime_env=runtime_env, include_dashboard=False,
                 log_to_driver=True, configure_logging=False)
    try:
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={"config": config.model_dump(mode="json")},
            scaling_config=ScalingConfig(
                num_workers=config.num_workers,
                use_gpu=use_gpu,
                resources_per_worker={"CPU": config.ray.num_cpus, **({"GPU": 1} if use_gpu else {})},
            ),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            run_config=RunConfig(
                name=Path(config.run_dir).name,
                storage_path=str(Path(tempfile.gettempdir()) / "spt-ray-train"),
            ),
        )
        trainer.fit()
    finally:
        if started_here:
            ray.shutdown()
    summary = read_json(Path(config.run_dir) / "summary.json")
    if summary is None:
        raise RuntimeError(f"Ray Train finished but {config.run_dir}/summary.json is missing")
    return summary
