"""Marginal likelihoods by bridge sampling against brute-force quadrature, Bayes factors,
and the exact per-group marginal likelihood behind leave-one-group-out."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from scipy.linalg import block_diag
from scipy.special import logsumexp

import bayeslmm as bl
from bayeslmm.bayes import evidence
from bayeslmm.bayes.density import MarginalDensity
from bayeslmm.gaussian.blocked import BlockedSystem
from bayeslmm.gaussian.statistics import (
    BlockedStats,
    LevelMoments,
    node_groups,
    random_effects_matrix,
)
from bayeslmm.spec.design import build_design

FAST = {"draws": 1000, "tune": 500, "chains": 4, "progressbar": False}


@pytest.fixture(scope="module")
def tiny():
    """y ~ 1 + (1 | g): five groups of four, a posterior with three parameters."""
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(5), 4)
    y = 10 + rng.normal(0, 2, 5)[g] + rng.normal(0, 1, g.size)
    data = pd.DataFrame({"y": y, "g": [f"g{i}" for i in g]})
    model = bl.LMM("y ~ 1 + (1 | g)", data)
    model.fit(random_seed=1, **FAST)
    return model


def _simpson(n: int) -> np.ndarray:
    w = np.ones(n)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return w / 3


def _quadrature(model, n=81):
    """log p(y) by Simpson's rule over (beta, log tau, log sigma), written from scratch:
    the priors, the Jacobians of the logs and each group's compound-symmetric normal."""
    post = model.idata.posterior
    draws = [post["beta"].values.ravel(), np.log(post["sd_g"].values.ravel()),
             np.log(post["sigma"].values.ravel())]  # fmt: skip
    axes = [np.linspace(x.min() - 3 * x.std() - 1, x.max() + 3 * x.std() + 1, n) for x in draws]
    B, LT, LS = np.meshgrid(*axes, indexing="ij")
    tau, sig = np.exp(LT), np.exp(LS)
    p = model.priors
    lp = st.norm.logpdf(B, p["(Intercept)"].params["mu"], p["(Intercept)"].params["sigma"])
    lp += st.halfnorm.logpdf(tau, scale=p["sd((Intercept)|g)"].params["sigma"]) + LT
    lp += st.halfnorm.logpdf(sig, scale=p["sigma"].params["sigma"]) + LS
    frame = model.design.frame
    for _, group in frame.groupby("g"):
        e = group["y"].to_numpy()[:, None, None, None] - B
        m, s2, t2 = len(group), sig**2, tau**2
        logdet = (m - 1) * np.log(s2) + np.log(s2 + m * t2)
        quad = ((e**2).sum(0) - t2 * e.sum(0) ** 2 / (s2 + m * t2)) / s2
        lp += -0.5 * (m * np.log(2 * np.pi) + logdet + quad)
    log_w = sum(np.log(_simpson(n) * (a[1] - a[0])).reshape(
        [-1 if i == k else 1 for i in range(3)]) for k, a in enumerate(axes))  # fmt: skip
    return float(logsumexp(lp + log_w))


def test_bridge_sampling_matches_quadrature(tiny):
    exact = _quadrature(tiny)
    assert _quadrature(tiny, n=61) == pytest.approx(exact, abs=1e-4)  # the grid has converged
    for seed in (1, 2):
        tiny._evidence = None
        result = tiny.log_marginal_likelihood(random_seed=seed)
        assert abs(result.logml - exact) < 0.05, (result, exact)
        assert 0 < result.error < 0.05
        assert result.density == "compiled" and result.n_posterior == 2000
    assert tiny.log_marginal_likelihood() is result  # kept per fit


def test_pymc_graph_gives_the_same_marginal_likelihood(tiny, monkeypatch):
    # PyMC's marginal model (another parametrisation of the same posterior) through the
    # transforms of its value variables: the fallback where the compiled kernel is None
    compiled = tiny.log_marginal_likelihood()
    monkeypatch.setattr(bl.LMM, "compiled_density", property(lambda self: None))
    result = evidence.log_marginal_likelihood(tiny, random_seed=3)
    assert result.density == "PyMC graph"
    assert abs(result.logml - compiled.logml) < 3 * np.hypot(result.error, compiled.error) + 0.01


def test_unconstrained_draws_invert_the_density_transform(sleepstudy):
    design = build_design("Reaction ~ Days + I(Days**2) + (1 + Days + I(Days**2) | Subject)",
                          sleepstudy)  # fmt: skip
    model = bl.LMM(design.spec.formula, sleepstudy)
    density = MarginalDensity.from_model(design, model.priors, model.blocked_system)
    x = np.random.default_rng(0).normal(size=(2, 5, density.layout.size))
    post = {k: (("chain", "draw", *[f"d{k}{i}" for i in range(v.ndim - 2)]), v)
            for k, v in density.constrained(x, design).items()}  # fmt: skip
    import xarray as xr

    post = xr.Dataset(post)
    back = evidence.unconstrained_draws(density.layout, post, design)
    np.testing.assert_allclose(back, x, atol=1e-9)
    # from the correlations alone (a posterior without the packed Cholesky factor)
    back = evidence.unconstrained_draws(density.layout, post.drop_vars("chol_Subject"), design)
    np.testing.assert_allclose(back, x, atol=1e-7)


def test_bayes_factor_and_its_checks(tiny, sleepstudy):
    other = bl.LMM("y ~ 1 + (1 | g)", tiny.design.frame.assign(y=tiny.design.y + 1.0))
    other.fit(random_seed=2, **FAST)
    bf = bl.bayes_factor(tiny, tiny)
    assert (
        bf.log_bf == 0.0
        and bf.bf == 1.0
        and bf.error == pytest.approx(np.sqrt(2) * tiny.log_marginal_likelihood().error)
    )
    with pytest.raises(bl.ComparisonError, match="same response"):
        bl.bayes_factor(tiny, other)
    with pytest.raises(bl.ComparisonError, match="bl.LMM"):
        bl.bayes_factor(tiny, "m0")
    with pytest.raises(bl.NotFittedError):
        bl.LMM("y ~ 1 + (1 | g)", tiny.design.frame).log_marginal_likelihood()


def _dense_group_loglik(design, beta, cov, sigma, codes, n_levels):
    Z = random_effects_matrix(design).toarray()
    out = []
    for j in range(n_levels):
        rows = codes == j
        V = sigma**2 * np.eye(rows.sum()) + Z[rows] @ cov @ Z[rows].T
        out.append(st.multivariate_normal(design.X[rows] @ beta, V).logpdf(design.y[rows]))
    return np.array(out)


def _group_loglik(design, group, factors, beta, sigma):
    """The blocked kernel's per-group log-likelihoods; ``factors`` (draws, q, q) per grouping
    factor in the kernel's order (most levels first)."""
    system = BlockedSystem(BlockedStats.from_design(design))
    T = np.zeros((len(sigma), system.n_factors, system.qmax, system.qmax))
    for f, L in enumerate(factors):
        T[:, f, : L.shape[1], : L.shape[1]] = L / sigma[:, None, None]
    block = next(b for b in design.blocks if b.group == group)
    moments = LevelMoments.from_codes(block.codes, block.n_levels, design.X, design.y)
    node_group = node_groups(design, system.stats, group)
    return system.group_loglik(T, beta, sigma, node_group, moments)


def test_group_loglik_is_the_dense_normal(sleepstudy, ratpup):
    rng = np.random.default_rng(0)
    d = build_design("Reaction ~ Days + (Days | Subject)", sleepstudy)
    block = d.blocks[0]
    beta, sigma = rng.normal([250, 10], [10, 2], (3, 2)), rng.uniform(20, 30, 3)
    L = np.tril(rng.normal(0, 10, (3, 2, 2))) + np.eye(2) * 15
    ours = _group_loglik(d, "Subject", [L], beta, sigma)
    for s in range(3):
        cov = np.kron(np.eye(block.n_levels), L[s] @ L[s].T)
        dense = _dense_group_loglik(d, beta[s], cov, sigma[s], block.codes, block.n_levels)
        np.testing.assert_allclose(ours[s], dense, rtol=1e-10)
    d = build_design("weight ~ sex + (1 + sex | treatment) + (1 | treatment:litter)", ratpup)
    outer, inner = d.blocks
    beta, sigma = rng.normal([6, 0.3], [0.5, 0.1], (3, 2)), rng.uniform(0.3, 0.5, 3)
    LA = np.tril(rng.normal(0, 0.3, (3, 2, 2))) + np.eye(2) * 0.4
    LB = rng.uniform(0.2, 0.4, (3, 1, 1))
    ours = _group_loglik(d, "treatment", [LB, LA], beta, sigma)  # inner factor first
    for s in range(3):
        cov = block_diag(np.kron(np.eye(outer.n_levels), LA[s] @ LA[s].T),
                         np.kron(np.eye(inner.n_levels), LB[s] @ LB[s].T))  # fmt: skip
        dense = _dense_group_loglik(d, beta[s], cov, sigma[s], outer.codes, outer.n_levels)
        np.testing.assert_allclose(ours[s], dense, rtol=1e-10)
