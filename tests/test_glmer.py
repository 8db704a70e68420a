"""bl.glmer against lme4's glmer (tests/data/lme4_glmer.R -> lme4_glmer.json), the families
against statsmodels' GLM families (links, variance, deviance residuals; the binomial
log-likelihood against scipy's pmf), and the response checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import statsmodels.api as sm

import bayeslmm as bl
from bayeslmm.errors import ArgumentError, BayesLMMError, DataError, FormulaError
from bayeslmm.spec.family import FamilyError, get_family
from bayeslmm.spec.response import glm_design

DATA = Path(__file__).parent / "data"
REF = {c["id"]: c for c in json.loads((DATA / "lme4_glmer.json").read_text())["cases"]}
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
GROUSE = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"
VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"


def cbpp() -> pd.DataFrame:
    d = pd.read_csv(DATA / "cbpp.csv")
    return d.assign(herd=d.herd.astype("category"), period=d.period.astype("category"))


def grouseticks() -> pd.DataFrame:
    g = pd.read_csv(DATA / "grouseticks.csv")
    return g.assign(YEAR=g.YEAR.astype(str).astype("category"))


def verbagg() -> pd.DataFrame:
    return pd.read_csv(DATA / "verbagg.csv")


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _check(fit, case_id: str, se_tol: float = 1e-3) -> None:
    ref = REF[case_id]["tight"]
    default = REF[case_id]["default"]
    # deviance: equal to lme4's (tolPwrss 1e-12) to 1e-6 relative, and never higher than its
    # default fit's
    assert fit.deviance == pytest.approx(ref["deviance"], rel=1e-6)
    assert fit.deviance <= min(ref["deviance"], default["deviance"]) + 1e-6 * fit.deviance
    names = list(ref["fixef"])
    assert fit.design.fixed_names == names
    assert _rel(fit.fixef()["estimate"].values, list(ref["fixef"].values())) < 1e-4
    # SEs from PIRLS's system (deterministic at the optimum) and from the Hessian (lme4's
    # default; lme4's own finite-difference Hessian moves by more than 1e-3 between its
    # default and tight fits for some coefficients, so the tolerance widens to that)
    assert _rel(fit.vcov_pirls.values.diagonal() ** 0.5, list(ref["se_rx"].values())) < 1e-3
    se_ref, se_default = np.array(list(ref["se"].values())), np.array(list(default["se"].values()))
    tol = np.maximum(se_tol, 3 * np.abs(se_default / se_ref - 1))
    assert np.all(np.abs(fit.se.values / se_ref - 1) < tol)
    vc = fit.varcorr()
    for group in {row["group"] for row in ref["varcor"]}:  # lme4 orders the groups its way
        theirs = [row["var"] for row in ref["varcor"] if row["group"] == group]
        np.testing.assert_allclose(vc.loc[vc["grp"] == group, "vcov"], theirs, rtol=1e-4)
    assert fit.singular == ref["singular"]
    assert fit.aic == pytest.approx(ref["AIC"], rel=1e-6)
    assert fit.bic == pytest.approx(ref["BIC"], rel=1e-6)
    assert fit.df_resid == ref["df_resid"]
    np.testing.assert_allclose(fit.fitted()[:10], ref["fitted_head"], rtol=1e-3)
    np.testing.assert_allclose(fit.fitted("link")[:10], ref["eta_head"], rtol=1e-3, atol=1e-4)


def test_cbpp_laplace_equals_lme4():
    fit = bl.glmer(CBPP, cbpp(), family="binomial")
    _check(fit, "cbpp")
    ranef = fit.ranef()["herd"]["(Intercept)"].to_numpy()
    np.testing.assert_allclose(ranef[:5], REF["cbpp"]["tight"]["ranef_head"]["herd"], rtol=1e-3)
    assert fit.deviance_residuals_sum == pytest.approx(
        REF["cbpp"]["tight"]["deviance_resid"], rel=1e-4)
    text = str(fit.summary())
    assert "Laplace Approximation" in text and "binomial  ( logit )" in text
    assert "Pr(>|z|)" in text and "herd" in text
    table = fit.coefficients()
    assert list(table.columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]


def test_cbpp_agq10_equals_lme4():
    fit = bl.glmer(CBPP, cbpp(), family="binomial", nAGQ=10)
    _check(fit, "cbpp_agq10")
    assert "nAGQ = 10" in str(fit.summary())


def test_grouseticks_poisson_equals_lme4():
    fit = bl.glmer(GROUSE, grouseticks(), family="poisson")
    _check(fit, "grouseticks")


def test_verbagg_bernoulli_factor_response_equals_lme4():
    fit = bl.glmer(VERBAGG, verbagg(), family="binomial")
    assert fit.response.levels == ("N", "Y")
    _check(fit, "verbagg")


def test_agq_needs_one_scalar_term():
    with pytest.raises(ArgumentError, match="single scalar random effect"):
        bl.glmer(GROUSE, grouseticks(), family="poisson", nAGQ=5)


# -- the same model written in the ways users write it ---------------------------------


def test_proportion_with_weights_and_offset_spellings_agree():
    d = cbpp()
    d["prop"] = d.incidence / d["size"]
    a = bl.glmer(CBPP, d, family="binomial")
    b = bl.glmer("prop ~ period + (1 | herd)", d, family="binomial", weights="size")
    assert b.deviance == pytest.approx(a.deviance, rel=1e-9)
    np.testing.assert_allclose(b.beta, a.beta, rtol=1e-6)
    # an offset in the formula or as an argument; a constant offset moves the intercept only
    g = grouseticks()
    g["expo"] = 2.0
    c = bl.glmer("TICKS ~ YEAR + cHEIGHT + offset(log(expo)) + (1 | BROOD) + (1 | LOCATION)",
                 g, family="poisson")  # fmt: skip
    e = bl.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", g, family="poisson",
                 offset=np.log(g["expo"].to_numpy()))  # fmt: skip
    f = bl.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", g, family="poisson")
    assert c.deviance == pytest.approx(e.deviance, rel=1e-9)
    assert c.deviance == pytest.approx(f.deviance, rel=1e-7)
    assert c.beta[0] == pytest.approx(f.beta[0] - np.log(2.0), abs=1e-5)
    np.testing.assert_allclose(c.beta[1:], f.beta[1:], rtol=1e-5)


def test_bool_factor_and_01_responses_are_the_same_model():
    rng = np.random.default_rng(1)
    n, g = 400, 20
    grp = np.repeat(np.arange(g), n // g)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.5 * x + rng.normal(size=g)[grp])))).astype(int)
    d = pd.DataFrame({"y": y, "x": x, "g": grp.astype(str), "yb": y.astype(bool),
                      "yf": np.where(y == 1, "yes", "no")})  # fmt: skip
    before = d.copy()
    fits = [bl.glmer(f"{r} ~ x + (1 | g)", d, family=fam)
            for r, fam in [("y", "binomial"), ("yb", "bernoulli"), ("yf", "binomial")]]
    for fit in fits[1:]:
        assert fit.deviance == pytest.approx(fits[0].deviance, rel=1e-10)
    assert fits[2].response.levels == ("no", "yes")  # first level is failure, as lme4
    # a Categorical keeps its order (its first level is failure), unused levels dropped
    d["yc"] = pd.Categorical(d["yf"], categories=["yes", "no", "maybe"])
    flipped = bl.glmer("yc ~ x + (1 | g)", d, family="binomial")
    assert flipped.response.levels == ("yes", "no")
    assert flipped.deviance == pytest.approx(fits[0].deviance, rel=1e-8)
    np.testing.assert_allclose(flipped.beta, -fits[0].beta, rtol=1e-5)
    before = d.copy()
    pd.testing.assert_frame_equal(d, before)  # the data are untouched


# -- checks before the fit -----------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "family", "change", "match"),
    [
        ("y ~ x + (1 | g)", "binomial", {"y": [0, 1, 2, 1]}, "must be 0/1"),
        ("y ~ x + (1 | g)", "poisson", {"y": [0, 1, -2, 1]}, "negative"),
        ("y ~ x + (1 | g)", "poisson", {"y": [0, 1, 2.5, 1]}, "non-integer"),
        ("cbind(s, f) ~ x + (1 | g)", "binomial", {"s": [0, 1, 0, 1], "f": [1, 1, 0, 2]},
         "0 trials"),
        ("y ~ x + offset(log(e)) + (1 | g)", "poisson", {"e": [1, 0, 1, 1]}, "offset"),
        ("y ~ x + offset(e) + (1 | g)", "poisson", {"e": [1, np.nan, 1, 1]}, "missing"),
        ("y ~ x + (1 | g)", "binomial", {"y": ["a", "b", "c", "a"]}, "two levels"),
    ],
)
def test_bad_responses_are_refused_naming_the_column(formula, family, change, match):
    base = pd.DataFrame({"y": [0, 1, 1, 0], "x": [0.1, 0.2, 0.3, 0.4], "g": ["a", "a", "b", "b"],
                         "s": [1, 1, 0, 1], "f": [1, 1, 1, 1], "e": [1.0, 1, 1, 1]})  # fmt: skip
    data = base.assign(**change)
    with pytest.raises(DataError, match=match):
        glm_design(formula, data, family)


def test_unknown_family_and_link_and_cbind_misuse():
    with pytest.raises(FamilyError, match="unknown family"):
        get_family("poison")
    with pytest.raises(FamilyError, match="takes the links"):
        get_family("poisson", "logit")
    assert isinstance(FamilyError("x"), BayesLMMError)
    assert get_family("binomial(link = 'probit')").link.name == "probit"
    with pytest.raises(FormulaError, match="binomial response"):
        glm_design("cbind(s, f) ~ 1 + (1 | g)", pd.DataFrame({"s": [1], "f": [1], "g": ["a"]}),
                   "poisson")  # fmt: skip
    with pytest.raises(ArgumentError, match="bl.lmer"):
        bl.glmer("y ~ x + (1 | g)", pd.DataFrame({"y": [0.1, 0.2, 0.3, 0.5], "x": [1, 2, 3, 4],
                                                  "g": list("aabb")}), family="gaussian")


# -- the families against statsmodels' -------------------------------------------------


@pytest.mark.parametrize(
    ("family", "link", "sm_family"),
    [
        ("binomial", "logit", sm.families.Binomial(sm.families.links.Logit())),
        ("binomial", "probit", sm.families.Binomial(sm.families.links.Probit())),
        ("binomial", "cloglog", sm.families.Binomial(sm.families.links.CLogLog())),
        ("poisson", "log", sm.families.Poisson(sm.families.links.Log())),
        ("gaussian", "identity", sm.families.Gaussian()),
    ],
)
def test_families_equal_statsmodels(family, link, sm_family):
    fam = get_family(family, link)
    rng = np.random.default_rng(3)
    eta = rng.normal(scale=1.5, size=50)
    mu = fam.linkinv(eta)
    np.testing.assert_allclose(mu, sm_family.link.inverse(eta), rtol=1e-12)
    inside = (mu > 1e-10) & (mu < 1 - 1e-10)  # R's linkinv clamps to [eps, 1 - eps]
    np.testing.assert_allclose(fam.linkfun(mu)[inside], eta[inside], rtol=1e-6)
    # R clamps d mu / d eta at eps; statsmodels does not
    np.testing.assert_allclose(fam.mu_eta(eta), sm_family.link.inverse_deriv(eta), rtol=1e-9,
                               atol=3e-16)  # fmt: skip
    np.testing.assert_allclose(fam.variance(mu), sm_family.variance(mu), rtol=1e-12)
    if fam.binomial:
        n = rng.integers(1, 8, size=50).astype(float)
        y = rng.binomial(n.astype(int), mu) / n
        ll_sm = scipy.stats.binom.logpmf(np.round(n * y), n, mu)  # R's dbinom
    elif family == "poisson":
        n = np.ones(50)
        y = rng.poisson(mu).astype(float)
        ll_sm = sm_family.loglike_obs(y, mu)
    else:
        n = np.ones(50)
        y = mu + rng.normal(size=50)
        ll_sm = sm_family.loglike_obs(y, mu, scale=1.0)
    np.testing.assert_allclose(fam.dev_resid(y, mu, n), sm_family.resid_dev(y, mu, n) ** 2,
                               rtol=1e-9, atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(fam.loglik(y, mu, n), ll_sm, rtol=1e-9)


# -- the Bayesian side refuses what it cannot fit yet -----------------------------------


def _binary_data() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    grp = np.repeat(np.arange(10), 20)
    return pd.DataFrame({"y": rng.integers(0, 2, 200), "x": rng.normal(size=200),
                         "n": rng.poisson(0.7, 200), "g": grp.astype(str)})  # fmt: skip


def test_bayesian_side_refuses_other_families_and_warns_on_binary_counts():
    d = _binary_data()
    # bl.LMM fits other families now (tests/test_glmm_bayes.py); its Gaussian-identity
    # check still refuses a Gaussian family with another link
    assert bl.LMM("y ~ x + (1 | g)", d, family="poisson").family.name == "poisson"
    with pytest.raises(ArgumentError, match="bl.glmer"):
        bl.LMM("y ~ x + (1 | g)", d, family="gaussian", link="log")
    # bl.compare compares GLMMs now (tests/test_compare_glmm.py)
    assert bl.compare("y ~ x + (1 | g)", d, family="binomial", bayes=False).table.shape[0] == 5
    with pytest.warns(bl.BayesLMMWarning, match="bernoulli family") as record:
        bl.LMM("y ~ x + (1 | g)", d)
    assert len(record) == 1
    with pytest.warns(bl.BayesLMMWarning, match="poisson family"):
        bl.LMM("n ~ x + (1 | g)", d)
    fit = bl.glmer("y ~ x + (1 | g)", d, family="binomial")
    with pytest.raises(ArgumentError, match="GLMM"):
        bl.report(fit)


def test_anova_of_nested_glmer_fits_equals_lme4():
    ref = json.loads((DATA / "lme4_glmer.json").read_text())["anova"]
    d = cbpp()
    fits = [bl.glmer(f, d, family="binomial") for f in ref["formulas"]]
    table = bl.anova(fits[1], fits[0]).table  # ordered by parameters, as lme4
    assert list(table["npar"]) == ref["npar"]
    np.testing.assert_allclose(table["AIC"], ref["AIC"], rtol=1e-6)
    np.testing.assert_allclose(table["logLik"], ref["logLik"], rtol=1e-6)
    assert table["Chisq"].iloc[1] == pytest.approx(ref["Chisq"], rel=1e-5)
    assert table["Df"].iloc[1] == ref["Df"]
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"], rel=1e-4)
    lmm = bl.lmer("incidence ~ period + (1 | herd)", d)
    with pytest.raises(bl.ComparisonError, match="one kind"):
        bl.anova(fits[0], lmm)
    agq = bl.glmer(ref["formulas"][0], d, family="binomial", nAGQ=5)
    with pytest.raises(bl.ComparisonError, match="nAGQ"):
        bl.anova(fits[1], agq)


def _pirls_frame(seed: int = 4) -> pd.DataFrame:
    """600 rows, 40 levels of g crossed with 12 of h (every pair of levels meets, so the
    blocked factor has a dense trailing block), a covariate with a random slope on g."""
    rng = np.random.default_rng(seed)
    n = 600
    g, h = rng.integers(0, 40, n), rng.integers(0, 12, n)
    x = rng.normal(size=n)
    eta = 0.3 * x + rng.normal(size=40)[g] + 0.5 * x * rng.normal(size=40)[g] \
        + 0.7 * rng.normal(size=12)[h]  # fmt: skip
    return pd.DataFrame({"yc": rng.poisson(np.exp(eta)), "yb": (eta > 0.2).astype(int),
                         "x": x, "g": g.astype(str), "h": h.astype(str)})  # fmt: skip


@pytest.mark.parametrize("formula, family, theta", [
    ("yc ~ x + (1 + x | g) + (1 | h)", "poisson", [0.9, 0.2, 0.4, 0.6]),  # correlated
    ("yb ~ x + (1 | g) + (1 | h)", "bernoulli", [1.1, 0.6]),  # crossed
    ("yb ~ x + (1 | g) + (0 + x | g) + (1 | h)", "binomial(link = 'probit')",
     [0.8, 0.3, 0.5]),  # two blocks on one grouping factor
])  # fmt: skip
@pytest.mark.parametrize("joint", [False, True])
def test_pirls_on_blocked_cholesky_equals_dense_penalised_solve(formula, family, theta, joint):
    """PIRLS's mode, log-determinant, solves and unscaled covariance (blocked Cholesky,
    numba) against a dense numpy solve of the penalised system ``A = Lambda'Z'WZ Lambda +
    I`` built from the formula's Z and Lambda at the mode's weights: the mode is the fixed
    point of the Fisher scoring step, over u with beta given and over (beta, u) jointly."""
    from bayeslmm.gaussian.profiled import ThetaLayout
    from bayeslmm.gaussian.statistics import random_effects_matrix
    from bayeslmm.glmm.pirls import GlmmProblem

    design, response = glm_design(formula, _pirls_frame(), family)
    fam = response.family
    layout = ThetaLayout.from_design(design)
    theta, beta = np.array(theta), np.array([0.1, 0.25])
    problem = GlmmProblem(design.X, [(b.Z, b.codes, b.n_levels) for b in design.blocks],
                          layout.factors, fam, response.y, response.weights,
                          response.offset)  # fmt: skip
    state = problem.pirls(theta, None if joint else beta)
    ZL = (random_effects_matrix(design) @ layout.relative_factor(theta)).toarray()
    X, y, wt = design.X, response.y, response.weights
    eta = X @ state.beta + ZL @ state.u + response.offset
    np.testing.assert_allclose(state.eta, eta, rtol=1e-12, atol=1e-12)
    mu, d = fam.linkinv(eta), fam.mu_eta(eta)
    w = wt * d**2 / fam.variance(mu)
    np.testing.assert_allclose(state.w, w, rtol=1e-10)
    A = ZL.T @ (w[:, None] * ZL) + np.eye(ZL.shape[1])
    working = (y - mu) / d + eta - response.offset  # the working response
    if joint:  # [X'WX X'WZL; ZL'WX A] [beta; u] = [X; ZL]'W working
        M = np.block([[X.T @ (w[:, None] * X), X.T @ (w[:, None] * ZL)],
                      [ZL.T @ (w[:, None] * X), A]])  # fmt: skip
        full = np.linalg.solve(M, np.hstack([X, ZL]).T @ (w * working))
        np.testing.assert_allclose(state.beta, full[: X.shape[1]], rtol=1e-7, atol=1e-9)
        u_ref = full[X.shape[1] :]
    else:
        np.testing.assert_array_equal(state.beta, beta)
        u_ref = np.linalg.solve(A, ZL.T @ (w * (working - X @ beta)))
    np.testing.assert_allclose(state.u, u_ref, rtol=1e-7, atol=1e-9)
    assert state.ldL2 == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-11)
    rhs = np.random.default_rng(1).normal(size=(ZL.shape[1], 3))
    np.testing.assert_allclose(state.factor.solve(rhs), np.linalg.solve(A, rhs), rtol=1e-9,
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(state.factor.solve(rhs[:, 0]), np.linalg.solve(A, rhs[:, 0]),
                               rtol=1e-9, atol=1e-12)  # fmt: skip
    WX = w[:, None] * X
    schur = X.T @ WX - WX.T @ ZL @ np.linalg.solve(A, ZL.T @ WX)
    np.testing.assert_allclose(problem.unscaled_vcov(state), np.linalg.inv(schur), rtol=1e-9)
    laplace = -2 * fam.loglik(y, mu, wt).sum() + state.u @ state.u + np.linalg.slogdet(A)[1]
    assert problem.laplace(state) == pytest.approx(laplace, rel=1e-12)


@pytest.mark.parametrize("formula, family, theta", [
    ("yc ~ x + (1 + x | g) + (1 | h)", "poisson", [0.9, 0.2, 0.4, 0.6]),  # correlated
    ("yb ~ x + (1 | g) + (1 | h)", "bernoulli", [1.1, 0.6]),  # crossed, dense block
    ("yb ~ x + (1 | g) + (0 + x | g) + (1 | h)", "bernoulli", [0.8, 0.3, 0.5]),
])  # fmt: skip
@pytest.mark.parametrize("joint", [False, True])
def test_exact_laplace_gradient_equals_central_differences(formula, family, theta, joint):
    """The Laplace deviance's exact gradient (canonical links) over theta and beta, and
    over theta with beta from PIRLS (lme4's first stage), against central differences of
    the deviance (PIRLS converged to 1e-11 from the same start)."""
    from bayeslmm.gaussian.profiled import ThetaLayout
    from bayeslmm.glmm.pirls import GlmmProblem

    design, response = glm_design(formula, _pirls_frame(), family)
    layout = ThetaLayout.from_design(design)
    problem = GlmmProblem(design.X, [(b.Z, b.codes, b.n_levels) for b in design.blocks],
                          layout.factors, response.family, response.y, response.weights,
                          response.offset)  # fmt: skip
    assert problem.canonical
    theta, nt = np.array(theta), len(theta)
    x = theta if joint else np.concatenate([theta, [0.1, 0.25]])
    start = problem.pirls_start()

    def deviance(z):
        problem.pirls_start(start)
        return problem.laplace(problem.pirls(z[:nt], None if joint else z[nt:]))

    problem.pirls_start(start)
    state = problem.pirls(theta, None if joint else x[nt:])
    g_theta, g_beta = problem.laplace_gradient(state, nt, joint)
    exact = g_theta if joint else np.concatenate([g_theta, g_beta])
    h = 1e-5
    central = [(deviance(x + h * e) - deviance(x - h * e)) / (2 * h) for e in np.eye(len(x))]
    np.testing.assert_allclose(exact, central, rtol=1e-6, atol=1e-6)


CONDVAR = json.loads((DATA / "lme4_glmer_condvar.json").read_text())


@pytest.mark.parametrize("case, formula, data, family", [
    ("cbpp", CBPP, cbpp, "binomial"),
    ("grouseticks", GROUSE, grouseticks, "poisson"),  # three nested factors
    ("verbagg", VERBAGG, verbagg, "binomial"),  # crossed: the factor's dense block
    ("slopes", "y ~ x + (1 + x | g)",
     lambda: pd.read_csv(DATA / "glmm_slopes.csv", dtype={"g": str}), "bernoulli"),
])  # fmt: skip
def test_conditional_sds_equal_lme4_postvar(case, formula, data, family):
    """ranef(condvar=True)'s conditional SDs (selected inverse of PIRLS's blocked factor)
    against lme4's ranef(condVar = TRUE) postVar (tests/data/lme4_glmer_condvar.R), every
    level and term, to 1e-3 relative (the optima agree to ~1e-5)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.SingularFitWarning)
        fit = bl.glmer(formula, data(), family=family)
    ours = fit.ranef(condvar=True)
    for group, ref in CONDVAR[case].items():
        table = ours[group]
        assert fit.deviance == pytest.approx(ref["deviance"][0], rel=1e-6)
        sd = np.array(ref["sd"], float).reshape(len(ref["levels"]), len(ref["terms"]))
        for k, term in enumerate(ref["terms"]):
            got = table.xs(term, level="term")["se"]
            got.index = got.index.astype(str)
            np.testing.assert_allclose(got.loc[ref["levels"]].to_numpy(), sd[:, k], rtol=1e-3)
        modes = fit.ranef()[group]
        np.testing.assert_allclose(table["estimate"].to_numpy(), modes.stack().to_numpy())
        assert (table["lower"] < table["estimate"]).all()


def test_dask_frame_is_refused_naming_the_family():
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(cbpp(), npartitions=2)
    with pytest.raises(bl.RowsNotInMemoryError, match="binomial family"):
        bl.glmer(CBPP, ddf, family="binomial")


def test_probit_link_equals_lme4():
    fit = bl.glmer(CBPP, cbpp(), family="binomial(link = 'probit')")
    assert fit.family.link.name == "probit"
    _check(fit, "cbpp_probit")


def test_poisson_offset_in_the_formula_equals_lme4():
    formula = "TICKS ~ YEAR + offset(log(HEIGHT / 100)) + (1 | BROOD) + (1 | LOCATION)"
    fit = bl.glmer(formula, grouseticks(), family="poisson")
    assert fit.response.offset[0] == pytest.approx(np.log(465 / 100))
    _check(fit, "grouseticks_offset")


def test_correlated_random_slope_equals_lme4():
    d = pd.read_csv(DATA / "glmm_slopes.csv", dtype={"g": str})
    fit = bl.glmer("y ~ x + (1 + x | g)", d, family="bernoulli")
    _check(fit, "slopes")
    cor = fit.varcorr().dropna(subset=["var2"])["sdcor"].iloc[0]
    ref = REF["slopes"]["tight"]["varcor"]
    assert len(ref) == 3 and cor == pytest.approx(ref[2]["sd"], rel=1e-4)  # lme4's sdcor: cor
    assert "Corr" in str(fit.summary())
