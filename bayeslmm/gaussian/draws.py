"""Exact draws of the random effects from their Gaussian conditional distribution.

Given a draw of the population parameters (``beta``, the relative covariance factor
``T`` with ``D = sigma^2 T T'``, ``sigma``), the random effects of a Gaussian LMM are
Gaussian: ``b | beta, D, sigma, y ~ N(T A^-1 T'Z'r, sigma^2 T A^-1 T')`` with
``A = T'Z'Z T + I`` and ``r = y - X beta``. These functions draw them for a stack of
parameter draws at once, from the sufficient statistics alone
(:mod:`bayeslmm.gaussian.statistics`).
"""

from __future__ import annotations

import numpy as np

from .factorisation import backward_solve, cholesky, forward_solve
from .statistics import GroupStats, NestedStats


def covariance_cholesky(sd: np.ndarray, cor: np.ndarray | None) -> np.ndarray:
    """Cholesky factors (..., q, q) of covariances from SDs and correlations.

    Parameters
    ----------
    sd
        Standard deviations, (..., q).
    cor
        Correlations of the strict lower triangle in ``np.tril_indices(q, -1)`` order,
        (..., q(q-1)/2), or None for independent terms.
    """
    q = sd.shape[-1]
    if cor is None:
        chol = np.broadcast_to(np.eye(q), sd.shape + (q,))
    else:
        full = np.broadcast_to(np.eye(q), sd.shape + (q,)).copy()
        rows, cols = np.tril_indices(q, k=-1)
        full[..., rows, cols] = cor
        full[..., cols, rows] = cor
        chol = np.linalg.cholesky(full + 1e-12 * np.eye(q))
    return sd[..., :, None] * chol


def _sandwich(left: np.ndarray, S: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left_d' S_g right_d`` for every draw d and level g: (d, G, a, b)."""
    return np.einsum("dka,gkl,dlb->dgab", left, S, right, optimize=True)


def _spd_solve(L: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``L^-1 rhs`` for stacks of lower factors L (..., q, q) and vectors rhs (..., q)."""
    return np.linalg.solve(L, rhs[..., None])[..., 0]


def _sample_spherical(A: np.ndarray, rhs: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``L'^-1 (L^-1 rhs + noise)`` with ``A = L L'``, for stacks of small systems.

    The unrolled kernel of :mod:`bayeslmm.gaussian.factorisation` on the flattened
    stack: elementwise array arithmetic, several times faster than batched LAPACK calls
    on q x q blocks.
    """
    q = rhs.shape[-1]
    L = cholesky(A.reshape(-1, q, q), q, np)
    c = forward_solve(L, rhs.reshape(-1, q, 1), q)
    shifted = [ci + noise.reshape(-1, q)[:, i : i + 1] for i, ci in enumerate(c)]
    u = backward_solve(L, shifted, q)
    return np.concatenate(u, axis=1).reshape(rhs.shape)


def draw_single(
    stats: GroupStats,
    T: np.ndarray,
    beta: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Random effects of one grouping factor, (draws, levels, q), for draws of T, beta, sigma."""
    A = _sandwich(T, stats.ZtZ, T) + np.eye(stats.q)
    resid_z = stats.Zty[None] - np.einsum("gkp,dp->dgk", stats.ZtX, beta, optimize=True)
    rhs = np.einsum("dka,dgk->dga", T, resid_z, optimize=True)
    noise = rng.standard_normal(rhs.shape) * sigma[:, None, None]
    u_sph = _sample_spherical(A, rhs, noise)
    return [np.einsum("dab,dgb->dga", T, u_sph, optimize=True)]


def draw_nested(
    stats: NestedStats,
    TA: np.ndarray,
    TB: np.ndarray,
    beta: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator,
) -> list[np.ndarray]:
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
