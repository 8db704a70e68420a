"""Sampled grouping factors, term by term centred or not, and SDs sampled signed or on the
log scale: the compiled density's maps, their gradients, and the rules that choose
(two-stage moments, from sums alone)."""

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayeslmm as bl
from bayeslmm.bayes.density import MarginalDensity, level_mean_basis
from bayeslmm.bayes.evidence import unconstrained_draws

DATA = Path(__file__).parent / "data"
FORMULA = "rt ~ S + (1 | subj) + (1 + S + P | item)"
LABEL = "item"


@pytest.fixture(scope="module")
def crossed():
    return pd.read_csv(DATA / "crossed_small.csv", dtype={"subj": str, "item": str, "site": str})


def _model(data, formula=FORMULA):
    model = bl.LMM(formula, data)
    model._explicit = ("item",)
    return model


def _density(model, flags):
    return MarginalDensity.from_model(model.design, model.priors, model.blocked_system,
                                      {"item": flags})  # fmt: skip


def _posterior(draws):
    """``MarginalDensity.constrained``'s draws (chain, draw, ...) as a posterior Dataset."""
    return xr.Dataset({k: (("chain", "draw", *[f"{k}_{i}" for i in range(v.ndim - 2)]), v)
                       for k, v in draws.items()})  # fmt: skip


def _point(model, density, u, rng):
    """Our unconstrained point for given item effects ``u`` (levels, terms), and the log
    Jacobian ``log |du/dx|`` of its sampled part."""
    lay = density.layout
    x = np.zeros(lay.size)
    x[: lay.sigma + 1] = rng.normal(0, 0.3, lay.sigma + 1)
    x[: lay.p] = [600.0, 20.0][: lay.p]
    x[lay.sigma] = np.log(30.0)
    x[lay.starts[1] : lay.starts[1] + 3] = np.log([25.0, 10.0, 8.0])
    scale = density.constrained(x, model.design)
    sd, cor = scale[f"sd_{LABEL}"], scale[f"cor_{LABEL}"]
    full = np.eye(3)
    full[np.tril_indices(3, -1)] = cor
    full = full + np.tril(full, -1).T
    lam = np.diag(sd) @ np.linalg.cholesky(full)
    z = np.linalg.solve(lam, u.T).T
    v_first, q, levels, centred = lay.explicit[1]
    values = np.empty_like(u)
    log_jac = 0.0
    beta = x[: lay.p].copy()
    for a in range(q):
        column = lay.shift[1][a]  # the fixed effect the term varies around (or -1)
        if centred[a] and column >= 0:  # sampled: H (beta_k + u), beta_k less their mean
            centred_values = u[:, a] + beta[column]
            if lay.owners[column] == (lay.factors[1], a):
                x[column] -= centred_values.mean()
            values[:, a] = level_mean_basis(centred_values)
        elif centred[a]:
            values[:, a] = u[:, a]
        else:
            if column >= 0:
                x[column] += u[:, a].mean()  # sampled: beta_k + mean of u
            values[:, a] = z[:, a]
            log_jac += levels * np.log(lam[a, a])
    x[lay.sigma + 1 + v_first :] = values.ravel()
    return x, log_jac, z


def test_every_centring_is_the_same_posterior_and_its_gradient_exact(crossed):
    """log p(x_C) - log|du/dx_C| is one function of (beta, SDs, u) whatever terms C are
    centred, and the gradient of each parametrisation is its log density's; the draws map
    back to the same unconstrained point."""
    model = _model(crossed)
    rng = np.random.default_rng(4)
    u = rng.normal(0, 1, (16, 3)) * [25.0, 10.0, 8.0]
    values, seen = [], set()
    for flags in itertools.product([False, True], repeat=3):
        density = _density(model, flags)
        lay = density.layout
        assert lay.explicit[1][3] == flags
        x, log_jac, z = _point(model, density, u, np.random.default_rng(4))
        logp, grad = density.logp_grad(x)
        values.append(logp - log_jac)
        out = density.constrained(x, model.design)
        np.testing.assert_allclose(out["beta"], [600.0, 20.0], rtol=1e-12)
        np.testing.assert_allclose(out[f"u_{LABEL}"], u, rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(out[f"z_{LABEL}"], z, rtol=1e-10, atol=1e-9)
        draws = density.constrained(x[None, None], model.design)  # and back again
        post = _posterior(draws)
        back = unconstrained_draws(lay, post, model.design)[0, 0]
        np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)
        h = 1e-4  # the log density is about -3000: a smaller step meets its rounding
        for i in rng.choice(lay.size, 12, replace=False).tolist() + [0, 1]:
            if (i, flags) in seen:
                continue
            seen.add((i, flags))
            e = np.zeros(lay.size)
            e[i] = h
            numeric = (density.logp_grad(x + e)[0] - density.logp_grad(x - e)[0]) / (2 * h)
            assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-5), (flags, i)
    np.testing.assert_allclose(values, values[0], rtol=0, atol=1e-8)


def _simulated(intercept_sd, slope_sd, slope_scale=1.0, shift=0.0, seed=3):
    """40 subjects x 30 items, one row per pair, a within slope coded +-0.5 (times
    ``slope_scale``, plus ``shift``)."""
    rng = np.random.default_rng(seed)
    subj, item = np.meshgrid(np.arange(40), np.arange(30), indexing="ij")
    subj, item = subj.ravel(), item.ravel()
    x = ((subj + item) % 2) - 0.5
    ui = rng.normal(0, 1, (30, 2)) * [intercept_sd, slope_sd]
    y = (500 + 20 * x + rng.normal(0, 30, 40)[subj] + ui[item, 0] + ui[item, 1] * x
         + rng.normal(0, 50, len(x)))  # fmt: skip
    return pd.DataFrame({"y": y, "x": x * slope_scale + shift, "subj": subj.astype(str),
                         "item": item.astype(str)})  # fmt: skip


@pytest.mark.parametrize(("intercept_sd", "slope_sd", "expected"), [
    (40.0, 5.0, ("(Intercept)",)),  # 40 rows per item pin the intercepts, not the slopes
    (3.0, 5.0, ()),  # nothing pinned
    (40.0, 120.0, ("(Intercept)", "x")),  # slopes spread far more than their noise
])  # fmt: skip
def test_the_data_choose_which_terms_are_centred(intercept_sd, slope_sd, expected):
    formula = "y ~ x + (1 | subj) + (1 + x | item)"
    chosen = _model(_simulated(intercept_sd, slope_sd), formula).centred_terms
    assert chosen == {"item": expected}
    for scale in (1e-5, 10.0, 1e5):  # the choice does not depend on the slope's units
        rescaled = _model(_simulated(intercept_sd, slope_sd, slope_scale=scale), formula)
        assert rescaled.centred_terms == chosen, scale
    # nor does the slope's on an offset (raw calendar years): x moves the intercept only
    shifted = _model(_simulated(intercept_sd, slope_sd, shift=2015.0), formula)
    assert ("x" in shifted.centred_terms["item"]) == ("x" in expected)


def test_one_barely_estimable_level_does_not_decide():
    """A level whose slope its two rows hardly estimate weighs little (DerSimonian-Laird
    weights), instead of swamping the mean sampling variance."""
    data = _simulated(40.0, 120.0)
    odd = pd.DataFrame({"y": [480.0, 530.0], "x": [0.0, 0.002], "subj": ["0", "1"],
                        "item": ["odd", "odd"]})  # fmt: skip
    model = _model(pd.concat([data, odd], ignore_index=True), "y ~ x + (1 | subj) + (1 + x | item)")
    assert model.centred_terms == {"item": ("(Intercept)", "x")}


def test_centred_and_non_centred_fits_agree(crossed, quiet_fit):
    """Same posterior whatever the parametrisation, within Monte Carlo error: the chosen
    (item intercepts centred) with log SDs; all non-centred with every SD signed."""
    fits = []
    for centred, signed in (((True, False, False), False), ((False, False, False), True)):
        model = _model(crossed)
        model._centred = {"item": centred}
        model._signed = {"subj": (signed,), "item": (signed,) * 3}
        quiet_fit(model, draws=500, tune=500, chains=2, random_seed=2)
        assert model._fit_info["mass_matrix"] == "diagonal"  # items crossed with subjects
        assert sum(model.compiled_density.signed) == 4 * signed
        fits.append(model.summary(print_it=False))
    a, b = fits
    se = np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
    assert np.all(np.abs(a["mean"] - b["mean"]) < 5 * se + 0.05 * a["sd"])
    assert np.all(np.abs(a["sd"] - b["sd"]) < 0.25 * a["sd"])


def test_signed_sds_are_the_same_posterior(crossed):
    """With SDs signed (``sd = |x|``), of a factor integrated out and of a sampled one with
    a centred term: the density is the log-SD density through ``x -> log |x|`` (two to
    one: ``- log 2`` per SD), whichever signs; the posterior's values are those of the
    log-SD point (a negative SD's term flipped back), and the gradient is exact."""
    model = _model(crossed)
    rng = np.random.default_rng(7)
    for centred in ((True, False, False), (False, False, False)):
        signed = _density_signed(model, centred)
        assert sum(signed.signed) == 1 + 3 - sum(centred)  # subj + the item terms not centred
        plain = signed.with_log_sds()
        lay = signed.layout
        index = signed.signed_index
        for signs in ([1.0] * index.size, [-1.0] * index.size, rng.choice([-1.0, 1.0], index.size)):
            x, _, _ = _point(model, plain, rng.normal(0, 1, (16, 3)) * [25.0, 10.0, 8.0], rng)
            x[index] = np.exp(x[index]) * np.asarray(signs)
            values = signed.constrained(x, model.design)
            post = _posterior({k: v[None, None] for k, v in values.items()})
            x_log = unconstrained_draws(lay, post, model.design)[0, 0]
            expected = plain.logp_grad(x_log)[0] - np.log(np.abs(x[index])).sum()
            logp, grad = signed.logp_grad(x)
            assert logp == pytest.approx(expected - index.size * np.log(2.0), abs=1e-8)
            for name, value in plain.constrained(x_log, model.design).items():
                np.testing.assert_allclose(values[name], value, rtol=1e-9, atol=1e-9,
                                           err_msg=name)  # fmt: skip
            h = 1e-4  # the log density is about -3000: a smaller step meets its rounding
            for i in [*index.tolist(), *rng.choice(lay.size, 6, replace=False).tolist()]:
                e = np.zeros(lay.size)
                e[i] = h
                numeric = (signed.logp_grad(x + e)[0] - signed.logp_grad(x - e)[0]) / (2 * h)
                assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-5), (centred, i)


def _density_signed(model, centred):
    return MarginalDensity.from_model(model.design, model.priors, model.blocked_system,
                                      {"item": centred},
                                      {"subj": (True,), "item": (True,) * 3})  # fmt: skip


@pytest.mark.parametrize(("intercept_sd", "slope_sd", "expected"), [
    (40.0, 5.0, ("x",)),  # the slopes' spread is not told from zero; intercepts centred
    (3.0, 5.0, ("(Intercept)", "x")),  # nothing pinned, neither spread told from zero
    (40.0, 120.0, ()),  # both spreads far from zero
])  # fmt: skip
def test_the_data_choose_which_sds_are_signed(intercept_sd, slope_sd, expected):
    formula = "y ~ x + (1 | subj) + (1 + x | item)"
    model = _model(_simulated(intercept_sd, slope_sd), formula)
    assert model.signed_terms["item"] == expected
    assert not set(expected) & set(model.centred_terms["item"])
    for scale in (1e-5, 1e5):  # whatever the slope's units
        rescaled = _model(_simulated(intercept_sd, slope_sd, slope_scale=scale), formula)
        assert rescaled.signed_terms == model.signed_terms, scale
    exponential = bl.LMM(formula, _simulated(intercept_sd, slope_sd),
                         priors={"sd": bl.Prior("Exponential", lam=0.1)})  # fmt: skip
    assert exponential.signed_terms == {"subj": (), "item": ()}  # no smooth density at 0
    assert not any(exponential.compiled_density.signed)


def test_zero_probability_is_the_chi_square_tail():
    """A spread estimated at zero leaves zero about as likely as not; one far above the
    noise leaves it implausible however few the levels; a weak one in between."""
    from scipy.stats import chi2

    from bayeslmm.gaussian.statistics import LevelSpread

    spread = LevelSpread(np.array([0.0, -5.0, 100.0, 3.0]), np.array([4.0, 4.0, 1.0, 4.0]), 14)
    p = spread.zero_probability
    assert p[0] == p[1] == pytest.approx(chi2.cdf(13, 13))
    assert p[2] < 1e-8
    assert p[3] == pytest.approx(chi2.cdf(13 * 4 / 7, 13))


def test_sampled_levels_nested_in_an_integrated_factor_get_the_low_rank_mass_matrix():
    """Items nested in sites (sites integrated out, items sampled): each site's effect and
    its items' mean move together, which a diagonal mass matrix cannot follow; items
    crossed with subjects share no such direction (the common level is a coordinate of
    its own)."""
    data = _simulated(40.0, 5.0)
    data["site"] = (data["item"].astype(int) % 6).astype(str)
    data.loc[data["item"] == "0", "site"] = "extra"  # a site with one item holds nothing
    model = _model(data, "y ~ x + (1 | subj) + (1 | site) + (1 | item)")
    assert model.explicit_factors == ("item",)
    assert model.blocked_system.stats.levels_holding_sampled() == 6
    density = model.compiled_density
    assert density.low_rank_mass_matrix and not density.layout.level_mean_basis
    assert density.layout.owners == {}  # the values beta_k + u_k are the coordinates
    start = density.constrained(density.start[None, None], model.design)
    np.testing.assert_allclose(start["u_item"], 0.0, atol=1e-9)
    rng = np.random.default_rng(2)
    x = density.start + rng.normal(0, 0.3, density.layout.size)
    logp, grad = density.logp_grad(x)
    for i in rng.choice(density.layout.size, 8, replace=False).tolist() + [0, 1]:
        e = np.zeros(density.layout.size)
        e[i] = 1e-6
        numeric = (density.logp_grad(x + e)[0] - density.logp_grad(x - e)[0]) / 2e-6
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-5), i
    draws = density.constrained(x[None, None], model.design)
    post = _posterior(draws)
    back = unconstrained_draws(density.layout, post, model.design)[0, 0]
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9)
    crossed = _model(data, "y ~ x + (1 | subj) + (1 | item)")
    assert crossed.blocked_system.stats.levels_holding_sampled() == 0
    assert not crossed.compiled_density.low_rank_mass_matrix
    assert crossed.compiled_density.layout.level_mean_basis


def test_two_sampled_factors_on_the_same_fixed_effects(crossed):
    """Items and sites both sampled, their intercepts and slopes centred on the same fixed
    effects in every mixture (the first centred term owns its fixed effect, the other
    is only centred): one posterior, exact gradients, and draws map back exactly."""
    model = bl.LMM("rt ~ S + (1 + S | subj) + (1 + S | item) + (1 + S || site)", crossed)
    model._explicit = ("item", "site")
    system = model.blocked_system
    rng = np.random.default_rng(5)
    natural, values = None, []
    for flags in itertools.product([False, True], repeat=2):
        density = MarginalDensity.from_model(model.design, model.priors, system,
                                             {"item": flags, "site": flags[::-1]})  # fmt: skip
        lay = density.layout
        if natural is None:  # one point of (beta, SDs, correlations, sigma, u) for all
            x = density.start + rng.normal(0, 0.3, lay.size)
            natural = density.constrained(x[None, None], model.design)
            post = _posterior(natural)
        x = unconstrained_draws(lay, post, model.design)[0, 0]
        for key, value in density.constrained(x[None, None], model.design).items():
            np.testing.assert_allclose(value, natural[key], rtol=1e-9, atol=1e-9, err_msg=key)
        # log |du/dx| of the non-centred terms: the diagonal of chol(D) per level
        log_jac = 0.0
        for label, centred in (("item", flags), ("site", flags[::-1])):
            sd = natural[f"sd_{label}"][0, 0]
            diagonal = sd if label == "site" else natural[f"chol_{label}"][0, 0][[0, 2]]
            levels = natural[f"u_{label}"].shape[2]
            log_jac += levels * np.log(diagonal)[~np.array(centred)].sum()
        logp, grad = density.logp_grad(x)
        values.append(logp - log_jac)
        h = 1e-6
        for i in rng.choice(lay.size, 10, replace=False).tolist() + [0, 1]:
            e = np.zeros(lay.size)
            e[i] = h
            numeric = (density.logp_grad(x + e)[0] - density.logp_grad(x - e)[0]) / (2 * h)
            assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-5), (flags, i)
    np.testing.assert_allclose(values, values[0], rtol=0, atol=1e-7)


# -- GLMMs: the centring reads lme4's first glmer stage --------------------------------
GLMM_CASES = {
    "grouseticks": ("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                    "poisson"),
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
}


@pytest.mark.parametrize("case", sorted(GLMM_CASES))
def test_glmm_spreads_are_lme4_first_stage_variances_and_condvar_noise(case):
    """Spread = lme4's nAGQ = 0 variance; noise = median over levels of the level's own
    information left by its conditional variance (1/c - 1/spread)^-1, lme4's postVar
    (tests/data/lme4_stage_one.R)."""
    ref = json.loads((DATA / "lme4_stage_one.json").read_text())[case]
    formula, family = GLMM_CASES[case]
    model = bl.LMM(formula, bl.load_dataset(case), family=family)
    stats = model.blocked_system.stats
    for index, factor in enumerate(stats.factors):
        spread = model._spreads[index]
        variance = ref["variance"][factor.group]
        np.testing.assert_allclose(spread.spread, [variance], rtol=1e-4)
        c = np.asarray(ref["condvar"][factor.group])
        noise = np.median(1.0 / (1.0 / c - 1.0 / variance))
        np.testing.assert_allclose(spread.noise, [noise], rtol=1e-3)
        assert spread.levels == len(c)


def test_glmm_weakly_informed_levels_are_non_centred_nested_ones_on_their_parents():
    """grouseticks' locations have a pooled two-stage spread 26 times their rows' noise, but
    hold 1.9 broods each: the first-stage fit leaves every factor's noise above its
    spread, so locations and observations are non-centred. Broods, read with their
    location's effect known (centred_on_parents), are pinned by their own rows: centred,
    each brood's value sampled around the intercept, its year and height (carried) and
    its location's effect, the location's SD signed; diagonal mass matrix (591
    parameters), target_accept 0.9. cbpp's herds, which the rule centres, are whitened
    (its one factor of one term: Layout.whitened; diagonal mass matrix, 0.9)."""
    from bayeslmm.bayes.centring import noise_given_parent
    from bayeslmm.bayes.density import unpack
    from bayeslmm.bayes.sampling import low_rank_mass_matrix

    formula, family = GLMM_CASES["grouseticks"]
    grouse = bl.LMM(formula, bl.load_dataset("grouseticks"), family=family)
    assert set(grouse.whitened_terms) == {"INDEX", "BROOD", "LOCATION"}  # the default
    grouse = bl.LMM(formula, bl.load_dataset("grouseticks"), family=family)
    grouse.__dict__["_whitening"] = {}  # the centring path, where whitening does not apply
    pooled = grouse._pooled_spreads
    assert all(s.spread[0] > 5 * s.noise[0] for s in pooled)  # the old rule: centred
    stats = grouse.blocked_system.stats
    groups = [f.group for f in stats.factors]
    assert all(s.spread[0] < s.noise[0] for s in grouse._spreads)  # none, unconditionally
    brood = groups.index("BROOD")
    noise = noise_given_parent(brood, stats, grouse.design, grouse._spreads,
                               grouse._stage_one.state.w)  # fmt: skip
    assert np.median(noise) < grouse._spreads[brood].spread[0]
    assert grouse.centred_terms == {"INDEX": (), "BROOD": ("(Intercept)",), "LOCATION": ()}
    assert grouse.signed_terms["LOCATION"] == ("(Intercept)",)
    density = grouse.compiled_density
    fields = unpack(density.data)
    parent = fields["parent"]
    b, loc = (density.layout.sampled_factor(groups.index(g)) for g in ("BROOD", "LOCATION"))
    blocks = {blk.group: blk for blk in grouse.design.blocks}
    expected = np.empty(b.levels)
    expected[blocks["BROOD"].codes] = loc.first + blocks["LOCATION"].codes
    np.testing.assert_array_equal(parent[b.first + np.arange(b.levels)], expected)
    assert (parent[: b.first] == -1).all() and (parent[loc.first :] == -1).all()
    # the broods keep the intercept (their parent is not centred) and carry the rest
    assert density.layout.shift[grouse.design.blocks.index(blocks["BROOD"])] == (0,)
    assert np.count_nonzero(fields["carry"][:, 1:].any(axis=0)) == 3  # YEAR96/97, cHEIGHT
    assert not low_rank_mass_matrix(density)
    assert grouse.default_target_accept == 0.9
    # broods level by level: centred where their rows pin them down better than the
    # spread, given their location (level_centring); the rest sampled as z
    centred_broods = grouse._level_centred["BROOD"]
    np.testing.assert_array_equal(centred_broods, grouse._spreads[brood].spread[0] > noise)
    assert 0 < centred_broods.sum() < b.levels
    assert list(grouse._level_centred) == ["BROOD"]
    level_centred = np.asarray(density.layout.level_centred)
    np.testing.assert_array_equal(level_centred[b.first : b.first + b.levels], centred_broods)
    assert level_centred[: b.first].all() and level_centred[b.first + b.levels :].all()
    assert density.layout.by_level(b, 0) and not density.layout.owners
    formula, family = GLMM_CASES["cbpp"]
    cbpp = bl.LMM(formula, bl.load_dataset("cbpp"), family=family)
    assert cbpp._level_centred == {}  # no parent: the term as a whole
    assert cbpp._centred == {"herd": (True,)}
    assert cbpp.centred_terms == {"herd": ()}
    assert cbpp.whitened_terms == {"herd": ("(Intercept)",)}
    assert not cbpp.compiled_density.low_rank_mass_matrix
    assert cbpp.default_target_accept == 0.8  # whitened (WHITENED_TARGET_ACCEPT)


@pytest.mark.slow
def test_broods_centred_level_by_level_give_the_posterior_of_all_centred():
    """grouseticks' Poisson model with broods in locations, fitted with both factors
    whitened (the default: Layout.whitened), with the broods centred level by level
    (level_centring, where whitening does not apply) and with every brood centred: three
    parametrisations of one posterior, whose population parameters agree within 4 joint
    Monte Carlo SEs (means) and 25% (SDs)."""
    data = bl.load_dataset("grouseticks")
    formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"
    tables = []
    for kind in ("whitened", "split", "centred"):
        model = bl.LMM(formula, data, family="poisson")
        if kind == "whitened":
            assert model.compiled_density.layout.whitened == frozenset({0, 1})
        else:  # the centring path, which designs that are not whitened take
            model.__dict__["_whitening"] = {}
        if kind == "split":
            flags = model._level_centred["BROOD"]
            assert 0 < flags.sum() < flags.size
            assert model.compiled_density.layout.level_centred
        elif kind == "centred":
            model.__dict__["_level_centred"] = {}
            assert not model.compiled_density.layout.level_centred
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(draws=1000, tune=1000, chains=4, random_seed=2, progressbar=False)
        assert model.fit_info.log_density == "bayeslmm (numba)"
        tables.append(model.summary(print_it=False).table)
    a = tables[0]
    for b in tables[1:]:
        assert list(a.index) == list(b.index)
        for name in a.index:
            joint = np.hypot(a.loc[name, "mcse_mean"], b.loc[name, "mcse_mean"])
            assert abs(a.loc[name, "mean"] - b.loc[name, "mean"]) < 4 * joint, name
            assert a.loc[name, "sd"] == pytest.approx(b.loc[name, "sd"], rel=0.25), name


@pytest.mark.slow
def test_whitened_correlated_terms_give_the_posterior_of_centred_ones():
    """A Bernoulli ``(1 + x | g)`` (100 groups of 20 rows) fitted with its effects
    whitened level by level (the default: Layout.whitened, ``u = L z``) and centred (the
    centring path, which designs that are not whitened take): one posterior, whose
    population parameters agree within 4 joint Monte Carlo SEs (means) and 20% (SDs)."""
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(100), 20)
    x = rng.normal(size=g.size)
    u = rng.multivariate_normal([0.0, 0.0], [[0.6, 0.15], [0.15, 0.3]], size=100)
    eta = -0.3 + 0.7 * x + u[g, 0] + u[g, 1] * x
    data = pd.DataFrame({"y": rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))), "x": x,
                         "g": [f"g{k}" for k in g]})  # fmt: skip
    tables = []
    for kind in ("whitened", "centred"):
        model = bl.LMM("y ~ x + (1 + x | g)", data, family="bernoulli")
        if kind == "whitened":
            assert model.compiled_density.layout.whitened == frozenset({0})
        else:
            model.__dict__["_whitening"] = {}
            assert model.centred_terms["g"] and not model.compiled_density.layout.whitened
        model.fit(draws=1000, tune=1000, chains=4, random_seed=3, progressbar=False)
        assert model.fit_info.log_density == "bayeslmm (numba)"
        tables.append(model.summary(print_it=False).table)
    a, b = tables
    assert list(a.index) == list(b.index)
    for name in a.index:
        joint = np.hypot(a.loc[name, "mcse_mean"], b.loc[name, "mcse_mean"])
        assert abs(a.loc[name, "mean"] - b.loc[name, "mean"]) < 4 * joint, name
        assert a.loc[name, "sd"] == pytest.approx(b.loc[name, "sd"], rel=0.2), name


def test_an_uninformed_slope_starts_at_its_priors_scale():
    """grouseticks with a slope on height by location: lme4's first stage puts the
    slope's spread at zero with an unbounded noise, so its SD starts at the prior's scale
    (an infinite start put every chain at a log density of -inf)."""
    data = bl.load_dataset("grouseticks")
    model = bl.LMM("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 + cHEIGHT || LOCATION)", data,
                   family="poisson")  # fmt: skip
    start = model._sd_start()
    assert np.isnan(start["LOCATION"][1]) and np.isfinite(start["LOCATION"][0])
    density = model.compiled_density
    assert np.isfinite(density.start).all()
    logp, grad = density.logp_grad(density.start)
    assert np.isfinite(logp) and np.isfinite(grad).all()


def test_noise_given_parent_is_the_nested_trees_schur_complement():
    """Rows in cells in groups, each row its own level too: a cell's variance with its
    group's effect known equals the dense inverse of the precision of the cells' and the
    rows' effects (working weights on the rows, the spreads' inverses on the diagonal),
    as ``(1 / c - 1 / spread)^-1``; a crossed factor is read as known."""
    from bayeslmm.bayes.centring import noise_given_parent
    from bayeslmm.gaussian.statistics import LevelSpread

    rng = np.random.default_rng(2)
    group = np.repeat(np.arange(6), 10)
    cell = group * 3 + rng.integers(0, 3, group.size)
    data = pd.DataFrame({"y": rng.poisson(3.0, group.size), "g": group.astype(str),
                         "c": cell.astype(str), "o": np.arange(group.size).astype(str),
                         "h": rng.integers(0, 4, group.size).astype(str)})  # fmt: skip
    model = bl.LMM("y ~ 1 + (1 | g) + (1 | c) + (1 | o) + (1 | h)", data, family="poisson")
    stats = model.blocked_system.stats
    groups = [f.group for f in stats.factors]
    spread = {"g": 0.7, "c": 0.4, "o": 0.25, "h": 0.3}
    spreads = [LevelSpread(np.array([spread[g]]), np.array([1.0]), f.n_levels)
               for g, f in zip(groups, stats.factors, strict=True)]  # fmt: skip
    weights = rng.uniform(0.2, 5.0, group.size)
    ours = noise_given_parent(groups.index("c"), stats, model.design, spreads, weights)
    codes = {b.group: b.codes for b in model.design.blocks}
    Z = np.hstack([np.eye(codes[g].max() + 1)[codes[g]] for g in ("c", "o")])
    prior = np.concatenate([np.full(codes[g].max() + 1, 1.0 / spread[g]) for g in ("c", "o")])
    cov = np.linalg.inv(Z.T @ (weights[:, None] * Z) + np.diag(prior))
    c = np.diag(cov)[: codes["c"].max() + 1]
    by_level = pd.Series(ours, index=np.arange(ours.size))
    np.testing.assert_allclose(by_level, 1.0 / (1.0 / c - 1.0 / spread["c"]), rtol=1e-10)


def test_a_large_glmm_adapts_a_diagonal_mass_matrix():
    """nutpie's low-rank adaptation costs more per leapfrog step as the model grows
    (VerbAgg: sampling 17.5 s against 5.4 s with nutpie 0.16.8, 270 s against 54 s with
    0.16.11): a GLMM with more than GLMM_LOW_RANK_MAX_SIZE parameters adapts a diagonal one
    under either nutpie, a small one with a centred term (cbpp's herds centred rather than
    whitened) keeps the low rank; whitened (cbpp's default), the effects need none; the
    fit record says which it used."""
    from bayeslmm.bayes.density import MarginalDensity
    from bayeslmm.bayes.sampling import GLMM_LOW_RANK_MAX_SIZE, low_rank_mass_matrix

    formula, family = GLMM_CASES["cbpp"]
    cbpp = bl.LMM(formula, bl.load_dataset("cbpp"), family=family)
    centred = MarginalDensity.from_glm(cbpp.design, cbpp.response, cbpp.priors,
                                       cbpp.blocked_system, cbpp._centred, cbpp._signing(),
                                       cbpp._sd_start(), cbpp._pooled[0])  # fmt: skip
    assert centred.low_rank_mass_matrix  # what the density asks for
    assert centred.layout.size <= GLMM_LOW_RANK_MAX_SIZE
    assert low_rank_mass_matrix(centred)
    assert not cbpp.compiled_density.low_rank_mass_matrix  # whitened
    cbpp.fit(draws=50, tune=50, chains=1, random_seed=1, progressbar=False)
    assert cbpp.fit_info.mass_matrix == "diagonal"  # 50 tuning steps: nutpie's own estimate
    verbagg = bl.LMM("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                     bl.load_dataset("verbagg"), family="bernoulli")
    density = verbagg.compiled_density
    assert density.low_rank_mass_matrix and density.layout.size > GLMM_LOW_RANK_MAX_SIZE
    assert not low_rank_mass_matrix(density)


def test_lies_within_reads_nesting_from_codes():
    """A fine factor lies within a coarse one where each of its levels meets one coarse
    level, whatever the codes' integer type; one row of a level elsewhere breaks it."""
    from bayeslmm.bayes.density import lies_within

    fine = np.array([0, 0, 1, 2, 2, 3], np.int8)
    coarse = np.array([1, 1, 0, 1, 1, 0], np.int16)
    assert lies_within(fine, coarse)
    assert not lies_within(coarse.astype(np.int8), fine.astype(np.int16))  # the other way
    moved = coarse.copy()
    moved[1] = 0  # level 0's second row in another coarse level
    assert not lies_within(fine, moved)
    assert lies_within(np.zeros(0, np.int8), np.zeros(0, np.int8))


def test_glmm_mass_matrix_is_the_draws_variances():
    from bayeslmm.bayes import stack

    draws = stack.nutpie_mass_matrix(False, draws=True)
    if stack.nutpie_has_draw_diag():
        assert draws == {"adaptation": "draw_diag"}
    else:
        assert draws == {"use_grad_based_mass_matrix": False}
    low_rank = stack.nutpie_mass_matrix(True, draws=True)  # low rank is kept where asked
    assert low_rank in ({"adaptation": "low_rank"}, {"low_rank_modified_mass_matrix": True})
    diagonal = ({"adaptation": "diag"}, {"low_rank_modified_mass_matrix": False})
    assert stack.nutpie_mass_matrix(False) in diagonal


def test_the_draws_variances_only_for_a_glmm_tuned_long_enough():
    from bayeslmm.bayes.sampling import (
        DRAWS_MASS_MATRIX_MIN_TUNE,
        draws_mass_matrix,
        mass_matrix_name,
    )

    cbpp = bl.LMM("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                  bl.load_dataset("cbpp"), family="binomial")  # fmt: skip
    assert draws_mass_matrix(cbpp.compiled_density, DRAWS_MASS_MATRIX_MIN_TUNE)
    assert not draws_mass_matrix(cbpp.compiled_density, DRAWS_MASS_MATRIX_MIN_TUNE - 1)
    assert mass_matrix_name(cbpp.compiled_density, 1000) == "diagonal (draws' variances)"
    assert mass_matrix_name(cbpp.compiled_density, 999) == "diagonal"
    assert mass_matrix_name(None, 1000) == "diagonal"  # the PyMC graph
    sleep = bl.LMM("Reaction ~ Days + (Days | Subject)", bl.load_dataset("sleepstudy"))
    assert not draws_mass_matrix(sleep.compiled_density, 5000)  # Gaussian: sigma sampled
