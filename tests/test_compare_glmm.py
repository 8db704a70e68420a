"""bl.compare for binomial, Bernoulli and Poisson mixed models (bayeslmm/comparison/glmm.py).

Outside references (tests/data/glm_compare.R -> glm_compare.json): R's glm() for every GLM
row (complete pooling, group dummies, aggregation; MASS's glm.nb for the negative
binomial), R's per-level glm() for the two-stage and no-pooling estimates, lme4's
ranef(condVar = TRUE) for the conditional modes and SDs. The glmer row must equal bl.glmer
exactly.

cbpp's period is a factor; the numeric term compared is ``time``, the period as a number
(1-4), made here and in the R script alike.
"""

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.comparison.glm import GlmResponse, per_level_glm, separation
from bayeslmm.errors import ArgumentError, ComparisonError, DataError, FormulaError
from bayeslmm.spec.family import get_family

matplotlib.use("Agg")

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "glm_compare.json").read_text())
CBPP = "cbind(incidence, size - incidence) ~ time + (1 | herd)"
GROUSE = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)"
GROUSE_OFFSET = "TICKS ~ YEAR + offset(log(HEIGHT / 100)) + (1 | LOCATION)"
VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
SMALL = {"draws": 200, "tune": 200, "chains": 2, "random_seed": 3}


def _cbpp() -> pd.DataFrame:
    d = pd.read_csv(DATA / "cbpp.csv")
    return d.assign(herd=d.herd.astype(str), time=d.period.astype(float))


def _grouse() -> pd.DataFrame:
    g = pd.read_csv(DATA / "grouseticks.csv")
    return g.assign(YEAR=g.YEAR.astype(str).astype("category"), BROOD=g.BROOD.astype(str),
                    LOCATION=g.LOCATION.astype(str))  # fmt: skip


def _ref(block: dict, name: str) -> tuple[float, float]:
    names = list(np.atleast_1d(block["names"]))
    j = names.index(name)
    return np.atleast_1d(block["estimate"])[j], np.atleast_1d(block["se"])[j]


def _row(comparison, model: str) -> pd.Series:
    return comparison.table.set_index("model").loc[model]


def _check_row(comparison, model: str, block: dict, name: str, rtol: float = 1e-6) -> None:
    row = _row(comparison, model)
    est, se = _ref(block, name)
    assert row["estimate"] == pytest.approx(est, rel=rtol)
    assert row["se"] == pytest.approx(se, rel=rtol)


@pytest.fixture(scope="module")
def cbpp():
    with pytest.warns(bl.ConvergenceWarning):  # 200 draws: ESS below 400
        return bl.compare(CBPP, _cbpp(), family="binomial", **SMALL)


@pytest.fixture(scope="module")
def verbagg():
    return bl.compare(VERBAGG, pd.read_csv(DATA / "verbagg.csv"), family="bernoulli",
                      bayes=False)  # fmt: skip


@pytest.fixture(scope="module")
def separated():
    return bl.compare("y ~ x + (1 | g)", pd.read_csv(DATA / "separation_sim.csv"),
                      family="bernoulli", bayes=False)  # fmt: skip


# -- cbpp: binomial, one factor -----------------------------------------------------------
def test_cbpp_glm_rows_equal_r(cbpp):
    ref = REF["cbpp"]
    _check_row(cbpp, "GLM-Global", ref["global"], "time")
    _check_row(cbpp, "GLM-Groups", ref["groups"], "time")
    _check_row(cbpp, "Aggregation (herd)", ref["aggregation"], "time")
    table = cbpp.table
    assert list(table["model"]) == ["GLM-Global", "GLM-Groups", "Aggregation (herd)",
                                    "Two-stage (herd)", "GLMM", "Bayes"]  # fmt: skip
    assert table.attrs == {"scale": "logit (link)", "ratio": "odds ratio"}
    np.testing.assert_allclose(table["exp_estimate"], np.exp(table["estimate"]))
    np.testing.assert_allclose(table["exp_ci_upper"], np.exp(table["ci_upper"]))


def test_cbpp_glmer_row_equals_bl_glmer(cbpp):
    fit = bl.glmer("cbind(incidence, size - incidence) ~ time + (1 | herd)", _cbpp(),
                   family="binomial")  # fmt: skip
    row = _row(cbpp, "GLMM")
    assert row["estimate"] == fit.fixef()["estimate"]["time"]
    assert row["se"] == fit.se["time"]
    assert row["p_value"] == pytest.approx(fit.coefficients().loc["time", "Pr(>|z|)"], rel=1e-12)
    assert cbpp.glmer.deviance == fit.deviance


def test_cbpp_two_stage_equals_r_per_herd_glm(cbpp):
    """The herds left out are exactly those whose own glm() R cannot fit to a finite
    estimate (a huge SE, or aliased with a single row); the rest equal R's."""
    own = cbpp.fit("Two-stage (herd)").coefficients["time"]
    r_est = {h: _ref(v, "time") for h, v in REF["cbpp"]["per_level"].items()}
    degenerate = {h for h, (e, s) in r_est.items() if e is None or s is None or s > 50}
    assert set(own.index.astype(str)) == set(r_est) - degenerate
    assert len(degenerate) == 3
    for h, value in own.items():
        assert value == pytest.approx(r_est[str(h)][0], rel=1e-6)
    kept = np.array([r_est[h][0] for h in r_est if h not in degenerate])
    row = _row(cbpp, "Two-stage (herd)")
    assert row["estimate"] == pytest.approx(kept.mean(), rel=1e-6)
    assert row["se"] == pytest.approx(kept.std(ddof=1) / np.sqrt(len(kept)), rel=1e-6)
    assert row["df"] == len(kept) - 1
    assert "3 of 15 herd levels left out" in row["note"]


def test_cbpp_no_pooling_equals_r_per_herd_glm(cbpp):
    """Each herd's own intercept with the fixed part as offset: against R's glm() with
    lme4's fixed effects as offset (to 1e-6), and in the shrinkage table (bl.glmer's
    fixed effects) to the glmer-lme4 agreement."""
    fit = cbpp.glmer
    design, resp = fit.design, fit.response
    beta = np.array(REF["cbpp"]["glmer"]["estimate"])
    codes, index = design.blocks[0].codes, design.blocks[0].level_values
    offset = GlmResponse(fit.family, resp.y, resp.weights, design.X @ beta + resp.offset)
    own = per_level_glm(np.ones((design.n_obs, 1)), ["(Intercept)"], offset, codes, index)
    r_own = {h: _ref(v, "(Intercept)")[0] for h, v in REF["cbpp"]["own"].items()}
    got = own.estimates["(Intercept)"]
    for h, value in got.items():
        assert value == pytest.approx(r_own[str(h)], rel=1e-6, abs=1e-8)
    shrink = cbpp.shrinkage().set_index("level")
    expected = pd.Series({h: r_own[str(h)] + beta[0] for h in got.index})
    np.testing.assert_allclose(shrink["no_pooling"].loc[got.index], expected, rtol=1e-4,
                               atol=1e-4)  # fmt: skip


def test_cbpp_conditional_modes_and_sd_equal_lme4(cbpp):
    shrink = cbpp.shrinkage()
    ref = REF["cbpp"]["condvar"]
    shrink = shrink.set_index(shrink["level"].astype(str)).loc[ref["levels"]]
    np.testing.assert_allclose(shrink["reml"] - shrink["population"], ref["mode"], rtol=1e-3,
                               atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(shrink["reml_sd"], ref["sd"], rtol=1e-3)


def test_cbpp_posterior_row_and_shrinkage(cbpp):
    row, glmm = _row(cbpp, "Bayes"), _row(cbpp, "GLMM")
    assert row["stat_type"] == "posterior"
    assert abs(row["estimate"] - glmm["estimate"]) < 3 * glmm["se"]
    assert row["ci_lower"] < row["estimate"] < row["ci_upper"]
    assert 0.5 <= row["pd"] <= 1
    shrink = cbpp.shrinkage()
    assert shrink.attrs["scale"] == "logit (link)"
    for col in ("no_pooling", "reml", "reml_sd", "population", "complete_pooling",
                "posterior_mean", "posterior_sd", "hdi_lower", "hdi_upper", "shrinkage",
                "shrinkage_posterior", "note"):  # fmt: skip
        assert col in shrink
    assert (shrink["hdi_lower"] < shrink["posterior_mean"]).all()
    assert (shrink["posterior_mean"] < shrink["hdi_upper"]).all()
    ok = shrink["no_pooling"].notna()
    # the Laplace modes of a random intercept shrink toward the population, never past it
    assert ((shrink.loc[ok, "shrinkage"] > 0) & (shrink.loc[ok, "shrinkage"] < 1)).all()
    assert shrink["complete_pooling"].iloc[0] == pytest.approx(
        _ref(REF["cbpp"]["global"], "(Intercept)")[0], rel=1e-6
    )


def test_cbpp_at_level_and_plots(cbpp):
    narrow = cbpp.at_level(0.5)
    np.testing.assert_array_equal(narrow.table["estimate"], cbpp.table["estimate"])
    width = (narrow.table["ci_upper"] - narrow.table["ci_lower"]).to_numpy()
    assert np.all(width[:-1] < (cbpp.table["ci_upper"] - cbpp.table["ci_lower"]).to_numpy()[:-1])
    for draw in (bl.plots.shrinkage_arrows, bl.plots.caterpillar, bl.plots.comparison_forest):
        assert isinstance(draw(cbpp), matplotlib.figure.Figure)
    axis = bl.plots.shrinkage_arrows(cbpp).get_axes()[0]
    assert axis.get_xlabel() == "(Intercept) [logit (link)]"  # the scale of the numbers
    with pytest.raises(ArgumentError, match="straight group lines of a Gaussian"):
        bl.plots.group_fits(cbpp)
    with pytest.raises(ArgumentError, match="several\n?.*grouping factors|needs a compare"):
        bl.plots.reml_posterior_forest(cbpp)
    matplotlib.pyplot.close("all")


def test_probit_link_has_no_ratio_columns():
    c = bl.compare(CBPP, _cbpp(), family="binomial", link="probit", bayes=False)
    _check_row(c, "GLM-Global", REF["cbpp"]["global_probit"], "time")
    assert c.table.attrs == {"scale": "probit (link)", "ratio": None}
    assert c.table[["exp_estimate", "exp_ci_lower", "exp_ci_upper"]].isna().all().all()
    assert c.table["note"].str.contains("the probit link's coefficients are not log").all()
    fit = bl.glmer(CBPP, _cbpp(), family=get_family("binomial", "probit"))
    assert _row(c, "GLMM")["estimate"] == fit.fixef()["estimate"]["time"]


def test_poisson_identity_link_has_no_aggregate():
    from bayeslmm.comparison.glmm import _aggregated

    resp = GlmResponse(get_family("poisson", "identity"), np.array([1.0, 2, 3, 4]),
                       np.ones(4), np.zeros(4))  # fmt: skip
    X = np.column_stack([np.ones(4), [0.0, 1, 2, 3]])
    with pytest.raises(DataError, match="not fitted: a Poisson total with the identity link"):
        _aggregated(X, ["(Intercept)", "x"], resp, np.array([0, 0, 1, 1]), 2, "x", "g")


# -- grouseticks: Poisson ------------------------------------------------------------------
def test_grouseticks_poisson_rows_equal_r():
    c = bl.compare(GROUSE, _grouse(), family="poisson", term="cHEIGHT", bayes=False)
    ref = REF["grouseticks"]
    _check_row(c, "GLM-Global", ref["global"], "cHEIGHT")
    _check_row(c, "Aggregation (BROOD)", ref["aggregation"], "cHEIGHT")
    assert c.table.attrs["ratio"] == "rate ratio"
    # cHEIGHT is a between-brood covariate: the brood dummies absorb it
    assert _row(c, "GLM-Groups")["note"].startswith("not identified: 'cHEIGHT'")
    assert np.isnan(_row(c, "GLM-Groups")["estimate"])
    assert "fewer than two levels of 'BROOD'" in _row(c, "Two-stage (BROOD)")["note"]
    fit = bl.glmer(GROUSE, _grouse(), family="poisson")
    assert _row(c, "GLMM")["estimate"] == fit.fixef()["estimate"]["cHEIGHT"]
    assert _row(c, "GLMM")["se"] == fit.se["cHEIGHT"]


def test_grouseticks_offset_zero_counts_against_r():
    """Locations whose counts are all 0 have an infinite dummy: R's glm prints a huge
    number for them; the table names them and equals R's fit of the other locations."""
    c = bl.compare(GROUSE_OFFSET, _grouse(), family="poisson", bayes=False)
    ref = REF["grouseticks_offset"]
    assert c.setup.term == "YEAR96"
    _check_row(c, "GLM-Global", ref["global"], "YEAR96")
    _check_row(c, "GLM-Groups", ref["groups"], "YEAR96")
    _check_row(c, "Aggregation (LOCATION)", ref["aggregation"], "YEAR96")
    assert ref["groups_full_max_abs"] > 15  # what R's glm() shows on all rows
    groups = c.fit("GLM-Groups")
    assert sorted(groups.infinite) == sorted(f"LOCATION[{z}]" for z in ref["zero_locations"])
    assert set(groups.infinite.values()) == {-1.0}
    assert "separation" in _row(c, "GLM-Groups")["note"]
    two = c.fit("Two-stage (LOCATION)").coefficients["YEAR96"]
    for loc, value in two.items():
        assert value == pytest.approx(_ref(ref["per_level"][loc], "YEAR96")[0], rel=1e-6)
    shrink = c.shrinkage().set_index("level")
    zero = shrink.loc[ref["zero_locations"]]
    assert zero["no_pooling"].isna().all()
    assert zero["note"].str.contains("every count 0").all()
    assert np.isfinite(shrink["reml"]).all() and np.isfinite(shrink["reml_sd"]).all()


def test_negative_binomial_rows_equal_mass_glm_nb():
    """theta by maximum likelihood in every GLM row (MASS's glm.nb), held at the
    level-dummies GLM's value in the per-level fits; the glmer row is bl.glmer's
    glmer.nb; the Bayes row is bl.LMM's posterior (theta sampled)."""
    c = bl.compare(GROUSE_OFFSET, _grouse(), family="negative_binomial", **SMALL)
    ref = REF["grouseticks_nb"]
    for model, key in (("GLM-Global", "global"), ("GLM-Groups", "groups"),
                       ("Aggregation (LOCATION)", "aggregation")):  # fmt: skip
        _check_row(c, model, ref[key], "YEAR96")
        assert c.fit(model).theta == pytest.approx(ref[key]["theta"], rel=1e-6)
        assert f"theta {ref[key]['theta']:.4g}" in _row(c, model)["note"]
    two = c.fit("Two-stage (LOCATION)").coefficients["YEAR96"]
    assert len(two) == 9
    for loc, value in two.items():
        assert value == pytest.approx(_ref(ref["per_level"][loc], "YEAR96")[0], rel=1e-6)
    assert "theta held at 2.719 (GLM-Groups)" in _row(c, "Two-stage (LOCATION)")["note"]
    fit = bl.glmer(GROUSE_OFFSET, _grouse(), family="negative_binomial")
    assert _row(c, "GLMM")["estimate"] == fit.fixef()["estimate"]["YEAR96"]
    assert _row(c, "GLMM")["se"] == fit.se["YEAR96"]
    bayes = c.fit("Bayes")
    assert bayes.family.negative_binomial and "theta" in bayes.population_variables()
    assert _row(c, "Bayes")["estimate"] == pytest.approx(
        float(bayes.fixef().loc["YEAR96", "mean"]), rel=1e-12)
    assert c.table.attrs["ratio"] == "rate ratio"
    shrink = c.shrinkage().set_index("level")
    assert shrink.loc[REF["grouseticks_offset"]["zero_locations"], "no_pooling"].isna().all()
    assert np.isfinite(shrink["reml_sd"]).all() and np.isfinite(shrink["posterior_mean"]).all()


# -- VerbAgg: Bernoulli, two crossed factors ------------------------------------------------
def test_verbagg_rows_equal_r(verbagg):
    ref = REF["verbagg"]
    assert verbagg.setup.groups == ("id", "item")
    _check_row(verbagg, "GLM-Global", ref["global"], "Anger")
    _check_row(verbagg, "Aggregation (id)", ref["aggregation_id"], "Anger")
    # Anger is constant within id: absorbed by the id dummies, no per-id slope, and the
    # item means of Anger are all the same
    for model in ("GLM-Groups", "Aggregation (item)", "Two-stage (id)"):
        assert np.isnan(_row(verbagg, model)["estimate"])
        assert "not identified" in _row(verbagg, model)["note"]
    two = verbagg.fit("Two-stage (item)").coefficients["Anger"]
    r_items = {k: _ref(v, "Anger")[0] for k, v in ref["per_item"].items()}
    assert len(two) == 24
    for item, value in two.items():
        assert value == pytest.approx(r_items[item], rel=1e-6)
    assert _row(verbagg, "Two-stage (item)")["estimate"] == pytest.approx(
        np.mean(list(r_items.values())), rel=1e-6
    )


def test_verbagg_glmer_row_and_shrinkage_per_factor(verbagg):
    data = pd.read_csv(DATA / "verbagg.csv")
    fit = bl.glmer(VERBAGG, data, family="bernoulli")
    assert _row(verbagg, "GLMM")["estimate"] == fit.fixef()["estimate"]["Anger"]
    assert _row(verbagg, "GLMM")["se"] == fit.se["Anger"]
    shrink = verbagg.shrinkage()
    assert set(shrink["group"]) == {"id", "item"}
    for g in ("id", "item"):
        ref = REF["verbagg"]["condvar"][g]
        part = shrink[shrink["group"] == g]
        part = part.set_index(part["level"].astype(str)).loc[ref["levels"]]
        np.testing.assert_allclose(part["reml_sd"], ref["sd"], rtol=2e-3)
        np.testing.assert_allclose(part["reml"] - part["population"], ref["mode"], rtol=2e-3,
                                   atol=2e-4)  # fmt: skip
    # the persons who answered every item alike have no estimate of their own
    share = data.assign(y=(data.r2 == "Y").astype(float)).groupby("id")["y"].mean()
    flagged = shrink[(shrink["group"] == "id") & shrink["no_pooling"].isna()]
    expected = {str(i) for i in share.index[(share == 0) | (share == 1)]}
    assert {str(v) for v in flagged["level"]} == expected and expected
    # ... and exactly their dummies are infinite in the GLM with level dummies
    assert set(verbagg.fit("GLM-Groups").infinite) == {f"id[{i}]" for i in expected}
    assert flagged["note"].str.contains("its own estimate is").all()
    fig = bl.plots.shrinkage_arrows(verbagg, "item")
    assert isinstance(fig, matplotlib.figure.Figure)
    matplotlib.pyplot.close("all")


def test_proportion_with_weights_is_the_cbind_comparison(cbpp):
    data = _cbpp().assign(prop=lambda d: d.incidence / d["size"])
    c = bl.compare("prop ~ time + (1 | herd)", data, family="binomial", weights="size",
                   bayes=False)  # fmt: skip
    ours = c.table.set_index("model")
    for model in ("GLM-Global", "GLM-Groups", "Aggregation (herd)", "Two-stage (herd)", "GLMM"):
        assert ours.loc[model, "estimate"] == pytest.approx(_row(cbpp, model)["estimate"],
                                                            rel=1e-9)  # fmt: skip


def test_verbagg_no_pooling_equals_r_per_person_glm(verbagg):
    """Two crossed factors: each person's own intercept, with the fixed part and the
    items' modes as offset, against R's glm() of the person's rows with lme4's fixed
    effects and item modes as offset (to 1e-6); R's huge estimates are exactly the
    persons flagged; the shrinkage table's (bl.glmer's offset) to the glmer-lme4 agreement."""
    fit, ref = verbagg.glmer, REF["verbagg"]
    design, resp = fit.design, fit.response
    assert list(design.fixed_names) == ref["glmer"]["names"]
    by = {b.group: b for b in design.blocks}
    modes = dict(zip(ref["condvar"]["item"]["levels"], ref["condvar"]["item"]["mode"],
                     strict=True))  # fmt: skip
    item_mode = np.array([modes[str(v)] for v in by["item"].level_values])
    eta = design.X @ np.array(ref["glmer"]["estimate"]) + item_mode[by["item"].codes]
    own = per_level_glm(np.ones((design.n_obs, 1)), ["(Intercept)"],
                        GlmResponse(fit.family, resp.y, resp.weights, eta),
                        by["id"].codes, by["id"].level_values)  # fmt: skip
    r_own = {k: np.atleast_1d(v["estimate"])[0] for k, v in ref["own_id"].items()}
    got = own.estimates["(Intercept)"]
    assert len(got) == 316
    for level, value in got.items():
        if np.isnan(value):
            assert abs(r_own[str(level)]) > 8  # R's glm runs off towards infinity
        else:
            assert value == pytest.approx(r_own[str(level)], rel=1e-6, abs=1e-9)
    assert got.isna().sum() == 9
    shrink = verbagg.shrinkage()
    part = shrink[shrink["group"] == "id"].set_index("level")["no_pooling"].dropna()
    expected = np.array([r_own[str(v)] for v in part.index]) + ref["glmer"]["estimate"][0]
    np.testing.assert_allclose(part.to_numpy(), expected, atol=2e-3)


# -- separation ---------------------------------------------------------------------------
def test_separation_groups_flagged_not_huge(separated):
    """g03 has no successes and g07 no failures: R's glm() gives their dummies huge
    values; the comparison says so and estimates the term from the other groups, as
    R's glm() of those groups does."""
    ref = REF["separation"]
    full = dict(zip(ref["groups_full"]["names"], ref["groups_full"]["estimate"], strict=True))
    assert full["factor(g)g03"] < -15 and full["factor(g)g07"] > 15
    _check_row(separated, "GLM-Global", ref["global"], "x")
    _check_row(separated, "GLM-Groups", ref["groups"], "x")
    _check_row(separated, "Aggregation (g)", ref["aggregation"], "x")
    assert separated.fit("GLM-Groups").infinite == {"g[g03]": -1.0, "g[g07]": 1.0}
    row = _row(separated, "Two-stage (g)")
    assert "2 of 12 g levels left out (2 separated: g03, g07)" in row["note"]
    kept = [_ref(v, "x")[0] for k, v in ref["per_level"].items() if k not in ("g03", "g07")]
    assert row["estimate"] == pytest.approx(np.mean(kept), rel=1e-6)
    numbers = separated.table[["estimate", "se", "ci_lower", "ci_upper"]].to_numpy(float)
    assert np.nanmax(np.abs(numbers)) < 20
    shrink = separated.shrinkage().set_index("level")
    assert shrink.loc[["g03", "g07"], "no_pooling"].isna().all()
    assert "no successes" in shrink.loc["g03", "note"]
    assert "no failures" in shrink.loc["g07", "note"]
    assert np.isfinite(shrink["reml"]).all()


def test_complete_separation_is_a_note_not_a_number():
    data = pd.read_csv(DATA / "separation_sim.csv")
    c = bl.compare("ysep ~ x + (1 | g)", data, family="bernoulli", bayes=False)
    assert REF["separation"]["complete_separation"]["se"][1] > 1e5  # R's glm: huge
    for model in ("GLM-Global", "GLM-Groups"):
        row = _row(c, model)
        assert np.isnan(row["estimate"])
        assert "'x' is not estimable: its maximum-likelihood estimate is +inf" in row["note"]
    assert "separated" in _row(c, "Two-stage (g)")["note"]
    numbers = c.table[["estimate", "se"]].to_numpy(float)
    assert np.nanmax(np.abs(numbers)) < 1e3
    note = _row(c, "GLMM")["note"]
    assert note.startswith("not fitted: the fixed part alone separates the data")
    assert "no finite maximum-likelihood estimate of 'x' exists" in note
    with pytest.raises(DataError, match="no GLMM model"):
        c.shrinkage()


def test_separation_linear_program():
    """Quasi-complete separation by x (ties at 0 mixed): x's coefficient is +inf and
    only the rows away from the tie are fitted exactly."""
    x = np.array([-2.0, -1.0, 0.0, 0.0, 1.0, 2.0])
    X = np.column_stack([np.ones(6), x])
    resp = GlmResponse(get_family("bernoulli"), np.array([0, 0, 0, 1, 1, 1.0]), np.ones(6),
                       np.zeros(6))  # fmt: skip
    d, rows = separation(X, resp)
    assert d[0] == 0 and d[1] > 0
    np.testing.assert_array_equal(rows, [True, True, False, False, True, True])
    overlap = GlmResponse(resp.family, np.array([0, 1, 0, 1, 0, 1.0]), np.ones(6), np.zeros(6))
    d, rows = separation(X, overlap)
    assert not rows.any() and not d.any()


# -- bad input ----------------------------------------------------------------------------
def test_bad_input_is_a_clear_error():
    data = _cbpp()
    with pytest.raises(FormulaError, match="term 'period' is not a fixed effect"):
        bl.compare(CBPP, data, family="binomial", term="period", bayes=False)
    with pytest.raises(ArgumentError, match="only Gaussian responses with the identity"):
        bl.compare("size ~ time + (1 | herd)", data, family="gaussian", link="log")
    with pytest.raises(ArgumentError, match="weights= and offset= are for the binomial"):
        bl.compare("incidence ~ time + (1 | herd)", data, weights="size")
    with pytest.raises(DataError, match="0/1"):
        bl.compare("incidence ~ time + (1 | herd)", data, family="bernoulli", bayes=False)
    model = bl.LMM(CBPP, data, family="binomial")
    with pytest.raises(ComparisonError, match="needs its formula and data"):
        bl.compare(model)
    with pytest.raises(ArgumentError, match="not a Design"):
        bl.compare(bl.LMM("size ~ time + (1 | herd)", data).design, family="poisson")
    assert not data.columns.str.startswith("(").any()  # the user's data untouched


# -- a correlated random slope ------------------------------------------------------------
def test_random_slope_conditional_sd_equal_lme4_and_2d_figure():
    data = pd.read_csv(DATA / "glmm_slopes.csv")
    data = data[data.g < 20].reset_index(drop=True)
    c = bl.compare("y ~ x + (1 + x | g)", data, family="bernoulli", bayes=False)
    ref = REF["slopes"]
    assert _row(c, "GLMM")["estimate"] == pytest.approx(ref["fixef"][1], rel=1e-3)
    shrink = c.shrinkage()
    assert set(shrink["term"]) == {"(Intercept)", "x"}
    for term, key in (("(Intercept)", "intercept"), ("x", "x")):
        part = shrink[shrink["term"] == term]
        part = part.set_index(part["level"].astype(str)).loc[ref["levels"]]
        np.testing.assert_allclose(part["reml_sd"], ref[f"sd_{key}"], rtol=2e-3)
        np.testing.assert_allclose(part["reml"] - part["population"], ref[f"mode_{key}"],
                                   rtol=2e-3, atol=2e-4)  # fmt: skip
    ellipse = c.population_ellipse(0.5)
    np.testing.assert_allclose(ellipse.mean(axis=0),
                               c.glmer.fixef()["estimate"][["(Intercept)", "x"]],
                               atol=0.05)  # fmt: skip
    assert isinstance(bl.plots.shrinkage_2d(c), matplotlib.figure.Figure)
    matplotlib.pyplot.close("all")


def test_fitted_model_becomes_the_bayes_row(cbpp):
    again = bl.compare(CBPP, _cbpp(), family="binomial", model=cbpp.bayes)
    assert again.bayes is cbpp.bayes
    np.testing.assert_array_equal(again.table["estimate"], cbpp.table["estimate"])
    with pytest.raises(ArgumentError, match="the model is"):
        bl.compare("cbind(incidence, size - incidence) ~ 1 + time + (1 | herd)", _cbpp(),
                   family="binomial", model=cbpp.bayes)  # fmt: skip


@pytest.mark.slow
def test_crossed_posterior_shrinkage_per_factor():
    """Several factors with the posterior: every level of both factors gets its posterior
    coefficient (30 persons of VerbAgg, all 24 items)."""
    data = pd.read_csv(DATA / "verbagg.csv")
    data = data[data.id.isin(sorted(data.id.unique())[:30])].reset_index(drop=True)
    with pytest.warns(bl.ConvergenceWarning):
        c = bl.compare("r2 ~ Anger + btype + (1 | id) + (1 | item)", data, family="bernoulli",
                       **SMALL)  # fmt: skip
    row = _row(c, "Bayes")
    assert abs(row["estimate"] - _row(c, "GLMM")["estimate"]) < 3 * _row(c, "GLMM")["se"]
    shrink = c.shrinkage()
    assert shrink.groupby("group")["posterior_mean"].count().to_dict() == {"id": 30, "item": 24}
    assert (shrink["hdi_lower"] < shrink["hdi_upper"]).all()
