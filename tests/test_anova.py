"""Likelihood-ratio tables against lme4's anova() and lmerTest's ranova()
(tests/data/lme4_anova_ranova.R wrote tests/data/lme4_anova_ranova.json)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

import bayeslmm as bl
from bayeslmm.classical.anova import chibar_pvalue, is_nested
from bayeslmm.spec.neighbours import simpler_neighbours, single_term_deletions

DATA = Path(__file__).resolve().parent / "data"
REF = json.loads((DATA / "lme4_anova_ranova.json").read_text())
FILES = {"sleepstudy.csv": "sleepstudy", "score_parentedu_byclass.csv": "classroom",
         "rat_pup.csv": "rat_pup"}  # fmt: skip


def _fit(formula, data, reml=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.SingularFitWarning)
        return bl.lmer(formula, data, reml=reml)


def _label(name: str) -> str:
    """lmerTest's row name without spaces and with an interaction's factors sorted
    (lme4 prints treatment:litter as litter:treatment)."""
    name = name.replace(" ", "")
    if "|" in name and name.endswith(")"):
        head, group = name[:-1].rsplit("|", 1)
        name = f"{head}|{':'.join(sorted(group.split(':')))})"
    return name


def _close(ours, theirs, key, rtol=1e-4, atol=1e-6):
    assert ours == pytest.approx(theirs, rel=rtol, abs=atol), key


@pytest.mark.parametrize("case_id", list(REF["anova"]))
def test_anova_matches_lme4(case_id):
    case = REF["anova"][case_id]
    data = bl.load_dataset(FILES[case["file"]])
    fits = [_fit(f, data) for f in case["formulas"]]
    table = bl.anova(*fits, refit=case["refit"], names=case["names"]).table
    assert list(table.index) == [r["name"] for r in case["rows"]]
    for ref in case["rows"]:
        row = table.loc[ref["name"]]
        assert row["npar"] == ref["npar"]
        for key in ("AIC", "BIC", "logLik", "deviance"):
            _close(row[key], ref[key], key)
        if ref["Df"] is None:
            assert row.isna()[["Chisq", "Df", "Pr(>Chisq)"]].all()
            continue
        assert row["Df"] == ref["Df"]
        # a statistic near 0 (a boundary fit) is a difference of two optima: absolute
        assert row["Chisq"] == pytest.approx(ref["Chisq"], rel=1e-4, abs=2e-4)
        assert row["Pr(>Chisq)"] == pytest.approx(ref["Pr(>Chisq)"], rel=1e-3, abs=1e-5)


@pytest.mark.parametrize("case_id", list(REF["ranova"]))
def test_ranova_matches_lmertest(case_id):
    case = REF["ranova"][case_id]
    data = bl.load_dataset(FILES[case["file"]])
    fit = _fit(case["formula"], data, reml=case["REML"])
    table = bl.ranova(fit, reduce_terms=case["reduce_terms"]).table
    ours = {_label(name): name for name in table.index}
    assert sorted(ours) == sorted(_label(r["name"]) for r in case["rows"])
    for ref in case["rows"]:
        row = table.loc[ours[_label(ref["name"])]]
        assert row["npar"] == ref["npar"]
        for key in ("logLik", "AIC"):
            _close(row[key], ref[key], key)
        if ref["Df"] is None:
            continue
        assert row["Df"] == ref["Df"]
        assert row["LRT"] == pytest.approx(ref["LRT"], rel=1e-4, abs=2e-4)
        assert row["Pr(>Chisq)"] == pytest.approx(ref["Pr(>Chisq)"], rel=1e-3, abs=1e-5)


def test_boundary_mixtures():
    # one variance with its covariance: 0.5 chi2(1) + 0.5 chi2(2)
    p, null = chibar_pvalue(5.0, 2, 1)
    assert p == pytest.approx(0.5 * scipy.stats.chi2.sf(5, 1) + 0.5 * scipy.stats.chi2.sf(5, 2))
    assert null == "0.5 chi2(1) + 0.5 chi2(2)"
    # a lone variance: half the chi2(1) tail, and 1 at a statistic of exactly 0
    assert chibar_pvalue(3.0, 1, 1)[0] == pytest.approx(0.5 * scipy.stats.chi2.sf(3, 1))
    assert chibar_pvalue(0.0, 1, 1)[0] == 1.0
    # a correlation only: not on the boundary
    assert chibar_pvalue(3.0, 1, 0)[0] == pytest.approx(scipy.stats.chi2.sf(3, 1))
    assert np.isnan(chibar_pvalue(3.0, 2, 2)[0])


def test_boundary_p_in_tables(sleepstudy):
    m0 = _fit("Reaction ~ Days + (1|Subject)", sleepstudy)
    m1 = _fit("Reaction ~ Days + (Days|Subject)", sleepstudy)
    m2 = _fit("Reaction ~ Days + (Days||Subject)", sleepstudy)
    result = bl.anova(m1, m2, m0)
    t = result.table
    assert list(t.index) == [m0.design.spec.formula, m2.design.spec.formula,
                             m1.design.spec.formula]  # fmt: skip
    assert t["Pr(>Chisq) boundary"].iloc[1] == pytest.approx(0.5 * t["Pr(>Chisq)"].iloc[1])
    assert t["Pr(>Chisq) boundary"].iloc[2] == pytest.approx(t["Pr(>Chisq)"].iloc[2])
    assert result.nulls[1:] == ["0.5 chi2(0) + 0.5 chi2(1)", "chi2(1)"]
    assert "0.5 chi2(0)" in str(result)
    assert result.criterion == "ML" and all(not f.reml for f in result.fits)


def test_anova_refuses_what_it_cannot_compare(sleepstudy, classroom):
    m0 = _fit("Reaction ~ Days + (1|Subject)", sleepstudy)
    m1 = _fit("Reaction ~ Days + (Days|Subject)", sleepstudy)
    with pytest.raises(bl.ComparisonError, match="at least two"):
        bl.anova(m0)
    with pytest.raises(bl.ComparisonError, match="argument 2"):
        bl.anova(m0, "m1")
    fewer = _fit("Reaction ~ Days + (1|Subject)", sleepstudy.iloc[:170])
    with pytest.raises(bl.ComparisonError, match="same rows"):
        bl.anova(fewer, m1)
    with pytest.raises(bl.ComparisonError, match="same rows"):
        bl.anova(_fit("score ~ edu + (1|classroom)", classroom), m1)
    # (Days||Subject) is not a special case of (1|Subject) + (0 + Days + I(Days**2)|Subject)
    other = _fit("Reaction ~ Days + (1|Subject) + (0 + Days + I(Days**2)|Subject)", sleepstudy)
    uncorrelated = _fit("Reaction ~ Days + (0 + Days||Subject) + (1 + I(Days**2)|Subject)",
                        sleepstudy)  # fmt: skip
    with pytest.raises(bl.ComparisonError, match="not nested"):
        bl.anova(uncorrelated, other)
    assert np.isnan(bl.anova(uncorrelated, other, check_nested=False).table.iloc[1, -1])
    quadratic = _fit("Reaction ~ Days + I(Days**2) + (1|Subject)", sleepstudy)
    with pytest.raises(bl.ComparisonError, match="different fixed effects"):
        bl.anova(m0, quadratic, refit=False)
    with pytest.raises(bl.ComparisonError, match="distinct"):
        bl.anova(m0, m1, names=["a", "a"])
    twice = bl.anova(m0, _fit("Reaction ~ Days + (1|Subject)", sleepstudy, reml=False)).table
    assert list(twice.index) == ["m1: Reaction ~ Days + (1|Subject)",
                                 "m2: Reaction ~ Days + (1|Subject)"]  # fmt: skip
    assert twice["Chisq"].iloc[1] == pytest.approx(0.0, abs=1e-6)


def test_nesting_follows_spans_and_groupings(sleepstudy, ratpup):
    d = {f: _fit(f, sleepstudy).design for f in (
        "Reaction ~ Days + (1|Subject)", "Reaction ~ Days + (Days|Subject)",
        "Reaction ~ Days + (Days||Subject)", "Reaction ~ Days + (1 + I(Days + 1)|Subject)",
    )}  # fmt: skip
    ri, rs, un, shifted = d.values()
    assert is_nested(ri, rs) and is_nested(ri, un) and is_nested(un, rs)
    assert not is_nested(rs, un) and not is_nested(rs, ri)
    assert is_nested(rs, shifted) and is_nested(shifted, rs)  # the same span of Z
    litter = _fit("weight ~ sex + (1|litter)", ratpup).design
    nested = _fit("weight ~ sex + (1|treatment/litter)", ratpup).design
    assert is_nested(litter, nested) and not is_nested(nested, litter)


def test_reductions_are_lmertests_and_neighbours_keep_a_random_term(sleepstudy):
    spec = bl.parse_formula("y ~ x + (1 + a + b | g) + (1 | h)")
    labels = [r.label for r in single_term_deletions(spec)]
    assert labels == ["a in (1 + a + b | g)", "b in (1 + a + b | g)", "(1 | h)"]
    assert single_term_deletions(spec)[0].formula == "y ~ x + (1 + b | g) + (1 | h)"
    whole = single_term_deletions(spec, reduce_terms=False)
    assert [r.formula for r in whole] == ["y ~ x + (1 | h)", "y ~ x + (1 + a + b | g)"]
    design = _fit("Reaction ~ Days + (Days|Subject)", sleepstudy).design
    neighbours = simpler_neighbours(design)
    assert [(n.kind, n.formula) for n in neighbours] == [
        ("slope", "Reaction ~ Days + (1 | Subject)"),
        ("correlation", "Reaction ~ Days + (Days || Subject)"),
    ]
    alone = _fit("Reaction ~ Days + (0 + Days|Subject)", sleepstudy).design
    assert simpler_neighbours(alone) == []
