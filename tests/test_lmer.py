"""REML/ML fits against lme4 (tests/data/reference/lme4_reference.json)."""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.classical.lmer import SingularFitWarning, lmer, satterthwaite

CASES = ["classroom_ri", "classroom_rs", "sleepstudy_rs", "sleepstudy_ri", "ratpup_sex", "dyestuff"]


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.mark.parametrize("mode", ["REML", "ML"])
@pytest.mark.parametrize("case_id", CASES)
def test_matches_lme4(lme4_reference, case_data, case_id, mode):
    case = lme4_reference[case_id]
    ref = case[mode]
    tol = 1e-3 if ref["singular"] else 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        fit = lmer(case["formula"], case_data(case), reml=mode == "REML")
    assert fit.singular == ref["singular"]
    for name, value in ref["fixef"].items():
        assert _rel(fit.fixef[name], value) < tol, name
        assert _rel(fit.se[name], ref["se"][name]) < tol, name
    assert _rel(fit.sigma, ref["sigma"]) < tol
    assert _rel(fit.loglik, ref["logLik"]) < tol
    assert _rel(fit.criterion, ref["deviance_or_reml_crit"]) < tol
    ours = fit.varcorr()
    assert len(ours) == len(ref["varcorr"])
    for row, r in zip(ours.itertuples(), ref["varcorr"], strict=True):
        var1 = row.var1 if pd.notna(row.var1) else None
        assert (row.grp, var1) == (r["grp"], r["var1"])
        if r["var2"] is None:  # SDs; correlations of a singular fit are not identified
            assert _rel(row.sdcor, r["sdcor"]) < tol, (row.grp, row.var1)
        elif not ref["singular"]:
            assert abs(row.sdcor - r["sdcor"]) < 1e-3
    st = satterthwaite(fit)
    for name, value in ref["df_satterthwaite"].items():
        assert _rel(st.loc[name, "df"], value) < 1e-2, name
        assert st.loc[name, "t"] == pytest.approx(ref["t"][name], rel=tol)
    for r in ref["ranef"]:
        table = fit.ranef()[r["group"]]
        assert list(map(str, table.index)) == r["levels"]  # integer factors: integer levels
        theirs = np.array(r["values"])
        err = np.max(np.abs(table.to_numpy() - theirs)) / np.max(np.abs(theirs))
        assert err < 1e-3, r["group"]


def test_singular_fit_warns(classroom):
    with pytest.warns(SingularFitWarning, match="singular"):
        fit = lmer("score ~ edu + (1 + edu|classroom)", classroom)
    assert fit.singular


def test_information_criteria(sleepstudy):
    fit = lmer("Reaction ~ Days + (Days|Subject)", sleepstudy, reml=False)
    assert fit.n_params == 6
    assert fit.aic == pytest.approx(-2 * fit.loglik + 12)
    assert fit.bic == pytest.approx(-2 * fit.loglik + 6 * np.log(180))
    table = fit.coefficients()
    assert table.loc["Days", "z"] == pytest.approx(fit.fixef["Days"] / fit.se["Days"])


def test_nested_and_crossed_fit_and_make_sense(ratpup):
    # litter labels are unique across treatments, so treatment:litter is litter itself
    inner = lmer("weight ~ sex + (1|treatment:litter)", ratpup, reml=False)
    litter = lmer("weight ~ sex + (1|litter)", ratpup, reml=False)
    assert inner.loglik == pytest.approx(litter.loglik, abs=1e-8)
    by_litter = inner.ranef()["treatment:litter"].rename(index=lambda lab: lab.split(":")[1])
    np.testing.assert_allclose(
        by_litter.loc[litter.ranef()["litter"].index.astype(str)].to_numpy(),
        litter.ranef()["litter"].to_numpy(),
        rtol=1e-5,
        atol=1e-6,  # two optimiser runs: theta agrees to ~1e-6
    )
    # nested and crossed models contain (1|litter) as a boundary case: ML loglik >= it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        nested = lmer("weight ~ sex + (1|treatment/litter)", ratpup, reml=False)
        crossed = lmer("weight ~ sex + (1|litter) + (1|litsize)", ratpup, reml=False)
    assert set(nested.ranef()) == {"treatment", "treatment:litter"}
    assert nested.loglik >= litter.loglik - 1e-8
    assert crossed.ranef()["litsize"].shape == (ratpup["litsize"].nunique(), 1)
    assert crossed.loglik >= litter.loglik - 1e-8


def test_lmer_does_not_touch_the_data(sleepstudy):
    data = sleepstudy.copy()
    lmer("Reaction ~ Days + (Days|Subject)", data)
    pd.testing.assert_frame_equal(data, sleepstudy)


def test_conditional_sd_of_blups_matches_closed_form(sleepstudy):
    """Random intercept: Var(b_j | y) = 1 / (n_j / sigma^2 + 1 / tau^2)."""
    fit = bl.lmer("Reaction ~ Days + (1|Subject)", sleepstudy)
    tau2 = fit.varcorr()["vcov"].iloc[0]
    expected = np.sqrt(1 / (10 / fit.sigma**2 + 1 / tau2))
    np.testing.assert_allclose(fit.ranef_sd()["Subject"]["(Intercept)"], expected, rtol=1e-8)
    table = fit.ranef_table()
    assert list(table.columns[:3]) == ["group", "level", "term"]
    assert (table["lower"] < table["estimate"]).all() and (table["estimate"] < table["upper"]).all()


def test_fitted_residuals_and_confint(sleepstudy):
    fit = bl.lmer("Reaction ~ Days + (Days|Subject)", sleepstudy)
    np.testing.assert_allclose(fit.fitted() + fit.residuals(), sleepstudy["Reaction"])
    # conditional residuals are orthogonal to X at the PLS solution
    np.testing.assert_allclose(fit.design.X.T @ fit.residuals(), 0, atol=1e-6)
    wald = fit.confint()
    half = 1.959963984540054 * fit.se
    np.testing.assert_allclose(wald["upper"] - fit.fixef, half)
    satt = fit.confint(method="satterthwaite")
    assert (satt["upper"] - satt["lower"] > wald["upper"] - wald["lower"]).all()
    with pytest.raises(ValueError, match="method"):
        fit.confint(method="profile")


@pytest.mark.parametrize(
    ("dataset", "formula"),
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
        ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
        ("ratpup", "weight ~ treatment + sex + litsize + (1 | litter)"),
        ("ratpup", "weight ~ sex + (1 | litter) + (0 + litsize | litter)"),
        ("sleepstudy", "Reaction ~ 0 + (Days | Subject)"),
    ],
)
@pytest.mark.parametrize("reml", [True, False])
def test_exact_gradient_of_the_profiled_deviance(dataset, formula, reml):
    from bayeslmm.gaussian.profiled import ThetaLayout, grouped_deviance, profiled
    from bayeslmm.gaussian.statistics import CrossProducts
    from bayeslmm.spec.design import build_design

    design = build_design(formula, bl.load_dataset(dataset))
    cp, layout = CrossProducts.from_design(design), ThetaLayout.from_design(design)
    theta = layout.start() + np.random.default_rng(1).uniform(0, 0.5, layout.n_theta)
    dev, grad = grouped_deviance(theta, cp.grouped, layout, reml)
    assert dev == pytest.approx(profiled(theta, cp, layout, reml).deviance, rel=1e-12)
    h = 1e-5
    numeric = [
        (profiled(theta + h * e, cp, layout, reml).deviance
         - profiled(theta - h * e, cp, layout, reml).deviance) / (2 * h)
        for e in np.eye(layout.n_theta)
    ]  # fmt: skip
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4)


def _lme4_group(ours: str, names: set[str] | None = None) -> str:
    """lme4 names the inner factor of ``a/b`` ``b:a`` (levels ``b_i:a_j``); we say ``a:b``.
    A written interaction ``(1 | a:b)`` keeps its order in both: where ``names`` (lme4's
    groups) has ours as it is, it stays."""
    if names is not None and re.sub(r"\.\d+$", "", ours) in names:
        return ours
    return ":".join(reversed(ours.split(":")))


def _factor(grp: str) -> str:
    """A VarCorr group without its block number: lme4 splits ``(x || g)`` into ``g``,
    ``g.1``, ... where we keep one diagonal block ``g`` (brms' layout); (term, factor)
    still names each variance component once."""
    return re.sub(r"\.\d+$", "", grp)


DATA = Path(__file__).parent / "data"
NESTED_CROSSED = {
    **json.loads((DATA / "lme4_nested_crossed.json").read_text())["cases"],
    **json.loads((DATA / "lme4_crossed.json").read_text())["cases"],
    **json.loads((DATA / "lme4_classic.json").read_text())["cases"],
}


def _case_data(case: dict) -> pd.DataFrame:
    """A shipped data set, or a CSV of tests/data (grouping columns as text)."""
    name = case["file"].removesuffix(".csv")
    if name in bl.list_datasets():
        return bl.load_dataset(name)
    text = ["subj", "item", "site", "Worker", "plate", "sample", "batch", "cask"]
    return pd.read_csv(DATA / case["file"], dtype=dict.fromkeys(text, str))


@pytest.mark.parametrize("mode", ["REML", "ML"])
@pytest.mark.parametrize("case_id", sorted(NESTED_CROSSED))
def test_nested_and_crossed_match_lme4(case_id, mode):
    """Own cases, fitted by lme4 1.1-31 / lmerTest 3.1-3 (tests/data/lme4_nested_crossed.R and
    lme4_crossed.R: crossed subjects x items designs with up to 4 correlated terms per factor;
    lme4_classic.R: lme4's Penicillin and Pastes, nlme's Machines)."""
    case = NESTED_CROSSED[case_id]
    ref = case[mode]
    tol = 1e-3 if ref["singular"] else 1e-4
    data = _case_data(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        fit = lmer(case["formula"], data, reml=mode == "REML")
    assert fit.singular == ref["singular"]
    for name, value in ref["fixef"].items():
        assert _rel(fit.fixef[name], value) < tol, name
        assert _rel(fit.se[name], ref["se"][name]) < tol, name
    for attr, key in (
        ("sigma", "sigma"),
        ("loglik", "logLik"),
        ("criterion", "deviance_or_reml_crit"),
    ):
        assert _rel(getattr(fit, attr), ref[key]) < tol, attr
    lme4_groups = {_factor(r["grp"]) for r in ref["varcorr"]}
    ours = {(_factor(_lme4_group(r.grp, lme4_groups)), r.var1 if pd.notna(r.var1) else None,
             r.var2 if pd.notna(r.var2) else None): r.sdcor
            for r in fit.varcorr().itertuples()}  # fmt: skip
    theirs = {(_factor(r["grp"]), r["var1"], r["var2"]): r["sdcor"] for r in ref["varcorr"]}
    assert ours.keys() == theirs.keys()
    # both optima agree to ~1e-7 in the criterion; the SDs of these flat likelihoods
    # (3 treatments, 15 litter sizes) are only defined to ~2e-4 by that
    assert fit.criterion <= ref["deviance_or_reml_crit"] + 1e-6
    for key, value in theirs.items():
        if value > 1e-6 * ref["sigma"]:  # a variance on the boundary is ~0 in both
            assert _rel(ours[key], value) < max(tol, 5e-4), key
        else:
            assert ours[key] < 1e-3 * ref["sigma"], key
    st = satterthwaite(fit)
    # at a singular optimum the Hessian in (theta, sigma) is nearly singular along the flat
    # boundary, so df move with where on it either optimiser stops (estimates agree above):
    # si_correlated4 by ML (20 theta, two on the bound), P's df is 14.9 or 17.9 at optima
    # 1e-10 apart in the criterion, lme4's 16.3 between them
    for name, value in ref["df_satterthwaite"].items():
        assert _rel(st.loc[name, "df"], value) < (0.15 if ref["singular"] else 1e-2), name
    ranef = {_lme4_group(g, lme4_groups): (g, table) for g, table in fit.ranef().items()}
    for r in ref["ranef"]:
        group, table = ranef[r["group"]]
        table = table.rename(index=str)  # lme4's labels: integer levels as text
        if group != r["group"]:
            table = table.rename(index=_lme4_group)
        theirs = pd.DataFrame(r["values"], index=r["levels"], columns=r["terms"])
        assert set(table.index) == set(theirs.index), r["group"]
        diff = table.loc[theirs.index, theirs.columns].to_numpy() - theirs.to_numpy()
        scale = max(np.max(np.abs(theirs.to_numpy())), 1e-6 * ref["sigma"])
        assert np.max(np.abs(diff)) / scale < max(tol * 10, 1e-3), r["group"]
