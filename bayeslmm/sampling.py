"""Sampling backends: PyMC's NUTS, nutpie and numpyro behind one call."""

from __future__ import annotations

import importlib.util
import warnings

import arviz as az
import pymc as pm
import xarray as xr

SAMPLERS = ("pymc", "nutpie", "numpyro")
_MODULE = {"pymc": "pymc", "nutpie": "nutpie", "numpyro": "numpyro"}


def available_samplers() -> list[str]:
    """Samplers whose package is installed."""
    return [s for s in SAMPLERS if importlib.util.find_spec(_MODULE[s]) is not None]


#: Random effects (levels x terms) up to which ``sampler="auto"`` prefers numpyro.
NUMPYRO_MAX_EFFECTS = 10_000


def default_sampler(method: str, n_effects: int) -> str:
    """The sampler ``sampler="auto"`` picks, from ``benchmarks/results`` on 2 CPU cores.

    numpyro for the marginal model with up to 10,000 random effects, where it is
    installed: compilation dominates there and numpyro's is the quickest (sleepstudy:
    292 ESS/s against 181 with PyMC; 500 levels x 2 terms: 258 against 203). With more
    effects PyMC's two parallel chain processes win (10,000 levels x 2 terms, 1M rows).
    """
    if (method == "marginal" and n_effects <= NUMPYRO_MAX_EFFECTS
            and "numpyro" in available_samplers()):  # fmt: skip
        return "numpyro"
    return "pymc"


def check_sampler(sampler: str) -> None:
    """Reject unknown or uninstalled samplers with a clear message."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if importlib.util.find_spec(_MODULE[sampler]) is None:
        extra = "nutpie" if sampler == "nutpie" else "numpyro"
        raise ImportError(
            f"sampler {sampler!r} needs the {sampler} package: pip install 'bayeslmm[{extra}]'"
        )


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
) -> az.InferenceData:
    """Run NUTS on ``model`` and return posterior, sample_stats and observed_data."""
    check_sampler(sampler)
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
        )
    for group in ("warmup_posterior", "warmup_sample_stats"):
        if group in idata.groups():
            del idata[group]
    # nutpie also returns the unconstrained values (``sigma_log__``): keep the model's
    # own variables so that every sampler gives the same posterior
    extra = [v for v in idata.posterior.data_vars if v not in model.named_vars]
    if extra:
        idata.posterior = idata.posterior.drop_vars(extra)
    if "observed_data" not in idata.groups():
        obs = {
            rv.name: xr.DataArray(
                model.rvs_to_values[rv].data, dims=model.named_vars_to_dims[rv.name]
            )
            for rv in model.observed_RVs
        }
        idata.add_groups(observed_data=xr.Dataset(obs))
    return idata
