"""numba kernels of PIRLS's two-block factorisation (:class:`~bayeslmm.glmm.pirls.
BlockedFactor`): one pass over the rows, level by level of the widest random term, builds
its diagonal blocks ``D_j``, their inverses, and the Schur complement
``S = C - sum_j B_j D_j^-1 B_j'`` of the other terms' columns, touching only the columns
each level reaches; ``B`` is returned as triplets for the solves."""

from __future__ import annotations

import numpy as np

from ..jit import kernel


@kernel
def _inverse_spd(D, out):  # pragma: no cover
    """``out = D^-1`` of a small symmetric positive-definite ``D`` (Cholesky, in loops: a
    LAPACK call per level costs more than the arithmetic); returns ``log|D|`` (NaN when
    ``D`` is not positive definite)."""
    k = D.shape[0]
    L = np.zeros((k, k))
    logdet = 0.0
    for i in range(k):
        for j in range(i + 1):
            acc = D[i, j]
            for t in range(j):
                acc -= L[i, t] * L[j, t]
            if i == j:
                if acc <= 0.0:
                    return np.nan
                L[i, i] = np.sqrt(acc)
                logdet += 2.0 * np.log(L[i, i])
            else:
                L[i, j] = acc / L[j, j]
    Linv = np.zeros((k, k))  # lower triangular inverse
    for i in range(k):
        Linv[i, i] = 1.0 / L[i, i]
        for j in range(i):
            acc = 0.0
            for t in range(j, i):
                acc -= L[i, t] * Linv[t, j]
            Linv[i, j] = acc / L[i, i]
    for i in range(k):
        for j in range(k):
            acc = 0.0
            for t in range(max(i, j), k):
                acc += Linv[t, i] * Linv[t, j]
            out[i, j] = acc
    return logdet


@kernel
def assemble(V, at, k, in_row, rest_pos, order, level_start, q_rest):  # pragma: no cover
    """``V`` (n, per_row): the rows of ``W^1/2 Z Lambda``; the widest term's ``k`` entries
    start at ``at``, the others are ``V[:, in_row]`` at columns ``rest_pos`` (rest
    numbering). Returns ``Dinv`` (m, k, k), ``log|D|``, ``S`` (q_rest x q_rest, with the
    identity) and ``B`` as (rest column, first column, value) triplets."""
    n = V.shape[0]
    kr = in_row.shape[0]
    m = level_start.shape[0] - 1
    S = np.eye(q_rest)
    for r in range(n):
        for a in range(kr):
            ca, va = rest_pos[r, a], V[r, in_row[a]]
            for b in range(kr):
                S[ca, rest_pos[r, b]] += va * V[r, in_row[b]]
    Dinv = np.zeros((m, k, k))
    logdet = 0.0
    scratch = np.zeros((q_rest, k))
    mark = np.full(q_rest, -1, dtype=np.int64)
    touched = np.empty(q_rest, dtype=np.int64)
    b_rows = np.empty(n * kr * k, dtype=np.int64)
    b_cols = np.empty(n * kr * k, dtype=np.int64)
    b_vals = np.empty(n * kr * k)
    nb = 0
    D = np.empty((k, k))
    tmp = np.empty(k)
    for j in range(m):
        D[:, :] = 0.0
        nt = 0
        for idx in range(level_start[j], level_start[j + 1]):
            r = order[idx]
            for a in range(k):
                for b in range(k):
                    D[a, b] += V[r, at + a] * V[r, at + b]
            for c in range(kr):
                col = rest_pos[r, c]
                v = V[r, in_row[c]]
                if mark[col] != j:
                    mark[col] = j
                    touched[nt] = col
                    nt += 1
                    scratch[col, :] = 0.0
                for a in range(k):
                    scratch[col, a] += v * V[r, at + a]
        for a in range(k):
            D[a, a] += 1.0
        logdet += _inverse_spd(D, Dinv[j])
        Di = Dinv[j]
        for s in range(nt):
            cs = touched[s]
            for a in range(k):  # Di @ scratch[cs] in loops (no BLAS call per column)
                acc = 0.0
                for b in range(k):
                    acc += Di[a, b] * scratch[cs, b]
                tmp[a] = acc
            for a in range(k):
                b_rows[nb] = cs
                b_cols[nb] = j * k + a
                b_vals[nb] = scratch[cs, a]
                nb += 1
            for t in range(nt):
                ct = touched[t]
                acc = 0.0
                for a in range(k):
                    acc += tmp[a] * scratch[ct, a]
                S[cs, ct] -= acc
    return Dinv, logdet, S, b_rows[:nb], b_cols[:nb], b_vals[:nb]


@kernel
def b_times(rows, cols, vals, x, q_rest):  # pragma: no cover
    """``B x`` for ``x`` (q_first, c)."""
    out = np.zeros((q_rest, x.shape[1]))
    for i in range(rows.shape[0]):
        r, c, v = rows[i], cols[i], vals[i]
        for t in range(x.shape[1]):
            out[r, t] += v * x[c, t]
    return out


@kernel
def bt_times(rows, cols, vals, x, q_first):  # pragma: no cover
    """``B' x`` for ``x`` (q_rest, c)."""
    out = np.zeros((q_first, x.shape[1]))
    for i in range(rows.shape[0]):
        r, c, v = rows[i], cols[i], vals[i]
        for t in range(x.shape[1]):
            out[c, t] += v * x[r, t]
    return out
