"""Nothing lost, nothing run that should not be (issue 24, findings 1, 2, 7, 8 and 9): outputs replace only what
spt wrote, a copied sweep folder never writes into the original's MLflow store, temp folders of a killed build
go on the rerun, and inputs that make no sense are refused with one line instead of silent nonsense."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaling_laws import synthetic


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
