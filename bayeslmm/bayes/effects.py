"""Exact draws of every random effect for each posterior draw of a marginal fit.

The marginal model (:mod:`bayeslmm.bayes.marginal_graph`, :mod:`bayeslmm.bayes.density`)
samples only the population parameters; here the random effects are drawn from their
exact conditional distribution given each draw (:mod:`bayeslmm.gaussian.draws`) and
returned under the names the explicit model uses (``u_L``, ``z_L``).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from ..gaussian.draws import covariance_cholesky, draw_nested, draw_single
from ..gaussian.statistics import GroupStats, NestedStats
from ..spec.design import Design
from ..spec.naming import term_dim

DRAW_CHUNK_ELEMENTS = 4_000_000  # draws x groups x q x q handled at once


def block_scale_draws(post: xr.Dataset, block) -> np.ndarray:
    """Per-draw Cholesky factor of a block's covariance: (chain, draw, q, q)."""
    sd = post[f"sd_{block.label}"].values
    cor = post[f"cor_{block.label}"].values if block.correlated else None
    return covariance_cholesky(sd, cor)


def _factor_scales(post: xr.Dataset, design: Design, group: str | None, S: int):
    """Per draw, the block-diagonal Cholesky factor of one factor's level covariance."""
    blocks = [b for b in design.blocks if group is None or b.group == group]
    q = sum(b.n_terms for b in blocks)
    scales = [block_scale_draws(post, b).reshape(S, b.n_terms, b.n_terms) for b in blocks]
    chol, start = np.zeros((S, q, q)), 0
    for scale, block in zip(scales, blocks, strict=True):
        chol[:, start : start + block.n_terms, start : start + block.n_terms] = scale
        start += block.n_terms
    return chol, list(zip(blocks, scales, strict=True))


def draw_random_effects(
    idata: az.InferenceData,
    design: Design,
    stats: GroupStats | NestedStats,
    random_seed: int | None = None,
) -> xr.Dataset:
    """Exact draws of every block's ``u_L`` (and standardised ``z_L``) given each draw.

    Vectorised over draws and levels, in chunks that bound memory.
    """
    rng = np.random.default_rng(random_seed)
    post = idata.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    S = n_chain * n_draw
    nested = isinstance(stats, NestedStats)
    groups = [stats.outer, stats.inner] if nested else [None]
    factors = [_factor_scales(post, design, g, S) for g in groups]  # (chol, [(block, scale)])
    sigma = post["sigma"].values.reshape(S)
    beta = post["beta"].values.reshape(S, -1) if "beta" in post else np.zeros((S, 0))
    sizes = [chol.shape[1] for chol, _ in factors]
    n_levels = [stats.n_outer, len(stats.parent)] if nested else [stats.n_groups]
    effects = [np.empty((S, g, q)) for g, q in zip(n_levels, sizes, strict=True)]
    chunk = max(1, DRAW_CHUNK_ELEMENTS // max(1, max(n_levels) * max(sizes) ** 2))
    for lo in range(0, S, chunk):
        sl = slice(lo, min(S, lo + chunk))
        T = [chol[sl] / sigma[sl, None, None] for chol, _ in factors]
        if nested:
            drawn = draw_nested(stats, T[0], T[1], beta[sl], sigma[sl], rng)
        else:
            drawn = draw_single(stats, T[0], beta[sl], sigma[sl], rng)
        for target, values in zip(effects, drawn, strict=True):
            target[sl] = values
    out = {}
    for b, (_, blocks) in zip(effects, factors, strict=True):
        start = 0
        for block, scale in blocks:
            u = b[:, :, start : start + block.n_terms]
            start += block.n_terms
            # u = scale z per level: one small inverse per draw, applied to every level
            z = np.einsum("dab,dgb->dga", np.linalg.inv(scale), u, optimize=True)
            dims = ("chain", "draw", block.group, term_dim(block.label))
            coords = {block.group: list(block.levels), term_dim(block.label): list(block.columns)}
            shape = (n_chain, n_draw, block.n_levels, block.n_terms)
            out[f"u_{block.label}"] = xr.DataArray(u.reshape(shape), dims=dims, coords=coords)
            out[f"z_{block.label}"] = xr.DataArray(z.reshape(shape), dims=dims, coords=coords)
    return xr.Dataset(out, coords={"chain": post.chain, "draw": post.draw})
