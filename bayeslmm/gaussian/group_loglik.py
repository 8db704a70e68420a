"""The exact marginal log-likelihood of each group, for a stack of parameter draws.

Leave-one-group-out cross-validation needs, for every posterior draw and every level
``j`` of the grouping factor, ``log N(y_j | X_j beta, Z_j D Z_j' + sigma^2 I)``: the
group's own rows with its random effects integrated out. With ``T = chol(D) / sigma``,
``A_j = T'Z_j'Z_j T + I = L_j L_j'``, ``c_j = L_j^-1 T'Z_j'(y_j - X_j beta)`` and
``rr_j = ||y_j - X_j beta||^2``,

    log p(y_j) = -(n_j log(2 pi sigma^2) + log|A_j| + (rr_j - c_j'c_j) / sigma^2) / 2,

so besides the per-level statistics of :mod:`bayeslmm.gaussian.statistics` only the
per-level ``X_j'X_j``, ``X_j'y_j`` and ``y_j'y_j`` are needed (:class:`LevelMoments`).
With two nested factors the group is an outer level with all its inner levels, and
the arrowhead factorisation of :mod:`bayeslmm.gaussian.draws` gives ``log|A_j|`` and
``c_j``. Everything is vectorised over draws and levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .factorisation import cholesky, forward_solve
from .statistics import GroupStats, NestedStats, level_sums

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class LevelMoments:
    """Per level of one grouping factor: ``X_j'X_j``, ``X_j'y_j``, ``y_j'y_j`` and ``n_j``."""

    XtX: np.ndarray  # (G, p, p)
    Xty: np.ndarray  # (G, p)
    yty: np.ndarray  # (G,)
    counts: np.ndarray  # (G,)

    @classmethod
    def from_codes(
        cls, codes: np.ndarray, n_levels: int, X: np.ndarray, y: np.ndarray
    ) -> LevelMoments:
        n = len(codes)
        S = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_levels, n))
        return cls(
            XtX=level_sums(codes, n_levels, X, X),
            Xty=level_sums(codes, n_levels, X, y[:, None])[:, :, 0],
            yty=np.asarray(S @ (y * y)).reshape(n_levels),
            counts=np.bincount(codes, minlength=n_levels),
        )


def _residual_squares(moments: LevelMoments, beta: np.ndarray) -> np.ndarray:
    """``||y_j - X_j beta||^2`` for every draw and level: (S, G)."""
    cross = np.einsum("gp,sp->sg", moments.Xty, beta, optimize=True)
    quad = np.einsum("sp,gpr,sr->sg", beta, moments.XtX, beta, optimize=True)
    return moments.yty[None] - 2.0 * cross + quad


def _gaussian(moments, sigma, logdet, rr, cc) -> np.ndarray:
    s2 = (sigma**2)[:, None]
    n = moments.counts[None]
    return -0.5 * (n * (LOG_2PI + np.log(s2)) + logdet + (rr - cc) / s2)


def single_group_loglik(
    stats: GroupStats, moments: LevelMoments, T: np.ndarray, beta: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    """Per-level marginal log-likelihood, one grouping factor: (draws, levels).

    Parameters
    ----------
    stats, moments
        Per-level statistics of the factor.
    T
        Relative covariance factors ``chol(D) / sigma``, (draws, q, q).
    beta, sigma
        (draws, p) and (draws,).
    """
    q = stats.q
    S, G = T.shape[0], stats.n_groups
    A = np.einsum("ska,gkl,slb->sgab", T, stats.ZtZ, T, optimize=True) + np.eye(q)
    resid_z = stats.Zty[None] - np.einsum("gkp,sp->sgk", stats.ZtX, beta, optimize=True)
    rhs = np.einsum("ska,sgk->sga", T, resid_z, optimize=True)
    L = cholesky(A.reshape(-1, q, q), q, np)  # unrolled over q, vectorised over draws x levels
    c = forward_solve(L, rhs.reshape(-1, q, 1), q)
    logdet = sum(2.0 * np.log(L[i][i]) for i in range(q)).reshape(S, G)
    cc = sum(ci[:, 0] ** 2 for ci in c).reshape(S, G)
    return _gaussian(moments, sigma, logdet, _residual_squares(moments, beta), cc)


def nested_group_loglik(
    stats: NestedStats,
    moments: LevelMoments,
    TA: np.ndarray,
    TB: np.ndarray,
    beta: np.ndarray,
    sigma: np.ndarray,
) -> np.ndarray:
    """Per-outer-level marginal log-likelihood of two nested factors: (draws, outer levels).

    ``moments`` are those of the outer factor; each outer level's system is factored
    inner levels first, then the outer Schur complement (as in
    :func:`bayeslmm.gaussian.draws.draw_nested`).
    """
    S, GA, qA, qB = TA.shape[0], stats.n_outer, stats.qA, stats.qB
    sandwich = "ska,gkl,slb->sgab"
    LB = np.linalg.cholesky(np.einsum(sandwich, TB, stats.BB, TB, optimize=True) + np.eye(qB))
    F = np.linalg.solve(LB, np.einsum(sandwich, TB, stats.BA, TA, optimize=True))
    rB = stats.By[None] - np.einsum("gkp,sp->sgk", stats.BX, beta, optimize=True)
    rA = stats.Ay[None] - np.einsum("gkp,sp->sgk", stats.AX, beta, optimize=True)
    cB = np.linalg.solve(LB, np.einsum("ska,sgk->sga", TB, rB, optimize=True)[..., None])[..., 0]
    FtF, Ftc = np.zeros((S, GA, qA, qA)), np.zeros((S, GA, qA))
    np.add.at(FtF, (slice(None), stats.parent), np.einsum("sgka,sgkb->sgab", F, F))
    np.add.at(Ftc, (slice(None), stats.parent), np.einsum("sgka,sgk->sga", F, cB))
    AA = np.einsum(sandwich, TA, stats.AA, TA, optimize=True) + np.eye(qA)
    LA = np.linalg.cholesky(AA - FtF)
    rhs = np.einsum("ska,sgk->sga", TA, rA, optimize=True) - Ftc
    cA = np.linalg.solve(LA, rhs[..., None])[..., 0]
    inner_logdet = 2.0 * np.log(np.diagonal(LB, axis1=-2, axis2=-1)).sum(-1)  # (S, G_B)
    inner_cc = (cB**2).sum(-1)
    logdet = 2.0 * np.log(np.diagonal(LA, axis1=-2, axis2=-1)).sum(-1)
    cc = (cA**2).sum(-1)
    np.add.at(logdet, (slice(None), stats.parent), inner_logdet)
    np.add.at(cc, (slice(None), stats.parent), inner_cc)
    return _gaussian(moments, sigma, logdet, _residual_squares(moments, beta), cc)
