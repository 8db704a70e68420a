"""bl.glmer's negative binomial family against lme4's glmer.nb and glmer with MASS's
negative.binomial(theta) (tests/data/lme4_glmer_nb.R -> lme4_glmer_nb.json, on lme4's
grouseticks and MASS's epil), the family's functions against R's/scipy's, anova of nested
glmer.nb fits, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import bayeslmm as bl
from bayeslmm.errors import BayesLMMError, DataError
from bayeslmm.spec.family import FamilyError, get_family

DATA = Path(__file__).parent / "data"
REFS = json.loads((DATA / "lme4_glmer_nb.json").read_text())
REF = {c["id"]: c for c in REFS["cases"]}
GROUSE_NB = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"
EPIL = "y ~ trt + base + age + V4 + (1 | subject)"


def grouseticks() -> pd.DataFrame:
    g = pd.read_csv(DATA / "grouseticks.csv")
    return g.assign(YEAR=g.YEAR.astype(str).astype("category"))


def epil() -> pd.DataFrame:
    return pd.read_csv(DATA / "epil.csv")


DATASETS = {"grouseticks_nb": grouseticks, "epil_nb": epil}


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _check(fit, ref: dict, estimated: bool) -> None:
    assert fit.deviance == pytest.approx(ref["deviance"], rel=1e-6)
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    assert fit.nb_theta == pytest.approx(ref["nb_theta"], rel=1e-3 if estimated else 1e-12)
    assert list(fit.fixef().index) == list(ref["fixef"])
    assert _rel(fit.fixef()["estimate"].values, list(ref["fixef"].values())) < 1e-4
    assert _rel(fit.se.values, list(ref["se"].values())) < 1e-3
    assert _rel(fit.vcov_pirls.values.diagonal() ** 0.5, list(ref["se_rx"].values())) < 1e-3
    vc = fit.varcorr()
    for group in {row["group"] for row in ref["varcor"]}:
        theirs = [row["var"] for row in ref["varcor"] if row["group"] == group]
        np.testing.assert_allclose(vc.loc[vc["grp"] == group, "vcov"], theirs, rtol=1e-4)
    assert fit.singular == ref["singular"]
    np.testing.assert_allclose(fit.fitted()[:10], ref["fitted_head"], rtol=1e-4)
    np.testing.assert_allclose(fit.residuals()[:10], ref["resid_dev_head"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fit.residuals("pearson")[:10], ref["resid_pearson_head"],
                               rtol=1e-4, atol=1e-6)  # fmt: skip
    assert fit.deviance_residuals_sum == pytest.approx(ref["deviance_resid"], rel=1e-4)


@pytest.mark.parametrize("case", ["grouseticks_nb", "epil_nb"])
def test_glmer_nb_equals_lme4(case):
    ref = REF[case]
    fit = bl.glmer(ref["formula"], DATASETS[case](), family="negative_binomial")
    _check(fit, ref["tight"], estimated=True)
    # glmer.nb's deviance is never above lme4's default fit's
    assert fit.deviance <= ref["default"]["deviance"] + 1e-6 * fit.deviance
    # theta counts as a parameter, as lme4's npar
    assert fit.n_params == ref["tight"]["npar"]
    assert fit.aic == pytest.approx(ref["tight"]["AIC"], rel=1e-6)
    assert fit.bic == pytest.approx(ref["tight"]["BIC"], rel=1e-6)
    assert fit.df_resid == ref["tight"]["df_resid"]
    text = str(fit)
    assert f"Family: {ref['tight']['family']}  ( log )" in text


@pytest.mark.parametrize("case", ["grouseticks_nb", "epil_nb"])
def test_glmer_fixed_theta_equals_lme4_negative_binomial(case):
    ref = REF[case]
    fit = bl.glmer(ref["formula"], DATASETS[case](), family=("negative_binomial",
                                                               ref["fixed_theta"]))  # fmt: skip
    _check(fit, ref["fixed"], estimated=False)
    # a given theta is not a parameter (lme4 counts it anyway: its AIC is 2 higher)
    assert fit.n_params == ref["fixed"]["npar"] - 1
    assert not fit.nb_estimated
    assert f"Family: {ref['fixed']['family']}  ( log )" in str(fit)


def test_agq_at_fixed_theta_equals_lme4():
    ref = REFS["agq"]
    fit = bl.glmer(ref["formula"], epil(), family="negative_binomial", theta=ref["fixed_theta"],
                   nAGQ=ref["nAGQ"])  # fmt: skip
    _check(fit, ref, estimated=False)


def test_agq_with_theta_estimated_refused():
    # lme4's AGQ deviance leaves out the theta-dependent saturated likelihood: glmer.nb
    # with nAGQ = 10 finds theta 0.66 and logLik +113 on epil (Laplace: 7.42, -627.9)
    with pytest.raises(bl.ArgumentError, match="nAGQ = 10 with the negative binomial"):
        bl.glmer(EPIL, epil(), family="nb", nAGQ=10)


def test_underdispersed_counts_warn_and_reach_the_poisson_limit():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(30), 10)
    x = rng.normal(size=300)
    y = rng.binomial(10, 1 / (1 + np.exp(-(0.3 * x + rng.normal(0, 0.3, 30)[g]))))
    d = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    with pytest.warns(bl.ConvergenceWarning, match="no overdispersion"):
        fit = bl.glmer("y ~ x + (1 | g)", d, family="nb")
    poisson = bl.glmer("y ~ x + (1 | g)", d, family="poisson")
    assert fit.nb_theta == pytest.approx(1e6, rel=1e-3)
    # the Poisson limit: deviance and fixed effects as the Poisson fit's
    assert fit.deviance == pytest.approx(poisson.deviance, rel=1e-5)
    np.testing.assert_allclose(fit.fixef()["estimate"], poisson.fixef()["estimate"],
                               rtol=1e-3, atol=1e-4)  # fmt: skip


def test_theta_argument_and_spellings_agree():
    g = grouseticks()
    th = REF["grouseticks_nb"]["fixed_theta"]
    a = bl.glmer(GROUSE_NB, g, family="nb", theta=th)
    b = bl.glmer(GROUSE_NB, g, family=f"negative.binomial(theta = {th})")
    assert a.deviance == pytest.approx(b.deviance, rel=1e-12)
    assert a.nb_theta == b.nb_theta == th


def test_anova_of_nested_glmer_nb_equals_lme4():
    ref = REFS["anova"]
    g = grouseticks()
    m0 = bl.glmer(ref["formulas"][0], g, family="negbinomial")
    m1 = bl.glmer(ref["formulas"][1], g, family="negbinomial")
    assert m0.nb_theta != m1.nb_theta  # each estimates its own theta, as glmer.nb
    table = bl.anova(m1, m0).table
    np.testing.assert_array_equal(table["npar"], ref["npar"])
    np.testing.assert_allclose(table["logLik"], ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose(table["AIC"], ref["AIC"], rtol=1e-6)
    np.testing.assert_allclose(table["BIC"], ref["BIC"], rtol=1e-6)
    assert table["Chisq"].iloc[1] == pytest.approx(ref["Chisq"], rel=1e-4)
    assert table["Df"].iloc[1] == ref["Df"]
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"], rel=1e-3)
    # a Poisson fit is another family: refused
    poisson = bl.glmer(ref["formulas"][0], g, family="poisson")
    with pytest.raises(BayesLMMError, match="same family"):
        bl.anova(poisson, m1)


def test_negative_binomial_family_functions():
    fam = get_family("nb", theta=2.5)
    assert fam.name == "negative_binomial" and fam.link.name == "log"
    assert get_family("negbinomial", theta=2.5) == fam == get_family(("negative_binomial", 2.5))
    assert str(get_family(("nb", 3.21123456))) == "Negative Binomial(3.2112)  ( log )"
    y = np.array([0.0, 1, 5, 10, 0, 3])
    mu = np.array([0.5, 2, 3, 12, 4, 3])
    # log-likelihood with every constant: scipy's pmf (size theta, p = theta / (theta + mu))
    np.testing.assert_allclose(fam.loglik(y, mu),
                               scipy.stats.nbinom.logpmf(y, 2.5, 2.5 / (2.5 + mu)),
                               rtol=1e-13)  # fmt: skip
    np.testing.assert_allclose(fam.variance(mu), mu + mu**2 / 2.5)
    # dev.resids of R's MASS::negative.binomial(2.5) (R 4.2, printed to 15 digits); the
    # saturated NB's log-likelihood minus the fitted one, twice, as a second check
    r = [0.9116077839697729, 0.3729066368464518, 0.4559323131023154, 0.0640689920777415,
         4.7775572251371816, 0.0]  # fmt: skip
    np.testing.assert_allclose(fam.dev_resid(y, mu), r, rtol=1e-12, atol=1e-15)
    sat = scipy.stats.nbinom.logpmf(y, 2.5, 2.5 / (2.5 + y))
    np.testing.assert_allclose(fam.dev_resid(y, mu), 2 * (sat - fam.loglik(y, mu)), atol=1e-12)


@pytest.mark.parametrize("theta", [0, -1.5, float("nan"), float("inf"), "2", True])
def test_bad_theta_refused(theta):
    with pytest.raises(FamilyError, match="theta"):
        bl.glmer(GROUSE_NB, grouseticks(), family="nb", theta=theta)


def test_bad_theta_in_family_refused():
    with pytest.raises(FamilyError, match="theta"):
        bl.glmer(GROUSE_NB, grouseticks(), family=("negative_binomial", 0.0))
    with pytest.raises(FamilyError, match="disagree"):
        bl.glmer(GROUSE_NB, grouseticks(), family=("negative_binomial", 2.0), theta=3.0)
    with pytest.raises(FamilyError, match="poisson family takes none"):
        bl.glmer(GROUSE_NB, grouseticks(), family="poisson", theta=2.0)
    with pytest.raises(FamilyError, match="needs its theta"):
        get_family("nb").loglik(np.array([1.0]), np.array([1.0]))


@pytest.mark.parametrize("value, what", [(-2, "negative"), (1.5, "non-integer")])
def test_bad_counts_refused(value, what):
    g = grouseticks().astype({"TICKS": float})
    g.loc[3, "TICKS"] = value
    with pytest.raises(DataError, match=f"'TICKS' has 1 {what}"):
        bl.glmer(GROUSE_NB, g, family="negative_binomial")
