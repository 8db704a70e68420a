"""ICC and R2 (bl.icc, bl.r2) against R's performance::icc / performance::r2_nakagawa
(tests/data/performance_icc_r2.R wrote tests/data/performance_icc_r2.json: lme4 1.1-31,
nlme 3.1-162, performance 0.10.2, insight 0.19.0), and prediction summaries."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayeslmm as bl
from bayeslmm.bayes import stack
from bayeslmm.bayes.partition import icc_draws, r2_draws, variance_draws
from bayeslmm.errors import ArgumentError, RowsNotInMemoryError, UnknownNameError
from bayeslmm.gaussian.partition import variance_parts

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "performance_icc_r2.json").read_text())["cases"]
TEXT = ["subj", "item", "site", "plate", "sample", "batch", "cask"]
#: insight 0.19.0 sums the variances of the VarCorr groups named like ranef()'s, so a
#: second block of one factor, (0 + Days | Subject) beside (1 | Subject), is left out
#: of its var.random: checked separately (test_second_block_of_a_factor_counts)
LEAVES_OUT_A_BLOCK = {"sleepstudy_uncorrelated"}


def _data(case: dict) -> pd.DataFrame:
    name = case["file"].removesuffix(".csv")
    if name in bl.list_datasets():
        return bl.load_dataset(name)
    return pd.read_csv(DATA / case["file"], dtype=dict.fromkeys(TEXT, str))


def _lmer(case: dict) -> bl.LmerResult:
    residual = bl.AR1(time="Days", group="Subject") if "residual" in case else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", bl.SingularFitWarning)  # none of these is singular
        return bl.lmer(case["formula"], _data(case), residual=residual)


def _key(label: str) -> tuple:
    """A VarCorr group as a key, whichever order lme4 writes a nested factor's parts in
    (``cask:batch`` is our ``batch:cask``)."""
    base, _, number = label.partition(".")
    return frozenset(base.split(":")), number


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def _by_group(table: pd.DataFrame) -> dict:
    rows = table.loc[table["component"] == "group", "estimate"]
    return {_key(name): value for name, value in rows.items()}


@pytest.mark.parametrize("case_id", sorted(set(REF) - LEAVES_OUT_A_BLOCK))
def test_lmer_icc_r2_match_performance(case_id):
    """End to end: our REML fit, then ICC and R2, against lme4 (nlme for AR1) + performance.
    Measured: totals at most 5.0e-7 relative (rat pups' conditional ICC), factors' shares
    at most 1.1e-6 (Pastes' 10 batches, a flat direction of the likelihood: our REML
    criterion is 9e-11 below lme4's), as far as the two optimisers' estimates differ."""
    case = REF[case_id]
    fit = _lmer(case)
    icc, r2 = bl.icc(fit), bl.r2(fit)
    assert list(icc.index[-2:]) == ["adjusted", "conditional"]
    assert _rel(icc.loc["adjusted", "estimate"], case["icc_adjusted"]) < 1e-6
    assert _rel(icc.loc["conditional", "estimate"], case["icc_conditional"]) < 1e-6
    assert _rel(r2.loc["conditional", "estimate"], case["r2_conditional"]) < 1e-6
    if case["r2_marginal"] == 0:  # an intercept-only fixed part explains nothing
        assert r2.loc["marginal", "estimate"] == 0
    else:
        assert _rel(r2.loc["marginal", "estimate"], case["r2_marginal"]) < 1e-6
    ours = _by_group(icc)
    assert set(ours) == {_key(g) for g in case["icc_by_group"]}
    slopes = any(len(c["terms"]) > 1 for c in case.get("covariances", []))
    if not slopes:  # performance's by-group ICC takes intercept variances alone
        for group, value in case["icc_by_group"].items():
            assert _rel(ours[_key(group)], value) < 2e-6, group
    else:  # ours: each factor's mean variance over the rows, adding up to the adjusted ICC
        assert sum(ours.values()) == pytest.approx(icc.loc["adjusted", "estimate"], rel=1e-12)


def _r_covariances(case: dict, design) -> list[np.ndarray]:
    if "covariances" not in case:  # the lme case: one random intercept
        return [np.array([[case["var_intercept"][b.group]]]) for b in design.blocks]
    theirs = {_key(c["grp"]): (c["terms"], np.array(c["matrix"], dtype=float).reshape(
        len(c["terms"]), len(c["terms"]))) for c in case["covariances"]}  # fmt: skip
    out = []
    for block in design.blocks:
        terms, matrix = theirs[_key(block.label)]
        assert terms == block.columns
        out.append(matrix)
    return out


@pytest.mark.parametrize("case_id", sorted(REF))
def test_variances_of_r_estimates_match_insight(case_id):
    """The arithmetic alone: R's own estimates (fixef, VarCorr, sigma) in, insight's
    var.fixed / var.random / var.residual out, to 1e-10."""
    case = REF[case_id]
    design = bl.build_design(case["formula"], _data(case))
    beta = np.array([case["fixef"][name] for name in design.fixed_names])
    parts = variance_parts(design, beta, _r_covariances(case, design), np.array(case["sigma"]))
    assert _rel(float(parts.residual), case["var_residual"]) < 1e-12
    if case["var_fixed"] == 0:
        assert float(parts.fixed) < 1e-9
    else:
        assert _rel(float(parts.fixed), case["var_fixed"]) < 1e-10
    if case_id not in LEAVES_OUT_A_BLOCK:
        assert _rel(float(parts.random_total), case["var_random"]) < 1e-10


def test_second_block_of_a_factor_counts(sleepstudy):
    """(1 | Subject) + (0 + Days | Subject): both blocks count, the slope's as its variance
    times mean(Days^2) (insight's own formula for a slope), where insight 0.19.0 keeps the
    intercept's alone."""
    case = REF["sleepstudy_uncorrelated"]
    design = bl.build_design(case["formula"], sleepstudy)
    covs = _r_covariances(case, design)
    beta = np.array([case["fixef"][name] for name in design.fixed_names])
    parts = variance_parts(design, beta, covs, np.array(case["sigma"]))
    slope = covs[1][0, 0] * np.mean(sleepstudy["Days"].to_numpy(float) ** 2)
    assert case["var_random"] == pytest.approx(covs[0][0, 0], rel=1e-12)
    assert float(parts.random["Subject"]) == pytest.approx(case["var_random"] + slope, rel=1e-12)


def _point_posterior(fit: bl.LmerResult, draws: int = 3) -> xr.Dataset:
    """A 'posterior' whose every draw is the REML estimate, under the model's names."""
    values = {"sigma": np.full((1, draws), fit.sigma)}
    if fit.design.n_fixed:
        values["beta"] = np.broadcast_to(fit.fit.beta, (1, draws, fit.design.n_fixed))
    for block, cov, u in zip(fit.design.blocks, fit.covariances(), fit._effects(), strict=True):
        sd = np.sqrt(np.diag(cov))
        values[f"sd_{block.label}"] = np.broadcast_to(sd, (1, draws, len(sd)))
        if block.correlated:
            rows, cols = np.tril_indices(block.n_terms, k=-1)
            cor = cov[rows, cols] / (sd[rows] * sd[cols])
            values[f"cor_{block.label}"] = np.broadcast_to(cor, (1, draws, len(cor)))
        values[f"u_{block.label}"] = np.broadcast_to(u, (1, draws, *u.shape))
    data = {k: (("chain", "draw", *[f"{k}_{i}" for i in range(v.ndim - 2)]), np.array(v))
            for k, v in values.items()}  # fmt: skip
    return xr.Dataset(data, coords={"chain": [0], "draw": np.arange(draws)})


def _Posterior(post: xr.Dataset):  # noqa: N802 - stands where a fit's results stand
    """Results holding ``post`` as their posterior, in the installed ArviZ's container."""
    return stack.from_datasets(posterior=post)


@pytest.mark.parametrize("case_id", sorted(REF))
def test_per_draw_icc_of_the_estimates_is_the_lmer_icc(case_id):
    """The posterior path (covariances from SD and correlation draws, nested and crossed
    factors, slopes, AR(1)) on draws that all equal the REML estimate gives its ICC."""
    fit = _lmer(REF[case_id])
    draws = icc_draws(_Posterior(_point_posterior(fit)), fit.design)
    expected = fit.icc()["estimate"]
    assert list(draws["component"].values) == list(expected.index)
    np.testing.assert_allclose(draws.values[0], np.tile(expected.to_numpy(), (3, 1)),
                               rtol=1e-10)  # fmt: skip


def test_per_draw_r2_of_the_estimates(sleepstudy):
    """brms' bayes_R2 on draws that all equal the REML estimate and conditional modes:
    var(fitted) / (var(fitted) + var(residual)), conditional and marginal (X beta)."""
    fit = bl.lmer("Reaction ~ Days + (Days|Subject)", sleepstudy)
    r2 = r2_draws(_Posterior(_point_posterior(fit)), fit.design)
    fitted, y = fit.fitted(), fit.design.y
    cond = np.var(fitted, ddof=1) / (np.var(fitted, ddof=1) + np.var(y - fitted, ddof=1))
    xb = fit.design.X @ fit.fit.beta
    marg = np.var(xb, ddof=1) / (np.var(xb, ddof=1) + np.var(y - xb, ddof=1))
    np.testing.assert_allclose(r2.sel(component="conditional").values, cond, rtol=1e-12)
    np.testing.assert_allclose(r2.sel(component="marginal").values, marg, rtol=1e-12)


def test_no_random_effects():
    case = REF["sleepstudy_ri_ar1"]
    gls = bl.lmer("Reaction ~ Days", _data(case), residual=bl.AR1(time="Days", group="Subject"))
    with pytest.raises(ArgumentError, match="no random effects"):
        gls.icc()
    r2 = gls.r2()["estimate"]
    assert r2["marginal"] == pytest.approx(r2["conditional"])
    with pytest.raises(ArgumentError, match="hdi_prob"):
        bl.icc(_lmer(case), hdi_prob=0.9)
    with pytest.raises(ArgumentError, match="bl.LMM"):
        bl.r2("not a fit")


# --- a small posterior: per-draw arithmetic, closeness to lmer, prediction summaries ---


@pytest.fixture(scope="module")
def posterior(sleepstudy, quiet_fit):
    model = bl.LMM("Reaction ~ Days + (Days|Subject)", sleepstudy)
    return quiet_fit(model, draws=300, tune=300, chains=2, random_seed=7)


def test_bayes_icc_r2_per_draw_by_numpy(posterior, sleepstudy):
    post = posterior.idata.posterior
    S = post.sizes["chain"] * post.sizes["draw"]
    beta = post["beta"].values.reshape(S, -1)
    sd = post["sd_Subject"].values.reshape(S, 2)
    cor = post["cor_Subject"].values.reshape(S)
    sigma = post["sigma"].values.reshape(S)
    u = post["u_Subject"].values.reshape(S, -1, 2)
    X, y = posterior.design.X, posterior.design.y
    block = posterior.design.blocks[0]
    icc, r2 = np.empty((S, 3)), np.empty((S, 2))
    for s in range(S):  # one draw at a time, as the formulas read
        cov = np.array([[sd[s, 0] ** 2, cor[s] * sd[s, 0] * sd[s, 1]],
                        [cor[s] * sd[s, 0] * sd[s, 1], sd[s, 1] ** 2]])  # fmt: skip
        v_fix = np.var(X @ beta[s], ddof=1)
        v_ran = np.mean([z @ cov @ z for z in block.Z])
        v_res = sigma[s] ** 2
        icc[s] = [v_ran / (v_ran + v_res), v_ran / (v_ran + v_res), v_ran / (v_fix + v_ran + v_res)]
        for j, mu in enumerate([X @ beta[s] + np.sum(block.Z * u[s][block.codes], axis=1),
                                X @ beta[s]]):  # fmt: skip
            r2[s, j] = np.var(mu, ddof=1) / (np.var(mu, ddof=1) + np.var(y - mu, ddof=1))
    ours = icc_draws(posterior.idata, posterior.design).values.reshape(S, 3)
    np.testing.assert_allclose(ours, icc, rtol=1e-10)
    np.testing.assert_allclose(r2_draws(posterior.idata, posterior.design).values.reshape(S, 2),
                               r2, rtol=1e-10)  # fmt: skip
    table = bl.icc(posterior, hdi_prob=0.9)
    assert list(table.columns) == ["component", "mean", "sd", "hdi_5%", "hdi_95%"]
    assert table.loc["adjusted", "mean"] == pytest.approx(icc[:, 1].mean(), rel=1e-12)
    assert table.loc["conditional", "sd"] == pytest.approx(icc[:, 2].std(ddof=1), rel=1e-10)
    assert posterior.r2().loc["marginal", "mean"] == pytest.approx(r2[:, 1].mean(), rel=1e-12)


def test_bayes_icc_r2_near_lmer(posterior, sleepstudy):
    """Posterior medians near the REML values (0.722 adjusted ICC, 0.799 conditional R2),
    which lie inside the 94% HDIs."""
    fit = bl.lmer("Reaction ~ Days + (Days|Subject)", sleepstudy)
    icc = icc_draws(posterior.idata, posterior.design)
    ours = fit.icc()["estimate"]
    for name in ("adjusted", "conditional"):
        median = float(icc.sel(component=name).median())
        assert abs(median - ours[name]) < 0.06, name
        table = posterior.icc()
        assert table.loc[name, "hdi_3%"] < ours[name] < table.loc[name, "hdi_97%"], name
    # Bayesian R2 (residual-based) and Nakagawa's R2 measure the same share here
    r2 = posterior.r2()
    theirs = fit.r2()["estimate"]
    for name in ("conditional", "marginal"):
        assert abs(r2.loc[name, "mean"] - theirs[name]) < 0.05, name
    parts = variance_draws(posterior.idata, posterior.design)
    assert np.all(parts.residual > 0) and np.all(parts.random["Subject"] > 0)


def test_predict_summary(posterior):
    grid = pd.DataFrame({"Days": [0.0, 4.5, 9.0], "Subject": [308, 308, 999]},
                        index=["a", "b", "c"])  # fmt: skip
    draws = posterior.predict(grid, random_seed=1)
    table = posterior.predict(grid, summary=True, random_seed=1)
    assert list(table.index) == ["a", "b", "c"]
    assert list(table.columns) == ["mean", "sd", "hdi_3%", "hdi_97%"]
    np.testing.assert_allclose(table["mean"], draws.mean(("chain", "draw")).values, rtol=1e-12)
    np.testing.assert_allclose(table["sd"], draws.std(("chain", "draw"), ddof=1).values)
    response = posterior.predict(grid, kind="response", summary=True, hdi_prob=0.9,
                                 random_seed=1)  # fmt: skip
    mean90 = posterior.predict(grid, summary=True, hdi_prob=0.9, random_seed=1)
    assert np.all(response["hdi_95%"] - response["hdi_5%"] > mean90["hdi_95%"] - mean90["hdi_5%"])
    assert np.all(response["sd"] > mean90["sd"])


def test_predict_population_needs_no_group_column(posterior):
    grid = pd.DataFrame({"Days": np.arange(10.0)})  # no Subject column
    draws = posterior.predict(grid, include_random=False)
    beta = posterior.idata.posterior["beta"].values
    expected = beta[..., 0:1] + beta[..., 1:2] * grid["Days"].to_numpy()
    np.testing.assert_allclose(draws.values, expected, rtol=1e-12)
    table = posterior.predict(data=grid, include_random=False, summary=True)
    np.testing.assert_allclose(table["mean"], expected.mean(axis=(0, 1)), rtol=1e-12)
    with pytest.raises(UnknownNameError, match="Subject"):
        posterior.predict(grid)  # the group effects need the group column
    with pytest.raises(ArgumentError, match="hdi_prob"):
        posterior.predict(grid, include_random=False, hdi_prob=0.9)
    with pytest.raises(ArgumentError, match="not both"):
        posterior.predict(grid, newdata=grid)
    old = posterior.predict(newdata=grid, include_random=False)
    np.testing.assert_array_equal(old.values, draws.values)


def test_r2_refused_without_rows(posterior, monkeypatch):
    monkeypatch.setattr(type(posterior.design), "rows_in_memory", property(lambda self: False))
    with pytest.raises(RowsNotInMemoryError, match="r2"):
        posterior.r2()


def test_icc_names_in_public_api():
    assert {"icc", "r2"} <= set(bl.__all__)


def test_report_has_icc_and_r2(posterior, tmp_path):
    from bayeslmm.present.report import _estimates_section, _Writer

    w = _Writer(tmp_path)
    summary = posterior.summary(print_it=False, hdi_prob=0.9)
    _estimates_section(w, posterior, summary, 0.9)
    icc = pd.read_csv(w.tables["icc"])
    assert list(icc.columns) == ["icc", "component", "mean", "sd", "hdi_5%", "hdi_95%"]
    expected = posterior.icc(hdi_prob=0.9)
    np.testing.assert_allclose(icc["mean"], expected["mean"], rtol=1e-9)
    assert list(pd.read_csv(w.tables["r2"])["r2"]) == ["conditional", "marginal"]
    page = w.render("t", "s")
    assert "Intraclass correlation" in page and "Bayesian R2" in page


def test_lmer_icc_of_a_dask_dataframe_equals_pandas(sleepstudy):
    """The variances read only the design's sums: a Dask DataFrame's fit (its rows never
    gathered) gives the pandas fit's ICC and R2."""
    dd = pytest.importorskip("dask.dataframe")
    import dask

    formula = "Reaction ~ Days + (Days|Subject)"
    with dask.config.set(scheduler="synchronous"):
        lazy = bl.lmer(formula, dd.from_pandas(sleepstudy, npartitions=3))
        icc, r2 = lazy.icc(), lazy.r2()
    fit = bl.lmer(formula, sleepstudy)
    np.testing.assert_allclose(icc["estimate"], fit.icc()["estimate"], rtol=1e-9)
    np.testing.assert_allclose(r2["estimate"], fit.r2()["estimate"], rtol=1e-9)


def test_bayes_icc_with_ar1_residuals(sleepstudy, quiet_fit):
    """A residual structure: the residual variance is sigma^2 per draw (each residual's
    variance under AR(1)); nlme + insight's ICC lies inside the posterior's HDI, and the
    R2 (residual-based, as brms) is defined as without one."""
    case = REF["sleepstudy_ri_ar1"]
    model = bl.LMM(case["formula"], sleepstudy, residual=bl.AR1(time="Days", group="Subject"))
    quiet_fit(model, draws=200, tune=200, chains=2, random_seed=3)
    icc = model.icc()
    for name in ("adjusted", "conditional"):
        assert icc.loc[name, "hdi_3%"] < case[f"icc_{name}"] < icc.loc[name, "hdi_97%"]
    parts = variance_draws(model.idata, model.design)
    np.testing.assert_allclose(parts.residual, model.idata.posterior["sigma"].values ** 2)
    r2 = model.r2()
    assert 0 < r2.loc["marginal", "mean"] < r2.loc["conditional", "mean"] < 1
