"""The cells of a sweep: the grid, each cell's configs and fingerprint, and what a cell's Ray task runs.

A cell is identified by its run id (its grid values) and by a fingerprint of what it computes: the cell's mix,
train and finetune configs (the base configs with the cell's values set, without paths and speed settings) and the
content of the base mix's inputs. The fingerprint lives in the cell folder's ``.spt-owner.json``, so a rerun of a
sweep whose configs or inputs changed finds the cells that no longer match (see :mod:`sweeps.run`).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.mix.build import build_mix
from pipelines.mix.plan import fingerprint, make_plan
from spt import storage
from spt.config import KINDS, MixConfig, SweepConfig, TrainConfig, load_config
from spt.config.loader import read_yaml, validate
from spt.errors import InputError
from spt.storage import sha256_json
from sweeps.layout import CellLayout
from training.snapshots import snapshot_problem
from training.trainer import NOT_FINGERPRINTED

STAGE = "sweep"
#: Keys of a cell's mix config that say where or how it is built, not what it holds (left out of fingerprints).
MIX_NOT_FINGERPRINTED = ("name", "output_dir", "cache_dir", "ray")
FINETUNE_SET_PER_CELL = ("base_run", "run_dir", "mix", "tracking")


@dataclass(frozen=True)
class Cell:
    """One point of the grid; ``synthetic_share`` is None unless the grid sweeps it."""

    domain_fraction: float
    preset: str
    total_tokens: int
    seed: int
    synthetic_share: float | None = None
    #: tokens of the snapshots the cell is finetuned from besides its final model (``finetune_at``), ascending
    finetune_tokens: tuple[int, ...] = ()

    @property
    def run_id(self) -> str:
        run_id = f"delta{self.domain_fraction:g}-{self.preset}-T{self.total_tokens}-seed{self.seed}"
        return run_id if self.synthetic_share is None else f"{run_id}-syn{self.synthetic_share:g}"


def cells(config: SweepConfig, mix: MixConfig, train: TrainConfig) -> list[Cell]:
    """Every cell: the grid's product, then the repeated δ's extra seeds (cells already in the grid once)."""
    grid = config.grid
    presets = grid.preset or [train.model.preset]
    budgets = grid.total_tokens or [mix.total_tokens]
    shares = grid.synthetic_share or [None]
    snapshots = {t: finetune_budgets(config, mix, train, t) for t in budgets}
    grid_cells = [Cell(d, p, t, s, syn, snapshots[t]) for d, p, t, s, syn in
                  itertools.product(grid.domain_fraction, presets, budgets, grid.seed, shares)]
    if grid.repeat is None:
        return grid_cells
    extra = [Cell(grid.repeat.domain_fraction, p, t, s, syn, snapshots[t])
             for p, t, s, syn in itertools.product(presets, budgets, grid.repeat.seed, shares)]
    return grid_cells + [c for c in extra if c not in grid_cells]


def finetune_budgets(config: SweepConfig, mix: MixConfig, train: TrainConfig, total_tokens: int) -> tuple[int, ...]:
    """The snapshot tokens a cell of budget ``total_tokens`` is finetuned from besides its final model: each share
    of ``finetune_at`` of the budget, rounded down to whole batches (a share that rounds to the whole run is the
    final model).

    Raises:
        InputError: naming ``sweep.finetune_at``: the train config's schedule is not constant, a share is not a
            valid snapshot (:func:`training.snapshots.snapshot_problem`), or two shares round to one batch.
    """
    if not config.finetune_at:
        return ()
    where = f"sweep.finetune_at={config.finetune_at}"
    if train.schedule.kind != "constant":
        raise InputError(f"{where}: needs the train config's schedule.kind=constant, not {train.schedule.kind}: only "
                         "at a constant learning rate is the model after T tokens the model of a T-token run")
    per_batch = train.global_batch_size * mix.seq_len
    max_batches = total_tokens // per_batch
    asked = {share: int(share * total_tokens) for share in config.finetune_at}
    problems = [f"share {share:g} of T={total_tokens}: {problem}" for share, tokens in asked.items()
                if (problem := snapshot_problem(tokens, per_batch, max_batches, train.schedule.warmup_fraction))]
    if problems:
        raise InputError(f"{where}: {'; '.join(problems)}")
    batches = sorted({tokens // per_batch for tokens in asked.values()})
    if len(batches) < len(asked):
        raise InputError(f"{where}: at T={total_tokens} two shares round to the same batch of {per_batch} tokens")
    return tuple(b * per_batch for b in batches if b < max_batches)


def load_bases(config: SweepConfig) -> tuple[MixConfig, TrainConfig, int]:
    """The base mix and train configs (validated now, so a bad base fails the sweep before anything runs).

    Raises:
        InputError: a base config is invalid, the domain source is unknown, or the grid sweeps a synthetic
            share of a domain source that no domain_synthetic source rephrases.
    """
    mix = load_config(config.mix, kind="mix")
    train = load_config(config.train, kind="train")
    if config.finetune:
        load_config(config.finetune, ["base_run=unused"], kind="finetune")
    names = [s.name for s in mix.sources]
    if config.domain_source not in names:
        raise InputError(f"sweep.domain_source={config.domain_source!r}: the mix has no such source ({', '.join(names)})")
    index = names.index(config.domain_source)
    if config.grid.synthetic_share and not mix.synthetic_of(index):
        raise InputError(f"sweep.grid.synthetic_share: no domain_synthetic source of the mix rephrases "
                         f"{config.domain_source!r}, so there is no synthetic share to vary")
    return mix, train, index


@dataclass(frozen=True)
class CellConfigs:
    """A cell's config data (as YAML would hold it) and its fingerprint."""

    mix: dict
    train: dict
    finetune: dict | None
    fingerprint: str
    parts: dict[str, str]
    #: the finetunes of the snapshots, by their tokens (``finetune_at``)
    finetunes: dict[int, dict] = field(default_factory=dict)


def cell_configs(config: SweepConfig, cell: Cell, domain_index: int, layout: CellLayout, spec: str,
                 inputs: str) -> CellConfigs:
    """The cell's mix, train and finetune configs, and their fingerprint with the inputs' content ``inputs``.

    Args:
        spec: where the cell's mix build writes its streams spec.
        inputs: the content fingerprint of the base mix's inputs (see :func:`inputs_fingerprint`).
    """
    mix = read_yaml(config.mix)
    domain = mix["sources"][domain_index]
    domain["fraction"] = cell.domain_fraction
    if cell.synthetic_share is not None:
        domain["synthetic_share"] = cell.synthetic_share
    mix.update(total_tokens=cell.total_tokens, name=mix_name(config, cell))
    train = read_yaml(config.train)
    train.update(mix=spec, run_dir=layout.run.root, seed=cell.seed, duration_tokens=None)
    train.setdefault("model", {})["preset"] = cell.preset
    if cell.finetune_tokens:
        train["snapshot_tokens"] = list(cell.finetune_tokens)
    finetune, finetunes = None, {}
    if config.finetune:
        finetune = read_yaml(config.finetune)
        finetune.update(base_run=layout.run.root, run_dir=layout.finetune.root, mix=spec)
        finetunes = {t: {**finetune, "run_dir": layout.finetune_at(t).root, "base_tokens": t}
                     for t in cell.finetune_tokens}

    shaping = {"mix": _without(mix, MIX_NOT_FINGERPRINTED), "train": _without(train, NOT_FINGERPRINTED),
               "finetune": _without(finetune, FINETUNE_SET_PER_CELL) if finetune else None}
    parts = {"config": sha256_json(shaping), "inputs": inputs}
    return CellConfigs(mix, train, finetune, sha256_json(parts), parts, finetunes)


def _without(data: dict, keys) -> dict:
    return {k: v for k, v in data.items() if k not in keys}


def mix_name(config: SweepConfig, cell: Cell) -> str:
    return f"{config.name}-{cell.run_id}"


def inputs_fingerprint(mix: MixConfig) -> str:
    """The content of the base mix's inputs (files and tokenizer), as `spt mix build` fingerprints it."""
    return fingerprint(make_plan(mix))[1]["inputs"]


def write_cell(layout: CellLayout, configs: CellConfigs, force: bool,
               tracking: tuple[dict, dict] = ({}, {})) -> list[list[str]]:
    """Builds the cell's mix spec and writes its configs; returns the spt commands the cell runs.

    Args:
        tracking: the ``tracking`` sections of the cell's train and finetune configs (the sweep's MLflow store
            and the cell's child run; see :mod:`sweeps.tracking`); they replace the base configs'.

    Raises:
        InputError: the cell's mix cannot be built (written as the cell's failure by the caller).
    """
    build_mix(validate(dict(configs.mix), KINDS, expected_kind="mix"), force=force)
    flags = ["--force"] if force else []
    commands = [["train", layout.train_config, *flags]]
    storage.write_text(layout.mix_config, yaml.safe_dump(configs.mix, sort_keys=False))
    storage.write_text(layout.train_config, yaml.safe_dump({**configs.train, "tracking": tracking[0]},
                                                           sort_keys=False))
    if configs.finetune is not None:
        storage.write_text(layout.finetune_config, yaml.safe_dump({**configs.finetune, "tracking": tracking[1]},
                                                                  sort_keys=False))
        commands.append(["finetune", layout.finetune_config, *flags])
    for tokens, finetune in configs.finetunes.items():
        storage.write_text(layout.finetune_config_at(tokens), yaml.safe_dump({**finetune, "tracking": tracking[1]},
                                                                             sort_keys=False))
        commands.append(["finetune", layout.finetune_config_at(tokens), *flags])
    return commands


def cell_threads(num_cpus: float) -> int:
    """Torch/OpenMP threads of a cell: the CPUs it reserves, at least one."""
    return max(1, int(num_cpus))


def run_cell_commands(log_location: str, commands: list[list[str]], retries: int, threads: int = 1) -> dict:
    """Runs a cell's spt commands in subprocesses (in a Ray task); bad input (exit 2) is not retried.

    The subprocesses use ``threads`` torch/OpenMP threads: the cell's reserved CPUs. (Ray's worker environment
    says one thread, which left one of two reserved cores idle: 3.1k tokens/s in a sweep vs 5.3k under
    ``spt train`` on a 2-core machine.) On S3 the configs are read from a local copy and the log is written
    locally and uploaded after the commands (appended to the cell's earlier attempts).

    Returns:
        The outcome: ``status``, ``error``, ``wall_seconds`` and ``node_id``, the Ray node the cell ran on (the
        last attempt's, when Ray retried the task after losing a node).
    """
    return {**_run_logged(log_location, commands, retries, threads), "node_id": _ray_node_id()}


def _ray_node_id() -> str | None:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def _run_logged(log_location: str, commands: list[list[str]], retries: int, threads: int) -> dict:
    if not storage.is_remote(log_location):
        return _run_commands(str(storage.local_path(log_location)), commands, retries, threads)
    with tempfile.TemporaryDirectory(prefix="spt-cell-") as tmp:
        log_path = Path(tmp) / "log.txt"
        try:
            log_path.write_bytes(storage.read_bytes(log_location))
        except FileNotFoundError:
            pass
        local = []
        for index, (name, location, *flags) in enumerate(commands):
            copy = Path(tmp) / f"{index}-{storage.name(location)}"
            copy.write_bytes(storage.read_bytes(location))
            local.append([name, str(copy), *flags])
        try:
            return _run_commands(str(log_path), local, retries, threads)
        finally:
            storage.write_bytes(log_location, log_path.read_bytes())


def _run_commands(log_path: str, commands: list[list[str]], retries: int, threads: int) -> dict:
    # The log is not a terminal: progress comes as a plain line every SPT_PROGRESS_SECONDS (see spt.progress).
    env = {**os.environ, "SPT_PROGRESS": "1", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.time()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        for command in commands:
            for attempt in range(retries + 1):
                print(f"$ spt {' '.join(command)}  (attempt {attempt + 1})", file=log, flush=True)
                code = subprocess.run([sys.executable, "-m", "cli.main", *command], stdout=log,
                                      stderr=subprocess.STDOUT, env=env).returncode
                if code in (0, 2):
                    break
            if code != 0:
                return {"status": "failed", "error": last_error(log_path) or f"exit code {code}",
                        "wall_seconds": round(time.time() - started, 1)}
    return {"status": "ok", "error": None, "wall_seconds": round(time.time() - started, 1)}


def last_error(log_path: str) -> str | None:
    lines = [line.strip() for line in Path(log_path).read_text(errors="replace").splitlines() if line.strip()]
    errors = [line.removeprefix("error: ") for line in lines
              if line.startswith("error:") or "Error" in line.split(":")[0]]
    return (errors or lines or [None])[-1]
