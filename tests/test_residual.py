"""Residual correlation structures (AR(1), compound symmetry): the weighted statistics,
REML/ML against nlme (tests/data/nlme_residual.json, made by nlme_residual.R), the
Bayesian models and bad inputs."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.bayes import stack
from bayeslmm.classical.lmer import lmer, satterthwaite
from bayeslmm.gaussian.blocked import BlockedSystem
from bayeslmm.gaussian.residual import ResidualModel, ResidualSystem
from bayeslmm.gaussian.statistics import random_effects_matrix
from bayeslmm.spec.design import build_design

DATA = Path(__file__).resolve().parent / "data"
REFERENCE = json.loads((DATA / "nlme_residual.json").read_text())


def _data(name: str) -> pd.DataFrame:
    if name == "sleepstudy_gaps":  # Days 3 and 4 missing for the even-numbered subjects
        d = bl.load_dataset("sleepstudy")
        return d[~(d.Days.isin([3, 4]) & (d.Subject.astype(int) % 2 == 0))]
    if name.startswith("residual_sim") or name == "orthodont":
        return pd.read_csv(DATA / f"{name}.csv")
    return bl.load_dataset(name)


def _structure(case: dict):
    if case["structure"] == "AR1":
        return bl.AR1(time=case["time"], group=case["group"])
    return bl.CompoundSymmetry(group=case["group"])


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.fixture(scope="module")
def gappy() -> pd.DataFrame:
    """sleepstudy with gaps in Days, its rows shuffled."""
    return _data("sleepstudy_gaps").sample(frac=1.0, random_state=3)


# --- the weighted statistics ---------------------------------------------------------


@pytest.mark.parametrize(
    "structure, phi",
    [
        (bl.AR1(time="Days", group="Subject"), 0.6),
        (bl.AR1(time="Days", group="Subject"), -0.45),
        (bl.AR1(group="Subject"), 0.3),
        (bl.CompoundSymmetry(group="Subject"), 0.4),
        (bl.CompoundSymmetry(group="Subject"), -0.08),
    ],
)
def test_weighted_statistics_equal_dense_algebra(gappy, structure, phi):
    design = build_design("Reaction ~ Days + (Days | Subject)", gappy, structure)
    model = ResidualModel(design)
    R = model.weights.correlation(phi)
    if structure.time:  # phi^|t_i - t_j| within a subject, whatever the row order
        i, j = np.flatnonzero((gappy.Subject == gappy.Subject.iloc[0]).to_numpy())[:2]
        assert R[i, j] == pytest.approx(phi ** abs(gappy.Days.iloc[i] - gappy.Days.iloc[j]))
    Rinv = np.linalg.inv(R)
    assert np.allclose(model.weights.precision(phi).toarray(), Rinv)
    assert model.logdet(phi) == pytest.approx(np.linalg.slogdet(R)[1], rel=1e-12)
    Z, X, y = random_effects_matrix(design).toarray(), design.X, design.y
    cp = model.cross_products(phi)
    assert np.allclose(cp.ZtZ.toarray(), Z.T @ Rinv @ Z)
    assert np.allclose(cp.ZtX, Z.T @ Rinv @ X) and np.allclose(cp.Zty, Z.T @ Rinv @ y)
    assert np.allclose(cp.XtX, X.T @ Rinv @ X) and cp.yty == pytest.approx(y @ Rinv @ y)
    # the reweighted blocked system equals one built from scratch on the same statistics
    rs = ResidualSystem(model)
    fresh = BlockedSystem(rs.stats(phi))
    for a, b in zip(rs.system(phi).structure(), fresh.structure(), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(rs.system(phi).explicit_structure(), fresh.explicit_structure(), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_marginal_loglik_equals_dense_gaussian(gappy):
    """The kernel on the weighted statistics plus -log|R|/2 is log N(y | X b, V)."""
    design = build_design("Reaction ~ Days + (Days | Subject)", gappy,
                          bl.AR1(time="Days", group="Subject"))  # fmt: skip
    model = ResidualModel(design)
    rs = ResidualSystem(model)
    phi, sigma, beta = 0.55, 25.0, np.array([250.0, 10.0])
    T = np.array([[[0.6, 0.0], [0.05, 0.2]]])
    ll = rs.system(phi).marginal_loglik(T, beta, sigma, grad=False)[0] - 0.5 * model.logdet(phi)
    Z = random_effects_matrix(design).toarray()
    Lam = np.kron(np.eye(18), T[0])
    V = sigma**2 * (model.weights.correlation(phi) + Z @ Lam @ Lam.T @ Z.T)
    r = design.y - design.X @ beta
    dense = -0.5 * (len(r) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1]
                    + r @ np.linalg.solve(V, r))  # fmt: skip
    assert ll == pytest.approx(dense, rel=1e-10)


# --- REML and ML against nlme ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["REML", "ML"])
@pytest.mark.parametrize("case_id", [k for k, v in REFERENCE.items() if not v["singular"]])
def test_lmer_matches_nlme(case_id, mode):
    case = REFERENCE[case_id]
    ref = case[mode]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.SingularFitWarning)
        fit = lmer(case["formula"], _data(case["data"]), reml=mode == "REML",
                   residual=_structure(case))  # fmt: skip
    assert fit.converged
    assert fit.loglik == pytest.approx(ref["logLik"], abs=1e-4)
    if case["even_in_parameter"]:  # AR(1) at even gaps only: phi's sign is not identified
        assert abs(fit.phi) == pytest.approx(abs(ref["parameter"]), abs=1e-4)
    else:
        assert fit.phi == pytest.approx(ref["parameter"], abs=1e-4)
    assert _rel(fit.sigma, ref["sigma"]) < 1e-4
    n, p = fit.design.n_obs, len(fit.fixef)
    # nlme's summary of an ML fit scales the fixed effects' covariance by n / (n - p);
    # bayeslmm, as lme4, uses sigma^2 (X'V^-1 X)^-1 with the ML sigma
    scale = 1.0 if mode == "REML" else np.sqrt(n / (n - p))
    for name, value in ref["fixef"].items():
        assert _rel(fit.fixef[name], value) < 1e-4, name
        assert _rel(fit.se[name] * scale, ref["se"][name]) < 1e-4, name
    vc = fit.varcorr()
    assert vc.iloc[-1].tolist()[:2] == ["Residual", fit.design.residual.parameter]
    if "re_sd" in ref:  # nlme lists nested factors outermost first
        sds = vc[(vc.grp != "Residual") & vc.var2.isna()].sdcor.to_numpy()
        assert np.allclose(np.sort(sds), np.sort(np.atleast_1d(ref["re_sd"])), rtol=1e-4)
    assert fit.n_params == p + len(fit.theta) + 2
    assert fit.aic == pytest.approx(-2 * fit.loglik + 2 * fit.n_params)


@pytest.mark.parametrize("mode", ["REML", "ML"])
def test_tutorial_model_reaches_past_nlme(sleepstudy, mode):
    """(Days | Subject) with AR(1): the optimum has the random effects correlating +1,
    which nlme's log-Cholesky parametrisation approaches but never reaches; bayeslmm's
    likelihood is at least nlme's best and it says the fit is singular."""
    ref = REFERENCE["sleep_rs_ar1"][mode]
    with pytest.warns(bl.SingularFitWarning):
        fit = lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, reml=mode == "REML",
                   residual=bl.AR1(time="Days", group="Subject"))  # fmt: skip
    assert fit.singular
    assert ref["logLik"] <= fit.loglik < ref["logLik"] + 0.01
    assert fit.phi == pytest.approx(ref["parameter"], abs=5e-3)
    for name, value in ref["fixef"].items():
        assert _rel(fit.fixef[name], value) < 1e-4


def test_compound_symmetry_gls_equals_random_intercept(ratpup):
    """With rho > 0, compound symmetry within litters is the random-intercept model
    (sigma_cs^2 = sigma^2 + tau^2, rho = tau^2 / sigma_cs^2): same likelihood, fixed
    effects, SEs and Satterthwaite df (invariant to the parametrisation)."""
    form = "weight ~ treatment + sex + litsize"
    cs = lmer(form, ratpup, residual=bl.CompoundSymmetry(group="litter"))
    ri = lmer(form + " + (1 | litter)", ratpup)
    assert cs.loglik == pytest.approx(ri.loglik, abs=1e-7)
    tau2, s2 = ri.covariances()[0][0, 0], ri.sigma**2
    assert cs.phi == pytest.approx(tau2 / (tau2 + s2), rel=1e-5)
    assert cs.sigma**2 == pytest.approx(tau2 + s2, rel=1e-5)
    assert np.allclose(cs.fixef, ri.fixef, rtol=1e-6) and np.allclose(cs.se, ri.se, rtol=1e-5)
    df_cs, df_ri = satterthwaite(cs)["df"], satterthwaite(ri)["df"]
    assert np.allclose(df_cs, df_ri, rtol=1e-3)
    obs_cs = cs.coefficients("observed")["se"]
    assert np.allclose(obs_cs, ri.coefficients("observed")["se"], rtol=1e-3)
    assert cs.residual_structure == bl.CompoundSymmetry(group="litter")
    assert cs.design.residual.describe() == "compound symmetry within litter (rho)"


# --- Bayesian models -----------------------------------------------------------------


def _dense_loglik(model, beta, sigma, phi, covariances):
    """log N(y | X beta, sigma^2 R(phi) + Z D Z') from dense matrices."""
    from scipy.linalg import block_diag

    from bayeslmm.gaussian.residual import ResidualWeights

    d = model.design
    Z = random_effects_matrix(d).toarray()
    D = block_diag(*[np.kron(np.eye(b.n_levels), c) for b, c in
                     zip(d.blocks, covariances, strict=True)])  # fmt: skip
    V = sigma**2 * ResidualWeights.from_layout(d.residual).correlation(phi) + Z @ D @ Z.T
    r = d.y - d.X @ beta
    return -0.5 * (len(r) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1]
                   + r @ np.linalg.solve(V, r))  # fmt: skip


def _potential(pm_model, point):
    """The marginal model's likelihood term at a point of its value variables."""
    out = pm_model.replace_rvs_by_values([pm_model.potentials[0]])[0]
    f = pm_model.compile_fn(out, inputs=pm_model.value_vars, mode="FAST_COMPILE")
    start = pm_model.initial_point()
    start.update(point)
    return float(f(start))


def _interval(x, lower, upper):
    return np.log((x - lower) / (upper - x))


def test_marginal_graphs_equal_dense_gaussian(ratpup):
    """The PyMC marginal model's likelihood with the correlation parameter: the pure graph
    (two nested factors, AR(1) within classes) and the blocked Op (crossed factors, compound
    symmetry within their cells) equal the dense Gaussian."""
    nest = pd.read_csv(DATA / "residual_sim_nested.csv")
    model = bl.LMM("y_ar ~ x + (1 | school/class)", nest,
                   residual=bl.AR1(time="time", group=["school", "class"]))  # fmt: skip
    assert model.compiled_density is None and "numpyro" in model.graph_samplers
    beta, sigma, phi, sd = np.array([1.0, 0.4]), 0.8, -0.35, [0.9, 0.4]
    point = {"beta": beta, "sigma_log__": np.log(sigma),
             "phi_interval__": _interval(phi, -1, 1), "sd_school_log__": np.log([sd[0]]),
             "sd_school:class_log__": np.log([sd[1]])}  # fmt: skip
    dense = _dense_loglik(model, beta, sigma, phi, [np.diag([s**2]) for s in sd])
    assert _potential(model.marginal_model, point) == pytest.approx(dense, rel=1e-10)

    crossed = bl.LMM("weight ~ litsize + (1 | litter) + (1 | sex)", ratpup,
                     residual=bl.CompoundSymmetry(group=["litter", "sex"]))  # fmt: skip
    assert crossed.graph_samplers == ("pymc",) and crossed.marginal_supported
    lower = crossed.design.residual.lower
    beta, sigma, rho, sd = np.array([7.0, -0.1]), 0.4, 0.2, [0.5, 0.3]
    point = {"beta": beta, "sigma_log__": np.log(sigma),
             "rho_interval__": _interval(rho, lower, 1.0), "sd_litter_log__": np.log([sd[0]]),
             "sd_sex_log__": np.log([sd[1]])}  # fmt: skip
    dense = _dense_loglik(crossed, beta, sigma, rho, [np.diag([s**2]) for s in sd])
    assert _potential(crossed.marginal_model, point) == pytest.approx(dense, rel=1e-10)


def test_explicit_model_likelihood_equals_dense(gappy):
    """The explicit model's response N(mu, sigma^2 R(phi)) in closed form (AR(1) with gaps,
    rows shuffled), against the dense multivariate normal."""
    from bayeslmm.gaussian.residual import ResidualWeights

    for structure, par in [(bl.AR1(time="Days", group="Subject"), -0.6),
                           (bl.CompoundSymmetry(group="Subject"), 0.3)]:  # fmt: skip
        model = bl.LMM("Reaction ~ Days", gappy, residual=structure)
        pm_model = model.pymc_model
        logp = pm_model.compile_fn(pm_model.observedlogp, inputs=pm_model.value_vars,
                                   mode="FAST_COMPILE")  # fmt: skip
        lay = model.design.residual
        beta, sigma = np.array([250.0, 9.0]), 40.0
        point = {"beta": beta, "sigma_log__": np.log(sigma),
                 f"{lay.parameter}_interval__": _interval(par, lay.lower, lay.upper)}  # fmt: skip
        V = sigma**2 * ResidualWeights.from_layout(lay).correlation(par)
        r = model.design.y - model.design.X @ beta
        dense = -0.5 * (len(r) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1]
                        + r @ np.linalg.solve(V, r))  # fmt: skip
        assert float(logp(point)) == pytest.approx(dense, rel=1e-10)


@pytest.fixture(scope="module")
def ar1_fit(sleepstudy):
    model = bl.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy,
                   residual=bl.AR1(time="Days", group="Subject"))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.ConvergenceWarning)
        model.fit(draws=200, tune=200, chains=2, cores=1, random_seed=3, progressbar=False,
                  sampler="pymc")  # fmt: skip
    return model


def test_posterior_of_phi_near_reml(ar1_fit, sleepstudy):
    model = ar1_fit
    assert model._fit_info["method"] == "marginal"
    reml = lmer("Reaction ~ Days + (1 | Subject)", sleepstudy,
                residual=bl.AR1(time="Days", group="Subject"))  # fmt: skip
    post = model.idata.posterior
    phi = post["phi"].values.ravel()
    assert abs(phi.mean() - reml.phi) < 0.5 * phi.std()
    assert phi.min() > -1 and phi.max() < 1
    table = model.summary(print_it=False)
    assert table.loc["phi", "component"] == "residual"
    for name, value in reml.fixef.items():  # weak priors: the posterior sits on REML's
        assert abs(table.loc[name, "mean"] - value) < 0.5 * table.loc[name, "sd"]
    # exact draws of the random effects given each draw of (beta, D, sigma, phi)
    u = post["u_Subject"].values.mean(axis=(0, 1))[:, 0]
    blup = reml.ranef()["Subject"]["(Intercept)"].to_numpy()
    assert np.corrcoef(u, blup)[0, 1] > 0.99
    vc = model.varcorr()
    assert vc.iloc[-1][["grp", "var1", "parameter"]].tolist() == ["Residual", "phi", "phi"]
    assert model.population_variables()[-1] == "phi"


def test_residual_fit_outputs(ar1_fit, capsys):
    model, n = ar1_fit, ar1_fit.design.n_obs
    model.summary()
    text = capsys.readouterr().out
    assert "Residuals: AR(1) in Days within Subject (phi)" in text and "phi" in text
    # pointwise log-likelihood: each row given the other rows (non-factorised model)
    assert model.idata.log_likelihood["Reaction"].shape == (2, 200, n)
    from bayeslmm.bayes.loo import loo

    with warnings.catch_warnings():  # a few high Pareto k: PSIS's own warning
        warnings.simplefilter("ignore", UserWarning)
        by_row, by_group = loo(model, by="observation"), loo(model, by="group")
    assert stack.pointwise_elpd(by_row).shape == (n,)
    assert stack.pointwise_elpd(by_group).shape == (18,)
    assert np.isfinite(stack.elpd(by_row)[0]) and np.isfinite(stack.elpd(by_group)[0])
    # response draws for new rows: correlated as phi^|t_i - t_j| within a subject
    new = pd.DataFrame({"Days": [0, 1, 2, 5], "Subject": [308] * 4})
    draws = model.predict(new, kind="response", random_seed=1).values.reshape(-1, 4)
    mean = model.predict(new, random_seed=1).values.reshape(-1, 4)
    c = np.corrcoef((draws - mean).T)
    phi = model.idata.posterior["phi"].values.ravel()
    assert c[0, 1] == pytest.approx(phi.mean(), abs=0.1)
    assert c[0, 3] == pytest.approx(np.mean(phi**5), abs=0.1)
    with pytest.raises(bl.DataError, match="Days"):
        model.predict(new.drop(columns="Days"), kind="response")


def test_explicit_model_without_random_effects(sleepstudy):
    """nlme's gls with AR(1), Bayesian: the explicit model (nothing to integrate out),
    phi's posterior near REML's, replicated data correlated as phi^|t_i - t_j|."""
    structure = bl.AR1(time="Days", group="Subject")
    model = bl.LMM("Reaction ~ Days", sleepstudy, residual=structure)
    assert model.priors["phi"] == bl.Prior("Uniform", lower=-1.0, upper=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.ConvergenceWarning)
        model.fit(draws=300, tune=300, chains=2, cores=1, random_seed=2, progressbar=False,
                  sampler="pymc")  # fmt: skip
    assert model._fit_info["method"] == "full"
    reml = lmer("Reaction ~ Days", sleepstudy, residual=structure)
    phi = model.idata.posterior["phi"].values.ravel()
    assert abs(phi.mean() - reml.phi) < 0.5 * phi.std()
    idata = model.posterior_predictive(random_seed=1)
    reps = idata.posterior_predictive["Reaction"].values.reshape(-1, model.design.n_obs)
    resid = reps - reps.mean(axis=0)
    same = np.flatnonzero((sleepstudy.Subject == 308).to_numpy())  # Days 0..9 in order
    other = np.flatnonzero((sleepstudy.Subject == 309).to_numpy())[0]
    assert np.corrcoef(resid[:, same[4]], resid[:, same[5]])[0, 1] == pytest.approx(
        phi.mean(), abs=0.1)  # fmt: skip
    assert abs(np.corrcoef(resid[:, same[0]], resid[:, other])[0, 1]) < 0.15


def test_residual_groups_across_levels_sample_explicitly(sleepstudy):
    """A residual series that spans several levels of a grouping factor (AR(1) series of
    six subjects each, random intercepts by subject) cannot be integrated out level by
    level: method=None samples the explicit model, method='marginal' says why not, and
    lmer refuses naming the factor."""
    rank = sleepstudy.Subject.rank(method="dense").astype(int) - 1
    sleep = sleepstudy.assign(order=np.arange(len(sleepstudy)), batch=rank // 6)
    series = bl.AR1(time="order", group="batch")
    model = bl.LMM("Reaction ~ Days + (1 | Subject)", sleep, residual=series)
    assert not model.marginal_supported
    assert model._resolve_method(None) == "full"
    with pytest.raises(bl.ArgumentError, match="Subject"):
        model._resolve_method("marginal")
    with pytest.raises(bl.DataError, match="Subject"):
        lmer("Reaction ~ Days + (1 | Subject)", sleep, residual=series)


def test_sbc_ar1_small():
    """A small SBC run of the AR(1) model's marginal sampler; the full one is
    benchmarks/sbc_ar1.py."""
    from bayeslmm.bayes.sbc import run_sbc_ar1

    result = run_sbc_ar1(16, groups=6, per_group=5, draws=19, seed=5, tune=150)
    assert result.ranks.shape == (16, 5)
    assert ((result.ranks >= 0) & (result.ranks <= 19)).all().all()
    pvals = result.uniformity(bins=2)["p_value"]
    assert (pvals > 0.001).all(), pvals


# --- bad inputs ----------------------------------------------------------------------


def test_structure_arguments_are_checked():
    with pytest.raises(bl.ArgumentError, match="time"):
        bl.AR1(time=3, group="Subject")
    with pytest.raises(bl.ArgumentError, match="group"):
        bl.CompoundSymmetry(group=["a", 2])
    with pytest.raises(bl.ArgumentError, match="group"):
        bl.AR1(time="t", group="t")
    assert bl.AR1(time="Days", group="Subject") == bl.AR1(time="Days", group="Subject")
    assert repr(bl.CompoundSymmetry(["a", "b"])) == "CompoundSymmetry(group=['a', 'b'])"


@pytest.mark.parametrize(
    "change, structure, error, match",
    [
        (None, bl.AR1(time="Dayz", group="Subject"), bl.UnknownNameError, "'Dayz'.*'Days'"),
        (None, bl.AR1(time="Days", group="Subjekt"), bl.UnknownNameError, "'Subjekt'"),
        (None, bl.CompoundSymmetry(group="Subjekt"), bl.UnknownNameError, "'Subjekt'"),
        (
            lambda d: d.assign(Days=d.Days + 0.5),
            bl.AR1("Days", "Subject"),
            bl.DataError,
            "whole numbers",
        ),
        (
            lambda d: d.assign(Days=d.Days.where(d.index != 3, 2)),
            bl.AR1("Days", "Subject"),
            bl.DataError,
            "repeats the value 2 within group '308'",
        ),
        (
            lambda d: d.assign(Days=d.Days.astype(str) + "d"),
            bl.AR1("Days", "Subject"),
            bl.ColumnTypeError,
            "'Days'",
        ),
        (
            lambda d: d.assign(g=np.arange(len(d))),
            bl.CompoundSymmetry("g"),
            bl.DataError,
            "one row",
        ),
        (None, "ar1", bl.ArgumentError, "residual must be"),
        (lambda d: d.assign(phi=d.Days * 2.0), bl.AR1("Days", "Subject"), bl.DataError, "'phi'"),
    ],
)
def test_bad_residual_inputs_are_named(sleepstudy, change, structure, error, match):
    data = sleepstudy if change is None else change(sleepstudy)
    before = data.copy()
    formula = "Reaction ~ Days + phi + (1 | Subject)" if "phi" in data else \
        "Reaction ~ Days + (1 | Subject)"  # fmt: skip
    for fit in (lambda: lmer(formula, data, residual=structure),
                lambda: bl.LMM(formula, data, residual=structure)):  # fmt: skip
        with pytest.raises(error, match=match):
            fit()
    pd.testing.assert_frame_equal(data, before)  # never mutated


def test_several_grouping_factors_need_a_group(ratpup):
    with pytest.raises(bl.ArgumentError, match="several grouping factors"):
        lmer("weight ~ sex + (1 | litter) + (1 | treatment)", ratpup,
             residual=bl.CompoundSymmetry())  # fmt: skip
    with pytest.raises(bl.ArgumentError, match=r"group=\['treatment', 'litter'\]"):
        lmer("weight ~ sex + (1 | treatment/litter)", ratpup, residual=bl.AR1())
    # one grouping factor: the default group is it (nlme's lme)
    fit = lmer("weight ~ sex + (1 | litter)", ratpup, residual=bl.AR1())
    assert fit.design.residual.group == "litter"


def test_correlation_priors_are_checked(sleepstudy):
    f, ar1 = "Reaction ~ Days + (1 | Subject)", bl.AR1(time="Days", group="Subject")
    ok = bl.LMM(f, sleepstudy, residual=ar1, priors={"phi": bl.Prior("Beta", alpha=2, beta=2)})
    assert ok.priors["phi"].dist == "Beta"
    with pytest.raises(bl.PriorError, match=r"keep within \(-1, 1\)"):
        bl.LMM(f, sleepstudy, residual=ar1, priors={"phi": bl.Prior("Normal", mu=0, sigma=1)})
    with pytest.raises(bl.PriorError, match=r"keep within"):
        bl.LMM(f, sleepstudy, residual=ar1,
               priors={"phi": bl.Prior("Uniform", lower=-2, upper=1)})  # fmt: skip
    with pytest.raises(bl.PriorError, match="residual correlation of this model is 'phi'"):
        bl.LMM(f, sleepstudy, residual=ar1, priors={"rho": bl.Prior("Uniform", lower=0)})
    with pytest.raises(bl.PriorError, match="no residual correlation"):
        bl.LMM(f, sleepstudy, priors={"phi": bl.Prior("Uniform", lower=0)})


def test_formula_without_random_terms_needs_a_structure(sleepstudy):
    with pytest.raises(bl.FormulaError, match="residual correlation structure"):
        lmer("Reaction ~ Days", sleepstudy)


def test_anova_and_ranova_keep_the_structure(sleepstudy):
    ar1 = bl.AR1(time="Days", group="Subject")
    with pytest.warns(bl.SingularFitWarning):
        big = lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, residual=ar1, reml=False)
    small = lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, residual=ar1, reml=False)
    plain = lmer("Reaction ~ Days + (1 | Subject)", sleepstudy, reml=False)
    table = bl.anova(plain, small, big).table
    assert table["npar"].tolist() == [4, 5, 7]  # phi counts
    assert table["logLik"].iloc[1] == pytest.approx(small.loglik)
    with pytest.raises(bl.ComparisonError, match="not nested"):
        bl.anova(small, lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, reml=False,
                             residual=bl.CompoundSymmetry("Subject")))  # fmt: skip
    rows = bl.ranova(small).table  # the reduced model is nlme's gls with the same AR(1)
    gls = lmer("Reaction ~ Days", sleepstudy, residual=ar1, reml=False)
    assert rows["npar"].tolist() == [5, 4]
    assert rows["logLik"].iloc[1] == pytest.approx(gls.loglik)


def test_report_shows_the_structure(ar1_fit, tmp_path):
    files = bl.report(ar1_fit, path=tmp_path / "rep")
    assert not files.failed, files.failed  # every figure drawn (posterior predictive too)
    page = files.html.read_text(encoding="utf-8")
    assert "AR(1) in Days within Subject (phi)" in page
    assert "AR1(time=&#x27;Days&#x27;, group=&#x27;Subject&#x27;)" in page
    components = pd.read_csv(tmp_path / "rep" / "variance_components.csv")
    assert components["parameter"].tolist()[-2:] == ["sigma", "phi"]
    priors = pd.read_csv(tmp_path / "rep" / "priors.csv")
    assert "Uniform(lower=-1, upper=1)" in priors.loc[priors.parameter == "phi", "prior"].item()
    with pytest.raises(bl.ComparisonError, match="correlated residuals"):
        bl.compare("Reaction ~ Days + (1 | Subject)", ar1_fit.design.frame, model=ar1_fit)


@pytest.mark.parametrize(
    "text, structure",
    [
        ("ar1(Days | Subject)", bl.AR1(time="Days", group="Subject")),
        ("AR1(1|Subject)", bl.AR1(group="Subject")),
        ("ar1(t)", bl.AR1(time="t")),
        ("cs(litter)", bl.CompoundSymmetry(group="litter")),
        ("cs(1 | school:class)", bl.CompoundSymmetry(group=["school", "class"])),
        ("ar1(`my t` | `a b`)", bl.AR1(time="my t", group="a b")),
    ],
)
def test_cli_residual_option(text, structure):
    from bayeslmm.present.cli import parse_residual

    assert parse_residual(text) == structure


@pytest.mark.parametrize("text", ["ar2(x)", "cs(Days | Subject)", "ar1(Days |)", "ar1 Days"])
def test_cli_bad_residual_option(text, capsys):
    from bayeslmm.present.cli import main

    assert main(["fit", "sleepstudy", "Reaction ~ Days", "--residual", text]) == 1
    assert "--residual" in capsys.readouterr().err
