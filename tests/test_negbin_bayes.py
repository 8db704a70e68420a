"""The Bayesian negative binomial GLMM (``bl.LMM(..., family="negative_binomial")``): the
compiled density (:func:`bayeslmm.bayes.row_likelihood.nb_term` behind
:mod:`bayeslmm.bayes.density`, ``log theta`` in sigma's slot) against PyMC's graph
(:mod:`bayeslmm.bayes.glm_graph`, ``NegativeBinomial(mu, alpha=theta)``) at random points,
its gradient against central differences, and on grouseticks the default fit against
``method="full"`` (the graph) within Monte Carlo error, with theta against lme4's glmer.nb
(``tests/data/lme4_glmer_nb.json``, made by ``tests/data/lme4_glmer_nb.R``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from glm_density_checks import assert_exact_gradient, glm_density, pymc_point

import bayeslmm as bl
from bayeslmm.bayes import stack
from bayeslmm.bayes.loo import loo
from bayeslmm.bayes.row_likelihood import nb_term
from bayeslmm.bayes.sampling import quiet_pymc

DATA = Path(__file__).parent / "data"
GROUSE = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"
CROSSED = "y ~ x + offset(log(exposure)) + (1 | g) + (1 | h)"
NESTED = "y ~ x + w + (1 | g) + (1 | k)"


def simulated(seed: int = 5, theta: float = 2.0, base: float = 0.8) -> pd.DataFrame:
    """12 levels of g crossed with 8 of h, 3 rows per cell, k nested in g; a covariate x,
    w one value per level of g, an exposure; negative binomial counts at ``theta``."""
    rng = np.random.default_rng(seed)
    g, h = np.meshgrid(np.arange(12), np.arange(8), indexing="ij")
    g, h = np.repeat(g.ravel(), 3), np.repeat(h.ravel(), 3)
    x = rng.normal(size=g.size)
    w = rng.normal(size=12)[g]
    exposure = rng.uniform(0.5, 2.0, g.size)
    eta = base + 0.3 * w + 0.5 * x + rng.normal(0, 0.7, 12)[g] + rng.normal(0, 0.4, 8)[h]
    mu = np.exp(eta) * exposure
    y = rng.negative_binomial(theta, theta / (theta + mu))
    return pd.DataFrame({"y": y, "x": x, "w": w, "g": g.astype(str), "h": h.astype(str),
                         "k": [f"{a}.{b % 4}" for a, b in zip(g, h, strict=True)],
                         "exposure": exposure})  # fmt: skip


def grouseticks() -> pd.DataFrame:
    return bl.load_dataset("grouseticks")


def _model(formula: str, parametrization: str = "noncentered", **kwargs) -> bl.LMM:
    data = grouseticks() if formula == GROUSE else simulated()
    return bl.LMM(formula, data, family="negative_binomial", parametrization=parametrization,
                  **kwargs)  # fmt: skip


def _compare(model, density, centred: bool, signed: bool, scale: float, seed: int = 7):
    with quiet_pymc():
        logp = model.pymc_model.compile_logp(jacobian=True)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        x = density.start + scale * rng.normal(size=density.start.size)
        ours, _ = density.logp_grad(x)
        values = density.constrained(x, model.design)
        theirs = float(logp(pymc_point(model, values, centred)))
        if signed:  # PyMC's log-SD Jacobian and the two halves of |x|
            theirs -= sum(np.log(2.0) + np.log(values[f"sd_{b.label}"]).sum()
                          for b in model.design.blocks)  # fmt: skip
        assert np.isfinite(ours)
        assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-8)


@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("formula", [CROSSED, NESTED, GROUSE])
def test_log_density_equals_the_pymc_graphs(formula, centred):
    """The compiled NB log density (theta sampled as log theta, with its prior and
    Jacobian) is the graph's to 1e-10 relative (1e-8 absolute) at random points: crossed
    factors with an offset, a factor nested in another (nested_parents where centred) and
    a level covariate (carry_matrix), and grouseticks' broods and locations."""
    model = _model(formula, "centered" if centred else "noncentered")
    density = glm_density(model, centred, signed=not centred)
    layout = density.layout
    assert layout.has_theta and not layout.has_sigma and layout.effects == layout.sigma + 1
    _compare(model, density, centred, not centred, 0.6)


def test_identity_link_and_an_overridden_theta_prior_equal_the_graphs():
    """The identity link (mu = eta > 0) and a user's Gamma prior on theta."""
    rng = np.random.default_rng(8)
    data = simulated()
    g, h = data.g.astype(int).to_numpy(), data.h.astype(int).to_numpy()
    mu = 8.0 + 1.5 * data.x.to_numpy() + rng.normal(0, 1, 12)[g] + rng.normal(0, 0.5, 8)[h]
    data["y"] = rng.negative_binomial(5.0, 5.0 / (5.0 + np.maximum(mu, 0.5)))
    model = bl.LMM("y ~ x + (1 | g) + (1 | h)", data, family="negative_binomial",
                   link="identity",
                   priors={"theta": bl.Prior("Gamma", alpha=2.0, beta=0.5)})  # fmt: skip
    assert model.priors["theta"] == bl.Prior("Gamma", alpha=2.0, beta=0.5)
    density = glm_density(model, centred=False)
    _compare(model, density, centred=False, signed=False, scale=0.05, seed=3)
    # mu <= 0 in a row: no density
    x = density.start.copy()
    x[0] = -50.0
    assert density.logp_grad(x)[0] == -np.inf


@pytest.mark.parametrize(("formula", "centred"), [
    (CROSSED, False), (CROSSED, True), (NESTED, True), (GROUSE, None),
])  # fmt: skip
def test_gradient_is_the_log_densitys(formula, centred):
    """Exact gradient (theta's through log theta included) against central differences;
    ``centred=None``: the model's own choice per term."""
    model = _model(formula)
    density = (model.compiled_density if centred is None
               else glm_density(model, centred, signed=not centred))  # fmt: skip
    grad = assert_exact_gradient(density)
    assert abs(grad[density.layout.sigma]) > 0  # log theta moves the density


def test_the_row_term_is_scipys_and_exact_towards_the_poisson_limit():
    """One row's log-pmf (plus lgamma(y + 1)) against scipy's nbinom, both branches of
    lgamma(y + theta) - lgamma(theta) (direct sum up to 64, lgamma above), and its
    derivatives against central differences; at theta = 1e12 it is Poisson's to 1e-9
    (the true gap is about y^2 / (2 theta))."""
    for y in (0.0, 1.0, 7.0, 64.0, 65.0, 300.0):
        for eta in (-2.0, 0.4, 3.5):
            for theta in (0.05, 0.9, 4.0, 300.0):
                value, d_eta, d_theta = nb_term(6, eta, y, theta)
                mu = np.exp(eta)
                ref = (scipy.stats.nbinom.logpmf(y, theta, theta / (theta + mu))
                       + scipy.special.gammaln(y + 1))  # fmt: skip
                assert value == pytest.approx(ref, rel=1e-11, abs=1e-11)
                h = 1e-6
                num_eta = (nb_term(6, eta + h, y, theta)[0]
                           - nb_term(6, eta - h, y, theta)[0]) / (2 * h)  # fmt: skip
                up, down = theta * (1 + h), theta * (1 - h)
                num_theta = (nb_term(6, eta, y, up)[0]
                             - nb_term(6, eta, y, down)[0]) / (2 * h * theta)  # fmt: skip
                assert d_eta == pytest.approx(num_eta, rel=1e-6, abs=1e-7)
                assert d_theta == pytest.approx(num_theta, rel=1e-5, abs=1e-7)
    for y in (0.0, 3.0, 20.0):
        value = nb_term(6, 1.2, y, 1e12)[0] - scipy.special.gammaln(y + 1)
        assert value == pytest.approx(scipy.stats.poisson.logpmf(y, np.exp(1.2)), abs=1e-9)


def test_priors_and_refusals():
    """theta's default prior is InverseGamma(0.5, 0.5) (1/sqrt(theta) ~ HalfNormal(1)); a
    family with a fixed theta and a non-positive prior are refused; laplace is refused."""
    model = _model(CROSSED)
    assert model.priors["theta"] == bl.Prior("InverseGamma", alpha=0.5, beta=0.5)
    # the same law: P(theta < 1) = P(|N(0, 1)| > 1)
    prior = scipy.stats.invgamma(0.5, scale=0.5)
    assert prior.cdf(1.0) == pytest.approx(2 * scipy.stats.norm.sf(1.0), rel=1e-12)
    with pytest.raises(bl.ArgumentError, match="samples the negative binomial's theta"):
        bl.LMM(CROSSED, simulated(), family="negative.binomial(theta = 2)")
    with pytest.raises(bl.PriorError, match="positive support"):
        bl.LMM(CROSSED, simulated(), family="negative_binomial",
               priors={"theta": bl.Prior("Normal", mu=0, sigma=1)})  # fmt: skip
    with pytest.raises(bl.PriorError, match="matches no parameter"):
        bl.LMM(CROSSED, simulated(), family="poisson", priors={"theta": bl.Prior("HalfNormal")})
    with pytest.raises(bl.ArgumentError, match="canonical link"):
        model.fit(method="laplace")


def test_the_pooled_fit_starts_theta_near_the_data():
    """Chains start theta at a pooled negative binomial GLM's (glm.nb's alternation):
    for simulated data without random effects it is near the simulating theta; the
    centring's IRLS weights are mu / (1 + mu / theta)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=3000)
    mu = np.exp(0.5 + 0.4 * x)
    y = rng.negative_binomial(2.5, 2.5 / (2.5 + mu))
    data = pd.DataFrame({"y": y, "x": x, "g": rng.integers(0, 30, x.size).astype(str)})
    model = bl.LMM("y ~ x + (1 | g)", data, family="negative_binomial")
    beta, weights = model._pooled
    theta = model._pooled_theta
    assert theta == pytest.approx(2.5, rel=0.15)
    np.testing.assert_allclose(beta, [0.5, 0.4], atol=0.05)
    fitted = np.exp(model.design.X @ beta)
    np.testing.assert_allclose(weights, fitted / (1 + fitted / theta), rtol=1e-8)
    assert model.compiled_density.start[model.compiled_density.layout.sigma] == \
        pytest.approx(np.log(theta))


#: grouseticks' terms sampled non-centred in the compiled fit below. The centring rule
#: (GlmMixin._own_spreads on the pooled NB fit's weights, theta 0.78) centres LOCATION,
#: in which the broods are nested, and that mixes badly here: 4 chains x 1000 draws, seed
#: 1, smallest bulk ESS of the population parameters 8 (R-hat 1.47); both non-centred 150
#: (R-hat 1.016); both centred 7 (R-hat 1.6, 83 divergences); BROOD alone centred 62.
GROUSE_CENTRING = {"BROOD": (False,), "LOCATION": (False,)}


@pytest.fixture(scope="module")
def grouse_fits():
    """grouseticks' model fitted twice: the compiled density with nutpie (whitened:
    4 x 1000 draws in a few seconds) and the PyMC graph (``method="full"``, numpyro,
    2 x 500 draws; about 60 s on 2 shared cores)."""
    data = grouseticks()
    settings = {"tune": 500, "random_seed": 1, "progressbar": False}
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, method, draws, chains in (("compiled", None, 1000, 4),
                                            ("full", "full", 500, 2)):  # fmt: skip
            model = bl.LMM(GROUSE, data, family="negative_binomial")
            if method is None:
                model.__dict__["_centred"] = GROUSE_CENTRING  # the rule's cached choice
            model.fit(method=method, draws=draws, chains=chains, **settings)
            fits[name] = model
    return fits


def _lme4_theta() -> float:
    cases = json.loads((DATA / "lme4_glmer_nb.json").read_text())["cases"]
    return next(c for c in cases if c["id"] == "grouseticks_nb")["default"]["nb_theta"]


@pytest.mark.slow
def test_grouseticks_posterior_agrees_with_the_graph_and_glmer_nb(grouse_fits):
    """The default fit (compiled density, nutpie) and ``method="full"`` (the PyMC graph)
    agree on every population parameter's posterior mean within 4 joint Monte Carlo SEs
    (or a tenth of its posterior SD: the graph's 2 x 500 draws estimate their own MCSE
    loosely; 4 x 5000 compiled draws, whitened and centred, agree on theta to 0.012,
    3.308 and 3.296), and theta (listed among them, component "residual") lies within
    0.5 posterior SDs of glmer.nb's ML estimate 3.3034."""
    compiled, full = grouse_fits["compiled"], grouse_fits["full"]
    assert compiled.centred_terms == {"BROOD": (), "LOCATION": ()}
    assert compiled.fit_info.log_density == "bayeslmm (numba)"
    assert full.fit_info.log_density == "PyMC graph"
    a = compiled.summary(print_it=False).table
    b = full.summary(print_it=False).table
    assert list(a.index) == list(b.index)
    assert "theta" in a.index and a.loc["theta", "component"] == "residual"
    assert "theta" not in compiled.fixef().index
    for name in a.index:
        joint = np.hypot(a.loc[name, "mcse_mean"], b.loc[name, "mcse_mean"])
        assert abs(a.loc[name, "mean"] - b.loc[name, "mean"]) < max(
            4 * joint, 0.1 * b.loc[name, "sd"]), name
        assert a.loc[name, "sd"] == pytest.approx(b.loc[name, "sd"], rel=0.25), name
    reference = _lme4_theta()
    assert reference == pytest.approx(3.3034, abs=1e-4)
    for table in (a, b):
        assert abs(table.loc["theta", "mean"] - reference) < 0.5 * table.loc["theta", "sd"]
    text = str(compiled.summary(print_it=False))
    assert "Dispersion (negative binomial" in text and "theta" in text
    assert "theta" in compiled.population_variables()


@pytest.mark.slow
def test_grouseticks_predictions_log_likelihood_and_ppc(grouse_fits):
    """kind="response" draws overdispersed counts at each draw's theta; the pointwise
    log-likelihood is dnbinom's; PSIS-LOO runs on it; posterior_predictive (az.plot_ppc's
    group) samples the graph's NegativeBinomial."""
    model = grouse_fits["compiled"]
    idata = model.idata
    post = stack.posterior(idata)
    counts = model.predict(kind="response", random_seed=3)
    mean = model.predict(kind="mean")
    assert counts.dtype.kind == "i" and counts.shape == mean.shape
    # over draws and rows: E[y] = E[mu], Var[y] = E[mu + mu^2 / theta] + Var[mu]
    theta = post["theta"].values[..., None]
    m = mean.values
    assert counts.values.mean() == pytest.approx(m.mean(), rel=0.03)
    expected = (m + m**2 / theta).mean() + m.var()
    assert counts.values.var() == pytest.approx(expected, rel=0.1)
    ll = stack.group(idata, "log_likelihood")["TICKS"].values
    eta = model.predict(kind="link").values
    row = (0, 7, slice(None))
    ref = scipy.stats.nbinom.logpmf(model.response.y, theta[0, 7],
                                    theta[0, 7] / (theta[0, 7] + np.exp(eta[row])))  # fmt: skip
    np.testing.assert_allclose(ll[row], ref, rtol=1e-10)
    with warnings.catch_warnings():  # a few rows with Pareto k > 0.7 at 1000 draws
        warnings.simplefilter("ignore", UserWarning)
        assert loo(model, by="observation") is not None  # PSIS-LOO reads that group
    model.posterior_predictive(random_seed=1)
    replicated = stack.group(idata, "posterior_predictive")["TICKS"].values
    assert replicated.shape == ll.shape and replicated.min() >= 0
    assert replicated.mean() == pytest.approx(model.response.y.mean(), rel=0.1)


def _simulate_from_the_prior(rng: np.random.Generator, groups: int = 8, per_group: int = 6):
    """One data set of ``y ~ x + offset(log(exposure)) + (1 | g)`` from the SBC priors:
    Normal(0, 1) fixed effects, HalfNormal(1) SD, theta from the default prior
    (1 / sqrt(theta) ~ HalfNormal(1))."""
    x = np.tile(np.linspace(-1, 1, per_group), groups)
    g = np.repeat(np.arange(groups), per_group)
    beta = rng.normal(size=2)
    sd = abs(rng.normal())
    theta = 1.0 / rng.normal() ** 2
    exposure = rng.uniform(0.5, 2.0, x.size)
    mu = exposure * np.exp(beta[0] + beta[1] * x + sd * rng.normal(size=groups)[g])
    y = rng.negative_binomial(theta, theta / (theta + mu))
    data = pd.DataFrame({"y": y, "x": x, "g": [f"g{j}" for j in g], "exposure": exposure})
    truth = {"(Intercept)": beta[0], "x": beta[1], "sd((Intercept)|g)": sd, "theta": theta}
    return data, truth


@pytest.mark.slow
def test_sbc_ranks_are_uniform_and_a_shifted_posterior_fails():
    """Simulation-based calibration (Talts et al. 2018) of the default fit (compiled
    density, nutpie): 100 data sets from the prior, 39 thinned draws each; 4-bin
    chi-square tests of the ranks of the two fixed effects, the SD and theta pass at
    p > 0.001, and the same draws moved by 1.5 posterior SDs fail every one."""
    from bayeslmm.bayes.results import population_draws
    from bayeslmm.bayes.sbc import SBCResult

    priors = {"fixed": bl.Prior("Normal", mu=0, sigma=1), "sd": bl.Prior("HalfNormal", sigma=1)}
    rng = np.random.default_rng(21)
    draws, reps = 39, 100
    ranks, truths, kept = [], [], {}
    for rep in range(reps):
        data, truth = _simulate_from_the_prior(rng)
        model = bl.LMM("y ~ x + offset(log(exposure)) + (1 | g)", data, priors=priors,
                       family="negative_binomial")  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(draws=4 * draws, tune=200, chains=1, random_seed=rep, progressbar=False,
                      target_accept=0.95, store_log_likelihood=False)  # fmt: skip
        post = population_draws(model.idata, model.design)
        thinned = {k: post[k].values.ravel()[::4][:draws] for k in truth}
        ranks.append({k: int(np.sum(thinned[k] < v)) for k, v in truth.items()})
        truths.append(truth)
        for k, v in thinned.items():
            kept.setdefault(k, []).append(v)
    # measured: p-values 0.41, 0.46, 0.57 and 0.068 (theta); shifted below 1e-24
    result = SBCResult(pd.DataFrame(ranks), draws, truth=pd.DataFrame(truths),
                       draws={k: np.stack(v) for k, v in kept.items()})  # fmt: skip
    pvals = result.uniformity(bins=4)["p_value"]
    assert (pvals > 0.001).all(), pvals
    shifted = result.shifted(1.5).uniformity(bins=4)["p_value"]
    assert (shifted < 0.001).all(), shifted
