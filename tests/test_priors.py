import numpy as np
import pytest

from bayeslmm import LMM, Prior, PriorError, build_design, default_priors


def test_default_priors_follow_the_documented_rule(sleepstudy):
    design = build_design("Reaction ~ Days + (Days|Subject)", sleepstudy)
    priors = default_priors(design)
    s_y = sleepstudy["Reaction"].std(ddof=0)
    s_x = sleepstudy["Days"].std(ddof=0)
    slope = 2.5 * s_y / s_x
    assert priors["Days"] == Prior("Normal", mu=0.0, sigma=slope)
    intercept_sd = np.sqrt((2.5 * s_y) ** 2 + (sleepstudy["Days"].mean() * slope) ** 2)
    assert priors["(Intercept)"] == Prior(
        "Normal", mu=sleepstudy["Reaction"].mean(), sigma=intercept_sd
    )
    assert priors["sd((Intercept)|Subject)"] == Prior("HalfNormal", sigma=2.5 * s_y)
    assert priors["sd(Days|Subject)"] == Prior("HalfNormal", sigma=slope)
    assert priors["cor(Subject)"] == Prior("LKJ", eta=1.0)
    assert priors["sigma"] == Prior("HalfNormal", sigma=s_y)


def test_priors_scale_with_the_data(sleepstudy):
    scaled = sleepstudy.assign(Reaction=sleepstudy["Reaction"] / 1000)
    a = default_priors(build_design("Reaction ~ Days + (1|Subject)", sleepstudy))
    b = default_priors(build_design("Reaction ~ Days + (1|Subject)", scaled))
    assert b["Days"].params["sigma"] == pytest.approx(a["Days"].params["sigma"] / 1000)
    assert b["sigma"].params["sigma"] == pytest.approx(a["sigma"].params["sigma"] / 1000)


def test_overrides_by_class_and_by_name(sleepstudy):
    model = LMM(
        "Reaction ~ Days + (Days | Subject)",
        sleepstudy,
        priors={
            "fixed": Prior("Normal", mu=0, sigma=200),
            "sd": Prior("HalfNormal", sigma=50),
            "sigma": Prior("HalfNormal", sigma=50),
            "cor": Prior("LKJ", eta=2),
            "Days": Prior("Normal", mu=0, sigma=10),
            "sd(Days|Subject)": Prior("HalfNormal", sigma=5),
        },
    )
    p = model.priors
    assert p["(Intercept)"] == Prior("Normal", mu=0, sigma=200)  # "fixed" covers the intercept
    assert p["Days"] == Prior("Normal", mu=0, sigma=10)  # a name beats its class
    assert p["sd((Intercept)|Subject)"] == Prior("HalfNormal", sigma=50)
    assert p["sd(Days|Subject)"] == Prior("HalfNormal", sigma=5)
    assert p["cor(Subject)"] == Prior("LKJ", eta=2)
    model = LMM(
        "Reaction ~ Days + (Days || Subject)",  # independent SDs may differ in family
        sleepstudy,
        priors={
            "fixed": Prior("Normal", mu=0, sigma=200),
            "intercept": Prior("StudentT", nu=3, mu=250, sigma=50),
            "sd(Intercept|Subject)": Prior("Exponential", lam=0.1),
        },
    )
    assert model.priors["(Intercept)"].dist == "StudentT"
    assert model.priors["sd((Intercept)|Subject)"] == Prior("Exponential", lam=0.1)


def test_prior_reaches_the_pymc_model(sleepstudy):
    model = LMM(
        "Reaction ~ Days + (Days || Subject)",
        sleepstudy,
        priors={
            "Days": Prior("StudentT", nu=3, mu=0, sigma=10),
            "sigma": Prior("Exponential", lam=1),
        },
    )
    pm_model = model.pymc_model
    names = [rv.name for rv in pm_model.free_RVs]
    # mixed families give one variable per fixed effect, stacked into beta
    assert "beta[Days]" in names and "beta[(Intercept)]" in names
    assert pm_model["beta[Days]"].owner.op.name == "t"
    assert pm_model["sigma"].owner.op.name == "exponential"


@pytest.mark.parametrize(
    "priors, pattern",
    [
        ({"Dayz": Prior("Normal", mu=0, sigma=1)}, r"'Dayz' matches no parameter.*Days"),
        ({"sd": Prior("Normal", mu=0, sigma=1)}, "positive support"),
        ({"cor": Prior("HalfNormal", sigma=1)}, "LKJ"),
        ({"fixed": Prior("LKJ", eta=1)}, "correlations"),
        ({"sigma": 3.0}, "must be a bayeslmm.Prior"),
    ],
)
def test_bad_priors(sleepstudy, priors, pattern):
    with pytest.raises(PriorError, match=pattern):
        LMM("Reaction ~ Days + (Days | Subject)", sleepstudy, priors=priors)


def test_bad_prior_objects():
    with pytest.raises(PriorError, match="unknown prior family 'Normall'"):
        Prior("Normall", mu=0)
    with pytest.raises(PriorError, match="must be one finite number"):
        Prior("Normal", mu=0, sigma=np.inf)
    assert repr(Prior("Normal", mu=0, sigma=2.5)) == "Normal(mu=0, sigma=2.5)"


def test_mixed_sd_families_in_a_correlated_term_are_rejected(sleepstudy):
    with pytest.raises(PriorError, match="must share one family"):  # before any fit
        LMM(
            "Reaction ~ Days + (Days | Subject)",
            sleepstudy,
            priors={"sd(Days|Subject)": Prior("Exponential", lam=1)},
        )
