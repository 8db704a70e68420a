"""The penalised random-effects system as a PyTensor graph, for the marginal PyMC model.

Every numeric fit, draw and density factors the system with the blocked Cholesky of
:mod:`bayeslmm.gaussian.blocked`. The functions here build the same factorisation as
array expressions instead, for the pure-graph marginal model of
:mod:`bayeslmm.bayes.marginal_graph` that PyTensor differentiates and JAX traces (numpyro,
nutpie's PyMC backend), which a numba kernel cannot enter: with one grouping factor the
system ``T'Z'Z T + I`` is block diagonal (one q x q block per level); with two nested
factors each outer level's system is an arrowhead. The Cholesky factor and triangular
solves are unrolled over the q terms and vectorised across levels (no loop over groups),
for any array namespace ``xp`` with numpy's names (``pytensor.tensor``, or ``numpy`` for
checks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .statistics import GroupStats, NestedStats


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
