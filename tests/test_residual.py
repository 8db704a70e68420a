"""Residual correlation structures (AR(1), compound symmetry): the weighted statistics,
REML/ML against nlme (tests/data/nlme_residual.json, made by nlme_residual.R), the
Bayesian models and bad inputs."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.classical.lmer import lmer, satterthwaite
from bayeslmm.gaussian.blocked import BlockedSystem
from bayeslmm.gaussian.residual import ResidualModel, ResidualSystem
from bayeslmm.gaussian.statistics import random_effects_matrix
from bayeslmm.spec.design import build_design

DATA = Path(__file__).resolve().parent / "data"
REFERENCE = json.loads((DATA / "nlme_residual.json").read_text())


def _data(name: str) -> pd.DataFrame:
    if name == "sleepstudy_gaps":  # Days 3 and 4 missing for the even-numbered subjects
        d = bl.load_dataset("sleepstudy")
        return d[~(d.Days.isin([3, 4]) & (d.Subject.astype(int) % 2 == 0))]
    if name.startswith("residual_sim"):
        return pd.read_csv(DATA / f"{name}.csv")
    return bl.load_dataset(name)


def _structure(case: dict):
    if case["structure"] == "AR1":
        return bl.AR1(time=case["time"], group=case["group"])
    return bl.CompoundSymmetry(group=case["group"])


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.fixture(scope="module")
def gappy() -> pd.DataFrame:
    """sleepstudy with gaps in Days, its rows shuffled."""
    return _data("sleepstudy_gaps").sample(frac=1.0, random_state=3)


# --- the weighted statistics ---------------------------------------------------------


@pytest.mark.parametrize(
    "structure, phi",
    [
        (bl.AR1(time="Days", group="Subject"), 0.6),
        (bl.AR1(time="Days", group="Subject"), -0.45),
        (bl.AR1(group="Subject"), 0.3),
        (bl.CompoundSymmetry(group="Subject"), 0.4),
        (bl.CompoundSymmetry(group="Subject"), -0.08),
    ],
)
def test_weighted_statistics_equal_dense_algebra(gappy, structure, phi):
    design = build_design("Reaction ~ Days + (Days | Subject)", gappy, structure)
    model = ResidualModel(design)
    R = model.weights.correlation(phi)
    if structure.time:  # phi^|t_i - t_j| within a subject, whatever the row order
        i, j = np.flatnonzero((gappy.Subject == gappy.Subject.iloc[0]).to_numpy())[:2]
        assert R[i, j] == pytest.approx(phi ** abs(gappy.Days.iloc[i] - gappy.Days.iloc[j]))
    Rinv = np.linalg.inv(R)
    assert np.allclose(model.weights.precision(phi).toarray(), Rinv)
    assert model.logdet(phi) == pytest.approx(np.linalg.slogdet(R)[1], rel=1e-12)
    Z, X, y = random_effects_matrix(design).toarray(), design.X, design.y
    cp = model.cross_products(phi)
    assert np.allclose(cp.ZtZ.toarray(), Z.T @ Rinv @ Z)
    assert np.allclose(cp.ZtX, Z.T @ Rinv @ X) and np.allclose(cp.Zty, Z.T @ Rinv @ y)
    assert np.allclose(cp.XtX, X.T @ Rinv @ X) and cp.yty == pytest.approx(y @ Rinv @ y)
    # the reweighted blocked system equals one built from scratch on the same statistics
    rs = ResidualSystem(model)
    fresh = BlockedSystem(rs.stats(phi))
    for a, b in zip(rs.system(phi).structure(), fresh.structure(), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(rs.system(phi).explicit_structure(), fresh.explicit_structure(), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_marginal_loglik_equals_dense_gaussian(gappy):
    """The kernel on the weighted statistics plus -log|R|/2 is log N(y | X b, V)."""
    design = build_design("Reaction ~ Days + (Days | Subject)", gappy,
                          bl.AR1(time="Days", group="Subject"))  # fmt: skip
    model = ResidualModel(design)
    rs = ResidualSystem(model)
    phi, sigma, beta = 0.55, 25.0, np.array([250.0, 10.0])
    T = np.array([[[0.6, 0.0], [0.05, 0.2]]])
    ll = rs.system(phi).marginal_loglik(T, beta, sigma, grad=False)[0] - 0.5 * model.logdet(phi)
    Z = random_effects_matrix(design).toarray()
    Lam = np.kron(np.eye(18), T[0])
    V = sigma**2 * (model.weights.correlation(phi) + Z @ Lam @ Lam.T @ Z.T)
    r = design.y - design.X @ beta
    dense = -0.5 * (len(r) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1]
                    + r @ np.linalg.solve(V, r))  # fmt: skip
    assert ll == pytest.approx(dense, rel=1e-10)


# --- REML and ML against nlme ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["REML", "ML"])
@pytest.mark.parametrize("case_id", [k for k, v in REFERENCE.items() if not v["singular"]])
def test_lmer_matches_nlme(case_id, mode):
    case = REFERENCE[case_id]
    ref = case[mode]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.SingularFitWarning)
        fit = lmer(case["formula"], _data(case["data"]), reml=mode == "REML",
                   residual=_structure(case))  # fmt: skip
    assert fit.converged
    assert fit.loglik == pytest.approx(ref["logLik"], abs=1e-4)
    assert fit.phi == pytest.approx(ref["parameter"], abs=1e-4)
    assert _rel(fit.sigma, ref["sigma"]) < 1e-4
    n, p = fit.design.n_obs, len(fit.fixef)
    # nlme's summary of an ML fit scales the fixed effects' covariance by n / (n - p);
    # bayeslmm, as lme4, uses sigma^2 (X'V^-1 X)^-1 with the ML sigma
    scale = 1.0 if mode == "REML" else np.sqrt(n / (n - p))
    for name, value in ref["fixef"].items():
        assert _rel(fit.fixef[name], value) < 1e-4, name
        assert _rel(fit.se[name] * scale, ref["se"][name]) < 1e-4, name
    vc = fit.varcorr()
    assert vc.iloc[-1].tolist()[:2] == ["Residual", fit.design.residual.parameter]
    if "re_sd" in ref:  # nlme lists nested factors outermost first
        sds = vc[(vc.grp != "Residual") & vc.var2.isna()].sdcor.to_numpy()
        assert np.allclose(np.sort(sds), np.sort(np.atleast_1d(ref["re_sd"])), rtol=1e-4)
    assert fit.n_params == p + len(fit.theta) + 2
    assert fit.aic == pytest.approx(-2 * fit.loglik + 2 * fit.n_params)


@pytest.mark.parametrize("mode", ["REML", "ML"])
def test_tutorial_model_reaches_past_nlme(sleepstudy, mode):
    """(Days | Subject) with AR(1): the optimum has the random effects correlating +1,
    which nlme's log-Cholesky parametrisation approaches but never reaches; bayeslmm's
    likelihood is at least nlme's best and it says the fit is singular."""
    ref = REFERENCE["sleep_rs_ar1"][mode]
    with pytest.warns(bl.SingularFitWarning):
        fit = lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, reml=mode == "REML",
                   residual=bl.AR1(time="Days", group="Subject"))  # fmt: skip
    assert fit.singular
    assert ref["logLik"] <= fit.loglik < ref["logLik"] + 0.01
    assert fit.phi == pytest.approx(ref["parameter"], abs=5e-3)
    for name, value in ref["fixef"].items():
        assert _rel(fit.fixef[name], value) < 1e-4


def test_compound_symmetry_gls_equals_random_intercept(ratpup):
    """With rho > 0, compound symmetry within litters is the random-intercept model
    (sigma_cs^2 = sigma^2 + tau^2, rho = tau^2 / sigma_cs^2): same likelihood, fixed
    effects, SEs and Satterthwaite df (invariant to the parametrisation)."""
    form = "weight ~ treatment + sex + litsize"
    cs = lmer(form, ratpup, residual=bl.CompoundSymmetry(group="litter"))
    ri = lmer(form + " + (1 | litter)", ratpup)
    assert cs.loglik == pytest.approx(ri.loglik, abs=1e-7)
    tau2, s2 = ri.covariances()[0][0, 0], ri.sigma**2
    assert cs.phi == pytest.approx(tau2 / (tau2 + s2), rel=1e-5)
    assert cs.sigma**2 == pytest.approx(tau2 + s2, rel=1e-5)
    assert np.allclose(cs.fixef, ri.fixef, rtol=1e-6) and np.allclose(cs.se, ri.se, rtol=1e-5)
    df_cs, df_ri = satterthwaite(cs)["df"], satterthwaite(ri)["df"]
    assert np.allclose(df_cs, df_ri, rtol=1e-3)
    obs_cs = cs.coefficients("observed")["se"]
    assert np.allclose(obs_cs, ri.coefficients("observed")["se"], rtol=1e-3)
    assert cs.residual_structure == "compound symmetry within litter (rho)"
