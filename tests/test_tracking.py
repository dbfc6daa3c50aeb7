"""MLflow tracking settings and the MLflow run of a run folder, on a real SQLite store.

Trained runs are checked where they are made: tests/test_training.py (a run, its resumption and its finetune
read back with ``MlflowClient``) and tests/test_sweep.py (one parent run per sweep, one child per cell).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spt.config.tracking import RunTrackingConfig, TrackingConfig
from tests.conftest import tree


def test_default_store_is_sqlite_beside_the_outputs(tmp_path):
    from training.tracking import artifact_location, store_uri

    uri = store_uri(TrackingConfig(), str(tmp_path / "run"), "train.run_dir")
    assert uri == f"sqlite:///{tmp_path}/run/mlflow.db"
    assert artifact_location(uri) == (tmp_path / "run" / "mlartifacts").as_uri()
    assert store_uri(TrackingConfig(enabled=False), str(tmp_path), "train.run_dir") is None


@pytest.mark.parametrize("given,expected", [
    ("http://tracking:5000", "http://tracking:5000"),
    ("sqlite:////data/mlflow.db", "sqlite:////data/mlflow.db"),
    ("stores/all.db", "sqlite:///{cwd}/stores/all.db"),
    ("stores", "sqlite:///{cwd}/stores/mlflow.db"),
])
def test_a_given_uri_or_path(given, expected, tmp_path, monkeypatch):
    from training.tracking import artifact_location, store_uri

    monkeypatch.chdir(tmp_path)
    uri = store_uri(TrackingConfig(uri=given), "s3://bucket/run", "train.run_dir")
    assert uri == expected.format(cwd=tmp_path)
    assert (artifact_location(uri) is None) == given.startswith("http")


def test_s3_outputs_without_a_uri_are_not_tracked_and_say_so(capsys):
    from training.tracking import store_uri

    assert store_uri(TrackingConfig(), "s3://bucket/run", "train.run_dir") is None
    assert capsys.readouterr().err.strip() == (
        "tracking: off for train.run_dir='s3://bucket/run' (the default MLflow store is a local SQLite file; set "
        "tracking.uri to a server, http://HOST:5000, or a local path)")


@pytest.mark.parametrize("override,message", [
    ("tracking.uri=s3://bucket/mlruns", "train.tracking.uri='s3://bucket/mlruns': an MLflow tracking store cannot be "
     "on s3://; name a server (http://...) or a local folder (artifacts of a server may live on S3)"),
    ("tracking.server=x", "train.tracking.server: unknown key (allowed: enabled, uri, experiment, run_id)"),
    ("tracking.run_id=abc", "train.tracking.run_id='abc': an MLflow run id is 32 hexadecimal digits"),
])
def test_bad_tracking_settings_are_refused(override, message, tmp_path, run_cli):
    config = tmp_path / "train.yaml"
    config.write_text(json.dumps({"kind": "train", "mix": str(tmp_path / "streams.json"),
                                  "run_dir": str(tmp_path / "run")}))
    code, out, err = run_cli("train", config, override)
    assert (code, out) == (2, "")
    assert err.strip().startswith(f"error: {message}"), err
    assert tree(tmp_path / "run") == []


def test_sweep_tracking_has_no_run_id(tmp_path, run_cli):
    config = tmp_path / "sweep.yaml"
    config.write_text(json.dumps({"kind": "sweep", "name": "s", "mix": "m.yaml", "train": "t.yaml",
                                  "grid": {"domain_fraction": [0.1]}, "output_dir": str(tmp_path / "out"),
                                  "tracking": {"run_id": "0" * 32}}))
    code, _, err = run_cli("sweep", config)
    assert (code, err.strip()) == (2, "error: sweep.tracking.run_id: unknown key (allowed: enabled, uri, experiment)")


def test_a_run_folder_keeps_its_mlflow_run_until_it_restarts_from_scratch(tmp_path):
    """A resumed run (same folder) continues its MLflow run and keeps the params it was started with; a run
    restarted from scratch (its files cleared, as --force does) gets a new MLflow run, and the old one stays."""
    from mlflow import MlflowClient

    from training.layout import RunLayout
    from training.tracking import open_run

    layout = RunLayout(str(tmp_path / "run"))
    Path(layout.root).mkdir()
    common = {"name": "run", "where": "train.run_dir", "tags": {"spt.stage": "train"}}
    first = open_run(RunTrackingConfig(), layout, params={"config.num_workers": 1, "config.seed": 0}, **common)
    again = open_run(RunTrackingConfig(), layout, params={"config.num_workers": 2, "config.seed": 0,
                                                          "plan.tokens": 10}, **common)
    assert again == first
    client = MlflowClient(first.uri)
    assert client.get_run(first.run_id).data.params == {"config.num_workers": "1", "config.seed": "0",
                                                       "plan.tokens": "10"}
    layout.clear()
    fresh = open_run(RunTrackingConfig(), layout, params={"config.seed": 0}, **common)
    assert fresh.run_id != first.run_id and fresh.uri == first.uri
    experiment = client.get_experiment_by_name("spt")
    assert {r.info.run_id for r in client.search_runs([experiment.experiment_id])} == {first.run_id, fresh.run_id}
    # Given a run id (as a sweep gives its cells), the folder logs into that run.
    given = open_run(RunTrackingConfig(run_id=first.run_id), layout, params={}, **common)
    assert given.run_id == first.run_id
    assert json.loads(Path(layout.tracking).read_text())["run_id"] == first.run_id


def test_fit_and_plots_of_a_tracked_sweep_go_to_its_parent_run(tmp_path, run_cli):
    """`spt fit` and `spt plot` on a sweep folder with a tracking.json log what they write into the sweep's run."""
    from scaling_laws import synthetic
    from spt import storage
    from sweeps import tables
    from training.tracking import client, experiment_id

    folder = str(tmp_path / "sweep")
    tables.write_sweep(folder, *synthetic.spt_sweep(fractions=(0.0, 0.2, 0.5), evaluations=8, seed=1))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow = client(uri)
    run_id = mlflow.create_run(experiment_id(mlflow, "sweep", uri)).info.run_id
    storage.write_json(f"{folder}/tracking.json", {"uri": uri, "experiment": "sweep", "run_id": run_id, "cells": {}})
    code, out, err = run_cli("fit", "--law", "spt", "--data", folder, "--starts", "4", "--bootstrap", "0",
                             "--out", tmp_path / "fit.json")
    assert code == 0, err
    assert out.splitlines()[-1] == f"logged 1 file(s) to the sweep's MLflow run {run_id}"
    code, out, err = run_cli("plot", "--fit", tmp_path / "fit.json", "--data", folder, "--out-dir", tmp_path / "plots")
    assert code == 0, err
    logged = {a.path for a in mlflow.list_artifacts(run_id)}
    assert {"fit.json", "loss_curves.png", "optimal_fraction.svg", "residuals.png"} <= logged
    assert json.loads(Path(mlflow.download_artifacts(run_id, "fit.json", str(tmp_path))).read_text())["law"] == "spt"
    # An untracked sweep folder (no tracking.json) logs nothing and says nothing about it.
    (tmp_path / "sweep" / "tracking.json").unlink()
    code, out, err = run_cli("fit", "--law", "spt", "--data", folder, "--starts", "4", "--bootstrap", "0",
                             "--out", tmp_path / "fit2.json")
    assert code == 0 and "MLflow" not in out, err
