"""The exact marginal model: random effects integrated out, then drawn exactly.

For a Gaussian LMM with one grouping factor, ``y_j ~ N(X_j beta, Z_j D Z_j' +
sigma^2 I)`` independently across levels j. With ``D = sigma^2 T T'`` and
``A_j = T'Z_j'Z_j T + I = L_j L_j'``, ``c_j = L_j^-1 T'Z_j'(y_j - X_j beta)``:

    -2 log p(y | beta, D, sigma) = n log(2 pi sigma^2) + sum_j log|A_j|
                                   + (||y - X beta||^2 - sum_j ||c_j||^2) / sigma^2

computed from per-level sufficient statistics (:mod:`bayeslmm.grouped`): a log-density
evaluation costs O(groups q^3), independent of the number of rows, and the posterior
has no funnel. After sampling, the random effects are drawn exactly from
``p(b_j | beta, D, sigma, y) = N(T A_j^-1 T'Z_j'r_j, sigma^2 T A_j^-1 T')`` for every
posterior draw, so the result has the same variables as the explicit model.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .builder import block_scale, coords_of, vector_rv
from .design import Design
from .grouped import GroupStats, project, single_grouping_factor, whiten
from .naming import term_dim
from .predict import _scale_tril
from .priors import ParameterNames, Prior

DRAW_CHUNK_ELEMENTS = 4_000_000  # draws x groups x q x q handled at once


def marginal_supported(design: Design) -> bool:
    """Can the random effects be integrated out level by level?"""
    return bool(design.blocks) and single_grouping_factor(design)


def _level_factor(chols: list[pt.TensorVariable], q: int) -> pt.TensorVariable:
    """Block-diagonal Cholesky factor of one level's covariance D."""
    if len(chols) == 1:
        return chols[0]
    out = pt.zeros((q, q))
    start = 0
    for chol in chols:
        k = chol.shape[0]
        out = pt.set_subtensor(out[start : start + k, start : start + k], chol)
        start += k
    return out


def marginal_loglik(
    T: pt.TensorVariable, beta: pt.TensorVariable, sigma: pt.TensorVariable, stats: GroupStats
) -> pt.TensorVariable:
    """log p(y | beta, D = sigma^2 T T', sigma) from the per-level statistics."""
    ZtX = pt.as_tensor(stats.ZtX)
    resid_z = pt.as_tensor(stats.Zty) - pt.tensordot(ZtX, beta, axes=[[2], [0]])  # (G, q)
    R = project(T, resid_z[:, :, None], pt)
    logdet, _, C = whiten(T, stats, R, pt)
    cc = sum(pt.sum(c**2) for c in C)
    rr = stats.yty - 2.0 * pt.dot(beta, stats.Xty) + pt.dot(beta, pt.dot(stats.XtX, beta))
    return -0.5 * (
        stats.n * np.log(2.0 * np.pi) + 2.0 * stats.n * pt.log(sigma) + logdet
        + (rr - cc) / sigma**2
    )  # fmt: skip


def build_marginal_model(design: Design, priors: dict[str, Prior], stats: GroupStats) -> pm.Model:
    """The PyMC model of (beta, SDs, correlations, sigma) with the random effects integrated out.

    Same parameter names, priors, dims and coords as :func:`build_full_model`, minus
    the random effects (drawn afterwards by :func:`draw_random_effects`).
    """
    names = ParameterNames.from_design(design)
    with pm.Model(coords=coords_of(design)) as model:
        if design.X.shape[1]:
            beta = vector_rv("beta", [priors[n] for n in names.fixed], "fixed")
        else:
            beta = pt.zeros(0)
        chols = []
        for block, sd_names, cor_name in zip(design.blocks, names.sd, names.cor, strict=True):
            chol, sd = block_scale(
                block, [priors[n] for n in sd_names], priors[cor_name] if cor_name else None
            )
            chols.append(chol if chol is not None else pt.diag(sd))
        sigma = priors["sigma"].family()("sigma", **priors["sigma"].params)
        T = _level_factor(chols, stats.q) / sigma
        pm.Potential("marginal_loglik", marginal_loglik(T, beta, sigma, stats))
    return model


def draw_random_effects(
    idata: az.InferenceData, design: Design, stats: GroupStats, random_seed: int | None = None
) -> xr.Dataset:
    """Exact draws of every block's ``u_L`` (and standardised ``z_L``) given each draw.

    Vectorised over draws and levels, in chunks that bound memory.
    """
    rng = np.random.default_rng(random_seed)
    post = idata.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    S = n_chain * n_draw
    G, q = stats.n_groups, stats.q
    scales = [_scale_tril(post, b).reshape(S, b.n_terms, b.n_terms) for b in design.blocks]
    chol = np.zeros((S, q, q))
    for scale, start, block in zip(scales, stats.offsets, design.blocks, strict=True):
        chol[:, start : start + block.n_terms, start : start + block.n_terms] = scale
    sigma = post["sigma"].values.reshape(S)
    beta = post["beta"].values.reshape(S, -1) if "beta" in post else np.zeros((S, 0))
    b = np.empty((S, G, q))
    chunk = max(1, DRAW_CHUNK_ELEMENTS // max(1, G * q * q))
    for lo in range(0, S, chunk):
        sl = slice(lo, min(S, lo + chunk))
        T = chol[sl] / sigma[sl, None, None]  # (d, q, q)
        A = np.einsum("dka,gkl,dlb->dgab", T, stats.ZtZ, T) + np.eye(q)
        L = np.linalg.cholesky(A)
        resid_z = stats.Zty[None] - np.einsum("gkp,dp->dgk", stats.ZtX, beta[sl])
        rhs = np.einsum("dka,dgk->dga", T, resid_z)
        c = np.linalg.solve(L, rhs[..., None])[..., 0]
        noise = rng.standard_normal(c.shape) * sigma[sl, None, None]
        u_sph = np.linalg.solve(np.swapaxes(L, -1, -2), (c + noise)[..., None])[..., 0]
        b[sl] = np.einsum("dab,dgb->dga", T, u_sph)
    out = {}
    for scale, start, block in zip(scales, stats.offsets, design.blocks, strict=True):
        u = b[:, :, start : start + block.n_terms]
        z = np.linalg.solve(scale[:, None], u[..., None])[..., 0]  # u = scale z per level
        dims = ("chain", "draw", block.group, term_dim(block.label))
        coords = {block.group: list(block.levels), term_dim(block.label): list(block.columns)}
        shape = (n_chain, n_draw, G, block.n_terms)
        out[f"u_{block.label}"] = xr.DataArray(u.reshape(shape), dims=dims, coords=coords)
        out[f"z_{block.label}"] = xr.DataArray(z.reshape(shape), dims=dims, coords=coords)
    return xr.Dataset(out, coords={"chain": post.chain, "draw": post.draw})
