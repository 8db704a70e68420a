"""The blocked sparse Cholesky factorisation of the penalised system, for any design.

Random effects come in *nodes*, one per level of every grouping factor
(:class:`~bayeslmm.gaussian.statistics.BlockedStats`), the factors in decreasing order
of levels. With ``Lambda`` the block diagonal of each factor's relative covariance factor
``T_f`` (``D_f = sigma^2 T_f T_f'``), the system ``A = Lambda'Z'Z Lambda + I`` is
factored ``A = L L'`` node by node with small dense blocks; where crossed factors fill
the trailing part of ``L`` in, that part is one dense block factored by LAPACK, as
MixedModels.jl does (Bates et al., its blocked Cholesky). One grouping factor gives a
block-diagonal ``L``; nested factors (inner first, having more levels) give no fill
beyond each level's ancestors; crossed factors fill the later, smaller factors.

The Gaussian log-likelihood and its exact gradient follow from the factor:

- ``log|A|``, and ``d log|A| / dT_f = 2 sum_{j in f} [A^-1 Lambda'Z'Z]_jj'``, which needs
  ``A^-1`` only on the pattern of ``Z'Z``, inside the pattern of ``L``: the selected
  inverse (Takahashi's recurrence, node by node, dense where ``L`` is dense);
- ``u = A^-1 Lambda'Z'r`` (``r = y - X beta``) and, with ``w = Z'r - Z'Z Lambda u``,
  ``d(u'Lambda'Z'r) / dT_f = 2 sum_{j in f} w_j u_j'``.

The kernels are numba functions on flat arrays, so the compiled posterior density
(:mod:`bayeslmm.bayes.density`) runs them without Python; :class:`BlockedSystem` wraps
them for the REML/ML fit and for exact draws of the random effects.
"""

from __future__ import annotations

import math
import warnings
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from ..jit import kernel
from ..spec.design import Design
from .statistics import BlockedStats, LevelMoments

#: The trailing factors are factored as one dense block once their share of nonzero
#: node blocks (after fill-in) passes this fraction of a dense lower triangle.
DENSE_FILL = 0.25
#: Largest dense block (scalar rows) the marginal sampler factors at every evaluation;
#: beyond it, factors are sampled instead of integrated out (:func:`choose_explicit`).
DENSE_MAX = 64
#: The cross table ``Z_E'Z_M`` between sampled and integrated-out effects is kept as one
#: dense matrix (two BLAS products per evaluation) once its nonzeros pass this fraction
#: of it and it has at most ``CROSS_DENSE_MAX`` entries; else block by block.
CROSS_DENSE_FILL = 0.25
CROSS_DENSE_MAX = 1 << 22
LOG_2PI = math.log(2.0 * math.pi)

# ---------------------------------------------------------------------------------------
# The kernels' inputs, named and typed from one field list each: (name, dtype, ndim).
# :class:`BlockedSystem` fills them, and :mod:`bayeslmm.bayes.density` packs the same
# fields, in this order, into its flat buffer and reads them back by these indices.

#: The system integrated out: per node its terms, first scalar row and grouping factor;
#: the lower node blocks of ``Z'Z`` (``pair_*``) and where ``L`` keeps them
#: (``pair_pos``); the pattern of ``L`` (:class:`BlockedPattern`: ``t`` is its
#: ``dense_start``, ``base`` and ``m`` the dense block); the statistics.
FACTORED_FIELDS = (
    ("size", "int64", 1), ("offset", "int64", 1), ("node_factor", "int64", 1),
    ("pair_i", "int64", 1), ("pair_j", "int64", 1), ("pair_ptr", "int64", 1),
    ("pair_val", "float64", 1), ("pair_pos", "int64", 1), ("colptr", "int64", 1),
    ("rowidx", "int64", 1), ("blockptr", "int64", 1), ("first", "int64", 1),
    ("t", "int64", 0), ("base", "int64", 0), ("m", "int64", 0), ("ZtX", "float64", 2),
    ("Zty", "float64", 1), ("XtX", "float64", 2), ("Xty", "float64", 1),
    ("yty", "float64", 0), ("n", "float64", 0),
)  # fmt: skip
#: The factors sampled instead: the cross blocks ``Z_E'Z_M`` (``c_*``; ``c_dense`` the
#: same as one (Q_E, Q_M) matrix, or (0, 0)), their nodes and own blocks (``e_*``) and
#: statistics.
SAMPLED_FIELDS = (
    ("c_i", "int64", 1), ("c_j", "int64", 1), ("c_ptr", "int64", 1), ("c_val", "float64", 1),
    ("c_dense", "float64", 2), ("e_size", "int64", 1), ("e_offset", "int64", 1),
    ("e_factor", "int64", 1), ("e_i", "int64", 1), ("e_j", "int64", 1), ("e_ptr", "int64", 1),
    ("e_val", "float64", 1), ("ZtX_E", "float64", 2), ("Zty_E", "float64", 1),
)  # fmt: skip
#: :data:`FACTORED_FIELDS` as a named tuple (numba passes it as one typed argument)
Factored = namedtuple("Factored", [name for name, _, _ in FACTORED_FIELDS])
#: :data:`SAMPLED_FIELDS` as a named tuple
Sampled = namedtuple("Sampled", [name for name, _, _ in SAMPLED_FIELDS])


def typed_fields(cls: type, fields: tuple, values: dict) -> tuple:
    """``cls`` (:data:`Factored` or :data:`Sampled`) of ``values`` by field name, each cast
    to its field's dtype, C-contiguous (one numba type per field, so one specialisation)."""
    out = []
    for name, dtype, ndim in fields:
        value = values[name]
        if ndim:
            value = np.ascontiguousarray(value, dtype=dtype)
            if value.ndim != ndim:
                raise ValueError(f"kernel field {name!r} has {value.ndim} dimensions, not {ndim}")
        else:
            value = int(value) if dtype == "int64" else float(value)
        out.append(value)
    return cls(*out)


@dataclass(frozen=True)
class NodeBlocks:
    """Nodes (terms ``size``, first scalar ``offset``, grouping factor) and the lower node
    blocks of ``Z'Z`` among them (``pair_val[pair_ptr[k]:]``, row-major)."""

    size: np.ndarray
    offset: np.ndarray
    node_factor: np.ndarray
    pair_i: np.ndarray
    pair_j: np.ndarray
    pair_ptr: np.ndarray
    pair_val: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.size)


def _part(stats: BlockedStats, mask: np.ndarray, shift_i: int, shift_j: int) -> tuple:
    """The pairs of ``stats`` selected by ``mask``, node indices shifted, values packed."""
    idx = np.flatnonzero(mask)
    widths = np.diff(stats.pair_ptr)[idx]
    ptr = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    gather = np.repeat(stats.pair_ptr[idx] - ptr[:-1], widths) + np.arange(ptr[-1])
    return (stats.pair_i[idx] - shift_i, stats.pair_j[idx] - shift_j, ptr,
            stats.pair_val[gather.astype(np.int64)])  # fmt: skip


@dataclass(frozen=True)
class BlockedPattern:
    """Where the nonzero blocks of ``L`` are (symbolic factorisation, made once).

    Columns ``j < dense_start`` are sparse: ``rowidx[colptr[j]:colptr[j+1]]`` are their
    row nodes (sorted, the first is ``j``), block ``e`` of size ``size[row] x size[j]``
    stored row-major at ``blockptr[e]``. Nodes from ``dense_start`` on form one dense
    block of ``m`` scalar rows. ``pair_pos[k]`` is the entry of ``L`` holding ``Z'Z``'s
    block ``k``, or -1 where it lies in the dense block.
    """

    colptr: np.ndarray
    rowidx: np.ndarray
    blockptr: np.ndarray
    first: np.ndarray  # per sparse column, its first entry in the dense block's rows
    pair_pos: np.ndarray
    dense_start: int
    base: int  # first scalar row of the dense block
    m: int  # its size


def symbolic(nodes: NodeBlocks, boundaries: list[int]) -> BlockedPattern:
    """The pattern of ``L`` for the node order of ``nodes`` (elimination tree, row merges).

    Fill-in is followed column by column; once the nodes from one of the ``boundaries``
    (the first node of each later grouping factor) on fill :data:`DENSE_FILL` of a dense
    lower triangle, they are declared one dense block and the rest of the symbolic work
    is skipped.
    """
    N = nodes.n_nodes
    below: list[list[int]] = [[] for _ in range(N)]
    for i, j in zip(nodes.pair_i.tolist(), nodes.pair_j.tolist(), strict=True):
        if i > j:
            below[j].append(i)
    children: list[list[int]] = [[] for _ in range(N)]
    patterns: list[list[int]] = []
    dense_start = N
    region_start, region_nnz = 0, 0
    starts = set(boundaries)
    for j in range(N):
        if j in starts:
            region_start, region_nnz = j, 0
        rows = set(below[j])
        for c in children[j]:
            rows.update(r for r in patterns[c] if r > j)
        ordered = sorted(rows)
        if region_start and j >= region_start:
            region_nnz += len(ordered) + 1
            left = N - region_start
            if region_nnz > DENSE_FILL * left * (left + 1) / 2:
                dense_start = region_start
                break
        patterns.append(ordered)
        if ordered:
            children[ordered[0]].append(j)
    patterns = patterns[:dense_start]
    size = nodes.size
    colptr = np.zeros(dense_start + 1, dtype=np.int64)
    rowidx: list[int] = []
    for j, rows in enumerate(patterns):
        rowidx.append(j)
        rowidx.extend(rows)
        colptr[j + 1] = len(rowidx)
    rowidx_arr = np.asarray(rowidx, dtype=np.int64)
    cols = np.repeat(np.arange(dense_start), np.diff(colptr))
    blocksize = size[rowidx_arr] * size[cols] if len(rowidx_arr) else np.zeros(0, np.int64)
    blockptr = np.concatenate([[0], np.cumsum(blocksize)]).astype(np.int64)
    pair_pos = np.full(len(nodes.pair_i), -1, dtype=np.int64)
    for k in np.flatnonzero(nodes.pair_j < dense_start):
        j, i = nodes.pair_j[k], nodes.pair_i[k]
        lo = colptr[j]
        pair_pos[k] = lo + int(np.searchsorted(rowidx_arr[lo : colptr[j + 1]], i))
    first = np.array([colptr[j] + int(np.searchsorted(rowidx_arr[colptr[j] : colptr[j + 1]],
                                                       dense_start))
                      for j in range(dense_start)], dtype=np.int64)  # fmt: skip
    base = int(nodes.offset[dense_start])
    return BlockedPattern(colptr, rowidx_arr, blockptr, first, pair_pos, dense_start, base,
                          int(nodes.offset[-1]) - base)  # fmt: skip


# ---------------------------------------------------------------------------------------
# numba kernels on flat arrays
#
# Shared arguments: ``s``/``fs``, the factored system (:data:`Factored`: nodes, Z'Z's
# blocks, the pattern of L, the statistics); ``e``, the sampled factors (:data:`Sampled`);
# ``T``, the relative factors (F, qmax, qmax). Small helpers take the few arrays they read.


@kernel
def _find(colptr, rowidx, k, i):
    """Entry of sparse column ``k`` holding row node ``i`` (binary search)."""
    lo, hi = colptr[k], colptr[k + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        if rowidx[mid] < i:
            lo = mid + 1
        else:
            hi = mid
    return lo


@kernel
def assemble(T, s):
    """``A = Lambda'Z'Z Lambda + I`` in the storage of ``L``: (sparse blocks, dense block)."""
    size, offset, node_factor, pair_i, pair_j = s.size, s.offset, s.node_factor, s.pair_i, s.pair_j
    pair_ptr, pair_val, pair_pos = s.pair_ptr, s.pair_val, s.pair_pos
    blockptr, base = s.blockptr, s.base
    m = s.m
    Lval = np.zeros(blockptr[-1])
    D = np.zeros((m, m))
    qmax = T.shape[1]
    CT = np.empty(qmax * qmax)
    for k in range(pair_i.shape[0]):
        i, j = pair_i[k], pair_j[k]
        si, sj, fi, fj, pc = size[i], size[j], node_factor[i], node_factor[j], pair_ptr[k]
        pos = pair_pos[k]
        if si == 1 and sj == 1:  # scalar nodes (intercept-only factors)
            value = T[fi, 0, 0] * pair_val[pc] * T[fj, 0, 0] + (1.0 if i == j else 0.0)
            if pos >= 0:
                Lval[blockptr[pos]] = value
            else:
                D[offset[i] - base, offset[j] - base] = value
            continue
        for r in range(si):  # C T_j
            for c in range(sj):
                acc = 0.0
                for v in range(sj):
                    acc += pair_val[pc + r * sj + v] * T[fj, v, c]
                CT[r * sj + c] = acc
        po = blockptr[pos] if pos >= 0 else 0
        oi, oj = offset[i] - base, offset[j] - base
        for r in range(si):  # T_i' (C T_j) (+ I)
            for c in range(sj):
                acc = 1.0 if (i == j and r == c) else 0.0
                for v in range(si):
                    acc += T[fi, v, r] * CT[v * sj + c]
                if pos >= 0:
                    Lval[po + r * sj + c] = acc
                else:
                    D[oi + r, oj + c] = acc
    return Lval, D


@kernel
def _dense_rows(rows, size, offset, rowidx, start, stop, base):
    """Writes the dense block's scalar rows of entries ``start:stop`` of a column into
    ``rows``; returns how many."""
    k = 0
    for e in range(start, stop):
        i = rowidx[e]
        for r in range(size[i]):
            rows[k] = offset[i] - base + r
            k += 1
    return k


@kernel
def _is_full(colptr, blockptr, size, first, j, m):
    """Do column j's rows cover the whole dense block (fully crossed designs)? Their dense
    work is then done by BLAS, all such columns at once."""
    return m > 0 and (blockptr[colptr[j + 1]] - blockptr[first[j]]) // size[j] == m


@kernel
def _gather_full(values, colptr, blockptr, size, first, m):
    """The dense rows of the full columns side by side: (m, sum of their sizes)."""
    width = 0
    for j in range(first.shape[0]):
        if _is_full(colptr, blockptr, size, first, j, m):
            width += size[j]
    out = np.empty((m, width))
    col = 0
    for j in range(first.shape[0]):
        if _is_full(colptr, blockptr, size, first, j, m):
            sj, pf = size[j], blockptr[first[j]]
            for r in range(m):
                for c in range(sj):
                    out[r, col + c] = values[pf + r * sj + c]
            col += sj
    return out


@kernel
def factorize(Lval, D, s):
    """Factor ``A`` in place (right-looking over sparse columns, LAPACK on the dense
    block); returns ``(log|A|, dense factor)``, ``log|A| = nan`` if not positive definite.
    ``D`` is left holding the dense block's Schur complement (symmetric)."""
    size, offset, colptr, rowidx, blockptr = s.size, s.offset, s.colptr, s.rowidx, s.blockptr
    first, t, base = s.first, s.t, s.base
    m = D.shape[0]
    rows = np.empty(m, dtype=np.int64)
    logdet = 0.0
    for j in range(t):
        c0, c1, sj = colptr[j], colptr[j + 1], size[j]
        pj = blockptr[c0]
        for a in range(sj):  # Cholesky of the diagonal block (row-major, lower)
            acc = Lval[pj + a * sj + a]
            for v in range(a):
                acc -= Lval[pj + a * sj + v] ** 2
            if not acc > 0.0:
                return math.nan, D
            d = math.sqrt(acc)
            Lval[pj + a * sj + a] = d
            logdet += 2.0 * math.log(d)
            for r in range(a + 1, sj):
                acc = Lval[pj + r * sj + a]
                for v in range(a):
                    acc -= Lval[pj + r * sj + v] * Lval[pj + a * sj + v]
                Lval[pj + r * sj + a] = acc / d
            for r in range(a):
                Lval[pj + r * sj + a] = 0.0
        pe, pend = blockptr[c0 + 1], blockptr[c1]
        for e in range(pe, pend, sj):  # L_ij = A_ij L_jj^-T, one scalar row at a time
            for c in range(sj):
                acc = Lval[e + c]
                for v in range(c):
                    acc -= Lval[e + v] * Lval[pj + c * sj + v]
                Lval[e + c] = acc / Lval[pj + c * sj + c]
        for b in range(c0 + 1, first[j]):  # updates of later sparse columns
            k = rowidx[b]
            sk, pb = size[k], blockptr[b]
            for a in range(b, c1):
                i = rowidx[a]
                si, pa = size[i], blockptr[a]
                pt = blockptr[_find(colptr, rowidx, k, i)]
                for r in range(si):
                    for c in range(sk):
                        acc = 0.0
                        for v in range(sj):
                            acc += Lval[pa + r * sj + v] * Lval[pb + c * sj + v]
                        Lval[pt + r * sk + c] -= acc
        if _is_full(colptr, blockptr, size, first, j, m):
            continue  # its update of the dense block is one product below
        # the dense block's lower triangle: column j's dense rows are one (n x s_j) matrix
        n = _dense_rows(rows, size, offset, rowidx, first[j], c1, base)
        pf = blockptr[first[j]]
        for a in range(n):
            ra = rows[a]
            for b in range(a + 1):
                acc = 0.0
                for v in range(sj):
                    acc += Lval[pf + a * sj + v] * Lval[pf + b * sj + v]
                D[ra, rows[b]] -= acc
    if m == 0:
        return logdet, D
    B = _gather_full(Lval, colptr, blockptr, size, first, m)
    if B.shape[1]:
        D -= np.dot(B, np.ascontiguousarray(B.T))
    for r in range(m):  # the scattered updates filled the lower triangle
        if not (D[r, r] > 0.0 and D[r, r] < math.inf):
            return math.nan, D
        for c in range(r + 1, m):
            if not math.isfinite(D[c, r]):
                return math.nan, D
            D[r, c] = D[c, r]
    # LAPACK gets finite values only: numba's cholesky does not check them (an infinite
    # block came back as an "inf factor", not as an error)
    try:  # C order on every branch: one array type, one compiled variant downstream
        LD = np.ascontiguousarray(np.linalg.cholesky(D))
    except Exception:  # noqa: BLE001 - numba raises LinAlgError: not positive definite
        return math.nan, D
    for r in range(m):
        logdet += 2.0 * math.log(LD[r, r])
    return logdet, LD


@kernel
def solve_lower(Lval, LD, R, s):
    """``R <- L^-1 R`` in place, for R of shape (Q, k)."""
    size, offset, colptr, rowidx, blockptr = s.size, s.offset, s.colptr, s.rowidx, s.blockptr
    t, base = s.t, s.base
    k = R.shape[1]
    for j in range(t):
        c0, c1, sj, oj = colptr[j], colptr[j + 1], size[j], offset[j]
        pj = blockptr[c0]
        for r in range(sj):
            for col in range(k):
                acc = R[oj + r, col]
                for v in range(r):
                    acc -= Lval[pj + r * sj + v] * R[oj + v, col]
                R[oj + r, col] = acc / Lval[pj + r * sj + r]
        for e in range(c0 + 1, c1):
            i = rowidx[e]
            si, oi, pe = size[i], offset[i], blockptr[e]
            for r in range(si):
                for col in range(k):
                    acc = 0.0
                    for v in range(sj):
                        acc += Lval[pe + r * sj + v] * R[oj + v, col]
                    R[oi + r, col] -= acc
    m = LD.shape[0]
    for r in range(m):
        for col in range(k):
            acc = R[base + r, col]
            for v in range(r):
                acc -= LD[r, v] * R[base + v, col]
            R[base + r, col] = acc / LD[r, r]


@kernel
def solve_upper(Lval, LD, R, s):
    """``R <- L'^-1 R`` in place, for R of shape (Q, k)."""
    size, offset, colptr, rowidx, blockptr = s.size, s.offset, s.colptr, s.rowidx, s.blockptr
    t, base = s.t, s.base
    k = R.shape[1]
    m = LD.shape[0]
    for r in range(m - 1, -1, -1):
        for col in range(k):
            acc = R[base + r, col]
            for v in range(r + 1, m):
                acc -= LD[v, r] * R[base + v, col]
            R[base + r, col] = acc / LD[r, r]
    for j in range(t - 1, -1, -1):
        c0, c1, sj, oj = colptr[j], colptr[j + 1], size[j], offset[j]
        for e in range(c0 + 1, c1):
            i = rowidx[e]
            si, oi, pe = size[i], offset[i], blockptr[e]
            for c in range(sj):
                for col in range(k):
                    acc = 0.0
                    for v in range(si):
                        acc += Lval[pe + v * sj + c] * R[oi + v, col]
                    R[oj + c, col] -= acc
        pj = blockptr[c0]
        for r in range(sj - 1, -1, -1):
            for col in range(k):
                acc = R[oj + r, col]
                for v in range(r + 1, sj):
                    acc -= Lval[pj + v * sj + r] * R[oj + v, col]
                R[oj + r, col] = acc / Lval[pj + r * sj + r]


#: rows of the diagonal blocks that :func:`lower_inverse` inverts by substitution
INVERSE_BLOCK = 48


@kernel
def _lower_inverse_diagonal(L, c0, c1, out):
    """``out[c0:c1, c0:c1] <- L[c0:c1, c0:c1]^-1`` by forward substitution, column by
    column (zeros above the diagonal)."""
    for c in range(c0, c1):
        for r in range(c0, c1):
            if r < c:
                out[r, c] = 0.0
                continue
            acc = 1.0 if r == c else 0.0
            for v in range(c, r):
                acc -= L[r, v] * out[v, c]
            out[r, c] = acc / L[r, r]


@kernel
def lower_inverse(L, q, out):
    """``out[:q, :q] <- L[:q, :q]^-1`` for a lower triangular ``L`` (zeros above the
    diagonal). Blocked: the diagonal blocks by substitution, then block row by block row
    ``X_ij = -X_ii sum_{j <= k < i} L_ik X_kj`` as two BLAS products (substitution alone
    is O(q^3) scalar work with strided reads: 0.34 s for InstEval's 1142-row block)."""
    for c0 in range(0, q, INVERSE_BLOCK):
        _lower_inverse_diagonal(L, c0, min(c0 + INVERSE_BLOCK, q), out)
    for r0 in range(0, q, INVERSE_BLOCK):
        r1 = min(r0 + INVERSE_BLOCK, q)
        diagonal = np.ascontiguousarray(out[r0:r1, r0:r1])
        for c0 in range(0, r0, INVERSE_BLOCK):
            c1 = min(c0 + INVERSE_BLOCK, q)
            inner = np.dot(np.ascontiguousarray(L[r0:r1, c0:r0]),
                           np.ascontiguousarray(out[c0:r0, c0:c1]))  # fmt: skip
            out[r0:r1, c0:c1] = -np.dot(diagonal, inner)
        out[r0:r1, r1:q] = 0.0


@kernel
def spd_inverse(L):
    """``(L L')^-1`` from the lower Cholesky factor ``L``: ``L^-T L^-1``, the triangular
    inverse and one BLAS product. Unlike LAPACK's ``inv`` it never raises, so nothing
    escapes into nutpie's threads from here."""
    m = L.shape[0]
    Linv = np.empty((m, m))
    lower_inverse(L, m, Linv)
    return np.dot(np.ascontiguousarray(Linv.T), Linv)


@kernel
def selected_inverse(Lval, LD, s):
    """``A^-1`` on the pattern of ``L``: (sparse blocks, dense block), by Takahashi's
    recurrence ``Z_ij = -sum_k Z_ik L_kj L_jj^-1``, ``Z_jj = L_jj^-T L_jj^-1 - sum_k
    (L_kj L_jj^-1)' Z_kj`` over the pattern of column j, from the last column back. The
    dense block's part is the inverse of its Schur complement (from its factor ``LD``); for
    columns whose rows cover it, ``Z_kj`` over the dense rows is one product with it (BLAS)."""
    size, offset, colptr, rowidx, blockptr = s.size, s.offset, s.colptr, s.rowidx, s.blockptr
    first, t, base = s.first, s.t, s.base
    m = LD.shape[0]
    ZD = spd_inverse(LD)
    rows = np.empty(m, dtype=np.int64)
    Zval = np.zeros_like(Lval)
    U = np.empty_like(Lval)  # L_ij L_jj^-1, laid out as L; the diagonal blocks hold L_jj^-1
    for j in range(t):
        c0, c1, sj = colptr[j], colptr[j + 1], size[j]
        pj = blockptr[c0]
        for c in range(sj):  # L_jj^-1 (lower)
            for r in range(sj):
                if r < c:
                    U[pj + r * sj + c] = 0.0
                    continue
                acc = 1.0 if r == c else 0.0
                for v in range(c, r):
                    acc -= Lval[pj + r * sj + v] * U[pj + v * sj + c]
                U[pj + r * sj + c] = acc / Lval[pj + r * sj + r]
        for e in range(blockptr[c0 + 1], blockptr[c1], sj):  # one scalar row at a time
            for c in range(sj):
                acc = 0.0
                for v in range(c, sj):
                    acc += Lval[e + v] * U[pj + v * sj + c]
                U[e + c] = acc
    W = np.dot(ZD, _gather_full(U, colptr, blockptr, size, first, m)) if m else ZD
    col = W.shape[1]
    for j in range(t - 1, -1, -1):
        c0, c1, sj = colptr[j], colptr[j + 1], size[j]
        pj, fj = blockptr[c0], first[j]
        full = _is_full(colptr, blockptr, size, first, j, m)
        if full:  # Z over the dense rows: -ZD U_dense
            col -= sj
            pf = blockptr[fj]
            for r in range(m):
                for c in range(sj):
                    Zval[pf + r * sj + c] = -W[r, col + c]
        for a in range(c0 + 1, c1):
            i = rowidx[a]
            si, pa = size[i], blockptr[a]
            # pairs with k in the sparse part (any i), and with k dense for a sparse i
            b_end = c1 if i < t else fj
            for b in range(c0 + 1, b_end):
                k = rowidx[b]
                sk, pu = size[k], blockptr[b]
                lo, hi = min(i, k), max(i, k)
                if lo >= t:  # both dense, not covered by the product
                    oi, ok = offset[i] - base, offset[k] - base
                    for r in range(si):
                        for c in range(sj):
                            acc = 0.0
                            for v in range(sk):
                                acc += ZD[oi + r, ok + v] * U[pu + v * sj + c]
                            Zval[pa + r * sj + c] -= acc
                    continue
                pz = blockptr[_find(colptr, rowidx, lo, hi)]  # column lo, row hi
                if i >= k:  # block (i, k), s_i x s_k
                    for r in range(si):
                        for c in range(sj):
                            acc = 0.0
                            for v in range(sk):
                                acc += Zval[pz + r * sk + v] * U[pu + v * sj + c]
                            Zval[pa + r * sj + c] -= acc
                else:  # block (k, i), s_k x s_i: its transpose
                    for r in range(si):
                        for c in range(sj):
                            acc = 0.0
                            for v in range(sk):
                                acc += Zval[pz + v * si + r] * U[pu + v * sj + c]
                            Zval[pa + r * sj + c] -= acc

        if fj < c1 and not full:  # dense rows of a column that does not cover them
            n = _dense_rows(rows, size, offset, rowidx, fj, c1, base)
            pf = blockptr[fj]
            for a in range(n):
                ra = rows[a]
                for c in range(sj):
                    acc = 0.0
                    for b in range(n):
                        acc += ZD[ra, rows[b]] * U[pf + b * sj + c]
                    Zval[pf + a * sj + c] -= acc
        for r in range(sj):
            for c in range(sj):
                acc = 0.0
                for v in range(max(r, c), sj):
                    acc += U[pj + v * sj + r] * U[pj + v * sj + c]
                for e in range(blockptr[c0 + 1], blockptr[c1], sj):
                    acc -= U[e + r] * Zval[e + c]
                Zval[pj + r * sj + c] = acc
    return Zval, ZD


@kernel
def logdet_gradient(T, Zval, ZD, s):
    """``d log|A| / dT_f`` for every factor: (F, qmax, qmax)."""
    size, offset, node_factor, pair_i, pair_j = s.size, s.offset, s.node_factor, s.pair_i, s.pair_j
    pair_ptr, pair_val, pair_pos = s.pair_ptr, s.pair_val, s.pair_pos
    blockptr, base = s.blockptr, s.base
    G = np.zeros(T.shape)
    qmax = T.shape[1]
    TZ = np.empty(qmax * qmax)
    Zb = np.empty(qmax * qmax)
    for k in range(pair_i.shape[0]):
        i, j = pair_i[k], pair_j[k]
        si, sj, fi, fj, pc = size[i], size[j], node_factor[i], node_factor[j], pair_ptr[k]
        pos = pair_pos[k]
        oi, oj = offset[i] - base, offset[j] - base
        if si == 1 and sj == 1:  # scalar nodes
            z = Zval[blockptr[pos]] if pos >= 0 else ZD[oi, oj]
            cz = 2.0 * pair_val[pc] * z
            G[fj, 0, 0] += cz * T[fi, 0, 0]
            if i != j:
                G[fi, 0, 0] += cz * T[fj, 0, 0]
            continue
        for r in range(si):  # Z_ij, s_i x s_j
            for c in range(sj):
                Zb[r * sj + c] = (
                    Zval[blockptr[pos] + r * sj + c] if pos >= 0 else ZD[oi + r, oj + c]
                )
        # node j: 2 C' T_i Z_ij (s_j x s_j)
        for r in range(si):
            for c in range(sj):
                acc = 0.0
                for v in range(si):
                    acc += T[fi, r, v] * Zb[v * sj + c]
                TZ[r * sj + c] = acc
        for r in range(sj):
            for c in range(sj):
                acc = 0.0
                for v in range(si):
                    acc += pair_val[pc + v * sj + r] * TZ[v * sj + c]
                G[fj, r, c] += 2.0 * acc
        if i != j:  # node i: 2 C T_j Z_ij' (s_i x s_i)
            for r in range(sj):
                for c in range(si):
                    acc = 0.0
                    for v in range(sj):
                        acc += T[fj, r, v] * Zb[c * sj + v]
                    TZ[r * si + c] = acc
            for r in range(si):
                for c in range(si):
                    acc = 0.0
                    for v in range(sj):
                        acc += pair_val[pc + r * sj + v] * TZ[v * si + c]
                    G[fi, r, c] += 2.0 * acc
    return G


@kernel
def zz_product(V, size, offset, pair_i, pair_j, pair_ptr, pair_val):
    """``Z'Z V`` from the lower node blocks, for V of shape (Q, k)."""
    out = np.zeros(V.shape)
    k = V.shape[1]
    for p in range(pair_i.shape[0]):
        i, j = pair_i[p], pair_j[p]
        si, sj, oi, oj, pc = size[i], size[j], offset[i], offset[j], pair_ptr[p]
        if si == 1 and sj == 1 and k == 1:  # scalar nodes, one column
            cv = pair_val[pc]
            out[oi, 0] += cv * V[oj, 0]
            if i != j:
                out[oj, 0] += cv * V[oi, 0]
            continue
        for r in range(si):
            for c in range(sj):
                cv = pair_val[pc + r * sj + c]
                for col in range(k):
                    out[oi + r, col] += cv * V[oj + c, col]
                    if i != j:
                        out[oj + c, col] += cv * V[oi + r, col]
    return out


@kernel
def apply_factor(T, V, size, offset, node_factor, transpose):
    """``Lambda V`` (or ``Lambda' V``) for V of shape (Q, k)."""
    out = np.zeros(V.shape)
    k = V.shape[1]
    for j in range(size.shape[0]):
        s, o, f = size[j], offset[j], node_factor[j]
        for r in range(s):
            for c in range(s):
                tv = T[f, c, r] if transpose else T[f, r, c]
                if tv != 0.0:
                    for col in range(k):
                        out[o + r, col] += tv * V[o + c, col]
    return out


@kernel
def outer_by_factor(W, U, size, offset, node_factor, n_factors, qmax):
    """``sum_{j in f} W_j U_j'`` per factor, for W, U of shape (Q, k): (F, qmax, qmax)."""
    G = np.zeros((n_factors, qmax, qmax))
    k = W.shape[1]
    for j in range(size.shape[0]):
        s, o, f = size[j], offset[j], node_factor[j]
        for r in range(s):
            for c in range(s):
                acc = 0.0
                for col in range(k):
                    acc += W[o + r, col] * U[o + c, col]
                G[f, r, c] += acc
    return G


@kernel
def _explicit_residuals(beta, uE, s, fs, e):
    """With sampled effects ``uE``: ``s -= Z_M'Z_E uE`` in place; returns ``Z_E'(y - X
    beta)`` and ``Z_E'Z_E uE``. ``c_dense``: the cross table as one (Q_E, Q_M) matrix, or
    (0, 0) to use its blocks."""
    size, offset = fs.size, fs.offset
    (c_i, c_j, c_ptr, c_val, c_dense, e_size, e_offset, e_i, e_j, e_ptr, e_val, ZtX_E,
     Zty_E) = (e.c_i, e.c_j, e.c_ptr, e.c_val, e.c_dense, e.e_size, e.e_offset, e.e_i, e.e_j,
               e.e_ptr, e.e_val, e.ZtX_E, e.Zty_E)  # fmt: skip
    if c_dense.shape[0] > 0:
        s -= np.dot(c_dense.T, uE)
    for k in range(c_i.shape[0] if c_dense.shape[0] == 0 else 0):
        i, j = c_i[k], c_j[k]
        si, sj, oi, oj, pc = e_size[i], size[j], e_offset[i], offset[j], c_ptr[k]
        if si == 1 and sj == 1:
            s[oj] -= c_val[pc] * uE[oi]
            continue
        for r in range(si):
            for c in range(sj):
                s[oj + c] -= c_val[pc + r * sj + c] * uE[oi + r]
    rE = Zty_E - ZtX_E @ beta if beta.shape[0] else Zty_E.copy()
    EEu = zz_product(uE.reshape((-1, 1)), e_size, e_offset, e_i, e_j, e_ptr, e_val)[:, 0]
    return rE, EEu


@kernel
def _block_diagonal(T, s, want_grad, s2, fs):
    """One pass per level where ``A`` is block diagonal (one grouping factor): ``log|A|``,
    ``c'c``, ``dT = -(d log|A| - d(c'c) / sigma^2) / 2`` and ``Lambda u``, with no array
    per level (the general path's result, without its bookkeeping)."""
    size, offset, node_factor, pair_ptr, pair_val = (fs.size, fs.offset, fs.node_factor,
                                                     fs.pair_ptr, fs.pair_val)  # fmt: skip
    F, qmax = T.shape[0], T.shape[1]
    Q = s.shape[0]
    v = np.zeros(Q)
    dT = np.zeros((F, qmax, qmax))
    A = np.empty((qmax, qmax))
    ST = np.empty((qmax, qmax))
    Linv = np.empty((qmax, qmax))
    Ainv = np.empty((qmax, qmax))
    c = np.empty(qmax)
    uh = np.empty(qmax)
    logdet, cc = 0.0, 0.0
    for j in range(size.shape[0]):
        q, o, f, pc = size[j], offset[j], node_factor[j], pair_ptr[j]
        for a in range(q):  # S T
            for b in range(q):
                acc = 0.0
                for k in range(q):
                    acc += pair_val[pc + a * q + k] * T[f, k, b]
                ST[a, b] = acc
        for a in range(q):  # A = T'S T + I, lower, then its Cholesky factor in place
            for b in range(a + 1):
                acc = 1.0 if a == b else 0.0
                for k in range(q):
                    acc += T[f, k, a] * ST[k, b]
                A[a, b] = acc
        for a in range(q):
            acc = A[a, a]
            for k in range(a):
                acc -= A[a, k] * A[a, k]
            if not acc > 0.0:
                return math.nan, cc, dT, v
            A[a, a] = math.sqrt(acc)
            logdet += 2.0 * math.log(A[a, a])
            for r in range(a + 1, q):
                acc = A[r, a]
                for k in range(a):
                    acc -= A[r, k] * A[a, k]
                A[r, a] = acc / A[a, a]
        for a in range(q):  # c = L^-1 T' Z'r
            acc = 0.0
            for k in range(q):
                acc += T[f, k, a] * s[o + k]
            for k in range(a):
                acc -= A[a, k] * c[k]
            c[a] = acc / A[a, a]
            cc += c[a] * c[a]
        if not want_grad:
            continue
        for a in range(q - 1, -1, -1):  # u = L^-T c
            acc = c[a]
            for k in range(a + 1, q):
                acc -= A[k, a] * uh[k]
            uh[a] = acc / A[a, a]
        for a in range(q):  # Lambda u
            acc = 0.0
            for k in range(a + 1):
                acc += T[f, a, k] * uh[k]
            v[o + a] = acc
        lower_inverse(A, q, Linv)
        for k in range(q):  # A^-1 = L^-T L^-1, once per level
            for b in range(k + 1):
                acc = 0.0
                for r in range(k, q):
                    acc += Linv[r, k] * Linv[r, b]
                Ainv[k, b] = acc
                Ainv[b, k] = acc
        for a in range(q):
            wa = s[o + a]  # w = Z'r - S Lambda u
            for k in range(q):
                wa -= pair_val[pc + a * q + k] * v[o + k]
            for b in range(q):
                acc = 0.0  # d log|A| / dT / 2 = S T A^-1
                for k in range(q):
                    acc += ST[a, k] * Ainv[k, b]
                dT[f, a, b] += wa * uh[b] / s2 - acc
    return logdet, cc, dT, v


@kernel
def marginal_loglik(T, beta, sigma, uE, want_grad, fs, e):
    """``log N(y | X beta + Z_E uE, sigma^2 (I + Z_M Lambda Lambda' Z_M'))`` and, if
    ``want_grad``, its derivatives in every ``T_f`` (F, qmax, qmax), in ``beta``, in
    ``sigma`` (T fixed) and in ``uE``.

    ``Z_M`` are the random effects integrated out (the factored system), ``Z_E`` those
    sampled (``uE``; empty arrays when every factor is integrated out). Returns ``(loglik,
    dT, dbeta, dsigma, duE)``; ``loglik`` is ``-inf`` where ``A`` is not numerically
    positive definite. ``fs``: the factored system (:data:`Factored`), ``e``: the sampled
    factors (:data:`Sampled`).
    """
    size, offset, node_factor, m, rowidx = fs.size, fs.offset, fs.node_factor, fs.m, fs.rowidx
    pair_i, pair_j, pair_ptr, pair_val = fs.pair_i, fs.pair_j, fs.pair_ptr, fs.pair_val
    ZtX, Zty, XtX, Xty, yty, n = fs.ZtX, fs.Zty, fs.XtX, fs.Xty, fs.yty, fs.n
    c_i, c_j, c_ptr, c_val, c_dense = e.c_i, e.c_j, e.c_ptr, e.c_val, e.c_dense
    e_size, e_offset, ZtX_E, Zty_E = e.e_size, e.e_offset, e.ZtX_E, e.Zty_E
    p = beta.shape[0]
    F, qmax = T.shape[0], T.shape[1]
    s = Zty.copy()  # Z_M'r
    for r in range(s.shape[0]):
        for c in range(p):
            s[r] -= ZtX[r, c] * beta[c]
    QE = uE.shape[0]
    if QE:
        rE, EEu = _explicit_residuals(beta, uE, s, fs, e)
    else:
        rE, EEu = Zty_E, Zty_E
    rr = yty
    for a in range(p):
        acc = 0.0
        for b in range(p):
            acc += XtX[a, b] * beta[b]
        rr += beta[a] * (acc - 2.0 * Xty[a])
    for r in range(uE.shape[0]):
        rr += uE[r] * (EEu[r] - 2.0 * rE[r])
    s2 = sigma * sigma
    dbeta, duE = np.zeros(p), np.zeros(uE.shape[0])
    if m == 0 and rowidx.shape[0] == size.shape[0]:  # block diagonal: one pass per level
        logdet, cc, dT, vv = _block_diagonal(T, s, want_grad, s2, fs)
        v = vv.reshape((-1, 1))
        if math.isnan(logdet):
            return -np.inf, dT, dbeta, 0.0, duE
    else:
        Lval, D = assemble(T, fs)
        logdet, LD = factorize(Lval, D, fs)
        dT = np.zeros((F, qmax, qmax))
        if math.isnan(logdet):
            return -np.inf, dT, dbeta, 0.0, duE
        u = apply_factor(T, s.reshape((-1, 1)), size, offset, node_factor, True)  # Lambda'Z'r
        solve_lower(Lval, LD, u, fs)
        cc = 0.0
        for r in range(u.shape[0]):
            cc += u[r, 0] * u[r, 0]
        v = u
        if want_grad:
            solve_upper(Lval, LD, u, fs)
            Zval, ZD = selected_inverse(Lval, LD, fs)
            G = logdet_gradient(T, Zval, ZD, fs)
            v = apply_factor(T, u, size, offset, node_factor, False)  # Lambda u
            w = s.reshape((-1, 1)) - zz_product(v, size, offset, pair_i, pair_j, pair_ptr,
                                                pair_val)  # fmt: skip
            dT = outer_by_factor(w, u, size, offset, node_factor, F, qmax)  # d(c'c)/dT / 2
            for f in range(F):  # dT = -(d log|A| - d(c'c) / sigma^2) / 2
                for a in range(qmax):
                    for c in range(qmax):
                        dT[f, a, c] = dT[f, a, c] / s2 - 0.5 * G[f, a, c]
    loglik = -0.5 * (n * LOG_2PI + 2.0 * n * math.log(sigma) + logdet + (rr - cc) / s2)
    if not want_grad:
        return loglik, dT, dbeta, 0.0, duE
    for a in range(p):
        acc = Xty[a]
        for b in range(p):
            acc -= XtX[a, b] * beta[b]
        for r in range(v.shape[0]):
            acc -= ZtX[r, a] * v[r, 0]
        for r in range(uE.shape[0]):
            acc -= ZtX_E[r, a] * uE[r]
        dbeta[a] = acc / s2
    for r in range(uE.shape[0]):  # Z_E'(r - Z_M Lambda u)
        duE[r] = rE[r] - EEu[r]
    if c_dense.shape[0] > 0:
        duE -= np.dot(c_dense, np.ascontiguousarray(v[:, 0]))
    for k in range(c_i.shape[0] if c_dense.shape[0] == 0 else 0):
        i, j = c_i[k], c_j[k]
        si, sj, oi, oj, pc = e_size[i], size[j], e_offset[i], offset[j], c_ptr[k]
        if si == 1 and sj == 1:
            duE[oi] -= c_val[pc] * v[oj, 0]
            continue
        for r in range(si):
            for c in range(sj):
                duE[oi + r] -= c_val[pc + r * sj + c] * v[oj + c, 0]
    duE /= s2
    dsigma = -n / sigma + (rr - cc) / (s2 * sigma)
    return loglik, dT, dbeta, dsigma, duE


@kernel
def profiled_deviance(T, reml, want_grad, fs):
    """lme4's profiled deviance (ML) or REML criterion at relative factors ``T``, its
    derivative in every ``T_f`` (beta and sigma profiled out) and the penalised
    least-squares solution, from the factored system ``fs`` (:data:`Factored`): see
    :func:`deviance` (``sigma2 = 0``), whose outputs it returns."""
    return deviance(T, reml, 0.0, want_grad, fs)


@kernel
def deviance(T, reml, sigma2, want_grad, fs):
    """The deviance (ML) or REML criterion at factors ``T``, its derivative in every
    ``T_f`` (beta profiled out) and the penalised least-squares solution, from the
    factored system ``fs`` (:data:`Factored`). ``sigma2 <= 0``: sigma profiled out too,
    lme4's profiled criterion with ``T`` relative to sigma. ``sigma2 > 0``: the residual
    variance is known (rows already scaled by known standard errors have ``sigma2 = 1``,
    and ``T`` is then the factor of the random effects' covariance itself), and the
    criterion is ``log|A| + r2 / sigma2 + dof log(2 pi sigma2)`` (+ ``log|R_X'R_X|`` for
    REML), ``dof = n - p`` (REML) or ``n``.

    Returns ``(deviance, dT, beta, sigma2_hat, log|A|, log|R_X'R_X|, R_X, u, A_jj)``:
    ``R_X`` the lower Cholesky factor of the fixed effects' Schur complement, ``u`` the
    spherical conditional modes (node order) and, with ``want_grad``, ``A_jj`` the
    diagonal node blocks of ``A^-1`` (node after node, ``size_j^2`` each, row-major; empty
    without). The deviance is ``inf`` where ``A`` or the Schur complement is not
    numerically positive definite.
    """
    size, offset, node_factor, pair_i, pair_j = (fs.size, fs.offset, fs.node_factor,
                                                 fs.pair_i, fs.pair_j)  # fmt: skip
    pair_ptr, pair_val, blockptr, colptr, t = (fs.pair_ptr, fs.pair_val, fs.blockptr,
                                               fs.colptr, fs.t)  # fmt: skip
    ZtX, Zty, XtX, Xty, yty, n = fs.ZtX, fs.Zty, fs.XtX, fs.Xty, fs.yty, fs.n
    p = XtX.shape[0]
    Q = Zty.shape[0]
    F, qmax = T.shape[0], T.shape[1]
    dT = np.zeros((F, qmax, qmax))
    beta = np.zeros(p)
    RX = np.zeros((p, p))
    u = np.zeros(Q)
    blocks = np.zeros(0)
    Lval, D = assemble(T, fs)
    logdet, LD = factorize(Lval, D, fs)
    if math.isnan(logdet):
        return np.inf, dT, beta, np.nan, logdet, np.nan, RX, u, blocks
    R = np.empty((Q, p + 1))
    R[:, :p] = ZtX
    R[:, p] = Zty
    R = apply_factor(T, R, size, offset, node_factor, True)  # [Lambda'Z'X, Lambda'Z'y]
    C = R.copy()
    solve_lower(Lval, LD, C, fs)
    CtC = np.dot(np.ascontiguousarray(C.T), C)
    M = XtX - CtC[:p, :p]
    vx = Xty - CtC[:p, p]
    yy = yty - CtC[p, p]
    logdet_M = 0.0
    Minv = np.zeros((p, p))
    if p:
        for a in range(p):  # positive definite and finite?
            if not (M[a, a] > 0.0 and M[a, a] < math.inf):
                return np.inf, dT, beta, np.nan, logdet, np.nan, RX, u, blocks
            for c in range(a):
                if not math.isfinite(M[a, c]):
                    return np.inf, dT, beta, np.nan, logdet, np.nan, RX, u, blocks
        try:
            RX = np.ascontiguousarray(np.linalg.cholesky(M))
        except Exception:  # noqa: BLE001 - rank deficient given theta
            return np.inf, dT, beta, np.nan, logdet, np.nan, RX, u, blocks
        for a in range(p):
            logdet_M += 2.0 * math.log(RX[a, a])
        Minv[:, :] = spd_inverse(RX)
        beta = Minv @ vx
    r2 = yy
    for a in range(p):
        r2 -= vx[a] * beta[a]
    r2 = max(r2, 1e-300)
    dof = n - p if reml else n
    known = sigma2 > 0.0
    if known:
        dev = logdet + r2 / sigma2 + dof * math.log(2.0 * math.pi * sigma2)
    else:
        dev = logdet + dof * (1.0 + math.log(2.0 * math.pi * r2 / dof))
    if reml:
        dev += logdet_M
    solve_upper(Lval, LD, C, fs)  # A^-1 R
    U = np.ascontiguousarray(C[:, :p])
    uu = C[:, p : p + 1] - U @ beta.reshape((-1, 1))
    u = uu[:, 0].copy()
    s2_hat = sigma2 if known else r2 / dof
    if not want_grad:
        return dev, dT, beta, s2_hat, logdet, logdet_M, RX, u, blocks
    Zval, ZD = selected_inverse(Lval, LD, fs)
    G = logdet_gradient(T, Zval, ZD, fs)
    resid = (Zty - ZtX @ beta).reshape((-1, 1))  # Z'(y - X beta)
    v = apply_factor(T, uu, size, offset, node_factor, False)
    w = resid - zz_product(v, size, offset, pair_i, pair_j, pair_ptr, pair_val)
    G -= ((1.0 / sigma2) if known else (dof / r2)) * 2.0 * outer_by_factor(
        w, uu, size, offset, node_factor, F, qmax)
    if reml and p:
        WX = ZtX - zz_product(apply_factor(T, U, size, offset, node_factor, False), size,
                              offset, pair_i, pair_j, pair_ptr, pair_val)  # fmt: skip
        G -= 2.0 * outer_by_factor(WX @ Minv, U, size, offset, node_factor, F, qmax)
    total = 0
    for j in range(size.shape[0]):
        total += size[j] * size[j]
    blocks = np.empty(total)
    base, k = fs.base, 0
    for j in range(size.shape[0]):  # the diagonal node blocks of A^-1
        sj = size[j]
        for r in range(sj):
            for c in range(sj):
                if j < t:
                    blocks[k] = Zval[blockptr[colptr[j]] + r * sj + c]
                else:
                    blocks[k] = ZD[offset[j] - base + r, offset[j] - base + c]
                k += 1
    return dev, G, beta, s2_hat, logdet, logdet_M, RX, u, blocks


@kernel
def draw_effects(T_draws, beta_draws, sigma_draws, uE_draws, noise, fs, e):
    """Exact draws of the integrated-out effects ``b = Lambda (u_hat + sigma L'^-1 noise)``
    given each draw of (T, beta, sigma, uE): (draws, Q_M) in the node numbering."""
    size, offset, node_factor, ZtX, Zty = fs.size, fs.offset, fs.node_factor, fs.ZtX, fs.Zty
    S, Q = noise.shape
    out = np.empty((S, Q))
    for d in range(S):
        T = T_draws[d]
        Lval, D = assemble(T, fs)
        logdet, LD = factorize(Lval, D, fs)
        if math.isnan(logdet):
            out[d] = np.nan
            continue
        beta = beta_draws[d]
        s = Zty - ZtX @ beta if beta.shape[0] else Zty.copy()
        _explicit_residuals(beta, uE_draws[d], s, fs, e)
        u = apply_factor(T, s.reshape((-1, 1)), size, offset, node_factor, True)
        solve_lower(Lval, LD, u, fs)
        for r in range(Q):
            u[r, 0] += sigma_draws[d] * noise[d, r]
        solve_upper(Lval, LD, u, fs)
        out[d] = apply_factor(T, u, size, offset, node_factor, False)[:, 0]
    return out


@kernel
def group_loglik(T_draws, beta_draws, sigma_draws, node_group, g_XtX, g_Xty, g_yty, g_n, fs):
    """``log N(y_g | X_g beta, sigma^2 (I + Z_g Lambda Lambda' Z_g'))`` of every group g
    for every draw: (draws, groups). The groups must be independent (``node_group`` from
    :func:`~bayeslmm.gaussian.statistics.node_groups`): ``L`` is then block diagonal by
    group, and each group's ``log|A_g|`` and ``c_g'c_g`` sum over its own rows of ``L``."""
    size, offset, node_factor, ZtX, Zty = fs.size, fs.offset, fs.node_factor, fs.ZtX, fs.Zty
    colptr, blockptr, t, base, m = fs.colptr, fs.blockptr, fs.t, fs.base, fs.m
    S, G = sigma_draws.shape[0], g_yty.shape[0]
    p = ZtX.shape[1]
    out = np.empty((S, G))
    row_group = np.empty(Zty.shape[0], dtype=np.int64)
    for j in range(size.shape[0]):
        for r in range(size[j]):
            row_group[offset[j] + r] = node_group[j]
    for d in range(S):
        T, beta, sigma = T_draws[d], beta_draws[d], sigma_draws[d]
        Lval, D = assemble(T, fs)
        logdet, LD = factorize(Lval, D, fs)
        if math.isnan(logdet):
            out[d] = -np.inf
            continue
        s = Zty - ZtX @ beta if p else Zty.copy()
        u = apply_factor(T, s.reshape((-1, 1)), size, offset, node_factor, True)
        solve_lower(Lval, LD, u, fs)
        logdet_g, cc_g = np.zeros(G), np.zeros(G)
        for j in range(t):
            sj, pj, g = size[j], blockptr[colptr[j]], node_group[j]
            for r in range(sj):
                logdet_g[g] += 2.0 * math.log(Lval[pj + r * sj + r])
        for r in range(m):
            logdet_g[row_group[base + r]] += 2.0 * math.log(LD[r, r])
        for r in range(u.shape[0]):
            cc_g[row_group[r]] += u[r, 0] * u[r, 0]
        s2 = sigma * sigma
        for g in range(G):
            rr = g_yty[g]
            for a in range(p):
                acc = 0.0
                for c in range(p):
                    acc += g_XtX[g, a, c] * beta[c]
                rr += beta[a] * (acc - 2.0 * g_Xty[g, a])
            out[d, g] = -0.5 * (g_n[g] * (LOG_2PI + math.log(s2)) + logdet_g[g]
                                + (rr - cc_g[g]) / s2)  # fmt: skip
    return out


def _dense_cross(cross: tuple, explicit: NodeBlocks, marginal: NodeBlocks) -> np.ndarray:
    """The cross blocks as one dense (Q_E, Q_M) matrix, or (0, 0) where too sparse or big."""
    c_i, c_j, c_ptr, c_val = cross
    rows, cols = int(explicit.offset[-1]), int(marginal.offset[-1])
    if (not c_val.size or rows * cols > CROSS_DENSE_MAX
            or c_val.size < CROSS_DENSE_FILL * rows * cols):  # fmt: skip
        return np.zeros((0, 0))
    pair = np.repeat(np.arange(len(c_i)), np.diff(c_ptr))
    local = np.arange(c_val.size) - c_ptr[pair]
    width = marginal.size[c_j[pair]]
    dense = np.zeros((rows, cols))
    dense[explicit.offset[c_i[pair]] + local // width,
          marginal.offset[c_j[pair]] + local % width] = c_val  # fmt: skip
    return dense


class BlockedSystem:
    """The statistics of a design split for the kernels, with the symbolic factorisation of
    the penalised system of the factors integrated out.

    Parameters
    ----------
    stats
        Node statistics (:class:`~bayeslmm.gaussian.statistics.BlockedStats`); its first
        ``n_marginal`` nodes are integrated out, the rest are sampled (``uE``).
    """

    def __init__(self, stats: BlockedStats):
        self.stats = stats
        NM, QM = stats.n_marginal, int(stats.offset[stats.n_marginal])
        inside = _part(stats, stats.pair_i < NM, 0, 0)
        self.marginal = NodeBlocks(stats.size[:NM], stats.offset[: NM + 1],
                                   stats.node_factor[:NM], *inside)  # fmt: skip
        self.explicit = NodeBlocks(stats.size[NM:], stats.offset[NM:] - QM,
                                   stats.node_factor[NM:],
                                   *_part(stats, stats.pair_j >= NM, NM, NM))  # fmt: skip
        self.cross = _part(stats, (stats.pair_i >= NM) & (stats.pair_j < NM), NM, 0)
        self.ZtX_M, self.ZtX_E = stats.ZtX[:QM], np.ascontiguousarray(stats.ZtX[QM:])
        self.Zty_M, self.Zty_E = stats.Zty[:QM], np.ascontiguousarray(stats.Zty[QM:])
        boundaries = [f.first for f in stats.factors[1:] if f.first < NM]
        self.pattern = symbolic(self.marginal, boundaries)
        self.qmax = max((f.q for f in stats.factors), default=0)

    @property
    def n_factors(self) -> int:
        return len(self.stats.factors)

    @property
    def n_marginal_effects(self) -> int:
        return int(self.stats.offset[self.stats.n_marginal])

    @property
    def n_explicit_effects(self) -> int:
        return self.stats.n_effects - self.n_marginal_effects

    def factor_stack(self, factors: list[np.ndarray]) -> np.ndarray:
        """Per-factor relative factors (q_f x q_f each) as one (F, qmax, qmax) array."""
        T = np.zeros((self.n_factors, self.qmax, self.qmax))
        for k, Tf in enumerate(factors):
            q = Tf.shape[0]
            T[k, :q, :q] = Tf
        return T

    def factored(self) -> tuple:
        """The kernels' :data:`Factored` input: nodes, pattern and statistics."""
        nodes, pat, s = self.marginal, self.pattern, self.stats
        values = {"size": nodes.size, "offset": nodes.offset, "node_factor": nodes.node_factor,
                  "pair_i": nodes.pair_i, "pair_j": nodes.pair_j, "pair_ptr": nodes.pair_ptr,
                  "pair_val": nodes.pair_val, "pair_pos": pat.pair_pos, "colptr": pat.colptr,
                  "rowidx": pat.rowidx, "blockptr": pat.blockptr, "first": pat.first,
                  "t": pat.dense_start, "base": pat.base, "m": pat.m, "ZtX": self.ZtX_M,
                  "Zty": self.Zty_M, "XtX": s.XtX, "Xty": s.Xty, "yty": s.yty,
                  "n": s.n}  # fmt: skip
        return typed_fields(Factored, FACTORED_FIELDS, values)

    @property
    def cross_dense(self) -> np.ndarray:
        """The cross table ``Z_E'Z_M`` as one dense (Q_E, Q_M) matrix where it is mostly
        nonzero (:data:`CROSS_DENSE_FILL`; subjects x items, every subject seeing every
        item: 55 -> 4.5 microseconds for its two products per evaluation), else (0, 0)."""
        if getattr(self, "_dense_of", None) is not self.cross:  # made for these values?
            self._dense_of = self.cross
            self._dense = _dense_cross(self.cross, self.explicit, self.marginal)
        return self._dense

    def structure(self) -> tuple:
        """Deprecated: :meth:`factored` (the fields as a plain tuple)."""
        warnings.warn("BlockedSystem.structure() is deprecated: use factored()",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        return tuple(self.factored())

    def explicit_structure(self) -> tuple:
        """Deprecated: :meth:`sampled` (the fields as a plain tuple)."""
        warnings.warn("BlockedSystem.explicit_structure() is deprecated: use sampled()",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        return tuple(self.sampled())

    def sampled(self) -> tuple:
        """The kernels' :data:`Sampled` input: the sampled factors' blocks and statistics."""
        e = self.explicit
        c_i, c_j, c_ptr, c_val = self.cross
        values = {"c_i": c_i, "c_j": c_j, "c_ptr": c_ptr, "c_val": c_val,
                  "c_dense": self.cross_dense, "e_size": e.size, "e_offset": e.offset,
                  "e_factor": e.node_factor, "e_i": e.pair_i, "e_j": e.pair_j,
                  "e_ptr": e.pair_ptr, "e_val": e.pair_val, "ZtX_E": self.ZtX_E,
                  "Zty_E": self.Zty_E}  # fmt: skip
        return typed_fields(Sampled, SAMPLED_FIELDS, values)

    def marginal_loglik(self, T: np.ndarray, beta: np.ndarray, sigma: float,
                        uE: np.ndarray | None = None, grad: bool = True) -> tuple:  # fmt: skip
        """See :func:`marginal_loglik`; ``T`` from :meth:`factor_stack`."""
        uE = np.zeros(self.n_explicit_effects) if uE is None else uE
        return marginal_loglik(np.ascontiguousarray(T, dtype=float),
                               np.ascontiguousarray(beta, dtype=float), float(sigma),
                               np.ascontiguousarray(uE, dtype=float), bool(grad),
                               self.factored(), self.sampled())  # fmt: skip

    def profiled_deviance(self, T: np.ndarray, reml: bool, grad: bool = True,
                          sigma: float | None = None) -> tuple:  # fmt: skip
        """See :func:`profiled_deviance` (every factor integrated out); with ``sigma`` the
        residual SD is known and not profiled (:func:`deviance`)."""
        s = self.stats
        if s.n_marginal != s.n_nodes:
            raise ValueError("the profiled criterion integrates every random effect out")
        T = np.ascontiguousarray(T, dtype=float)
        if sigma is None:
            return profiled_deviance(T, bool(reml), bool(grad), self.factored())
        return deviance(T, bool(reml), float(sigma) ** 2, bool(grad), self.factored())

    def group_loglik(self, T_draws: np.ndarray, beta_draws: np.ndarray,
                     sigma_draws: np.ndarray, node_group: np.ndarray,
                     moments: LevelMoments) -> np.ndarray:  # fmt: skip
        """Each independent group's marginal log-likelihood per draw (:func:`group_loglik`)."""
        if self.n_explicit_effects:
            raise ValueError("per-group likelihoods integrate every random effect out")
        return group_loglik(np.ascontiguousarray(T_draws, dtype=float),
                            np.ascontiguousarray(beta_draws, dtype=float),
                            np.ascontiguousarray(sigma_draws, dtype=float),
                            np.ascontiguousarray(node_group, dtype=np.int64),
                            np.ascontiguousarray(moments.XtX, dtype=float),
                            np.ascontiguousarray(moments.Xty, dtype=float),
                            np.ascontiguousarray(moments.yty, dtype=float),
                            moments.counts.astype(float), self.factored())  # fmt: skip

    def draw_effects(self, T_draws: np.ndarray, beta_draws: np.ndarray,
                     sigma_draws: np.ndarray, rng: np.random.Generator,
                     uE_draws: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Exact draws of the integrated-out effects (draws, Q_M), node by node."""
        S = len(sigma_draws)
        if uE_draws is None:
            uE_draws = np.zeros((S, self.n_explicit_effects))
        noise = rng.standard_normal((S, self.n_marginal_effects))
        return draw_effects(np.ascontiguousarray(T_draws, dtype=float),
                            np.ascontiguousarray(beta_draws, dtype=float),
                            np.ascontiguousarray(sigma_draws, dtype=float),
                            np.ascontiguousarray(uE_draws, dtype=float), noise,
                            self.factored(), self.sampled())  # fmt: skip


def choose_explicit(design: Design, dense_max: int = DENSE_MAX) -> tuple[str, ...]:
    """Grouping factors to sample rather than integrate out, so that the dense block of
    the factored system has at most ``dense_max`` rows.

    The first factor (most levels) is always integrated out: its system is block
    diagonal. While the dense block is too large, the later factor contributing most rows
    to it (levels x terms) is sampled instead, as Lai, Domke & Sheldon (2024) marginalise
    InstEval's students and sample its instructors. One factor, nested factors and crossed
    designs whose later factors are small integrate every effect out.
    """
    explicit: list[str] = []
    while True:
        stats = BlockedStats.from_design(design, explicit)
        system = BlockedSystem(stats)
        if system.pattern.m <= dense_max:
            return tuple(explicit)
        dense = [f for f in stats.factors[1:] if f.group not in explicit
                 and f.first >= system.pattern.dense_start]  # fmt: skip
        if not dense:
            return tuple(explicit)
        explicit.append(max(dense, key=lambda f: f.n_levels * f.q).group)
