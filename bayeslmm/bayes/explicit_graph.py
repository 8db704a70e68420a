"""Build the explicit-random-effects PyMC model of a :class:`Design`.

Variables (``L`` is a random block's label, e.g. ``Subject``):

- ``beta`` (dim ``fixed``): fixed effects;
- ``sd_L`` (dim ``L_term``): random-effect SDs; ``cor_L`` (dim ``L_cor``, coords
  ``"a,b"``: the strict lower triangle) for correlated blocks, from ``chol_L``
  (``pm.LKJCholeskyCov``);
- ``u_L`` (dims ``<group>``, ``L_term``): random effects; in the non-centred
  parametrisation ``u_L`` is deterministic from standard normal ``z_L``;
- ``sigma``: residual SD; the response (named as in the formula) has dim ``obs``;
- with a residual structure, its correlation parameter (``phi`` or ``rho``) and the
  response ``N(mu, sigma^2 R(phi))`` (:mod:`bayeslmm.bayes.residual_graph`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..errors import ArgumentError, PriorError
from ..spec.design import Design
from ..spec.naming import PARAMETRIZATIONS, ParameterNames, coords_of, cor_dim, term_dim
from .priors import Prior


def _stack_params(priors: Sequence[Prior]) -> dict[str, np.ndarray] | None:
    """Parameters of same-family priors as arrays; None if families differ."""
    first = priors[0]
    if any(p.dist != first.dist or p.params.keys() != first.params.keys() for p in priors):
        return None
    return {k: np.asarray([p.params[k] for p in priors], dtype=float) for k in first.params}


def vector_rv(name: str, priors: Sequence[Prior], dim: str) -> pt.TensorVariable:
    """One vector random variable with element-wise priors.

    Same-family priors become one variable; mixed families become one scalar
    variable per element (``name[element]``) stacked into a deterministic ``name``.
    """
    stacked = _stack_params(priors)
    if stacked is not None:
        return priors[0].family()(name, **stacked, dims=dim)
    model = pm.modelcontext(None)
    labels = model.coords[dim]
    parts = [
        p.family()(f"{name}[{lab}]", **p.params) for p, lab in zip(priors, labels, strict=True)
    ]
    return pm.Deterministic(name, pt.stack(parts), dims=dim)


def block_scale(block, sd_priors, cor_prior) -> tuple[pt.TensorVariable | None, pt.TensorVariable]:
    """A block's covariance parameters: (Cholesky factor or None if independent, SDs).

    Registers ``sd_L`` (and ``chol_L``, ``cor_L`` for correlated blocks) in the model.
    """
    label, dim_t = block.label, term_dim(block.label)
    q = block.n_terms
    if not block.correlated:
        return None, vector_rv(f"sd_{label}", sd_priors, dim_t)
    stacked = _stack_params(sd_priors)
    if stacked is None:
        raise PriorError(
            f"SD priors within the correlated term {block.term} must share one family; "
            f"got {[str(p) for p in sd_priors]}"
        )
    sd_dist = sd_priors[0].family().dist(**stacked, shape=q)
    chol, corr, stds = pm.LKJCholeskyCov(
        f"chol_{label}",
        n=q,
        eta=cor_prior.params.get("eta", 1.0),
        sd_dist=sd_dist,
        compute_corr=True,
        # not as deterministics: the correlation matrix's diagonal is constant (1), which
        # breaks ArviZ's plots, and sd_L and cor_L below carry the same numbers
        store_in_trace=False,
        # an explicit start (identity) keeps random draws of sd_dist out of the
        # initial-point graph, which nutpie's threads cannot evaluate
        initval=np.eye(q)[np.tril_indices(q)],
    )
    sd = pm.Deterministic(f"sd_{label}", stds, dims=dim_t)
    # only the strict lower triangle: a constant diagonal breaks ArviZ's plots
    pm.Deterministic(f"cor_{label}", corr[np.tril_indices(q, k=-1)], dims=cor_dim(label))
    return chol, sd


def _random_block(block, sd_priors, cor_prior, parametrization):
    label, dim_t = block.label, term_dim(block.label)
    q = block.n_terms
    chol, sd = block_scale(block, sd_priors, cor_prior)
    dims = (block.group, dim_t)
    if chol is not None:
        if parametrization == "centered":
            return pm.MvNormal(f"u_{label}", mu=np.zeros(q), chol=chol, dims=dims)
        z = pm.Normal(f"z_{label}", 0.0, 1.0, dims=dims)
        return pm.Deterministic(f"u_{label}", z @ chol.T, dims=dims)
    if parametrization == "centered":
        return pm.Normal(f"u_{label}", 0.0, sd, dims=dims)
    z = pm.Normal(f"z_{label}", 0.0, 1.0, dims=dims)
    return pm.Deterministic(f"u_{label}", z * sd, dims=dims)


def linear_predictor_graph(design: Design, priors: Mapping[str, Prior], names: ParameterNames,
                           parametrization: str,
                           start: pt.TensorVariable) -> pt.TensorVariable:
    """``start + X beta + sum_k (Z_k u_k)`` of every row, declaring ``beta`` and each
    random block's effects (:func:`_random_block`) in the current PyMC model."""
    eta = start
    if design.X.shape[1]:
        beta = vector_rv("beta", [priors[n] for n in names.fixed], "fixed")
        eta = eta + pt.dot(pt.as_tensor(design.X), beta)
    for block, sd_names, cor_name in zip(design.blocks, names.sd, names.cor, strict=True):
        u = _random_block(
            block,
            [priors[n] for n in sd_names],
            priors[cor_name] if cor_name else None,
            parametrization,
        )
        eta = eta + (pt.as_tensor(block.Z) * u[block.codes]).sum(axis=1)
    return eta


def build_full_model(
    design: Design, priors: dict[str, Prior], parametrization: str = "noncentered",
    known_se: np.ndarray | None = None,
) -> pm.Model:
    """The PyMC model with explicit random effects.

    Parameters
    ----------
    design
        The evaluated formula.
    priors
        Complete priors keyed by parameter name (see :func:`resolve_priors`).
    parametrization
        ``"noncentered"`` (default) or ``"centered"`` random effects.
    known_se
        Known standard errors of the rows with an extra residual SD: row ``i``'s residual
        SD is ``sqrt(known_se_i^2 + sigma^2)`` (brms ``se(se, sigma = TRUE)``).
    """
    if parametrization not in PARAMETRIZATIONS:
        raise ArgumentError(f"parametrization must be one of {PARAMETRIZATIONS}")
    names = ParameterNames.from_design(design)
    with pm.Model(coords=coords_of(design)) as model:
        mu = linear_predictor_graph(design, priors, names, parametrization, pt.zeros(design.n_obs))
        sigma = priors["sigma"].family()("sigma", **priors["sigma"].params)
        if known_se is not None:
            if design.residual is not None:
                raise ArgumentError("known standard errors take no residual structure")
            scale = pt.sqrt(pt.as_tensor(np.asarray(known_se, dtype=float) ** 2) + sigma**2)
            pm.Normal(design.response, mu=mu, sigma=scale, observed=design.y, dims="obs")
        elif design.residual is None:
            pm.Normal(design.response, mu=mu, sigma=sigma, observed=design.y, dims="obs")
        else:
            from ..gaussian.residual import ResidualWeights
            from .residual_graph import correlation_variable, residual_likelihood

            phi = correlation_variable(design.residual, priors[design.residual.parameter])
            weights = ResidualWeights.from_layout(design.residual)
            residual_likelihood(design.response, mu, sigma, phi, design.y, weights)
    return model
