"""Marginal likelihoods, Bayes factors and leave-one-group-out of binomial/Poisson models.

References are computed here independently of the package's integration code:

- per level, ``scipy.integrate.quad`` (``dblquad`` for two effects per level) of
  ``prod p(y_i | eta_i) N(u; 0, D)`` with scipy's densities;
- the log evidence of one-factor random-intercept logistic models by quadrature: each
  level's effect by a fixed (non-adaptive) 40-node Gauss-Hermite rule on its prior
  ``N(0, sd^2)`` (40 and 100 nodes agree to 1e-6 on these data), then ``(beta, log sd)``
  by a tensor Gauss-Hermite grid centred at the posterior mode (BFGS) and scaled by the
  finite-difference Hessian there, with the model's own priors (``model.priors``) as
  scipy densities. On the simulated data, 12 and 16 nodes per dimension agree to 2e-4,
  on cbpp 8 and 10 to 3e-4.
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.integrate as si
import scipy.optimize as so
import scipy.stats as st
from scipy.special import gammaln, logsumexp

import bayeslmm as bl
from bayeslmm.bayes.evidence import glmm_log_density, glmm_space
from bayeslmm.bayes.glmm_marginal import (
    GroupRows,
    _log_joint,
    conditional_modes,
    integrate_levels,
)
from bayeslmm.bayes.loo import glmm_group_log_likelihood, group_log_likelihood
from bayeslmm.errors import ComparisonError

FIT = {"progressbar": False}
DATA = Path(__file__).parent / "data"


def _fit(model, draws=500, tune=500, seed=1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(draws=draws, tune=tune, chains=2, random_seed=seed, **FIT)
    return model


def _simulated(G=30, m=10, seed=1, slope=False):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), m)
    x = rng.normal(size=G * m)
    u = rng.normal(0.0, 0.8, (G, 2)) * [1.0, 0.5]
    eta = -0.3 + 0.7 * x + u[g, 0] + (u[g, 1] * x if slope else 0.0)
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


@pytest.fixture(scope="module")
def simulated():
    return _fit(bl.LMM("y ~ x + (1 | g)", _simulated(), family="bernoulli"))


@pytest.fixture(scope="module")
def cbpp():
    data = bl.load_dataset("cbpp")
    rhs = {"m1": "period + (1 | herd)", "m0": "1 + (1 | herd)"}
    return {name: _fit(bl.LMM(f"cbind(incidence, size - incidence) ~ {r}", data,
                              family="binomial"), seed=2)
            for name, r in rhs.items()}  # fmt: skip


@pytest.fixture(scope="module")
def slopes():
    return _fit(bl.LMM("y ~ x + (1 + x | g)", _simulated(seed=3, slope=True),
                       family="bernoulli"), draws=100, tune=200)  # fmt: skip


# -- independent references ------------------------------------------------------------------


def _prior_logpdf(prior, x):
    p = prior.params
    if prior.dist == "Normal":
        return st.norm.logpdf(x, p.get("mu", 0.0), p.get("sigma", 1.0))
    if prior.dist == "HalfNormal":
        return st.halfnorm.logpdf(x, scale=p.get("sigma", 1.0))
    raise NotImplementedError(prior.dist)


def _counts(model):
    r = model.response
    trials = np.round(np.asarray(r.weights, float)) * np.ones(model.design.n_obs)
    return np.round(np.asarray(r.y, float) * trials), trials


def _reference_logml(model, inner=40, outer=12):
    """log p(y) of a one-factor random-intercept logistic model by quadrature (module text)."""
    d = model.design
    X, block = np.asarray(d.X, float), d.blocks[0]
    k, trials = _counts(model)
    const = gammaln(trials + 1) - gammaln(k + 1) - gammaln(trials - k + 1)
    ind = np.zeros((d.n_obs, block.n_levels))
    ind[np.arange(d.n_obs), block.codes] = 1.0
    priors = [model.priors[name] for name in d.fixed_names]
    sd_prior = model.priors[f"sd((Intercept)|{block.group})"]
    t, w = np.polynomial.hermite.hermgauss(inner)

    def logpost(theta):
        theta = np.atleast_2d(theta)
        beta, lsd = theta[:, :-1], theta[:, -1]
        e = (beta @ X.T)[:, :, None] + math.sqrt(2) * np.exp(lsd)[:, None, None] * t
        ll = k[:, None] * e - trials[:, None] * np.logaddexp(0.0, e) + const[:, None]
        per = np.einsum("snk,ng->sgk", ll, ind)
        lg = logsumexp(per + np.log(w) - 0.5 * math.log(math.pi), axis=-1).sum(axis=1)
        lp = sum(_prior_logpdf(pr, beta[:, j]) for j, pr in enumerate(priors))
        return lg + lp + _prior_logpdf(sd_prior, np.exp(lsd)) + lsd

    p = X.shape[1] + 1
    start = np.zeros(p)
    start[-1] = -0.5
    mode = so.minimize(lambda z: -logpost(z)[0], start, method="BFGS").x
    h, eye, H = 1e-3, np.eye(p), np.zeros((p, p))
    for i in range(p):
        for j in range(p):
            a, b = eye[i] * h, eye[j] * h
            H[i, j] = (logpost(mode + a + b)[0] - logpost(mode + a - b)[0]
                       - logpost(mode - a + b)[0] + logpost(mode - a - b)[0]) / (4 * h * h)
    C = np.linalg.cholesky(np.linalg.inv(-H))
    tt, ww = np.polynomial.hermite.hermgauss(outer)
    grid = np.stack(np.meshgrid(*[tt] * p, indexing="ij"), -1).reshape(-1, p)
    lw = np.stack(np.meshgrid(*[np.log(ww)] * p, indexing="ij"), -1).reshape(-1, p).sum(1)
    pts = mode + math.sqrt(2) * grid @ C.T
    f = np.concatenate([logpost(pts[i : i + 2000]) for i in range(0, len(pts), 2000)])
    return (np.linalg.slogdet(C)[1] + 0.5 * p * math.log(2)
            + logsumexp(lw + np.sum(grid**2, axis=1) + f))  # fmt: skip


def _log_normal2(D):
    """log N([a, b]; 0, D) as a fast closure (dblquad calls it many times)."""
    inv, (_, logdet) = np.linalg.inv(D), np.linalg.slogdet(D)
    c = -math.log(2 * math.pi) - 0.5 * logdet

    def f(a, b):
        return c - 0.5 * (inv[0, 0] * a * a + 2 * inv[0, 1] * a * b + inv[1, 1] * b * b)

    return f


def _quad_level(eta0, z, k, trials, sd, code=1):
    """log of the integral over one level's scalar effect, by scipy.integrate.quad."""

    def f(u):
        eta = eta0 + z * u
        if code == 1:
            p = 1.0 / (1.0 + np.exp(-eta))
        elif code == 2:
            p = st.norm.cdf(eta)
        elif code == 3:
            p = -np.expm1(-np.exp(eta))
        if code == 4:
            ll = st.poisson.logpmf(k, np.exp(eta)).sum()
        else:
            ll = st.binom.logpmf(k, trials, p).sum()
        return math.exp(ll + st.norm.logpdf(u, 0.0, sd))

    val, _ = si.quad(f, -40, 40, points=[0.0], epsabs=0, epsrel=1e-12, limit=500)
    return math.log(val)


class _Response:
    def __init__(self, family, link, y, weights):
        self.family = type("F", (), {"name": family,
                                     "link": type("L", (), {"name": link})})()  # fmt: skip
        self.y, self.weights, self.offset = y, weights, np.zeros(len(y))


# -- the per-level integrals -------------------------------------------------------------------


@pytest.mark.parametrize("family,link,code", [("binomial", "logit", 1), ("binomial", "probit", 2),
                                              ("binomial", "cloglog", 3),
                                              ("poisson", "log", 4)])  # fmt: skip
def test_agq_level_matches_quad(family, link, code):
    rng = np.random.default_rng(code)
    G, m = 4, 6
    codes = np.repeat(np.arange(G), m)
    n = len(codes)
    if code <= 3:
        trials = rng.integers(1, 6, n).astype(float)
        k = rng.binomial(trials.astype(int), 0.4).astype(float)
        y = k / trials
    else:
        trials = np.ones(n)
        k = y = rng.poisson(2.0, n).astype(float)
    z = rng.normal(size=n) + 1.0
    rows = GroupRows.build(_Response(family, link, y, trials), z[:, None], codes, G)
    eta0 = rng.normal(0.0, 0.5, (3, n))
    sd = np.array([0.3, 1.0, 2.5])
    done = integrate_levels(rows, eta0, sd[:, None, None])
    assert done.method == "adaptive Gauss-Hermite quadrature" and done.nodes == 32
    assert done.error < 1e-4  # 16 against 32 nodes
    for s in range(3):
        for g in range(G):
            i = codes == g
            ref = _quad_level(eta0[s, i], z[i], k[i], trials[i], sd[s], code)
            assert done.values[s, g] == pytest.approx(ref, abs=1e-6)


def test_agq_two_effects_matches_dblquad():
    rng = np.random.default_rng(0)
    G, m = 3, 10
    codes = np.repeat(np.arange(G), m)
    n = len(codes)
    x = rng.normal(size=n)
    y = rng.binomial(1, 0.4, n).astype(float)
    rows = GroupRows.build(_Response("bernoulli", "logit", y, np.ones(n)),
                           np.c_[np.ones(n), x], codes, G)  # fmt: skip
    eta0 = rng.normal(0.0, 0.5, (2, n))
    L = np.array([[[0.5, 0.0], [-0.5, 1.2]], [[1.5, 0.0], [0.3, 0.4]]])
    done = integrate_levels(rows, eta0, L)
    assert done.q == 2 and "20^2 tensor-grid" in done.note()
    for s in range(2):
        prior = _log_normal2(L[s] @ L[s].T)
        for g in range(G):
            i = codes == g

            def f(b, a, i=i, s=s, prior=prior):
                eta = eta0[s, i] + a + b * x[i]
                ll = np.sum(y[i] * eta - np.logaddexp(0.0, eta))
                return math.exp(ll + prior(a, b))

            ref = math.log(si.dblquad(f, -12, 12, -12, 12, epsabs=1e-14, epsrel=1e-10)[0])
            assert done.values[s, g] == pytest.approx(ref, abs=1e-6)


def _laplace(rows, eta0, L):
    """Laplace's approximation of every level's log marginal (one AGQ node)."""
    e = eta0[:, rows.order]
    v, neg_h = conditional_modes(rows, e, L)
    return (_log_joint(rows, e, L, v) + 0.5 * rows.q * math.log(2 * math.pi)
            - 0.5 * np.linalg.slogdet(neg_h)[1])  # fmt: skip


@pytest.mark.parametrize("case", ["cbpp", "cbpp_agq10", "slopes"])
def test_levels_reproduce_lme4_loglik(case):
    """At lme4's optimum (tests/data/lme4_glmer.R), the summed levels give glmer's logLik:
    Laplace (nAGQ = 1) with all constants; with nAGQ = 10 lme4's deviance is relative to
    the saturated model, so its logLik is ours less the saturated log-likelihood."""
    ref = next(c for c in json.loads((DATA / "lme4_glmer.json").read_text())["cases"]
               if c["id"] == case)["tight"]  # fmt: skip
    if case == "slopes":
        data = pd.read_csv(DATA / "glmm_slopes.csv", dtype={"g": str})
        model = bl.LMM("y ~ x + (1 + x | g)", data, family="bernoulli")
    else:
        model = bl.LMM("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                       bl.load_dataset("cbpp"), family="binomial")  # fmt: skip
    d, block = model.design, model.design.blocks[0]
    rows = GroupRows.build(model.response, block.Z, block.codes, block.n_levels)
    beta = np.array([ref["fixef"][name] for name in d.fixed_names])
    theta = np.atleast_1d(ref["theta"])
    L = np.zeros((1, rows.q, rows.q))
    L[0, *np.tril_indices(rows.q)] = theta  # lme4's theta: the lower triangle by columns
    eta0 = (d.X @ beta)[None]
    if case == "cbpp_agq10":
        k, trials = _counts(model)
        saturated = st.binom.logpmf(k, trials, k / trials).sum()
        agq10 = integrate_levels(rows, eta0, L, nodes=5).values.sum()  # 5 and 10 nodes
        assert agq10 - saturated == pytest.approx(ref["logLik"], abs=1e-8)
    else:
        assert _laplace(rows, eta0, L).sum() == pytest.approx(ref["logLik"], abs=1e-6)


def test_importance_sampling_beyond_three_effects():
    rng = np.random.default_rng(4)
    G, m, q = 5, 30, 4
    codes = np.repeat(np.arange(G), m)
    n = len(codes)
    Z = np.c_[np.ones(n), rng.normal(size=(n, q - 1))]
    y = rng.binomial(1, 0.5, n).astype(float)
    rows = GroupRows.build(_Response("bernoulli", "logit", y, np.ones(n)), Z, codes, G)
    L = np.broadcast_to(0.5 * np.eye(q), (2, q, q))
    eta0 = np.zeros((2, n))
    done = integrate_levels(rows, eta0, L, rng=np.random.default_rng(1))
    assert done.method == "importance sampling" and done.ess_min > 500
    # against plain Monte Carlo from the prior N(0, D)
    u = rng.standard_normal((400_000, q)) * 0.5
    for g in range(2):
        i = codes == g
        eta = u @ Z[i].T
        ref = logsumexp(np.sum(y[i] * eta - np.logaddexp(0.0, eta), axis=1)) - math.log(len(u))
        assert done.values[0, g] == pytest.approx(ref, abs=max(4 * done.error, 0.01))


# -- the marginal likelihood -------------------------------------------------------------------


def test_log_prior_matches_compiled_laplace_density(simulated, slopes):
    """The bridge's prior and Jacobians equal the compiled density's: with one AGQ node
    (Laplace's approximation) the log density is the compiled Laplace marginal's."""
    for model in (simulated, slopes):
        space = glmm_space(model)
        pts = space.draws(model.idata.posterior, model.design).reshape(-1, space.dim)[:25]
        beta = pts[:, : space.layout.p]
        eta0 = (beta @ space.X.T + space.offset)[:, space.rows.order]
        L = space.factor_cholesky(pts)
        v, neg_h = conditional_modes(space.rows, eta0, L)
        h = _log_joint(space.rows, eta0, L, v)
        q = space.rows.q
        laplace = h + 0.5 * q * math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(neg_h)[1]
        ours = space.log_prior(pts) + laplace.sum(axis=1)
        compiled = model.laplace_density.logp_many(pts)
        np.testing.assert_allclose(ours, compiled, atol=1e-6)


def test_evidence_matches_quadrature_simulated(simulated):
    ml = simulated.log_marginal_likelihood(random_seed=1)
    ref = _reference_logml(simulated, outer=12)
    assert abs(ml.logml - ref) < 0.05
    assert 0 < ml.error < 0.05
    assert "adaptive Gauss-Hermite" in ml.density and "32 nodes" in ml.notes


def test_evidence_matches_quadrature_cbpp(cbpp):
    ml = cbpp["m1"].log_marginal_likelihood(random_seed=1)
    ref = _reference_logml(cbpp["m1"], outer=8)
    assert abs(ml.logml - ref) < 0.05
    bf = bl.bayes_factor(cbpp["m1"], cbpp["m0"], random_seed=1)
    m0 = cbpp["m0"].log_marginal_likelihood(random_seed=1)
    assert bf.log_bf == pytest.approx(ml.logml - m0.logml)
    assert bf.error == pytest.approx(math.hypot(ml.error, m0.error))


def test_evidence_refusals(cbpp):
    data = _simulated()
    data["h"] = np.tile(["a", "b", "c"], len(data) // 3)
    crossed = bl.LMM("y ~ x + (1 | g) + (1 | h)", data, family="bernoulli")
    crossed.idata = object()  # refused before the draws are read
    with pytest.raises(ComparisonError, match="one grouping factor"):
        glmm_space(crossed)
    with warnings.catch_warnings():  # a count response fitted as Gaussian, on purpose
        warnings.simplefilter("ignore")
        gaussian = bl.LMM("incidence ~ period + (1 | herd)", bl.load_dataset("cbpp"))
    with pytest.raises(ComparisonError, match="not fitted to the same response"):
        bl.bayes_factor(cbpp["m1"], gaussian)


# -- leave-one-group-out -----------------------------------------------------------------------


def _check_entries(model, values, others=(), code=1):
    """A few (draw, level) entries of the group log-likelihood against scipy's quad."""
    post = model.idata.posterior
    d = model.design
    block = next(b for b in d.blocks if b.group == values.dims[-1])
    k, trials = _counts(model)
    for c, s, g in [(0, 0, 0), (1, 7, 3), (0, 19, block.n_levels - 1)]:
        beta = post["beta"].values[c, s]
        eta0 = d.X @ beta + model.response.offset
        for other in others:
            u = post[f"u_{other.label}"].values[c, s][:, 0]
            eta0 = eta0 + u[other.codes] * other.Z[:, 0]
        i = block.codes == g
        sd = float(post[f"sd_{block.label}"].values[c, s][0])
        ref = _quad_level(eta0[i], block.Z[i, 0], k[i], trials[i], sd, code)
        assert float(values[c, s, g]) == pytest.approx(ref, abs=1e-6)


def test_loo_by_group_cbpp(cbpp):
    values = group_log_likelihood(cbpp["m1"])
    assert values.dims == ("chain", "draw", "herd")
    assert values.attrs["method"] == "adaptive Gauss-Hermite quadrature"
    assert values.attrs["error"] < 1e-4
    _check_entries(cbpp["m1"], values)
    cmp = bl.loo_compare(cbpp, by="group")
    assert cmp.unit == "herd" and list(cmp.table.index) == ["m1", "m0"]
    assert set(cmp.notes) == {"m1", "m0"} and "Gauss-Hermite" in cmp.notes["m1"]
    # by observation: each row's log-pmf given the draw's effects
    obs = bl.loo_compare(cbpp, by="observation")
    assert obs.unit == "observation" and not obs.notes


def test_loo_by_group_crossed_verbagg():
    data = bl.load_dataset("verbagg")
    model = _fit(bl.LMM("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", data,
                        family="bernoulli"), draws=25, tune=100)  # fmt: skip
    values = group_log_likelihood(model)
    assert values.dims[-1] == "id" and values.shape[-1] == 316
    assert values.attrs["conditional_on"] == "item"
    assert "given the draws of the other factors' effects (item)" in values.attrs["integration"]
    item = next(b for b in model.design.blocks if b.group == "item")
    _check_entries(model, values, others=[item])
    by_item = glmm_group_log_likelihood(model, "item")
    assert by_item.shape[-1] == 24 and by_item.attrs["conditional_on"] == "id"


def test_loo_by_group_poisson_offset_nested():
    """A Poisson model with an offset and nested factors: the inner factor (most levels,
    none nested in it) is left out given the outer factor's effects; the evidence, which
    needs one factor, is refused."""
    rng = np.random.default_rng(7)
    a = np.repeat(np.arange(6), 24)
    b = np.repeat(np.arange(36), 4)  # 6 levels of b within each level of a
    x, exposure = rng.normal(size=144), rng.uniform(0.5, 2.0, 144)
    eta = 0.2 + 0.3 * x + np.log(exposure) + rng.normal(0, 0.4, 6)[a] + rng.normal(0, 0.3, 36)[b]
    data = pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "exposure": exposure,
                         "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})  # fmt: skip
    model = _fit(bl.LMM("y ~ x + offset(log(exposure)) + (1 | a/b)", data, family="poisson"),
                 draws=100, tune=200)  # fmt: skip
    values = group_log_likelihood(model)
    inner = next(blk for blk in model.design.blocks if blk.n_levels == 36)
    outer = next(blk for blk in model.design.blocks if blk.n_levels == 6)
    assert values.dims[-1] == inner.group and values.attrs["conditional_on"] == outer.group
    _check_entries(model, values, others=[outer], code=4)
    with pytest.raises(ComparisonError, match="nested in"):
        glmm_group_log_likelihood(model, outer.group)
    with pytest.raises(ComparisonError, match="one grouping factor"):
        model.log_marginal_likelihood()


def test_loo_by_group_slopes(slopes):
    values = group_log_likelihood(slopes)
    assert "20^2 tensor-grid" in values.attrs["integration"]
    post, d = slopes.idata.posterior, slopes.design
    block = d.blocks[0]
    k, _ = _counts(slopes)
    c, s, g = 1, 5, 2
    chol = np.zeros((2, 2))
    chol[np.tril_indices(2)] = post["chol_g"].values[c, s]
    prior = _log_normal2(chol @ chol.T)
    eta0 = d.X @ post["beta"].values[c, s]
    i = block.codes == g
    Zg = block.Z[i]

    def f(b, a):
        eta = eta0[i] + Zg[:, 0] * a + Zg[:, 1] * b
        ll = np.sum(k[i] * eta - np.logaddexp(0.0, eta))
        return math.exp(ll + prior(a, b))

    ref = math.log(si.dblquad(f, -15, 15, -15, 15, epsabs=1e-14, epsrel=1e-10)[0])
    assert float(values[c, s, g]) == pytest.approx(ref, abs=1e-6)
    intercepts = _fit(bl.LMM("y ~ x + (1 | g)", _simulated(seed=3, slope=True),
                             family="bernoulli"), draws=100, tune=200)  # fmt: skip
    res = bl.loo_compare({"slopes": slopes, "intercepts": intercepts}, by="group")
    assert res.unit == "g" and len(res.notes) == 2


def test_glmm_log_density_is_vectorised(simulated):
    space = glmm_space(simulated)
    pts = space.draws(simulated.idata.posterior, simulated.design).reshape(-1, space.dim)[:6]
    together, _ = glmm_log_density(space, pts)
    one_by_one = [glmm_log_density(space, p[None])[0][0] for p in pts]
    np.testing.assert_allclose(together, one_by_one, rtol=0, atol=1e-9)
