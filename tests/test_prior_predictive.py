"""LMM.prior_predictive and bayeslmm.plots.prior_predictive."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import scipy.stats

import bayeslmm as bl

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sleep_model(sleepstudy):
    return bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)


def test_prior_draws_follow_the_priors(sleep_model):
    prior = sleep_model.prior_predictive(draws=2000, random_seed=4)
    y = prior.prior_predictive["Reaction"]
    assert y.dims == ("chain", "draw", "obs") and y.shape == (1, 2000, 180)
    # the priors' own distributions (scipy) against the drawn parameters
    sigma_prior = sleep_model.priors["sigma"]
    assert sigma_prior.dist == "HalfNormal"
    scale = sigma_prior.params["sigma"]
    sigma = prior.prior["sigma"].values.ravel()
    assert scipy.stats.kstest(sigma, scipy.stats.halfnorm(scale=scale).cdf).pvalue > 0.01
    days = sleep_model.priors["Days"]
    slope = prior.prior["beta"].sel(fixed="Days").values.ravel()
    assert scipy.stats.kstest(slope, scipy.stats.norm(days.params["mu"],
                              days.params["sigma"]).cdf).pvalue > 0.01  # fmt: skip
    again = sleep_model.prior_predictive(draws=2000, random_seed=4)
    assert np.array_equal(again.prior_predictive["Reaction"].values, y.values)
    assert sleep_model.idata is None  # no fit needed, none made


def test_prior_predictive_is_silent_in_a_fresh_process():
    script = textwrap.dedent("""
        import warnings, bayeslmm as bl
        m = bl.LMM("Reaction ~ Days + (1 | Subject)", bl.load_dataset("sleepstudy"))
        m.prior_predictive(draws=20, random_seed=1)
        warnings.warn("a warning of the user's own")
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTENSOR_FLAGS", None)
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "BLAS" not in run.stderr and "Sampling" not in run.stderr
    assert "a warning of the user's own" in run.stderr  # other warnings still shown


def test_prior_predictive_arguments_and_flat_priors(sleepstudy):
    model = bl.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy,
                   priors={"Days": bl.Prior("Flat")})  # fmt: skip
    with pytest.raises(bl.PriorError, match=r"\['Days'\] have improper \(Flat\) priors"):
        model.prior_predictive(draws=10)
    with pytest.raises(bl.ArgumentError, match="draws"):
        model.prior_predictive(draws=0)
    with pytest.raises(bl.ArgumentError, match="random_seed"):
        model.prior_predictive(draws=10, random_seed=-1)


def test_prior_predictive_figure(sleep_model):
    fig = bl.plots.prior_predictive(sleep_model, draws=40, random_seed=2, shown=10)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Reaction"
    assert len(ax.lines) == 11  # 10 simulated data sets and the data
    with pytest.raises(bl.ArgumentError, match="expected a bayeslmm.LMM"):
        bl.plots.prior_predictive("model")
