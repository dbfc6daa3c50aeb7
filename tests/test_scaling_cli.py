"""`spt fit`, `spt predict`, `spt optimal-fraction`, `spt compute-optimal`, `spt plot`, run in-process."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling_laws import synthetic
from tests.conftest import tree


@pytest.fixture
def spt_csv(tmp_path):
    path = tmp_path / "sweep.csv"
    synthetic.spt_table(noise=0.0005, seed=0, target="domain_loss", num_budgets=6).to_csv(path, index=False)
    return path


@pytest.fixture
def spt_fit_json(tmp_path, spt_csv, run_cli):
    out = tmp_path / "spt.json"
    code, _, err = run_cli("fit", "--law", "spt", "--data", spt_csv, "--loss-column", "domain_loss",
                           "--starts", "16", "--bootstrap", "4", "--out", out)
    assert code == 0, err
    return out


def test_fit_chinchilla_with_the_default_4500_start_grid(tmp_path, run_cli):
    data, out = tmp_path / "runs.csv", tmp_path / "fit.json"
    synthetic.chinchilla_table(n=300, noise=0.003, seed=3).to_csv(data, index=False)
    code, stdout, err = run_cli("fit", "--law", "chinchilla", "--data", data, "--out", out)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert {"law", "params", "objective", "n_points"} <= set(result) and "intervals" not in result
    assert result["law"] == "chinchilla" and result["n_points"] == 300
    assert result["settings"]["n_starts"] == 4500
    assert set(result["params"]) == {"E", "A", "B", "alpha", "beta"}
    for name, value in synthetic.CHINCHILLA.items():
        assert result["params"][name] == pytest.approx(value, rel=0.2)
    assert "law chinchilla: 300 points, 4500 starts" in stdout


def test_fit_spt_on_a_sweep_table_then_predict_and_choose_the_fraction(tmp_path, spt_csv, spt_fit_json, run_cli):
    result = json.loads(spt_fit_json.read_text())
    assert result["law"] == "spt" and set(result["intervals"]) == set(synthetic.SPT)
    assert result["settings"]["loss_column"] == "domain_loss" and len(result["bootstrap_samples"]) == 4

    predicted = tmp_path / "predicted.csv"
    code, _, err = run_cli("predict", "--fit", spt_fit_json, "--data", spt_csv, "--out", predicted)
    assert code == 0, err
    table = pd.read_csv(predicted)
    assert {"predicted_loss", "predicted_loss_lower", "predicted_loss_upper"} <= set(table.columns)
    np.testing.assert_allclose(table["predicted_loss"], table["domain_loss"], rtol=5e-3)

    code, stdout, err = run_cli("optimal-fraction", "--fit", spt_fit_json, "--tokens", "1e9", "1e12", "--json")
    assert code == 0, err
    choices = json.loads(stdout)
    assert [c["tokens"] for c in choices] == [1e9, 1e12]
    assert choices[0]["fraction_range"] == [0.0, 0.5] and 0.0 < choices[0]["fraction"] < 0.5
    assert choices[0]["fraction_interval"][0] <= choices[0]["fraction"] <= choices[0]["fraction_interval"][1]
    assert choices[0]["compute_multiplier"] > 1.0
    assert "note: tokens=1e+12 is outside the fitted range [1e+08, 1e+10]" in err

    code, stdout, _ = run_cli("optimal-fraction", "--fit", spt_fit_json, "--tokens", "1e9", "--widen")
    assert code == 0 and "fractions searched [0, 1]" in stdout and "delta*" in stdout


def test_muennighoff_fit_can_hold_a_chinchilla_base_fixed(tmp_path, run_cli):
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"law": "chinchilla", "objective": 0.0, "n_points": 1, "params": {
        k: synthetic.MUENNIGHOFF[k] for k in ("E", "A", "B", "alpha", "beta")}}))
    data, out = tmp_path / "repeats.csv", tmp_path / "fit.json"
    synthetic.muennighoff_table(noise=0.003, seed=2).to_csv(data, index=False)
    code, stdout, err = run_cli("fit", "--law", "muennighoff", "--data", data, "--fix", base, "--out", out)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["fixed"] == ["A", "B", "E", "alpha", "beta"] and result["params"]["A"] == synthetic.MUENNIGHOFF["A"]
    assert result["params"]["R_D_star"] == pytest.approx(synthetic.MUENNIGHOFF["R_D_star"], rel=0.1)
    assert "(fixed)" in stdout

    code, stdout, err = run_cli("compute-optimal", "--fit", out, "--flops", "1e21", "--json")
    assert code == 0, err
    assert json.loads(stdout)[0]["params"] > 0


def test_fit_reports_the_extrapolation_check(tmp_path, run_cli):
    data, out = tmp_path / "runs.csv", tmp_path / "fit.json"
    synthetic.chinchilla_table(n=120, noise=0.003, seed=8).to_csv(data, index=False)
    code, stdout, err = run_cli("fit", "--law", "chinchilla", "--data", data, "--starts", "60", "--holdout", "0.25",
                                "--out", out)
    assert code == 0, err
    report = json.loads(out.read_text())["extrapolation"]
    assert report["n_holdout"] == 30 and report["mean_abs_rel_error"] < 0.02
    assert "extrapolation: fit on 90 rows" in stdout


def test_plot_writes_png_and_svg(tmp_path, spt_csv, spt_fit_json, run_cli):
    code, _, err = run_cli("plot", "--fit", spt_fit_json, "--data", spt_csv, "--out-dir", tmp_path / "figs",
                           "--tokens", "1e8", "1e9")
    assert code == 0, err
    assert tree(tmp_path / "figs") == sorted(f"{name}.{ext}" for name in ("loss_curves", "optimal_fraction",
                                                                         "residuals") for ext in ("png", "svg"))


def test_dry_runs_write_nothing(tmp_path, spt_csv, spt_fit_json, run_cli):
    before = tree(tmp_path)
    commands = [
        ("fit", "--law", "spt", "--data", spt_csv, "--loss-column", "domain_loss", "--out", tmp_path / "x.json"),
        ("predict", "--fit", spt_fit_json, "--data", spt_csv, "--out", tmp_path / "x.csv"),
        ("optimal-fraction", "--fit", spt_fit_json, "--tokens", "1e9"),
        ("plot", "--fit", spt_fit_json, "--data", spt_csv, "--out-dir", tmp_path / "figs"),
    ]
    for command in commands:
        code, stdout, err = run_cli(*command, "--dry-run")
        assert code == 0, err
        assert "dry run" in stdout
    assert tree(tmp_path) == before
    code, stdout, _ = run_cli(*commands[0], "--dry-run")
    assert "48 rows" in stdout and "fraction: min 0, max 0.5" in stdout


def write_csv(path, text):
    path.write_text(text)
    return path


CHINCHILLA_ROWS = "1e7,1e9,3.1\n3e7,1e9,3.0\n1e8,3e9,2.8\n3e8,1e10,2.6\n1e9,3e10,2.4\n3e9,1e11,2.3\n1e7,3e9,3.05\n"


@pytest.mark.parametrize(
    ("text", "law", "expected"),
    [
        ("params,tokens,loss\n" + CHINCHILLA_ROWS.replace("3e9,1e11,2.3", "3e9,1e11,nan"), "chinchilla",
         ["column 'loss', row 6: NaN"]),
        ("params,tokens,loss\n" + CHINCHILLA_ROWS.replace("3e7,1e9,3.0", "-5,1e9,3.0"), "chinchilla",
         ["column 'params', row 2: -5 is not positive"]),
        ("params,tokens,loss\n" + CHINCHILLA_ROWS.replace("1e8,3e9,2.8", "1e8,abc,0"), "chinchilla",
         ["column 'tokens', row 3: not a number ('abc')", "column 'loss', row 3: 0 is not positive"]),
        ("params,tokens,loss\n" + CHINCHILLA_ROWS.replace("3e7,1e9,3.0", "3e7,1e9,"), "chinchilla",
         ["column 'loss', row 2: empty"]),
        ("params,tokens,loss\n" + CHINCHILLA_ROWS.replace("3e7,1e9,3.0", "3e7,inf,3.0"), "chinchilla",
         ["column 'tokens', row 2: not finite (inf)"]),
        ("params,tokens,loss\n1e7,1e9,3.1\n3e7,1e9,3.0\n1e8,3e9,2.8\n3e8,1e10,2.6\n", "chinchilla",
         ["{path}: 4 rows, but law chinchilla fits 5 parameters and needs at least 6 rows"]),
        ("params,tokens,loss\n" + CHINCHILLA_ROWS, "muennighoff",
         ["{path}: missing column 'unique_tokens' (law muennighoff needs params, tokens, unique_tokens, loss)"]),
        ("tokens,fraction,loss\n" + "".join(f"{t},{f},3.0\n" for t in (1e8, 1e9, 1e10) for f in (0, 0.1, 1.3, 0.2)
                                            for _ in range(2)), "spt",
         [f"column 'fraction', row {row}: 1.3 is outside [0, 1]" for row in (5, 6, 13, 14, 21, 22)]),
        ("tokens,fraction,loss\n" + "".join(f"{t},{f},3.0\n" for t in np.geomspace(1e8, 1e10, 8) for f in (0, 0.1)),
         "spt", ["column 'fraction': 2 distinct values, law spt needs at least 3"]),
    ],
)
def test_bad_data_is_reported_by_column_and_row(tmp_path, run_cli, text, law, expected):
    data, out = write_csv(tmp_path / "bad.csv", text), tmp_path / "fit.json"
    code, _, err = run_cli("fit", "--law", law, "--data", data, "--out", out)
    assert code == 2
    assert err.splitlines() == [f"error: {line.format(path=data)}" for line in expected]
    assert not out.exists()


def test_bad_files_and_options_are_reported(tmp_path, run_cli):
    out = tmp_path / "fit.json"
    code, _, err = run_cli("fit", "--law", "chinchilla", "--data", tmp_path / "absent.csv", "--out", out)
    assert code == 2 and err == f"error: {tmp_path / 'absent.csv'}: no such file\n"
    data = write_csv(tmp_path / "runs.csv", "params,tokens,loss\n" + CHINCHILLA_ROWS)
    code, _, err = run_cli("fit", "--law", "chinchilla", "--data", data, "--fix", data, "--out", out)
    assert code == 2 and err == "error: --fix applies to --law muennighoff, not chinchilla\n"
    code, _, err = run_cli("predict", "--fit", data, "--data", data)
    assert code == 2 and err.startswith(f"error: {data}: not JSON")
    fit_json = write_csv(tmp_path / "fit.json.in", json.dumps({"law": "chinchilla", "params": {"E": 1.0}}))
    code, _, err = run_cli("predict", "--fit", fit_json, "--data", data)
    assert code == 2 and err == f"error: {fit_json}: missing key 'objective'\n"
    assert not out.exists()


def test_optimal_fraction_rejects_a_chinchilla_fit(tmp_path, run_cli):
    fit_json = write_csv(tmp_path / "fit.json", json.dumps({"law": "chinchilla", "objective": 0.0, "n_points": 1,
                                                            "params": synthetic.CHINCHILLA}))
    code, _, err = run_cli("optimal-fraction", "--fit", fit_json, "--tokens", "1e9")
    assert code == 2 and err == f"error: {fit_json}: optimal-fraction needs an spt fit; this fit is law chinchilla\n"


def test_every_command_has_a_help_line():
    from spt.cli import build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command")._choices_actions
    helps = {action.dest: action.help for action in choices}
    for command in ("fit", "predict", "optimal-fraction", "compute-optimal", "plot"):
        assert helps.get(command), command
