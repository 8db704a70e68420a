"""Gaussian outcomes with known standard errors (``bl.lmer(..., se=...)``) against metafor's
``rma(yi, sei = sei, method = "REML" | "ML")`` (tests/data/metafor_known_se.R + .json)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.errors import ArgumentError, ColumnTypeError, DataError, UnknownNameError
from bayeslmm.gaussian.profiled import BlockedProfile, ThetaLayout, blocked_system
from bayeslmm.gaussian.statistics import BlockedStats, CrossProducts
from bayeslmm.spec.known_se import known_se_design

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "metafor_known_se.json").read_text())
SCHOOLS = pd.read_csv(DATA / "eight_schools.csv")
BCG = pd.read_csv(DATA / "dat_bcg.csv")
FRAMES = {"schools": (SCHOOLS, "sigma"), "bcg": (BCG, "sei"), "bcg_ablat": (BCG, "sei")}


def _rel(a, b):
    return np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))
                  / np.maximum(np.abs(np.asarray(b, float)), 1e-12))  # fmt: skip


@pytest.mark.parametrize("case", REF["cases"], ids=lambda c: f"{c['id']}-{c['method']}")
def test_matches_metafor(case):
    data, se = FRAMES[case["id"]]
    before = data.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.SingularFitWarning)  # eight schools: tau^2 = 0
        fit = bl.lmer(case["formula"], data, reml=case["method"] == "REML", se=se)
    pd.testing.assert_frame_equal(data, before)
    tau2 = fit.covariances()[0][0, 0]
    if case["tau2"] == 0:
        assert fit.singular and tau2 < 1e-10
    else:
        assert _rel(tau2, case["tau2"]) < 1e-4
    assert _rel(fit.fixef()["estimate"], np.atleast_1d(case["beta"])) < 1e-4
    assert _rel(fit.se, np.atleast_1d(case["se"])) < 1e-4
    assert _rel(fit.loglik, case["logLik"]) < 1e-4
    assert fit.n_params == len(np.atleast_1d(case["beta"])) + 1  # no residual SD


def test_summary_fitted_and_refusals():
    fit = bl.lmer("yi ~ ablat + (1 | trial)", BCG, se="sei")
    text = str(fit)
    assert "known standard errors (sei), Wald z-tests" in text and "z value" in text
    assert "Residual" not in text
    table = fit.summary()
    assert "sigma" not in table.index
    assert np.all(np.isinf(table.loc[["(Intercept)", "ablat"], "df"]))
    assert list(fit.varcorr()["grp"]) == ["trial"]
    # fitted values and residuals on the data's scale
    b = fit.ranef()["trial"]["(Intercept)"].to_numpy()
    expected = fit.solution.beta[0] + fit.solution.beta[1] * BCG["ablat"].to_numpy() + b
    np.testing.assert_allclose(fit.fitted(), expected, rtol=1e-12)
    np.testing.assert_allclose(fit.residuals(), BCG["yi"].to_numpy() - expected, rtol=1e-12)
    # conditional variances of the study effects given beta (lme4's condVar): the
    # shrinkage formula tau^2 se_i^2 / (tau^2 + se_i^2)
    tau2, s2 = fit.covariances()[0][0, 0], BCG["sei"].to_numpy() ** 2
    cond = tau2 * s2 / (tau2 + s2)
    np.testing.assert_allclose(fit.ranef_sd()["trial"]["(Intercept)"] ** 2, cond, rtol=1e-8)
    for call in (lambda: bl.satterthwaite(fit), fit.icc, fit.r2,
                 lambda: fit.coefficients("observed"),
                 lambda: fit.confint(method="satterthwaite")):  # fmt: skip
        with pytest.raises(ArgumentError, match="known standard errors"):
            call()
    np.testing.assert_allclose(fit.confint()["lower"], fit.fixef()["lower"])


def test_known_sigma_gradient():
    """The criterion with the residual SD known: exact gradient against central differences,
    crossed factors (the general blocked path) and a correlated slope."""
    rng = np.random.default_rng(1)
    n = 120
    data = pd.DataFrame({"g": rng.integers(0, 8, n), "h": rng.integers(0, 5, n),
                         "x": rng.normal(size=n), "s": rng.uniform(0.5, 2.0, n)})  # fmt: skip
    data["y"] = (1 + data["x"] * (1 + 0.7 * rng.normal(size=8)[data["g"]])
                 + rng.normal(size=n) * data["s"] + 1.5 * rng.normal(size=8)[data["g"]]
                 + rng.normal(size=5)[data["h"]])  # fmt: skip
    _, scaled, _ = known_se_design("y ~ x + (1 + x | g) + (1 | h)", data, "s", "test")
    layout = ThetaLayout.from_design(scaled)
    cp = CrossProducts.from_stats(BlockedStats.from_design(scaled), scaled)
    profile = BlockedProfile.of(blocked_system(cp), layout, sigma=1.0)
    theta = np.array([0.8, 0.3, 0.6, 0.5])
    for reml in (True, False):
        _, grad = profile(theta, reml)
        eps = 1e-6
        numeric = [(profile(theta + eps * e, reml)[0] - profile(theta - eps * e, reml)[0])
                   / (2 * eps) for e in np.eye(len(theta))]  # fmt: skip
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)
    # and the value: the dense Gaussian log-likelihood of the scaled rows with sigma = 1
    fit = bl.lmer("y ~ x + (1 + x | g) + (1 | h)", data, reml=False, se="s")
    Z = np.zeros((n, 8 * 2 + 5))
    Z[np.arange(n), 2 * data["g"]] = 1
    Z[np.arange(n), 2 * data["g"] + 1] = data["x"]
    Z[np.arange(n), 16 + data["h"]] = 1
    G = np.zeros((21, 21))
    cov_g, cov_h = fit.covariances()
    for j in range(8):
        G[2 * j : 2 * j + 2, 2 * j : 2 * j + 2] = cov_g
    G[16:, 16:] = cov_h[0, 0] * np.eye(5)
    V = Z @ G @ Z.T + np.diag(data["s"] ** 2)
    X = np.column_stack([np.ones(n), data["x"]])
    r = data["y"].to_numpy() - X @ fit.solution.beta
    loglik = -0.5 * (n * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + r @ np.linalg.solve(V, r))
    assert abs(fit.loglik - loglik) < 1e-9 * abs(loglik)


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ([1.0, 0.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0], DataError, "'sigma' has zeros in 2 row"),
        ([1.0, -1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 1.0], DataError, "negative values in 1 row"),
        ([1.0, 1.0, np.nan, 3.0, 1.0, 1.0, 1.0, 1.0], DataError, r"missing \(NaN\).*index 2"),
        ([1.0, 1.0, 1.0, np.inf, 1.0, 1.0, 1.0, 1.0], DataError, "infinite values.*index 3"),
        (list("abcdefgh"), ColumnTypeError, "'sigma' must be numeric"),
    ],
)
def test_bad_se_column(values, error, match):
    data = SCHOOLS.copy()
    data["sigma"] = values
    before = data.copy()
    with pytest.raises(error, match=match):
        bl.lmer("y ~ 1 + (1 | school)", data, se="sigma")
    pd.testing.assert_frame_equal(data, before)


def test_bad_se_arguments():
    with pytest.raises(UnknownNameError, match="se='sigm' is not in the data; did you mean"):
        bl.lmer("y ~ 1 + (1 | school)", SCHOOLS, se="sigm")
    with pytest.raises(ArgumentError, match="se must be the name"):
        bl.lmer("y ~ 1 + (1 | school)", SCHOOLS, se=3)
    with pytest.raises(bl.FormulaError, match="no random term"):
        bl.lmer("y ~ 1", SCHOOLS, se="sigma")
