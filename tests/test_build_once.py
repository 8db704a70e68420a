"""Build once, pass along: every distinct design of an analysis is built once.

``build_design`` is wrapped where every module of bayeslmm looks it up; each test lists
the distinct designs of its analysis and asserts one build each. The fits are checked
against statsmodels' formula interface (patsy, not bayeslmm's formula code) and against
the formula-and-data path."""

import collections
import dataclasses
import inspect
import sys
import warnings

import numpy as np
import pytest
import statsmodels.formula.api as smf

import bayeslmm as bl
import bayeslmm.spec.design as design_module
from bayeslmm.bayes.settings import FitInfo, FitSettings
from bayeslmm.classical.ols import ancova, ols, per_group_ols
from bayeslmm.present.cli import main

FIT = {"draws": 200, "tune": 200, "chains": 2, "random_seed": 1}
FAST = {**FIT, "progressbar": False}
SLEEP = "Reaction ~ Days + (Days | Subject)"
SLEEP_INTER = "Reaction ~ Days + (1 | Subject)"
SLEEP_SLOPES = "Reaction ~ Days + (1 + Days | Subject)"
MEANS = "Reaction ~ Days"  # OLS on the Subject means: a design of another data set
NESTED = "weight ~ sex + (1 | treatment/litter)"
NESTED_SLOPE = "weight ~ sex + (1 + sex | treatment) + (1 | treatment:litter)"
NESTED_INTER = "weight ~ sex + (1 | treatment) + (1 | treatment:litter)"


def _import_every_module() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(bl.__path__, "bayeslmm."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


@pytest.fixture
def builds(monkeypatch):
    """Formulas of every ``build_design`` call, counted (wrapped in every module that
    holds the function, so that a call by any name counts)."""
    _import_every_module()  # the package imports lazily: hold every module before wrapping
    original = design_module.build_design
    counted: collections.Counter = collections.Counter()

    def counting(formula, data, *args, **kwargs):
        counted[formula if isinstance(formula, str) else formula.formula] += 1
        return original(formula, data, *args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("bayeslmm") and getattr(module, "build_design", None) is original:
            monkeypatch.setattr(module, "build_design", counting)
    return counted


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_one_factor_compare_builds_each_design_once(sleepstudy, builds):
    # distinct designs: the formula's (= LMM-Full, Bayes-Full), the random-intercept
    # model's (LMM-Inter, Bayes-Inter, two-stage, the figures' rows; LM-Global's fixed
    # columns and the ANCOVA dummies derived from it) and the Subject means (Aggregation)
    comparison = bl.compare(SLEEP, sleepstudy, **FAST)
    assert builds == {SLEEP: 1, SLEEP_INTER: 1, MEANS: 1}
    assert comparison.fit("LMM-Full").design is comparison.fit("Bayes-Full").design
    inter = comparison.fit("LMM-Inter").design
    assert comparison.fit("Bayes-Inter").design is inter
    assert len(comparison.table) == 9


def test_one_factor_intercepts_formula(sleepstudy, builds):
    # the formula is the random-intercept model; the slopes model is the other design
    bl.compare(SLEEP_INTER, sleepstudy, bayes=False)
    assert builds == {SLEEP_INTER: 1, SLEEP_SLOPES: 1, MEANS: 1}


def test_compare_a_fitted_model_reuses_its_design_and_fit(sleepstudy, quiet_fit, builds):
    model = quiet_fit(bl.LMM(SLEEP, sleepstudy), **FIT)
    builds.clear()
    comparison = bl.compare(model, **FAST)
    assert builds == {SLEEP_INTER: 1, MEANS: 1}
    assert comparison.fit("Bayes-Full") is model
    assert comparison.fit("LMM-Full").design is model.design
    # the same table as from the formula and data (the model given as model=)
    again = bl.compare(SLEEP, sleepstudy, model=model, **FAST)
    columns = ["estimate", "se", "ci_lower", "ci_upper", "p_value"]
    same = again.table.set_index("model").drop(index="Bayes-Inter")[columns]
    got = comparison.table.set_index("model").drop(index="Bayes-Inter")[columns]
    np.testing.assert_allclose(got.to_numpy(float), same.to_numpy(float), rtol=1e-10)
    with pytest.raises(bl.ArgumentError, match="carries its rows"):
        bl.compare(model, sleepstudy)


def test_several_factors_compare(ratpup, quiet_fit, builds):
    # intercepts only: one design (REML, the classical models and the posterior)
    bl.compare(NESTED, ratpup, **FAST)
    assert builds == {NESTED: 1}
    builds.clear()
    # with a slope, the random-intercept model is the second design
    model = quiet_fit(bl.LMM(NESTED_SLOPE, ratpup), **FIT)
    builds.clear()
    comparison = bl.compare(model)
    assert builds == {NESTED_INTER: 1}
    assert comparison.reml.design is model.design and comparison.bayes is model


def test_compare_random_effects_builds_each_neighbour_once(sleepstudy, quiet_fit, builds):
    model = quiet_fit(bl.LMM(SLEEP, sleepstudy), **FIT)
    builds.clear()
    # the model's REML fit takes its design; each neighbour's design serves its REML and
    # its Bayesian fit
    result = bl.compare_random_effects(model, **FAST)
    neighbours = {"Reaction ~ Days + (1 | Subject)": 1, "Reaction ~ Days + (Days || Subject)": 1}
    assert builds == neighbours
    assert result.reml.design is model.design
    for n in result.neighbours:
        assert n.bayes.design is n.reml.design
    # the REML fits of a comparison are reused: the model's and the intercept neighbour's
    comparison = bl.compare(model, bayes=False)
    builds.clear()
    reused = bl.compare_random_effects(model, bayes=False, fits=comparison.fits)
    assert builds == {"Reaction ~ Days + (Days || Subject)": 1}
    assert reused.reml is comparison.fit("LMM-Full")
    assert reused.neighbours[0].reml is comparison.fit("LMM-Inter")
    np.testing.assert_allclose(reused.table["LRT"], result.table["LRT"], rtol=1e-8)


def test_report_builds_nothing(sleepstudy, quiet_fit, builds, tmp_path):
    model = quiet_fit(bl.LMM(SLEEP, sleepstudy), **FIT)
    comparison = bl.compare(model, **FAST)
    builds.clear()
    bl.report(model, comparison, tmp_path / "rep")
    assert builds == {}


@pytest.mark.parametrize("formula, designs", [
    # the formula's, the random-intercept model's (also the intercept neighbour's), the
    # Subject means and the uncorrelated neighbour
    (SLEEP, {SLEEP: 1, SLEEP_INTER: 1, MEANS: 1, "Reaction ~ Days + (Days || Subject)": 1}),
])  # fmt: skip
def test_cli_fit_one_factor(formula, designs, builds, tmp_path):
    args = ["fit", "sleepstudy", formula, "--out", str(tmp_path / "rep"), "--draws", "200",
            "--tune", "200", "--chains", "2", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert builds == designs


def test_cli_fit_several_factors(builds, tmp_path):
    # nested intercepts: no neighbour, and every model is the formula's
    args = ["fit", "rat_pup", NESTED, "--out", str(tmp_path / "rep"), "--draws", "200",
            "--tune", "200", "--chains", "2", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert builds == {NESTED: 1}


# ---------------------------------------------------------------------------------------
# the entry points take a built Design


def test_lmer_and_lmm_take_a_design(sleepstudy, builds):
    design = bl.build_design(SLEEP, sleepstudy)
    builds.clear()
    fit = bl.lmer(design)
    assert builds == {} and fit.design is design
    again = bl.lmer(SLEEP, sleepstudy)
    np.testing.assert_allclose(fit.theta, again.theta, rtol=1e-10)
    assert fit.loglik == pytest.approx(again.loglik, rel=1e-12)
    model = bl.LMM(design)
    assert model.design is design and model.formula == SLEEP
    with pytest.raises(bl.ArgumentError, match="carries its own rows"):
        bl.lmer(design, sleepstudy)
    with pytest.raises(bl.ArgumentError, match="residual"):
        bl.LMM(design, residual=bl.AR1(time="Days", group="Subject"))
    with pytest.raises(bl.ArgumentError, match="data is missing"):
        bl.LMM(SLEEP)


def test_ols_from_a_design_matches_statsmodels(ratpup):
    # ANCOVA's dummies from the design's level codes against patsy's C() coding
    data = ratpup.rename(columns={"treatment": "my group"})
    design = bl.build_design("weight ~ sex + litsize + (1 | `my group`)", data)
    cases = [((), "weight ~ sex + litsize + C(Q('my group'))"),
             (("litsize",), "weight ~ sex + litsize + C(Q('my group')) "
                            "+ litsize:C(Q('my group'))")]  # fmt: skip
    for slopes, formula in cases:
        ours = ancova(design, "my group", slopes)
        ref = smf.ols(formula, data).fit()
        np.testing.assert_allclose(np.sort(ours.result.params), np.sort(ref.params.to_numpy()),
                                   rtol=1e-9)  # fmt: skip
        np.testing.assert_allclose(np.sort(ours.result.bse), np.sort(ref.bse.to_numpy()),
                                   rtol=1e-9)  # fmt: skip
        # and the names the comparison reads, as the formula path names them
        text = ("weight ~ sex + litsize + C(`my group`)"
                + "".join(f" + {s}:C(`my group`)" for s in slopes))  # fmt: skip
        assert ours.names == ols(text, data).names
    complete = ols(design)
    ref = smf.ols("weight ~ sex + litsize", data).fit()
    np.testing.assert_allclose(complete.result.params, ref.params.to_numpy(), rtol=1e-9)
    two_stage = per_group_ols(bl.build_design("Reaction ~ Days + (1 | Subject)",
                                              bl.load_dataset("sleepstudy")))  # fmt: skip
    subject = bl.load_dataset("sleepstudy").query("Subject == 308")
    ref = smf.ols("Reaction ~ Days", subject).fit()
    np.testing.assert_allclose(two_stage.coefficients.loc[308].to_numpy(),
                               ref.params.to_numpy(), rtol=1e-9)  # fmt: skip


# ---------------------------------------------------------------------------------------
# FitSettings and FitInfo


def test_fit_settings_are_fit_keywords():
    parameters = inspect.signature(bl.LMM.fit).parameters
    fit_defaults = {k: p.default for k, p in parameters.items() if k != "self"}
    settings = {f.name: f.default for f in dataclasses.fields(FitSettings)}
    assert settings == fit_defaults
    with pytest.raises(bl.ArgumentError, match="unknown argument"):
        FitSettings.from_kwargs({"draw": 10})
    with pytest.raises(bl.ArgumentError, match="target_accept"):
        FitSettings(target_accept=1.5).check()
    with pytest.raises(bl.ArgumentError, match="method"):
        FitSettings(method="fast").check()


def test_fit_info(sleepstudy, quiet_fit):
    model = quiet_fit(bl.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy), **FIT)
    info = model.fit_info
    assert isinstance(info, FitInfo)
    assert info.settings.draws == 200 and info.settings.target_accept is None
    assert info.method == "marginal" and info.target_accept == model.default_target_accept
    assert info.seconds > 0 and info.divergences == model.convergence.divergences
    old = {"sampler": info.sampler, "method": "marginal", "draws": 200, "chains": 2, "tune": 200,
           "target_accept": 0.9, "random_seed": 1}  # a saved model's record before FitInfo
    assert model._fit_info.items() >= old.items()  # the private dict, as before
    restored = FitInfo.from_dict(old)
    assert restored.settings.chains == 2 and restored.seconds is None
    assert restored.as_dict() == old
