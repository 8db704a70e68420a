"""The compiled GLMM density (:mod:`bayeslmm.bayes.row_likelihood` behind
:mod:`bayeslmm.bayes.density`) against PyMC's graph (:mod:`bayeslmm.bayes.glm_graph`): the
log density at random points for every family and link, centred and non-centred, one
factor and crossed, signed SDs and correlated terms; the gradient against central
differences; and a fit on cbpp against ``method="full"`` (the graph) within Monte Carlo
error."""

from __future__ import annotations

import importlib.metadata
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.special as sc
from glm_density_checks import assert_exact_gradient, glm_density, pymc_point

import bayeslmm as bl
from bayeslmm.bayes import stack
from bayeslmm.bayes.density import _lkj_log_constant, unpack
from bayeslmm.bayes.sampling import quiet_pymc

DATA = Path(__file__).parent / "data"
PYMC_5 = int(importlib.metadata.version("pymc").split(".")[0]) < 6
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def cbpp() -> pd.DataFrame:
    d = pd.read_csv(DATA / "cbpp.csv")
    return d.assign(herd=d.herd.astype("category"), period=d.period.astype("category"))


def simulated(family: str, seed: int = 5) -> pd.DataFrame:
    """12 levels of g crossed with 8 of h, 3 rows per cell; a covariate x, and w, one
    value per level of g (a level's covariate)."""
    rng = np.random.default_rng(seed)
    g, h = np.meshgrid(np.arange(12), np.arange(8), indexing="ij")
    g, h = np.repeat(g.ravel(), 3), np.repeat(h.ravel(), 3)
    x = rng.normal(size=g.size)
    w = rng.normal(size=12)[g]
    eta = 0.3 * w + 0.2 + 0.6 * x + rng.normal(0, 0.8, 12)[g] + rng.normal(0, 0.5, 8)[h]
    eta += rng.normal(0, 0.4, 12)[g] * x
    exposure = rng.uniform(0.5, 2.0, g.size)
    y = (rng.binomial(1, sc.expit(eta)) if family == "bernoulli"
         else rng.poisson(np.exp(eta) * exposure))  # fmt: skip
    return pd.DataFrame({"y": y, "x": x, "w": w, "g": g.astype(str), "h": h.astype(str),
                         "k": [f"{a}.{b % 4}" for a, b in zip(g, h, strict=True)],
                         "exposure": exposure})  # fmt: skip


CASES = [
    (CBPP, "binomial", "logit"), (CBPP, "binomial", "probit"), (CBPP, "binomial", "cloglog"),
    ("y ~ x + (1 | g) + (1 | h)", "bernoulli", "logit"),
    ("y ~ x + (1 | g) + (1 | h)", "bernoulli", "probit"),
    ("y ~ x + offset(log(exposure)) + (1 | g) + (1 | h)", "poisson", "log"),
    ("y ~ x + w + (1 | g) + (1 | h)", "bernoulli", "logit"),
    ("y ~ x + w + (1 | g) + (1 | k)", "bernoulli", "logit"),
    ("y ~ x + offset(log(exposure)) + (1 | g) + (1 | k) + (1 | h)", "poisson", "log"),
]  # fmt: skip


def _model(formula, family, link, parametrization="noncentered"):
    data = cbpp() if family == "binomial" else simulated(family)
    return bl.LMM(formula, data, family=family, link=link, parametrization=parametrization)


@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize(("formula", "family", "link"), CASES)
def test_log_density_equals_the_pymc_graphs(formula, family, link, centred):
    """Where both sample the same coordinates up to maps with unit Jacobian (log SDs;
    effects non-centred as z, or centred through the level-mean basis, with the fixed
    effect shifted), the compiled log density is the graph's, with the jacobian, to 1e-8;
    a signed SD (``sd = |x|``) has half the density on each side and no Jacobian."""
    model = _model(formula, family, link, "centered" if centred else "noncentered")
    signed = not centred
    density = glm_density(model, centred, signed)
    assert density.layout.level_mean_basis and not density.layout.has_sigma
    with quiet_pymc():
        logp = model.pymc_model.compile_logp(jacobian=True)
    rng = np.random.default_rng(7)
    for _ in range(4):
        x = density.start + 0.6 * rng.normal(size=density.start.size)
        ours, _ = density.logp_grad(x)
        values = density.constrained(x, model.design)
        theirs = float(logp(pymc_point(model, values, centred)))
        if signed:  # PyMC's log-SD Jacobian and the two halves of |x|
            theirs -= sum(np.log(2.0) + np.log(values[f"sd_{b.label}"]).sum()
                          for b in model.design.blocks)  # fmt: skip
        assert np.isfinite(ours)
        assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-8)


def _log_jacobian(transform, x, h=1e-6):
    cols = [(transform(x + e) - transform(x - e)) / (2 * h) for e in np.eye(x.size) * h]
    return np.linalg.slogdet(np.column_stack(cols))[1]


@pytest.mark.parametrize("flags", [(False, False), (True, False), (False, True), (True, True),
                                   "whitened"])  # fmt: skip
def test_correlated_term_equals_the_graph_through_the_change_of_variables(flags):
    """``(1 + x | g)``, each term centred or not, or whitened (the default): our SDs and
    canonical partial correlations against PyMC's packed LKJ Cholesky factor, compared in
    the coordinates both share (beta, SDs, correlation, z) with each side's log Jacobian
    by central differences (a centred term's map to z, or the whitening's, included)."""
    from bayeslmm.bayes.density import MarginalDensity

    model = _model("y ~ x + (1 + x | g)", "bernoulli", "logit")
    if flags == "whitened":
        density = model.compiled_density
        assert density.layout.whitened == frozenset({0})
    else:
        density = MarginalDensity.from_glm(model.design, model.response, model.priors,
                                           model.blocked_system, {"g": flags}, None, None,
                                           model._pooled[0], None)  # fmt: skip
    graph = model.pymc_model
    with quiet_pymc():
        logp = graph.compile_logp(jacobian=True)
    design = model.design
    p, levels = design.X.shape[1], design.blocks[0].n_levels
    names = [v.name for v in graph.value_vars]

    def ours_common(x):
        v = density.constrained(x, design)
        return np.concatenate([v["beta"], v["sd_g"], v["cor_g"], v["z_g"].ravel()])

    def their_point(flat):
        sizes = {"beta": p, "chol_g_cholesky-cov-packed__": 3, "z_g": 2 * levels}
        out, at = {}, 0
        for name in names:
            out[name] = flat[at : at + sizes[name]]
            at += sizes[name]
        out["z_g"] = out["z_g"].reshape(levels, 2)
        return out

    def their_common(flat):
        point = their_point(flat)
        packed = point["chol_g_cholesky-cov-packed__"]  # L00, L10, L11; log diagonal
        L = np.array([[np.exp(packed[0]), 0.0], [packed[1], np.exp(packed[2])]])
        cov = L @ L.T
        sd = np.sqrt(np.diag(cov))
        return np.concatenate([point["beta"], sd, [cov[1, 0] / (sd[0] * sd[1])],
                               point["z_g"].ravel()])  # fmt: skip

    rng = np.random.default_rng(3)
    offsets = []
    for _ in range(3):
        x = density.start + 0.5 * rng.normal(size=density.start.size)
        ours, _ = density.logp_grad(x)
        v = density.constrained(x, design)
        packed = v["chol_g"].copy()
        packed[[0, 2]] = np.log(packed[[0, 2]])
        flat = np.concatenate([v["beta"], packed, v["z_g"].ravel()])
        theirs = float(logp(their_point(flat)))
        ours -= _log_jacobian(ours_common, x)
        theirs -= _log_jacobian(their_common, flat)
        if PYMC_5:  # its LKJ constant's sign is inverted (density._lkj_log_constant)
            theirs += 2.0 * _lkj_log_constant(1.0, 2)
        offsets.append(ours - theirs)
    assert np.ptp(offsets) < 1e-5
    assert abs(offsets[0]) < 1e-5 * abs(theirs)


@pytest.mark.parametrize(("formula", "family", "link", "centred"), [
    *[(f, fam, link, False) for f, fam, link in CASES],
    (CBPP, "binomial", "cloglog", True),
    ("y ~ x + w + (1 | g) + (1 | h)", "bernoulli", "logit", True),
    ("y ~ x + w + (1 | g) + (1 | k)", "bernoulli", "logit", True),
    ("y ~ x + offset(log(exposure)) + (1 | g) + (1 | k) + (1 | h)", "poisson", "log", True),
    ("y ~ x + offset(log(exposure)) + (1 | g) + (1 | h)", "poisson", "log", True),
    ("y ~ x + (1 + x | g) + (1 | h)", "bernoulli", "logit", None),
])  # fmt: skip
def test_gradient_is_the_log_densitys(formula, family, link, centred):
    """Exact gradient against central differences; ``centred=None``: the model's own
    choice per term (here the correlated term's slope and intercept may differ)."""
    model = _model(formula, family, link)
    density = (model.compiled_density if centred is None
               else glm_density(model, centred, signed=not centred))  # fmt: skip
    assert_exact_gradient(density)


@pytest.mark.parametrize("flags", [(False, False), (True, False), (False, True), (True, True)])
def test_two_term_factor_gradient_for_every_centring(flags):
    """``(1 + x | g)`` with g's covariate w carried and h crossed, each of g's terms
    centred or not (the kernel's unrolled two-term pass): exact gradient."""
    from bayeslmm.bayes.density import MarginalDensity

    model = _model("y ~ x + w + (1 + x | g) + (1 | h)", "poisson", "log")
    density = MarginalDensity.from_glm(model.design, model.response, model.priors,
                                       model.blocked_system, {"g": flags, "h": (True,)},
                                       {"g": (False, True), "h": (False,)}, None,
                                       model._pooled[0], None)  # fmt: skip
    assert_exact_gradient(density)


def test_a_levels_covariate_is_carried_by_its_centred_intercept():
    """w is constant within g's levels: g's centred intercepts sample beta_0 + w beta_w +
    u (carry_matrix), the chains start at u = 0, and the map back gives u itself."""
    model = _model("y ~ x + w + (1 | g) + (1 | h)", "bernoulli", "logit", "centered")
    density = glm_density(model, centred=True)
    carry = unpack(density.data)["carry"]
    w_column = model.design.fixed_names.index("w")
    groups = [f.group for f in model.blocked_system.stats.factors]
    sampled = density.layout.sampled_factor(groups.index("g"))
    rows = sampled.first + sampled.q * np.arange(sampled.levels)
    levels = model.design.blocks[[b.group for b in model.design.blocks].index("g")]
    w_of_level = pd.Series(model.design.X[:, w_column]).groupby(levels.codes).first()
    np.testing.assert_array_equal(carry[rows, w_column], w_of_level.to_numpy())
    assert np.count_nonzero(carry) == sampled.levels  # nothing else carried
    start = density.constrained(density.start, model.design)
    np.testing.assert_allclose(start["u_g"], 0.0, atol=1e-12)
    np.testing.assert_allclose(start["beta"], model._pooled[0], atol=1e-12)


def test_nested_levels_are_centred_around_their_parents():
    """k's levels lie within g's: centred, each k level's value is sampled around its g
    level's value (nested_parents); the chains start at u = 0 and g alone varies around
    the intercept."""
    model = _model("y ~ x + w + (1 | g) + (1 | k)", "bernoulli", "logit", "centered")
    density = glm_density(model, centred=True)
    parent = unpack(density.data)["parent"]
    groups = [f.group for f in model.blocked_system.stats.factors]
    k, g = (density.layout.sampled_factor(groups.index(n)) for n in ("k", "g"))
    design = model.design
    k_block, g_block = (design.blocks[[b.group for b in design.blocks].index(n)]
                        for n in ("k", "g"))  # fmt: skip
    expected = np.empty(k.levels)
    expected[k_block.codes] = g.first + g_block.codes
    np.testing.assert_array_equal(parent[k.first + np.arange(k.levels)], expected)
    assert np.all(parent[g.first + np.arange(g.levels)] == -1)
    start = density.constrained(density.start, design)
    np.testing.assert_allclose(start["u_k"], 0.0, atol=1e-12)
    np.testing.assert_allclose(start["u_g"], 0.0, atol=1e-12)
    np.testing.assert_allclose(start["beta"], model._pooled[0], atol=1e-12)


@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_nested_levels_centred_around_a_non_centred_parents_effect(family):
    """k's levels lie within g's; k centred, g not (its SD signed): each k level's value is
    sampled around the intercept, its carried w and its g level's effect ``u_g = sd_g
    z_g`` (nested_parents). The log density is the non-centred graph's with the
    Jacobian ``-log sd_k`` per k level (and the signed SD's two halves), the gradient
    exact, and the chains start at u = 0."""
    from bayeslmm.bayes.density import MarginalDensity

    formula = ("y ~ x + w + (1 | g) + (1 | k)" if family == "bernoulli"
               else "y ~ x + w + offset(log(exposure)) + (1 | g) + (1 | k) + (1 | h)")
    model = _model(formula, family, "logit" if family == "bernoulli" else "log")
    groups = [f.group for f in model.blocked_system.stats.factors]
    flags = {g: (g == "k",) for g in groups}
    signs = {g: (g == "g",) for g in groups}
    density = MarginalDensity.from_glm(model.design, model.response, model.priors,
                                       model.blocked_system, flags, signs, None,
                                       model._pooled[0], None)  # fmt: skip
    fields = unpack(density.data)
    k, g = (density.layout.sampled_factor(groups.index(n)) for n in ("k", "g"))
    design = model.design
    blocks = {b.group: b for b in design.blocks}
    expected = np.empty(k.levels)
    expected[blocks["k"].codes] = g.first + blocks["g"].codes
    np.testing.assert_array_equal(fields["parent"][k.first + np.arange(k.levels)], expected)
    assert density.layout.shift[design.blocks.index(blocks["k"])] == (0,)  # the intercept
    with quiet_pymc():
        logp = model.pymc_model.compile_logp(jacobian=True)
    rng = np.random.default_rng(11)
    for _ in range(4):
        x = density.start + 0.6 * rng.normal(size=density.start.size)
        ours, _ = density.logp_grad(x)
        values = density.constrained(x, design)
        theirs = float(logp(pymc_point(model, values, centred=False)))
        theirs -= np.log(2.0) + np.log(values["sd_g"]).sum()
        theirs -= k.levels * np.log(values["sd_k"]).sum()
        assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-8)
        np.testing.assert_allclose(values["u_k"], values["z_k"] * values["sd_k"], rtol=1e-10)
    assert_exact_gradient(density)
    start = density.constrained(density.start, design)
    for n in ("g", "k"):
        np.testing.assert_allclose(start[f"u_{n}"], 0.0, atol=1e-12)
    np.testing.assert_allclose(start["beta"], model._pooled[0], atol=1e-12)


@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
@pytest.mark.parametrize(("partial", "g_centred"), [
    (("k",), False), (("k",), True), (("g",), False), (("g", "k", "h"), False),
])  # fmt: skip
def test_levels_centred_one_by_one(family, partial, g_centred):
    """Factors of one term centred level by level (``level_centring``; Layout.
    level_centred): the listed factors have a random half of their levels centred (a
    parent g among them: its children k read its levels' effects, not their values), the
    others wholly centred (k, h) or not (g, unless ``g_centred``: then k's centred levels
    vary around their g level's value). The log density is the non-centred graph's
    with ``-log sd`` per centred level, the gradient exact, the chains start at u = 0,
    and the map back gives ``u = sd z``."""
    from bayeslmm.bayes.density import MarginalDensity

    formula = ("y ~ x + w + (1 | g) + (1 | k)" if family == "bernoulli"
               else "y ~ x + w + offset(log(exposure)) + (1 | g) + (1 | k) + (1 | h)")
    model = _model(formula, family, "logit" if family == "bernoulli" else "log")
    stats = model.blocked_system.stats
    groups = [f.group for f in stats.factors]
    rng = np.random.default_rng(3)
    levels = {}
    for f in stats.factors:
        if f.group in partial:
            flags = rng.random(f.n_levels) < 0.5
            flags[:2] = (True, False)
            levels[f.group] = flags
    centred = {g: (g != "g" or g_centred,) for g in groups}
    density = MarginalDensity.from_glm(model.design, model.response, model.priors,
                                       model.blocked_system, centred, None, None,
                                       model._pooled[0], None, levels)  # fmt: skip
    lay = density.layout
    blocks = {b.group: b for b in model.design.blocks}
    for g in groups:
        sampled = lay.sampled_factor(groups.index(g))
        assert lay.by_level(sampled, 0) == (g in partial)
    # g, wholly centred, carries the intercept for k; centred level by level or not, not
    assert lay.shift[model.design.blocks.index(blocks["k"])] == ((-1,) if g_centred else (0,))
    assert not lay.owners or all(g not in partial for g in
                                 (groups[f] for f, _ in lay.owners.values()))  # fmt: skip
    counts = {g: (int(levels[g].sum()) if g in levels else
                  (0 if not centred[g][0] else lay.sampled_factor(groups.index(g)).levels))
              for g in groups}  # fmt: skip
    with quiet_pymc():
        logp = model.pymc_model.compile_logp(jacobian=True)
    for _ in range(4):
        x = density.start + 0.6 * rng.normal(size=density.start.size)
        ours, _ = density.logp_grad(x)
        values = density.constrained(x, model.design)
        theirs = float(logp(pymc_point(model, values, centred=False)))
        theirs -= sum(counts[g] * np.log(values[f"sd_{g}"]).sum() for g in groups)
        assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-8)
        for g in groups:
            np.testing.assert_allclose(values[f"u_{g}"], values[f"z_{g}"] * values[f"sd_{g}"],
                                       rtol=1e-10)  # fmt: skip
    assert_exact_gradient(density)
    start = density.constrained(density.start, model.design)
    for g in groups:
        np.testing.assert_allclose(start[f"u_{g}"], 0.0, atol=1e-12)
    np.testing.assert_allclose(start["beta"], model._pooled[0], atol=1e-12)


def test_extreme_linear_predictors_stay_finite():
    """Stable log-pmfs far out on the link scale (log1pexp, the normal cdf's log through
    erfc and its asymptotic series, cloglog's log(-expm1(-e^eta)))."""
    for link in ("logit", "probit", "cloglog"):
        model = _model(CBPP, "binomial", link)
        density = glm_density(model, centred=False)
        for shift in (-40.0, 30.0):
            x = density.start.copy()
            x[0] = shift  # the intercept
            value, grad = density.logp_grad(x)
            assert np.isfinite(value) and np.all(np.isfinite(grad)), (link, shift)


FIT = {"draws": 300, "tune": 300, "chains": 2, "random_seed": 3, "progressbar": False}


def test_cbpp_compiled_fit_agrees_with_the_graph():
    """The default fit runs nutpie on the compiled density, ``method="full"`` the PyMC
    graph; same variables, and posterior means within Monte Carlo error."""
    fits = {}
    for method in (None, "full"):
        model = bl.LMM(CBPP, cbpp(), family="binomial")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bl.ConvergenceWarning)
            model.fit(method=method, sampler="nutpie", **FIT)
        fits[method] = model
    compiled, graph = fits[None], fits["full"]
    assert compiled.fit_info.log_density == "bayeslmm (numba)"
    assert graph.fit_info.log_density == "PyMC graph"
    assert compiled.fit_info.method == graph.fit_info.method == "full"
    a, b = stack.posterior(compiled.idata), stack.posterior(graph.idata)
    assert {"beta", "sd_herd", "u_herd"} <= set(a.data_vars)
    assert "sigma" not in a
    for name in ("beta", "sd_herd", "u_herd"):
        assert a[name].dims == b[name].dims
        assert a[name].shape[2:] == b[name].shape[2:]
    assert stack.has_group(compiled.idata, "observed_data")
    name = compiled.design.response
    np.testing.assert_array_equal(stack.group(compiled.idata, "observed_data")[name].values,
                                  stack.group(graph.idata, "observed_data")[name].values)
    for name in ("beta", "sd_herd"):
        x, y = a[name].values, b[name].values
        x, y = x.reshape(-1, *x.shape[2:]), y.reshape(-1, *y.shape[2:])
        # Monte Carlo SE from ~100 effective draws each (ESS here is 150-700)
        se = np.sqrt((x.var(0) + y.var(0)) / 100.0)
        assert np.all(np.abs(x.mean(0) - y.mean(0)) < 4 * se), name
    assert compiled.convergence.divergences == 0
    # the log-likelihood group and predictions work on the compiled fit's posterior
    assert compiled.predict(kind="mean").shape[-1] == 56


def test_graph_samplers_fall_back_to_the_graph():
    """``sampler="pymc"`` with ``method=None`` samples the PyMC graph."""
    model = bl.LMM(CBPP, cbpp(), family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.ConvergenceWarning)
        model.fit(draws=30, tune=30, chains=1, sampler="pymc", random_seed=1,
                  progressbar=False)  # fmt: skip
    assert model.fit_info.sampler == "pymc" and model.fit_info.log_density == "PyMC graph"


def test_jittered_starts_keep_a_log_link_finite():
    """A chain's jitter of a fixed effect is scaled by its predictor's SD: uniform(-1, 1) on
    grouseticks' centred-height coefficient (SD 20) put exp(eta) near 1e34 and a chain
    stalled at a step size of 1e-236 (seed 2 on PyMC 6); now every start's gradient is
    moderate, and the intercept and dummies keep PyMC's jitter of width 1."""
    data = bl.load_dataset("grouseticks")
    model = bl.LMM("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                   data, family="poisson")  # fmt: skip
    density = model.compiled_density
    p = model.design.X.shape[1]
    starts = np.array([density.jittered_start(np.random.default_rng(s)) for s in range(500)])
    widths = np.ptp(starts[:, :p], axis=0) / 2
    sd = model.design.X.std(axis=0)
    np.testing.assert_allclose(widths, np.minimum(1.0, 1.0 / np.maximum(sd, 1e-12)), rtol=0.02)
    grads = np.array([density.logp_grad(x)[1] for x in starts])
    assert np.isfinite(grads).all() and np.abs(grads).max() < 1e10


def _assert_equals_the_graph(model, density, draws: int, scale: float, seed: int) -> None:
    """At ``draws`` points around the start, a whitened density's log density is the
    non-centred graph's with the map's Jacobian, ``-1/2 sum log(1 + sd^2 d)`` over each
    factor's levels, and ``u = sd z`` back."""
    table = unpack(density.data)["whiten"]
    lay = density.layout
    with quiet_pymc():
        logp = model.pymc_model.compile_logp(jacobian=True)
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        x = density.start + scale * rng.normal(size=density.start.size)
        ours, _ = density.logp_grad(x)
        values = density.constrained(x, model.design)
        theirs = float(logp(pymc_point(model, values, centred=False)))
        for block, sampled in zip(model.design.blocks, lay.explicit, strict=True):
            sd = values[f"sd_{block.label}"][0]
            rows = sampled.first + np.arange(sampled.levels)
            theirs -= 0.5 * np.log1p(sd * sd * table[rows, 0]).sum()
            np.testing.assert_allclose(values[f"u_{block.label}"],
                                       values[f"z_{block.label}"] * sd, rtol=1e-10)  # fmt: skip
        assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-8)


WHITENED = [
    (CBPP, "binomial", "logit"), (CBPP, "binomial", "cloglog"), (CBPP, "binomial", "probit"),
    ("cbind(incidence, size - incidence) ~ 0 + (1 | herd)", "binomial", "logit"),
    ("y ~ x + w + offset(log(exposure)) + (1 | g)", "poisson", "log"),
    ("y ~ x + (0 + x | g)", "bernoulli", "logit"),
]  # fmt: skip


@pytest.mark.parametrize(("formula", "family", "link"), WHITENED)
def test_whitened_effects_are_exact(formula, family, link):
    """A model whose one grouping factor has one term has its effects whitened
    (Layout.whitened: ``u = m + s x``): the log density is the non-centred graph's with
    the map's Jacobian, ``sum(log s) - levels log sd = -1/2 sum log(1 + sd^2 d)``, the
    gradient exact, ``u = sd z`` back; at the first stage's estimates ``x = 0`` is its
    conditional mode; the term counts as not centred and shifts no fixed effect."""
    from bayeslmm.bayes.density import _whitened_effects

    model = _model(formula, family, link)
    density = model.compiled_density
    label = model.design.blocks[0].label
    assert density.layout.whitened == frozenset({0}) and density.layout.shift == ((-1,),)
    assert model.whitened_terms == {"g" if "g" in formula else "herd":
                                    tuple(model.design.blocks[0].columns)}  # fmt: skip
    assert model.centred_terms == {label: ()}
    table = unpack(density.data)["whiten"]
    _assert_equals_the_graph(model, density, draws=4, scale=0.6, seed=11)
    assert_exact_gradient(density)
    state = model._stage_one.state
    sd_hat = state.T[0, 0, 0]
    mode = _whitened_effects(table, np.zeros(len(table)), state.beta, np.array([sd_hat]))
    np.testing.assert_allclose(mode, sd_hat * state.u, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_nested_factors_are_whitened_top_down(family):
    """grouseticks' observations in broods in locations: every factor whitened, each
    level's effect around its ancestors' sum (a brood's location effect; an
    observation's brood and location effects). The log density is the non-centred
    graph's with the Jacobian, the gradient exact (through the ancestors' sums too), and
    ``x = 0`` at the first stage's estimates gives its joint mode, factor by factor."""
    from bayeslmm.bayes.density import _whitened_effects

    data = bl.load_dataset("grouseticks")
    formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"
    model = bl.LMM(formula, data, family=family)
    density = model.compiled_density
    groups = [f.group for f in model.blocked_system.stats.factors]
    assert groups == ["INDEX", "BROOD", "LOCATION"]
    assert density.layout.whitened == frozenset({0, 1, 2})
    assert model.centred_terms == {g: () for g in groups}
    assert set(model.whitened_terms) == set(groups)
    table = unpack(density.data)["whiten"]
    lay = density.layout
    first = {g: lay.sampled_factor(i).first for i, g in enumerate(groups)}
    blocks = {b.group: b for b in model.design.blocks}
    brood_of = np.empty(blocks["INDEX"].n_levels, int)
    brood_of[blocks["INDEX"].codes] = blocks["BROOD"].codes
    np.testing.assert_array_equal(table[first["INDEX"] + np.arange(len(brood_of)), 2],
                                  first["BROOD"] + brood_of)  # fmt: skip
    assert (table[first["LOCATION"]:, 2] == -1).all()
    _assert_equals_the_graph(model, density, draws=3, scale=0.4, seed=5)
    assert_exact_gradient(density)
    # x = 0 at the first stage's estimates: its mode (lme4's u, in formula order)
    state = model._stage_one.state
    sd_hat = dict(zip(groups, state.T[:, 0, 0], strict=True))
    mode, at = {}, 0
    for block in model.design.blocks:
        mode[block.group] = sd_hat[block.group] * state.u[at : at + block.n_levels]
        at += block.n_levels
    above = {"LOCATION": 0.0}
    level_parent = np.empty(blocks["BROOD"].n_levels, int)
    level_parent[blocks["BROOD"].codes] = blocks["LOCATION"].codes
    above["BROOD"] = mode["LOCATION"][level_parent]
    above["INDEX"] = mode["BROOD"][brood_of] + above["BROOD"][brood_of]
    for g in groups:
        rows = first[g] + np.arange(blocks[g].n_levels)
        u0 = _whitened_effects(table[rows], np.zeros(len(rows)), state.beta,
                               np.array([sd_hat[g]]), above[g])  # fmt: skip
        np.testing.assert_allclose(u0, mode[g], rtol=1e-6, atol=1e-8, err_msg=g)


def test_whitened_fits_alone_take_the_whitened_target_accept():
    """WHITENED_TARGET_ACCEPT is the default where the fit samples whitened effects; the
    PyMC graph (``method="full"``, another sampler) and the Laplace density keep 0.9."""
    from bayeslmm.bayes.glm_model import WHITENED_TARGET_ACCEPT

    model = _model(CBPP, "binomial", "logit")
    assert model.default_target_accept == WHITENED_TARGET_ACCEPT == 0.8
    assert model._route_target_accept(model.compiled_density) == 0.8
    assert model._route_target_accept(None) == 0.9
    assert model._route_target_accept(model.laplace_density) == 0.9


@pytest.mark.parametrize(("formula", "family", "link"), [
    ("y ~ x + (1 + x | g)", "bernoulli", "logit"),
    ("y ~ x + (1 + x | g)", "bernoulli", "probit"),
    ("y ~ w + offset(log(exposure)) + (1 + x | g)", "poisson", "log"),
    ("y ~ x + w + (1 + x + exposure | g)", "bernoulli", "logit"),
    ("y ~ 0 + (1 + x | g)", "bernoulli", "logit"),
    ("y ~ x + (1 + x || g)", "bernoulli", "logit"),
])  # fmt: skip
def test_correlated_terms_are_whitened(formula, family, link):
    """A model whose one grouping factor has correlated terms has its effects whitened
    level by level (Layout.whitened: ``u = L z``, ``z = K^-T (K^-1 L'(e - B beta) + x)``,
    ``K K' = I + L' H L``): the gradient is exact (through L's Cholesky factor and the
    correlations), and ``x = 0`` at the first stage's estimates is its conditional mode,
    lme4's ``b = T u`` level by level; the terms count as not centred, shift no fixed
    effect and are not signed."""
    from bayeslmm.bayes.density import _whitened_vector_effects

    model = _model(formula, family, link)
    density = model.compiled_density
    block = model.design.blocks[0]
    q, n = block.n_terms, block.n_levels
    assert density.layout.whitened == frozenset({0})
    assert density.layout.shift == ((-1,) * q,) and not any(density.signed)
    assert model.whitened_terms == {"g": tuple(block.columns)}
    assert model.centred_terms == {block.label: ()}
    assert_exact_gradient(density)
    state = model._stage_one.state
    table = unpack(density.data)["whiten"].reshape(n, q, -1)
    z, u = _whitened_vector_effects(table, np.zeros((n, q)), state.beta, state.T[0])
    np.testing.assert_allclose(u, state.u.reshape(n, q) @ state.T[0].T, rtol=1e-8,
                               atol=1e-10)  # fmt: skip
    np.testing.assert_allclose(u, z @ state.T[0].T, rtol=1e-12)


@pytest.mark.parametrize("formula", ["y ~ x + (1 + x | g)",
                                     "y ~ w + offset(log(exposure)) + (1 + x + exposure | g)"])
def test_whitening_is_the_non_centred_density_by_a_change_of_variables(formula):
    """Without PyMC: the whitened log density at x equals the non-centred compiled one at
    the same (beta, SDs, correlations, z), less ``sum log det(I + L'HL) / 2`` (numpy's,
    from the table), to 1e-10; the effects read back 300 draws at a time
    (``WHITEN_CHUNK``) equal those read draw by draw."""
    from bayeslmm.bayes.density import WHITEN_CHUNK, MarginalDensity

    family = "poisson" if "exposure" in formula else "bernoulli"
    model = _model(formula, family, None)
    density = model.compiled_density
    lay, block = density.layout, model.design.blocks[0]
    q, n, p, label = block.n_terms, block.n_levels, lay.p, block.label
    assert lay.whitened == frozenset({0})
    plain = MarginalDensity.from_glm(model.design, model.response, model.priors,
                                     model.blocked_system, {"g": (False,) * q}, None, None,
                                     model._pooled[0], None)  # fmt: skip
    H = unpack(density.data)["whiten"].reshape(n, q, -1)[..., 3 + p : 3 + p + q]
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = density.start + 0.5 * rng.normal(size=density.start.size)
        values = density.constrained(x, model.design)
        at = x.copy()
        at[lay.effects :] = values[f"z_{label}"].ravel()
        at[:p] = values["beta"]
        for i, column in enumerate(plain.layout.shift[0]):  # beta_k + mean u (not centred)
            if column >= 0:
                at[column] += values[f"u_{label}"][:, i].mean()
        L = np.zeros((q, q))
        L[np.tril_indices(q)] = values[f"chol_{label}"]
        log_det = 0.5 * np.linalg.slogdet(np.eye(q) + L.T @ H @ L)[1].sum()
        assert density.logp_grad(x)[0] == pytest.approx(plain.logp_grad(at)[0] - log_det,
                                                        rel=1e-12, abs=1e-10)  # fmt: skip
    draws = density.start + 0.3 * rng.normal(size=(3, 100, density.start.size))
    assert draws.shape[0] * draws.shape[1] > WHITEN_CHUNK
    together = density.constrained(draws, model.design)[f"u_{label}"]
    one = np.array([[density.constrained(d, model.design)[f"u_{label}"] for d in chain]
                    for chain in draws])  # fmt: skip
    np.testing.assert_allclose(together, one, rtol=1e-12, atol=1e-14)


def test_a_glmm_without_fixed_effects_fits():
    """``y ~ 0 + (1 + x | g)``: whitened, fitted, its pointwise log-likelihood and
    predictions made without a beta."""
    model = _model("y ~ 0 + (1 + x | g)", "bernoulli", "logit")
    assert model.whitened_terms
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(draws=200, tune=200, chains=2, random_seed=1, progressbar=False,
                  store_log_likelihood=True)  # fmt: skip
    assert model.fit_info.log_density == "bayeslmm (numba)"
    assert np.isfinite(model.predict(kind="mean")).all()


def test_fits_centring_every_term_take_the_whitened_target_accept():
    """Crossed factors whose every term is centred (the compiled density's own choice)
    sample at WHITENED_TARGET_ACCEPT too; a non-centred term, or the PyMC graph, keeps the
    rest of the rule."""
    model = _model("y ~ x + (1 | g) + (1 | h)", "poisson", "log")
    model.__dict__["_centred"] = {"g": (True,), "h": (True,)}
    assert model.whitened_terms == {} and not model._level_centred
    assert model.default_target_accept == 0.8
    assert model._route_target_accept(model.compiled_density) == 0.8
    assert model._route_target_accept(None) == 0.9
    model.__dict__["_centred"] = {"g": (True,), "h": (False,)}
    assert model.default_target_accept == 0.9
    assert model._route_target_accept(model.compiled_density) == 0.9


def test_several_factors_are_not_whitened():
    """Whitening needs a level's estimate given the fixed effects alone: not with crossed
    factors, nor several terms beside another factor or in several blocks."""
    for formula in ("y ~ x + (1 | g) + (1 | h)", "y ~ x + (1 + x | g) + (1 | h)",
                    "y ~ x + (1 | g) + (0 + x | g)"):  # fmt: skip
        model = _model(formula, "bernoulli", "logit")
        assert model.whitened_terms == {} and not model.compiled_density.layout.whitened
