"""The marginal sampler: exact likelihood, exact random-effect draws, same output."""

import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.linalg
import scipy.stats
import xarray as xr

import bayeslmm as bl
from bayeslmm.bayes import stack
from bayeslmm.bayes.effects import draw_random_effects
from bayeslmm.bayes.marginal_graph import marginal_loglik, nested_marginal_loglik
from bayeslmm.bayes.sbc import run_sbc
from bayeslmm.gaussian.blocked import BlockedSystem
from bayeslmm.gaussian.statistics import (
    BlockedStats,
    GroupStats,
    NestedStats,
    random_effects_matrix,
)


def _dense_cov(design, chol_level, sigma):
    """Marginal covariance Z D Z' + sigma^2 I with D = blockdiag over levels."""
    Z = random_effects_matrix(design).toarray()
    G = design.blocks[0].n_levels
    # the sparse layout orders block k's columns level-major; rebuild D in that order
    D_blocks, start = [], 0
    D_level = chol_level @ chol_level.T
    for block in design.blocks:
        k = block.n_terms
        D_blocks.append(np.kron(np.eye(G), D_level[start : start + k, start : start + k]))
        start += k
    D = scipy.linalg.block_diag(*D_blocks)
    # cross-block covariances (same factor, several blocks) are zero: blocks are independent
    return Z @ D @ Z.T + sigma**2 * np.eye(design.n_obs)


@pytest.mark.parametrize(
    "formula",
    ["Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (Days || Subject)",
     "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", "Reaction ~ 1 + (1 | Subject)"],
)  # fmt: skip
def test_marginal_loglik_is_the_multivariate_normal_density(sleepstudy, formula):
    design = bl.build_design(formula, sleepstudy)
    stats = GroupStats.from_design(design)
    q, p = stats.q, stats.p
    rng = np.random.default_rng(0)
    chol = np.tril(rng.normal(size=(q, q))) + 5 * np.eye(q)
    if len(design.blocks) > 1 or not design.blocks[0].correlated:
        chol = np.diag(np.diag(chol))  # independent terms
    beta, sigma = rng.normal(250, 10, size=p), 23.0
    T, b, s = pt.matrix("T"), pt.vector("b"), pt.scalar("s")
    f = pytensor.function([T, b, s], marginal_loglik(T, b, s, stats))
    ours = f(chol / sigma, beta, sigma)
    V = _dense_cov(design, chol, sigma)
    exact = scipy.stats.multivariate_normal(design.X @ beta, V).logpdf(design.y)
    assert ours == pytest.approx(exact, rel=1e-10)


def test_random_effect_draws_follow_the_exact_conditional(sleepstudy):
    """At fixed parameters, u draws have the mean and covariance of p(u | y, params)."""
    design = bl.build_design("Reaction ~ Days + (Days | Subject)", sleepstudy)
    sd, cor, sigma, beta = np.array([25.0, 6.0]), 0.1, 25.0, np.array([251.0, 10.5])
    n = 4000
    post = xr.Dataset(
        {
            "beta": (("chain", "draw", "fixed"), np.broadcast_to(beta, (1, n, 2))),
            "sd_Subject": (("chain", "draw", "Subject_term"), np.broadcast_to(sd, (1, n, 2))),
            "cor_Subject": (("chain", "draw", "Subject_cor"), np.full((1, n, 1), cor)),
            "sigma": (("chain", "draw"), np.full((1, n), sigma)),
        },
        coords={"chain": [0], "draw": np.arange(n)},
    )
    system = BlockedSystem(BlockedStats.from_design(design))
    draws = draw_random_effects(stack.from_datasets(posterior=post), design, system, random_seed=1)
    u = draws["u_Subject"].values[0]  # (n, G, 2)
    # exact conditional of all random effects: D Z'V^-1 r, D - D Z'V^-1 Z D
    D_level = np.array([[sd[0] ** 2, cor * sd[0] * sd[1]], [cor * sd[0] * sd[1], sd[1] ** 2]])
    Z = random_effects_matrix(design).toarray()  # single block: level-major (level, term)
    G = design.blocks[0].n_levels
    D = np.kron(np.eye(G), D_level)
    V = Z @ D @ Z.T + sigma**2 * np.eye(design.n_obs)
    K = D @ Z.T @ np.linalg.inv(V)
    mean = (K @ (design.y - design.X @ beta)).reshape(G, 2)
    cov = D - K @ Z @ D
    sd_cond = np.sqrt(np.diag(cov)).reshape(G, 2)
    z = (u.mean(axis=0) - mean) / (sd_cond / np.sqrt(n))
    assert np.max(np.abs(z)) < 4.5
    np.testing.assert_allclose(u.std(axis=0, ddof=1), sd_cond, rtol=0.06)
    # within-level correlation of intercept and slope
    emp = np.corrcoef(u[:, 0, 0], u[:, 0, 1])[0, 1]
    exact = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    assert emp == pytest.approx(exact, abs=0.06)
    # z is the standardised effect: u = diag(sd) chol(R) z
    zdraw = draws["z_Subject"].values[0]
    assert abs(zdraw.mean()) < 0.05 and zdraw.std() == pytest.approx(1.0, rel=0.05)


@pytest.fixture(scope="module")
def both_fits(sleepstudy, quiet_fit):
    return {method: quiet_fit(bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy),
                              draws=500, tune=500, chains=2, random_seed=4, method=method)
            for method in ("marginal", "full")}  # fmt: skip


def test_marginal_output_has_the_full_models_variables(both_fits):
    marginal, full = both_fits["marginal"].idata, both_fits["full"].idata
    for group in ("posterior", "log_likelihood", "observed_data"):
        ours, theirs = marginal[group], full[group]
        shared = set(theirs.data_vars) - {"chol_Subject"}  # packed factor: both have it
        assert shared <= set(ours.data_vars), group
        for name in shared:
            assert ours[name].dims == theirs[name].dims, name
            for dim in ours[name].dims[2:] if group != "observed_data" else ours[name].dims:
                assert list(ours[name][dim].values) == list(theirs[name][dim].values)


def test_marginal_agrees_with_full_and_downstream_works(both_fits, sleepstudy):
    m, f = both_fits["marginal"], both_fits["full"]
    sm, sf = m.summary(print_it=False), f.summary(print_it=False)
    for name in sm.index:
        assert abs(sm.loc[name, "mean"] - sf.loc[name, "mean"]) < 0.35 * sf.loc[name, "sd"], name
    rm, rf = m.ranef()["Subject"], f.ranef()["Subject"]
    assert np.max(np.abs(rm["mean"] - rf["mean"]) / rf["sd"]) < 0.35
    pred = m.predict(sleepstudy.head(5))
    assert pred.shape == (2, 500, 5)
    assert m.posterior_predictive(random_seed=1).posterior_predictive["Reaction"].shape[-1] == 180
    assert m.convergence.divergences == 0


def test_crossed_design_is_marginal_and_a_model_without_random_effects_full(ratpup):
    model = bl.LMM("weight ~ litsize + (1 | litter) + (1 | sex)", ratpup)  # sex within litters
    assert model.marginal_supported
    assert model._resolve_method(None) == "marginal"
    with pytest.raises(ValueError, match="method"):
        model._resolve_method("laplace")


@pytest.mark.parametrize("slope", [False, True], ids=["intercept", "slope"])
def test_sbc_small(slope):
    """Small SBC runs of both models with fit's default sampler; the full ones are in
    benchmarks/sbc.py."""
    result = run_sbc(40, slope=slope, groups=6, per_group=5, draws=49, seed=7)
    assert result.ranks.shape == (40, 6 if slope else 4)
    assert ((result.ranks >= 0) & (result.ranks <= 49)).all().all()
    pvals = result.uniformity(bins=4)["p_value"]
    # up to 6 parameters: a calibrated sampler fails this at 0.001 with probability < 0.6%
    assert (pvals > 0.001).all(), pvals


@pytest.mark.parametrize("sampler", ["numpyro", "nutpie"])
def test_marginal_with_other_samplers(both_fits, sleepstudy, sampler):
    model = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.ConvergenceWarning)
        model.fit(draws=300, tune=300, chains=2, random_seed=5, progressbar=False,
                  sampler=sampler)  # fmt: skip
    assert model._fit_info["method"] == "marginal"
    reference = both_fits["marginal"].idata.posterior
    assert set(model.idata.posterior.data_vars) == set(reference.data_vars)
    ours, ref = model.summary(print_it=False), both_fits["full"].summary(print_it=False)
    for name in ref.index:  # same posterior as the explicit model, within MC error
        assert abs(ours.loc[name, "mean"] - ref.loc[name, "mean"]) < 0.5 * ref.loc[name, "sd"]
    assert model.convergence.divergences == 0


# --- two nested factors ------------------------------------------------------------


@pytest.fixture(scope="module")
def ratpup_x(ratpup):
    return ratpup.assign(x=np.random.default_rng(0).normal(size=len(ratpup)))


def _random_chols(design, rng):
    chols = []
    for block in design.blocks:
        k = block.n_terms
        c = 0.2 * np.tril(rng.normal(size=(k, k))) + 0.5 * np.eye(k)
        chols.append(c if block.correlated else np.diag(np.diag(c)))
    return chols


def _factor(design, chols, group):
    return scipy.linalg.block_diag(
        *[c for c, b in zip(chols, design.blocks, strict=True) if b.group == group]
    )


def _dense_nested(design, chols, sigma):
    Z = random_effects_matrix(design).toarray()
    D = scipy.linalg.block_diag(
        *[np.kron(np.eye(b.n_levels), c @ c.T) for b, c in zip(design.blocks, chols, strict=True)]
    )
    return Z, D, Z @ D @ Z.T + sigma**2 * np.eye(design.n_obs)


@pytest.mark.parametrize(
    ("formula", "outer"),
    [
        ("weight ~ sex + (1 | treatment/litter)", "treatment"),
        ("weight ~ sex + (1 + x | treatment) + (1 + x | treatment:litter)", "treatment"),
        ("weight ~ sex + (1 | litter) + (1 | treatment)", "treatment"),  # nested by the data
        ("weight ~ sex + (1 | treatment) + (0 + x | treatment) + (x || treatment:litter)",
         "treatment"),
    ],
)  # fmt: skip
def test_nested_marginal_loglik_is_the_multivariate_normal_density(ratpup_x, formula, outer):
    design = bl.build_design(formula, ratpup_x)
    stats = NestedStats.from_design(design)
    assert stats.outer == outer
    rng = np.random.default_rng(1)
    chols, sigma = _random_chols(design, rng), 0.4
    beta = rng.normal(size=design.X.shape[1])
    TA, TB, b, s = pt.matrix("TA"), pt.matrix("TB"), pt.vector("b"), pt.scalar("s")
    f = pytensor.function([TA, TB, b, s], nested_marginal_loglik(TA, TB, b, s, stats))
    ours = f(_factor(design, chols, stats.outer) / sigma, _factor(design, chols, stats.inner)
             / sigma, beta, sigma)  # fmt: skip
    _, _, V = _dense_nested(design, chols, sigma)
    exact = scipy.stats.multivariate_normal(design.X @ beta, V).logpdf(design.y)
    assert ours == pytest.approx(exact, rel=1e-10)


def test_nested_random_effect_draws_follow_the_exact_conditional(ratpup):
    design = bl.build_design("weight ~ sex + (1 | treatment/litter)", ratpup)
    stats = NestedStats.from_design(design)
    sd_t, sd_l, sigma, beta = 0.3, 0.35, 0.4, np.array([6.0, 0.35])
    n = 4000
    post = xr.Dataset(
        {
            "beta": (("chain", "draw", "fixed"), np.broadcast_to(beta, (1, n, 2))),
            "sd_treatment": (("chain", "draw", "treatment_term"), np.full((1, n, 1), sd_t)),
            "sd_treatment:litter": (("chain", "draw", "treatment:litter_term"),
                                    np.full((1, n, 1), sd_l)),
            "sigma": (("chain", "draw"), np.full((1, n), sigma)),
        },
        coords={"chain": [0], "draw": np.arange(n)},
    )  # fmt: skip
    system = BlockedSystem(BlockedStats.from_design(design))
    draws = draw_random_effects(stack.from_datasets(posterior=post), design, system, random_seed=2)
    u = np.concatenate([draws["u_treatment"].values[0, :, :, 0],
                        draws["u_treatment:litter"].values[0, :, :, 0]], axis=1)  # fmt: skip
    chols = [np.array([[sd_t]]), np.array([[sd_l]])]
    Z, D, V = _dense_nested(design, chols, sigma)
    K = D @ Z.T @ np.linalg.inv(V)
    mean = K @ (design.y - design.X @ beta)
    cov = D - K @ Z @ D
    sd = np.sqrt(np.diag(cov))
    z = (u.mean(axis=0) - mean) / (sd / np.sqrt(n))
    assert np.max(np.abs(z)) < 4.5
    np.testing.assert_allclose(u.std(axis=0, ddof=1), sd, rtol=0.06)
    # the treatment effect and its litters' effects are correlated a posteriori
    first_litter = 3 + int(np.flatnonzero(stats.parent == 0)[0])
    emp = np.corrcoef(u[:, 0], u[:, first_litter])[0, 1]
    assert emp == pytest.approx(cov[0, first_litter] / (sd[0] * sd[first_litter]), abs=0.06)


def test_nested_marginal_fit_agrees_with_full(ratpup):
    fits = {}
    for method in ("marginal", "full"):
        model = bl.LMM("weight ~ sex + litsize + (1 | treatment/litter)", ratpup)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bl.ConvergenceWarning)
            model.fit(draws=400, tune=400, chains=2, random_seed=6, progressbar=False,
                      method=method, target_accept=0.95)  # fmt: skip
        assert model._fit_info["method"] == method
        fits[method] = model
    m, f = fits["marginal"], fits["full"]
    assert set(m.idata.posterior.data_vars) >= set(f.idata.posterior.data_vars)
    sm, sf = m.summary(print_it=False), f.summary(print_it=False)
    for name in sm.index:
        assert abs(sm.loc[name, "mean"] - sf.loc[name, "mean"]) < 0.4 * sf.loc[name, "sd"], name
    rm, rf = m.ranef(), f.ranef()
    for group in ("treatment", "treatment:litter"):
        diff = np.abs(rm[group]["mean"] - rf[group]["mean"]) / rf[group]["sd"]
        assert diff.max() < 0.4, group
    assert m.convergence.divergences == 0
