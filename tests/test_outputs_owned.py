"""Nothing lost, nothing run that should not be (issue 24, findings 1, 2, 7, 8 and 9): outputs replace only what
spt wrote, a copied sweep folder never writes into the original's MLflow store, temp folders of a killed build
go on the rerun, and inputs that make no sense are refused with one line instead of silent nonsense."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from scaling_laws import synthetic
from spt import storage
from spt.errors import InputError
from spt.storage.staging import staged_folder
from tests.conftest import REPO, tree
from training.layout import RunLayout


def fit_args(data: Path, out: Path, *extra: str) -> list[str]:
    """A Chinchilla fit of a small table with few starts: about a second."""
    return ["fit", "--law", "chinchilla", "--data", str(data), "--starts", "20", "--out", str(out), *extra]


@pytest.fixture
def runs_csv(tmp_path) -> Path:
    path = tmp_path / "runs.csv"
    synthetic.chinchilla_table(n=60, noise=0.003, seed=3).to_csv(path, index=False)
    return path


# Finding 1: `--out` overwrote any file, the command's own input included.

def test_fit_never_writes_over_its_input_even_with_force(runs_csv, run_cli):
    before = runs_csv.read_bytes()
    for force in ((), ("--force",)):
        code, stdout, err = run_cli(*fit_args(runs_csv, runs_csv, *force))
        assert (code, stdout) == (2, "")
        assert err == (f"error: --out='{runs_csv}': is the input --data of this command; spt never writes over "
                       "its input, even with --force: choose another file\n")
    assert runs_csv.read_bytes() == before


def test_predict_replaces_only_a_file_it_wrote_unless_forced(tmp_path, runs_csv, run_cli):
    fit_json, config = tmp_path / "fit.json", tmp_path / "config.yaml"
    assert run_cli(*fit_args(runs_csv, fit_json))[0] == 0
    config.write_text("kind: mix\n")
    predict = ["predict", "--fit", str(fit_json), "--data", str(runs_csv), "--out", str(config)]
    code, stdout, err = run_cli(*predict)
    assert (code, stdout) == (2, "")
    assert err == (f"error: --out='{config}': exists and spt did not write it (or it changed since: no matching "
                   ".config.yaml.spt-owner.json); rerun with --force to replace it, or choose another file\n")
    assert config.read_text() == "kind: mix\n"
    # The fit JSON spt wrote may be written again (a rerun), the predictions too, and --force replaces the YAML.
    assert run_cli(*fit_args(runs_csv, fit_json))[0] == 0
    assert run_cli(*predict, "--force")[0] == 0 and "predicted_loss" in config.read_text()
    assert run_cli(*predict)[0] == 0
    # A file spt wrote and someone changed since is theirs now.
    fit_json.write_text(fit_json.read_text().replace('"chinchilla"', '"chinchilla" '))
    code, _, err = run_cli(*fit_args(runs_csv, fit_json))
    assert code == 2 and "exists and spt did not write it (or it changed since" in err


def test_plot_replaces_only_figures_it_wrote(tmp_path, runs_csv, run_cli):
    fit_json, figures = tmp_path / "fit.json", tmp_path / "figures"
    assert run_cli(*fit_args(runs_csv, fit_json))[0] == 0
    plot = ["plot", "--fit", str(fit_json), "--data", str(runs_csv), "--out-dir", str(figures)]
    assert run_cli(*plot)[0] == 0 and run_cli(*plot)[0] == 0  # a rerun replaces its own figures
    (figures / "residuals.svg").write_text("<svg>my own drawing</svg>")
    code, stdout, err = run_cli(*plot)
    assert (code, stdout) == (2, "")
    assert err == (f"error: --out-dir figure='{figures}/residuals.svg': exists and spt did not write it (or it "
                   "changed since: no matching .residuals.svg.spt-owner.json); rerun with --force to replace it, or "
                   "choose another file\n")
    assert (figures / "residuals.svg").read_text() == "<svg>my own drawing</svg>"


# Finding 7: a source rebuild and `spt train --force` deleted files spt did not write.

def test_a_source_rebuild_refuses_before_deleting_a_foreign_file(tmp_path):
    source = tmp_path / "mix" / "sources" / "domain"
    (source / "train").mkdir(parents=True)
    (source / "train" / "shard.00000.mds").write_bytes(b"spt's shard")
    (source / "source.json").write_text(json.dumps({"files": {"train/shard.00000.mds": "sha"}}))
    (source / "notes.txt").write_text("mine")
    with pytest.raises(InputError) as refused:
        with staged_folder(str(source), last="source.json"):
            pytest.fail("the rebuild started")
    assert str(refused.value) == (f"{source}: holds files spt did not write (notes.txt); spt replaces only its own "
                                  "files: move them away and rerun")
    assert tree(source) == ["notes.txt", "source.json", "train", "train/shard.00000.mds"]
    (source / "notes.txt").unlink()
    with staged_folder(str(source), last="source.json") as staging:
        (staging / "source.json").write_text("{}")
    assert tree(source) == [".spt-files.json", "source.json"]


def test_a_forced_restart_deletes_only_the_run_files_spt_wrote(tmp_path):
    layout = RunLayout(str(tmp_path / "run"))
    checkpoints = Path(layout.checkpoints)
    checkpoints.mkdir(parents=True)
    for name in ("ba5-rank0.pt", "latest-rank0.pt", "my-notes.txt"):
        (checkpoints / name).write_text(name)
    with staged_folder(layout.model) as staging:
        (staging / "model.safetensors").write_text("weights")
    (Path(layout.model) / "README-mine.md").write_text("mine")
    with pytest.raises(InputError) as refused:
        layout.clear()
    assert str(refused.value) == (f"{layout.model}: holds files spt did not write (README-mine.md); spt replaces "
                                  "only its own files: move them away and rerun")
    assert "ba5-rank0.pt" in tree(checkpoints)  # refused before deleting anything
    (Path(layout.model) / "README-mine.md").unlink()
    layout.clear()
    assert tree(checkpoints) == ["my-notes.txt"] and not Path(layout.model).exists()


# Finding 9: a killed build left sources/.<src>.tmp-* folders that no rerun removed.

def test_a_rerun_removes_the_staging_folders_of_a_killed_build(tmp_path):
    sources = tmp_path / "sources"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal\nfrom spt.storage.staging import staged_folder\n"
        f"with staged_folder({str(sources / 'domain')!r}) as staging:\n"
        "    (staging / 'shard.mds').write_bytes(b'x' * 4096)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")], env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == -signal.SIGKILL
    left = [p.name for p in sources.iterdir()]
    assert len(left) == 1 and left[0].startswith(".domain.tmp-")
    (sources / ".general.tmp-other").mkdir()  # another source's: not this rebuild's to remove
    (sources / "notes.domain.tmp-x").write_text("a user's file")
    with staged_folder(str(sources / "domain")) as staging:
        (staging / "shard.mds").write_bytes(b"y")
    assert tree(sources) == [".general.tmp-other", "domain", "domain/.spt-files.json", "domain/shard.mds",
                             "notes.domain.tmp-x"]


# Finding 2: a fit of a copied sweep folder wrote into the original sweep's MLflow store.

def test_a_copied_sweep_folder_never_logs_into_the_original_store(tmp_path, capsys):
    from spt.config.tracking import TrackingConfig
    from sweeps.tracking import log_decision
    from training.tracking import client, experiment_id, store_uri

    original, copy = tmp_path / "sweep", tmp_path / "sweep-copy"
    original.mkdir()
    uri = store_uri(TrackingConfig(), str(original), "sweep.output_dir")  # the default store, in the folder
    mlflow = client(uri)
    run_id = mlflow.create_run(experiment_id(mlflow, "sweep", uri)).info.run_id
    # What a sweep wrote before records named their folder: absolute locations only.
    (original / "tracking.json").write_text(json.dumps({"uri": uri, "experiment": "sweep", "run_id": run_id}))
    shutil.copytree(original, copy)
    fit_json = tmp_path / "fit.json"
    fit_json.write_text('{"law": "of the copy"}')
    before = tree(original)
    assert log_decision(str(copy), [str(fit_json)]) is None
    assert capsys.readouterr().err == (
        f"note: not logged to MLflow: {copy}/tracking.json names the MLflow store {original}/mlflow.db, not this "
        "folder's own mlflow.db (a copied or moved sweep folder never writes into another folder's store)\n")
    assert tree(original) == before and not mlflow.list_artifacts(run_id)
    # A record that names its folder: the copy's is refused for that, and the original still logs.
    for folder in (original, copy):
        (folder / "tracking.json").write_text(json.dumps({"uri": uri, "experiment": "sweep", "run_id": run_id,
                                                          "folder": str(original)}))
    assert log_decision(str(copy), [str(fit_json)]) is None
    assert f"{copy}/tracking.json was written for {original}, not this folder" in capsys.readouterr().err
    assert log_decision(str(original), [str(fit_json)]) == run_id
    assert [a.path for a in mlflow.list_artifacts(run_id)] == ["fit.json"]


def test_spt_fit_of_a_copied_sweep_folder_logs_only_into_its_own_store(tmp_path, run_cli):
    """Finding 2 end to end: ``spt fit --data COPY --out COPY/fit.json`` of a copied (and edited) sweep folder
    leaves the original's MLflow store as it was; the same fit of the original logs there."""
    from spt.config.tracking import TrackingConfig
    from sweeps import tables
    from training.tracking import client, experiment_id, store_uri

    original, copy = tmp_path / "sweep", tmp_path / "sweep-copy"
    tables.write_sweep(original, *synthetic.spt_sweep(fractions=(0.0, 0.05, 0.1, 0.3), evaluations=8, seed=4))
    uri = store_uri(TrackingConfig(), str(original), "sweep.output_dir")
    mlflow = client(uri)
    run_id = mlflow.create_run(experiment_id(mlflow, "sweep", uri)).info.run_id
    (original / "tracking.json").write_text(json.dumps({"uri": uri, "experiment": "sweep", "run_id": run_id,
                                                        "folder": str(original)}))
    shutil.copytree(original, copy)
    curves = pd.read_csv(copy / "curves.csv")
    curves[curves["tokens"] != curves["tokens"].min()].to_csv(copy / "curves.csv", index=False)  # rows dropped
    options = ("--law", "spt-regularized", "--starts", "8", "--bootstrap", "0")
    code, stdout, err = run_cli("fit", *options, "--data", copy, "--out", copy / "fit.json")
    assert code == 0, err
    assert "not logged to MLflow" in err and "logged" not in stdout
    assert not mlflow.list_artifacts(run_id)
    code, stdout, err = run_cli("fit", *options, "--data", original, "--out", original / "fit.json")
    assert code == 0, err
    assert f"logged 1 file(s) to the sweep's MLflow run {run_id}" in stdout
    assert [a.path for a in mlflow.list_artifacts(run_id)] == ["fit.json"]


# Finding 8: nonsense that passed silently with exit 0.

@pytest.mark.parametrize(("law", "params"), [
    ("spt-gap", {"a1": 0.3, "b_gap_s": 0.2, "b_gap_g": -0.1, "a2": 0.5, "a3": 0.1}),
    ("spt-regularized-gap", {"a1": 0.3, "b_gap_s": 0.2, "b_gap_g": -0.1, "a2": 0.5, "a3": 0.1, "c_gap": 0.02}),
])
def test_optimal_fraction_refuses_a_fit_of_the_gap_alone(tmp_path, run_cli, law, params):
    fit_json = tmp_path / "gap.json"
    fit_json.write_text(json.dumps({"law": law, "objective": 0.0, "n_points": 30, "params": params,
                                    "data_ranges": {"tokens": [1e6, 1e8], "fraction": [0.0, 1.0]}}))
    code, stdout, err = run_cli("optimal-fraction", "--fit", fit_json, "--tokens", "1e7")
    assert (code, stdout) == (2, "")
    assert err == (f"error: {fit_json}: optimal-fraction needs a fit of the loss; law {law} fits only the gap "
                   "between held-out and train loss (fit law spt or spt-regularized)\n")


def test_corpora_refuses_max_chars_below_min_chars(tmp_path, run_cli):
    code, stdout, err = run_cli("corpora", REPO / "configs/corpora/quickstart.yaml", f"output_dir={tmp_path}/c",
                                "domain.min_chars=500", "domain.max_chars=100")
    assert (code, stdout, tree(tmp_path)) == (2, "", [])
    assert err == "error: corpora.domain: max_chars=100 is below min_chars=500\n"


def text_parquet(path: Path, values: list) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": pa.array(values, type=None if values else pa.string())}), path)
    return path


@pytest.mark.parametrize(("values", "expected"), [
    ([], "tokenizer.inputs: no documents (1 parquet file(s), 0 rows)"),
    ([1, 2, 3], "inputs[0]='{data}': column 'text' holds int64, expected text (string)"),
])
def test_tokenizer_refuses_inputs_without_text_and_writes_nothing(tmp_path, run_cli, values, expected):
    data = text_parquet(tmp_path / "data.parquet", values)
    code, stdout, err = run_cli("tokenizer", REPO / "configs/tokenizer/quickstart.yaml", f"inputs=[{data}]",
                                f"output_dir={tmp_path}/tok", "vocab_size=512")
    assert (code, stdout, err) == (2, "", f"error: {expected.format(data=data)}\n")
    assert tree(tmp_path) == ["data.parquet"]  # no owner marker left behind


def test_tokenizer_warns_when_the_text_is_too_small_for_the_vocab(tmp_path, run_cli):
    data = text_parquet(tmp_path / "data.parquet", ["def f(x):\n    return x\n"] * 3)
    code, _, err = run_cli("tokenizer", REPO / "configs/tokenizer/quickstart.yaml", f"inputs=[{data}]",
                           f"output_dir={tmp_path}/tok", "vocab_size=512")
    assert code == 0
    assert re.fullmatch(r"warning: tokenizer: trained \d+ tokens of the vocab_size=512 asked: the inputs hold too "
                        r"little text to merge more\n", err)


def test_repeated_rows_and_a_size_law_on_one_size_are_named_in_the_fit(tmp_path, run_cli):
    """Finding 8: duplicate fit rows and a Chinchilla fit on one model size passed without a caveat."""
    table = synthetic.chinchilla_table(n=40, seed=3)
    table["params"] = 1e8  # one model size
    table = pd.concat([table, table.iloc[:3]], ignore_index=True)  # three rows copied
    path = tmp_path / "runs.csv"
    table.to_csv(path, index=False)
    code, out, err = run_cli("fit", "--law", "chinchilla", "--data", path, "--starts", "8")
    assert code == 0, err
    assert ("caveat: 3 rows repeat another row exactly (params, tokens, loss): each counts again in the fit and "
            "narrows its band as if it were a new measurement; drop the copies") in out.splitlines()
    assert ("caveat: every row has the same model size: the model-size terms of law chinchilla are not determined "
            "by these data (fit runs of several sizes)") in out.splitlines()
