"""bl.compare_random_effects of binary and count models: ML (Laplace) fits by bl.glmer,
each neighbour's likelihood-ratio test against lme4's anova(glmer(full), glmer(reduced))
(a glm when no random term is left; tests/data/lme4_glmer_ranova.R)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.errors import ArgumentError, BayesLMMError, ComparisonError

DATA = Path(__file__).parent / "data"
REF = {c["id"]: c for c in json.loads((DATA / "lme4_glmer_ranova.json").read_text())["cases"]}


def _slopes() -> pd.DataFrame:
    d = pd.read_csv(DATA / "glmm_slopes.csv")
    d["g"] = d["g"].astype(str)
    return d


DATASETS = {
    "cbpp": lambda: bl.load_dataset("cbpp"),
    "grouseticks": lambda: bl.load_dataset("grouseticks"),
    "grouseticks_nb": lambda: bl.load_dataset("grouseticks"),
    "epil_nb": lambda: pd.read_csv(DATA / "epil.csv"),
    "slopes": _slopes,
}


def _compare(case: str, **kwargs) -> bl.RandomEffectsComparison:
    ref = REF[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error", bl.ConvergenceWarning)  # lme4 converged on every fit
        return bl.compare_random_effects(ref["formula"], DATASETS[case](),
                                         family=ref["family"], **kwargs)  # fmt: skip


@pytest.mark.parametrize("case", ["cbpp", "grouseticks", "slopes", "epil_nb"])
def test_likelihood_ratio_tests_equal_lme4_anova(case):
    ref = REF[case]
    result = _compare(case)
    table = result.table
    assert list(table["neighbour"]) == [n["formula"] for n in ref["neighbours"]]
    assert result.method == "ML (Laplace)" and result.family == ref["family"]
    assert result.reml.loglik == pytest.approx(ref["logLik"], abs=1e-4)
    for (_, row), want in zip(table.iterrows(), ref["neighbours"], strict=True):
        assert row["Df"] == want["Df"]
        assert row["LRT"] == pytest.approx(want["LRT"], abs=1e-4)
        assert row["p"] == pytest.approx(want["p"], rel=1e-4, abs=1e-12)
        assert row["p_boundary"] == pytest.approx(want["p_boundary"], rel=1e-4, abs=1e-12)
        assert row["AIC_diff"] == pytest.approx(want["AIC_diff"], abs=1e-4)
        assert row["BIC_diff"] == pytest.approx(want["BIC_diff"], abs=1e-4)
    # no Bayesian columns, and the result says why
    assert table[["log_BF", "elpd_diff"]].isna().all().all()
    assert any("not available for the" in n for n in result.notes)
    assert any("no REML" in n for n in result.notes)


def test_cbpp_herd_is_needed_and_printed():
    result = _compare("cbpp")
    row = result.table.iloc[0]
    assert row["component"] == "random term (1 | herd)" and row["kind"] == "term"
    assert row["null"] == "0.5 chi2(0) + 0.5 chi2(1)" and row["verdict"] == "needed"
    assert isinstance(result.neighbours[0].reml, bl.comparison.random_effects.GlmNeighbourFit)
    text = str(result)
    assert "The data support the random term (1 | herd)." in text
    assert "ML (Laplace) likelihood-ratio test rejects" in text
    assert "log_BF" not in text and "p_boundary" in text  # empty Bayesian columns left out


def test_bernoulli_family_equals_the_binomial_of_a_0_1_response():
    ref = REF["slopes"]
    table = bl.compare_random_effects(ref["formula"], _slopes(), family="bernoulli").table
    for row, want in zip(table.to_dict("records"), ref["neighbours"], strict=True):
        assert row["LRT"] == pytest.approx(want["LRT"], abs=1e-4)
        assert row["p_boundary"] == pytest.approx(want["p_boundary"], rel=1e-4)


def test_slopes_and_correlations_are_tested_with_the_gaussian_boundary_rule():
    table = _compare("slopes").table
    slope, cor = table.iloc[0], table.iloc[1]
    assert slope["kind"] == "slope" and slope["null"] == "0.5 chi2(1) + 0.5 chi2(2)"
    assert cor["kind"] == "correlation" and cor["null"] == "chi2(1)"
    assert cor["p_boundary"] == cor["p"]


def test_grouseticks_negative_binomial_equals_glmer_nb():
    """lme4's glmer.nb does not converge tightly on the neighbours here (PIRLS fails along
    optimize()'s path), so R's neighbours are glmer.nb's defaults: bl.glmer's optimum is at
    least as high, and the statistics agree to 1e-3."""
    ref = REF["grouseticks_nb"]
    result = _compare("grouseticks_nb", bayes=False)
    assert result.reml.loglik == pytest.approx(ref["logLik"], abs=1e-4)
    assert not any("not available" in n for n in result.notes)  # bayes=False: not asked
    for n, row, want in zip(result.neighbours, result.table.to_dict("records"),
                            ref["neighbours"], strict=True):  # fmt: skip
        assert n.reml.nb_estimated
        assert n.reml.loglik >= want["logLik_small"] - 1e-6
        assert row["Df"] == want["Df"]
        assert row["LRT"] == pytest.approx(want["LRT"], abs=1e-3)
        assert row["p_boundary"] == pytest.approx(want["p_boundary"], rel=1e-3)


def test_terms_choose_the_neighbours():
    ref = REF["grouseticks"]
    data = bl.load_dataset("grouseticks")
    for terms in ("LOCATION", "(1 | LOCATION)", ["1|LOCATION"]):
        table = bl.compare_random_effects(ref["formula"], data, family="poisson",
                                          terms=terms).table  # fmt: skip
        assert list(table["neighbour"]) == [ref["neighbours"][1]["formula"]]
        assert table["LRT"].iloc[0] == pytest.approx(ref["neighbours"][1]["LRT"], abs=1e-4)


def test_bad_input_is_refused_clearly():
    cbpp = bl.load_dataset("cbpp")
    formula = REF["cbpp"]["formula"]
    with pytest.raises(BayesLMMError, match="unknown family 'gamma'"):
        bl.compare_random_effects(formula, cbpp, family="gamma")
    with pytest.raises(ComparisonError, match="'nothere' is not a random term"):
        bl.compare_random_effects(formula, cbpp, family="binomial", terms="nothere")
    with pytest.raises(ArgumentError, match="terms must be random terms as strings"):
        bl.compare_random_effects(formula, cbpp, family="binomial", terms=[1])
    with pytest.raises(ArgumentError, match="priors: settings of the Bayesian fits"):
        bl.compare_random_effects(formula, cbpp, family="binomial", priors={"sd": None})
    with pytest.raises(ArgumentError, match="draws: settings of the Bayesian fits"):
        bl.compare_random_effects(formula, cbpp, family="binomial", draws=200)
    with pytest.raises(ComparisonError, match="data is missing"):
        bl.compare_random_effects(formula, family="binomial")
    with pytest.raises(ComparisonError, match="no random term"):
        bl.compare_random_effects("cbind(incidence, size - incidence) ~ period", cbpp,
                                  family="binomial")  # fmt: skip
    sleep = bl.load_dataset("sleepstudy")
    with pytest.raises(ArgumentError, match="weights= and offset= are for binary and count"):
        bl.compare_random_effects("Reaction ~ Days + (Days | Subject)", sleep, offset="Days")
    with pytest.raises(ComparisonError, match="'Subject' has no simpler neighbour|no simpler"):
        bl.compare_random_effects("Reaction ~ Days + (1 | Subject)", sleep, terms="Subject")


def test_rows_of_the_user_data_are_not_changed():
    data = bl.load_dataset("cbpp")
    before = data.copy()
    result = bl.compare_random_effects(REF["cbpp"]["formula"], data, family="binomial")
    pd.testing.assert_frame_equal(data, before)
    assert np.isfinite(result.table["LRT"]).all()


def test_glmer_fits_given_are_reused_only_for_the_same_model_and_rows():
    ref = REF["grouseticks"]
    data = bl.load_dataset("grouseticks")
    full = bl.glmer(ref["formula"], data, family="poisson")
    small = bl.glmer(ref["neighbours"][1]["formula"], data, family="poisson")
    other = bl.glmer(ref["neighbours"][0]["formula"] + " + offset(cHEIGHT)", data,
                     family="poisson")  # fmt: skip
    result = bl.compare_random_effects(ref["formula"], data, family="poisson",
                                       fits={"a": full, "b": small, "c": other})  # fmt: skip
    assert result.reml is full and result.neighbours[1].reml is small
    assert result.neighbours[0].reml is not other  # another offset: refitted
    assert result.table["LRT"].iloc[0] == pytest.approx(ref["neighbours"][0]["LRT"], abs=1e-4)
