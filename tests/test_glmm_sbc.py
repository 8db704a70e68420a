"""Simulation-based calibration (Talts et al. 2018) of the Bayesian GLMM fit: Bernoulli,
binomial (``cbind``, varying trials) and Poisson (``offset(log(exposure))``) models with a
random intercept, fitted by ``bl.LMM(..., family=...).fit`` (its default: the compiled
density with nutpie) on small simulated data sets
(:func:`bayeslmm.bayes.sbc.run_sbc_glmm`); the longer runs are in
``benchmarks/sbc_glmm.py``."""

import numpy as np
import pytest

import bayeslmm as bl
from bayeslmm.bayes.sbc import run_sbc_glmm

REPLICATIONS = 100
DRAWS = 39
#: one seed per family, fixed: a calibrated sampler passes with these
SEEDS = {"bernoulli": 11, "binomial": 12, "poisson": 13}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(SEEDS))
def test_glmm_sbc_ranks_are_uniform_and_a_shifted_posterior_fails(family):
    """100 replications of 3 parameters (the compiled density with nutpie, the default
    fit), 4-bin chi-square tests: a calibrated sampler fails
    one of the three at p < 0.001 with probability below 0.3%; the same draws moved by
    1.5 posterior SDs (a miscalibrated posterior) fail every one of them."""
    result = run_sbc_glmm(REPLICATIONS, family=family, groups=8, per_group=6, draws=DRAWS,
                          tune=200, seed=SEEDS[family], keep_draws=True)  # fmt: skip
    assert list(result.ranks.columns) == ["(Intercept)", "x", "sd((Intercept)|g)"]
    assert result.ranks.shape == (REPLICATIONS, 3)
    assert ((result.ranks >= 0) & (result.ranks <= DRAWS)).all().all()
    pvals = result.uniformity(bins=4)["p_value"]
    assert (pvals > 0.001).all(), pvals
    # the truths were drawn from the prior: sd > 0, and the ranks come from those draws
    assert (result.truth["sd((Intercept)|g)"] > 0).all()
    recount = np.sum(result.draws["x"] < result.truth["x"].to_numpy()[:, None], axis=1)
    assert (recount == result.ranks["x"].to_numpy()).all()
    shifted = result.shifted(1.5).uniformity(bins=4)["p_value"]
    assert (shifted < 0.001).all(), shifted


def test_run_sbc_glmm_refuses_an_unknown_family():
    with pytest.raises(bl.ArgumentError, match="negative_binomial"):
        run_sbc_glmm(1, family="negative_binomial")
