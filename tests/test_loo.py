"""PSIS-LOO by group (exact per-group marginal likelihood) and by observation."""

import numpy as np
import pytest
import scipy.stats as st

import bayeslmm as bl
from bayeslmm.bayes import stack
from bayeslmm.bayes.loo import group_log_likelihood, loo
from bayeslmm.gaussian.statistics import random_effects_matrix

FAST = {"draws": 500, "tune": 500, "chains": 2, "progressbar": False, "random_seed": 1}


@pytest.fixture(scope="module")
def sleep_models(sleepstudy):
    out = {}
    for name, formula in (("slope", "Reaction ~ Days + (Days | Subject)"),
                          ("intercept", "Reaction ~ Days + (1 | Subject)")):  # fmt: skip
        out[name] = bl.LMM(formula, sleepstudy)
        out[name].fit(**FAST)
    return out


@pytest.mark.parametrize("by", ["group", "observation"])
def test_loo_compare_table(sleep_models, by):
    result = bl.loo_compare(sleep_models, by=by)
    t = result.table
    assert list(t.index) == ["slope", "intercept"]  # random slopes predict better
    for column in ("rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse", "warning",
                   "k_max", "k_high"):  # fmt: skip
        assert column in t.columns, column
    assert t["elpd_diff"].iloc[0] == 0 and t["elpd_diff"].iloc[1] > 5
    assert t["weight"].sum() == pytest.approx(1.0)
    n_points = 18 if by == "group" else 180
    assert result.unit == ("Subject" if by == "group" else "observation")
    assert all(len(stack.pointwise_elpd(r)) == n_points for r in result.loo.values())
    assert (t["k_high"] >= 0).all() and (t["k_max"] < 2).all()
    assert "PSIS-LOO by" in str(result)


def test_group_log_likelihood_sums_each_subjects_rows(sleep_models):
    model = sleep_models["intercept"]
    values = group_log_likelihood(model)
    assert values.dims == ("chain", "draw", "Subject") and values.shape == (2, 500, 18)
    post = model.idata.posterior.isel(chain=0, draw=7)
    d = model.design
    tau, sigma = float(post["sd_Subject"].values[0]), float(post["sigma"])
    mu = d.X @ post["beta"].values
    for j in (0, 17):
        rows = d.blocks[0].codes == j
        cov = sigma**2 * np.eye(rows.sum()) + tau**2
        dense = st.multivariate_normal(mu[rows], cov).logpdf(d.y[rows])
        assert values.isel(chain=0, draw=7, Subject=j) == pytest.approx(dense, rel=1e-10)


def test_nested_designs_leave_out_the_outer_factor(ratpup):
    # a posterior put in by hand (no sampling): two nested factors, litters in treatments
    model = bl.LMM("weight ~ sex + (1 | treatment/litter)", ratpup)
    rng = np.random.default_rng(1)
    shape = (2, 50)
    posterior = {"beta": rng.normal([6.0, 0.3], 0.05, (*shape, 2)),
                 "sd_treatment": rng.uniform(0.2, 0.4, (*shape, 1)),
                 "sd_treatment:litter": rng.uniform(0.2, 0.4, (*shape, 1)),
                 "sigma": rng.uniform(0.35, 0.45, shape)}  # fmt: skip
    model.idata = stack.from_dict({"posterior": posterior})
    values = group_log_likelihood(model)
    assert values.dims[-1] == "treatment" and values.shape == (2, 50, 3)
    d = model.design
    Z = random_effects_matrix(d).toarray()
    sd_a, sd_b = posterior["sd_treatment"][0, 0, 0], posterior["sd_treatment:litter"][0, 0, 0]
    cov_b = np.diag(np.r_[np.full(3, sd_a**2), np.full(d.blocks[1].n_levels, sd_b**2)])
    sigma, beta = posterior["sigma"][0, 0], posterior["beta"][0, 0]
    for j in range(3):
        rows = d.blocks[0].codes == j
        V = sigma**2 * np.eye(rows.sum()) + Z[rows] @ cov_b @ Z[rows].T
        dense = st.multivariate_normal(d.X[rows] @ beta, V).logpdf(d.y[rows])
        assert float(values[0, 0, j]) == pytest.approx(dense, rel=1e-10)
    assert len(stack.pointwise_elpd(loo(model, by="group"))) == 3


def test_loo_compare_refuses_what_it_cannot_compare(sleep_models, sleepstudy):
    with pytest.raises(bl.ComparisonError, match="at least two"):
        bl.loo_compare({"slope": sleep_models["slope"]})
    with pytest.raises(bl.ComparisonError, match="bl.LMM"):
        bl.loo_compare({"a": sleep_models["slope"], "b": "model"})
    with pytest.raises(ValueError, match="by must be"):
        bl.loo_compare(sleep_models, by="row")
    fewer = bl.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy.iloc[:170])
    fewer.idata = sleep_models["slope"].idata
    with pytest.raises(bl.ComparisonError, match="same rows"):
        bl.loo_compare({"a": sleep_models["slope"], "b": fewer})
    by_day = bl.LMM("Reaction ~ Days + (1 | Days)", sleepstudy)
    by_day.idata = sleep_models["intercept"].idata
    with pytest.raises(bl.ComparisonError, match="same groups"):
        bl.loo_compare({"a": sleep_models["intercept"], "b": by_day})
    crossed = bl.LMM("Reaction ~ Days + (1 | Subject) + (1 | Days)", sleepstudy)
    crossed.idata = sleep_models["intercept"].idata
    with pytest.raises(bl.ComparisonError, match="crossed"):
        bl.loo_compare({"a": sleep_models["intercept"], "b": crossed})
    assert len(bl.loo_compare({"a": sleep_models["intercept"], "b": crossed},
                              by="observation").table) == 2  # fmt: skip
