"""``method="laplace"``: the APPROXIMATE Laplace marginal posterior of a GLMM
(:mod:`bayeslmm.bayes.laplace`).

- its log density equals the exact density's prior (the exact GLMM density, itself tested
  against PyMC's graph in test_glm_density.py, evaluated at ``z = 0``) plus a dense numpy
  Laplace approximation of the marginal likelihood, to 1e-8, with gradients equal to
  central differences (binomial, crossed Poisson with an offset, a correlated slope);
- the Laplace log marginal likelihood against the exact one by one-dimensional quadrature
  per level (scipy's ``quad``) and lme4's adaptive Gauss-Hermite (25 nodes) on a
  random-intercept logistic model with few rows per level: it is an approximation, off by
  a small amount that the test measures and bounds;
- the posterior on cbpp against the exact default sampler (``method=None``);
- refusals: a non-canonical link, a misspelt method, a PyMC-graph sampler.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.special as sc
from scipy import integrate

import bayeslmm as bl
from bayeslmm.bayes import stack
from bayeslmm.bayes.density import MarginalDensity
from bayeslmm.bayes.laplace import APPROXIMATION
from bayeslmm.errors import ArgumentError
from bayeslmm.glmm.pirls import GlmmProblem
from bayeslmm.spec.family import get_family

DATA = Path(__file__).parent / "data"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def cbpp() -> pd.DataFrame:
    d = pd.read_csv(DATA / "cbpp.csv")
    return d.assign(herd=d.herd.astype("category"), period=d.period.astype("category"))


def simulated(family: str, seed: int = 5, slope: bool = False) -> pd.DataFrame:
    """10 levels of g crossed with 6 of h, 3 rows per cell, a covariate and an exposure."""
    rng = np.random.default_rng(seed)
    g, h = np.meshgrid(np.arange(10), np.arange(6), indexing="ij")
    g, h = np.repeat(g.ravel(), 3), np.repeat(h.ravel(), 3)
    x = rng.normal(size=g.size)
    eta = 0.2 + 0.6 * x + rng.normal(0, 0.8, 10)[g] + rng.normal(0, 0.5, 6)[h]
    if slope:
        eta += rng.normal(0, 0.5, 10)[g] * x
    exposure = rng.uniform(0.5, 2.0, g.size)
    y = (rng.binomial(1, sc.expit(eta)) if family == "bernoulli"
         else rng.poisson(np.exp(eta) * exposure))  # fmt: skip
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str), "h": h.astype(str),
                         "exposure": exposure})  # fmt: skip


CASES = [
    (CBPP, "binomial"),
    ("y ~ x + offset(log(exposure)) + (1 | g) + (1 | h)", "poisson"),
    ("y ~ x + (1 + x | g)", "bernoulli"),
]


def _model(formula: str, family: str) -> bl.LMM:
    data = cbpp() if family == "binomial" else simulated(family, slope="1 + x" in formula)
    return bl.LMM(formula, data, family=family)


def _row_loglik(model, eta: np.ndarray) -> float:
    """The rows' log-pmf with every constant (dbinom / dpois)."""
    r = model.response
    if r.family.binomial:
        n = np.round(r.weights)
        k = np.round(r.y * n)
        return float(np.sum(sc.gammaln(n + 1) - sc.gammaln(k + 1) - sc.gammaln(n - k + 1)
                            + k * eta - n * np.logaddexp(0.0, eta)))  # fmt: skip
    return float(np.sum(r.y * eta - np.exp(eta) - sc.gammaln(r.y + 1)))


def _dense_laplace(model, values: dict) -> float:
    """The Laplace log marginal likelihood by dense numpy: Newton on the spherical
    effects, ``l(u_hat) - |u_hat|^2 / 2 - log|I + (Z Lambda)'W(Z Lambda)| / 2``."""
    design, r = model.design, model.response
    columns = []
    for block in design.blocks:
        k = block.n_terms
        L = (np.zeros((k, k)) if block.correlated else np.diag(values[f"sd_{block.label}"]))
        if block.correlated:
            L[np.tril_indices(k)] = values[f"chol_{block.label}"]
        ZL = block.Z @ L  # (n, k): row r's effect of level codes[r] is ZL[r] @ u_level
        for level in range(block.n_levels):
            on = block.codes == level
            for a in range(k):
                columns.append(np.where(on, ZL[:, a], 0.0))
    M = np.column_stack(columns)
    eta0 = design.X @ values["beta"] + r.offset
    n = np.round(r.weights) if r.family.binomial else np.ones(design.n_obs)
    u = np.zeros(M.shape[1])
    for _ in range(100):
        eta = eta0 + M @ u
        mu = sc.expit(eta) if r.family.binomial else np.exp(eta)
        counts = np.round(r.y * n) if r.family.binomial else r.y
        w = n * mu * (1 - mu) if r.family.binomial else mu
        A = np.eye(M.shape[1]) + M.T @ (w[:, None] * M)
        step = np.linalg.solve(A, M.T @ (counts - n * mu if r.family.binomial else counts - mu)
                               - u)  # fmt: skip
        u += step
        if np.max(np.abs(step)) < 1e-13:
            break
    eta = eta0 + M @ u
    mu = sc.expit(eta) if r.family.binomial else np.exp(eta)
    w = n * mu * (1 - mu) if r.family.binomial else mu
    A = np.eye(M.shape[1]) + M.T @ (w[:, None] * M)
    return _row_loglik(model, eta) - 0.5 * u @ u - 0.5 * np.linalg.slogdet(A)[1]


def _exact_prior(model, x: np.ndarray) -> float:
    """The exact GLMM density's log prior of the population parameters at ``x`` (with
    every Jacobian): its log density at ``z = 0`` (so ``u = 0``) less the rows' log-pmf
    at ``X beta + offset`` and the standard normal density of the zero ``z``."""
    stats = model.blocked_system.stats
    flags = {f.group: (False,) * f.q for f in stats.factors}
    exact = MarginalDensity.from_glm(model.design, model.response, model.priors,
                                     model.blocked_system, flags, flags, None, None)  # fmt: skip
    point = np.concatenate([x, np.zeros(exact.layout.n_explicit)])
    value = exact.logp_grad(point)[0]
    beta = x[: model.design.X.shape[1]]
    eta = model.design.X @ beta + model.response.offset
    return value - _row_loglik(model, eta) + 0.5 * exact.layout.n_explicit * np.log(2 * np.pi)


@pytest.mark.parametrize(("formula", "family"), CASES)
def test_log_density_is_prior_plus_laplace(formula, family):
    """prior + dense Laplace to 1e-8; gradient to central differences (1e-5 relative)."""
    model = _model(formula, family)
    density = model.laplace_density
    assert density.layout.n_explicit == 0 and not density.layout.has_sigma
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = density.start + 0.4 * rng.normal(size=density.start.size)
        ours, grad = density.logp_grad(x)
        values = density.constrained(x, model.design)
        theirs = _exact_prior(model, x) + _dense_laplace(model, values)
        assert ours == pytest.approx(theirs, abs=1e-8, rel=1e-12)
        h = 1e-5
        numeric = np.array([(density.logp_grad(x + e)[0] - density.logp_grad(x - e)[0]) / (2 * h)
                            for e in np.eye(x.size) * h])  # fmt: skip
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_laplace_against_quadrature():
    """Random-intercept logistic model, 12 levels of 4 Bernoulli rows each: the Laplace
    log marginal likelihood (what the density uses, minus half lme4's Laplace deviance)
    against the exact one by quadrature per level (scipy's quad) and lme4's adaptive
    Gauss-Hermite with 25 nodes. AGQ-25 equals quad (to 1e-8); Laplace is below the exact
    value by 0.172 nats at sd 1.2 and 0.019 nats at sd 0.5 (measured), the error shrinking
    with the random effects' SD."""
    rng = np.random.default_rng(11)
    levels, per = 12, 4
    codes = np.repeat(np.arange(levels), per)
    x = rng.normal(size=codes.size)
    X = np.column_stack([np.ones(codes.size), x])
    family = get_family("binomial")
    eta = -0.3 + 0.8 * x + rng.normal(0, 1.0, levels)[codes]
    y = rng.binomial(1, sc.expit(eta)).astype(float)
    beta = np.array([-0.3, 0.8])
    measured = {}
    for sd in (1.2, 0.5):
        problem = GlmmProblem(X, [(np.ones((codes.size, 1)), codes, levels)],
                              lambda t: [np.array([[t[0]]])], family, y, np.ones(codes.size),
                              np.zeros(codes.size))  # fmt: skip
        state = problem.pirls(np.array([sd]), beta)
        laplace = -0.5 * problem.laplace(state)
        # lme4's AGQ deviance leaves out the saturated log-likelihood (zero for 0/1 rows)
        agq = -0.5 * problem.agq(state, codes, levels, 25)
        eta0 = X @ beta
        exact = 0.0
        for j in range(levels):
            rows = codes == j

            def f(b, rows=rows, eta0=eta0, sd=sd):
                e = eta0[rows] + sd * b
                log_f = np.sum(y[rows] * e - np.logaddexp(0, e)) - 0.5 * b * b
                return np.exp(log_f) / np.sqrt(2 * np.pi)

            exact += np.log(integrate.quad(f, -12, 12, epsabs=1e-14, epsrel=1e-12)[0])
        assert agq == pytest.approx(exact, abs=1e-8)
        measured[sd] = laplace - exact
    print(f"Laplace - exact log marginal likelihood: {measured}")
    assert abs(measured[0.5]) < abs(measured[1.2]) < 0.3


def _fit(model, method):
    model.fit(draws=1000, tune=500, chains=2, cores=2, random_seed=5, progressbar=False,
              method=method)  # fmt: skip
    return stack.posterior(model.idata)


def test_cbpp_posterior_agrees_with_the_exact_sampler():
    """cbpp, 2 chains x 1000 draws each: the population parameters' posterior means of
    method='laplace' within 0.25 posterior SD of the exact sampler's and the SDs within
    15% (measured, seed 5: largest mean difference 0.045 SD, SDs within 3.7%); the
    random effects drawn afterwards within 0.15 SD on average (measured 0.087); every
    table and the printed summary say it is approximate."""
    exact_model, laplace_model = _model(CBPP, "binomial"), _model(CBPP, "binomial")
    with warnings.catch_warnings():  # convergence warnings are not what is checked
        warnings.simplefilter("ignore")
        exact = _fit(exact_model, None)
        approx = _fit(laplace_model, "laplace")
    worst, ratio = 0.0, 0.0
    for name in ("beta", "sd_herd"):
        a, b = exact[name].values, approx[name].values
        sd = a.std(axis=(0, 1))
        diff = np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))) / sd
        worst = max(worst, float(diff.max()))
        ratio = max(ratio, float(np.max(np.abs(b.std(axis=(0, 1)) / sd - 1))))
        np.testing.assert_array_less(diff, 0.25)
        np.testing.assert_allclose(b.std(axis=(0, 1)), sd, rtol=0.15)
    u_a, u_b = exact["u_herd"].values, approx["u_herd"].values
    u_diff = np.abs(u_a.mean(axis=(0, 1)) - u_b.mean(axis=(0, 1))) / u_a.std(axis=(0, 1))
    assert u_diff.mean() < 0.15
    print(f"largest |mean difference| / posterior SD: {worst:.3f}; largest |SD ratio - 1| "
          f"{ratio:.3f}; random effects' mean {u_diff.mean():.3f}")
    info = laplace_model.fit_info
    assert info.method == "laplace" and "APPROXIMATE" in info.log_density
    text = repr(laplace_model)
    assert "APPROXIMATE" in text.splitlines()[0]
    assert "APPROXIMATE" in next(line for line in text.splitlines() if "Convergence" in line)
    for table in (laplace_model.summary(print_it=False), laplace_model.fixef(),
                  laplace_model.varcorr(), *laplace_model.ranef().values()):
        assert table.attrs["approximation"] == APPROXIMATION
    assert laplace_model.predict(summary=True).attrs["approximation"] == APPROXIMATION
    assert laplace_model.predict().attrs["approximation"] == APPROXIMATION
    assert "approximation" not in exact_model.fixef().attrs


def test_refusals():
    """A non-canonical link, a misspelt method and a PyMC-graph sampler are refused,
    naming what to use."""
    probit = bl.LMM(CBPP, cbpp(), family="binomial", link="probit")
    with pytest.raises(ArgumentError, match="probit link.*method=None"):
        probit.fit(method="laplace", draws=10, tune=10, chains=1, progressbar=False)
    model = _model(CBPP, "binomial")
    with pytest.raises(ArgumentError, match="'laplace'.*got 'lapalce'"):
        model.fit(method="lapalce", draws=10, tune=10, chains=1, progressbar=False)
    with pytest.raises(ArgumentError, match="sampler='pymc'"):
        model.fit(method="laplace", sampler="pymc", draws=10, tune=10, chains=1,
                  progressbar=False)  # fmt: skip
    assert model.idata is None and probit.idata is None
