import warnings

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest

import bayeslmm as bl
from bayeslmm import LMM, ConvergenceWarning, DataError, NotFittedError
from bayeslmm.bayes import stack

QUICK = dict(draws=200, tune=300, chains=2, random_seed=11, progressbar=False)


def quiet_fit(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(**{**QUICK, **kwargs})


@pytest.fixture(scope="module")
def fitted(sleepstudy):
    model = LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    quiet_fit(model, draws=300, sampler="nutpie")
    return model


def test_pymc_model_structure(sleepstudy):
    model = LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    m = model.pymc_model
    assert isinstance(m, pm.Model)
    free = {rv.name for rv in m.free_RVs}
    assert free == {"beta", "chol_Subject", "z_Subject", "sigma"}
    assert m.coords["fixed"] == ("(Intercept)", "Days")
    assert m.coords["Subject"][:2] == ("308", "309")
    assert m.coords["Subject_term"] == ("(Intercept)", "Days")
    assert m.named_vars_to_dims["u_Subject"] == ("Subject", "Subject_term")
    assert m.named_vars_to_dims["Reaction"] == ("obs",)
    assert m["chol_Subject"].owner.op.__class__.__name__ == "_LKJCholeskyCovRV"
    assert m["sigma"].owner.op.name == "halfnormal"
    assert m["beta"].owner.op.name == "normal"
    graph = pm.model_to_graphviz(m)
    assert "u_Subject" in graph.source


def test_uncorrelated_and_centered(sleepstudy):
    m = LMM("Reaction ~ Days + (Days || Subject)", sleepstudy).pymc_model
    assert {rv.name for rv in m.free_RVs} == {"beta", "sd_Subject", "z_Subject", "sigma"}
    assert m["sd_Subject"].owner.op.name == "halfnormal"
    m = LMM(
        "Reaction ~ Days + (Days || Subject)", sleepstudy, parametrization="centered"
    ).pymc_model
    assert {rv.name for rv in m.free_RVs} == {"beta", "sd_Subject", "u_Subject", "sigma"}
    m = LMM("Reaction ~ Days + (Days | Subject)", sleepstudy, parametrization="centered").pymc_model
    assert m["u_Subject"].owner.op.name == "multivariate_normal"
    with pytest.raises(ValueError, match="parametrization"):
        LMM("Reaction ~ Days + (1|Subject)", sleepstudy, parametrization="sideways")


def test_fit_returns_complete_inference_data(fitted):
    idata = fitted.idata
    groups = set(stack.group_names(idata))
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood"} <= groups
    post = idata.posterior
    assert post["u_Subject"].dims == ("chain", "draw", "Subject", "Subject_term")
    assert list(post["beta"].coords["fixed"].values) == ["(Intercept)", "Days"]
    assert idata.log_likelihood["Reaction"].shape == (2, 300, 180)
    assert idata.observed_data["Reaction"].shape == (180,)
    # the container of the installed ArviZ line, which the user's ArviZ reads
    import xarray as xr

    assert isinstance(idata, xr.DataTree if stack.ARVIZ_1 else az.InferenceData)
    loo = az.loo(idata)
    assert np.isfinite(stack.elpd(loo)[0])
    table = az.summary(idata, var_names=["beta", "sigma"])
    assert list(table.index) == ["beta[(Intercept)]", "beta[Days]", "sigma"]
    # u is the product of z and the Cholesky factor, per draw
    assert fitted.convergence is not None


def test_summary_and_tables(fitted, capsys):
    table = fitted.summary()
    printed = capsys.readouterr().out
    for text in ["Formula: Reaction ~ Days + (Days | Subject)", "180 observations",
                 "Subject (18 levels)", "sd((Intercept))", "cor((Intercept),Days)", "Residual",
                 "Fixed effects:", "Convergence:"]:  # fmt: skip
        assert text in printed
    assert list(table.index) == [
        "sd((Intercept)|Subject)", "sd(Days|Subject)", "cor((Intercept),Days|Subject)",
        "sigma", "(Intercept)", "Days",
    ]  # fmt: skip
    assert {"mean", "sd", "hdi_3%", "hdi_97%", "r_hat", "ess_bulk", "ess_tail"} <= set(table)
    post = fitted.idata.posterior
    assert table.loc["Days", "mean"] == pytest.approx(float(post["beta"].sel(fixed="Days").mean()))

    fixef = fitted.fixef()
    assert list(fixef.index) == ["(Intercept)", "Days"]

    ranef = fitted.ranef()["Subject"]
    assert ranef.shape[0] == 36
    assert ranef.index[0] == (308, "(Intercept)")  # an integer factor: integer levels
    u = post["u_Subject"].sel(Subject="309", Subject_term="Days")
    assert ranef.loc[(309, "Days"), "mean"] == pytest.approx(float(u.mean()))
    assert (ranef["hdi_3%"] < ranef["mean"]).all() and (ranef["mean"] < ranef["hdi_97%"]).all()

    coef = fitted.coef()["Subject"]
    assert coef.shape == (18, 2)
    expected = float((post["beta"].sel(fixed="Days") + u).mean())
    assert coef.loc[309, "Days"] == pytest.approx(expected)

    vc = fitted.varcorr()
    assert list(vc["grp"]) == ["Subject", "Subject", "Subject", "Residual"]
    assert vc.loc[2, "var1"] == "(Intercept)" and vc.loc[2, "var2"] == "Days"


def test_predict(fitted, sleepstudy):
    new = pd.DataFrame({"Days": [0, 5, 5], "Subject": [308, 308, 999]})
    draws = fitted.predict(new, random_seed=1)
    assert draws.dims == ("chain", "draw", "obs") and draws.shape == (2, 300, 3)
    post = fitted.idata.posterior
    beta = post["beta"].values
    u308 = post["u_Subject"].sel(Subject="308").values
    np.testing.assert_allclose(draws.values[..., 1], beta[..., 0] + 5 * beta[..., 1] + u308[..., 0]
                               + 5 * u308[..., 1])  # fmt: skip
    # a new level draws its effect from the population: wider than the known subject
    assert draws.values[..., 2].std() > 1.5 * draws.values[..., 1].std()
    assert abs(draws.values[..., 2].mean() - (beta[..., 0] + 5 * beta[..., 1]).mean()) < 10
    pop = fitted.predict(new, include_random=False)
    np.testing.assert_allclose(pop.values[..., 1], pop.values[..., 2])
    resp = fitted.predict(new, kind="response", random_seed=1)
    assert resp.values[..., 1].std() > draws.values[..., 1].std()
    with pytest.raises(DataError, match=r"level\(s\) \['999'\] of 'Subject'"):
        fitted.predict(new, allow_new_levels=False)
    same = fitted.predict()  # the fitted rows
    assert same.shape == (2, 300, 180)


def test_posterior_predictive(fitted):
    idata = fitted.posterior_predictive(random_seed=2)
    assert idata.posterior_predictive["Reaction"].shape == (2, 300, 180)


def test_not_fitted(sleepstudy):
    model = LMM("Reaction ~ Days + (1|Subject)", sleepstudy)
    with pytest.raises(NotFittedError, match="fit"):
        model.summary()
    with pytest.raises(ValueError, match="sampler"):
        model.fit(sampler="stan")


def test_same_seed_same_draws(classroom):
    a = LMM("score ~ edu + (1|classroom)", classroom)
    b = LMM("score ~ edu + (1|classroom)", classroom)
    ia = quiet_fit(a, draws=100, tune=100)
    ib = quiet_fit(b, draws=100, tune=100)
    np.testing.assert_array_equal(ia.posterior["beta"].values, ib.posterior["beta"].values)


def test_convergence_warning_with_advice(classroom):
    model = LMM("score ~ edu + (1|classroom)", classroom)
    with pytest.warns(ConvergenceWarning, match="ESS.*draw more samples"):
        model.fit(draws=30, tune=30, chains=2, random_seed=3, progressbar=False)
    assert not model.convergence.ok


@pytest.mark.parametrize(
    "dataset, formula, blocks",
    [
        ("sleepstudy", "Reaction ~ Days + (1|Subject)", {"Subject": (18, 1)}),
        ("sleepstudy", "Reaction ~ Days + (Days||Subject)", {"Subject": (18, 2)}),
        ("sleepstudy", "Reaction ~ Days + (0 + Days|Subject)", {"Subject": (18, 1)}),
        ("sleepstudy", "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)",
         {"Subject": (18, 1), "Subject.1": (18, 1)}),
        ("rat_pup", "weight ~ sex * treatment + (1|litter)", {"litter": (27, 1)}),
        ("rat_pup", "weight ~ 0 + sex + (0 + sex|litter)", {"litter": (27, 2)}),
        ("rat_pup", "weight ~ sex + (1|treatment/litter)",
         {"treatment": (3, 1), "treatment:litter": (27, 1)}),
        ("rat_pup", "weight ~ sex + (1|treatment:litter)", {"treatment:litter": (27, 1)}),
        ("rat_pup", "weight ~ litsize + (1|litter) + (1|sex)", {"litter": (27, 1), "sex": (2, 1)}),
        ("rat_pup", "np.log(weight) ~ scale(litsize) + I(litsize**2) + (1|litter)",
         {"litter": (27, 1)}),
        ("dyestuff", "Yield ~ 1 + (1|Batch)", {"Batch": (6, 1)}),
    ],
)  # fmt: skip
def test_every_syntax_fits(dataset, formula, blocks):
    model = LMM(formula, bl.load_dataset(dataset))
    idata = quiet_fit(model, draws=100, tune=200)
    for label, (levels, terms) in blocks.items():
        u = idata.posterior[f"u_{label}"]
        assert u.shape[2:] == (levels, terms), label
        assert np.isfinite(u.values).all()
    table = model.summary(print_it=False)
    assert np.isfinite(table["mean"]).all()
    assert set(model.design.fixed_names) <= set(table.index)


@pytest.mark.parametrize("sampler", ["pymc", "numpyro"])
def test_other_samplers_give_the_same_posterior(fitted, sleepstudy, sampler):
    model = LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    idata = quiet_fit(model, draws=300, sampler=sampler)
    assert set(idata.posterior.data_vars) >= {"beta", "sd_Subject", "cor_Subject", "u_Subject"}
    assert idata.log_likelihood["Reaction"].shape == (2, 300, 180)
    ours = idata.posterior["beta"].sel(fixed="Days")
    ref = fitted.idata.posterior["beta"].sel(fixed="Days")
    # two short runs of the same posterior: means within a few Monte Carlo errors
    assert abs(float(ours.mean()) - float(ref.mean())) < 0.6 * float(ref.std())


def test_arviz_trace_plot(fitted):
    import matplotlib

    matplotlib.use("Agg")
    plotted = az.plot_trace(fitted.idata, var_names=fitted.population_variables())
    if not stack.ARVIZ_1:  # one row of panels per variable (ArviZ 0.x's compact layout)
        assert plotted.shape[0] == len(fitted.population_variables())
    assert stack.figure(plotted).axes


def test_default_target_accept_follows_how_few_levels_identify_the_covariance():
    """0.99 for a factor of at most 5 levels, or of no more levels than its covariance has
    parameters (6 workers, 3 correlated terms: 6 parameters); 0.9 otherwise."""
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"g": np.repeat([f"w{k}" for k in range(6)], 9),
                          "m": np.tile(list("ABC"), 18), "y": rng.normal(size=54)})  # fmt: skip
    assert bl.LMM("y ~ m + (m | g)", frame).default_target_accept == 0.99
    assert bl.LMM("y ~ m + (m || g)", frame).default_target_accept == 0.9
    assert bl.LMM("y ~ m + (1 | g)", frame).default_target_accept == 0.9
    sleep = bl.load_dataset("sleepstudy")
    assert bl.LMM("Reaction ~ Days + (Days | Subject)", sleep).default_target_accept == 0.9
    classroom = bl.load_dataset("classroom")
    assert bl.LMM("score ~ edu + (1 | classroom)", classroom).default_target_accept == 0.99


def test_linear_predictor_is_the_rowwise_sum_and_checks_level_codes():
    """X beta + sum_k rowwise(Z_k * u_k[codes_k]) over all draws; a code outside the
    effects' levels is refused (the sparse product does not check it)."""
    import xarray as xr

    from bayeslmm.bayes.predict import linear_predictor

    rng = np.random.default_rng(0)
    post = xr.Dataset({"beta": (("chain", "draw", "fixed"), rng.normal(size=(2, 3, 2)))})
    X, Z = rng.normal(size=(7, 2)), rng.normal(size=(7, 2))
    code, u = rng.integers(0, 4, 7), rng.normal(size=(2, 3, 4, 2))
    expected = (np.einsum("cdp,np->cdn", post["beta"].values, X)
                + np.einsum("nq,cdnq->cdn", Z, u[:, :, code, :]))  # fmt: skip
    np.testing.assert_allclose(linear_predictor(post, X, [Z], [code], [u]), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="level codes"):
        linear_predictor(post, X, [Z], [np.r_[4, code[1:]]], [u])
