"""The compiled marginal density: PyMC's log density and gradient, PyMC's variables."""

import math
import warnings

import numpy as np
import pymc
import pytest
import scipy.integrate
from pymc.util import get_default_varnames

import bayeslmm as bl
from bayeslmm.bayes.density import MarginalDensity, _lkj_log_constant
from bayeslmm.gaussian.blocked import BlockedSystem
from bayeslmm.gaussian.statistics import BlockedStats

P = bl.Prior
FORMULAS = [
    "Reaction ~ Days + (Days | Subject)",
    "Reaction ~ Days + (Days || Subject)",
    "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
    "Reaction ~ 0 + Days + (Days | Subject)",
    "Reaction ~ 1 + (1 | Subject)",
    "Reaction ~ Days + (1 + Days + I(Days**2) | Subject)",
    "Reaction ~ Days + (Days | Subject) + (1 | Days)",  # crossed: PyMC's graph has the Op
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


#: PyMC 5's ``LKJCholeskyCov`` has its normalising constant's sign inverted (PyMC 6 fixed it)
PYMC_5 = int(pymc.__version__.split(".")[0]) < 6


def _pymc5_lkj_error(model) -> float:
    """How much PyMC 5's log density exceeds the correct one: twice the true log LKJ
    constant of every correlated block (``_lkj_log_constant`` is checked on its own)."""
    if not PYMC_5:
        return 0.0
    error = 0.0
    for block in model.design.blocks:
        if block.correlated:
            eta = float(model.priors[f"cor({block.label})"].params.get("eta", 1.0))
            error -= 2.0 * _lkj_log_constant(eta, block.n_terms)
    return error


@pytest.mark.parametrize("eta", [1.0, 2.0, 0.7])
def test_lkj_constant_normalises_the_lkj_density(eta):
    """The log constant makes det(R)^(eta - 1) integrate to one over correlation matrices:
    2 x 2 by quadrature over r; 3 x 3 by quadrature over (r12, r13, r23) on det(R) > 0."""
    # (1 - r^2)^(eta - 1) = (r + 1)^(eta - 1) (1 - r)^(eta - 1): quad's algebraic weight
    two = scipy.integrate.quad(lambda r: 1.0, -1, 1, weight="alg", wvar=(eta - 1, eta - 1))[0]
    assert _lkj_log_constant(eta, 2) == pytest.approx(-math.log(two), rel=1e-10)

    def over_r23(r13, r12):
        """det(R) = (h - t)(h + t) with t = r23 - r12 r13, h^2 = (1 - r12^2)(1 - r13^2):
        the innermost integral takes the boundary's singularity as quad's algebraic weight."""
        half = math.sqrt(max(0.0, (1 - r12**2) * (1 - r13**2)))
        if half == 0.0:
            return 0.0
        return scipy.integrate.quad(
            lambda t: 1.0, -half, half, weight="alg", wvar=(eta - 1, eta - 1)
        )[0]

    three = scipy.integrate.dblquad(over_r23, -1, 1, -1, 1, epsabs=1e-10, epsrel=1e-10)[0]
    assert _lkj_log_constant(eta, 3) == pytest.approx(-math.log(three), rel=1e-10)


def _pair(formula, data, priors, signed=None):
    """A model and its compiled density; ``signed`` True/False: every SD signed or none
    (where the prior allows), None: the model's own choice."""
    model = bl.LMM(formula, data, priors=priors)
    if signed is not None:
        model._signed = {f.group: (signed,) * f.q for f in model.blocked_system.stats.factors}
    density = model.compiled_density
    assert density is not None
    return model, density


def _to_pymc(x, density, design):
    """PyMC's unconstrained vector for our point ``x``: correlated blocks become the packed
    Cholesky factor of their covariance with log diagonal (``pm.LKJCholeskyCov``)."""
    values = density.constrained(x, design)
    out = x.copy()
    out[density.signed_index] = np.log(np.abs(x[density.signed_index]))
    for (_, k, corr), first, block in zip(density.layout.blocks, density.layout.starts,
                                          design.blocks, strict=True):  # fmt: skip
        if corr:
            packed = values[f"chol_{block.label}"].copy()
            rows, cols = np.tril_indices(k)
            packed[rows == cols] = np.log(packed[rows == cols])
            out[first : first + packed.size] = packed
    return out


def _common(values, design):
    """The point in the coordinates both parametrisations share: beta, SDs, correlations
    (strict lower triangle), sigma."""
    parts = [values.get("beta", np.zeros(0))]
    for block in design.blocks:
        parts.append(values[f"sd_{block.label}"])
        if block.correlated:
            parts.append(values[f"cor_{block.label}"])
    parts.append(np.atleast_1d(values["sigma"]))
    return np.concatenate(parts)


def _from_pymc(x, density, design):
    """``_common`` of PyMC's unconstrained vector."""
    values = {"beta": x[: density.layout.p], "sigma": np.exp(x[density.layout.sigma])}
    for (_, k, corr), first, block in zip(density.layout.blocks, density.layout.starts,
                                          design.blocks, strict=True):  # fmt: skip
        if not corr:
            values[f"sd_{block.label}"] = np.exp(x[first : first + k])
            continue
        rows, cols = np.tril_indices(k)
        packed = x[first : first + rows.size].copy()
        packed[rows == cols] = np.exp(packed[rows == cols])
        chol = np.zeros((k, k))
        chol[rows, cols] = packed
        cov = chol @ chol.T
        sd = np.sqrt(np.diag(cov))
        values[f"sd_{block.label}"] = sd
        values[f"cor_{block.label}"] = (cov / np.outer(sd, sd))[np.tril_indices(k, -1)]
    return _common(values, design)


def _log_jacobian(transform, x, h=1e-6):
    """log |det d transform / dx| by central differences."""
    cols = [(transform(x + e) - transform(x - e)) / (2 * h) for e in np.eye(x.size) * h]
    return np.linalg.slogdet(np.column_stack(cols))[1]


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("priors", PRIORS)
@pytest.mark.parametrize("formula", FORMULAS)
def test_log_density_is_pymcs_through_the_change_of_variables(sleepstudy, formula, priors,
                                                              signed):  # fmt: skip
    """The same posterior as PyMC's model: our log density less the log Jacobian of our
    unconstrained space equals PyMC's less its own, up to a constant; blocks without
    correlations share PyMC's space, so there the gradients agree to rounding. A signed
    SD's density is half its SD's on each side of zero (``x -> |x|`` is two to one)."""
    model, density = _pair(formula, sleepstudy, priors, signed)
    design = model.design
    pymc_model = model.marginal_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = pymc_model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    assert any(density.signed) == (signed and priors in (None, PRIORS[2], PRIORS[4]))
    same_space = not any(corr for _, _, corr in density.layout.blocks) and not any(density.signed)
    rng = np.random.default_rng(1)
    offsets = []
    for _ in range(4):
        x = density.start + 0.7 * rng.normal(size=density.start.size)
        ours, grad = density.logp_grad(x)
        x_pymc = _to_pymc(x, density, design)
        theirs, their_grad = fn(x_pymc)
        if same_space:
            np.testing.assert_allclose(x_pymc, x)
            np.testing.assert_allclose(grad, their_grad, rtol=1e-9, atol=1e-9)
        ours -= _log_jacobian(lambda v: _common(density.constrained(v, design), design), x)
        ours += np.log(2.0) * sum(density.signed)
        theirs -= _log_jacobian(lambda v: _from_pymc(v, density, design), x_pymc)
        theirs -= _pymc5_lkj_error(model)
        offsets.append(ours - float(theirs))
    assert np.all(np.isfinite(offsets))
    assert np.ptp(offsets) < 1e-5
    assert abs(offsets[0]) < 1e-5 * max(1.0, abs(float(theirs)))


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("priors", PRIORS[:3])
@pytest.mark.parametrize("formula", FORMULAS)
def test_gradient_is_the_log_densitys(sleepstudy, formula, priors, signed):
    _, density = _pair(formula, sleepstudy, priors, signed)
    rng = np.random.default_rng(4)
    x = density.start + 0.7 * rng.normal(size=density.start.size)
    _, grad = density.logp_grad(x)
    h = 1e-6
    numeric = [(density.logp_grad(x + e)[0] - density.logp_grad(x - e)[0]) / (2 * h)
               for e in np.eye(x.size) * h]  # fmt: skip
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * np.abs(grad).max())


def test_correlation_transform_covers_the_correlation_matrices():
    """tanh of canonical partial correlations: valid Cholesky factors of correlation
    matrices, zero at the identity, with extreme values still finite."""
    from bayeslmm.bayes.density import correlation_cholesky

    rng = np.random.default_rng(0)
    w = correlation_cholesky(rng.normal(scale=3, size=(50, 6)), 4)
    corr = w @ np.swapaxes(w, -1, -2)
    np.testing.assert_allclose(np.diagonal(corr, axis1=-2, axis2=-1), 1.0)
    assert np.all(np.linalg.eigvalsh(corr) > 0)
    np.testing.assert_allclose(correlation_cholesky(np.zeros(3), 3), np.eye(3))
    assert np.all(np.isfinite(correlation_cholesky(np.array([40.0]), 2)))


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("formula", FORMULAS[:3])
def test_constrained_values_are_pymcs(sleepstudy, formula, signed):
    model, density = _pair(formula, sleepstudy, None, signed)
    pymc_model = model.marginal_model
    outputs = get_default_varnames(pymc_model.unobserved_value_vars, include_transformed=False)
    fn = pymc_model.compile_fn(outputs, inputs=pymc_model.value_vars, point_fn=False)
    rng = np.random.default_rng(2)
    x = density.start + rng.normal(size=(3, density.start.size))
    signed_index = density.signed_index
    assert signed_index.size == (2 if signed else 0)
    x[:, signed_index] *= np.array([[1, -1], [-1, 1], [-1, -1]])[:, : signed_index.size]
    ours = density.constrained(x, model.design)
    start = pymc_model.initial_point()
    shapes = [np.shape(start[v.name]) for v in pymc_model.value_vars]
    sizes = [int(np.prod(s)) for s in shapes]
    assert set(ours) == {v.name for v in outputs}
    for i in range(3):
        x_pymc = _to_pymc(x[i], density, model.design)
        parts = np.split(x_pymc, np.cumsum(sizes)[:-1])
        values = fn(*[a.reshape(s) for a, s in zip(parts, shapes, strict=True)])
        for var, value in zip(outputs, values, strict=True):
            np.testing.assert_allclose(ours[var.name][i], value, rtol=1e-10, atol=1e-12)


def test_every_design_is_compiled_and_uncovered_priors_use_the_pymc_graph(ratpup, sleepstudy):
    nested = bl.LMM("weight ~ sex + (1 | treatment/litter)", ratpup)
    assert nested.marginal_supported and nested.compiled_density is not None
    crossed = bl.LMM("Reaction ~ Days + (1 | Subject) + (1 | Days)", sleepstudy)
    assert crossed.compiled_density is not None
    odd = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy,
                 priors={"sigma": P("Uniform", lower=0, upper=100)})  # fmt: skip
    assert odd.compiled_density is None
    mixed = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy,
                   priors={"Days": P("Normal", mu=0, tau=0.01)})  # fmt: skip
    assert mixed.compiled_density is None


def test_density_does_not_depend_on_row_count(sleepstudy):
    """Sufficient statistics only: the buffer has no per-row entry."""
    design = bl.build_design("Reaction ~ Days + (Days | Subject)", sleepstudy)
    system = BlockedSystem(BlockedStats.from_design(design))
    density = MarginalDensity.from_model(design, bl.default_priors(design), system)
    G, q = design.blocks[0].n_levels, design.blocks[0].n_terms
    assert density.data.size < 20 * G * q**2 + 100


def test_fit_uses_the_compiled_density_with_pymcs_output(sleepstudy):
    compiled = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    a = compiled.fit(draws=300, tune=300, chains=2, random_seed=3, progressbar=False,
                     sampler="nutpie")  # fmt: skip
    assert compiled._fit_info["log_density"] == "bayeslmm (numba)"
    assert compiled._fit_info["mass_matrix"] == "diagonal"  # every effect integrated out
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


def _c_call(logp_fn, density, x):
    """The C entry point ``logp_fn`` at ``x``: its return code, value and gradient."""
    import ctypes

    pointer = ctypes.POINTER(ctypes.c_double)
    x = np.ascontiguousarray(x, dtype=float)
    grad, value = np.zeros_like(x), np.zeros(1)
    code = logp_fn.ctypes(x.size, x.ctypes.data_as(pointer), grad.ctypes.data_as(pointer),
                          value.ctypes.data_as(pointer), density.data.ctypes.data)  # fmt: skip
    return code, value[0], grad


def test_c_callback_reports_bad_points_instead_of_raising(sleepstudy):
    """An underflowed sigma (exp(-1000) = 0) divides by zero: the C entry nutpie calls must
    return an error code, not let an exception escape into nutpie's threads."""
    from bayeslmm.bayes.density import c_functions

    model = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    density = model.compiled_density
    logp_fn, _ = c_functions()

    def call(x):
        return _c_call(logp_fn, density, x)

    code, value, grad = call(density.start)
    assert code == 0
    expected, expected_grad = density.logp_grad(density.start)
    assert value == pytest.approx(expected) and np.allclose(grad, expected_grad)
    for bad, value in [(density.layout.sigma, -1000.0), (0, np.nan)]:
        x = density.start.copy()
        x[bad] = value
        code, _, _ = call(x)
        assert code != 0, bad
    x = density.start.copy()  # an SD of exactly 0 is a point of the marginal density
    x[density.layout.starts[0]] = -1000.0
    assert call(x)[0] == 0


def test_gaussian_entry_point_is_every_likelihoods_on_gaussian_models(sleepstudy):
    """A Gaussian model's density through the smaller C entry point (the other
    likelihoods pruned away) equals that of the entry point of every likelihood; given a
    GLMM's buffer it reports a point it cannot evaluate."""
    from bayeslmm.bayes.density import c_functions

    rng = np.random.default_rng(4)
    frame = sleepstudy.assign(Night=sleepstudy["Days"] % 3, se=1.0 + rng.random(len(sleepstudy)))
    models = [bl.LMM("Reaction ~ Days + (Days | Subject)", frame),
              bl.LMM("Reaction ~ Days + (Days || Subject) + (1 | Night)", frame),
              bl.LMM("Reaction ~ Days + (1 | Subject)", frame, se="se")]  # fmt: skip
    models[1]._explicit = ("Subject",)  # a factor sampled, one integrated out
    for model in models:
        density = model.compiled_density
        assert density.gaussian
        for _ in range(3):
            x = density.jittered_start(rng)
            full = _c_call(c_functions()[0], density, x)
            alone = _c_call(c_functions(gaussian=True)[0], density, x)
            assert full[0] == alone[0] == 0
            assert alone[1] == pytest.approx(full[1], rel=1e-12)
            assert np.allclose(alone[2], full[2], rtol=1e-10, atol=1e-12)
    frame["fast"] = (frame["Reaction"] < 280).astype(int)
    glmm = bl.LMM("fast ~ Days + (1 | Subject)", frame, family="bernoulli").compiled_density
    assert not glmm.gaussian
    assert _c_call(c_functions()[0], glmm, glmm.start)[0] == 0
    assert _c_call(c_functions(gaussian=True)[0], glmm, glmm.start)[0] == 4


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


_EXTREME_POINTS_SCRIPT = """
import ctypes, itertools, sys
import numpy as np, pandas as pd
import bayeslmm as bl
from bayeslmm.bayes.density import c_functions

data = pd.read_csv(sys.argv[1], dtype={"subj": str, "item": str, "site": str})
pointer = ctypes.POINTER(ctypes.c_double)
values = [0.0, 1e-300, -1e-300, 1e300, -1e300, np.inf, -np.inf, np.nan, 800.0, -800.0]
for formula, explicit, signed in [
    ("rt ~ S + P + (1 | subj) + (1 | item)", (), True),
    ("rt ~ S + P + (1 + S | subj) + (1 + S | item)", ("item",), True),
    ("rt ~ S + (1 + S + P || subj) + (1 + S | item) + (1 | site)", (), False),
]:
    model = bl.LMM(formula, data)
    model._explicit = explicit
    model._signed = {f.group: (signed,) * f.q for f in model.blocked_system.stats.factors}
    density = model.compiled_density
    logp_fn, _ = c_functions(density.gaussian)  # the entry point a fit takes
    n = density.start.size
    coords = sorted(set(range(min(n, 12))) | {n - 1})
    for i, j in itertools.combinations_with_replacement(coords, 2):
        for a, b in itertools.product(values, values[::3]):
            x = density.start.copy()
            x[i], x[j] = a, b
            grad, value = np.zeros(n), np.zeros(1)
            code = logp_fn.ctypes(n, x.ctypes.data_as(pointer), grad.ctypes.data_as(pointer),
                                  value.ctypes.data_as(pointer), density.data.ctypes.data)
            assert code != 0 or np.isfinite(value[0]), (formula, i, j, a, b)
print("ok")
"""


def test_c_callback_survives_extreme_points_on_every_design():
    """Overflowing SDs (a signed SD of 1e300), infinities and NaNs, one or two at a time, on
    crossed designs with and without sampled factors: the C entry returns a code or a
    finite value. It runs in a child process, since a fault there would end the test run
    (numba's LinAlgError for non-finite blocks was not caught below the C callback)."""
    import subprocess
    import sys
    from pathlib import Path

    crossed = Path(__file__).parent / "data" / "crossed_small.csv"
    run = subprocess.run([sys.executable, "-c", _EXTREME_POINTS_SCRIPT, str(crossed)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
