"""Marginal means (emmeans' reference grid) and conditional effects (brms' grid), against
R: tests/data/emmeans_reference.R wrote emmeans_reference.json (emmeans 1.8.4.1 with
lmer.df = "satterthwaite", lme4 1.1.31, lmerTest 3.1.3)."""

import json
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.spec.grid import RESOLUTION, reference_grid

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "tests" / "data" / "emmeans_reference.json").read_text())
CASES = [(case, spec) for case in REFERENCE["cases"] for spec in case["specs"]]


def _by(spec) -> list[str]:
    return [spec["by"]] if isinstance(spec["by"], str) else list(spec["by"])


@pytest.fixture(scope="module")
def lmer_fits():
    return {case["id"]: bl.lmer(case["formula"], pd.read_csv(ROOT / case["file"]))
            for case in REFERENCE["cases"]}  # fmt: skip


@pytest.mark.parametrize(("case", "spec"), CASES,
                         ids=[f"{c['id']}-{'.'.join(_by(s))}" for c, s in CASES])  # fmt: skip
def test_lmer_marginal_means_match_emmeans(case, spec, lmer_fits):
    table = lmer_fits[case["id"]].marginal_means(spec["by"])
    ref = pd.DataFrame(spec["rows"])
    by = _by(spec)
    pd.testing.assert_frame_equal(table[by].astype(str), ref[by])  # same cells, same order
    np.testing.assert_allclose(table["estimate"], ref["emmean"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(table["se"], ref["SE"], rtol=1e-4)
    np.testing.assert_allclose(table["df"], ref["df"], rtol=1e-4)
    np.testing.assert_allclose(table["lower"], ref["lower.CL"], rtol=1e-4)
    np.testing.assert_allclose(table["upper"], ref["upper.CL"], rtol=1e-4)


def test_satterthwaite_is_the_identity_contrast(lmer_fits):
    fit = lmer_fits["ratpup_additive"]
    se, df = bl.classical.lmer.contrast_satterthwaite(fit, np.eye(len(fit.fixef)))
    table = bl.satterthwaite(fit)
    np.testing.assert_allclose(se, table["se"], rtol=1e-12)
    np.testing.assert_allclose(df, table["df"], rtol=1e-12)


def test_reference_grid_averages_other_factors_with_equal_weights(lmer_fits):
    fit = lmer_fits["ratpup_interaction"]
    grid = reference_grid(fit.design, "treatment")
    names = fit.design.fixed_names
    # Control row: intercept 1, litsize at its mean, half of the Male rows
    control = dict(zip(names, grid.L[0], strict=True))
    assert control["(Intercept)"] == 1.0 and control["sexMale"] == 0.5
    assert control["litsize"] == pytest.approx(fit.design.frame["litsize"].mean(), rel=1e-14)
    assert control["treatmentHigh:sexMale"] == 0.0
    assert dict(zip(names, grid.L[1], strict=True))["treatmentHigh:sexMale"] == 0.5


def test_marginal_means_errors_name_the_variable(lmer_fits):
    fit = lmer_fits["ratpup_additive"]
    with pytest.raises(bl.ArgumentError, match="'litsize' is a numeric covariate"):
        fit.marginal_means("litsize")
    with pytest.raises(bl.UnknownNameError, match="'litter' is not a variable of the fixed"):
        fit.marginal_means("litter")
    with pytest.raises(bl.ArgumentError, match="names a column twice"):
        fit.marginal_means(["sex", "sex"])
    with pytest.raises(bl.ArgumentError, match="level must be"):
        fit.marginal_means("sex", level=95)


@pytest.fixture(scope="module")
def ratpup_lmm(quiet_fit):
    data = pd.read_csv(ROOT / REFERENCE["conditional"]["file"])
    model = bl.LMM(REFERENCE["conditional"]["formula"], data)
    return quiet_fit(model, draws=300, tune=300, chains=2, random_seed=5)


def test_posterior_marginal_means_are_draws_of_the_grid(ratpup_lmm, lmer_fits):
    table = ratpup_lmm.marginal_means(["treatment", "sex"], hdi_prob=0.9)
    assert list(table.columns) == ["treatment", "sex", "mean", "sd", "hdi_5%", "hdi_95%"]
    beta = ratpup_lmm.idata.posterior["beta"].values.reshape(-1, len(ratpup_lmm.design.fixed_names))
    L = reference_grid(ratpup_lmm.design, ["treatment", "sex"]).L
    np.testing.assert_allclose(table["mean"], (beta @ L.T).mean(axis=0), rtol=1e-12)
    assert (table["hdi_5%"] < table["mean"]).all() and (table["mean"] < table["hdi_95%"]).all()
    # weakly informative priors: the posterior mean lies near emmeans' REML estimate
    case = next(c for c in REFERENCE["cases"] if c["id"] == "ratpup_covariate_interaction")
    ref = pd.DataFrame(case["specs"][0]["rows"])
    treatment = ratpup_lmm.marginal_means("treatment")
    assert (np.abs(treatment["mean"] - ref["emmean"]) < 0.25 * treatment["sd"]).all()


def test_conditional_effects_match_lme4_grid(ratpup_lmm):
    ref = pd.DataFrame(REFERENCE["conditional"]["rows"])
    effects = ratpup_lmm.conditional_effects("litsize", by="treatment")
    table = effects.table
    assert effects.conditions == {"sex": "Female"}  # brms: factors at the reference level
    assert len(table) == RESOLUTION * 3
    np.testing.assert_allclose(table["litsize"], ref["litsize"], rtol=1e-13)
    assert (table["treatment"] == ref["treatment"]).all()
    # the posterior mean of X beta along the grid: near lme4's predict(re.form = NA)
    assert (np.abs(table["mean"] - ref["estimate"]) < 0.25 * table["sd"]).all()
    # the same numbers as the model's own population-level predictions
    newdata = table[["litsize", "treatment"]].assign(sex="Female", litter=1)
    draws = ratpup_lmm.predict(newdata, include_random=False)
    np.testing.assert_allclose(table["mean"], draws.mean(("chain", "draw")), rtol=1e-12)


def test_conditional_effects_by_covariate_and_factor_effect(ratpup_lmm):
    data = ratpup_lmm.design.frame
    effects = ratpup_lmm.conditional_effects("treatment", by="litsize")
    mean, sd = data["litsize"].mean(), data["litsize"].std()
    np.testing.assert_allclose(sorted(effects.table["litsize"].unique()),
                               [mean - sd, mean, mean + sd], rtol=1e-13)  # fmt: skip
    assert effects.factor and list(effects.table["treatment"][:3]) == ["Control", "High", "Low"]
    fig = effects.plot(points=True)
    assert len(fig.axes[0].collections) >= 1
    fig = bl.plots.conditional_effects(ratpup_lmm.conditional_effects("litsize"))
    assert fig.axes[0].get_xlabel() == "litsize"
    with pytest.raises(bl.UnknownNameError, match="'litter' is not a variable"):
        ratpup_lmm.conditional_effects("litter")
    with pytest.raises(bl.ArgumentError, match="same variable"):
        ratpup_lmm.conditional_effects("sex", by="sex")
    with pytest.raises(bl.ArgumentError, match="one effect and at most one 'by'"):
        ratpup_lmm.conditional_effects(["sex", "litsize"])


def test_unfitted_model_says_so(sleepstudy):
    model = bl.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy)
    with pytest.raises(bl.NotFittedError):
        model.marginal_means("Days")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(bl.NotFittedError):
            model.conditional_effects("Days")


def test_relevel_holds_factors_at_their_reference_level(ratpup):
    """``relevel(x, "b")`` makes "b" the reference level: conditional effects hold the
    factor there (brms' default) and emmeans lists it first; the cell means themselves do
    not depend on the contrast, so they equal the plain formula's."""
    from bayeslmm.spec.grid import effect_grid

    releveled = 'weight ~ litsize + relevel(treatment, "High") + (1 | litter)'
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = bl.lmer(releveled, ratpup), bl.lmer("weight ~ litsize + treatment + (1 | litter)",
                                                  ratpup)  # fmt: skip
    assert effect_grid(a.design, "litsize").conditions["treatment"] == "High"
    assert effect_grid(b.design, "litsize").conditions["treatment"] == "Control"
    ma, mb = a.marginal_means("treatment"), b.marginal_means("treatment")
    assert list(ma["treatment"]) == ["High", "Control", "Low"]
    merged = ma.merge(mb, on="treatment", suffixes=("_a", "_b"))
    np.testing.assert_allclose(merged["estimate_a"], merged["estimate_b"], rtol=1e-7)
    np.testing.assert_allclose(merged["se_a"], merged["se_b"], rtol=1e-5)
