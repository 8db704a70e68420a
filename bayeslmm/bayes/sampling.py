"""Sampling backends: PyMC's NUTS, nutpie and numpyro behind one call, and nutpie on the
compiled marginal density."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import numbers
import sys
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..errors import ArgumentError, MissingDependencyError, SamplerError
from ..spec.design import Design
from ..spec.naming import coords_of, cor_dim, term_dim
from . import stack
from .density import MarginalDensity, c_functions
from .stack import Results

if TYPE_CHECKING:  # imported where a PyMC model is sampled: the compiled path needs none
    import pymc as pm

SAMPLERS = ("pymc", "nutpie", "numpyro")
_MODULE = {"pymc": "pymc", "nutpie": "nutpie", "numpyro": "numpyro"}


def installed(module: str) -> bool:
    """Is ``module`` importable, without importing it.

    A module already in ``sys.modules`` counts as it stands (None: blocked) and is not
    asked for its spec: ArviZ 1.x registers numpyro there as a lazy module, which
    ``importlib.util.find_spec`` would load (numpyro and JAX, 0.5-0.8 s in every fit)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def available_samplers() -> list[str]:
    """Samplers whose package is installed."""
    return [s for s in SAMPLERS if installed(_MODULE[s])]


#: Random effects (levels x terms) up to which ``sampler="auto"`` prefers numpyro.
NUMPYRO_MAX_EFFECTS = 10_000


def default_sampler(n_effects: int, compiled: bool = False) -> str:
    """The sampler ``sampler="auto"`` picks, from ``benchmarks/results`` on 2 CPU cores.

    nutpie where the marginal model's compiled density (:mod:`bayeslmm.bayes.density`) covers
    the model: nothing to compile per process, and nutpie's chains call it without
    Python in between. Otherwise numpyro up to 10,000 random effects, where it is
    installed: for the marginal model on PyMC's graph fixed costs dominate and numpyro's
    are the lowest (ESS/s of numpyro, nutpie and PyMC on sleepstudy: 303, 282, 169; 500
    levels x 2 terms: 321, 250, 204), and the explicit model (``method="full"``, e.g.
    crossed factors) gains as much (sleepstudy: 100, 45, 34; 5,000 rows with 100 x 50
    crossed levels: 17.6, 5.1, 8.3). With more effects PyMC's two parallel chain
    processes win (marginal model, 10,000 levels x 2 terms, 1M rows: 66 against 23 ESS/s).
    """
    installed = available_samplers()
    if compiled and "nutpie" in installed:
        return "nutpie"
    if n_effects <= NUMPYRO_MAX_EFFECTS and "numpyro" in installed:
        return "numpyro"
    return "pymc"


def choose_sampler(sampler: str, method: str, chosen: str | None, compiled: bool,
                   graph_samplers: tuple[str, ...], n_effects: int,
                   formula: str) -> tuple[str, str, bool]:  # fmt: skip
    """The sampler and method a fit runs, and whether it runs the compiled density.

    Parameters
    ----------
    sampler
        As requested: ``"auto"`` or one of :data:`SAMPLERS`.
    method
        The method resolved from the request (``"marginal"`` or ``"full"``); ``chosen``
        is the request itself (None: the sampler may turn ``"marginal"`` into ``"full"``).
    compiled
        Whether the compiled density covers the marginal model (:mod:`bayeslmm.bayes.density`).
    graph_samplers
        The samplers that can run the marginal model's PyMC graph.
    n_effects
        Random effects (levels x terms), for :func:`default_sampler`.
    formula
        For the error message.

    Returns
    -------
    sampler, method, compiled
        ``compiled``: nutpie runs the compiled density (else a PyMC graph).
    """
    if method != "marginal":
        compiled = False
    # "auto" runs the marginal model anyhow: PyMC's sampler runs every graph
    runs_marginal = (sampler == "auto" or sampler == "nutpie" and compiled
                     or sampler in graph_samplers)  # fmt: skip
    if method == "marginal" and chosen is None and not runs_marginal:
        method, compiled = "full", False  # the requested sampler runs the explicit model
    if sampler == "auto":
        sampler = default_sampler(n_effects, compiled=compiled)
        if method == "marginal" and not compiled and sampler not in graph_samplers:
            sampler = "pymc"
    elif method == "marginal" and not (compiled and sampler == "nutpie"):
        if sampler not in graph_samplers:
            raise SamplerError(
                f"sampler={sampler!r} cannot run the marginal model of {formula!r}: "
                "with crossed or deeply nested factors it needs bayeslmm's blocked "
                "Cholesky, which JAX cannot trace; use sampler='nutpie' (the default) or "
                "'pymc', or method='full'"
            )
    return sampler, method, compiled and sampler == "nutpie"


def check_sampler(sampler: str) -> None:
    """Reject unknown or uninstalled samplers with a clear message."""
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ArgumentError(f"sampler must be 'auto' or one of {SAMPLERS}, got {sampler!r}")
    if not installed(_MODULE[sampler]):
        extra = "nutpie" if sampler == "nutpie" else "numpyro"
        raise MissingDependencyError(
            f"sampler {sampler!r} needs the {sampler} package: pip install 'bayeslmm[{extra}]'"
        )


def whole_number(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int if it is a whole number >= ``minimum``, else an ArgumentError."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise ArgumentError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if value < minimum:
        raise ArgumentError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_settings(
    *,
    draws: object,
    tune: object,
    chains: object,
    cores: object,
    random_seed: object,
    target_accept: object,
    progressbar: object,
) -> None:
    """Check the sampler settings of :meth:`~bayeslmm.LMM.fit` before anything is compiled or
    sampled, naming the argument at fault (``target_accept=None``: the model's default)."""
    whole_number("draws", draws)
    whole_number("tune", tune, minimum=0)
    whole_number("chains", chains)
    if cores is not None:
        whole_number("cores", cores)
    if random_seed is not None:
        whole_number("random_seed", random_seed, minimum=0)
        if random_seed >= 2**32:
            raise ArgumentError(f"random_seed must be below 2**32, got {random_seed}")
    if target_accept is not None and (
        isinstance(target_accept, bool | np.bool_)
        or not isinstance(target_accept, numbers.Real)
        or not 0 < target_accept < 1
    ):
        raise ArgumentError(
            f"target_accept must be a number between 0 and 1 (exclusive), e.g. 0.9; "
            f"got {target_accept!r}"
        )
    if not isinstance(progressbar, bool | np.bool_):
        raise ArgumentError(f"progressbar must be True or False, got {progressbar!r}")


class _DropBlasNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "NumPy C-API based implementation for BLAS" not in record.getMessage()


@contextlib.contextmanager
def quiet_pymc(progressbar: bool = False) -> Iterator[None]:
    """PyMC's graph compiled and sampled without notices that do not concern the user.

    - PyMC's log lines ("Initializing NUTS", "Sampling: [y]") unless ``progressbar``.
    - PyTensor's "could not link to a BLAS installation" warning and its "NumPy C-API
      based implementation" log line. pip's NumPy ships OpenBLAS with renamed symbols
      (``scipy_openblas64``) that PyTensor's C backend cannot link to, and PyTensor
      looks for a separate ``libcblas`` that most Linux BLAS packages do not have, so
      it falls back to NumPy's dot products, which run on that same OpenBLAS. For
      bayeslmm's graphs (matrix-vector products and small per-level blocks) that costs
      nothing measurable: 121 against 126 microseconds per log-density evaluation of
      the explicit sleepstudy model on 20,000 rows with PyTensor linked to the system
      BLAS (``PYTENSOR_FLAGS=blas__ldflags=-lblas``) and without.
    """
    pymc_log = logging.getLogger("pymc")
    blas_log = logging.getLogger("pytensor.tensor.blas")
    level, notice = pymc_log.level, _DropBlasNotice()
    if not progressbar:
        pymc_log.setLevel(logging.WARNING)
    blas_log.addFilter(notice)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
            yield
    finally:
        pymc_log.setLevel(level)
        blas_log.removeFilter(notice)


def sample_nuts(
    model: pm.Model,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    random_seed: int | None,
    target_accept: float,
    progressbar: bool,
    sampler: str,
) -> Results:
    """Run NUTS on ``model`` and return posterior, sample_stats and observed_data."""
    check_sampler(sampler)
    with quiet_pymc(progressbar):
        import pymc as pm

        if sampler == "numpyro":
            idata = sample_numpyro(
                model,
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=random_seed,
                target_accept=target_accept,
                progressbar=progressbar,
            )
            return _with_observed_data(idata, model)
        with warnings.catch_warnings():
            # our own convergence check replaces PyMC's generic messages
            warnings.filterwarnings("ignore", message=".*rhat statistic.*")
            warnings.filterwarnings("ignore", message=".*effective sample size.*")
            warnings.filterwarnings("ignore", message=".*recommend running at least 4 chains.*")
            idata = pm.sample(
                model=model,
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                random_seed=random_seed,
                target_accept=target_accept,
                progressbar=progressbar,
                nuts_sampler=sampler,
                compute_convergence_checks=False,
                # forking a process in which JAX (numpyro) has started its threads can deadlock
                mp_ctx="forkserver" if sampler == "pymc" and "jax" in sys.modules else None,
            )
        for group in ("warmup_posterior", "warmup_sample_stats"):
            stack.drop_group(idata, group)
        # nutpie also returns the unconstrained values (``sigma_log__``): keep the model's
        # own variables so that every sampler gives the same posterior
        posterior = stack.posterior(idata)
        extra = [v for v in posterior.data_vars if v not in model.named_vars]
        if extra:
            stack.set_group(idata, "posterior", posterior.drop_vars(extra))
        return _with_observed_data(idata, model)


def _with_observed_data(idata: Results, model: pm.Model) -> Results:
    if not stack.has_group(idata, "observed_data"):
        obs = {
            rv.name: xr.DataArray(
                model.rvs_to_values[rv].data, dims=model.named_vars_to_dims[rv.name]
            )
            for rv in model.observed_RVs
        }
        stack.set_group(idata, "observed_data", xr.Dataset(obs))
    return idata


#: numpyro's NUTS statistics under PyMC's names (``lp`` is the log density).
_NUMPYRO_STATS = {
    "diverging": "diverging",
    "energy": "energy",
    "num_steps": "n_steps",
    "adapt_state.step_size": "step_size",
    "accept_prob": "acceptance_rate",
    "potential_energy": "lp",
}
JITTER_RETRIES = 10


def _jittered_starts(model: pm.Model, names: list[str], chains: int, rng, logp) -> list[np.ndarray]:
    """PyMC's starting point plus uniform(-1, 1) jitter on the unconstrained scale, per
    chain, redrawn (up to ``JITTER_RETRIES`` times) where the log density is not finite."""
    start = model.initial_point()
    base = [np.asarray(start[n], dtype=float) for n in names]
    points = [np.stack([b + rng.uniform(-1, 1, b.shape) for _ in range(chains)]) for b in base]
    for _ in range(JITTER_RETRIES):
        bad = ~np.isfinite(np.asarray(logp(points)))
        if not bad.any():
            break
        for b, pts in zip(base, points, strict=True):
            pts[bad] = b + rng.uniform(-1, 1, (int(bad.sum()), *b.shape))
    return points


def sample_numpyro(
    model: pm.Model,
    *,
    draws: int,
    tune: int,
    chains: int,
    random_seed: int | None,
    target_accept: float,
    progressbar: bool,
) -> Results:
    """numpyro's NUTS on PyMC's JAX log density, with the posterior named as PyMC names it.

    The kernel, adaptation and output are those of ``pm.sample(nuts_sampler="numpyro")``;
    what differs is that the jittered starting points are checked with one compiled
    function instead of op-by-op JAX evaluation, which took 3-4 s of a 7 s sleepstudy
    fit (``benchmarks/results``). Chains run in parallel over the host devices PyMC's JAX
    module asks for, or one after another where JAX started before it could.
    """
    import jax
    from numpyro.infer import MCMC, NUTS
    from pymc.backends.arviz import coords_and_dims_for_inferencedata
    from pymc.sampling.jax import get_jaxified_graph, get_jaxified_logp  # asks for XLA devices
    from pymc.util import get_default_varnames

    names = [v.name for v in model.value_vars]
    logp = get_jaxified_logp(model)  # the log density (PyMC's flag name is inverted)

    def potential(params: dict) -> jax.Array:
        return -logp([params[n] for n in names])

    batch_logp = jax.jit(jax.vmap(logp))
    rng = np.random.default_rng(random_seed)
    starts = _jittered_starts(model, names, chains, rng, batch_logp)
    parallel = chains > 1 and jax.local_device_count() >= chains
    mcmc = MCMC(
        NUTS(potential_fn=potential, target_accept_prob=target_accept),
        num_warmup=tune,
        num_samples=draws,
        num_chains=chains,
        chain_method="parallel" if parallel else "sequential",
        progress_bar=progressbar,
    )
    keys = jax.random.split(jax.random.PRNGKey(int(rng.integers(2**31))), chains)
    mcmc.run(
        keys if chains > 1 else keys[0],
        init_params=dict(zip(names, starts if chains > 1 else [s[0] for s in starts], strict=True)),
        extra_fields=tuple(_NUMPYRO_STATS),
    )
    raw = mcmc.get_samples(group_by_chain=True)
    outputs = list(get_default_varnames(model.unobserved_value_vars, include_transformed=False))
    constrain = get_jaxified_graph(inputs=model.value_vars, outputs=outputs)
    values = jax.jit(jax.vmap(jax.vmap(constrain)))(*[raw[n] for n in names])
    posterior = {v.name: np.asarray(x) for v, x in zip(outputs, values, strict=True)}
    fields = mcmc.get_extra_fields(group_by_chain=True)
    stats = {_NUMPYRO_STATS[k]: np.asarray(v) for k, v in fields.items() if k in _NUMPYRO_STATS}
    stats["lp"] = -stats["lp"]
    stats["tree_depth"] = np.log2(stats["n_steps"]).astype(int) + 1
    coords, dims = coords_and_dims_for_inferencedata(model)
    return stack.from_dict(
        {"posterior": posterior, "sample_stats": stats},
        coords=coords,
        dims={k: v for k, v in dims.items() if k in posterior},
        attrs={"inference_library": "numpyro", "tuning_steps": tune},
    )


#: Unconstrained parameters up to which a GLMM keeps the low-rank mass matrix it asks for
#: (see :func:`low_rank_mass_matrix`).
GLMM_LOW_RANK_MAX_SIZE = 64


def low_rank_mass_matrix(density) -> bool:
    """Does nutpie adapt a low-rank mass matrix for ``density``: where the density asks for
    one (:attr:`~bayeslmm.bayes.density.MarginalDensity.low_rank_mass_matrix`), except a
    GLMM's with more than :data:`GLMM_LOW_RANK_MAX_SIZE` parameters, whose leapfrog steps
    then cost more in nutpie's low-rank adaptation than the rows' gradient
    (:func:`~bayeslmm.bayes.row_likelihood.row_loglik`) and more than the better steps
    save. Measured, 4 x 1000 draws, seed 1, min bulk ESS over sampling seconds, diagonal
    against low rank: nutpie 0.16.11: cbpp (20 parameters) 3100 against 3420-3770;
    VerbAgg's items alone (31) 62 against 280; 120 of its people with the items (152) 255
    against 113; its people alone (323) 91 against 42. nutpie 0.16.8, after the rows'
    vectorised pass: VerbAgg (348) 2005 / 5.4 s against 3733 / 17.5 s; the 50,000-row
    Bernoulli ``(1 + x | g)`` (2,005) 1878 / 48 s against 2088 / 78 s."""
    if not density.low_rank_mass_matrix:
        return False
    if density.layout.has_sigma:
        return True
    return density.layout.size <= GLMM_LOW_RANK_MAX_SIZE


#: Fewest tuning steps with which a GLMM's diagonal mass matrix is the draws' variances
#: (:func:`draws_mass_matrix`): with fewer, nutpie's gradient-based estimate adapts faster.
DRAWS_MASS_MATRIX_MIN_TUNE = 1000


def draws_mass_matrix(density, tune: int) -> bool:
    """Does nutpie adapt its diagonal mass matrix to the draws' variances (Stan's and
    PyMC's estimate; nutpie's ``adaptation="draw_diag"``,
    :func:`~bayeslmm.bayes.stack.nutpie_mass_matrix`) rather than nutpie's default
    ``sqrt(var(draws) / var(gradient))``: in a GLMM (no ``sigma``) on a diagonal one. Its
    SDs' posteriors are skewed on the log scale (grouseticks' location SD: 1% quantile
    0.03, median 0.55), the smallest bulk ESS theirs. 4 x 1000 draws, seeds 1-6:
    grouseticks' smallest bulk ESS 1510-1970 (3.11) and 1812-2412 (3.13) against 969-1460
    and 845-1617, largest R-hat 1.006 against 1.010, 15 leapfrog steps a draw either way
    (tuning 1-12% more); seeds 1-2: VerbAgg 3469-3779 against 2979-3719, cbpp 5129-5606
    against 5062-5686; the 50,000 rows' seed 1 5258 against 5153. Only with at least
    :data:`DRAWS_MASS_MATRIX_MIN_TUNE` tuning steps: a simulated Bernoulli ``(1 | g)``
    (30 groups of 10 rows), seeds 1-4, smallest bulk ESS 163-1490 against 1250-1638 with
    2 x 500 draws after 500 tuning steps, 4504-5738 against 4596-5937 with 4 x 1000
    after 1000."""
    return (tune >= DRAWS_MASS_MATRIX_MIN_TUNE and not density.layout.has_sigma
            and not low_rank_mass_matrix(density))  # fmt: skip


def mass_matrix_name(density: MarginalDensity | None, tune: int) -> str:
    """:class:`~bayeslmm.bayes.settings.FitInfo`'s name of the mass matrix a fit of
    ``density`` (None: the PyMC graph) adapts, by the rules :func:`sample_compiled` follows."""
    if density is not None and low_rank_mass_matrix(density):
        return "diagonal + low rank"
    if density is not None and draws_mass_matrix(density, tune):
        return "diagonal (draws' variances)"
    return "diagonal"


def nutpie_model(density: MarginalDensity) -> Any:
    """nutpie's model of the compiled density: one variable ``x``, every unconstrained
    parameter, started at the density's start jittered as PyMC jitters
    (:meth:`~bayeslmm.bayes.density.MarginalDensity.jittered_start`)."""
    logp_fn, expand_fn = c_functions(density.gaussian)
    size = density.layout.size

    def initial_point(seed: int) -> np.ndarray:
        return density.jittered_start(np.random.default_rng(seed))

    return stack.nutpie_compiled_model(
        _n_dim=size, dims={}, _coords={}, _shapes={"x": (size,)},
        compiled_logp_func=logp_fn, compiled_expand_func=expand_fn,
        initial_point_func=initial_point, shared_data={}, user_data=density.data,
        n_expanded=size, shape_info=(["x"], [slice(0, size)], [(size,)]),
        logp_func=None, expand_func=None,
    )  # fmt: skip


def sample_compiled(
    density: MarginalDensity,
    design: Design,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    random_seed: int | None,
    target_accept: float,
    progressbar: bool,
) -> Results:
    """nutpie's NUTS on the compiled marginal density (:mod:`bayeslmm.bayes.density`).

    Starting points: :func:`nutpie_model`. Draws are read from nutpie's raw trace
    (:func:`~bayeslmm.bayes.stack.nutpie_draws`), without ArviZ's conversion.
    The posterior has the variables, dims and coords the PyMC marginal model gives.
    The mass matrix is diagonal, or nutpie's diagonal plus low rank where sampled levels
    are nested in levels of a factor integrated out
    (:attr:`~bayeslmm.bayes.density.MarginalDensity.low_rank_mass_matrix`; InstEval:
    smallest bulk ESS 531 -> 2074 in about the same time; docs/marginal.md).
    """
    nutpie = stack.import_nutpie()
    trace = nutpie.sample(
        nutpie_model(density),
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        seed=random_seed,
        progress_bar=progressbar,
        target_accept=target_accept,
        save_warmup=False,
        return_raw_trace=True,
        **stack.nutpie_mass_matrix(low_rank_mass_matrix(density),
                                   draws=draws_mass_matrix(density, tune)),
    )
    drawn, sample_stats = stack.nutpie_draws(trace)
    posterior = density.constrained(drawn["x"], design)
    coords = coords_of(design, obs=False)
    dims = {"beta": ["fixed"]}
    for block in design.blocks:
        dims[f"sd_{block.label}"] = [term_dim(block.label)]
        if block.correlated:
            dims[f"cor_{block.label}"] = [cor_dim(block.label)]
        for kind in ("u", "z"):  # sampled factors' effects
            dims[f"{kind}_{block.label}"] = [block.group, term_dim(block.label)]
    return stack.from_dict(
        {"posterior": posterior, "sample_stats": sample_stats},
        coords=coords,
        dims={k: v for k, v in dims.items() if k in posterior},
        attrs={
            "inference_library": "nutpie",
            "log_density": "bayeslmm.bayes.density (numba)",
            "tuning_steps": tune,
        },  # fmt: skip
    )
