"""Bayesian GLMMs, ``bl.LMM(..., family=...)``: posteriors against lme4's glmer
(tests/data/lme4_glmer.json, cbpp, Laplace) and bambi (tests/data/bambi_glmm.py ->
bambi_glmm.json, the same priors), the pointwise log-likelihood against scipy's pmfs,
predictions, and the Gaussian-only parts refusing these models."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.special as sc
import scipy.stats

import bayeslmm as bl
from bayeslmm.bayes import stack
from bayeslmm.bayes.model import GLMM
from bayeslmm.bayes.sampling import quiet_pymc
from bayeslmm.errors import ArgumentError, ComparisonError, PriorError

DATA = Path(__file__).parent / "data"
GLMER = {c["id"]: c for c in json.loads((DATA / "lme4_glmer.json").read_text())["cases"]}
BAMBI = json.loads((DATA / "bambi_glmm.json").read_text())
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
#: the priors tests/data/bambi_glmm.py gives bambi
PRIORS = {"fixed": bl.Prior("Normal", mu=0, sigma=5), "sd": bl.Prior("HalfNormal", sigma=2.5)}
FIT = {"draws": 1000, "tune": 1000, "chains": 2, "random_seed": 11, "progressbar": False}


def cbpp() -> pd.DataFrame:
    d = pd.read_csv(DATA / "cbpp.csv")
    return d.assign(herd=d.herd.astype("category"), period=d.period.astype("category"))


def simulated(family: str, seed: int = 3) -> pd.DataFrame:
    """30 groups x 20 rows; Bernoulli: logit p = -0.3 + 0.8 x + u; Poisson: log mu = 0.2 +
    0.5 x + log(exposure) + u; u ~ N(0, 0.7^2)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 20)
    x = rng.normal(size=g.size)
    u = rng.normal(0, 0.7, 30)[g]
    if family == "bernoulli":
        y = rng.binomial(1, sc.expit(-0.3 + 0.8 * x + u))
        return pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    exposure = rng.uniform(0.5, 2.0, g.size)
    y = rng.poisson(np.exp(0.2 + 0.5 * x + np.log(exposure) + u))
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str), "exposure": exposure})


@pytest.fixture(scope="module")
def cbpp_fit():
    model = bl.LMM(CBPP, cbpp(), family="binomial", priors=PRIORS)
    model.fit(**FIT)
    return model


@pytest.fixture(scope="module")
def bernoulli_fit():
    model = bl.LMM("y ~ x + (1 | g)", simulated("bernoulli"), family="bernoulli")
    model.fit(**FIT)
    return model


@pytest.fixture(scope="module")
def poisson_fit():
    model = bl.LMM("y ~ x + offset(log(exposure)) + (1 | g)", simulated("poisson"),
                   family="poisson")  # fmt: skip
    # its intercept mixes slowly against the 30 random intercepts (bulk ESS ~250 of 2000 draws;
    # posterior means within MC error of glmer's estimates all the same): what this fixture
    # serves, the log-likelihood and predictions, does not depend on it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.ConvergenceWarning)
        model.fit(**FIT)
    return model


def _eta(model) -> np.ndarray:
    """Draws of the linear predictor recomputed from beta and u by plain indexing."""
    post = stack.posterior(model.idata)
    beta = post["beta"].values
    eta = np.einsum("cdp,np->cdn", beta, model.design.X) + model.response.offset
    for b in model.design.blocks:
        u = post[f"u_{b.label}"].values
        eta = eta + np.einsum("nq,cdnq->cdn", b.Z, u[:, :, b.codes, :])
    return eta


# -- the model ---------------------------------------------------------------------------


def test_family_makes_a_glmm_with_the_gaussian_variable_names(cbpp_fit):
    assert isinstance(cbpp_fit, GLMM) and isinstance(cbpp_fit, bl.LMM)
    post = stack.posterior(cbpp_fit.idata)
    assert {"beta", "sd_herd", "u_herd"} <= set(post.data_vars)
    assert "sigma" not in post
    assert list(post["beta"].coords["fixed"].values) == ["(Intercept)", "period2", "period3",
                                                         "period4"]  # fmt: skip
    assert post["u_herd"].dims == ("chain", "draw", "herd", "herd_term")
    assert cbpp_fit.fit_info.method == "full"
    assert cbpp_fit.convergence.divergences == 0


def test_marginal_method_and_gaussian_only_arguments_are_refused():
    model = bl.LMM(CBPP, cbpp(), family="binomial")
    with pytest.raises(ArgumentError, match="method='marginal'.*binomial"):
        model.fit(method="marginal", draws=10, tune=10, chains=1)
    with pytest.raises(PriorError, match="sigma"):
        bl.LMM(CBPP, cbpp(), family="binomial", priors={"sigma": bl.Prior("HalfNormal")})
    with pytest.raises(ArgumentError, match="residual"):
        bl.LMM(CBPP, cbpp(), family="binomial", residual=bl.AR1("period", "herd"))
    assert "sigma" not in model.priors
    # link-scale autoscaled defaults (bambi's / rstanarm's rule with response SD 1)
    x = (cbpp()["period"] == 2).to_numpy(float)
    assert model.priors["period2"] == bl.Prior("Normal", mu=0, sigma=2.5 / x.std())  # as bambi
    assert model.priors["sd((Intercept)|herd)"] == bl.Prior("HalfNormal", sigma=2.5)
    probit = bl.LMM(CBPP, cbpp(), family="binomial", link="probit")
    assert probit.family.link.name == "probit"


# -- posteriors against glmer and bambi ---------------------------------------------------


def test_cbpp_posterior_near_glmer(cbpp_fit):
    """With weakly informative priors the posterior means sit within a posterior SD of
    glmer's Laplace estimates (lme4), the herd SD within two (15 herds: its posterior is
    skewed to the right of the mode)."""
    ref = GLMER["cbpp"]["tight"]
    table = cbpp_fit.summary(print_it=False)
    for name, estimate in ref["fixef"].items():
        assert abs(table.loc[name, "mean"] - estimate) < table.loc[name, "sd"], name
        # the posterior SD and glmer's SE agree to 25%
        assert table.loc[name, "sd"] == pytest.approx(ref["se"][name], rel=0.25)
    sd = table.loc["sd((Intercept)|herd)"]
    assert abs(sd["mean"] - ref["varcor"][0]["sd"]) < 2 * sd["sd"]


def test_cbpp_posterior_equals_bambi_within_monte_carlo_error(cbpp_fit):
    table = cbpp_fit.summary(print_it=False)
    ref = BAMBI["cbpp"]
    for name, r in ref.items():
        error = np.hypot(table.loc[name, "mcse_mean"], r["mcse_mean"])
        assert abs(table.loc[name, "mean"] - r["mean"]) < 4 * error, name
        assert table.loc[name, "sd"] == pytest.approx(r["sd"], rel=0.15), name


def test_bernoulli_posterior_near_glmer(bernoulli_fit):
    data = simulated("bernoulli")
    ml = bl.glmer("y ~ x + (1 | g)", data, family="binomial")
    table = bernoulli_fit.summary(print_it=False)
    for name in ("(Intercept)", "x"):
        estimate = ml.fixef()["estimate"][name]
        assert abs(table.loc[name, "mean"] - estimate) < table.loc[name, "sd"], name
    assert abs(table.loc["sd((Intercept)|g)", "mean"] - float(np.sqrt(ml.theta[0] ** 2))) \
        < 2 * table.loc["sd((Intercept)|g)", "sd"]  # fmt: skip


# -- log-likelihood -----------------------------------------------------------------------


def test_pointwise_log_likelihood_equals_scipy(cbpp_fit, bernoulli_fit, poisson_fit):
    d = cbpp()
    p = sc.expit(_eta(cbpp_fit))
    ll = stack.group(cbpp_fit.idata, "log_likelihood")[cbpp_fit.design.response].values
    np.testing.assert_allclose(ll, scipy.stats.binom.logpmf(d["incidence"], d["size"], p),
                               rtol=0, atol=1e-10)  # fmt: skip
    p = sc.expit(_eta(bernoulli_fit))
    ll = stack.group(bernoulli_fit.idata, "log_likelihood")["y"].values
    y = simulated("bernoulli")["y"].to_numpy()
    np.testing.assert_allclose(ll, scipy.stats.bernoulli.logpmf(y, p), rtol=0, atol=1e-10)
    mu = np.exp(_eta(poisson_fit))
    ll = stack.group(poisson_fit.idata, "log_likelihood")["y"].values
    y = simulated("poisson")["y"].to_numpy()
    np.testing.assert_allclose(ll, scipy.stats.poisson.logpmf(y, mu), rtol=0, atol=1e-10)


def test_loo_by_observation_and_by_group_run(bernoulli_fit):
    from bayeslmm.bayes.loo import loo

    res = loo(bernoulli_fit, "observation")
    assert all(np.isfinite(stack.elpd(res)))  # elpd, se, p_loo on either ArviZ line
    # by group: each level's effects integrated out (tests/test_glmm_evidence.py)
    assert all(np.isfinite(stack.elpd(loo(bernoulli_fit, "group"))))


# -- predictions --------------------------------------------------------------------------


def test_predict_kinds(cbpp_fit, poisson_fit):
    d = cbpp()
    mean = cbpp_fit.predict(kind="mean").values
    link = cbpp_fit.predict(kind="link").values
    assert np.all((mean > 0) & (mean < 1))
    np.testing.assert_allclose(mean, sc.expit(link), rtol=1e-12)
    np.testing.assert_allclose(link, _eta(cbpp_fit), atol=1e-10)
    draws = cbpp_fit.predict(kind="response", random_seed=5).values
    assert np.issubdtype(draws.dtype, np.integer)
    assert np.all((draws >= 0) & (draws <= d["size"].to_numpy()))
    # posterior predictive mean of the successes = trials x mean probability
    np.testing.assert_allclose(draws.mean((0, 1)), (d["size"] * mean.mean((0, 1))), rtol=0.12,
                               atol=0.3)  # fmt: skip
    # new rows: a new herd, trials from cbind's columns
    new = pd.DataFrame({"herd": pd.Categorical([1, 99]), "period": pd.Categorical([1, 4]),
                        "incidence": [0, 0], "size": [10, 20]})  # fmt: skip
    nd = cbpp_fit.predict(new, kind="response", random_seed=1).values
    assert np.all((nd >= 0) & (nd <= np.array([10, 20])))
    assert cbpp_fit.predict(new[["herd", "period"]], kind="mean").shape[-1] == 2
    with pytest.raises(ArgumentError, match="trials"):
        cbpp_fit.predict(new[["herd", "period"]], kind="response")
    nd = cbpp_fit.predict(new[["herd", "period"]], kind="response", trials=[5, 5],
                          random_seed=1).values  # fmt: skip
    assert nd.max() <= 5
    with pytest.raises(ArgumentError, match="kind"):
        cbpp_fit.predict(kind="probability")
    # Poisson: rates > 0, counts, the offset evaluated on new rows
    rate = poisson_fit.predict(kind="mean").values
    assert np.all(rate > 0)
    counts = poisson_fit.predict(kind="response", random_seed=2).values
    assert np.issubdtype(counts.dtype, np.integer) and counts.min() >= 0
    new = pd.DataFrame({"x": [0.0, 0.0], "g": ["0", "0"], "exposure": [1.0, 2.0]})
    eta = poisson_fit.predict(new, kind="link").values
    np.testing.assert_allclose(eta[..., 1] - eta[..., 0], np.log(2.0), atol=1e-12)
    fitted = poisson_fit.fitted()
    assert fitted.shape == (600,) and np.all(fitted > 0)


def test_tables_are_labelled_link_scale(cbpp_fit):
    text = repr(cbpp_fit)
    assert "Family: binomial  ( logit ); estimates on the logit (link) scale" in text
    assert "sigma" not in text and "Residual" not in text
    assert cbpp_fit.fixef().attrs["scale"] == "logit (link)"
    vc = cbpp_fit.varcorr()
    assert vc.attrs["scale"] == "logit (link)" and list(vc["grp"]) == ["herd"]
    assert cbpp_fit.ranef()["herd"].shape[0] == 15


# -- the Gaussian-only layer refuses ----------------------------------------------------


def test_comparison_and_report_refuse(cbpp_fit, tmp_path):
    # bl.report writes a GLMM's report now (tests/test_report_glmm.py); bayes_factor and
    # loo_compare(by="group") take GLMMs (tests/test_glmm_evidence.py)
    for call in (lambda: bl.compare(cbpp_fit),
                 lambda: bl.compare_random_effects(cbpp_fit), lambda: bl.icc(cbpp_fit),
                 lambda: bl.r2(cbpp_fit), lambda: cbpp_fit.icc(), lambda: cbpp_fit.r2(),
                 lambda: cbpp_fit.save(tmp_path / "m.nc")):  # fmt: skip
        with pytest.raises(ComparisonError, match="not for non-Gaussian families yet"):
            call()


@pytest.mark.parametrize(("formula", "family", "link"), [
    (CBPP, "binomial", "logit"), (CBPP, "binomial", "probit"), (CBPP, "binomial", "cloglog"),
    ("y ~ x + (1 + x | g)", "bernoulli", "logit"),
    ("y ~ x + offset(log(exposure)) + (1 | g)", "poisson", "log"),
])  # fmt: skip
def test_graph_likelihood_equals_the_pointwise_log_likelihood(formula, family, link):
    """The PyMC graph's observed log density at a random point equals the summed pointwise
    log-likelihood (the family's pmf, scipy's) of its beta and u, for every link."""
    data = cbpp() if family == "binomial" else simulated(family)
    model = bl.LMM(formula, data, family=family, link=link)
    graph = model.pymc_model
    rng = np.random.default_rng(4)
    point = {k: v + 0.3 * rng.standard_normal(np.shape(v))
             for k, v in graph.initial_point().items()}  # fmt: skip
    labels = [b.label for b in model.design.blocks]
    outs = [graph.observedlogp, graph["beta"]] + [graph[f"u_{lab}"] for lab in labels]
    if family == "bernoulli":  # the correlated term's LKJ Cholesky covariance
        outs.append(graph["cor_g"])
    # beta, u and cor as functions of the value variables (not fresh prior draws)
    outs = [outs[0], *graph.replace_rvs_by_values(outs[1:])]
    with quiet_pymc():
        values = graph.compile_fn(outs, inputs=graph.value_vars)(point)
    eta = model.design.X @ values[1] + model.response.offset
    for b, u in zip(model.design.blocks, values[2 : 2 + len(labels)], strict=True):
        eta = eta + np.einsum("nq,nq->n", b.Z, u[b.codes])
    r = model.response
    expected = r.family.loglik(r.y, r.family.linkinv(eta), r.weights).sum()
    assert float(values[0]) == pytest.approx(expected, rel=1e-10)


def test_a_family_without_a_bayesian_likelihood_is_refused():
    """A negative binomial with a fixed theta (bl.glmer's negative.binomial(theta)) must
    not fall through to another likelihood: bl.LMM samples theta (tests/test_negbin_bayes.py
    covers the family itself)."""
    df = pd.DataFrame({"y": [0, 1, 3, 2, 0, 5], "g": list("aabbcc")})
    with pytest.raises(bl.ArgumentError, match="samples the negative binomial's theta"):
        bl.LMM("y ~ 1 + (1 | g)", df, family="negative.binomial(theta = 2)")
