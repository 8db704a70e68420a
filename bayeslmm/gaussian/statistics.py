"""Sufficient statistics of a Gaussian LMM, computed once from the design.

A Gaussian LMM depends on the data only through cross-products: ``X'X``, ``X'y``,
``y'y`` and, for the random effects, ``Z'Z``, ``Z'X`` and ``Z'y``. They are sums over
rows, grouped by level (or pair of levels): :class:`DesignSums` defines them once, for
rows in memory and for the partitions of a Dask DataFrame alike (each partition's sums,
then added up, :meth:`~bayeslmm.spec.design.Design.reduce`), accumulated so that the
result does not depend on the order of the rows (:mod:`bayeslmm.gaussian.summation`).
Every layout below is made from those sums, in the form each factorisation needs:

- :class:`BlockedStats`: any design, one node per level of every grouping factor
  (:mod:`bayeslmm.gaussian.blocked`);
- :class:`GroupStats`: one grouping factor, so ``Z'Z`` is block diagonal with one
  q x q block per level;
- :class:`NestedStats`: two nested factors, per inner level and per outer level;
- :class:`CrossProducts`: any design, ``Z'Z`` kept sparse (the REML/ML fit).

Every later evaluation costs O(levels q^3), whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.special import gammainc

from ..errors import ArgumentError
from ..spec.design import Design, Reduction, Rows
from .summation import KeyedSums, PowerSums

UNROLL_MAX = 8  # terms per level handled by the unrolled factorisation


def single_grouping_factor(design: Design) -> bool:
    """Do all random terms share one grouping factor (so Z'Z is block diagonal)?"""
    groups = {block.group for block in design.blocks}
    q = sum(block.n_terms for block in design.blocks)
    return len(groups) == 1 and q <= UNROLL_MAX


# --- sums over rows: one definition for rows in memory and for a Dask DataFrame's pieces --


def _combine_optional(a, b):
    if a is None:
        return b
    return a.combine(b)


@dataclass(frozen=True)
class SumsLayout:
    """The grouping factors the sums are keyed by, in order of appearance in the formula:
    per factor, its blocks (indices into ``design.blocks``), levels and terms per level."""

    groups: tuple[str, ...]
    blocks: tuple[tuple[int, ...], ...]
    n_levels: tuple[int, ...]
    q: tuple[int, ...]
    p: int

    @classmethod
    def of(cls, design: Design) -> SumsLayout:
        groups = tuple(dict.fromkeys(b.group for b in design.blocks))
        blocks = tuple(tuple(k for k, b in enumerate(design.blocks) if b.group == g)
                       for g in groups)  # fmt: skip
        return cls(groups, blocks, tuple(design.blocks[ks[0]].n_levels for ks in blocks),
                   tuple(sum(design.blocks[k].n_terms for k in ks) for ks in blocks),
                   design.n_fixed)  # fmt: skip

    def columns(self, rows: Rows, f: int) -> np.ndarray:
        """Factor f's random-effect columns (its blocks side by side)."""
        return np.hstack([rows.Z[k] for k in self.blocks[f]])

    def codes(self, rows: Rows, f: int) -> np.ndarray:
        return rows.codes[self.blocks[f][0]]


@dataclass
class DesignSums:
    """Every sum a Gaussian LMM needs from its rows, additive over pieces of the rows and the
    same in any order (:mod:`bayeslmm.gaussian.summation`).

    ``total`` holds ``[X | y]'[X | y]``; ``factors[f]``, per level of factor f
    (:class:`SumsLayout` order), ``Z_f'[Z_f | X | y]`` (q x (q + p + 1), row-major) and the
    level's rows; ``cross[(a, b)]`` (a < b), per pair of levels of factors a and b that share
    a row (key ``level_b * levels_a + level_a``), ``Z_b'Z_a`` (q_b x q_a, row-major);
    ``moments`` are the power sums of the columns ``[y | X | Z of every block]`` (for
    autoscaled priors and summaries).
    """

    n: int
    total: KeyedSums
    factors: list[KeyedSums]
    cross: dict[tuple[int, int], KeyedSums]
    moments: PowerSums | None

    @staticmethod
    def chunk(layout: SumsLayout, rows: Rows) -> DesignSums:
        """The sums of some rows."""
        X, y = rows.X, rows.y
        Xy = np.hstack([X, y[:, None]])
        factors, cross = [], {}
        columns = [layout.columns(rows, f) for f in range(len(layout.groups))]
        codes = [layout.codes(rows, f) for f in range(len(layout.groups))]
        for f, (Z, code) in enumerate(zip(columns, codes, strict=True)):
            factors.append(KeyedSums.products(code, Z, np.hstack([Z, Xy]), layout.n_levels[f]))
            for a in range(f):
                key = code * layout.n_levels[a] + codes[a]
                cross[(a, f)] = KeyedSums.products(key, Z, columns[a])
        total = KeyedSums.products(np.zeros(len(y), dtype=np.int64), Xy, Xy, 1)
        every = np.hstack([y[:, None], X, *rows.Z])
        return DesignSums(len(y), total, factors, cross, PowerSums.of(every))

    def combine(self, other: DesignSums) -> DesignSums:
        return DesignSums(
            self.n + other.n, self.total.combine(other.total),
            [a.combine(b) for a, b in zip(self.factors, other.factors, strict=True)],
            {k: v.combine(other.cross[k]) for k, v in self.cross.items()},
            _combine_optional(self.moments, other.moments),
        )  # fmt: skip

    def _total(self) -> np.ndarray:
        p1 = int(round(np.sqrt(self.total.hi.shape[1])))
        values = self.total.values
        return values[0].reshape(p1, p1) if len(values) else np.zeros((p1, p1))

    @property
    def XtX(self) -> np.ndarray:
        return self._total()[:-1, :-1]

    @property
    def Xty(self) -> np.ndarray:
        return self._total()[:-1, -1]

    @property
    def yty(self) -> float:
        return float(self._total()[-1, -1])

    def within(self, layout: SumsLayout, f: int) -> tuple[np.ndarray, ...]:
        """Per level of factor f: ``Z'Z`` (G, q, q), ``Z'X`` (G, q, p), ``Z'y`` (G, q) and rows
        (G,)."""
        G, q, p = layout.n_levels[f], layout.q[f], layout.p
        try:
            values, counts = self.factors[f].dense(G, f"grouping factor {layout.groups[f]!r}")
        except ValueError as err:
            raise ArgumentError(str(err)) from err
        values = values.reshape(G, q, q + p + 1)
        return values[:, :, :q], values[:, :, q : q + p], values[:, :, q + p], counts

    def pairs(self, layout: SumsLayout, a: int, b: int) -> tuple[np.ndarray, ...]:
        """Levels of factor b and of factor a that share rows, and ``Z_b'Z_a`` of each pair
        ((pairs, q_b, q_a)), whichever factor came first in the formula."""
        Ga = layout.n_levels[a]
        if a < b:
            sums = self.cross[(a, b)]
            lb, la = sums.keys // Ga, sums.keys % Ga
            return lb, la, sums.values.reshape(-1, layout.q[b], layout.q[a])
        sums = self.cross[(b, a)]
        Gb = layout.n_levels[b]
        la, lb = sums.keys // Gb, sums.keys % Gb
        return lb, la, sums.values.reshape(-1, layout.q[a], layout.q[b]).transpose(0, 2, 1)


SUMS = "sums"


def design_sums(design: Design) -> tuple[SumsLayout, DesignSums]:
    """The design's :class:`DesignSums` (computed once; for a Dask DataFrame in the pass that
    checks its rows, see :data:`SUMMARIES`)."""
    layout = SumsLayout.of(design)
    return layout, design.reduce(SUMS, _sums_reduction(design))


def _sums_reduction(design: Design) -> Reduction:
    return Reduction(partial(DesignSums.chunk, SumsLayout.of(design)), DesignSums.combine)


#: What :func:`~bayeslmm.spec.design.build_design` should compute with the design for the
#: fits: its sufficient statistics.
SUMMARIES = {SUMS: _sums_reduction}


def response_summary(design: Design) -> tuple[int, float, float, float, float]:
    """Rows, mean, standard deviation (divisor n - 1), minimum and maximum of the response."""
    m = design_sums(design)[1].moments
    sd = float(np.sqrt(m.m2[0] / (m.n - 1))) if m.n > 1 else float("nan")
    return m.n, float(m.mean[0]), sd, float(m.low[0]), float(m.high[0])


def same_response(a: Design, b: Design) -> bool:
    """Were two designs fitted to the same response values, row for row? Rows in memory are
    compared; a Dask DataFrame's design, whose rows stay put, by the response's rows, mean,
    sum of squared deviations, minimum and maximum (equal to rounding)."""
    if a.response != b.response or a.n_obs != b.n_obs:
        return False
    if a.rows_in_memory and b.rows_in_memory:
        return bool(np.array_equal(a.y, b.y))
    ma, mb = design_sums(a)[1].moments, design_sums(b)[1].moments
    first = np.array([ma.mean[0], ma.m2[0], ma.low[0], ma.high[0]])
    second = np.array([mb.mean[0], mb.m2[0], mb.low[0], mb.high[0]])
    return bool(np.allclose(first, second, rtol=1e-12, atol=0.0))


def column_scales(design: Design) -> tuple[PowerSums, list[slice]]:
    """Power sums of the columns ``[y | X | Z of every block]``, and each block's slice."""
    m = design_sums(design)[1].moments
    start, where = 1 + design.n_fixed, []
    for block in design.blocks:
        where.append(slice(start, start + block.n_terms))
        start += block.n_terms
    return m, where


def level_counts(design: Design, group: str) -> np.ndarray:
    """Rows per level of a grouping factor."""
    layout, sums = design_sums(design)
    return sums.within(layout, layout.groups.index(group))[3]


def level_pairs(design: Design, group_b: str, group_a: str) -> np.ndarray:
    """The distinct (level of b, level of a) pairs of the rows, sorted: (pairs, 2)."""
    layout, sums = design_sums(design)
    b, a = layout.groups.index(group_b), layout.groups.index(group_a)
    if a == b:
        levels = np.arange(layout.n_levels[a])
        return np.stack([levels, levels], axis=1)
    lb, la, _ = sums.pairs(layout, a, b)
    out = np.stack([lb, la], axis=1)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


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
        layout, sums = design_sums(design)
        ZtZ, ZtX, Zty, counts = sums.within(layout, 0)
        offsets = np.cumsum([0] + [b.n_terms for b in design.blocks[:-1]]).tolist()
        return cls(ZtZ=ZtZ, ZtX=ZtX, Zty=Zty, counts=counts, XtX=sums.XtX, Xty=sums.Xty,
                   yty=sums.yty, n=sums.n, p=layout.p, offsets=offsets)  # fmt: skip

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
        pairs = level_pairs(design, inner, outer)
        if len(pairs) == i[0].n_levels and i[0].n_levels > o[0].n_levels:
            return outer, inner
    return None


def _block_offsets(design: Design, group: str) -> list[int]:
    blocks = [b for b in design.blocks if b.group == group]
    return np.cumsum([0] + [b.n_terms for b in blocks[:-1]]).tolist()


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
        layout, sums = design_sums(design)
        a, b = layout.groups.index(outer), layout.groups.index(inner)
        AA, AX, Ay, _ = sums.within(layout, a)
        BB, BX, By, _ = sums.within(layout, b)
        inner_levels, parent, BA = sums.pairs(layout, a, b)  # one outer level per inner one
        order = np.argsort(inner_levels)
        return cls(parent=parent[order].astype(int), BB=BB, BA=BA[order], AA=AA, BX=BX, By=By,
                   AX=AX, Ay=Ay, XtX=sums.XtX, Xty=sums.Xty, yty=sums.yty, n=sums.n,
                   p=layout.p, outer=outer, inner=inner,
                   outer_offsets=_block_offsets(design, outer),
                   inner_offsets=_block_offsets(design, inner))  # fmt: skip

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
    #: the same statistics by node, which the blocked factorisation reads, and ``perm``:
    #: blocked index -> this numbering
    stats: BlockedStats | None = None
    perm: np.ndarray | None = None
    #: the blocked system of ``stats`` (:func:`bayeslmm.gaussian.profiled.blocked_system`)
    system: Any = None

    @classmethod
    def from_design(cls, design: Design) -> CrossProducts:
        return cls.from_stats(BlockedStats.from_design(design), design)

    @classmethod
    def from_stats(cls, stats: BlockedStats, design: Design) -> CrossProducts:
        """The blocked statistics renumbered as lme4 numbers random effects: block after
        block (formula order), level after level, term after term."""
        Q = stats.n_effects
        starts = np.cumsum([0] + [b.n_levels * b.n_terms for b in design.blocks])
        perm = np.empty(Q, dtype=np.int64)  # blocked index -> lme4's index
        for factor in stats.factors:
            column = 0
            levels = np.arange(factor.n_levels)[:, None]
            for k in factor.blocks:
                q = design.blocks[k].n_terms
                blocked = stats.offset[factor.first + levels] + column + np.arange(q)
                perm[blocked.ravel()] = (starts[k] + levels * q + np.arange(q)).ravel()
                column += q
        pair = np.repeat(np.arange(len(stats.pair_i)), np.diff(stats.pair_ptr))
        local = np.arange(len(stats.pair_val)) - stats.pair_ptr[pair]
        width = stats.size[stats.pair_j[pair]]
        rows = stats.offset[stats.pair_i[pair]] + local // width
        cols = stats.offset[stats.pair_j[pair]] + local % width
        below = stats.pair_i[pair] != stats.pair_j[pair]  # stored once: add the upper block
        ZtZ = sp.csc_matrix(
            (np.concatenate([stats.pair_val, stats.pair_val[below]]),
             (perm[np.concatenate([rows, cols[below]])],
              perm[np.concatenate([cols, rows[below]])])), shape=(Q, Q),
        )  # fmt: skip
        ZtX, Zty = np.empty_like(stats.ZtX), np.empty_like(stats.Zty)
        ZtX[perm], Zty[perm] = stats.ZtX, stats.Zty
        grouped = GroupStats.from_design(design) if single_grouping_factor(design) else None
        return cls(grouped=grouped, ZtZ=ZtZ, ZtX=ZtX, Zty=Zty, XtX=stats.XtX, Xty=stats.Xty,
                   yty=stats.yty, n=stats.n, p=stats.p, stats=stats, perm=perm)  # fmt: skip


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
        sums = _level_moments_chunk(0, Rows(X, y, [], [codes]))
        return cls.from_sums(sums, n_levels, X.shape[1], "levels")

    @classmethod
    def from_sums(cls, sums: KeyedSums, n_levels: int, p: int, what: str) -> LevelMoments:
        try:
            values, counts = sums.dense(n_levels, what)
        except ValueError as err:
            raise ArgumentError(str(err)) from err
        values = values.reshape(n_levels, p + 1, p + 1)
        return cls(XtX=values[:, :p, :p], Xty=values[:, :p, p], yty=values[:, p, p],
                   counts=counts)  # fmt: skip


def _level_moments_chunk(block: int, rows: Rows) -> KeyedSums:
    Xy = np.hstack([rows.X, rows.y[:, None]])
    return KeyedSums.products(rows.codes[block], Xy, Xy)


def level_moments(design: Design, group: str) -> LevelMoments:
    """:class:`LevelMoments` of a grouping factor's levels (one more pass over the rows of a
    Dask DataFrame, kept for the next call)."""
    k = next(i for i, b in enumerate(design.blocks) if b.group == group)
    block, p = design.blocks[k], design.n_fixed
    reduction = Reduction(partial(_level_moments_chunk, k), KeyedSums.combine)
    sums = design.reduce(f"level_moments:{group}", reduction)
    return LevelMoments.from_sums(sums, block.n_levels, p, f"grouping factor {group!r}")


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


class LevelSpread(NamedTuple):
    """Per term of a grouping factor, from :meth:`BlockedStats.level_spread`."""

    spread: np.ndarray  # the effects' variance across levels (DerSimonian-Laird)
    noise: np.ndarray  # median sampling variance of one level's own estimate
    levels: int  # levels with estimable effects

    @property
    def zero_probability(self) -> np.ndarray:
        """How plausible a spread of zero is: the chance that the levels' estimates vary
        no more than their noise explains, ``P(chi2_{L-1} / (L-1) <= noise / (spread +
        noise))`` (the estimates' variance is ``spread + noise`` times a scaled chi-square
        with ``L - 1`` degrees of freedom, ``L`` the levels). About 0.5 where the spread is
        estimated at zero; vanishing where it is large against the noise, however few
        the levels."""
        dof = self.levels - 1
        ratio = self.noise / (np.maximum(self.spread, 0.0) + self.noise)
        return gammainc(dof / 2.0, ratio * dof / 2.0)


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

    def _gram(self, index: int) -> np.ndarray:
        """``Z_l'Z_l`` of every level of factor ``index``: (levels, q, q)."""
        factor = self.factors[index]
        q = factor.q
        diagonal = np.flatnonzero((self.pair_i == self.pair_j)
                                  & (self.node_factor[self.pair_i] == index))  # fmt: skip
        gram = np.zeros((factor.n_levels, q, q))
        starts = self.pair_ptr[diagonal]
        gram[self.pair_i[diagonal] - factor.first] = self.pair_val[
            starts[:, None] + np.arange(q * q)].reshape(-1, q, q)  # fmt: skip
        return gram

    def level_spread(self, index: int, dispersion: float | None = None) -> LevelSpread | None:
        """How well the data pin each level's effects down, per term of factor ``index``,
        from a two-stage fit (no row needed): each level's least-squares effects ``b_l`` on
        the population least-squares residuals, with sampling variances ``v_l`` (pooled
        within-level residual variance times ``(Z_l'Z_l)^-1``). Returns the effects'
        variance by DerSimonian & Laird's moment estimator (levels weighted by ``1 / v_l``,
        so a barely estimable level counts little), the median ``v_l`` and the number of
        levels used. None where fewer than three levels have estimable effects.
        ``dispersion``: the residual variance where it is known (1 for the IRLS-weighted
        working response of a binomial or Poisson GLM) instead of its estimate.
        """
        gram = self._gram(index)
        n_levels, q = gram.shape[0], gram.shape[1]
        beta = np.linalg.lstsq(self.XtX, self.Xty, rcond=None)[0]
        rss = self.yty - 2.0 * beta @ self.Xty + beta @ self.XtX @ beta
        factor = self.factors[index]
        effects = slice(self.offset[factor.first], self.offset[factor.first + n_levels])
        zr = (self.Zty[effects] - self.ZtX[effects] @ beta).reshape(n_levels, q)
        # estimable levels, judged on the correlation scale (a covariate's units do not count)
        scale = np.sqrt(np.maximum(np.diagonal(gram, axis1=1, axis2=2), 0.0))
        present = (scale > 0).all(axis=1)
        unit = gram[present] / (scale[present, :, None] * scale[present, None, :])
        usable = np.zeros(n_levels, dtype=bool)
        usable[present] = np.linalg.eigvalsh(unit)[:, 0] > 1e-8
        dof = self.n - self.p - q * int(usable.sum())
        if usable.sum() < 3 or dof < 1 and dispersion is None:
            return None
        inverse = np.linalg.inv(gram[usable])
        b = np.einsum("lab,lb->la", inverse, zr[usable])
        within = max(rss - np.einsum("la,la->", b, zr[usable]), 0.0) / dof
        if dispersion is not None:
            within = dispersion
        if not within > 0.0:
            return None
        v = within * np.diagonal(inverse, axis1=1, axis2=2)  # (levels, q)
        w = 1.0 / v
        mean = (w * b).sum(axis=0) / w.sum(axis=0)
        heterogeneity = (w * (b - mean) ** 2).sum(axis=0)
        denominator = w.sum(axis=0) - (w**2).sum(axis=0) / w.sum(axis=0)
        spread = (heterogeneity - (len(b) - 1)) / denominator
        return LevelSpread(spread, np.median(v, axis=0), len(b))

    def levels_holding_sampled(self) -> int:
        """How many levels of the factors integrated out hold two or more levels of a
        sampled factor that share rows with no other level of that factor (sampled levels
        nested in it, InstEval's instructors in departments): each such level's effect
        and the mean of its sampled levels' effects move together, a direction only their
        priors hold."""
        i, j = self.pair_i, self.pair_j
        cross = (i >= self.n_marginal) & (j < self.n_marginal)
        if not cross.any():
            return 0
        i, j = i[cross], j[cross]
        # for each sampled level, the levels it meets of each integrated factor
        key = np.stack([i, self.node_factor[j]], axis=1)
        _, where, met = np.unique(key, axis=0, return_inverse=True, return_counts=True)
        alone = met[where.ravel()] == 1  # the only level of its factor that it meets
        _, counts = np.unique(j[alone], return_counts=True)
        return int((counts >= 2).sum())

    @classmethod
    def from_design(cls, design: Design, explicit: Collection[str] = ()) -> BlockedStats:
        layout, sums = design_sums(design)
        order = elimination_order(design, explicit)
        factors, where, first = [], [], 0
        for group in order:
            f = layout.groups.index(group)
            factors.append(FactorNodes(group, layout.n_levels[f], layout.q[f],
                                       list(layout.blocks[f]), first))  # fmt: skip
            where.append(f)
            first += layout.n_levels[f]
        node_factor = np.concatenate(
            [np.full(f.n_levels, k, dtype=np.int64) for k, f in enumerate(factors)] or [[]]
        ).astype(np.int64)
        size = np.array([factors[k].q for k in node_factor], dtype=np.int64)
        offset = np.concatenate([[0], np.cumsum(size)]).astype(np.int64)
        p = layout.p
        within = [sums.within(layout, f) for f in where]
        pairs_i, pairs_j, values = [], [], []
        for a, fa in enumerate(factors):
            for b in range(a, len(factors)):
                fb = factors[b]
                # nodes of the later factor b are rows (i >= j): block Z_b' Z_a per level pair
                if a == b:
                    levels = np.arange(fa.n_levels)
                    lb = la = levels
                    block = within[a][0]
                else:
                    lb, la, block = sums.pairs(layout, where[a], where[b])
                pairs_i.append(fb.first + lb)
                pairs_j.append(fa.first + la)
                values.append(block.reshape(len(lb), -1))
        if not values:
            values, pairs_i, pairs_j = [np.zeros((0, 0))], [np.zeros(0)], [np.zeros(0)]
        widths = np.concatenate([np.full(len(v), v.shape[1]) for v in values]).astype(np.int64)
        unsorted = np.concatenate([v.ravel() for v in values])
        starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
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
        for f, (_, zx, zy, _) in zip(factors, within, strict=True):
            lo, hi = offset[f.first], offset[f.first + f.n_levels]
            ZtX[lo:hi] = zx.reshape(hi - lo, p)
            Zty[lo:hi] = zy.reshape(hi - lo)
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
            XtX=sums.XtX,
            Xty=sums.Xty,
            yty=sums.yty,
            n=sums.n,
            p=p,
            n_marginal=sum(f.n_levels for f in factors if f.group not in explicit),
        )


def node_groups(design: Design, stats: BlockedStats, group: str) -> np.ndarray | None:
    """The level of ``group`` every node belongs to, or None if some node's rows span
    several of its levels (crossed): only then are the groups' data independent, with a
    block-diagonal system, as leave-one-group-out needs. Read off the level pairs that share
    rows (the nonzero blocks of Z'Z), so no row is needed."""
    out = np.empty(stats.n_nodes, dtype=np.int64)
    for factor in stats.factors:
        pairs = level_pairs(design, factor.group, group)
        if len(pairs) != factor.n_levels:
            return None
        out[factor.first + pairs[:, 0]] = pairs[:, 1]
    return out
