"""Per-group sufficient statistics and the batched Gaussian kernel on them.

When every random term shares one grouping factor, ``Z'Z`` is block diagonal: one
q x q block per level. The data then enter a Gaussian LMM only through, per level j,
``Z_j'Z_j``, ``Z_j'X_j``, ``Z_j'y_j`` and through the global ``X'X``, ``X'y``,
``y'y`` (computed once), and every evaluation costs O(groups q^3), whatever the
number of rows.

The kernel is written once for any array namespace ``xp`` with numpy's names
(``numpy`` or ``pytensor.tensor``), so the REML/ML fit (:mod:`bayeslmm.likelihood`)
and the marginal Bayesian model (:mod:`bayeslmm.marginal_graph`) use the same mathematics.
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


# --- two nested grouping factors ---------------------------------------------------


def nested_grouping_factors(design: Design) -> tuple[str, str] | None:
    """(outer, inner) when the random terms use two factors, the inner nested in the outer.

    Nesting is read off the data, as lme4 does: every level of the inner factor occurs
    with one level of the outer factor only (``(1|a/b)``, or ``(1|a) + (1|b)`` when
    the labels of b are unique across a).
    """
    groups = list(dict.fromkeys(block.group for block in design.blocks))
    if len(groups) != 2:
        return None
    for outer, inner in (groups, groups[::-1]):
        o = [b for b in design.blocks if b.group == outer]
        i = [b for b in design.blocks if b.group == inner]
        if sum(b.n_terms for b in o) > UNROLL_MAX or sum(b.n_terms for b in i) > UNROLL_MAX:
            continue
        pairs = np.unique(np.stack([i[0].codes, o[0].codes], axis=1), axis=0)
        if len(pairs) == i[0].n_levels and i[0].n_levels > o[0].n_levels:
            return outer, inner
    return None


def _factor_columns(design: Design, group: str) -> tuple[np.ndarray, np.ndarray, int, list[int]]:
    blocks = [b for b in design.blocks if b.group == group]
    offsets = np.cumsum([0] + [b.n_terms for b in blocks[:-1]]).tolist()
    return np.hstack([b.Z for b in blocks]), blocks[0].codes, blocks[0].n_levels, offsets


def _level_sums(codes: np.ndarray, n_levels: int, left: np.ndarray, right: np.ndarray):
    """Per level, sum over its rows of left_r right_r' ((G, a, b) from (n, a), (n, b))."""
    n = len(codes)
    S = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_levels, n))
    prod = (left[:, :, None] * right[:, None, :]).reshape(n, -1)
    return np.asarray(S @ prod).reshape(n_levels, left.shape[1], right.shape[1])


@dataclass
class NestedStats:
    """Sufficient statistics of two nested factors: outer ``A`` (levels j) and inner
    ``B`` (levels k, each inside the outer level ``parent[k]``)."""

    parent: np.ndarray  # (G_B,)
    BB: np.ndarray  # (G_B, qB, qB)  Z_B'Z_B per inner level
    BA: np.ndarray  # (G_B, qB, qA)  Z_B'Z_A per inner level
    AA: np.ndarray  # (G_A, qA, qA)
    BX: np.ndarray  # (G_B, qB, p)
    By: np.ndarray  # (G_B, qB)
    AX: np.ndarray  # (G_A, qA, p)
    Ay: np.ndarray  # (G_A, qA)
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n: int
    p: int
    outer: str
    inner: str
    outer_offsets: list[int]
    inner_offsets: list[int]

    @classmethod
    def from_design(cls, design: Design) -> NestedStats:
        factors = nested_grouping_factors(design)
        if factors is None:
            raise ValueError("nested statistics need two nested grouping factors")
        outer, inner = factors
        ZA, codes_a, GA, off_a = _factor_columns(design, outer)
        ZB, codes_b, GB, off_b = _factor_columns(design, inner)
        X, y = design.X, design.y
        parent = np.zeros(GB, dtype=int)
        parent[codes_b] = codes_a
        return cls(
            parent=parent,
            BB=_level_sums(codes_b, GB, ZB, ZB),
            BA=_level_sums(codes_b, GB, ZB, ZA),
            AA=_level_sums(codes_a, GA, ZA, ZA),
            BX=_level_sums(codes_b, GB, ZB, X),
            By=_level_sums(codes_b, GB, ZB, y[:, None])[:, :, 0],
            AX=_level_sums(codes_a, GA, ZA, X),
            Ay=_level_sums(codes_a, GA, ZA, y[:, None])[:, :, 0],
            XtX=X.T @ X,
            Xty=X.T @ y,
            yty=float(y @ y),
            n=len(y),
            p=X.shape[1],
            outer=outer,
            inner=inner,
            outer_offsets=off_a,
            inner_offsets=off_b,
        )

    @property
    def qA(self) -> int:
        return self.AA.shape[1]

    @property
    def qB(self) -> int:
        return self.BB.shape[1]

    @property
    def n_outer(self) -> int:
        return self.AA.shape[0]


def _segment_sum(values: Any, index: np.ndarray, n: int, xp: Any) -> Any:
    """Sum the rows of ``values`` that share an ``index`` (n output rows)."""
    if xp is np:
        out = np.zeros((n, *values.shape[1:]))
        np.add.at(out, index, values)
        return out
    import pytensor.tensor as pt

    zeros = pt.zeros((n, *[values.shape[i] for i in range(1, values.ndim)]))
    return pt.inc_subtensor(zeros[index], values)


def nested_whiten(
    TA: Any, TB: Any, stats: NestedStats, rA: Any, rB: Any, xp: Any
) -> tuple[Any, list[Any], list[Any]]:
    """Factor the nested penalised system, inner levels first, and whiten ``Z'r``.

    With spherical effects, the system is ``[[T_B'S_BB T_B + I, T_B'S_BA T_A], [.,
    T_A'S_AA T_A + I]]`` per outer level (an arrowhead over its inner levels). Each
    inner block is factored (``L_B``, ``F = L_B^-1 T_B'S_BA T_A``), the outer block's
    Schur complement ``T_A'S_AA T_A + I - sum_k F_k'F_k`` after it (``L_A``).

    Returns
    -------
    logdet, cB, cA
        ``log|system|`` and the rows of the whitened right-hand sides for ``rB``
        (``Z_B'r`` per inner level, (G_B, qB)) and ``rA`` (``Z_A'r``, (G_A, qA)).
    """
    qA, qB = stats.qA, stats.qB
    BB = xp.tensordot(xp.tensordot(stats.BB, TB, axes=[[2], [0]]), TB, axes=[[1], [0]])
    LB = cholesky(BB + xp.eye(qB)[None, :, :], qB, xp)
    BA = project(TB, xp.tensordot(stats.BA, TA, axes=[[2], [0]]), xp)  # (G_B, qB, qA)
    F = forward_solve(LB, BA, qB)  # qB rows (G_B, qA)
    cB = forward_solve(LB, project(TB, rB[:, :, None], xp), qB)  # qB rows (G_B, 1)
    FtF = sum(f[:, :, None] * f[:, None, :] for f in F)
    Ftc = sum(f * c for f, c in zip(F, cB, strict=True))  # (G_B, qA)
    AA = xp.tensordot(xp.tensordot(stats.AA, TA, axes=[[2], [0]]), TA, axes=[[1], [0]])
    schur = AA + xp.eye(qA)[None, :, :] - _segment_sum(FtF, stats.parent, stats.n_outer, xp)
    LA = cholesky(schur, qA, xp)
    RA = project(TA, rA[:, :, None], xp)[:, :, 0] - _segment_sum(Ftc, stats.parent,
                                                                 stats.n_outer, xp)  # fmt: skip
    cA = forward_solve(LA, RA[:, :, None], qA)
    logdet = 0.0
    for L, q in ((LB, qB), (LA, qA)):
        for i in range(q):
            logdet = logdet + 2.0 * xp.sum(xp.log(L[i][i]))
    return logdet, cB, cA
