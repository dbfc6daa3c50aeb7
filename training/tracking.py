"""MLflow tracking of runs and sweeps: which store, which MLflow run, params and artifacts.

Training metrics go through Composer's own ``MLFlowLogger`` (:meth:`TrackedRun.composer_logger`); this module
opens the MLflow run it logs into and adds what Composer does not know: the resolved config and the mix plan as
params, and the run's files as artifacts. The MLflow run of a run folder is recorded in ``<run_dir>/tracking.json``,
so a resumed run (same folder, same fingerprint) continues it instead of starting another one; a run restarted
from scratch (``--force``, ``autoresume: false``) deletes the record with its other files and gets a new one.

``mlflow`` is imported here only (about 0.6 s on top of Composer's own import, which training pays anyway).
"""

from __future__ import annotations

import fnmatch
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from spt import storage
from spt.config.tracking import TrackingConfig
from spt.errors import InputError
from training.model_card import domain_fraction

DEFAULT_EXPERIMENT = "spt"
STORE_FILE = "mlflow.db"
ARTIFACT_FOLDER = "mlartifacts"
#: MLflow refuses batches of more than 100 params.
PARAMS_PER_BATCH = 100
#: Composer's own per-batch bookkeeping (time/*, trainer/*) and its eval metrics (metrics/<label>/...), which spt
#: logs itself with clearer names and tokens as the step (see :class:`training.curves.CurveTable`).
IGNORED_COMPOSER_METRICS = ["time/*", "trainer/*", "metrics/*"]


@dataclass(frozen=True)
class TrackedRun:
    """An MLflow run that a train or finetune run (or a sweep) logs into."""

    uri: str
    experiment: str
    run_id: str

    def composer_logger(self):
        """Composer's MLFlowLogger for this run (metrics only: spt logs the params itself, once).

        Logging is synchronous: a run killed right after a checkpoint has its metrics up to that checkpoint in
        the store, so the resumed run's curves in MLflow have no hole. (MLflow's async mode buffers for 10 s in
        Composer's setting, and each flush of its queue waits up to 1 s: 2 s more per run than the 13-20 ms per
        batch that synchronous SQLite writes cost on a busy 2-core machine, ~60 batches in a test run.)
        """
        from composer.loggers import MLFlowLogger

        class WithoutEmptyCalls(MLFlowLogger):
            """Composer's MLFlowLogger, minus a store round trip for each call whose metrics are all ignored
            (Composer logs its bookkeeping in about six calls per batch: 3-20 ms each on SQLite, measured here)."""

            def log_metrics(self, metrics, step=None):
                if any(not any(fnmatch.fnmatch(k, p) for p in self.ignore_metrics) for k in metrics):
                    super().log_metrics(metrics, step)

        return WithoutEmptyCalls(experiment_name=self.experiment, tracking_uri=self.uri, synchronous=True,
                                 log_system_metrics=False, ignore_metrics=IGNORED_COMPOSER_METRICS,
                                 ignore_hyperparameters=["*"], logging_buffer_seconds=None)

    @contextmanager
    def attached(self) -> Iterator[None]:
        """While the Trainer is built, ``MLFLOW_RUN_ID`` names this run: Composer's logger then continues it (its
        documented way to log into a given run) instead of creating one."""
        previous = os.environ.get("MLFLOW_RUN_ID")
        os.environ["MLFLOW_RUN_ID"] = self.run_id
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_RUN_ID", None)
            else:
                os.environ["MLFLOW_RUN_ID"] = previous


def store_uri(tracking: TrackingConfig, root: str, where: str, log=None) -> str | None:
    """The MLflow tracking URI for outputs in ``root``; None when tracking is off.

    Without ``tracking.uri`` the store is ``sqlite:///<root>/mlflow.db`` (MLflow 3.17 refuses its old file store
    ``./mlruns`` unless ``MLFLOW_ALLOW_FILE_STORE`` is set, and names SQLite as its replacement). A local path
    becomes an absolute SQLite URI (Ray workers and sweep cells run in other directories). An ``s3://`` root has
    no default store (SQLite is a local file), so tracking is off there with a one-line note.
    """
    if not tracking.enabled:
        return None
    if tracking.uri:
        uri = tracking.uri
        if "://" in uri or uri.startswith(("sqlite:", "databricks")):
            return uri
        path = Path(uri).absolute()
        return f"sqlite:///{path if path.suffix == '.db' else path / STORE_FILE}"
    if storage.is_remote(root):
        (log or _note)(f"tracking: off for {where}={root!r} (the default MLflow store is a local SQLite file; set "
                       "tracking.uri to a server, http://HOST:5000, or a local path)")
        return None
    return f"sqlite:///{storage.local_path(storage.join(root, STORE_FILE)).absolute()}"


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a local SQLite store (MLflow's default would be
    ``./mlruns`` in whatever directory the process runs in); a server chooses its own (None)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / ARTIFACT_FOLDER).as_uri()
    return None


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def client(uri: str):
    import logging

    from mlflow import MlflowClient

    # A new SQLite store announces its schema migrations at INFO on stderr: noise in a command's output.
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow_client, name: str, uri: str) -> str:
    """The id of experiment ``name`` in the store ``uri``, created when missing (another process may create it at
    the same time)."""
    from mlflow.exceptions import MlflowException

    found = mlflow_client.get_experiment_by_name(name)
    expected = artifact_location(uri)
    if found is not None and expected is not None and found.artifact_location != expected:
        # A copied or moved folder's store still sends artifacts to the original folder (issue 24, finding 2).
        raise InputError(f"{uri}: experiment {name!r} keeps its artifacts in {found.artifact_location}, not beside "
                         "this store (a copied or moved folder); remove mlflow.db, mlartifacts/ and tracking.json "
                         "from it, or set tracking.uri")
    if found is not None:
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=artifact_location(uri))
    except MlflowException:
        return mlflow_client.get_experiment_by_name(name).experiment_id


def existing_run(mlflow_client, run_id: str | None) -> str | None:
    """``run_id`` when that run exists in the store and is not deleted, else None."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException:
        return None
    return run_id if run.info.lifecycle_stage == "active" else None


def open_run(tracking, layout, *, name: str, params: dict, tags: dict[str, str], where: str,
             parent=None) -> TrackedRun | None:
    """The MLflow run of a run folder: ``tracking.run_id``, else the one recorded in the folder, else a new one.

    Params already in the run keep their value (MLflow params cannot change; a resumed run may differ only in
    how it runs, e.g. its workers); the others are logged. Tags are set every time. The run is recorded in
    ``layout.tracking``.

    Args:
        tracking: the run's :class:`~spt.config.tracking.RunTrackingConfig`.
        layout: the run's :class:`~training.layout.RunLayout`.
        name: the MLflow run name of a new run.
        params: flat params (see :func:`flat_params`).
        parent: the layout of a run whose MLflow run (in the same store) a new run is a child of (a finetune
            under its base run).

    Returns:
        The run, or None when tracking is off.
    """
    uri = store_uri(tracking, layout.root, where)
    if uri is None:
        return None
    mlflow_client = client(uri)
    experiment = tracking.experiment or DEFAULT_EXPERIMENT
    run_id = existing_run(mlflow_client, tracking.run_id) or existing_run(mlflow_client, recorded_run(layout, uri))
    if run_id is None:
        parent_run_id = existing_run(mlflow_client, recorded_run(parent, uri)) if parent is not None else None
        new_tags = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
        run_id = mlflow_client.create_run(experiment_id(mlflow_client, experiment, uri), run_name=name,
                                          tags=new_tags).info.run_id
    log_params(mlflow_client, run_id, params)
    for key, value in tags.items():
        mlflow_client.set_tag(run_id, key, value)
    storage.write_json(layout.tracking, {"uri": uri, "experiment": experiment, "run_id": run_id,
                                         "folder": folder_id(layout.root)})
    return TrackedRun(uri, experiment, run_id)


def folder_id(folder: str) -> str:
    """How ``tracking.json`` names the folder it was written for: its absolute path, or its URL."""
    return str(folder) if storage.is_remote(folder) else str(storage.local_path(folder))


def store_problem(recorded: dict, folder: str) -> str | None:
    """Why the store a ``tracking.json`` names is not ``folder``'s own (issue 24, finding 2), or None.

    The record holds absolute locations, so a copied or moved folder still names the original's store: a fit of
    a copy (some rows dropped) once replaced the original sweep's logged fit.json. The record names the folder it
    was written for. An older record without that name is refused when the folder has a default store of its own
    (``mlflow.db``, copied with it) and the record names another one; a store set by ``tracking.uri`` elsewhere
    stays allowed.
    """
    here = folder_id(folder)
    written_for = recorded.get("folder")
    if written_for is not None:
        return None if written_for == here else f"was written for {written_for}, not this folder"
    uri = str(recorded.get("uri") or "")
    own_store = storage.join(folder, STORE_FILE)
    if uri.startswith("sqlite:///") and not storage.is_remote(folder) and storage.is_file(own_store):
        store = Path(uri[len("sqlite:///"):]).absolute()
        if store != storage.local_path(own_store):
            return f"names the MLflow store {store}, not this folder's own {STORE_FILE}"
    return None


def recorded_run(layout, uri: str) -> str | None:
    """The MLflow run recorded in a run folder, when it was tracked in the store ``uri``."""
    recorded = storage.read_json(layout.tracking) or {}
    return recorded.get("run_id") if recorded.get("uri") == uri else None


def log_params(mlflow_client, run_id: str, params: dict) -> None:
    """Logs the params the run does not have yet (values as text, at most MLflow's 6,000 characters)."""
    from mlflow.entities import Param

    have = mlflow_client.get_run(run_id).data.params
    new = [Param(key, str(value)[:6000]) for key, value in sorted(params.items()) if key not in have]
    for start in range(0, len(new), PARAMS_PER_BATCH):
        mlflow_client.log_batch(run_id, params=new[start:start + PARAMS_PER_BATCH], synchronous=True)


def flat_params(value, prefix: str) -> dict[str, object]:
    """``{"a": {"b": 1}}`` as ``{"<prefix>.a.b": 1}``; lists stay whole (their text)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, object] = {}
    for key, inner in value.items():
        out.update(flat_params(inner, f"{prefix}.{key}"))
    return out


def mix_params(spec: dict) -> dict[str, object]:
    """The mix plan as params: δ (the domain share of tokens), the mix's tokens and, per training source, its
    fraction of tokens, epochs over its unique tokens and realized tokens."""
    params: dict[str, object] = {"mix.name": spec.get("name"), "mix.domain_fraction": round(domain_fraction(spec), 6),
                                 "mix.total_tokens": spec.get("total_tokens"), "mix.seq_len": spec.get("seq_len")}
    for stream in spec["streams"]:
        for key in ("role", "fraction", "epochs", "realized_tokens"):
            params[f"mix.source.{stream['name']}.{key}"] = stream.get(key)
    return params


def log_artifacts(tracked: TrackedRun | None, files: dict[str, str]) -> None:
    """Copies ``{artifact name: location}`` (local or ``s3://``) into the run's artifacts; missing files are
    skipped (a finetune has no model card)."""
    if tracked is None:
        return
    mlflow_client = client(tracked.uri)
    with tempfile.TemporaryDirectory(prefix="spt-artifacts-") as tmp:
        for artifact, location in files.items():
            try:
                data = storage.read_bytes(location)
            except FileNotFoundError:
                continue
            path = Path(tmp) / artifact
            path.write_bytes(data)
            mlflow_client.log_artifact(tracked.run_id, str(path))


def run_artifacts(layout) -> dict[str, str]:
    """The files of a finished run worth keeping beside its metrics."""
    return {"curves.csv": layout.curves, "summary.json": layout.summary, "config.json": layout.config,
            "model_card.md": storage.join(layout.model, "README.md")}


def set_status(tracked: TrackedRun | None, status: str) -> None:
    """Marks the run FINISHED, FAILED or KILLED (Composer marks it FINISHED when training ends normally)."""
    if tracked is not None:
        client(tracked.uri).set_terminated(tracked.run_id, status=status)
