"""compare() with several grouping factors: REML beside the posterior for every population
parameter, shrinkage per factor and level, and the classical models that still apply."""

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import bayeslmm as bl  # noqa: E402
from bayeslmm import plots  # noqa: E402
from bayeslmm.comparison import MultiFactorComparison, compare  # noqa: E402

SMALL = {"draws": 200, "tune": 300, "chains": 2, "random_seed": 5}
CROSSED = "y ~ x + (1 | subj) + (1 | item)"
NESTED = "weight ~ sex + litsize + (1 | treatment/litter)"


def crossed_data(n_subj: int = 16, n_item: int = 10, seed: int = 3) -> pd.DataFrame:
    """Subjects x items, every subject seeing every item; x varies within both."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    x = rng.normal(size=subj.size)
    u_subj, u_item = rng.normal(0, 1.0, n_subj), rng.normal(0, 0.7, n_item)
    slope = rng.normal(0, 0.4, n_subj)
    y = 2 + (0.5 + slope[subj]) * x + u_subj[subj] + u_item[item] + rng.normal(0, 1, subj.size)
    return pd.DataFrame({"subj": [f"s{s:02d}" for s in subj],
                         "item": [f"i{i:02d}" for i in item], "x": x, "y": y})  # fmt: skip


def quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kwargs)


@pytest.fixture(scope="module")
def crossed():
    data = crossed_data()
    return data, quiet(compare, CROSSED, data, level=0.9, **SMALL)


@pytest.fixture(scope="module")
def nested(ratpup):
    return quiet(compare, NESTED, ratpup, **SMALL)


def _check_against_fits(comp: MultiFactorComparison, formula: str, data: pd.DataFrame) -> None:
    """REML columns are lmer's, posterior columns the model's own summaries."""
    reml = quiet(bl.lmer, formula, data)
    model = comp.bayes
    level = comp.level
    fixed = comp.fixed_effects()
    assert list(fixed["term"]) == reml.design.fixed_names
    np.testing.assert_allclose(fixed["reml_estimate"], reml.fixef, rtol=1e-6)
    np.testing.assert_allclose(fixed["reml_se"], reml.se, rtol=1e-6)
    satt = bl.satterthwaite(reml)
    np.testing.assert_allclose(fixed["df_satterthwaite"], satt["df"], rtol=1e-4)
    np.testing.assert_allclose(fixed["p_satterthwaite"], satt["p"], rtol=1e-4, atol=1e-12)
    assert (fixed["reml_lower"] < fixed["reml_estimate"]).all()
    summary = model.summary(print_it=False, hdi_prob=level).loc[reml.design.fixed_names]
    np.testing.assert_allclose(fixed["posterior_mean"], summary["mean"])
    np.testing.assert_allclose(fixed["posterior_sd"], summary["sd"])
    np.testing.assert_allclose(fixed["hdi_lower"], summary.filter(like="hdi_").iloc[:, 0])
    assert ((fixed["pd"] >= 0.5) & (fixed["pd"] <= 1)).all()

    vc = comp.variance_components()
    lme = reml.varcorr()
    assert len(vc) == len(lme) == len(reml.design.blocks) + 1  # intercepts + residual
    assert list(vc["grp"]) == list(lme["grp"])
    np.testing.assert_allclose(vc["reml"], lme["sdcor"], rtol=1e-6)
    post = model.varcorr(hdi_prob=level)
    assert list(vc["parameter"]) == list(post["parameter"])
    np.testing.assert_allclose(vc["posterior_mean"], post["mean"])
    np.testing.assert_allclose(vc["hdi_upper"], post.filter(like="hdi_").iloc[:, 1])


def test_crossed_reml_beside_posterior(crossed):
    data, comp = crossed
    assert isinstance(comp, MultiFactorComparison)
    assert comp.setup.groups == ("subj", "item") and comp.setup.structure.startswith("crossed")
    _check_against_fits(comp, CROSSED, data)


def test_nested_reml_beside_posterior(nested, ratpup):
    assert nested.setup.structure == (
        "nested: treatment (3 levels); treatment:litter (27 levels) nested in treatment"
    )
    _check_against_fits(nested, NESTED, ratpup)
    factors = nested.factors().set_index("factor")
    assert factors.loc["treatment:litter", "nested_in"] == "treatment"


@pytest.mark.parametrize("which", ["crossed", "nested"])
def test_shrinkage_per_factor_level_and_term(which, crossed, nested):
    comp = crossed[1] if which == "crossed" else nested
    sh = comp.shrinkage()
    reml = comp.reml
    for group, levels in reml.design.groups().items():
        part = sh[sh["group"] == group]
        assert list(part["level"]) == [str(lv) for lv in levels]
        coef = reml.ranef()[group]["(Intercept)"] + reml.fixef["(Intercept)"]
        np.testing.assert_allclose(part["reml"], coef)
        np.testing.assert_allclose(part["reml_sd"], reml.ranef_sd()[group]["(Intercept)"])
        post = comp.bayes.group_coefficients(group).sel(coef="(Intercept)")
        np.testing.assert_allclose(part["posterior_mean"], post.mean(("chain", "draw")))
        assert (part["hdi_lower"] < part["posterior_mean"]).all()
        # random intercepts: the textbook fraction, factor by factor, crossed or nested
        tau2 = reml.varcorr().set_index("grp").loc[group, "vcov"]
        expected = reml.sigma**2 / (reml.sigma**2 + part["n"] * tau2)
        np.testing.assert_allclose(part["shrinkage"], expected, rtol=1e-6)
        assert part["no_pooling"].notna().all() and (part["note"] == "").all()


def test_no_pooling_is_the_levels_own_fit_of_the_partial_residual():
    data = crossed_data(n_subj=10, n_item=8, seed=9)
    data.loc[data["subj"] == "s03", "x"] = 1.5  # s03 has no slope of its own
    formula = "y ~ x + (1 + x | subj) + (1 | item)"
    comp = quiet(compare, formula, data, bayes=False)
    reml = comp.reml
    own = comp.no_pooling("subj")
    assert np.isnan(own.loc["s03", "x"]) and "collinear" in own.loc["s03", "note"]
    u_item = reml.ranef()["item"]["(Intercept)"]
    partial = data["y"] - reml.fixef["(Intercept)"] - reml.fixef["x"] * data["x"]
    partial -= u_item.loc[data["item"]].to_numpy()
    rows = data["subj"] == "s05"
    Z = np.column_stack([np.ones(rows.sum()), data.loc[rows, "x"]])
    ols = np.linalg.lstsq(Z, partial[rows], rcond=None)[0]
    np.testing.assert_allclose(own.loc["s05", ["(Intercept)", "x"]], reml.fixef + ols)
    # the BLUP is that fit shrunk by the level's ridge: (Z'Z + sigma^2 D^-1)^-1 Z'r
    ridge = reml.sigma**2 * np.linalg.inv(reml.covariances()[0])
    blup = np.linalg.solve(Z.T @ Z + ridge, Z.T @ partial[rows])
    np.testing.assert_allclose(reml.ranef()["subj"].loc["s05"], blup, rtol=1e-6)
    sh = comp.shrinkage()
    s03 = sh[(sh["level"] == "s03") & (sh["term"] == "x")].iloc[0]
    assert np.isnan(s03["shrinkage"]) and s03["note"]
    assert list(dict.fromkeys(sh["term"][sh["group"] == "subj"])) == ["(Intercept)", "x"]
    assert "LMM-Inter" in comp.table["model"].tolist()


def test_classical_rows_of_a_crossed_design(crossed):
    data, comp = crossed
    table = comp.table.set_index("model")
    assert list(table.index) == ["LM-Global", "ANCOVA", "Aggregation (subj)",
                                 "Aggregation (item)", "Two-stage (subj)", "Two-stage (item)",
                                 "LMM", "Bayes"]  # fmt: skip
    import statsmodels.formula.api as smf

    ancova = smf.ols("y ~ x + C(subj) + C(item)", data).fit()
    assert table.loc["ANCOVA", "estimate"] == pytest.approx(ancova.params["x"], rel=1e-8)
    assert table.loc["ANCOVA", "se"] == pytest.approx(ancova.bse["x"], rel=1e-8)
    slopes = [np.polyfit(g["x"], g["y"], 1)[0] for _, g in data.groupby("subj")]
    assert table.loc["Two-stage (subj)", "estimate"] == pytest.approx(np.mean(slopes))
    assert table.loc["Two-stage (subj)", "df"] == len(slopes) - 1
    assert table.loc["LMM", "df_satterthwaite"] > 0 and table.loc["Bayes", "pd"] > 0.5
    assert table.loc["LMM", "se"] == pytest.approx(comp.reml.se["x"])  # lme4's SE


def test_classical_rows_say_what_is_not_identified(nested):
    notes = nested.table.set_index("model")["note"]
    assert "litsize" in notes["ANCOVA"]  # constant within litters: absorbed by their dummies
    assert notes["Two-stage (treatment:litter)"].startswith("1 of 27 treatment:litter levels")
    balanced = crossed_data(n_subj=6, n_item=4)
    balanced["x"] = np.tile([-0.5, 0.5], len(balanced) // 2)  # the same mean for every subject
    comp = quiet(compare, CROSSED, balanced, bayes=False)
    row = comp.table.set_index("model").loc["Aggregation (subj)"]
    assert np.isnan(row["estimate"]) and row["note"].startswith("not identified")


def test_model_argument_and_intercept_only(crossed):
    data, comp = crossed
    again = quiet(compare, CROSSED, data, model=comp.bayes)
    assert again.bayes is comp.bayes
    with pytest.raises(bl.ArgumentError, match="not a fit of"):
        quiet(compare, "y ~ x + (1 | subj) + (1 | item)", data.iloc[:-1], model=comp.bayes)
    only = quiet(compare, "y ~ 1 + (1 | subj) + (1 | item)", data, bayes=False)
    assert only.setup.term is None and only.table.empty
    assert list(only.fixed_effects()["term"]) == ["(Intercept)"]
    assert "posterior_mean" not in only.shrinkage()


def test_errors_and_untouched_data(crossed):
    data, _ = crossed
    before = data.copy()
    with pytest.raises(bl.FormulaError, match="nope"):
        compare(CROSSED, data, term="nope", bayes=False)
    with pytest.raises(bl.FormulaError, match="random term"):
        compare("y ~ x", data, bayes=False)
    with pytest.raises(bl.ArgumentError, match="grouping factor 'nobody'"):
        quiet(compare, CROSSED, data, bayes=False).no_pooling("nobody")
    pd.testing.assert_frame_equal(data, before)


def test_figures_per_factor(crossed):
    _, comp = crossed
    fig = plots.shrinkage_arrows(comp, "item")
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"i{i:02d}" for i in range(10)]
    assert plots.caterpillar(comp, "subj").get_axes()[0].get_ylabel() == "subj"
    with pytest.raises(bl.ArgumentError, match="no grouping factor"):
        plots.shrinkage_arrows(comp, "nobody")
    forest = plots.reml_posterior_forest(comp)
    titles = [a.get_title() for a in forest.get_axes()]
    assert titles == ["Intercept", "Fixed effects", "Standard deviations"]
    many = quiet(compare, CROSSED, crossed_data(n_subj=70, n_item=3), bayes=False)
    band = plots.shrinkage_arrows(many, "subj").get_axes()[0]
    assert band.get_yticks().size == 0 and "70 levels" in band.get_ylabel()


def test_report_of_a_nested_comparison(nested, tmp_path):
    files = quiet(bl.report, nested.bayes, nested, tmp_path / "nested", hdi_prob=0.9)
    assert not files.failed
    for name in ("factors", "reml_vs_posterior_fixed", "reml_vs_posterior_variance",
                 "comparison", "shrinkage"):  # fmt: skip
        assert files.tables[name].stat().st_size > 0, name
    for name in ("reml_posterior_forest", "comparison_forest", "shrinkage_arrows_treatment",
                 "caterpillar_treatment", "shrinkage_arrows_treatment_litter",
                 "caterpillar_treatment_litter"):  # fmt: skip
        assert files.figures[name].read_bytes()[:4] == b"\x89PNG", name
    page = files.html.read_text(encoding="utf-8")
    assert "nested: treatment (3 levels); treatment:litter (27 levels) nested in treatment" in page
    assert "<h3>treatment:litter: 27 levels</h3>" in page and "90% HDI" in page
    fixed = pd.read_csv(files.tables["reml_vs_posterior_fixed"])
    assert fixed["hdi_upper"].tolist() == pytest.approx(
        nested.at_level(0.9).fixed_effects()["hdi_upper"].tolist()
    )
