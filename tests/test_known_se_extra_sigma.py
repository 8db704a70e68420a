"""``bl.LMM(..., se=..., extra_sigma=True)``: known standard errors plus an extra residual
SD (brms ``y | se(sei, sigma = TRUE)``; row ``i``'s residual variance ``se_i^2 + sigma^2``),
sampled on the PyMC graph.

References: the posterior of BCG's ``yi ~ 1`` by two-dimensional quadrature with the
model's priors (no sampler involved), and metafor's ``rma(yi, sei)`` REML fit
(tests/data/metafor_known_se.json), whose tau^2 is that sigma^2, through
``bl.lmer(..., se=, extra_sigma=True)``.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import bayeslmm as bl
from bayeslmm.errors import ArgumentError

DATA = Path(__file__).parent / "data"
BCG = pd.read_csv(DATA / "dat_bcg.csv")
KONST = pd.read_csv(DATA / "konstantopoulos2011.csv")
REF = {(c["id"], c["method"]): c
       for c in json.loads((DATA / "metafor_known_se.json").read_text())["cases"]}  # fmt: skip


def _quadrature(priors: dict, y: np.ndarray, se: np.ndarray) -> dict[str, tuple[float, float]]:
    """Posterior mean and sd of beta and sigma on a fine grid: y_i ~ N(beta, se_i^2 +
    sigma^2), beta ~ Normal, sigma ~ HalfNormal (the model's priors)."""
    b_prior, s_prior = priors["(Intercept)"], priors["sigma"]
    assert b_prior.dist == "Normal" and s_prior.dist == "HalfNormal"
    beta = np.linspace(-3.0, 1.5, 901)
    sigma = np.linspace(1e-4, 3.0, 900)
    B, S = np.meshgrid(beta, sigma, indexing="ij")
    scale = np.sqrt(se**2 + S[..., None] ** 2)
    logp = scipy.stats.norm.logpdf(y, B[..., None], scale).sum(axis=-1)
    logp += scipy.stats.norm.logpdf(B, b_prior.params["mu"], b_prior.params["sigma"])
    logp += scipy.stats.halfnorm.logpdf(S, scale=s_prior.params["sigma"])
    w = np.exp(logp - logp.max())
    w /= w.sum()
    out = {}
    for name, grid in (("beta", B), ("sigma", S)):
        mean = float(np.sum(w * grid))
        out[name] = (mean, float(np.sqrt(np.sum(w * grid**2) - mean**2)))
    return out


def test_extra_sigma_posterior_matches_quadrature_and_metafor():
    model = bl.LMM("yi ~ 1", BCG, se="sei", extra_sigma=True)
    assert "sigma" in model.priors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains: ESS warnings
        model.fit(draws=500, tune=500, chains=2, random_seed=3, progressbar=False)
    assert model.fit_info.log_density == "PyMC graph" and model.fit_info.method == "full"
    post = bl.bayes.stack.posterior(model.idata)
    draws = {"beta": post["beta"].values[..., 0].ravel(), "sigma": post["sigma"].values.ravel()}
    ref = _quadrature(model.priors, BCG["yi"].to_numpy(), BCG["sei"].to_numpy())
    for name, values in draws.items():
        mean, sd = ref[name]
        # Monte Carlo error of 1000 correlated draws (ESS >= ~250): 4 standard errors
        assert abs(values.mean() - mean) < 4 * sd / np.sqrt(250), name
        assert abs(values.std() - sd) < 0.2 * sd, name
    # beside REML (metafor's rma; bl.lmer's extra_sigma equals it, tests/test_known_se.py):
    # the posterior of the extra SD covers tau, its mean a little above (the SD's prior and
    # the integration over it)
    rma = REF[("bcg", "REML")]
    reml = bl.lmer("yi ~ 1", BCG, se="sei", extra_sigma=True)
    assert reml.extra_sd**2 == pytest.approx(rma["tau2"], rel=1e-4)
    assert abs(draws["sigma"].mean() - np.sqrt(rma["tau2"])) < draws["sigma"].std()
    assert abs(draws["beta"].mean() - rma["beta"]) < 0.5 * draws["beta"].std()
    text = str(model)
    assert "known standard errors (column 'sei') and an extra residual SD, sigma" in text
    assert model.varcorr()["parameter"].tolist() == ["sigma"]
    # fitted values on the data's scale (no random effects here: the intercept)
    np.testing.assert_allclose(model.fitted(), draws["beta"].mean())


def test_report_of_an_extra_sigma_model(tmp_path):
    model = bl.LMM("yi ~ 1 + (1 | district)", KONST, se="sei", extra_sigma=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(draws=100, tune=100, chains=1, random_seed=2, progressbar=False)
        files = bl.report(model, path=tmp_path / "r")
    page = files.html.read_text(encoding="utf-8")
    assert "with an extra residual SD sigma estimated beside them" in page
    resid = pd.read_csv(files.tables["standardized_residuals"])
    sigma = float(bl.bayes.stack.posterior(model.idata)["sigma"].mean())
    np.testing.assert_allclose(resid["standardized"],
                               resid["residual"] / np.sqrt(KONST["sei"] ** 2 + sigma**2))


def test_extra_sigma_with_a_random_term_and_refusals():
    """Studies in districts (rma.mv's two levels): the district SD and the extra residual
    SD are both sampled and shown; what the route cannot do is refused."""
    model = bl.LMM("yi ~ 1 + (1 | district)", KONST, se="sei", extra_sigma=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(draws=100, tune=100, chains=1, random_seed=1, progressbar=False)
    assert set(model.varcorr()["parameter"]) == {"sd((Intercept)|district)", "sigma"}
    assert model.population_variables()[-1] == "sigma"
    with pytest.raises(ArgumentError, match="method None or 'full'"):
        model.fit(draws=10, tune=10, chains=1, method="marginal", progressbar=False)
    with pytest.raises(ArgumentError, match="give se='column' too"):
        bl.LMM("yi ~ 1 + (1 | district)", KONST, extra_sigma=True)
    with pytest.raises(ArgumentError, match="extra_sigma must be True or False"):
        bl.LMM("yi ~ 1 + (1 | district)", KONST, se="sei", extra_sigma="yes")
    for call in (model.icc, model.r2):
        with pytest.raises(ArgumentError, match="known standard errors"):
            call()
    # without extra_sigma, a sigma prior is still refused
    with pytest.raises(ArgumentError, match="no 'sigma' to give a prior"):
        bl.LMM("yi ~ 1 + (1 | district)", KONST, se="sei",
               priors={"sigma": bl.Prior("HalfNormal", sigma=1)})  # fmt: skip
    given = bl.LMM("yi ~ 1 + (1 | district)", KONST, se="sei", extra_sigma=True,
                   priors={"sigma": bl.Prior("HalfNormal", sigma=0.3)})  # fmt: skip
    assert given.priors["sigma"] == bl.Prior("HalfNormal", sigma=0.3)
