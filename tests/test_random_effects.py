"""Which random effects does the data support? The fitted model against its neighbours."""

import warnings

import numpy as np
import pytest

import bayeslmm as bl

FAST = {"draws": 1000, "tune": 1000, "chains": 2, "progressbar": False, "random_seed": 1}


def test_sleepstudy_needs_the_random_slope_not_the_correlation(sleepstudy):
    model = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy,
                   priors={"sigma": bl.Prior("HalfNormal", sigma=40)})  # fmt: skip
    model.fit(**FAST)
    result = bl.compare_random_effects(model)
    t = result.table.set_index("kind")
    assert list(t.index) == ["slope", "correlation"]
    assert t.loc["slope", "verdict"] == "needed" and t.loc["correlation", "verdict"] == "not needed"
    slope = t.loc["slope"]
    assert slope["Df"] == 2 and slope["p_boundary"] < 1e-8 and slope["log_BF"] > 10
    assert slope["AIC_diff"] > 0 and slope["elpd_diff"] > 0 and slope["log_BF_error"] < 0.1
    assert t.loc["correlation", "null"] == "chi2(1)"  # nothing on the boundary
    assert result.group == "Subject" and len(result.loo.table) == 3
    assert result.summary.startswith("The data support the random slope of Days")
    assert "Reaction ~ Days + (Days || Subject) is enough" in result.summary
    assert result.conclusions[0].startswith("The random slope of Days in (Days | Subject) is "
                                            "needed")  # fmt: skip
    # the neighbours share the fitted model's priors (a Bayes factor compares like with like)
    for n in result.neighbours:
        assert n.bayes.priors["sigma"] == bl.Prior("HalfNormal", sigma=40)
        assert n.bayes.design.n_obs == 180 and n.bayes.idata.posterior.sizes["draw"] == 1000
    # the REML test is lmerTest's ranova row
    ranova = bl.ranova(result.reml).table
    assert slope["LRT"] == pytest.approx(ranova["LRT"].iloc[1])


def test_classroom_does_not_need_the_random_slope(classroom):
    result = bl.compare_random_effects("score ~ edu + (1 + edu | classroom)", classroom,
                                       target_accept=0.99, **FAST)  # fmt: skip
    t = result.table.set_index("kind")
    assert t.loc["slope", "verdict"] == "not needed"
    assert t.loc["slope", "p_boundary"] > 0.5 and t.loc["slope", "log_BF"] < -np.log(3)
    assert t.loc["correlation", "moot"] and not t.loc["slope", "moot"]
    assert result.summary == ("The data do not support the random slope of edu in "
                              "(1 + edu | classroom). The simpler model score ~ edu + "
                              "(1 | classroom) is enough.")  # fmt: skip
    assert "which the data do not support" in result.conclusions[1]
    # three classrooms: LOGO is rough, and the sentence says so wherever PSIS flags a level
    # (whether it does depends on the draws and on the ArviZ line's Pareto k estimate)
    k_high = int(t.loc["slope", "k_high"])
    assert ("Pareto k is high" in result.conclusions[0]) == (k_high > 0)


def test_frequentist_only_on_request_and_crossed_without_groups_to_leave_out(sleepstudy, classroom):
    result = bl.compare_random_effects("score ~ edu + (1 + edu | classroom)", classroom,
                                       bayes=False)  # fmt: skip
    assert result.model is None and result.loo is None
    assert result.table["log_BF"].isna().all()
    assert list(result.table["verdict"]) == ["not needed", "not needed"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.SingularFitWarning)
        warnings.simplefilter("ignore", bl.ConvergenceWarning)
        crossed = bl.compare_random_effects(
            "Reaction ~ Days + (Days | Subject) + (1 | Days)", sleepstudy, draws=500, tune=500,
            chains=2, random_seed=1)  # fmt: skip
    # crossed factors: Bayes factors, but no factor's levels split the data into groups
    assert (
        "Leave-one-group-out was not computed" in crossed.notes[0] and "crossed" in crossed.notes[0]
    )
    assert crossed.model is not None and crossed.table["log_BF"].notna().all()
    assert crossed.table.set_index("kind").loc["slope", "verdict"] == "needed"
    alone = bl.compare_random_effects("Reaction ~ Days + (1 | Subject)", sleepstudy)
    assert alone.table.empty and "no slope or correlation" in alone.summary


def test_compare_random_effects_checks_its_input(sleepstudy):
    with pytest.raises(bl.ComparisonError, match="data is missing"):
        bl.compare_random_effects("Reaction ~ Days + (Days | Subject)")
    model = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    with pytest.raises(bl.ComparisonError, match="only with a formula"):
        bl.compare_random_effects(model, sleepstudy)
    with pytest.raises(bl.ComparisonError, match="bl.LMM or a formula"):
        bl.compare_random_effects(42)
