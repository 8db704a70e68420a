"""Exact draws of every random effect for each posterior draw of a marginal fit.

The marginal model (:mod:`bayeslmm.bayes.marginal_graph`, :mod:`bayeslmm.bayes.density`)
samples only the population parameters; here the random effects are drawn from their
exact conditional distribution given each draw (:mod:`bayeslmm.gaussian.draws`) and
returned under the names the explicit model uses (``u_L``, ``z_L``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..gaussian.blocked import BlockedSystem
from ..gaussian.draws import covariance_cholesky
from ..gaussian.draws import draw_random_effects as draw_array
from ..gaussian.residual import ResidualSystem, draw_effects_residual
from ..spec.design import Design
from ..spec.naming import term_dim
from . import stack
from .stack import Results


def block_scale_draws(post: xr.Dataset, block) -> np.ndarray:
    """Per-draw Cholesky factor of a block's covariance: (chain, draw, q, q)."""
    sd = post[f"sd_{block.label}"].values
    cor = post[f"cor_{block.label}"].values if block.correlated else None
    return covariance_cholesky(sd, cor)


@dataclass
class KernelDraws:
    """Posterior draws as the blocked kernel takes them, one row per draw."""

    T: np.ndarray  # (S, F, qmax, qmax) relative factors of the factors integrated out
    beta: np.ndarray  # (S, p)
    sigma: np.ndarray  # (S,)
    uE: np.ndarray  # (S, Q_E) effects of the sampled factors, node by node
    scales: dict[int, np.ndarray]  # block index -> (S, q, q) covariance factor (integrated)
    where: dict[int, tuple]  # block index -> (its FactorNodes, first column in the node)


def kernel_draws(post: xr.Dataset, design: Design, system: BlockedSystem) -> KernelDraws:
    """The blocked kernel's inputs for every posterior draw (chains flattened)."""
    S = post.sizes["chain"] * post.sizes["draw"]
    # no sigma: known standard errors, the rows scaled by them (residual SD 1)
    sigma = post["sigma"].values.reshape(S) if "sigma" in post else np.ones(S)
    beta = post["beta"].values.reshape(S, -1) if "beta" in post else np.zeros((S, 0))
    stats = system.stats
    QM = system.n_marginal_effects
    T = np.zeros((S, system.n_factors, system.qmax, system.qmax))
    uE = np.zeros((S, system.n_explicit_effects))
    scales, where = {}, {}
    for f, factor in enumerate(stats.factors):
        column = 0
        sampled = factor.first >= stats.n_marginal
        lo = int(stats.offset[factor.first]) - QM
        for k in factor.blocks:
            block = design.blocks[k]
            q = block.n_terms
            if sampled:  # its effects are posterior draws: the kernel conditions on them
                u = post[f"u_{block.label}"].values.reshape(S, factor.n_levels, q)
                view = uE[:, lo : lo + factor.n_levels * factor.q]
                view = view.reshape(S, factor.n_levels, factor.q)
                view[:, :, column : column + q] = u
                uE[:, lo : lo + factor.n_levels * factor.q] = view.reshape(S, -1)
            else:
                scale = block_scale_draws(post, block).reshape(S, q, q)
                T[:, f, column : column + q, column : column + q] = scale
                scales[k], where[k] = scale, (factor, column)
            column += q
    T /= sigma[:, None, None, None]
    return KernelDraws(T, beta, sigma, uE, scales, where)


def draw_random_effects(
    idata: Results,
    design: Design,
    system: BlockedSystem,
    random_seed: int | None = None,
    residual: ResidualSystem | None = None,
) -> xr.Dataset:
    """Exact draws of the ``u_L`` (and standardised ``z_L``) of every block integrated out,
    given each posterior draw (and the sampled factors' effects, already in ``idata``);
    with a residual structure (``residual``), each draw's system is weighted by its
    ``R(phi)^-1``."""
    rng = np.random.default_rng(random_seed)
    post = stack.posterior(idata)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    S = n_chain * n_draw
    stats = system.stats
    kd = kernel_draws(post, design, system)
    if residual is None:
        effects = draw_array(system, kd.T, kd.beta, kd.sigma, rng, kd.uE)
    else:
        phi = post[design.residual.parameter].values.reshape(S)
        effects = draw_effects_residual(residual, phi, kd.T, kd.beta, kd.sigma, rng, kd.uE)
    out = {}
    for k, (factor, column) in kd.where.items():
        block = design.blocks[k]
        lo, hi = stats.offset[factor.first], stats.offset[factor.first + factor.n_levels]
        u = effects[:, lo:hi].reshape(S, factor.n_levels, factor.q)
        u = u[:, :, column : column + block.n_terms]
        # u = scale z per level: one small inverse per draw, applied to every level
        z = np.einsum("dab,dgb->dga", np.linalg.inv(kd.scales[k]), u, optimize=True)
        dims = ("chain", "draw", block.group, term_dim(block.label))
        coords = {block.group: list(block.levels), term_dim(block.label): list(block.columns)}
        shape = (n_chain, n_draw, block.n_levels, block.n_terms)
        out[f"u_{block.label}"] = xr.DataArray(u.reshape(shape), dims=dims, coords=coords)
        out[f"z_{block.label}"] = xr.DataArray(z.reshape(shape), dims=dims, coords=coords)
    return xr.Dataset(out, coords={"chain": post.chain, "draw": post.draw})
