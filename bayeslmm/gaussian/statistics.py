"""Sufficient statistics of a Gaussian LMM, computed once from the design.

A Gaussian LMM depends on the data only through cross-products: ``X'X``, ``X'y``,
``y'y`` and, for the random effects, ``Z'Z``, ``Z'X`` and ``Z'y``. This module makes
them once, in the layout each factorisation (:mod:`bayeslmm.gaussian.factorisation`)
needs:

- :class:`GroupStats`: one grouping factor, so ``Z'Z`` is block diagonal with one
  q x q block per level;
- :class:`NestedStats`: two nested factors, per inner level and per outer level;
- :class:`CrossProducts`: any design, ``Z'Z`` kept sparse (the REML/ML fit).

Every later evaluation costs O(levels q^3), whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import ArgumentError
from ..spec.design import Design

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
            raise ArgumentError("per-group statistics need a single grouping factor")
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


def level_sums(codes: np.ndarray, n_levels: int, left: np.ndarray, right: np.ndarray):
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
            raise ArgumentError("nested statistics need two nested grouping factors")
        outer, inner = factors
        ZA, codes_a, GA, off_a = _factor_columns(design, outer)
        ZB, codes_b, GB, off_b = _factor_columns(design, inner)
        X, y = design.X, design.y
        parent = np.zeros(GB, dtype=int)
        parent[codes_b] = codes_a
        return cls(
            parent=parent,
            BB=level_sums(codes_b, GB, ZB, ZB),
            BA=level_sums(codes_b, GB, ZB, ZA),
            AA=level_sums(codes_a, GA, ZA, ZA),
            BX=level_sums(codes_b, GB, ZB, X),
            By=level_sums(codes_b, GB, ZB, y[:, None])[:, :, 0],
            AX=level_sums(codes_a, GA, ZA, X),
            Ay=level_sums(codes_a, GA, ZA, y[:, None])[:, :, 0],
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


def random_effects_matrix(design: Design) -> sp.csr_matrix:
    """Sparse Z (n x q): block k's columns in level-major order (level, term)."""
    n = design.n_obs
    rows, cols, vals = [], [], []
    offset = 0
    for block in design.blocks:
        q = block.n_terms
        col = offset + block.codes[:, None] * q + np.arange(q)[None, :]
        rows.append(np.repeat(np.arange(n), q))
        cols.append(col.ravel())
        vals.append(block.Z.ravel())
        offset += block.n_levels * q
    if not rows:
        return sp.csr_matrix((n, 0))
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, offset)
    )


@dataclass
class CrossProducts:
    """The data's sufficient statistics for a Gaussian LMM (``Z'Z`` kept sparse)."""

    ZtZ: sp.csc_matrix
    ZtX: np.ndarray
    Zty: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n: int
    p: int
    grouped: GroupStats | None = None  # per-level statistics, one grouping factor only

    @classmethod
    def from_design(cls, design: Design) -> CrossProducts:
        Z = random_effects_matrix(design)
        X, y = design.X, design.y
        grouped = GroupStats.from_design(design) if single_grouping_factor(design) else None
        return cls(
            grouped=grouped,
            ZtZ=(Z.T @ Z).tocsc(),
            ZtX=np.asarray(Z.T @ X),
            Zty=np.asarray(Z.T @ y),
            XtX=X.T @ X,
            Xty=X.T @ y,
            yty=float(y @ y),
            n=len(y),
            p=X.shape[1],
        )


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
        return cls(
            XtX=level_sums(codes, n_levels, X, X),
            Xty=level_sums(codes, n_levels, X, y[:, None])[:, :, 0],
            yty=level_sums(codes, n_levels, y[:, None], y[:, None])[:, 0, 0],
            counts=np.bincount(codes, minlength=n_levels),
        )


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


# --- any design: one node per level of every grouping factor -------------------------


@dataclass
class FactorNodes:
    """One grouping factor's random effects as nodes: one node per level.

    Attributes
    ----------
    group
        The grouping factor's name (``design.blocks[k].group``).
    n_levels, q
        Levels, and terms per level (all random blocks on this factor, block after block).
    blocks
        Indices into ``design.blocks`` of the blocks on this factor, in node-column order.
    first
        Index of the factor's first node; its levels follow in order.
    """

    group: str
    n_levels: int
    q: int
    blocks: list[int]
    first: int


def elimination_order(design: Design, explicit: Collection[str] = ()) -> list[str]:
    """Grouping factors by decreasing number of levels (ties: formula order), as
    MixedModels.jl orders its random-effects terms: the first factor's block-diagonal
    system is factored first and fill-in lands in the smaller later ones. Factors in
    ``explicit`` (sampled, not integrated out) come last, in the same order."""
    groups = list(dict.fromkeys(block.group for block in design.blocks))
    levels = {b.group: b.n_levels for b in design.blocks}
    return sorted(groups, key=lambda g: (g in explicit, -levels[g]))


@dataclass
class BlockedStats:
    """Sufficient statistics of any Gaussian LMM, by node (a level of a grouping factor).

    ``Z'Z`` is kept as its nonzero node blocks of the lower triangle: block ``k`` is
    ``Z_i'Z_j`` (``size[i] x size[j]``, row-major in ``pair_val[pair_ptr[k]:]``) for nodes
    ``pair_i[k] >= pair_j[k]``: one block per level of each factor, one per pair of levels
    of two factors that share a row (a sparse cross table). Scalar random effects are
    numbered node by node (``offset``); ``ZtX`` and ``Zty`` follow that numbering. The
    first ``n_marginal`` nodes belong to the factors integrated out; the rest (the factors
    named ``explicit`` in :meth:`from_design`) to factors whose effects are sampled.
    """

    factors: list[FactorNodes]
    node_factor: np.ndarray  # (N,)
    size: np.ndarray  # (N,) terms of each node
    offset: np.ndarray  # (N + 1,) first scalar effect of each node
    pair_i: np.ndarray  # (P,)
    pair_j: np.ndarray  # (P,)
    pair_ptr: np.ndarray  # (P + 1,)
    pair_val: np.ndarray
    ZtX: np.ndarray  # (Q, p)
    Zty: np.ndarray  # (Q,)
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n: int
    p: int
    n_marginal: int

    @property
    def n_nodes(self) -> int:
        return len(self.size)

    @property
    def n_effects(self) -> int:
        return int(self.offset[-1])

    @classmethod
    def from_design(cls, design: Design, explicit: Collection[str] = ()) -> BlockedStats:
        order = elimination_order(design, explicit)
        factors, columns, codes = [], [], []
        first = 0
        for group in order:
            idx = [k for k, b in enumerate(design.blocks) if b.group == group]
            blocks = [design.blocks[k] for k in idx]
            q = sum(b.n_terms for b in blocks)
            factors.append(FactorNodes(group, blocks[0].n_levels, q, idx, first))
            columns.append(np.hstack([b.Z for b in blocks]))
            codes.append(blocks[0].codes)
            first += blocks[0].n_levels
        node_factor = np.concatenate(
            [np.full(f.n_levels, k, dtype=np.int64) for k, f in enumerate(factors)]
        )
        size = np.array([factors[k].q for k in node_factor], dtype=np.int64)
        offset = np.concatenate([[0], np.cumsum(size)]).astype(np.int64)
        X, y = design.X, design.y
        n, p = X.shape
        pairs_i, pairs_j, values = [], [], []
        for a, fa in enumerate(factors):
            for b in range(a, len(factors)):
                fb = factors[b]
                # nodes of the later factor b are rows (i >= j): block Z_b' Z_a per level pair
                key = codes[b] * fa.n_levels + codes[a]
                uniq, inverse = np.unique(key, return_inverse=True)
                sums = level_sums(inverse.reshape(-1), len(uniq), columns[b], columns[a])
                pairs_i.append(fb.first + uniq // fa.n_levels)
                pairs_j.append(fa.first + uniq % fa.n_levels)
                values.append(sums.reshape(len(uniq), -1))
        widths = np.concatenate([np.full(len(v), v.shape[1]) for v in values]).astype(np.int64)
        unsorted = np.concatenate([v.ravel() for v in values])
        starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
        pair_i = np.concatenate(pairs_i).astype(np.int64)
        pair_j = np.concatenate(pairs_j).astype(np.int64)
        order_pairs = np.lexsort((pair_i, pair_j))  # column-major: by column node, then row
        pair_i, pair_j = pair_i[order_pairs], pair_j[order_pairs]
        widths = widths[order_pairs]
        pair_ptr = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        # gather every pair's block, in the new order, from its place in ``unsorted``
        gather = np.repeat(starts[order_pairs] - pair_ptr[:-1], widths) + np.arange(pair_ptr[-1])
        ZtX = np.empty((offset[-1], p))
        Zty = np.empty(offset[-1])
        for f, Z, code in zip(factors, columns, codes, strict=True):
            lo, hi = offset[f.first], offset[f.first + f.n_levels]
            ZtX[lo:hi] = level_sums(code, f.n_levels, Z, X).reshape(-1, p)
            Zty[lo:hi] = level_sums(code, f.n_levels, Z, y[:, None]).reshape(-1)
        return cls(
            factors=factors,
            node_factor=node_factor,
            size=size,
            offset=offset,
            pair_i=pair_i,
            pair_j=pair_j,
            pair_ptr=pair_ptr,
            pair_val=unsorted[gather],
            ZtX=ZtX,
            Zty=Zty,
            XtX=X.T @ X,
            Xty=X.T @ y,
            yty=float(y @ y),
            n=n,
            p=p,
            n_marginal=sum(f.n_levels for f in factors if f.group not in explicit),
        )


def node_groups(design: Design, stats: BlockedStats, group: str) -> np.ndarray | None:
    """The level of ``group`` every node belongs to, or None if some node's rows span
    several of its levels (crossed): only then are the groups' data independent, with a
    block-diagonal system, as leave-one-group-out needs."""
    target = next(b for b in design.blocks if b.group == group).codes
    out = np.empty(stats.n_nodes, dtype=np.int64)
    for factor in stats.factors:
        codes = design.blocks[factor.blocks[0]].codes
        pairs = np.unique(np.stack([codes, target], axis=1), axis=0)
        if len(pairs) != factor.n_levels:
            return None
        out[factor.first + pairs[:, 0]] = pairs[:, 1]
    return out
