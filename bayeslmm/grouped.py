"""Per-group sufficient statistics and the batched Gaussian kernel on them.

When every random term shares one grouping factor, ``Z'Z`` is block diagonal: one
q x q block per level. The data then enter a Gaussian LMM only through, per level j,
``Z_j'Z_j``, ``Z_j'X_j``, ``Z_j'y_j`` and through the global ``X'X``, ``X'y``,
``y'y`` (computed once), and every evaluation costs O(groups q^3), whatever the
number of rows.

The kernel is written once for any array namespace ``xp`` with numpy's names
(``numpy`` or ``pytensor.tensor``), so the REML/ML fit (:mod:`bayeslmm.likelihood`)
and the marginal Bayesian model (:mod:`bayeslmm.marginal`) use the same mathematics.
The Cholesky factor and triangular solves are unrolled over the q terms and vectorised
across groups: there is no loop over groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .design import Design

UNROLL_MAX = 8  # terms per level handled by the unrolled factorisation


def single_grouping_factor(design: Design) -> bool:
    """Do all random terms share one grouping factor (so Z'Z is block diagonal)?"""
    groups = {block.group for block in design.blocks}
    q = sum(block.n_terms for block in design.blocks)
    return len(groups) == 1 and q <= UNROLL_MAX


@dataclass
class GroupStats:
    """Sufficient statistics per level of the single grouping factor.

    Columns of the per-level random-effect vector are the blocks' columns, block after
    block (``offsets[k]`` is where block k starts).
    """

    ZtZ: np.ndarray  # (G, q, q)
    ZtX: np.ndarray  # (G, q, p)
    Zty: np.ndarray  # (G, q)
    counts: np.ndarray  # (G,)
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n: int
    p: int
    offsets: list[int]

    @classmethod
    def from_design(cls, design: Design) -> GroupStats:
        if not single_grouping_factor(design):
            raise ValueError("per-group statistics need a single grouping factor")
        Z = np.hstack([block.Z for block in design.blocks])
        codes = design.blocks[0].codes
        G = design.blocks[0].n_levels
        n, q = Z.shape
        X, y = design.X, design.y
        # one sparse indicator product sums every per-row quantity within levels
        S = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(G, n))
        ZZ = (Z[:, :, None] * Z[:, None, :]).reshape(n, q * q)
        ZX = (Z[:, :, None] * X[:, None, :]).reshape(n, q * X.shape[1])
        offsets = np.cumsum([0] + [b.n_terms for b in design.blocks[:-1]]).tolist()
        return cls(
            ZtZ=np.asarray(S @ ZZ).reshape(G, q, q),
            ZtX=np.asarray(S @ ZX).reshape(G, q, X.shape[1]),
            Zty=np.asarray(S @ (Z * y[:, None])),
            counts=np.bincount(codes, minlength=G),
            XtX=X.T @ X,
            Xty=X.T @ y,
            yty=float(y @ y),
            n=n,
            p=X.shape[1],
            offsets=offsets,
        )

    @property
    def q(self) -> int:
        return self.ZtZ.shape[1]

    @property
    def n_groups(self) -> int:
        return self.ZtZ.shape[0]


def _entries(M: Any, q: int) -> list[list[Any]]:
    """Entries ``M[:, i, j]`` as a nested list (lower triangle only)."""
    return [[M[:, i, j] for j in range(i + 1)] for i in range(q)]


def cholesky(A: Any, q: int, xp: Any) -> list[list[Any]]:
    """Lower Cholesky factors of a stack of q x q matrices, as nested (G,) entries."""
    a = _entries(A, q)
    L: list[list[Any]] = [[None] * (i + 1) for i in range(q)]
    for j in range(q):
        s = a[j][j]
        for k in range(j):
            s = s - L[j][k] ** 2
        L[j][j] = xp.sqrt(s)
        for i in range(j + 1, q):
            s = a[i][j]
            for k in range(j):
                s = s - L[i][k] * L[j][k]
            L[i][j] = s / L[j][j]
    return L


def forward_solve(L: list[list[Any]], B: Any, q: int) -> list[Any]:
    """Rows of ``L^-1 B`` for B of shape (G, q, m): a list of q arrays (G, m)."""
    out: list[Any] = []
    for i in range(q):
        s = B[:, i, :]
        for k in range(i):
            s = s - L[i][k][:, None] * out[k]
        out.append(s / L[i][i][:, None])
    return out


def backward_solve(L: list[list[Any]], C: list[Any], q: int) -> list[Any]:
    """Rows of ``L^-T C`` for C given as q arrays (G, m)."""
    out: list[Any] = [None] * q
    for i in reversed(range(q)):
        s = C[i]
        for k in range(i + 1, q):
            s = s - L[k][i][:, None] * out[k]
        out[i] = s / L[i][i][:, None]
    return out


def whiten(T: Any, stats: GroupStats, R: Any, xp: Any) -> tuple[Any, list[list[Any]], list[Any]]:
    """Factor ``A_j = T'Z_j'Z_j T + I`` for every level and solve ``L_j C_j = R_j``.

    Parameters
    ----------
    T
        Relative covariance factor of one level's random effects (q x q, lower).
    stats
        The per-group statistics.
    R
        Right-hand sides, (G, q, m).
    xp
        ``numpy`` or ``pytensor.tensor``.

    Returns
    -------
    logdet, L, C
        ``sum_j log|A_j|``, the factors' entries and the rows of ``C`` (q arrays (G, m)).
    """
    q = stats.q
    W = xp.tensordot(stats.ZtZ, T, axes=[[2], [0]])  # (G, k, b) = Z'Z T
    A = xp.tensordot(W, T, axes=[[1], [0]])  # (G, b, a) = (T'Z'Z T)', symmetric
    A = A + xp.eye(q)[None, :, :]
    L = cholesky(A, q, xp)
    logdet = 0.0
    for i in range(q):
        logdet = logdet + 2.0 * xp.sum(xp.log(L[i][i]))
    return logdet, L, forward_solve(L, R, q)


def project(T: Any, M: Any, xp: Any) -> Any:
    """``T' M_j`` for every level: M (G, q, m) -> (G, q, m)."""
    return xp.tensordot(M, T, axes=[[1], [0]]).transpose(0, 2, 1)
