"""The delta-choosing notebook runs top to bottom on a small synthetic sweep and prints the delta* the CLI prints.

The kernel is the running interpreter (a kernelspec written to a temporary JUPYTER_PATH), so a fresh
``.venv/train`` needs no registered kernel. Executed copies go to ``$SPT_NOTEBOOK_OUTPUT`` when set (for CI
artifacts), else into the test's temporary folder; the HTML copy needs nbconvert.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat

from scaling_laws import synthetic
from spt.notebooks import execute_notebook, save_copies, stdout_lines
from sweeps import tables
from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "choose_repetition_fraction.ipynb"
FIGURES = ("loss_curves", "loss_by_epochs", "residuals", "optimal_fraction", "compute_multiplier")
# Small enough for the default test run: 16 starts per half of the law and 20 bootstrap refits; the form chosen
# by its forecasts inside the pilot, as the quickstart does.
SETTINGS = {"starts": 16, "bootstrap": 20, "seed": 3, "law": "auto"}
BUDGETS = [2e5, 4e6]  # inside the swept range, and 10x beyond it (an extrapolation, flagged)
DOMAIN_TOKENS = 1e4


def test_the_committed_notebook_has_no_outputs_and_one_parameters_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    tags = [tag for cell in code for tag in cell.metadata.get("tags", [])]
    assert tags.count("parameters") == 1 and tags.count("decision") == 1
    parameters = next(cell.source for cell in code if "parameters" in cell.metadata.get("tags", []))
    for name in ("results_dir", "budgets", "domain_tokens", "bootstrap", "seed", "starts", "output_dir",
                 "holdout_tokens_above", "holdout_fractions"):
        assert f"\n{name} = " in f"\n{parameters}"
    assert 'results_dir = "outputs/quickstart/sweep"' in parameters


def test_notebook_runs_on_a_small_sweep_and_prints_the_delta_star_of_the_cli(tmp_path, run_cli):
    sweep_dir, figures = tmp_path / "sweep", tmp_path / "figures"
    # A small pilot: 6 fractions, wsd schedule (warmup and decay evaluations are left out), fine-tuned runs.
    tables.write_sweep(sweep_dir, *synthetic.pilot_sweep(seed=1, evaluations=12, schedule="wsd"))

    parameters = dict(results_dir=str(sweep_dir), budgets=BUDGETS, domain_tokens=DOMAIN_TOKENS,
                      output_dir=str(figures), **SETTINGS)
    # The kernel starts in tmp_path: the notebook must not rely on its working folder.
    notebook = execute_notebook(NOTEBOOK, parameters, workdir=tmp_path)
    copies = save_copies(notebook, NOTEBOOK.stem, os.environ.get("SPT_NOTEBOOK_OUTPUT", str(tmp_path / "executed")))
    assert all(Path(path).stat().st_size > 0 for path in copies)

    errors = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert errors == []
    for name in FIGURES:
        assert (figures / f"{name}.png").stat().st_size > 0 and (figures / f"{name}.svg").stat().st_size > 0
    images = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if "image/png" in output.get("data", {})]
    assert len(images) == len(FIGURES)

    printed = stdout_lines(notebook)
    from_notebook = [line for line in printed if line.startswith("delta_star ")]
    assert len(from_notebook) == len(BUDGETS)
    assert all(" epochs=" in line and " low=nan" not in line and " basis=post-finetune " in line
               for line in from_notebook)
    assert [" extrapolated=yes " in line for line in from_notebook] == [False, True]
    assert any(line.startswith("WARNING: delta* at T=4e+06 is an EXTRAPOLATION") for line in printed)
    assert any(line.startswith("validation: fit on ") for line in printed)
    assert any(line.startswith("note: ") and "warmup evaluations left out" in line for line in printed)
    assert any(line.startswith("caveat: 20 bootstrap refits: the band is rough") for line in printed)
    assert ("the cost decision needs a size-aware fit (law spt-n, fitted on several model sizes); this fit is law "
            f"{json.loads((figures / 'fit.json').read_text())['law']}") in printed
    assert "law forms judged by their forecasts inside the pilot (RMS log error of the held-out loss beyond each " \
           "origin, %):" in printed and any(line.endswith("<- chosen") for line in printed)

    cli_fit = tmp_path / "cli-fit.json"
    code, _, err = run_cli("fit", "--law", SETTINGS["law"], "--data", sweep_dir, "--starts", SETTINGS["starts"],
                           "--bootstrap", SETTINGS["bootstrap"], "--seed", SETTINGS["seed"], "--out", cli_fit)
    assert code == 0, err
    code, stdout, err = run_cli("optimal-fraction", "--fit", cli_fit, "--tokens", *BUDGETS,
                                "--domain-tokens", DOMAIN_TOKENS, "--lines")
    assert code == 0, err
    assert stdout.splitlines() == from_notebook
    # Same inputs, starts, bootstrap and seed: the very same fit, down to the bootstrap replicates.
    notebook_fit, fitted = json.loads((figures / "fit.json").read_text()), json.loads(cli_fit.read_text())
    for key in ("law", "params", "bootstrap_samples", "data_ranges", "n_points"):
        assert notebook_fit[key] == fitted[key]


def test_cli_executes_a_notebook_with_parameters_into_its_own_folder(tmp_path, run_cli):
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                                   new_code_cell("print(f'delta_star x={x * 2}')")])
    nbformat.write(notebook, tmp_path / "tiny.ipynb")
    out = tmp_path / "report"
    for _ in range(2):  # a rerun replaces its own copies
        code, stdout, err = run_cli("notebook", tmp_path / "tiny.ipynb", "--out", out, "-p", "x=21")
        assert code == 0, err
        assert stdout.splitlines()[0] == "delta_star x=42"
    assert sorted(p.name for p in out.iterdir()) == [".spt-owner.json", "tiny.html", "tiny.ipynb"]
    executed = nbformat.read(out / "tiny.ipynb", as_version=4)
    assert executed.cells[1].source == "# Injected parameters\nx = 21"
