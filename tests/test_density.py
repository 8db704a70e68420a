"""The compiled marginal density: PyMC's log density and gradient, PyMC's variables."""

import warnings

import numpy as np
import pytest
from pymc.util import get_default_varnames

import bayeslmm as bl
from bayeslmm.density import MarginalDensity
from bayeslmm.marginal import sufficient_statistics

P = bl.Prior
FORMULAS = [
    "Reaction ~ Days + (Days | Subject)",
    "Reaction ~ Days + (Days || Subject)",
    "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
    "Reaction ~ 0 + Days + (Days | Subject)",
    "Reaction ~ 1 + (1 | Subject)",
    "Reaction ~ Days + (1 + Days + I(Days**2) | Subject)",
]
PRIORS = [
    None,
    {"fixed": P("StudentT", nu=4, mu=0, sigma=50), "sd": P("Exponential", lam=0.1),
     "sigma": P("HalfStudentT", nu=3, sigma=20), "cor": P("LKJ", eta=2.0)},
    {"fixed": P("Cauchy", alpha=1, beta=50), "sd": P("HalfCauchy", beta=20),
     "sigma": P("InverseGamma", alpha=3, beta=30), "cor": P("LKJ", eta=0.7)},
    {"fixed": P("Flat"), "sd": P("Gamma", alpha=2, beta=0.1),
     "sigma": P("LogNormal", mu=3, sigma=1)},
    {"sd": P("HalfFlat"), "sigma": P("HalfFlat")},
]  # fmt: skip


def _pair(formula, data, priors):
    model = bl.LMM(formula, data, priors=priors)
    density = model.compiled_density
    assert density is not None
    return model, density


@pytest.mark.parametrize("priors", PRIORS)
@pytest.mark.parametrize("formula", FORMULAS)
def test_log_density_and_gradient_are_pymcs(sleepstudy, formula, priors):
    """Same function of the same unconstrained vector: gradient to rounding, value up to
    PyMC's float32-rounded constants."""
    model, density = _pair(formula, sleepstudy, priors)
    pymc_model = model.marginal_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = pymc_model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    rng = np.random.default_rng(1)
    offsets = []
    for _ in range(4):
        x = density.start + rng.normal(size=density.start.size)
        ours, grad = density.logp_grad(x)
        theirs, their_grad = fn(x)
        np.testing.assert_allclose(grad, their_grad, rtol=1e-9, atol=1e-9)
        offsets.append(ours - float(theirs))
    assert np.all(np.isfinite(offsets))
    assert np.ptp(offsets) < 1e-6
    assert abs(offsets[0]) < 1e-5 * max(1.0, abs(float(theirs)))


@pytest.mark.parametrize("formula", FORMULAS[:3])
def test_constrained_values_are_pymcs(sleepstudy, formula):
    model, density = _pair(formula, sleepstudy, None)
    pymc_model = model.marginal_model
    outputs = get_default_varnames(pymc_model.unobserved_value_vars, include_transformed=False)
    fn = pymc_model.compile_fn(outputs, inputs=pymc_model.value_vars, point_fn=False)
    rng = np.random.default_rng(2)
    x = density.start + rng.normal(size=(3, density.start.size))
    ours = density.constrained(x, model.design)
    start = pymc_model.initial_point()
    shapes = [np.shape(start[v.name]) for v in pymc_model.value_vars]
    sizes = [int(np.prod(s)) for s in shapes]
    assert set(ours) == {v.name for v in outputs}
    for i in range(3):
        parts = np.split(x[i], np.cumsum(sizes)[:-1])
        values = fn(*[a.reshape(s) for a, s in zip(parts, shapes, strict=True)])
        for var, value in zip(outputs, values, strict=True):
            np.testing.assert_allclose(ours[var.name][i], value, rtol=1e-10, atol=1e-12)


def test_uncovered_models_use_the_pymc_graph(ratpup, sleepstudy):
    nested = bl.LMM("weight ~ sex + (1 | treatment/litter)", ratpup)
    assert nested.marginal_supported and nested.compiled_density is None
    odd = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy,
                 priors={"sigma": P("Uniform", lower=0, upper=100)})  # fmt: skip
    assert odd.compiled_density is None
    mixed = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy,
                   priors={"Days": P("Normal", mu=0, tau=0.01)})  # fmt: skip
    assert mixed.compiled_density is None
    crossed = bl.LMM("Reaction ~ Days + (1 | Subject) + (1 | Days)", sleepstudy)
    assert crossed.compiled_density is None


def test_density_does_not_depend_on_row_count(sleepstudy):
    """Sufficient statistics only: the buffer has no per-row entry."""
    design = bl.build_design("Reaction ~ Days + (Days | Subject)", sleepstudy)
    stats = sufficient_statistics(design)
    density = MarginalDensity.from_model(design, bl.default_priors(design), stats)
    assert density.data.size < 20 * stats.n_groups * stats.q**2 + 100


def test_fit_uses_the_compiled_density_with_pymcs_output(sleepstudy):
    compiled = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    a = compiled.fit(draws=300, tune=300, chains=2, random_seed=3, progressbar=False,
                     sampler="nutpie")  # fmt: skip
    assert compiled._fit_info["log_density"] == "bayeslmm (numba)"
    graph = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    b = graph.fit(draws=300, tune=300, chains=2, random_seed=3, progressbar=False,
                  sampler="pymc")  # fmt: skip
    assert graph._fit_info["log_density"] == "PyMC graph"
    assert set(a.posterior.data_vars) == set(b.posterior.data_vars)
    for name, var in b.posterior.data_vars.items():
        assert a.posterior[name].dims == var.dims, name
        for dim in var.dims[2:]:
            assert list(a.posterior[dim].values) == list(b.posterior[dim].values)
    assert int(a.sample_stats["diverging"].sum()) == 0
    # same posterior: means within a few Monte Carlo standard errors
    summary = compiled.summary(print_it=False)
    other = graph.summary(print_it=False)
    se = np.sqrt(summary["mcse_mean"] ** 2 + other["mcse_mean"] ** 2)
    assert np.all(np.abs(summary["mean"] - other["mean"]) < 5 * se)


def test_integer_prior_parameters_are_floats():
    """PyMC's HalfStudentT gives nan log densities for an integer nu; Prior stores floats."""
    prior = P("HalfStudentT", nu=3, sigma=20)
    assert isinstance(prior.params["nu"], float)
    assert repr(prior) == "HalfStudentT(nu=3, sigma=20)"


def test_c_callback_reports_bad_points_instead_of_raising(sleepstudy):
    """An underflowed SD (exp(-1000) = 0) divides by zero: the C entry nutpie calls must
    return an error code, not let an exception escape into nutpie's threads."""
    import ctypes

    from bayeslmm.density import c_functions

    model = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    density = model.compiled_density
    logp_fn, _ = c_functions()
    pointer = ctypes.POINTER(ctypes.c_double)

    def call(x):
        x = np.ascontiguousarray(x, dtype=float)
        grad, value = np.zeros_like(x), np.zeros(1)
        code = logp_fn.ctypes(x.size, x.ctypes.data_as(pointer), grad.ctypes.data_as(pointer),
                              value.ctypes.data_as(pointer), density.data.ctypes.data)  # fmt: skip
        return code, value[0], grad

    code, value, grad = call(density.start)
    assert code == 0
    expected, expected_grad = density.logp_grad(density.start)
    assert value == pytest.approx(expected) and np.allclose(grad, expected_grad)
    for bad in (density.layout.sigma, density.layout.starts[0]):
        x = density.start.copy()
        x[bad] = -1000.0
        code, value, _ = call(x)
        assert code != 0, bad


def test_compiled_fit_does_not_import_pymc():
    """Importing PyMC costs about 0.6 s, more than fitting sleepstudy on the compiled
    density: the import and the fit leave it out."""
    import subprocess
    import sys

    code = (
        "import sys, warnings; warnings.simplefilter('ignore'); import bayeslmm as bl\n"
        "m = bl.LMM('Reaction ~ Days + (Days | Subject)', bl.load_dataset('sleepstudy'))\n"
        "m.fit(draws=100, tune=100, chains=2, progressbar=False)\n"
        "m.summary(print_it=False)\n"
        "print(m._fit_info['log_density'], 'pymc' in sys.modules, 'pytensor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "bayeslmm (numba) False False", out.stdout
