"""The numpyro driver: starting points, statistics under PyMC's names, reproducibility."""

import numpy as np
import pymc as pm
import pytest

from bayeslmm.bayes.sampling import _jittered_starts, sample_numpyro

pytest.importorskip("numpyro")


@pytest.fixture(scope="module")
def normal_model():
    with pm.Model(coords={"k": ["a", "b"]}) as model:
        mu = pm.Normal("mu", 1.0, 1.0, dims="k")
        pm.HalfNormal("s", 2.0)
        pm.Deterministic("mu_sum", mu.sum())
    return model


def test_jittered_starts_avoid_points_without_density(normal_model):
    names = [v.name for v in normal_model.value_vars]
    mu = names.index("mu")

    def logp(points):  # no density where the first mu is above its start (1.0)
        return np.where(points[mu][:, 0] > 1.0, -np.inf, 0.0)

    starts = _jittered_starts(normal_model, names, 50, np.random.default_rng(0), logp)
    assert starts[mu].shape == (50, 2)
    assert (starts[mu][:, 0] <= 1.0).all()
    assert np.abs(starts[mu] - 1.0).max() <= 1.0  # jitter is uniform(-1, 1)
    assert len(np.unique(starts[mu][:, 1])) == 50  # every chain starts elsewhere


def _fit(model, seed):
    return sample_numpyro(model, draws=200, tune=200, chains=2, random_seed=seed,
                          target_accept=0.9, progressbar=False)  # fmt: skip


def test_sample_numpyro_names_statistics_and_seed(normal_model):
    idata = _fit(normal_model, 3)
    post = idata.posterior
    assert set(post.data_vars) == {"mu", "s", "mu_sum"}  # constrained, no s_log__
    assert post["mu"].dims == ("chain", "draw", "k")
    assert list(post["k"].values) == ["a", "b"]
    assert (post["s"] > 0).all()
    np.testing.assert_allclose(post["mu_sum"], post["mu"].sum("k"))
    stats = idata.sample_stats
    assert {"diverging", "lp", "n_steps", "step_size", "acceptance_rate", "tree_depth",
            "energy"} <= set(stats.data_vars)  # fmt: skip
    # lp is the log density (with the log-transform's Jacobian) at each draw
    logp = normal_model.compile_logp()
    point = {"mu": post["mu"].values[0, 5], "s_log__": np.log(post["s"].values[0, 5])}
    np.testing.assert_allclose(stats["lp"].values[0, 5], logp(point), rtol=1e-8)
    # the posterior is N(1, 1) per mu: a short run gets close
    assert abs(float(post["mu"].mean()) - 1.0) < 0.25
    again = _fit(normal_model, 3)
    np.testing.assert_array_equal(again.posterior["mu"], post["mu"])
    other = _fit(normal_model, 4)
    assert not np.array_equal(other.posterior["mu"], post["mu"])


def test_default_sampler_rule(monkeypatch):
    import bayeslmm.bayes.sampling as sampling

    assert sampling.default_sampler(36, compiled=True) == "nutpie"  # compiled density
    assert sampling.default_sampler(10**6, compiled=True) == "nutpie"
    assert sampling.default_sampler(36) == "numpyro"  # PyMC's graph, e.g. sleepstudy full
    assert sampling.default_sampler(sampling.NUMPYRO_MAX_EFFECTS) == "numpyro"
    assert sampling.default_sampler(sampling.NUMPYRO_MAX_EFFECTS + 1) == "pymc"
    monkeypatch.setattr(sampling, "available_samplers", lambda: ["pymc", "nutpie"])
    assert sampling.default_sampler(36) == "pymc"  # numpyro not installed
    monkeypatch.setattr(sampling, "available_samplers", lambda: ["pymc", "numpyro"])
    assert sampling.default_sampler(36, compiled=True) == "numpyro"  # nutpie missing


def test_installed_leaves_lazy_modules_unloaded(tmp_path, monkeypatch):
    """ArviZ 1.x registers numpyro as a lazy module: asking whether a sampler is
    installed must not load it (numpyro and JAX cost every fit 0.5-0.8 s)."""
    import importlib.util
    import sys

    from bayeslmm.bayes.sampling import installed

    (tmp_path / "lazy_probe_mod.py").write_text("LOADED.append(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.find_spec("lazy_probe_mod")
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    loaded = []
    module.__dict__["LOADED"] = loaded
    monkeypatch.setitem(sys.modules, "lazy_probe_mod", module)
    spec.loader.exec_module(module)
    assert installed("lazy_probe_mod")
    assert loaded == []  # still lazy
    monkeypatch.setitem(sys.modules, "blocked_probe_mod", None)
    assert not installed("blocked_probe_mod")
    assert not installed("no_such_module_anywhere_xyz")
    assert installed("numpy")
