"""SPT sweeps: every cell of a δ × preset × tokens × seed (× synthetic share) grid is a mix spec plus a training
run on Ray.

The driver builds each cell's streams spec itself (sources are already built, so that takes seconds), then runs
each cell's ``spt train`` (and ``spt finetune``) as a Ray task with the cell's resources, at most
``max_concurrent`` at once. Each task runs the commands in a subprocess with its own log file, so a cell that
fails (bad preset, crash) fails alone. After every cell, ``results`` and ``curves`` tables are rewritten
atomically. Everything goes through :mod:`spt.storage`, so ``output_dir`` may be ``s3://`` (layout:
:mod:`training.layout`).

A rerun skips the cells whose row says ``ok`` *and* whose fingerprint (:mod:`sweeps.cells`) is unchanged.
A cell whose configs or inputs changed since it ran is never reused silently: the sweep names those cells and
refuses, or with ``force`` reruns them from scratch.
"""

from __future__ import annotations

import os

import pandas as pd

from pipelines.mix.layout import MixLayout
from spt import storage
from spt.cluster import ray_session
from spt.config import SweepConfig
from spt.errors import InputError
from spt.progress import Progress
from spt.storage import ownership
from sweeps.cells import (
    STAGE, Cell, CellConfigs, cell_configs, cell_threads, cells, inputs_fingerprint, load_bases, mix_name,
    run_cell_commands, write_cell,
)
from sweeps.layout import SweepLayout
from sweeps.rows import finetune_rows, result_row
from sweeps.tables import load_finetunes, load_tables, read_results, write_tables
from sweeps.tracking import OFF, SweepTracking

#: The fingerprint of a sweep folder's own marker: each cell folder carries the fingerprint of its cell.
FOLDER_FINGERPRINT = "cells"


def plan_cells(config: SweepConfig) -> tuple[list[Cell], dict[str, CellConfigs], SweepLayout]:
    """Every cell of the grid with its configs and fingerprint (nothing written)."""
    mix, train, domain_index = load_bases(config)
    layout = SweepLayout(storage.check(config.output_dir, "sweep.output_dir"))
    grid = cells(config, mix, train)
    inputs = inputs_fingerprint(mix)
    configs = {}
    for cell in grid:
        spec = MixLayout(mix.output_dir, "", mix_name(config, cell)).streams
        configs[cell.run_id] = cell_configs(config, cell, domain_index, layout.cell(cell.run_id), spec, inputs)
    return grid, configs, layout


def changed_cells(layout: SweepLayout, configs: dict[str, CellConfigs], force: bool) -> list[str]:
    """The cells that ran with other configs or inputs; refused unless ``force``.

    Raises:
        InputError: one line naming the folder, the changed cells and what changed in each (without ``force``),
            or a cell folder that is not this sweep's.
    """
    changed, described = [], []
    for run_id, cell in configs.items():
        folder = layout.cell(run_id).root
        claim = ownership.check_claim(folder, STAGE, cell.fingerprint, where="sweep.output_dir", parts=cell.parts,
                                    force=True, label=f"sweep cell {run_id} ({folder})")
        if claim.state == "replaced":
            old = (claim.previous or {}).get("parts") or {}
            what = " and ".join(k for k, v in cell.parts.items() if old.get(k) != v) or "fingerprint"
            changed.append(run_id)
            described.append(f"{run_id} ({what})")
    if changed and not force:
        raise InputError(
            f"sweep.output_dir={layout.root!r}: {len(changed)} cell(s) ran with another config or other inputs: "
            f"{', '.join(described)}; rerun with --force to rerun them, or choose another output_dir"
        )
    return changed


def prepare(configs: dict[str, CellConfigs], layout: SweepLayout, todo: list[Cell], changed: set[str], rows: dict,
            curves: dict, tracking: SweepTracking | None = None, log=print) -> list[tuple[Cell, list[list[str]]]]:
    """Claims each cell to run, opens its MLflow child run (none without ``tracking``: the cells are not tracked)
    and writes its mix spec and configs (the driver writes, cells only read); a cell whose mix cannot be built
    gets its failed row and its log line here, and is not run."""
    prepared = []
    for cell in todo:
        cell_layout, forced = layout.cell(cell.run_id), cell.run_id in changed
        cell_config = configs[cell.run_id]
        ownership.claim(cell_layout.root, STAGE, cell_config.fingerprint, where="sweep.output_dir",
                      parts=cell_config.parts, force=forced, label=f"sweep cell {cell.run_id}")
        try:
            cell_tracking = tracking.cell_tracking(cell, cell_config.fingerprint) if tracking else (OFF, OFF)
            prepared.append((cell, write_cell(cell_layout, cell_config, forced, cell_tracking)))
        except InputError as exc:
            outcome = {"status": "failed", "error": "; ".join(exc.problems), "wall_seconds": 0.0}
            rows[cell.run_id], curves[cell.run_id] = result_row(cell, cell_layout, outcome)
            if tracking:
                tracking.cell_done(cell, outcome)
            log(f"cell {cell.run_id}: failed before it ran ({outcome['error']})")
    return prepared


def run_sweep(config: SweepConfig, address: str | None = None, log=print, force: bool = False) -> pd.DataFrame:
    """Runs every unfinished or changed cell; returns the results table.

    Args:
        force: rerun the cells whose configs or inputs changed since they ran (else they are refused).

    Raises:
        InputError: a bad base config, an output folder spt may not write, or changed cells without ``force``;
            nothing is written then.
    """
    grid, configs, layout = plan_cells(config)
    ownership.check_claim(layout.root, STAGE, FOLDER_FINGERPRINT, where="sweep.output_dir")
    changed = set(changed_cells(layout, configs, force))
    ownership.claim(layout.root, STAGE, FOLDER_FINGERPRINT, where="sweep.output_dir")
    rows, curves = load_tables(layout)
    # Cells of an earlier grid stay in the folder but leave the tables, which a fit reads as this grid.
    stale = sorted(set(rows) - {c.run_id for c in grid})
    if stale:
        log(f"sweep {config.name}: {len(stale)} cells not in the grid left out of the tables: {', '.join(stale)}")
    rows = {k: v for k, v in rows.items() if k not in stale and k not in changed}
    curves = {k: v for k, v in curves.items() if k in rows}
    # None: the sweep does not finetune, and writes no finetunes table
    finetunes = {k: v for k, v in load_finetunes(layout).items() if k in rows} if config.finetune else None
    if changed:
        log(f"sweep {config.name}: rerunning {len(changed)} changed cells (--force): {', '.join(sorted(changed))}")
    todo = [c for c in grid if rows.get(c.run_id, {}).get("status") != "ok"]
    log(f"sweep {config.name}: {len(rows) - sum(r['status'] != 'ok' for r in rows.values())} cells done, "
        f"{len(todo)} to run")
    tracking = SweepTracking(config, layout)
    try:
        prepared = prepare(configs, layout, todo, changed, rows, curves, tracking, log)
        write_tables(layout, rows, curves, finetunes)
        if prepared:
            _run_on_ray(config, address, layout, prepared, (rows, curves, finetunes), log, tracking)
    except BaseException:
        tracking.finish("FAILED")
        raise
    tracking.finish()
    return read_results(layout)


def _run_on_ray(config: SweepConfig, address: str | None, layout: SweepLayout, prepared: list, tables: tuple,
                log, tracking: SweepTracking) -> None:
    import ray  # expensive: a second or more

    local_env = {"env_vars": {"SPT_PROGRESS": "0", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                              **storage.environment()}}
    cpus = config.resources.num_cpus * config.max_concurrent
    # A job's driver already has the job's runtime env (runtime_env None): adding one would conflict with it.
    with ray_session(address or config.address, local={"num_cpus": max(int(cpus), os.cpu_count() or 1),
                                                       "runtime_env": local_env},
                     log_to_driver=False, configure_logging=False):
        _run_cells(ray, config, layout, prepared, tables, log, tracking)


def _run_cells(ray, config: SweepConfig, layout: SweepLayout, prepared: list, tables: tuple, log,
               tracking: SweepTracking) -> None:
    """Runs the prepared cells as Ray tasks, at most ``max_concurrent`` at once, recording each as it ends in
    ``tables``: the rows of results, curves and finetunes (None: the sweep does not finetune), by run id."""
    rows, curves, finetunes = tables
    task = ray.remote(run_cell_commands).options(num_cpus=config.resources.num_cpus,
                                                 num_gpus=config.resources.num_gpus, max_retries=config.max_retries)
    in_flight: dict = {}
    progress = Progress(f"sweep {config.name}", len(prepared), "cells")
    try:
        while prepared or in_flight:
            while prepared and len(in_flight) < config.max_concurrent:
                cell, commands = prepared.pop(0)
                in_flight[task.remote(layout.cell(cell.run_id).log, commands, config.max_retries,
                                      cell_threads(config.resources.num_cpus))] = cell
            done, _ = ray.wait(list(in_flight), num_returns=1)
            cell = in_flight.pop(done[0])
            try:
                outcome = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                outcome = {"status": "failed", "error": str(exc).splitlines()[0], "wall_seconds": None}
            rows[cell.run_id], curves[cell.run_id] = result_row(cell, layout.cell(cell.run_id), outcome)
            if finetunes is not None:
                finetunes[cell.run_id] = finetune_rows(cell, layout.cell(cell.run_id))
            write_tables(layout, rows, curves, finetunes)
            tracking.cell_done(cell, outcome)
            progress.update(1)
            where = f" on node {outcome['node_id']}" if outcome.get("node_id") else ""
            error = f" ({outcome['error']})" if outcome["error"] else ""
            log(f"cell {cell.run_id}: {outcome['status']}{where}{error}")
            if outcome["status"] != "ok" and config.on_failure == "stop":
                prepared.clear()
    finally:
        progress.close()
