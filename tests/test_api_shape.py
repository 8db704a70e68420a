"""One API shape for bl.lmer() and bl.LMM results: accessors, the printed lmerTest summary
(against tests/data/lme4_print.json, written by tests/data/lme4_print.R) and the
deprecated spellings (warn, same result)."""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.errors import ArgumentError, interval_level
from bayeslmm.present.cli import build_parser

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
PRINT = json.loads((DATA / "lme4_print.json").read_text())["cases"]
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
QUICK = {"draws": 200, "tune": 200, "chains": 2, "random_seed": 1}


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(NUMBER, line)]


def _block(text: str, heading: str) -> list[str]:
    """The lines after ``heading`` up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading)) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


@pytest.fixture(scope="module")
def printed_fits():
    out = {}
    for case_id, case in PRINT.items():
        data = pd.read_csv(ROOT / case["file"])
        for mode in ("REML", "ML"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", bl.SingularFitWarning)
                out[case_id, mode] = bl.lmer(case["formula"], data, reml=mode == "REML")
    return out


@pytest.mark.parametrize("mode", ["REML", "ML"])
@pytest.mark.parametrize("case_id", list(PRINT))
def test_printed_lmer_summary_matches_lmertest(printed_fits, case_id, mode):
    """Every number print(bl.lmer(...)) shows against lmerTest's summary(), to the digits
    printed: criterion, AIC, BIC, logLik, df.resid, scaled residuals, variances, SDs,
    correlations, numbers of observations and levels, Estimate, Std. Error, df, t, p and
    the correlation of the fixed effects."""
    fit, ref = printed_fits[case_id, mode], PRINT[case_id][mode]
    text = repr(fit)
    assert str(fit) == text and len(text.splitlines()) < 40  # a summary, not the internals
    assert "Reaction" not in text or "Formula: Reaction" in text
    head = "REML" if mode == "REML" else "maximum likelihood"
    assert text.startswith(f"Linear mixed model fit by {head}")
    if mode == "REML":
        crit = _numbers(next(x for x in text.splitlines() if x.startswith("REML criterion")))
        assert crit[0] == pytest.approx(ref["criterion"], abs=0.051)
    lines = text.splitlines()
    at = next(i for i, x in enumerate(lines) if x.split()[:2] == ["AIC", "BIC"])
    values = dict(zip(lines[at].split(), _numbers(lines[at + 1]), strict=True))
    for name, key in [("AIC", "AIC"), ("BIC", "BIC"), ("logLik", "logLik")]:
        assert values[name] == pytest.approx(ref[key], abs=0.051), name
    if mode == "ML":
        assert values["deviance"] == pytest.approx(ref["criterion"], abs=0.051)
    assert values["df.resid"] == ref["df_resid"]
    quantiles = _numbers(_block(text, "Scaled residuals:")[1])
    np.testing.assert_allclose(quantiles, ref["scaled_residuals"], rtol=1e-3, atol=1e-4)
    # random effects: Variance and Std.Dev. per row, correlations in lme4's lower triangle
    header, *rows = _block(text, "Random effects:")[:-1]
    refs = [r for r in ref["varcorr"] if r["var2"] is None]
    assert len(rows) == len(refs)
    for row, r in zip(rows, refs, strict=True):
        nums = _numbers(row[header.index("Variance"):])
        assert nums[0] == pytest.approx(r["vcov"], rel=1e-3), row
        assert nums[1] == pytest.approx(r["sdcor"], rel=1e-3), row
        cors = [c["sdcor"] for c in ref["varcorr"] if c["grp"] == r["grp"]
                and c["var1"] is not None and c["var2"] == r["var1"]]  # fmt: skip
        np.testing.assert_allclose(nums[2:], cors, atol=0.0051)
    obs = next(x for x in text.splitlines() if x.startswith("Number of obs"))
    assert f"Number of obs: {ref['nobs']}" in obs
    for group, n in ref["ngrps"].items():
        assert f"{group}, {n}" in obs
    # fixed effects: Estimate, Std. Error, df, t value, Pr(>|t|)
    fixed = _block(text, "Fixed effects:")[1:-2]
    assert len(fixed) == len(ref["coefficients"])
    for row, r in zip(fixed, ref["coefficients"], strict=True):
        assert row.startswith(r["name"])
        nums = _numbers(row[len(r["name"]):].replace("< 2e-16", ""))
        np.testing.assert_allclose(nums[:4], [r["estimate"], r["se"], r["df"], r["t"]],
                                   rtol=1e-3)  # fmt: skip
        if "< 2e-16" in row:
            assert r["p"] < 2.2e-16
        else:
            assert nums[4] == pytest.approx(r["p"], rel=6e-3)
    cor = np.asarray(ref["fixef_correlation"], dtype=float)
    if cor.size > 1:
        lines = _block(text, "Correlation of Fixed Effects:")[1:]
        for i, line in enumerate(lines, start=1):
            np.testing.assert_allclose(_numbers(line.split(None, 1)[1]), cor[i, :i],
                                       atol=0.00051)  # fmt: skip


@pytest.mark.parametrize("mode", ["REML", "ML"])
@pytest.mark.parametrize("case_id", list(PRINT))
def test_lmer_summary_table_matches_lmertest(printed_fits, case_id, mode):
    """summary()'s table (unrounded) against lmerTest: fixed effects, SE, Satterthwaite df,
    t, p; SDs, correlations and sigma; the t interval from those."""
    fit, ref = printed_fits[case_id, mode], PRINT[case_id][mode]
    table = fit.summary()
    assert isinstance(table, pd.DataFrame) and repr(table) == repr(fit)
    for r in ref["coefficients"]:
        row = table.loc[r["name"]]
        assert row["component"] == "fixed"
        for ours, theirs in [("estimate", "estimate"), ("se", "se"), ("t", "t")]:
            assert row[ours] == pytest.approx(r[theirs], rel=1e-4), (r["name"], ours)
        assert row["df"] == pytest.approx(r["df"], rel=2e-3)
        assert row["p"] == pytest.approx(r["p"], rel=2e-2, abs=1e-15)
    sds = table.loc[table["component"] != "fixed", "estimate"].to_numpy()
    refs = [r["sdcor"] for r in ref["varcorr"]]  # same order: SDs, correlations, sigma
    varcorr = fit.varcorr()["sdcor"].to_numpy()
    np.testing.assert_allclose(np.sort(sds), np.sort(varcorr), rtol=1e-12)
    np.testing.assert_allclose(np.sort(sds), np.sort(refs), rtol=2e-3, atol=2e-3)
    fixed = table.loc[table["component"] == "fixed"]
    assert (fixed["lower"] < fixed["estimate"]).all() and (fixed["upper"] > fixed["estimate"]).all()


def test_lmer_accessors(sleepstudy):
    fit = bl.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)
    fixef = fit.fixef()
    assert list(fixef.columns) == ["estimate", "se", "lower", "upper"]
    np.testing.assert_allclose(fixef[["lower", "upper"]], fit.confint(), rtol=1e-12)
    assert list(fit.fixef(level=0.9).index) == ["(Intercept)", "Days"]
    coef = fit.coef()["Subject"]
    ranef = fit.ranef()["Subject"]
    np.testing.assert_allclose(coef["Days"], fixef.loc["Days", "estimate"] + ranef["Days"])
    long = fit.ranef(condvar=True)["Subject"]
    assert list(long.columns) == ["estimate", "se", "lower", "upper"]
    np.testing.assert_allclose(long["estimate"].unstack()["Days"], ranef["Days"])
    np.testing.assert_allclose(fit.residuals(), sleepstudy["Reaction"] - fit.fitted())
    with pytest.raises(ArgumentError, match="condvar"):
        fit.ranef(condvar="yes")
    with pytest.raises(ArgumentError, match="level"):
        fit.fixef(level=2)


def test_coef_sums_blocks_of_one_factor(sleepstudy):
    """lme4's coef with (1 | Subject) + (0 + Days | Subject): one column per term."""
    fit = bl.lmer("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleepstudy)
    coef = fit.coef()["Subject"]
    assert list(coef.columns) == ["(Intercept)", "Days"]
    ranef = fit.ranef()["Subject"]
    np.testing.assert_allclose(coef["Days"], fit.fixef()["estimate"]["Days"] + ranef["Days"])


def test_deprecated_lmer_spellings_warn_with_the_same_result(sleepstudy):
    fit = bl.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)
    new = fit.fixef()["estimate"]
    with pytest.warns(FutureWarning, match=r"fixef\(\)\['estimate'\]"):
        old = fit.fixef
        assert old["Days"] == new["Days"]
    for use in (lambda s: s.to_numpy(), np.asarray, lambda s: s + 0.0, lambda s: s.items()):
        with pytest.warns(FutureWarning, match="LmerResult.fixef"):
            use(fit.fixef)
    with pytest.warns(FutureWarning):
        np.testing.assert_array_equal(np.asarray(fit.fixef), new.to_numpy())
    with pytest.warns(FutureWarning, match="LmerResult.solution"):
        assert fit.fit is fit.solution
    with warnings.catch_warnings():  # the new spellings never warn
        warnings.simplefilter("error")
        fit.fixef(), fit.summary(), fit.coef(), repr(fit), fit.solution.beta


def test_interval_level_helper():
    assert interval_level(None, None, 0.94) == 0.94
    assert interval_level(0.9) == 0.9
    with pytest.warns(FutureWarning, match="use level="):
        assert interval_level(None, 0.8) == 0.8
    with pytest.raises(ArgumentError, match="hdi_prob"), pytest.warns(FutureWarning):
        interval_level(None, 2)
    with pytest.raises(ArgumentError, match="level"):
        interval_level(1.5)
    with pytest.raises(ArgumentError, match="once"):
        interval_level(0.9, 0.9)


def test_cli_level_and_its_old_spelling(capsys):
    parser = build_parser()
    args = parser.parse_args(["fit", "x.csv", "y ~ x + (1|g)", "--level", "0.9"])
    assert args.level == 0.9 and "deprecated" not in capsys.readouterr().err
    old = parser.parse_args(["fit", "x.csv", "y ~ x + (1|g)", "--hdi", "0.8"])
    err = capsys.readouterr().err
    assert old.level == 0.8 and "--hdi is deprecated" in err and "--level" in err
    assert len(err.strip().splitlines()) == 1
    assert parser.parse_args(["fit", "x.csv", "y ~ x + (1|g)"]).level == 0.95


@pytest.fixture(scope="module")
def both(sleepstudy, quiet_fit):
    formula = "Reaction ~ Days + (Days | Subject)"
    model = quiet_fit(bl.LMM(formula, sleepstudy), **QUICK)
    return model, bl.lmer(formula, sleepstudy)


def test_lmm_and_lmer_share_accessor_shapes(both, sleepstudy):
    model, fit = both
    # fixef: same rows; posterior mean/sd/HDI against estimate/se/interval
    assert list(model.fixef().index) == list(fit.fixef().index)
    assert {"mean", "sd", "hdi_3%", "hdi_97%"} <= set(model.fixef().columns)
    # summary: same rows, in the same order
    assert list(model.summary(print_it=False).index) == list(fit.summary().index)
    # ranef: per factor, rows (level, term)
    ours, theirs = model.ranef(), fit.ranef(condvar=True)
    assert list(ours) == list(theirs) == ["Subject"]
    assert ours["Subject"].index.equals(theirs["Subject"].index)
    # varcorr: the same (grp, var1, var2) rows
    keys = ["grp", "var1", "var2"]
    assert model.varcorr()[keys].equals(fit.varcorr()[keys])
    # coef: levels x coefficients
    assert model.coef()["Subject"].index.equals(fit.coef()["Subject"].index)
    assert list(model.coef()["Subject"].columns) == list(fit.coef()["Subject"].columns)
    # fitted / residuals: one value per row, residual = response - fitted
    for result in (model, fit):
        assert np.shape(result.fitted()) == np.shape(result.residuals()) == (len(sleepstudy),)
        np.testing.assert_allclose(result.residuals(),
                                   sleepstudy["Reaction"] - result.fitted())  # fmt: skip
    # weak priors: the posterior means sit near REML's estimates
    est = fit.fixef()
    close = (model.fixef()["mean"] - est["estimate"]).abs() < est["se"]
    assert close.all()
    # print(model): the summary block, not the one-line state
    assert "Fixed effects:" in repr(model) and "Random effects" in repr(model)


def test_lmm_deprecated_spellings_warn_with_the_same_result(both, sleepstudy):
    model, _ = both
    with pytest.warns(FutureWarning, match=r"LMM\.fitted\(\)"):
        np.testing.assert_array_equal(model.fitted_mean(), model.fitted())
    pairs = [
        (lambda **k: model.summary(print_it=False, **k), "frame"),
        (model.fixef, "frame"), (model.varcorr, "frame"), (model.icc, "frame"),
        (model.r2, "frame"), (model.ranef, "dict"),
    ]
    for call, kind in pairs:
        new = call(level=0.8)
        with pytest.warns(FutureWarning, match="hdi_prob= is deprecated.*use level="):
            old = call(hdi_prob=0.8)
        if kind == "dict":
            for key in new:
                pd.testing.assert_frame_equal(pd.DataFrame(old[key]), pd.DataFrame(new[key]))
        else:
            pd.testing.assert_frame_equal(pd.DataFrame(old), pd.DataFrame(new))
        assert "hdi_10%" in pd.concat(new).columns if kind == "dict" else "hdi_10%" in new
        with pytest.raises(ArgumentError, match="once"):
            call(level=0.8, hdi_prob=0.8)
    grid = sleepstudy.iloc[[0, 5]]
    new = model.predict(grid, summary=True, level=0.8, random_seed=1)
    with pytest.warns(FutureWarning, match="use level="):
        old = model.predict(grid, summary=True, hdi_prob=0.8, random_seed=1)
    pd.testing.assert_frame_equal(old, new)
    with pytest.raises(ArgumentError, match="level"):
        model.predict(grid, level=0.8)
    with pytest.warns(FutureWarning, match="use level="):
        old = bl.icc(model, hdi_prob=0.8)
    pd.testing.assert_frame_equal(old, bl.icc(model, level=0.8))


def test_printed_singular_and_residual_structure_fits(sleepstudy):
    """A singular fit prints its zero variances as 0 to the column's digits and says it is
    singular; a residual structure prints its parameter; neither dumps internals."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    data = pd.DataFrame({"y": x + rng.normal(size=50), "x": x,
                         "g": np.repeat(np.arange(10), 5).astype(str)})  # fmt: skip
    with pytest.warns(bl.SingularFitWarning):
        fit = bl.lmer("y ~ x + (x | g)", data)
    text = repr(fit)
    rows = _block(text, "Random effects:")
    assert rows[1].split()[2:4] == ["0.0000", "0.0000"] and "NaN" in rows[2]
    assert "boundary (singular) fit" in text
    ar1 = bl.lmer("Reaction ~ Days + (1 | Subject)", sleepstudy,
                  residual=bl.AR1(time="Days", group="Subject"))  # fmt: skip
    line = next(x for x in repr(ar1).splitlines() if x.startswith("Residual correlation"))
    assert _numbers(line.split("phi =")[1])[0] == pytest.approx(ar1.phi, rel=1e-3)
    assert ar1.summary().loc["phi", "estimate"] == ar1.phi
    assert all(len(x) < 110 for x in repr(ar1).splitlines()) and len(repr(ar1)) < 2500


def test_old_field_name_still_builds_a_result(sleepstudy):
    """dataclasses.replace(fit, fit=...) (the field's old name) still works, and warns."""
    import dataclasses

    fit = bl.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)
    with pytest.warns(FutureWarning, match=r"solution=\.\.\."):
        again = dataclasses.replace(fit, fit=fit.solution)
    assert again.solution is fit.solution and repr(again) == repr(fit)
    assert dataclasses.replace(fit, converged=False).solution is fit.solution


def test_glmer_results_take_lmers_accessors():
    """bl.glmer's results have bl.lmer's accessor names and kinds: fixef() a table with
    the Wald interval, confint(), coef() as fixed effects plus conditional modes,
    summary() a table printed as lme4's block; the old spellings (the Series fixef, the
    summary as a string) warn and give the old values."""
    import scipy.stats

    data = pd.read_csv(DATA / "cbpp.csv")
    fit = bl.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", data,
                   family="binomial")  # fmt: skip
    lmer = bl.lmer("Reaction ~ Days + (Days | Subject)", bl.load_dataset("sleepstudy"))
    for name in ("fixef", "ranef", "varcorr", "coef", "fitted", "residuals", "summary",
                 "confint"):  # fmt: skip
        assert callable(getattr(fit, name)) and callable(getattr(lmer, name)), name
    table = fit.fixef()
    assert list(table.columns) == list(lmer.fixef().columns) == ["estimate", "se", "lower",
                                                                 "upper"]  # fmt: skip
    np.testing.assert_allclose(table["estimate"], fit.beta)
    np.testing.assert_allclose(table["se"], fit.se)
    np.testing.assert_allclose(table["upper"] - table["estimate"],
                               scipy.stats.norm.ppf(0.975) * fit.se)  # fmt: skip
    pd.testing.assert_frame_equal(fit.confint(0.9), fit.fixef(0.9)[["lower", "upper"]])
    with pytest.raises(ArgumentError, match="wald"):
        fit.confint(method="profile")
    coef, modes = fit.coef()["herd"], fit.ranef()["herd"]
    assert list(coef.columns) == ["(Intercept)", "period"]
    np.testing.assert_allclose(coef["(Intercept)"], fit.beta[0] + modes["(Intercept)"])
    np.testing.assert_allclose(coef["period"], fit.beta[1])
    summary = fit.summary()
    assert isinstance(summary, pd.DataFrame)
    assert repr(summary) == str(summary) == str(fit) == repr(fit)
    assert str(fit).startswith("Generalized linear mixed model fit by maximum likelihood")
    assert list(summary.columns) == ["component", "estimate", "se", "z", "p", "lower", "upper"]
    assert list(summary["component"]) == ["random", "fixed", "fixed"]
    assert summary["estimate"].iloc[0] == pytest.approx(fit.varcorr()["sdcor"].iloc[0])
    np.testing.assert_allclose(summary["p"].iloc[1:], fit.coefficients()["Pr(>|z|)"])
    with pytest.warns(FutureWarning, match="fixef"):
        assert fit.fixef["period"] == table.loc["period", "estimate"]
    with pytest.warns(FutureWarning, match=r"str\(GlmerResult.summary\(\)\)"):
        assert "herd" in summary
    with pytest.warns(FutureWarning):
        assert summary.splitlines()[0] == str(fit).splitlines()[0]
    nb = bl.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", bl.load_dataset("grouseticks"),
                  family="negative_binomial")  # fmt: skip
    table = nb.summary()
    assert list(table["component"]) == ["random", "residual"] + ["fixed"] * 4  # as LMM's
    assert table.loc["theta", "estimate"] == pytest.approx(nb.nb_theta)
    bare = bl.glmer("cbind(incidence, size - incidence) ~ 0 + (1 | herd)", data,
                    family="binomial")  # no fixed effects: lme4 fits it too
    assert list(bare.summary()["component"]) == ["random"] and bare.fixef().empty
    assert "No fixed effect coefficients" in str(bare)
    # lme4 1.1.31: -2 logLik 236.7499, herd SD 2.2466 (glmer(..., cbpp, binomial))
    assert bare.deviance == pytest.approx(236.7499, abs=2e-4)
    assert bare.varcorr()["sdcor"].iloc[0] == pytest.approx(2.2466, abs=2e-4)
