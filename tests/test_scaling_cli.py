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
    # A table of final losses (no run_id): every row is its own run, resampled as such.
    assert result["settings"]["fitted"] == "held-out" and result["settings"]["bootstrap_method"] == "points"

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
    assert len(choices[0]["fraction_interval"]) == 2
    assert choices[0]["model_multiplier"] > 1.0 and choices[0]["basis"] == "pre-finetune"
    assert choices[0]["measured_multiplier"]["reached"] in ("yes", "no", "before the first evaluation")
    assert [c["extrapolated"] for c in choices] == [False, True]
    assert err == ("WARNING: delta* at T=1e+12 is an EXTRAPOLATION: 100x the largest trained budget (more than 2x); "
                   "no run checked the law there\n")

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
    # Beside each figure, hidden, the sidecar that lets a rerun replace it (and nothing else: issue 24, finding 1).
    assert [p for p in tree(tmp_path / "figs") if not p.startswith(".")] == sorted(f"{name}.{ext}" for name in (
        "compute_multiplier", "loss_curves", "optimal_fraction", "residuals") for ext in ("png", "svg"))


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
    from cli.main import build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command")._choices_actions
    helps = {action.dest: action.help for action in choices}
    for command in ("fit", "predict", "optimal-fraction", "decide", "compute-optimal", "plot"):
        assert helps.get(command), command


NULL, DELETE = object(), object()


def spt_fit_dict(**changes) -> dict:
    """A hand-written fit of the paper's form (no bootstrap), with ``changes`` applied: ``params.NAME`` keys set a
    parameter, ``NULL`` writes a JSON null, ``DELETE`` removes the key."""
    data = {"law": "spt", "params": dict(synthetic.SPT), "objective": 0.0, "n_points": 0,
            "data_ranges": {"tokens": [1e8, 1e10], "fraction": [0.0, 0.5]}}
    for key, value in changes.items():
        where, name = (data["params"], key.split(".", 1)[1]) if key.startswith("params.") else (data, key)
        if value is DELETE:
            where.pop(name)
        else:
            where[name] = None if value is NULL else value
    return data


@pytest.mark.parametrize(("changes", "expected"), [
    ({"objective": NULL}, "objective=null: must be a finite number (the fit's final objective value; write 0 for "
                          "parameters set by hand)"),
    ({"params.k0": "1.0"}, 'params.k0="1.0": must be a finite number'),
    ({"params.a1": NULL}, "params.a1=null: must be a finite number"),
    ({"params.b_gap_s": True}, "params.b_gap_s=true: must be a finite number"),
    ({"params": [1, 2]}, "params: expected an object of parameter values, got list"),
    ({"params": {"k0": 1.0}}, "params lacks A_train, b_train_s, b_train_g, b_gap_s, b_gap_g, a1, a2, a3, k1, k2, "
                              "k3 (law spt)"),
    ({"law": 7}, "law=7: expected one of chinchilla, muennighoff, spt, spt-regularized, spt-n, spt-train, spt-gap, "
                 "spt-regularized-train, spt-regularized-gap, spt-epochs, finetune-gain"),
    ({"law": "gpt"}, "law='gpt': expected one of chinchilla, muennighoff, spt, spt-regularized, spt-n, spt-train, "
                     "spt-gap, spt-regularized-train, spt-regularized-gap, spt-epochs, finetune-gain"),
    ({"n_points": "x"}, 'n_points="x": must be a finite number'),
    ({"n_points": 2.5}, "n_points=2.5: must be a whole number >= 0"),
    ({"objective": DELETE}, "missing key 'objective'"),
    ({"level": 2}, "level=2: must be in (0, 1)"),
    ({"data_ranges": {"tokens": [1e8, "x"]}}, 'data_ranges.tokens="x": must be a finite number'),
    ({"data_ranges": {"tokens": 5}}, "data_ranges.tokens: expected [min, max], got 5"),
    ({"data_ranges": []}, "data_ranges: expected an object, got list"),
    ({"bootstrap_samples": [[1.0, 2.0]]}, "bootstrap_samples[0]: expected a list of 12 numbers"),
    ({"bootstrap_samples": [[1.0] * 11 + ["x"]]}, 'bootstrap_samples[0][11]="x": must be a finite number'),
    ({"decision": {"finetune": [{"fraction": 0.1, "tokens": None, "finetune_loss": 3.0}]}},
     "decision.finetune[0].tokens=null: must be a finite number"),
    ({"decision": {"measured": [{"fraction": 0.1, "reached": "maybe"}]}},
     'decision.measured[0].reached="maybe": expected yes, no or before the first evaluation'),
    ({"caveats": "x"}, "caveats: expected a list, got str"),
])
def test_bad_fit_json_is_one_line_and_exit_2(tmp_path, run_cli, changes, expected):
    path = write_csv(tmp_path / "fit.json", json.dumps(spt_fit_dict(**changes)))
    inputs = write_csv(tmp_path / "x.csv", "tokens,fraction\n1e9,0.1\n")
    for command in (("optimal-fraction", "--fit", path, "--tokens", "1e9"),
                    ("predict", "--fit", path, "--data", inputs)):
        code, stdout, err = run_cli(*command)
        assert (code, stdout, err) == (2, "", f"error: {path}: {expected}\n")


def test_a_hand_written_fit_of_the_paper_form_works(tmp_path, run_cli):
    path = write_csv(tmp_path / "fit.json", json.dumps(spt_fit_dict()))
    code, stdout, err = run_cli("optimal-fraction", "--fit", path, "--tokens", "1e9", "--lines")
    assert code == 0, err
    assert stdout.startswith("delta_star tokens=1e+09 value=") and " basis=pre-finetune " in stdout
    assert " extrapolated=no budget_ratio=0.1 multiplier=nan " in stdout


@pytest.mark.parametrize(("out", "expected"), [
    ("folder", "--out='{out}': is a folder, expected a file path"),
    ("file/fit.json", "--out='{out}': exists and is not a folder"),
    ("file/deeper/fit.json", "--out='{out}': {tmp}/file is a file, not a folder"),
    ("/proc/spt-absent/fit.json", "--out='{out}': not writable (No such file or directory)"),
])
def test_an_unwritable_out_is_refused_before_reading_the_data(tmp_path, run_cli, out, expected):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("not a folder")
    before = tree(tmp_path)
    out = tmp_path / out
    # The data do not even exist: the output path is checked first, before any work.
    code, stdout, err = run_cli("fit", "--law", "spt", "--data", tmp_path / "absent", "--out", out)
    assert (code, stdout, err) == (2, "", f"error: {expected.format(out=out, tmp=tmp_path)}\n")
    assert tree(tmp_path) == before


@pytest.mark.parametrize(("options", "expected"), [
    (("--bootstrap", "-1"), "--bootstrap -1: must be 0 or more"),
    (("--level", "1.5"), "--level 1.5: must be in (0, 1)"),
    (("--holdout-tokens-above", "-3"), "--holdout-tokens-above -3: must be a positive number of tokens"),
    (("--holdout-fractions", "1.5"), "--holdout-fractions 1.5: must be in [0, 1]"),
    (("--huber-delta", "0"), "--huber-delta 0.0: must be positive"),
    (("--holdout-tokens-above", "1e20"), "{data}: the holdout (tokens above 1e+20, fractions none) matches no "
                                         "evaluation"),
])
def test_bad_fit_options_are_refused(tmp_path, spt_csv, run_cli, options, expected):
    out = tmp_path / "fit.json"
    code, stdout, err = run_cli("fit", "--law", "spt", "--data", spt_csv, "--loss-column", "domain_loss",
                                "--starts", "4", "--bootstrap", "0", *options, "--out", out)
    assert code == 2 and err == f"error: {expected.format(data=spt_csv)}\n"
    assert not out.exists()
