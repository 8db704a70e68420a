"""bl.compare_random_effects of binary and count models: ML (Laplace) fits by bl.glmer,
each neighbour's likelihood-ratio test against lme4's anova(glmer(full), glmer(reduced))
(a glm when no random term is left; tests/data/lme4_glmer_ranova.R); with Bayesian
neighbours, Bayes factors and leave-one-out against independent scipy computations (below)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.special
import scipy.stats

import bayeslmm as bl
from bayeslmm.bayes import stack
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


# -- Bayesian neighbours: Bayes factors and leave-one-out ------------------------------------
# References: the log evidence of the GLMM and of the GLM computed here independently of
# bayeslmm's bridge and quadrature (importance sampling from a multivariate t fitted to the
# posterior draws, each herd's effect integrated by 60-node non-adaptive Gauss-Hermite, the
# likelihood by scipy's binom.logpmf and the priors by scipy's norm and halfnorm), and each
# herd's leave-one-out score by plain importance sampling of scipy's sums.

SMALL = {"draws": 200, "tune": 200, "chains": 2, "random_seed": 1, "progressbar": False}


def _quiet(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kwargs)


def _importance_log_evidence(model, data, points: int, seed: int) -> float:
    """log p(y) of a cbpp model (with or without (1 | herd)) by importance sampling."""
    post = model.idata.posterior
    p = len(model.design.fixed_names)
    cols = [post["beta"].values.reshape(-1, p)]
    herd = bool(model.design.blocks)
    if herd:
        cols.append(np.log(post["sd_herd"].values.reshape(-1, 1)))
    x = np.column_stack(cols)
    proposal = scipy.stats.multivariate_t(x.mean(0), 1.5 * np.cov(x.T), df=5, seed=seed)
    pts = proposal.rvs(points)
    k, n = data["incidence"].to_numpy(), data["size"].to_numpy()
    eta = pts[:, :p] @ np.asarray(model.design.X).T  # draws x rows
    if herd:
        nodes, weights = np.polynomial.hermite_e.hermegauss(60)
        log_w = np.log(weights) - 0.5 * np.log(2 * np.pi)
        codes = model.design.blocks[0].codes
        ll = np.zeros(len(pts))
        for s in range(len(pts)):
            mu = scipy.special.expit(eta[s][:, None] + np.exp(pts[s, p]) * nodes[None, :])
            per_herd = np.zeros((codes.max() + 1, len(nodes)))
            np.add.at(per_herd, codes, scipy.stats.binom.logpmf(k[:, None], n[:, None], mu))
            ll[s] = scipy.special.logsumexp(per_herd + log_w, axis=1).sum()
    else:
        ll = scipy.stats.binom.logpmf(k, n, scipy.special.expit(eta)).sum(axis=1)
    lp = sum(scipy.stats.norm(0, model.priors[c].params["sigma"]).logpdf(pts[:, j])
             for j, c in enumerate(model.design.fixed_names))  # fmt: skip
    if herd:
        sd = model.priors["sd((Intercept)|herd)"].params["sigma"]
        lp = lp + scipy.stats.halfnorm(scale=sd).logpdf(np.exp(pts[:, p])) + pts[:, p]
    w = ll + lp - proposal.logpdf(pts)
    return float(scipy.special.logsumexp(w) - np.log(len(w)))


@pytest.fixture(scope="module")
def cbpp_bayes():
    ref = REF["cbpp"]
    data = bl.load_dataset("cbpp")
    model = bl.LMM(ref["formula"], data, family="binomial")
    _quiet(model.fit, **SMALL)
    return data, model, _quiet(bl.compare_random_effects, model, data)


def test_cbpp_bayes_factor_of_the_herd_term_against_the_glm(cbpp_bayes):
    """A fitted Bayesian GLMM given: reused, its GLM neighbour a Bayesian GLM; the log BF is
    the difference of the two bridge-sampled evidences, each within 0.1 of an independent
    importance-sampling estimate (measured: GLMM -105.318 vs -105.321, GLM -111.258 vs
    -111.252); the LRT still lme4's."""
    data, model, result = cbpp_bayes
    ref = REF["cbpp"]
    assert result.model is model and result.family == "binomial"
    row = result.table.iloc[0]
    assert row["LRT"] == pytest.approx(ref["neighbours"][0]["LRT"], abs=1e-4)
    glm = result.neighbours[0].bayes
    assert glm is not None and not glm.design.blocks
    full_ev, glm_ev = model.log_marginal_likelihood(), result.neighbours[0].evidence
    assert row["log_BF"] == pytest.approx(full_ev.logml - glm_ev.logml, abs=1e-12)
    assert row["log_BF_error"] == pytest.approx(np.hypot(full_ev.error, glm_ev.error))
    assert row["BF"] == pytest.approx(np.exp(row["log_BF"]))
    assert 0 < row["log_BF_error"] < 0.1
    assert full_ev.logml == pytest.approx(_importance_log_evidence(model, data, 3000, 7),
                                          abs=0.1)  # fmt: skip
    assert glm_ev.logml == pytest.approx(_importance_log_evidence(glm, data, 100_000, 7),
                                         abs=0.1)  # fmt: skip
    assert row["log_BF"] > np.log(3) and row["verdict"] == "needed"
    assert "the Bayes factor favours the fitted model" in result.conclusions[0]
    notes = " ".join(result.notes)
    assert "adaptive Gauss-Hermite quadrature with 32 nodes" in notes
    assert "no random effects: bridge sampling on beta" in notes
    assert "Leave-one-herd-out" in notes and "not available" not in notes


def test_cbpp_leave_one_herd_and_one_observation_out(cbpp_bayes):
    """Leave-one-herd-out of the GLM neighbour: each herd's rows' log-pmf summed (scipy's
    binom.logpmf here); its PSIS elpd within 0.05 per herd of plain importance sampling
    where Pareto k is small. Both leave-one-out columns finite."""
    data, model, result = cbpp_bayes
    row = result.table.iloc[0]
    for column in ("elpd_diff", "elpd_diff_se", "elpd_obs_diff", "elpd_obs_diff_se"):
        assert np.isfinite(row[column]), column
    assert row["k_high"] >= 0 and row["k_high_obs"] >= 0
    assert result.group == "herd" and result.loo.unit == "herd"
    assert result.loo_observation is not None and result.loo_observation.by == "observation"
    glm = result.neighbours[0].bayes
    beta = glm.idata.posterior["beta"].values.reshape(-1, 4)
    k, n = data["incidence"].to_numpy(), data["size"].to_numpy()
    ll = scipy.stats.binom.logpmf(k, n, scipy.special.expit(beta @ np.asarray(glm.design.X).T))
    codes = model.design.blocks[0].codes
    herd = np.stack([ll[:, codes == j].sum(axis=1) for j in range(15)], axis=1)
    plain = -(scipy.special.logsumexp(-herd, axis=0) - np.log(len(herd)))
    res = result.loo.loo[glm.formula]
    elpd = stack.pointwise_elpd(res)
    small_k = np.asarray(res.pareto_k) < 0.5
    assert small_k.sum() >= 10
    np.testing.assert_allclose(elpd[small_k], plain[small_k], atol=0.05)
    fitted = f"{model.formula} (fitted)"
    diff = stack.pointwise_elpd(result.loo.loo[fitted]) - elpd
    assert row["elpd_diff"] == pytest.approx(diff.sum())
    text = str(result)
    assert "log_BF" in text and "elpd_obs_diff" in text


def test_crossed_verbagg_has_no_bayes_factor_but_leave_one_out():
    """Crossed subjects and items (VerbAgg's first 30 people, tests/data/
    lme4_glmer_ranova_verbagg.R): the LRTs are lme4's, the Bayes factor is refused with a
    note (one grouping factor needed), leave-one-item-out and leave-one-observation-out are
    filled."""
    ref = json.loads((DATA / "lme4_glmer_ranova_verbagg.json").read_text())
    data = bl.load_dataset("verbagg")
    data = data[data["id"].isin(pd.unique(data["id"])[:30])]
    assert ref["rows"] == len(data)
    result = _quiet(bl.compare_random_effects, ref["formula"], data, family="bernoulli",
                    bayes=True,
                    draws=100, tune=150, chains=2, random_seed=2)  # fmt: skip
    table = result.table
    for row, want in zip(table.to_dict("records"), ref["neighbours"], strict=True):
        assert row["LRT"] == pytest.approx(want["LRT"], abs=1e-3)
    assert table["log_BF"].isna().all() and table["BF"].isna().all()
    notes = " ".join(result.notes)
    assert "Bayes factors were not computed" in notes and "needs one grouping factor" in notes
    assert np.isfinite(table[["elpd_diff", "elpd_obs_diff"]].to_numpy(float)).all()
    assert result.group in ("id", "item")
    assert "given the draws of the other factors' effects" in notes
    assert "log_BF" not in str(result)


def test_negative_binomial_bayes_compares_by_observation_with_notes_for_the_rest():
    """The negative binomial is sampled (theta too) and its neighbours share the model's
    priors, theta's included: leave-one-observation-out is computed; the Bayes factors and
    leave-one-group-out (whose integrals do not cover this family) are notes."""
    ref = REF["grouseticks_nb"]
    data = bl.load_dataset("grouseticks")
    result = _quiet(bl.compare_random_effects, ref["formula"], data,
                    family="negative_binomial", bayes=True, draws=100, tune=100, chains=2,
                    random_seed=1)  # fmt: skip
    assert result.table[["log_BF", "elpd_diff"]].isna().all().all()
    assert np.isfinite(result.table["elpd_obs_diff"].astype(float)).all()
    assert any("Bayes factors were not computed" in n for n in result.notes)
    assert any("Leave-one-group-out was not computed" in n for n in result.notes)


def test_fitted_glmm_needs_its_data_and_family(cbpp_bayes):
    data, model, _ = cbpp_bayes
    with pytest.raises(ComparisonError, match="without data is not for non-Gaussian"):
        bl.compare_random_effects(model)
    with pytest.raises(ComparisonError, match="is a binomial"):
        bl.compare_random_effects(model, data, family="poisson")
    with pytest.raises(ComparisonError, match="was not fitted to these data"):
        bl.compare_random_effects(model, data.iloc[:-4])
    with pytest.raises(ArgumentError, match="priors: the fitted model has its priors"):
        bl.compare_random_effects(model, data, priors={"sd": None})
