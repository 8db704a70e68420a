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

This module holds the statistics and the exact draws (NumPy); the PyMC model of the
marginal likelihood is in :mod:`bayeslmm.marginal_graph`, and a compiled version of
its log density in :mod:`bayeslmm.density`.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from .design import Design
from .grouped import (
    GroupStats,
    NestedStats,
    backward_solve,
    cholesky,
    forward_solve,
    nested_grouping_factors,
    single_grouping_factor,
)
from .naming import term_dim
from .predict import _scale_tril

DRAW_CHUNK_ELEMENTS = 4_000_000  # draws x groups x q x q handled at once


def marginal_supported(design: Design) -> bool:
    """Can the random effects be integrated out level by level (one factor, or two nested)?"""
    if not design.blocks:
        return False
    return single_grouping_factor(design) or nested_grouping_factors(design) is not None


def sufficient_statistics(design: Design) -> GroupStats | NestedStats:
    """The per-level statistics the marginal model and the exact draws need."""
    if single_grouping_factor(design):
        return GroupStats.from_design(design)
    return NestedStats.from_design(design)


def _factor_scales(post: xr.Dataset, design: Design, group: str | None, S: int):
    """Per draw, the block-diagonal Cholesky factor of one factor's level covariance."""
    blocks = [b for b in design.blocks if group is None or b.group == group]
    q = sum(b.n_terms for b in blocks)
    scales = [_scale_tril(post, b).reshape(S, b.n_terms, b.n_terms) for b in blocks]
    chol, start = np.zeros((S, q, q)), 0
    for scale, block in zip(scales, blocks, strict=True):
        chol[:, start : start + block.n_terms, start : start + block.n_terms] = scale
        start += block.n_terms
    return chol, list(zip(blocks, scales, strict=True))


def _sandwich(left: np.ndarray, S: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left_d' S_g right_d`` for every draw d and level g: (d, G, a, b)."""
    return np.einsum("dka,gkl,dlb->dgab", left, S, right, optimize=True)


def _spd_solve(L: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``L^-1 rhs`` for stacks of lower factors L (..., q, q) and vectors rhs (..., q)."""
    return np.linalg.solve(L, rhs[..., None])[..., 0]


def _sample_spherical(A: np.ndarray, rhs: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``L'^-1 (L^-1 rhs + noise)`` with ``A = L L'``, for stacks of small systems.

    The unrolled kernel of :mod:`bayeslmm.grouped` on the flattened stack: elementwise
    array arithmetic, several times faster than batched LAPACK calls on q x q blocks.
    """
    q = rhs.shape[-1]
    L = cholesky(A.reshape(-1, q, q), q, np)
    c = forward_solve(L, rhs.reshape(-1, q, 1), q)
    shifted = [ci + noise.reshape(-1, q)[:, i : i + 1] for i, ci in enumerate(c)]
    u = backward_solve(L, shifted, q)
    return np.concatenate(u, axis=1).reshape(rhs.shape)


def _draw_single(stats: GroupStats, T, beta, sigma, rng) -> list[np.ndarray]:
    A = _sandwich(T, stats.ZtZ, T) + np.eye(stats.q)
    resid_z = stats.Zty[None] - np.einsum("gkp,dp->dgk", stats.ZtX, beta, optimize=True)
    rhs = np.einsum("dka,dgk->dga", T, resid_z, optimize=True)
    noise = rng.standard_normal(rhs.shape) * sigma[:, None, None]
    u_sph = _sample_spherical(A, rhs, noise)
    return [np.einsum("dab,dgb->dga", T, u_sph, optimize=True)]


def _draw_nested(stats: NestedStats, TA, TB, beta, sigma, rng) -> list[np.ndarray]:
    """Outer effects from their Schur-complement factor, then inner ones given them."""
    LB = np.linalg.cholesky(_sandwich(TB, stats.BB, TB) + np.eye(stats.qB))
    F = np.linalg.solve(LB, _sandwich(TB, stats.BA, TA))  # (d, G_B, qB, qA)
    rB = stats.By[None] - np.einsum("gkp,dp->dgk", stats.BX, beta)
    rA = stats.Ay[None] - np.einsum("gkp,dp->dgk", stats.AX, beta)
    cB = _spd_solve(LB, np.einsum("dka,dgk->dga", TB, rB))
    d, GA, qA = TA.shape[0], stats.n_outer, stats.qA
    FtF, Ftc = np.zeros((d, GA, qA, qA)), np.zeros((d, GA, qA))
    np.add.at(FtF, (slice(None), stats.parent), np.einsum("dgka,dgkb->dgab", F, F))
    np.add.at(Ftc, (slice(None), stats.parent), np.einsum("dgka,dgk->dga", F, cB))
    LA = np.linalg.cholesky(_sandwich(TA, stats.AA, TA) + np.eye(qA) - FtF)
    cA = _spd_solve(LA, np.einsum("dka,dgk->dga", TA, rA) - Ftc)
    s = sigma[:, None, None]
    uA = _spd_solve(np.swapaxes(LA, -1, -2), cA + s * rng.standard_normal(cA.shape))
    shifted = cB + s * rng.standard_normal(cB.shape) - np.einsum("dgka,dga->dgk", F,
                                                                 uA[:, stats.parent])  # fmt: skip
    uB = _spd_solve(np.swapaxes(LB, -1, -2), shifted)
    return [np.einsum("dab,dgb->dga", TA, uA), np.einsum("dab,dgb->dga", TB, uB)]


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
            drawn = _draw_nested(stats, T[0], T[1], beta[sl], sigma[sl], rng)
        else:
            drawn = _draw_single(stats, T[0], beta[sl], sigma[sl], rng)
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
