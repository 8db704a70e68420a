"""Crossed and multi-level designs: the blocked Cholesky's marginal likelihood, its gradient,
exact draws and posterior against dense linear algebra and the explicit model."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import scipy.stats
import xarray as xr

import bayeslmm as bl
from bayeslmm.bayes import stack
from bayeslmm.bayes.effects import draw_random_effects
from bayeslmm.bayes.sbc import run_sbc
from bayeslmm.gaussian import blocked
from bayeslmm.gaussian.blocked import BlockedSystem, choose_explicit
from bayeslmm.gaussian.profiled import BlockedProfile, ThetaLayout, profiled
from bayeslmm.gaussian.statistics import BlockedStats, CrossProducts

DATA = Path(__file__).parent / "data"
DESIGNS = [
    ("rt ~ S + P + (1 | subj) + (1 | item)", ()),
    ("rt ~ S + P + (1 + S | subj) + (1 + S | item)", ()),
    ("rt ~ S + (1 + S + P || subj) + (1 + S | item) + (1 | site)", ()),  # crossed and nested
    ("rt ~ S + P + (1 + S | subj) + (1 + S | item)", ("item",)),  # items sampled
    ("rt ~ S + (1 | subj) + (1 + S | item) + (1 | site)", ("item", "site")),
]


@pytest.fixture(scope="module")
def crossed():
    """24 subjects x 16 items (2x2x2 within), subjects nested in 3 sites."""
    return pd.read_csv(DATA / "crossed_small.csv", dtype={"subj": str, "item": str, "site": str})


def _random_factors(design, stats, rng):
    """A random covariance factor per grouping factor (block diagonal over its blocks)."""
    chols = {}
    for factor in stats.factors:
        mats = []
        for k in factor.blocks:
            block = design.blocks[k]
            q = block.n_terms
            c = 3.0 * np.tril(rng.normal(size=(q, q))) + 12.0 * np.eye(q)
            mats.append(c if block.correlated else np.diag(np.diag(c)))
        chols[factor.group] = scipy.linalg.block_diag(*mats)
    return chols


def _node_columns(design, stats):
    """Z (n x Q) in the node numbering of ``stats``."""
    Z = np.zeros((design.n_obs, stats.n_effects))
    for factor in stats.factors:
        cols = np.hstack([design.blocks[k].Z for k in factor.blocks])
        codes = design.blocks[factor.blocks[0]].codes
        starts = stats.offset[factor.first + codes]
        for c in range(factor.q):
            Z[np.arange(design.n_obs), starts + c] = cols[:, c]
    return Z


@pytest.mark.parametrize("cross", ["dense", "blocks"])
@pytest.mark.parametrize(("formula", "explicit"), DESIGNS)
def test_marginal_loglik_is_the_dense_normal_and_its_gradient_exact(
    crossed, formula, explicit, cross, monkeypatch
):
    """log N(y | X beta + Z_E u_E, sigma^2 I + Z_M D Z_M') to 1e-10, every derivative to
    central differences; the cross table between sampled and integrated-out effects kept
    dense or block by block."""
    monkeypatch.setattr(blocked, "CROSS_DENSE_FILL", 0.0 if cross == "dense" else 2.0)
    design = bl.build_design(formula, crossed)
    stats = BlockedStats.from_design(design, explicit)
    system = BlockedSystem(stats)
    expected = system.n_explicit_effects if cross == "dense" and system.n_marginal_effects else 0
    assert system.cross_dense.shape[0] == expected
    rng = np.random.default_rng(len(formula))
    chols = _random_factors(design, stats, rng)
    sigma, beta = 30.0, rng.normal(600, 20, design.X.shape[1])
    uE = rng.normal(0, 10, system.n_explicit_effects)
    T = system.factor_stack([chols[f.group] / sigma for f in stats.factors])
    loglik, dT, dbeta, dsigma, duE = system.marginal_loglik(T, beta, sigma, uE)
    Z = _node_columns(design, stats)
    QM = system.n_marginal_effects
    D = scipy.linalg.block_diag(*[np.kron(np.eye(f.n_levels), chols[f.group] @ chols[f.group].T)
                                  for f in stats.factors if f.group not in explicit])  # fmt: skip
    V = Z[:, :QM] @ D @ Z[:, :QM].T + sigma**2 * np.eye(design.n_obs)
    mean = design.X @ beta + Z[:, QM:] @ uE
    exact = scipy.stats.multivariate_normal(mean, V).logpdf(design.y)
    assert loglik == pytest.approx(exact, rel=1e-10)

    def value(T=T, beta=beta, sigma=sigma, uE=uE):
        return system.marginal_loglik(T, beta, sigma, uE, grad=False)[0]

    h = 1e-5
    for f, factor in enumerate(stats.factors):
        if factor.group in explicit:
            continue
        for a, c in zip(*np.nonzero(T[f]), strict=True):
            step = np.zeros_like(T)
            step[f, a, c] = h
            numeric = (value(T=T + step) - value(T=T - step)) / (2 * h)
            assert dT[f, a, c] == pytest.approx(numeric, rel=1e-5, abs=1e-6)
    for i in range(len(beta)):
        e = np.eye(len(beta))[i] * h
        assert dbeta[i] == pytest.approx((value(beta=beta + e) - value(beta=beta - e)) / (2 * h),
                                         rel=1e-5, abs=1e-7)  # fmt: skip
    for i in rng.choice(len(uE), min(5, len(uE)), replace=False) if len(uE) else []:
        e = np.eye(len(uE))[i] * h
        assert duE[i] == pytest.approx((value(uE=uE + e) - value(uE=uE - e)) / (2 * h),
                                       rel=1e-5, abs=1e-7)  # fmt: skip
    assert dsigma == pytest.approx((value(sigma=sigma + h) - value(sigma=sigma - h)) / (2 * h),
                                   rel=1e-5)  # fmt: skip


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("formula", [DESIGNS[1][0], DESIGNS[2][0]])
def test_profiled_deviance_and_gradient_on_crossed_designs(crossed, formula, reml):
    """The optimiser's criterion equals the fit's (one factorisation since issue 24; both
    against dense algebra in test_factorisation.py); its gradient is exact."""
    design = bl.build_design(formula, crossed)
    layout = ThetaLayout.from_design(design)
    profile = BlockedProfile(design, layout)
    theta = layout.start() + 0.3 * np.random.default_rng(2).random(layout.n_theta)
    dev, grad = profile(theta, reml)
    assert dev == pytest.approx(profiled(theta, CrossProducts.from_design(design), layout,
                                         reml).deviance, rel=1e-11)  # fmt: skip
    h = 1e-4  # the deviance is ~4000: smaller steps measure its rounding
    numeric = [(profile(theta + e, reml)[0] - profile(theta - e, reml)[0]) / (2 * h)
               for e in np.eye(len(theta)) * h]  # fmt: skip
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


def test_draws_follow_the_exact_conditional(crossed):
    """With items sampled, subjects' and sites' effects drawn given them: mean and SDs of
    the exact Gaussian conditional."""
    design = bl.build_design("rt ~ S + (1 | subj) + (1 + S | item) + (1 | site)", crossed)
    system = BlockedSystem(BlockedStats.from_design(design))
    n = 4000
    sd = {"subj": 15.0, "item": np.array([12.0, 6.0]), "site": 8.0}
    cor, sigma, beta = 0.3, 30.0, np.array([600.0, 25.0])
    post = xr.Dataset(
        {
            "beta": (("chain", "draw", "fixed"), np.broadcast_to(beta, (1, n, 2))),
            "sd_subj": (("chain", "draw", "subj_term"), np.full((1, n, 1), sd["subj"])),
            "sd_item": (("chain", "draw", "item_term"), np.broadcast_to(sd["item"], (1, n, 2))),
            "cor_item": (("chain", "draw", "item_cor"), np.full((1, n, 1), cor)),
            "sd_site": (("chain", "draw", "site_term"), np.full((1, n, 1), sd["site"])),
            "sigma": (("chain", "draw"), np.full((1, n), sigma)),
        },
        coords={"chain": [0], "draw": np.arange(n)},
    )
    draws = draw_random_effects(stack.from_datasets(posterior=post), design, system, random_seed=3)
    item_cov = np.outer(sd["item"], sd["item"]) * np.array([[1, cor], [cor, 1]])
    blocks = {"subj": np.array([[sd["subj"] ** 2]]), "item": item_cov,
              "site": np.array([[sd["site"] ** 2]])}  # fmt: skip
    Z = np.hstack([np.stack([b.Z[:, c] * (b.codes == lvl) for lvl in range(b.n_levels)
                             for c in range(b.n_terms)], axis=1)
                   for b in design.blocks])  # fmt: skip
    D = scipy.linalg.block_diag(*[np.kron(np.eye(b.n_levels), blocks[b.group])
                                  for b in design.blocks])  # fmt: skip
    V = Z @ D @ Z.T + sigma**2 * np.eye(design.n_obs)
    K = D @ Z.T @ np.linalg.inv(V)
    mean = K @ (design.y - design.X @ beta)
    cond_sd = np.sqrt(np.diag(D - K @ Z @ D))
    ours = np.concatenate([draws[f"u_{b.label}"].values[0].reshape(n, -1) for b in design.blocks],
                          axis=1)  # fmt: skip
    z = (ours.mean(axis=0) - mean) / (cond_sd / np.sqrt(n))
    assert np.max(np.abs(z)) < 4.5
    np.testing.assert_allclose(ours.std(axis=0, ddof=1), cond_sd, rtol=0.07)


def test_crossed_fit_agrees_with_the_explicit_model_and_checks_out(crossed, quiet_fit):
    m, f = (quiet_fit(bl.LMM("rt ~ S + P + (1 | subj) + (1 | item)", crossed), draws=500,
                      tune=500, chains=2, random_seed=6, method=method)
            for method in ("marginal", "full"))  # fmt: skip
    assert m._fit_info["log_density"] == "bayeslmm (numba)"
    assert set(m.idata.posterior.data_vars) >= {"u_subj", "u_item", "z_subj", "z_item"}
    sm, sf = m.summary(print_it=False), f.summary(print_it=False)
    for name in sm.index:
        assert abs(sm.loc[name, "mean"] - sf.loc[name, "mean"]) < 0.35 * sf.loc[name, "sd"], name
    for group in ("subj", "item"):
        diff = np.abs(m.ranef()[group]["mean"] - f.ranef()[group]["mean"]) / f.ranef()[group]["sd"]
        assert diff.max() < 0.4, group
    assert m.convergence.divergences == 0 and m.convergence.max_rhat < 1.02
    assert m.predict(crossed.head(4)).shape == (2, 500, 4)


def test_sampled_factors_are_chosen_by_the_dense_block_and_sampled_right(crossed, quiet_fit):
    """A factor whose integration would need a large dense block is sampled; the fit still
    returns every block's u and z, and its posterior is the fully integrated one's."""
    design = bl.build_design("rt ~ S + P + (1 + S + P | subj) + (1 + S + P | item)", crossed)
    assert choose_explicit(design, dense_max=64) == ()  # 16 items x 3 terms = 48 rows
    assert choose_explicit(design, dense_max=32) == ("item",)
    fits = {}
    for explicit in ((), ("item",)):
        model = bl.LMM("rt ~ S + P + (1 | subj) + (1 + S | item)", crossed)
        model._explicit = explicit
        fits[explicit] = quiet_fit(model, draws=600, tune=600, chains=2, random_seed=8)
    both, sampled = fits[()], fits[("item",)]
    assert sampled.blocked_system.n_explicit_effects == 32
    assert set(both.idata.posterior.data_vars) == set(sampled.idata.posterior.data_vars)
    sa, sb = both.summary(print_it=False), sampled.summary(print_it=False)
    se = np.sqrt(sa["mcse_mean"] ** 2 + sb["mcse_mean"] ** 2)
    assert np.all(np.abs(sa["mean"] - sb["mean"]) < 5 * se + 0.05 * sa["sd"])


def test_sbc_of_a_crossed_model():
    """Simulation-based calibration of y ~ x + (1 | g) + (1 | h), g x h crossed (the full
    run is benchmarks/sbc.py --models crossed)."""
    result = run_sbc(40, slope=False, groups=6, crossed=5, draws=49, seed=11)
    assert result.ranks.shape == (40, 5)
    pvals = result.uniformity(bins=4)["p_value"]
    assert (pvals > 0.001).all(), pvals
