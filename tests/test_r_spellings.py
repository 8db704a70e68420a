"""R's spellings in formulas: factor(), as.factor(), ordered(), relevel(), I(x^2), poly(),
log(), TRUE; refused ones (as.numeric, offset, ...) name the Python spelling. Against lme4
1.1.31 (tests/data/r_spellings.R wrote r_spellings.json: names and REML estimates)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.spec.formula import parse_formula, python_spelling

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "tests" / "data" / "r_spellings.json").read_text())


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: c["formula"])
def test_r_spellings_fit_as_lme4(case, ratpup):
    fit = bl.lmer(case["formula"], ratpup)
    # R deparses relevel()'s "Low" with double quotes; the names keep the formula's text
    assert fit.design.fixed_names == [n.replace('"', "'") for n in case["names"]]
    np.testing.assert_allclose(fit.fixef.to_numpy(), case["fixef"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("written", "fixed", "expr"),
    [
        ("y ~ factor(cond) + (1 + as.factor(c) | g)", "C(cond)", "1 + C(c)"),
        ("y ~ as.character(k) + (1 | g)", "C(k)", "1"),
        ("y ~ ordered(dose) + (1 | g)", "C(dose, contr.poly)", "1"),
        ('y ~ relevel(f, ref = "b") + (1 | g)', 'C(f, contr.treatment("b"))', "1"),
        ("y ~ relevel(factor(f), 'b') + (1 | g)", "C(f, contr.treatment('b'))", "1"),
        ("y ~ I(x^2) + (x + I(x^3) | g)", "I(x**2)", "x + I(x**3)"),
        ("y ~ poly(x, 2, raw = TRUE) + (1 | g)", "poly(x, 2, raw = True)", "1"),
        ("y ~ np.log(x^2) + (a + b)^2 + (1 | g)", "np.log(x**2) + (a + b)^2", "1"),
        ("y ~ I(`w^z`^2) + (1 | g)", "I(`w^z`**2)", "1"),
        ("y ~ C(x) + I(x**2) + (1 | g)", "C(x) + I(x**2)", "1"),  # Python spellings stay
        ('y ~ C(f, levels=["a^b", "factor(z)"]) + (1 | g)',  # strings are not code
         'C(f, levels=["a^b", "factor(z)"])', "1"),
    ],
)
def test_translation(written, fixed, expr):
    spec = parse_formula(written)  # keeps the text as written; formulaic reads the Python
    assert python_spelling(spec.fixed) == fixed
    assert python_spelling(spec.random[0].expr) == expr
    assert spec.formula == written


def test_power_inside_a_call_is_not_xor():
    # I(k^2) used to be Python's bitwise XOR on integer columns: 3 ^ 2 == 1
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"k": np.tile([1, 2, 3, 4], 10), "g": np.repeat(np.arange(8), 5)})
    data["y"] = 0.5 * data["k"] ** 2 + rng.normal(0, 0.1, 40) + rng.normal(0, 1, 8)[data["g"]]
    fit = bl.lmer("y ~ I(k^2) + (1 | g)", data)
    assert fit.design.fixed_names == ["(Intercept)", "I(k^2)"]
    np.testing.assert_allclose(fit.design.X[:4, 1], [1, 4, 9, 16])
    assert fit.fixef["I(k^2)"] == pytest.approx(0.5, abs=0.01)


def test_factor_of_a_numeric_column_predicts_and_gives_marginal_means(ratpup):
    fit = bl.lmer("weight ~ factor(litsize) + sex + (1 | litter)", ratpup)
    assert fit.design.fixed_names[1] == "factor(litsize)3"
    means = fit.marginal_means("litsize")
    assert list(means["litsize"]) == sorted(ratpup["litsize"].unique())
    model = bl.LMM("weight ~ factor(treatment) + (1 | litter)", ratpup)
    new = pd.DataFrame({"treatment": ["Low"], "litter": [1]})
    assert model.design.fixed_names == ["(Intercept)", "factor(treatment)High",
                                        "factor(treatment)Low"]  # fmt: skip
    with pytest.raises(bl.DataError, match="level"):
        from bayeslmm.spec.design import new_design

        new_design(model.design, new.assign(treatment="None"))


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ as.numeric(x) + (1 | g)", r"as.numeric\(\) is R's: .*write x"),
        ("y ~ x + offset(log(n)) + (1 | g)", r"offset\(\) is R's: .*I\(y - log\(n\)\) ~"),
        ("y ~ ns(x, 3) + (1 | g)", r"ns\(\) is R's: .*poly\(x, 3\)"),
        ("y ~ factor(x, levels = c(2, 1)) + (1 | g)", r"C\(x, levels=\['b', 'a'\]\)"),
        ("y ~ relevel(f) + (1 | g)", r"C\(x, contr.treatment"),
        ("y ~ x + (1 + as.integer(x) | g)", r"as.integer\(\) is R's"),
    ],
)
def test_refused_spellings_name_the_python_one(formula, message):
    with pytest.raises(bl.FormulaError, match=message) as info:
        parse_formula(formula)
    assert info.value.position is not None


def test_unknown_function_is_called_a_function(ratpup):
    with pytest.raises(bl.UnknownNameError, match=r"function foo\(\) used in the fixed part is "
                       r"not known.*np.foo\(x\)"):  # fmt: skip
        bl.lmer("weight ~ foo(litsize) + (1 | litter)", ratpup)
