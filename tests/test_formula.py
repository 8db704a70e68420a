import re

import pytest

from bayeslmm import FormulaError, RandomTerm, parse_formula


@pytest.mark.parametrize(
    "formula, fixed, terms",
    [
        ("y ~ x + (1|g)", "x", [RandomTerm("1", ("g",), True)]),
        ("y ~ x + (x|g)", "x", [RandomTerm("x", ("g",), True)]),
        ("y ~ x + (1 + x | g)", "x", [RandomTerm("1 + x", ("g",), True)]),
        ("y ~ x + (0 + x | g)", "x", [RandomTerm("0 + x", ("g",), True)]),
        ("y ~ x + (-1 + x | g)", "x", [RandomTerm("-1 + x", ("g",), True)]),
        ("y ~ x + (x || g)", "x", [RandomTerm("x", ("g",), False)]),
        ("y ~ (1|a/b)", "1", [RandomTerm("1", ("a",)), RandomTerm("1", ("a", "b"))]),
        (
            "y ~ (1|a/b/c)",
            "1",
            [
                RandomTerm("1", ("a",)),
                RandomTerm("1", ("a", "b")),
                RandomTerm("1", ("a", "b", "c")),
            ],
        ),
        ("y ~ x + (1|a:b)", "x", [RandomTerm("1", ("a", "b"))]),
        ("y ~ x + (1|a) + (1|b)", "x", [RandomTerm("1", ("a",)), RandomTerm("1", ("b",))]),
        ("y ~ (0 + f | g)", "1", [RandomTerm("0 + f", ("g",))]),
        ("y ~ 0 + x + (1|g)", "0 + x", [RandomTerm("1", ("g",))]),
        ("y ~ x - 1 + (1|g)", "x - 1", [RandomTerm("1", ("g",))]),
        ("y ~ 0 + (1|g)", "0", [RandomTerm("1", ("g",))]),
        (
            "y ~ a*b + a:b + I(x**2) + np.log(z) + (1|g)",
            "a*b + a:b + I(x**2) + np.log(z)",
            [RandomTerm("1", ("g",))],
        ),
        ("y ~ x", "x", []),
    ],
)
def test_parses_lme4_syntax(formula, fixed, terms):
    spec = parse_formula(formula)
    assert spec.response == "y"
    assert spec.fixed == fixed
    assert list(spec.random) == terms


def test_terms_print_as_lme4():
    spec = parse_formula("y ~ x + (x || g) + (1 | a:b)")
    assert [str(t) for t in spec.random] == ["(x || g)", "(1 | a:b)"]
    assert spec.group_factors == ["g", "a:b"]


@pytest.mark.parametrize(
    "formula, message, position",
    [
        ("y ~ x + (1|g", "unmatched '('", 8),
        ("y ~ x + (1|g))", "unmatched ')'", 13),
        ("y ~ x + 1|g", "parentheses", 9),
        ("y x", "needs a response", 0),
        ("~ x", "needs a response before", 0),
        ("y ~ x ~ z", "more than one '~'", 6),
        ("y ~ ", "nothing after", 3),
        ("y ~ x + (1|)", "grouping factor after", 10),
        ("y ~ x + (|g)", "expression before", 9),
        ("y ~ x ++ (1|g)", "empty term", 7),
        ("y ~ (1|g+h)", "not a column name", 7),
        ("y ~ (1|g|h)", "more than one '|'", 6),
    ],
)
def test_bad_formulas_point_at_the_problem(formula, message, position):
    with pytest.raises(FormulaError, match=re.escape(message)) as info:
        parse_formula(formula)
    assert info.value.position == position
    # the caret line sits under the offending character
    lines = str(info.value).splitlines()
    assert lines[-1].index("^") - 2 == position


def test_formula_must_be_text():
    with pytest.raises(FormulaError, match="string"):
        parse_formula(None)
    with pytest.raises(ValueError):  # the hierarchy subclasses ValueError
        parse_formula("")
