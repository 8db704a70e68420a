"""The Gaussian LMM with correlated residuals, from weighted sufficient statistics.

With ``Var(e) = sigma^2 R(phi)`` (``R`` block diagonal over the residual groups,
:mod:`bayeslmm.spec.residual`), the model is the ordinary one with every cross-product
replaced by its ``R^-1``-weighted version (``Z'R^-1 Z``, ``Z'R^-1 X``, ``Z'R^-1 y``,
``X'R^-1 X``, ``X'R^-1 y``, ``y'R^-1 y``) and the log-likelihood gains ``-log|R| / 2``.
Both structures have a closed-form precision,

    R^-1 = sum_k c_k(phi) M_k'M_k,

with fixed row-combination matrices ``M_k`` (a *component*: each of its rows is a sum of
rows of one residual group) and scalar coefficients ``c_k``:

- AR(1) with ``cor(e_i, e_j) = phi^|t_i - t_j|``: the rows of a group sorted by time are
  a Markov chain, ``e_1 = z_1``, ``e_k = a e_(k-1) + sqrt(1 - a^2) z_k`` with ``a =
  phi^gap``, so ``e'R^-1 e = sum_i e_i^2 + sum_pairs [a^2 (e_l^2 + e_r^2) - 2 a e_l e_r]
  / (1 - a^2)`` over the pairs of time-adjacent rows, and ``log|R| = sum_pairs log(1 -
  a^2)``. Per distinct gap ``d`` two components: ``E_d`` (both rows of every pair) and
  ``P_d`` (each pair's sum), ``R^-1 = I + sum_d [a/(1 - a) E_d'E_d - a/(1 - a^2)
  P_d'P_d]``. Equally spaced times (one gap, the tridiagonal ``R^-1``) give three
  components; gaps add two per distinct gap.
- compound symmetry, ``R_g = (1 - rho) I + rho J``: ``R_g^-1 = (I - c_m J) / (1 - rho)``
  with ``c_m = rho / (1 + (m - 1) rho)`` for a group of ``m`` rows (Sherman-Morrison),
  ``log|R_g| = (m - 1) log(1 - rho) + log(1 + (m - 1) rho)``; one component of group sums
  per distinct group size.

Every statistic of a component is an ordinary statistic of a *pseudo-design* whose rows
are ``M_k`` times the design's rows, made once by the same grouped sums as the unweighted
ones (:mod:`bayeslmm.gaussian.statistics`). Where each residual group lies within one
level of every grouping factor (nlme's ``lme`` requires it), a pseudo-row keeps its rows'
levels, and the weighted statistics at any ``phi`` are ``sum_k c_k(phi) S_k``: same
nonzero pattern, O(components x levels) per evaluation, whatever the number of rows. The
blocked factorisation (:mod:`bayeslmm.gaussian.blocked`) then runs unchanged on them.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..spec.design import Design
from ..spec.residual import ResidualLayout
from .blocked import BlockedSystem
from .profiled import BlockedProfile, ProfiledFit, ThetaLayout, profiled
from .statistics import (
    BlockedStats,
    CrossProducts,
    GroupStats,
    LevelMoments,
    NestedStats,
)
from .summation import KeyedSums


def _selection(rows: np.ndarray, n: int, sums: np.ndarray | None = None) -> sp.csr_matrix:
    """Rows of ``M``: ``M[i, rows[i]] = 1`` (or, with ``sums``, row ``sums[i]`` of M)."""
    target = np.arange(len(rows)) if sums is None else sums
    shape = (len(rows) if sums is None else int(sums.max()) + 1, n)
    return sp.csr_matrix((np.ones(len(rows)), (target, rows)), shape=shape)


@dataclass
class ResidualWeights:
    """``R^-1 = sum_k c_k(phi) M_k'M_k`` and ``log|R|`` of a residual layout.

    Attributes
    ----------
    layout
        The structure on the design's rows.
    matrices
        The components' row-combination matrices ``M_k`` (rows of the pseudo-design x n).
    steps
        AR(1): the distinct gaps ``d``; compound symmetry: the distinct group sizes ``m``.
    counts
        AR(1): pairs per gap; compound symmetry: groups per size.
    """

    layout: ResidualLayout
    matrices: list[sp.csr_matrix]
    steps: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_layout(cls, layout: ResidualLayout) -> ResidualWeights:
        n = len(layout.codes)
        eye = sp.identity(n, format="csr")
        if layout.is_ar1:
            steps, counts = np.unique(layout.gap, return_counts=True)
            ends, sums = [], []
            for d in steps:
                sel = layout.gap == d
                prev, nxt = layout.prev[sel], layout.next[sel]
                ends.append(_selection(np.concatenate([prev, nxt]), n))
                pair = np.arange(len(prev))
                sums.append(_selection(np.concatenate([prev, nxt]), n,
                                       np.concatenate([pair, pair])))  # fmt: skip
            return cls(layout, [eye, *ends, *sums], steps, counts)
        sizes = layout.sizes
        steps, counts = np.unique(sizes[sizes > 0], return_counts=True)
        matrices = [eye]
        for m in steps:
            groups = np.flatnonzero(sizes == m)
            rank = np.full(len(sizes), -1)
            rank[groups] = np.arange(len(groups))
            rows = np.flatnonzero(rank[layout.codes] >= 0)
            matrices.append(_selection(rows, n, rank[layout.codes[rows]]))
        return cls(layout, matrices, steps, counts)

    @property
    def n_components(self) -> int:
        return len(self.matrices)

    def _powers(self, phi: Any, xp: Any) -> list[Any]:
        """``phi^d`` for every distinct gap (integer powers: defined for phi < 0, and with
        their derivative at 0, in numpy, PyTensor and JAX alike)."""
        return [phi ** int(d) for d in self.steps]

    def coefficients(self, phi: Any, xp: Any = np) -> Any:
        """The ``c_k(phi)`` of every component, (K,) (``xp``: numpy or pytensor.tensor)."""
        if self.layout.is_ar1:
            a = self._powers(phi, xp)
            ends = [x / (1.0 - x) for x in a]
            sums = [-x / (1.0 - x * x) for x in a]
            return xp.stack([phi * 0.0 + 1.0, *ends, *sums])
        scale = 1.0 / (1.0 - phi)
        parts = [-scale * phi / (1.0 + (float(m) - 1.0) * phi) for m in self.steps]
        return xp.stack([scale, *parts])

    def logdet(self, phi: Any, xp: Any = np) -> Any:
        """``log|R(phi)|`` (a scalar; ``xp``: numpy or pytensor.tensor)."""
        if self.layout.is_ar1:
            a = self._powers(phi, xp)
            return sum(float(c) * xp.log1p(-x * x) for c, x in zip(self.counts, a, strict=True))
        out = 0.0
        for m, c in zip(self.steps, self.counts, strict=True):
            out = out + float(c) * ((float(m) - 1.0) * xp.log1p(-phi)
                                    + xp.log1p((float(m) - 1.0) * phi))  # fmt: skip
        return out

    def group_logdet(self, phi: float) -> np.ndarray:
        """``log|R_g(phi)|`` of every residual group (n_groups,)."""
        lay = self.layout
        G = lay.n_groups
        if lay.is_ar1:
            a = float(phi) ** lay.gap
            return np.bincount(lay.codes[lay.prev], np.log1p(-a * a), minlength=G)
        m = lay.sizes.astype(float)
        return (m - 1.0) * np.log1p(-phi) + np.log1p((m - 1.0) * phi)

    def precision(self, phi: float) -> sp.csr_matrix:
        """``R(phi)^-1`` as a sparse n x n matrix (for checks and row-level formulas)."""
        coef = self.coefficients(float(phi))
        return sum(c * (M.T @ M) for c, M in zip(coef, self.matrices, strict=True)).tocsr()

    def correlation(self, phi: float) -> np.ndarray:
        """The dense ``R(phi)`` (n x n; for tests on small data)."""
        lay = self.layout
        same = lay.codes[:, None] == lay.codes[None, :]
        if lay.is_ar1:
            lag = np.abs(lay.times[:, None] - lay.times[None, :])
            return np.where(same, float(phi) ** lag, 0.0)
        return np.where(same, phi, 0.0) + (1.0 - phi) * np.eye(len(lay.codes))

    def in_bounds(self, phi: float) -> bool:
        return self.layout.lower < phi < self.layout.upper


def level_sums(codes: np.ndarray, n_levels: int, left: np.ndarray, right: np.ndarray):
    """Per level, sum over its rows of ``left_r right_r'`` ((G, a, b) from (n, a), (n, b));
    the rows are pseudo-rows in memory (weighted by ``R(phi)^-1``'s components), summed as
    every statistic is (:class:`~bayeslmm.gaussian.summation.KeyedSums`)."""
    sums = KeyedSums.products(codes, left, right, n_levels)
    values, _ = sums.dense(n_levels, "residual pseudo-rows")
    return values.reshape(n_levels, left.shape[1], right.shape[1])


def pseudo_design(design: Design, M: sp.csr_matrix) -> Design:
    """The design whose rows are ``M`` times the rows of ``design``; each pseudo-row keeps
    the levels of its first row (the residual groups are nested in every grouping factor)."""
    first = M.indices[M.indptr[:-1]]
    blocks = [dataclasses.replace(b, Z=np.asarray(M @ b.Z), codes=b.codes[first])
              for b in design.blocks]  # fmt: skip
    return dataclasses.replace(design, X=np.asarray(M @ design.X), y=np.asarray(M @ design.y),
                               blocks=blocks, residual=None)  # fmt: skip


def _combine(values: np.ndarray, coef: Any, xp: Any) -> Any:
    """``sum_k coef_k values_k`` over the first axis."""
    if xp is np:
        return np.tensordot(coef, values, axes=1)
    return xp.tensordot(coef, xp.as_tensor(values), axes=1)


@dataclass
class StackedStats:
    """Per-component values of a statistics object's linear fields, stacked on a first
    axis; :meth:`at` combines them into the weighted statistics (other fields: the
    template's)."""

    template: Any
    fields: dict[str, np.ndarray]

    @classmethod
    def from_parts(cls, template: Any, parts: list[Any], names: list[str]) -> StackedStats:
        fields = {n: np.stack([np.asarray(getattr(p, n), dtype=float) for p in parts])
                  for n in names}  # fmt: skip
        return cls(template, fields)

    def values(self, coef: Any, xp: Any = np) -> dict[str, Any]:
        out = {n: _combine(v, coef, xp) for n, v in self.fields.items()}
        if xp is np and "yty" in out and np.ndim(out["yty"]) == 0:
            out["yty"] = float(out["yty"])
        return out

    def at(self, coef: Any, xp: Any = np) -> Any:
        return dataclasses.replace(self.template, **self.values(coef, xp))


_PLAIN = ["XtX", "Xty", "yty"]
GROUP_FIELDS = ["ZtZ", "ZtX", "Zty", *_PLAIN]
NESTED_FIELDS = ["BB", "BA", "AA", "BX", "By", "AX", "Ay", *_PLAIN]
BLOCKED_FIELDS = ["pair_val", "ZtX", "Zty", *_PLAIN]
MOMENT_FIELDS = ["XtX", "Xty", "yty"]


def _nested_part(part: Design, template: NestedStats) -> NestedStats:
    """:class:`NestedStats` of a pseudo-design with the template's factors (some levels may
    have no pseudo-row)."""

    def columns(group: str) -> tuple[np.ndarray, np.ndarray, int]:
        blocks = [b for b in part.blocks if b.group == group]
        return np.hstack([b.Z for b in blocks]), blocks[0].codes, blocks[0].n_levels

    ZA, ca, GA = columns(template.outer)
    ZB, cb, GB = columns(template.inner)
    X, y = part.X, part.y[:, None]
    return dataclasses.replace(
        template, BB=level_sums(cb, GB, ZB, ZB), BA=level_sums(cb, GB, ZB, ZA),
        AA=level_sums(ca, GA, ZA, ZA), BX=level_sums(cb, GB, ZB, X),
        By=level_sums(cb, GB, ZB, y)[:, :, 0], AX=level_sums(ca, GA, ZA, X),
        Ay=level_sums(ca, GA, ZA, y)[:, :, 0], XtX=part.X.T @ part.X,
        Xty=part.X.T @ part.y, yty=float(part.y @ part.y),
    )  # fmt: skip


def _aligned_pairs(template: BlockedStats, part: BlockedStats) -> np.ndarray:
    """``part``'s ``Z'Z`` node blocks in the storage of ``template``'s (zero elsewhere)."""
    N = template.n_nodes
    tkey = template.pair_j * N + template.pair_i  # sorted: by column node, then row
    pkey = part.pair_j * N + part.pair_i
    pos = np.searchsorted(tkey, pkey)
    if np.any(pos >= len(tkey)) or np.any(tkey[np.minimum(pos, len(tkey) - 1)] != pkey):
        raise ValueError("a weighted statistic has a node block the design lacks: the residual "
                         "groups are not nested in the grouping factors")  # fmt: skip
    out = np.zeros_like(template.pair_val)
    widths = np.diff(part.pair_ptr)
    dest = np.repeat(template.pair_ptr[pos] - part.pair_ptr[:-1], widths)
    out[dest + np.arange(part.pair_ptr[-1])] = part.pair_val
    return out


class ResidualModel:
    """A design's residual structure: its weights and the stacked component statistics in
    every layout the package uses (built on first use).

    Parameters
    ----------
    design
        A design with a residual structure (``design.residual``).
    """

    def __init__(self, design: Design):
        if design.residual is None:
            raise ValueError("the design has no residual structure")
        self.design = design
        self.layout = design.residual
        self.weights = ResidualWeights.from_layout(design.residual)
        self.parts = [pseudo_design(design, M) for M in self.weights.matrices]
        self._cache: dict[Any, Any] = {}

    @property
    def parameter(self) -> str:
        return self.layout.parameter

    @property
    def bounds(self) -> tuple[float, float]:
        return self.layout.lower, self.layout.upper

    def coefficients(self, phi: Any, xp: Any = np) -> Any:
        return self.weights.coefficients(phi, xp)

    def logdet(self, phi: Any, xp: Any = np) -> Any:
        """``log|R(phi)|``."""
        return self.weights.logdet(phi, xp)

    # --- stacked statistics in each layout -------------------------------------------

    def group_stats(self) -> StackedStats:
        """One grouping factor (:class:`GroupStats`)."""
        if "group" not in self._cache:
            template = GroupStats.from_design(self.design)
            parts = [GroupStats.from_design(p) for p in self.parts]
            self._cache["group"] = StackedStats.from_parts(template, parts, GROUP_FIELDS)
        return self._cache["group"]

    def group_response(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """The fields of :meth:`group_stats` that depend on the response (``Zty``, ``Xty``,
        ``yty``, stacked by component) for another response ``y`` on the same rows."""
        block = self.design.blocks
        Z = np.hstack([b.Z for b in block])
        out: dict[str, list] = {"Zty": [], "Xty": [], "yty": []}
        for M in self.weights.matrices:
            yk, Zk, Xk = M @ y, np.asarray(M @ Z), np.asarray(M @ self.design.X)
            codes = block[0].codes[p_codes(M)]
            out["Zty"].append(level_sums(codes, block[0].n_levels, Zk, yk[:, None])[:, :, 0])
            out["Xty"].append(Xk.T @ yk)
            out["yty"].append(float(yk @ yk))
        return {k: np.stack(v) if k != "yty" else np.asarray(v) for k, v in out.items()}

    def nested_stats(self) -> StackedStats:
        """Two nested grouping factors (:class:`NestedStats`)."""
        if "nested" not in self._cache:
            template = NestedStats.from_design(self.design)
            parts = [_nested_part(p, template) for p in self.parts]
            self._cache["nested"] = StackedStats.from_parts(template, parts, NESTED_FIELDS)
        return self._cache["nested"]

    def blocked_stats(self, explicit: Collection[str] = ()) -> StackedStats:
        """Any design (:class:`BlockedStats`, same node pattern as the unweighted)."""
        key = ("blocked", tuple(explicit))
        if key not in self._cache:
            template = BlockedStats.from_design(self.design, explicit)
            parts = []
            for p in self.parts:
                part = BlockedStats.from_design(p, explicit)
                parts.append(dataclasses.replace(part, pair_val=_aligned_pairs(template, part)))
            self._cache[key] = StackedStats.from_parts(template, parts, BLOCKED_FIELDS)
        return self._cache[key]

    def level_moments(self, codes: np.ndarray, n_levels: int) -> StackedStats:
        """``X_j'R^-1 X_j``, ``X_j'R^-1 y_j``, ``y_j'R^-1 y_j`` per level of a factor in
        which the residual groups are nested (:class:`LevelMoments`)."""
        first = [p_codes(M) for M in self.weights.matrices]
        template = LevelMoments.from_codes(codes, n_levels, self.design.X, self.design.y)
        parts = [LevelMoments.from_codes(codes[f], n_levels, p.X, p.y)
                 for f, p in zip(first, self.parts, strict=True)]  # fmt: skip
        return StackedStats.from_parts(template, parts, MOMENT_FIELDS)

    def cross_products(self, phi: float) -> CrossProducts:
        """The weighted :class:`CrossProducts` at ``phi`` (REML/ML's final fit)."""
        if "cp" not in self._cache:
            template = CrossProducts.from_design(self.design)
            parts = [CrossProducts.from_design(p) for p in self.parts]
            plain = StackedStats.from_parts(template, parts, ["ZtX", "Zty", *_PLAIN])
            grouped = None
            if template.grouped is not None:
                groups = [p.grouped for p in parts]
                grouped = StackedStats.from_parts(template.grouped, groups, GROUP_FIELDS)
            self._cache["cp"] = (plain, [p.ZtZ for p in parts], grouped)
        plain, ZtZ, grouped = self._cache["cp"]
        coef = self.coefficients(float(phi))
        zz = sum(c * M for c, M in zip(coef, ZtZ, strict=True)).tocsc()
        out = dataclasses.replace(plain.at(coef), ZtZ=zz)
        if grouped is not None:
            out.grouped = grouped.at(coef)
        if self.design.blocks:  # the template's symbolic factorisation, weighted values
            if "system" not in self._cache:
                self._cache["system"] = ResidualSystem(self)
            out.system = self._cache["system"].system(float(phi))
            out.stats = out.system.stats
        else:
            out.stats, out.system = self.blocked_stats().at(coef), None
        return out


def p_codes(M: sp.csr_matrix) -> np.ndarray:
    """The first constituent row of every row of ``M``."""
    return M.indices[M.indptr[:-1]]


class ResidualSystem:
    """The blocked system of a design with residual structure at any ``phi``: the template
    system's symbolic factorisation, with weighted statistics.

    Parameters
    ----------
    model
        The design's :class:`ResidualModel`.
    explicit
        Grouping factors sampled instead of integrated out.
    template
        The unweighted system of the same design and ``explicit`` (built if not given).
    """

    def __init__(self, model: ResidualModel, explicit: Collection[str] = (),
                 template: BlockedSystem | None = None):  # fmt: skip
        self.model = model
        self.stacked = model.blocked_stats(explicit)
        stats = self.stacked.template
        self.template = template if template is not None else BlockedSystem(stats)
        # where the system keeps each pair of Z'Z: a system of the pairs' indices says
        probe = BlockedSystem(dataclasses.replace(
            stats, pair_val=np.arange(len(stats.pair_val), dtype=float)))  # fmt: skip
        self._marginal = probe.marginal.pair_val.astype(np.int64)
        self._explicit = probe.explicit.pair_val.astype(np.int64)
        self._cross = probe.cross[3].astype(np.int64)

    def logdet(self, phi: float) -> float:
        return float(self.model.logdet(float(phi)))

    def stats(self, phi: float) -> BlockedStats:
        return self.stacked.at(self.model.coefficients(float(phi)))

    def system(self, phi: float) -> BlockedSystem:
        """The :class:`BlockedSystem` of the ``R(phi)^-1``-weighted statistics."""
        stats = self.stats(phi)
        t = self.template
        QM = t.n_marginal_effects
        out = copy.copy(t)
        out.stats = stats
        out.marginal = dataclasses.replace(t.marginal, pair_val=stats.pair_val[self._marginal])
        out.explicit = dataclasses.replace(t.explicit, pair_val=stats.pair_val[self._explicit])
        out.cross = (*t.cross[:3], stats.pair_val[self._cross])
        out.ZtX_M, out.ZtX_E = stats.ZtX[:QM], np.ascontiguousarray(stats.ZtX[QM:])
        out.Zty_M, out.Zty_E = stats.Zty[:QM], np.ascontiguousarray(stats.Zty[QM:])
        return out


class ResidualProfile:
    """The profiled REML/ML criterion at ``(theta, phi)`` and its exact gradient in theta:
    the blocked kernel on the ``R(phi)^-1``-weighted statistics, plus ``log|R(phi)|``.

    Parameters
    ----------
    design
        A design with a residual structure; without random terms the criterion is the
        generalised least-squares one (nlme's ``gls``).
    layout
        Where each block's theta lives.
    """

    def __init__(self, design: Design, layout: ThetaLayout):
        self.model = ResidualModel(design)
        self.layout = layout
        self.blocked = BlockedProfile(design, layout) if design.blocks else None
        if self.blocked is not None:  # one residual system, shared with the final fit's
            self.model._cache["system"] = ResidualSystem(self.model,
                                                         template=self.blocked.system)
        self.system = self.model._cache.get("system")

    @property
    def bounds(self) -> tuple[float, float]:
        """Open interval of the correlation parameter."""
        return self.model.bounds

    def __call__(self, theta: np.ndarray, phi: float, reml: bool,
                 grad: bool = True) -> tuple[float, np.ndarray]:  # fmt: skip
        """Criterion (-2 log-likelihood or REML criterion) and its gradient in theta."""
        logdet = self.model.logdet(float(phi))
        if not np.isfinite(logdet):
            return np.inf, np.zeros_like(theta)
        if self.system is None:
            return profiled(theta, self.model.cross_products(phi), self.layout,
                            reml).deviance + logdet, np.zeros(0)  # fmt: skip
        b = self.blocked
        dev, dT = self.system.system(phi).profiled_deviance(b.factors(theta), reml, grad)[:2]
        return float(dev) + logdet, dT[b.factor, b.row, b.col]

    def fit(self, theta: np.ndarray, phi: float, reml: bool) -> tuple[ProfiledFit, CrossProducts]:
        """The fit at ``(theta, phi)`` (its deviance includes ``log|R|``) and the weighted
        cross-products it was computed from."""
        cp = self.model.cross_products(phi)
        fit = profiled(theta, cp, self.layout, reml)
        fit.deviance += float(self.model.logdet(float(phi)))
        return fit, cp


# --- row-level formulas: noise, conditional densities, exact draws --------------------


def _positions(layout: ResidualLayout) -> np.ndarray:
    """Position of every row in its group's time order (0 for the first)."""
    pos = np.zeros(len(layout.codes), dtype=np.int64)
    if len(layout.prev):
        order = np.lexsort((layout.times, layout.codes))
        first = np.r_[True, layout.codes[order][1:] != layout.codes[order][:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
        pos[order] = np.arange(len(order)) - start
    return pos


def residual_noise(layout: ResidualLayout, phi: np.ndarray | float, rng: np.random.Generator,
                   size: int | None = None) -> np.ndarray:  # fmt: skip
    """Standardised residuals with correlation ``R(phi)``: (n,) or, with ``size`` draws
    (``phi`` a scalar or one value per draw), (size, n).

    AR(1): each group's rows in time order, ``e_k = a e_(k-1) + sqrt(1 - a^2) z_k`` with
    ``a = phi^gap``; compound symmetry: ``sqrt(1 - rho) (z - mean_g z) + sqrt(1 + (m - 1)
    rho) mean_g z`` per group of ``m`` rows.
    """
    n = len(layout.codes)
    S = 1 if size is None else int(size)
    phi = np.broadcast_to(np.asarray(phi, dtype=float), (S,))[:, None]
    z = rng.standard_normal((S, n))
    if layout.is_ar1:
        e = z.copy()
        pos = _positions(layout)
        step = pos[layout.next]
        for k in range(1, int(step.max(initial=0)) + 1):
            sel = step == k
            prev, nxt, gap = layout.prev[sel], layout.next[sel], layout.gap[sel]
            a = phi ** gap[None, :]
            e[:, nxt] = a * e[:, prev] + np.sqrt(1.0 - a * a) * z[:, nxt]
    else:
        m = layout.sizes[layout.codes].astype(float)
        means = np.stack([np.bincount(layout.codes, zr, minlength=len(layout.sizes))
                          for zr in z])[:, layout.codes] / m  # fmt: skip
        e = np.sqrt(1.0 - phi) * (z - means) + np.sqrt(1.0 + (m - 1.0) * phi) * means
    return e[0] if size is None else e


def conditional_loglik(weights: ResidualWeights, resid: np.ndarray, sigma: np.ndarray,
                       phi: np.ndarray) -> np.ndarray:  # fmt: skip
    """``log p(e_i | e_-i)`` of every row under ``N(0, sigma^2 R(phi))``, per draw.

    With ``Q = R^-1``: ``e_i | e_-i ~ N(e_i - (Q e)_i / Q_ii, sigma^2 / Q_ii)``, the
    pointwise density of non-factorised Gaussian models (Bürkner, Gabry & Vehtari 2021),
    which PSIS-LOO by observation needs. ``resid`` (S, n), ``sigma`` and ``phi`` (S,).
    """
    coef = np.stack([weights.coefficients(float(p)) for p in phi])  # (S, K)
    Qe = np.zeros_like(resid)
    diag = np.zeros_like(resid)
    for k, M in enumerate(weights.matrices):
        Qe += coef[:, k, None] * np.asarray(M.T @ (M @ resid.T)).T
        diag += coef[:, k, None] * np.asarray(M.multiply(M).sum(axis=0)).ravel()[None, :]
    s2 = (sigma**2)[:, None]
    return -0.5 * (np.log(2.0 * np.pi * s2 / diag) + Qe**2 / (diag * s2))


def draw_effects_residual(system: ResidualSystem, phi: np.ndarray, T_draws: np.ndarray,
                          beta: np.ndarray, sigma: np.ndarray, rng: np.random.Generator,
                          uE: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Exact draws of the integrated-out random effects, one system per draw of ``phi``
    (draws, Q_M), as :func:`bayeslmm.gaussian.draws.draw_random_effects`."""
    S = len(sigma)
    t = system.template
    uE = np.zeros((S, t.n_explicit_effects)) if uE is None else uE
    out = np.empty((S, t.n_marginal_effects))
    for d in range(S):
        sl = slice(d, d + 1)
        out[d] = system.system(phi[d]).draw_effects(T_draws[sl], beta[sl], sigma[sl], rng,
                                                    uE[sl])[0]  # fmt: skip
    return out
