"""Gaussian outcomes with known standard errors (``bl.lmer(..., se=...)``) against metafor's
``rma(yi, sei = sei, method = "REML" | "ML")`` (tests/data/metafor_known_se.R + .json)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.errors import ArgumentError, ColumnTypeError, DataError, UnknownNameError
from bayeslmm.gaussian.profiled import BlockedProfile, ThetaLayout, blocked_system
from bayeslmm.gaussian.statistics import BlockedStats, CrossProducts
from bayeslmm.spec.known_se import known_se_design

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "metafor_known_se.json").read_text())
SCHOOLS = pd.read_csv(DATA / "eight_schools.csv")
BCG = pd.read_csv(DATA / "dat_bcg.csv")
KONST = pd.read_csv(DATA / "konstantopoulos2011.csv")
FRAMES = {"schools": (SCHOOLS, "sigma"), "bcg": (BCG, "sei"), "bcg_ablat": (BCG, "sei"),
          "konstantopoulos": (KONST, "sei")}  # fmt: skip


def _rel(a, b):
    return np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))
                  / np.maximum(np.abs(np.asarray(b, float)), 1e-12))  # fmt: skip


@pytest.mark.parametrize("case", REF["cases"], ids=lambda c: f"{c['id']}-{c['method']}")
def test_matches_metafor(case):
    data, se = FRAMES[case["id"]]
    before = data.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.SingularFitWarning)  # eight schools: tau^2 = 0
        fit = bl.lmer(case["formula"], data, reml=case["method"] == "REML", se=se)
    pd.testing.assert_frame_equal(data, before)
    tau2 = np.array([cov[0, 0] for cov in fit.covariances()])
    if np.all(np.asarray(case["tau2"]) == 0):
        assert fit.singular and np.all(tau2 < 1e-10)
    else:
        assert _rel(tau2, np.atleast_1d(case["tau2"])) < 1e-4
    assert _rel(fit.fixef()["estimate"], np.atleast_1d(case["beta"])) < 1e-4
    assert _rel(fit.se, np.atleast_1d(case["se"])) < 1e-4
    assert _rel(fit.loglik, case["logLik"]) < 1e-4
    # no residual SD among the parameters
    assert fit.n_params == len(np.atleast_1d(case["beta"])) + len(np.atleast_1d(case["tau2"]))


def test_summary_fitted_and_refusals():
    fit = bl.lmer("yi ~ ablat + (1 | trial)", BCG, se="sei")
    text = str(fit)
    assert "known standard errors (sei), Wald z-tests" in text and "z value" in text
    assert "Residual" not in text
    table = fit.summary()
    assert "sigma" not in table.index
    assert np.all(np.isinf(table.loc[["(Intercept)", "ablat"], "df"]))
    assert list(fit.varcorr()["grp"]) == ["trial"]
    # fitted values and residuals on the data's scale
    b = fit.ranef()["trial"]["(Intercept)"].to_numpy()
    expected = fit.solution.beta[0] + fit.solution.beta[1] * BCG["ablat"].to_numpy() + b
    np.testing.assert_allclose(fit.fitted(), expected, rtol=1e-12)
    np.testing.assert_allclose(fit.residuals(), BCG["yi"].to_numpy() - expected, rtol=1e-12)
    # conditional variances of the study effects given beta (lme4's condVar): the
    # shrinkage formula tau^2 se_i^2 / (tau^2 + se_i^2)
    tau2, s2 = fit.covariances()[0][0, 0], BCG["sei"].to_numpy() ** 2
    cond = tau2 * s2 / (tau2 + s2)
    np.testing.assert_allclose(fit.ranef_sd()["trial"]["(Intercept)"] ** 2, cond, rtol=1e-8)
    for call in (lambda: bl.satterthwaite(fit), fit.icc, fit.r2,
                 lambda: fit.coefficients("observed"),
                 lambda: fit.confint(method="satterthwaite")):  # fmt: skip
        with pytest.raises(ArgumentError, match="known standard errors"):
            call()
    np.testing.assert_allclose(fit.confint()["lower"], fit.fixef()["lower"])


def test_known_sigma_gradient():
    """The criterion with the residual SD known: exact gradient against central differences,
    crossed factors (the general blocked path) and a correlated slope."""
    rng = np.random.default_rng(1)
    n = 120
    data = pd.DataFrame({"g": rng.integers(0, 8, n), "h": rng.integers(0, 5, n),
                         "x": rng.normal(size=n), "s": rng.uniform(0.5, 2.0, n)})  # fmt: skip
    data["y"] = (1 + data["x"] * (1 + 0.7 * rng.normal(size=8)[data["g"]])
                 + rng.normal(size=n) * data["s"] + 1.5 * rng.normal(size=8)[data["g"]]
                 + rng.normal(size=5)[data["h"]])  # fmt: skip
    _, scaled, _ = known_se_design("y ~ x + (1 + x | g) + (1 | h)", data, "s", "test")
    layout = ThetaLayout.from_design(scaled)
    cp = CrossProducts.from_stats(BlockedStats.from_design(scaled), scaled)
    profile = BlockedProfile.of(blocked_system(cp), layout, sigma=1.0)
    theta = np.array([0.8, 0.3, 0.6, 0.5])
    for reml in (True, False):
        _, grad = profile(theta, reml)
        eps = 1e-6
        numeric = [(profile(theta + eps * e, reml)[0] - profile(theta - eps * e, reml)[0])
                   / (2 * eps) for e in np.eye(len(theta))]  # fmt: skip
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)
    # and the value: the dense Gaussian log-likelihood of the scaled rows with sigma = 1
    fit = bl.lmer("y ~ x + (1 + x | g) + (1 | h)", data, reml=False, se="s")
    Z = np.zeros((n, 8 * 2 + 5))
    Z[np.arange(n), 2 * data["g"]] = 1
    Z[np.arange(n), 2 * data["g"] + 1] = data["x"]
    Z[np.arange(n), 16 + data["h"]] = 1
    G = np.zeros((21, 21))
    cov_g, cov_h = fit.covariances()
    for j in range(8):
        G[2 * j : 2 * j + 2, 2 * j : 2 * j + 2] = cov_g
    G[16:, 16:] = cov_h[0, 0] * np.eye(5)
    V = Z @ G @ Z.T + np.diag(data["s"] ** 2)
    X = np.column_stack([np.ones(n), data["x"]])
    r = data["y"].to_numpy() - X @ fit.solution.beta
    loglik = -0.5 * (n * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + r @ np.linalg.solve(V, r))
    assert abs(fit.loglik - loglik) < 1e-9 * abs(loglik)


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ([1.0, 0.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0], DataError, "'sigma' has zeros in 2 row"),
        ([1.0, -1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 1.0], DataError, "negative values in 1 row"),
        ([1.0, 1.0, np.nan, 3.0, 1.0, 1.0, 1.0, 1.0], DataError, r"missing \(NaN\).*index 2"),
        ([1.0, 1.0, 1.0, np.inf, 1.0, 1.0, 1.0, 1.0], DataError, "infinite values.*index 3"),
        (list("abcdefgh"), ColumnTypeError, "'sigma' must be numeric"),
    ],
)
def test_bad_se_column(values, error, match):
    data = SCHOOLS.copy()
    data["sigma"] = values
    before = data.copy()
    with pytest.raises(error, match=match):
        bl.lmer("y ~ 1 + (1 | school)", data, se="sigma")
    pd.testing.assert_frame_equal(data, before)


def test_bad_se_arguments():
    with pytest.raises(UnknownNameError, match="se='sigm' is not in the data; did you mean"):
        bl.lmer("y ~ 1 + (1 | school)", SCHOOLS, se="sigm")
    with pytest.raises(ArgumentError, match="se must be the name"):
        bl.lmer("y ~ 1 + (1 | school)", SCHOOLS, se=3)
    with pytest.raises(bl.FormulaError, match="no random term"):
        bl.lmer("y ~ 1", SCHOOLS, se="sigma")


# ---------------------------------------------------------------------------------------
# The Bayesian model: bl.LMM(..., se=...) on the compiled marginal density


def _known_density(formula, data, column, signed=None):
    from bayeslmm.bayes.density import MarginalDensity
    from bayeslmm.bayes.priors import resolve_priors
    from bayeslmm.gaussian.blocked import BlockedSystem

    design, scaled, se = known_se_design(formula, data, column, "test")
    priors = {k: v for k, v in resolve_priors(design, None).items() if k != "sigma"}
    system = BlockedSystem(BlockedStats.from_design(scaled))
    return design, se, priors, MarginalDensity.from_known_se(scaled, se, priors, system,
                                                             signed=signed)  # fmt: skip


def _pymc_logp(design, se, priors, points):
    """The marginal model written in PyMC: y ~ N(X beta, Z G Z' + diag(se^2)), sigma fixed
    at the known standard errors, one SD per independent random term; log density on
    (beta, log sd) with the Jacobian."""
    import pymc as pm
    import pytensor.tensor as pt

    from bayeslmm.gaussian.statistics import random_effects_matrix
    from bayeslmm.spec.naming import ParameterNames

    names = ParameterNames.from_design(design)
    Z = random_effects_matrix(design).toarray()
    with pm.Model() as model:
        beta = pt.stack([priors[n].family()(n, **priors[n].params) for n in names.fixed])
        sds = [priors[n].family()(n, **priors[n].params) for sd in names.sd for n in sd]
        var = pt.concatenate([pt.repeat(sd**2, b.n_levels)
                              for sd, b in zip(sds, design.blocks, strict=True)])  # fmt: skip
        V = pt.dot(Z * var[None, :], Z.T) + np.diag(se**2)
        pm.MvNormal("y", mu=pt.dot(design.X, beta), cov=V, observed=design.y)
    logp = model.compile_logp(jacobian=True)
    out = []
    for x in points:
        point = {v.name: x[i] for i, v in enumerate(model.value_vars)}
        out.append(float(logp(point)))
    return np.array(out)


@pytest.mark.parametrize(
    ("formula", "frame", "column"),
    [("y ~ 1 + (1 | school)", "schools", "sigma"),
     ("yi ~ ablat + (1 | trial)", "bcg", "sei"),
     ("y ~ x + (1 | g) + (1 | h)", "crossed", "s")],
)
def test_density_equals_pymc(formula, frame, column):
    """The compiled density with sigma fixed (log SDs) equals the PyMC graph to 1e-8."""
    if frame == "crossed":
        rng = np.random.default_rng(3)
        n = 60
        data = pd.DataFrame({"g": rng.integers(0, 6, n), "h": rng.integers(0, 4, n),
                             "x": rng.normal(size=n), "s": rng.uniform(0.3, 1.5, n)})  # fmt: skip
        data["y"] = (data["x"] + rng.normal(size=6)[data["g"]] + rng.normal(size=4)[data["h"]]
                     + data["s"] * rng.normal(size=n))  # fmt: skip
    else:
        data = SCHOOLS if frame == "schools" else BCG
    design, se, priors, density = _known_density(formula, data, column)
    assert not density.layout.has_sigma and density.layout.size == design.n_fixed + len(
        design.blocks)
    rng = np.random.default_rng(0)
    points = density.start + rng.uniform(-1.0, 1.0, (4, density.layout.size))
    ours = np.array([density.logp_grad(x)[0] for x in points])
    theirs = _pymc_logp(design, se, priors, points)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    # and its gradient against central differences
    x, eps = points[0], 1e-6
    numeric = [(density.logp_grad(x + eps * e)[0] - density.logp_grad(x - eps * e)[0])
               / (2 * eps) for e in np.eye(x.size)]  # fmt: skip
    np.testing.assert_allclose(density.logp_grad(x)[1], numeric, rtol=1e-5, atol=1e-6)


def _quadrature(priors):
    """Eight schools' posterior by quadrature on (beta, tau): means and SDs of beta and
    tau, and the posterior means of the school effects E[tau^2 / (tau^2 + se^2)] (y - beta)."""
    from scipy import stats

    y, s = SCHOOLS["y"].to_numpy(), SCHOOLS["sigma"].to_numpy()
    pb, pt_ = priors["(Intercept)"].params, priors["sd((Intercept)|school)"].params
    beta = np.linspace(-60, 80, 1401)
    tau = np.linspace(1e-6, 80, 1600)
    B, T = np.meshgrid(beta, tau, indexing="ij")
    V = T[..., None] ** 2 + s**2
    log = (stats.norm.logpdf(B, pb["mu"], pb["sigma"]) + stats.halfnorm.logpdf(T, 0, pt_["sigma"])
           + np.sum(-0.5 * np.log(2 * np.pi * V) - 0.5 * (y - B[..., None]) ** 2 / V, -1))
    w = np.exp(log - log.max())
    w /= w.sum()
    out = {"beta": (np.sum(w * B), np.sqrt(np.sum(w * B**2) - np.sum(w * B) ** 2)),
           "tau": (np.sum(w * T), np.sqrt(np.sum(w * T**2) - np.sum(w * T) ** 2))}
    shrink = T[..., None] ** 2 / V * (y - B[..., None])
    out["effects"] = np.einsum("ij,ijk->k", w, shrink)
    return out


def test_eight_schools_posterior_matches_quadrature():
    model = bl.LMM("y ~ 1 + (1 | school)", SCHOOLS, se="sigma")
    assert "sigma" not in model.priors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains: ESS warnings
        model.fit(draws=500, tune=500, chains=2, random_seed=11, progressbar=False)
    assert model.fit_info.log_density == "bayeslmm (numba)"
    assert "Residuals: known standard errors (column 'sigma'), no sigma" in str(model)
    post = bl.bayes.stack.posterior(model.idata)
    assert "sigma" not in post
    ref = _quadrature(model.priors)
    draws = {"beta": post["beta"].values[..., 0].ravel(),
             "tau": post["sd_school"].values[..., 0].ravel()}  # fmt: skip
    for name, values in draws.items():
        mean, sd = ref[name]
        # Monte Carlo error of 1000 correlated draws (ESS >= ~250): 4 standard errors
        assert abs(values.mean() - mean) < 4 * sd / np.sqrt(250), name
        assert abs(values.std() - sd) < 0.2 * sd, name
    effects = post["u_school"].values.reshape(-1, 8).mean(axis=0)
    assert np.max(np.abs(effects - ref["effects"])) < 4 * 10 / np.sqrt(250)
    # fitted values on the data's scale; results needing a residual SD refused
    fitted = np.asarray(model.fitted())
    np.testing.assert_allclose(fitted, post["beta"].values[..., 0].mean()
                               + post["u_school"].values.mean(axis=(0, 1))[:, 0])  # fmt: skip
    # leave-one-school-out: each school's marginal likelihood N(y_j | beta, se_j^2 + tau^2)
    from scipy import stats

    from bayeslmm.bayes.loo import group_log_likelihood

    ll = group_log_likelihood(model).values.reshape(-1, 8)
    b, tau = draws["beta"][:, None], draws["tau"][:, None]
    direct = stats.norm.logpdf(SCHOOLS["y"].to_numpy(), b,
                               np.sqrt(tau**2 + SCHOOLS["sigma"].to_numpy() ** 2))  # fmt: skip
    np.testing.assert_allclose(ll, direct, rtol=1e-10)
    for call in (model.icc, model.r2, lambda: model.predict(SCHOOLS)):
        with pytest.raises(ArgumentError, match="known standard errors"):
            call()


def test_lmm_known_se_refusals():
    with pytest.raises(ArgumentError, match="no 'sigma' to give a prior"):
        bl.LMM("y ~ 1 + (1 | school)", SCHOOLS, se="sigma",
               priors={"sigma": bl.Prior("HalfNormal", sigma=1)})
    with pytest.raises(DataError, match="'sigma' has negative values"):
        bl.LMM("y ~ 1 + (1 | school)", SCHOOLS.assign(sigma=-SCHOOLS["sigma"]), se="sigma")
    model = bl.LMM("y ~ 1 + (1 | school)", SCHOOLS, se="sigma")
    with pytest.raises(ArgumentError, match="compiled marginal density only"):
        model.fit(draws=10, tune=10, chains=1, sampler="pymc", progressbar=False)


def test_gaussian_weights_refused():
    for call in (lambda: bl.lmer("y ~ 1 + (1 | school)", SCHOOLS, weights="sigma"),
                 lambda: bl.LMM("y ~ 1 + (1 | school)", SCHOOLS, weights="sigma")):  # fmt: skip
        with pytest.raises(ArgumentError, match=r"sigma\^2 / w_i.*se='column'"):
            call()
    with pytest.raises(ArgumentError, match="se= .* is for the Gaussian family"):
        bl.LMM("y ~ 1 + (1 | school)", SCHOOLS, family="poisson", se="sigma")


def test_anova_keeps_known_se():
    """The likelihood-ratio test of the moderator with known standard errors: both ML fits
    as metafor's (logLik difference from tests/data/metafor_known_se.json)."""
    full = {(c["id"], c["method"]): c for c in REF["cases"]}
    small = bl.lmer("yi ~ 1 + (1 | trial)", BCG, reml=False, se="sei")
    large = bl.lmer("yi ~ ablat + (1 | trial)", BCG, reml=False, se="sei")
    table = bl.anova(small, large)
    lrt = 2 * (full[("bcg_ablat", "ML")]["logLik"] - full[("bcg", "ML")]["logLik"])
    assert abs(table.table["Chisq"].iloc[1] - lrt) < 1e-6 * lrt
    refitted = bl.anova(bl.lmer("yi ~ 1 + (1 | trial)", BCG, se="sei"),
                        bl.lmer("yi ~ ablat + (1 | trial)", BCG, se="sei"))  # REML: refit by ML
    assert abs(refitted.table["Chisq"].iloc[1] - lrt) < 1e-6 * lrt
    with pytest.raises(bl.ComparisonError, match="same known standard errors"):
        bl.anova(small, bl.lmer("yi ~ ablat + (1 | g)", BCG.assign(g=BCG["trial"] % 3),
                                reml=False))  # fmt: skip


def test_density_equals_gaussian_density_at_sigma_one():
    """Correlated slopes and crossed factors: the known-SE density equals the ordinary
    Gaussian density of the scaled rows (checked against PyMC in test_density) at sigma = 1,
    less sigma's prior and plus the scaling's - sum log se; gradients equal too."""
    from scipy import stats

    from bayeslmm.bayes.density import MarginalDensity
    from bayeslmm.bayes.priors import resolve_priors
    from bayeslmm.gaussian.blocked import BlockedSystem

    rng = np.random.default_rng(5)
    n = 90
    data = pd.DataFrame({"g": rng.integers(0, 7, n), "h": rng.integers(0, 4, n),
                         "x": rng.normal(size=n), "s": rng.uniform(0.4, 1.6, n)})  # fmt: skip
    data["y"] = (1 + data["x"] * (1 + 0.5 * rng.normal(size=7)[data["g"]])
                 + rng.normal(size=7)[data["g"]] + rng.normal(size=4)[data["h"]]
                 + data["s"] * rng.normal(size=n))  # fmt: skip
    design, scaled, se = known_se_design("y ~ x + (1 + x | g) + (1 | h)", data, "s", "test")
    priors = resolve_priors(design, None)
    system = BlockedSystem(BlockedStats.from_design(scaled))
    known = MarginalDensity.from_known_se(scaled, se, {k: v for k, v in priors.items()
                                                       if k != "sigma"}, system)  # fmt: skip
    plain = MarginalDensity.from_model(scaled, priors, system)
    i = plain.layout.sigma
    s_prior = priors["sigma"].params["sigma"]
    for x in known.start + rng.uniform(-0.5, 0.5, (3, known.layout.size)):
        ours, grad = known.logp_grad(x)
        theirs, grad_plain = plain.logp_grad(np.insert(x, i, 0.0))  # log sigma = 0
        expected = theirs - stats.halfnorm.logpdf(1.0, 0, s_prior) - np.sum(np.log(se))
        assert abs(ours - expected) < 1e-10 * abs(expected)
        np.testing.assert_allclose(grad, np.delete(grad_plain, i), rtol=1e-10, atol=1e-10)


def test_rows_dropped_and_column_names():
    """A row missing the response is dropped with its standard error; a column name with a
    space works; a Dask DataFrame is refused."""
    with_missing = BCG.copy()
    with_missing.loc[3, "yi"] = np.nan
    one = bl.lmer("yi ~ ablat + (1 | trial)", with_missing, se="sei")
    other = bl.lmer("yi ~ ablat + (1 | trial)", BCG.drop(index=3), se="sei")
    assert one.design.n_dropped == 1 and len(one.fitted()) == 12
    np.testing.assert_allclose(one.solution.beta, other.solution.beta, rtol=1e-12)
    assert abs(one.loglik - other.loglik) < 1e-10
    spaced = bl.lmer("yi ~ ablat + (1 | trial)", BCG.rename(columns={"sei": "my se"}),
                     se="my se")  # fmt: skip
    full = bl.lmer("yi ~ ablat + (1 | trial)", BCG, se="sei")
    assert abs(spaced.loglik - full.loglik) < 1e-10
    dd = pytest.importorskip("dask.dataframe")
    with pytest.raises(ArgumentError, match="needs the data as a pandas DataFrame"):
        bl.lmer("yi ~ ablat + (1 | trial)", dd.from_pandas(BCG, npartitions=2), se="sei")


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_extra_sigma_matches_metafor(method):
    """An extra residual SD (brms se(sei, sigma = TRUE)): ``yi ~ 1`` is metafor's rma (its
    tau^2 the extra sigma^2), ``yi ~ 1 + (1 | district)`` rma.mv's two nested levels (the
    inner one, one study per row, the extra sigma^2); reported as sigma, not a group."""
    full = {(c["id"], c["method"]): c for c in REF["cases"]}
    rma, mv = full[("bcg", method)], full[("konstantopoulos", method)]
    fit = bl.lmer("yi ~ 1", BCG, reml=method == "REML", se="sei", extra_sigma=True)
    assert _rel(fit.extra_sd**2, rma["tau2"]) < 1e-4
    assert _rel(fit.solution.beta, np.atleast_1d(rma["beta"])) < 1e-4
    assert _rel(fit.se, np.atleast_1d(rma["se"])) < 1e-4
    assert _rel(fit.loglik, rma["logLik"]) < 1e-4
    nested = bl.lmer("yi ~ 1 + (1 | district)", KONST, reml=method == "REML", se="sei",
                     extra_sigma=True)  # fmt: skip
    assert _rel([nested.varcorr()["vcov"].iloc[0], nested.extra_sd**2], mv["tau2"]) < 1e-4
    assert _rel(nested.se, np.atleast_1d(mv["se"])) < 1e-4
    assert _rel(nested.loglik, mv["logLik"]) < 1e-4
    # reported as the residual SD, not as a group
    assert list(nested.varcorr()["grp"]) == ["district", "Residual"]
    assert list(nested.ranef()) == ["district"] and list(nested.coef()) == ["district"]
    assert list(nested.ranef(condvar=True)) == ["district"]
    table = nested.summary()
    assert table.loc["sigma", "estimate"] == pytest.approx(nested.extra_sd)
    text = str(nested)
    assert "(beyond se)" in text and "obs_extra" not in text
    b = nested.ranef()["district"]["(Intercept)"]
    expected = nested.solution.beta[0] + b.loc[KONST["district"]].to_numpy()
    np.testing.assert_allclose(nested.fitted(), expected, rtol=1e-12)
    with pytest.raises(ArgumentError, match="give se='column' too"):
        bl.lmer("yi ~ 1 + (1 | district)", KONST, extra_sigma=True)
