"""Silent wrong answers and noise (issue #28): perfect fits, badly scaled columns, argument
checks, level types in tables, printed forms. References: lme4 (tests/data/
lme4_near_exact.R + .json) where a number is compared."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl

DATA = Path(__file__).resolve().parent / "data"
NEAR = json.loads((DATA / "lme4_near_exact.json").read_text())


@pytest.fixture(scope="module")
def near() -> pd.DataFrame:
    return pd.read_csv(DATA / "near_exact.csv")


@pytest.mark.parametrize("reml", [True, False])
def test_near_exact_fit_reaches_lme4(near, reml):
    """Noise of SD 1e-3 beside group shifts of SD 2 (theta ~ 3000): the optimum lme4
    finds, not theta = 0."""
    ref = NEAR[f"y_near_{'REML' if reml else 'ML'}"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", bl.SingularFitWarning)
        fit = bl.lmer("y_near ~ x + (1 | g)", near, reml=reml)
    assert fit.loglik == pytest.approx(ref["logLik"], abs=1e-4)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    assert np.sqrt(fit.covariances()[0][0, 0]) == pytest.approx(ref["sd_g"], rel=1e-3)
    for name, value in ref["fixef"].items():
        assert fit.fixef[name] == pytest.approx(value, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("response", ["y_exact", "y_const"])
@pytest.mark.parametrize("reml", [True, False])
def test_exact_fit_is_refused(near, response, reml):
    """lme4 stops near sigma = 0 with convergence warnings (tests/data/lme4_near_exact.json);
    bayeslmm used to report theta = 0 and a large sigma (a confident wrong optimum)."""
    assert NEAR[f"{response}_{'REML' if reml else 'ML'}"]["warnings"]
    with pytest.raises(bl.DataError, match="fit the response exactly") as err:
        bl.lmer(f"{response} ~ x + (1 | g)", near, reml=reml)
    assert f"{response} ~ x + (1 | g)" in str(err.value) and "g" in str(err.value)


def test_exact_fit_within_every_group_is_refused():
    """Every group on its own exact line (random intercepts and slopes), several shapes."""
    rng = np.random.default_rng(3)
    for n_groups, size in [(6, 4), (25, 3), (8, 10)]:
        g = np.repeat(np.arange(n_groups), size)
        x = rng.uniform(0, 5, g.size)
        a, b = rng.normal(0, 2, n_groups), rng.normal(1, 0.5, n_groups)
        data = pd.DataFrame({"g": g.astype(str), "x": x, "y": a[g] + b[g] * x})
        with pytest.raises(bl.DataError, match="exactly"):
            bl.lmer("y ~ x + (x | g)", data)
        with pytest.raises(bl.DataError, match="exactly"):  # an AR(1) residual as well
            bl.lmer("y ~ x + (x | g)", data.assign(t=np.tile(np.arange(size), n_groups)),
                    residual=bl.AR1("t", "g"))  # fmt: skip


def test_badly_scaled_column_is_named():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(10), 6)
    data = pd.DataFrame({"g": g.astype(str), "x": np.linspace(0, 1e12, 60),
                         "y": rng.normal(size=60) + rng.normal(size=10)[g]})  # fmt: skip
    for formula in ["y ~ x + (x | g)", "y ~ x + (1 | g)"]:
        with pytest.raises(bl.DataError, match="'x'.*[Rr]escale"):
            bl.lmer(formula, data)
    # rescaled, the same model fits, and its slope is the original's times the scale
    fit = bl.lmer("y ~ x + (1 | g)", data.assign(x=data.x / 1e12))
    assert np.isfinite(fit.loglik)
