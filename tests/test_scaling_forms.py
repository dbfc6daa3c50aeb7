"""Law forms judged by their forecasts: the epoch-driven form ``spt-epochs``, the rolling-origin ranking of
``spt fit --law auto``, and the warning when delta* repeats the domain set more often than any pilot run did."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling_laws import synthetic
from scaling_laws.decision.forms import ORIGINS, origin_tokens, rank_forms
from scaling_laws.decision.optimal import optimal_fraction
from scaling_laws.decision.report import caveats
from scaling_laws.fitting.evaluations import fit_evaluations
from scaling_laws.fitting.result import FitResult
from scaling_laws.laws.epochs import SPTEpochs
from scaling_laws.stress import epoch_law
from spt.errors import InputError
from sweeps import tables

DOMAIN_TOKENS = 3200.0
TRUTH = {"L0": 2.0, "B": 300.0, "beta": 0.5, "w": 0.05, "R_star": 5.0, "G": 0.01, "gamma": 1.2}
FRACTIONS = (0.0, 0.01, 0.03, 0.1, 0.25, 0.5)


def pilot(loss, noise: float = 0.003, seed: int = 0, evaluations: int = 20, budget: float = 4e5) -> pd.DataFrame:
    """Evaluations of one run per fraction, every ``budget / evaluations`` tokens, with multiplicative noise."""
    rng = np.random.default_rng(seed)
    rows = []
    tokens = np.arange(1, evaluations + 1) * budget / evaluations
    for fraction in FRACTIONS:
        observed = loss(tokens, np.full(len(tokens), fraction)) * np.exp(rng.normal(0.0, noise, len(tokens)))
        rows += [{"run_id": f"d{fraction:g}", "fraction": fraction, "tokens": t, "domain_loss": v,
                  "domain_epochs": round(t * fraction / DOMAIN_TOKENS, 4)} for t, v in zip(tokens, observed)]
    return pd.DataFrame(rows)


def test_the_epoch_form_recovers_a_law_of_its_form_and_forecasts_4x():
    law = SPTEpochs(DOMAIN_TOKENS)
    table = pilot(lambda t, f: law.loss_at(TRUTH, t, f), noise=0.002)
    fit = fit_evaluations(table, form="spt-epochs", bootstrap_replicates=0)
    assert fit.law == "spt-epochs" and fit.settings["fitted"] == "held-out" and fit.settings["converged"]
    assert fit.constants == {"unique_domain_tokens": pytest.approx(DOMAIN_TOKENS, rel=1e-3)}
    tokens = np.full(len(FRACTIONS), 1.6e6)
    forecast, truth = fit.form.loss_at(fit.params, tokens, FRACTIONS), law.loss_at(TRUTH, tokens, FRACTIONS)
    assert np.max(np.abs(forecast / truth - 1)) < 0.01
    # The overfitting fractions turn upward, as the truth does: the forecast orders the swept fractions alike.
    assert np.argmin(forecast) == np.argmin(truth)


def test_the_epoch_form_needs_the_domain_set_size_and_keeps_it_in_the_fit_json(tmp_path):
    table = pilot(lambda t, f: SPTEpochs(DOMAIN_TOKENS).loss_at(TRUTH, t, f))
    with pytest.raises(InputError, match="needs the domain set's size"):
        fit_evaluations(table.drop(columns="domain_epochs"), form="spt-epochs", bootstrap_replicates=0)
    other = table.assign(domain_epochs=np.where(table["run_id"] == "d0.5", table["domain_epochs"] / 2,
                                                table["domain_epochs"]))
    with pytest.raises(InputError, match="disagree on the domain set's size"):
        fit_evaluations(other, form="spt-epochs", bootstrap_replicates=0)
    fit = fit_evaluations(table, form="spt-epochs", bootstrap_replicates=0)
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(fit.to_dict()))
    loaded = FitResult.load(path)
    assert loaded.form.unique_tokens == pytest.approx(fit.form.unique_tokens)
    inputs = {"tokens": np.array([1e6]), "fraction": np.array([0.1])}
    np.testing.assert_allclose(loaded.form.predict(loaded.params, inputs), fit.form.predict(fit.params, inputs))
    path.write_text(json.dumps({**fit.to_dict(), "constants": {}}))
    with pytest.raises(InputError, match="needs the constant unique_domain_tokens"):
        FitResult.load(path).form


def test_origins_are_evaluated_budgets_inside_the_pilot():
    table = pilot(lambda t, f: SPTEpochs(DOMAIN_TOKENS).loss_at(TRUTH, t, f))
    budgets = np.unique(table["tokens"])
    at = origin_tokens(table)
    assert len(at) == len(ORIGINS) and all(t in budgets for t in at) and max(at) < budgets[-1]
    assert at == sorted(at)
    with pytest.raises(InputError, match="at least 3 evaluations per fraction"):
        origin_tokens(table[table["tokens"] <= budgets[2]])


def test_auto_ranks_every_form_by_its_forecasts_and_picks_the_epoch_form_on_epoch_driven_pilots():
    """Pilots whose overfitting follows domain epochs (the coverage study's generator, not the SPT form): the
    rolling-origin score must prefer the form that describes them."""
    table = pilot(lambda t, f: epoch_law(t, f, domain_tokens=DOMAIN_TOKENS)[0], noise=0.003, seed=1)
    ranking = rank_forms(table, n_starts=64, seed=0)
    scores = {s["form"]: s for s in ranking["scores"]}
    assert set(scores) == {"spt", "spt-regularized", "spt-epochs"}
    assert all(len(s["rms_pct"]) == len(ranking["origins"]) for s in scores.values())
    assert ranking["chosen"] == "spt-epochs"
    assert scores["spt-epochs"]["score"] < min(scores["spt"]["score"], scores["spt-regularized"]["score"])


def test_a_table_without_epochs_ranks_the_paper_forms_and_says_why_the_epoch_form_is_missing():
    table = pilot(lambda t, f: SPTEpochs(DOMAIN_TOKENS).loss_at(TRUTH, t, f)).drop(columns="domain_epochs")
    ranking = rank_forms(table, forms=("spt-regularized", "spt-epochs"), n_starts=16, seed=0)
    assert [s["form"] for s in ranking["scores"]] == ["spt-regularized"]
    assert ranking["chosen"] == "spt-regularized"
    assert any("spt-epochs not scored" in note for note in ranking["notes"])


def test_delta_star_that_repeats_the_domain_set_beyond_the_pilot_is_warned(tmp_path):
    tables.write_sweep(tmp_path / "sweep", *synthetic.spt_sweep(fractions=(0.0, 0.05, 0.2), evaluations=8, seed=2,
                                                                domain_tokens=1e7))
    fit = tables.fit_sweep(tmp_path / "sweep", form="spt-regularized", bootstrap_replicates=0, n_starts=16)
    largest = fit.data_ranges["tokens"][1]
    assert fit.settings["unique_domain_tokens"] == pytest.approx(1e7, rel=1e-3)
    here = optimal_fraction(fit, largest)
    assert not [line for line in caveats(fit, [here]) if "repeats the domain set" in line]
    far = optimal_fraction(fit, 10 * largest)
    assert far.fraction > 0
    lines = [line for line in caveats(fit, [far]) if "repeats the domain set" in line]
    epochs = 10 * largest * far.fraction / 1e7
    assert len(lines) == 1 and f"{epochs:.3g} times" in lines[0], lines


def test_fit_law_auto_prints_each_forms_score_and_the_papers_delta_star(tmp_path, run_cli):
    folder, out = tmp_path / "sweep", tmp_path / "fit.json"
    tables.write_sweep(folder, *synthetic.spt_sweep(fractions=(0.0, 0.05, 0.2, 0.5), evaluations=12, seed=3,
                                                    domain_tokens=2e7))
    code, stdout, err = run_cli("fit", "--law", "auto", "--data", folder, "--starts", "16", "--bootstrap", "8",
                                "--out", out)
    assert code == 0, err
    assert "law forms judged by their forecasts inside the pilot" in stdout and "<- chosen" in stdout
    for form in ("spt", "spt-regularized", "spt-epochs"):
        assert f"\n  {form} " in stdout
    selection = json.loads(out.read_text())["settings"]["form_selection"]
    assert selection["chosen"] == json.loads(out.read_text())["law"]
    assert len(selection["delta_star"]) == 3 and {"chosen", "paper"} <= set(selection["delta_star"][0])
    assert "of the paper's form spt" in stdout
