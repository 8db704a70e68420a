"""Profiled log-likelihood of a Gaussian LMM over the relative covariance factor theta.

lme4's formulation (Bates et al. 2015, section 3): with ``b = Lambda_theta u``,
``u ~ N(0, sigma^2 I)``, the penalised least-squares system

    [Lambda'Z'Z Lambda + I   Lambda'Z'X] [u]   [Lambda'Z'y]
    [X'Z Lambda              X'X       ] [b] = [X'y       ]

is solved by a sparse factorisation of its upper-left block (fill-reducing order,
so block-diagonal, nested and crossed structures stay sparse) and a Cholesky factor
``R_X`` of the Schur complement. Everything is computed from cross-products made
once (``Z'Z``, ``Z'X``, ``Z'y``, ``X'X``, ``X'y``, ``y'y``,
:mod:`bayeslmm.gaussian.statistics`), so an evaluation costs O(q^3) with q the number
of random effects (far less when sparse), independent of the number of rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..spec.design import Design
from .blocked import BlockedSystem
from .factorisation import backward_solve, forward_solve, project, whiten
from .statistics import BlockedStats, CrossProducts, GroupStats


@dataclass(frozen=True)
class ThetaLayout:
    """Where each block's theta lives, and its lower bounds (0 on diagonals)."""

    sizes: list[int]  # terms per block
    levels: list[int]
    correlated: list[bool]

    @classmethod
    def from_design(cls, design: Design) -> ThetaLayout:
        return cls(
            sizes=[b.n_terms for b in design.blocks],
            levels=[b.n_levels for b in design.blocks],
            correlated=[b.correlated for b in design.blocks],
        )

    def _block_indices(self, q: int, correlated: bool) -> tuple[np.ndarray, np.ndarray]:
        """Lower-triangle (row, col) positions in lme4's column-major theta order."""
        if not correlated:
            return np.arange(q), np.arange(q)
        cols, rows = np.triu_indices(q)  # column-major lower triangle
        return rows, cols

    @property
    def n_theta(self) -> int:
        return sum(
            q * (q + 1) // 2 if c else q for q, c in zip(self.sizes, self.correlated, strict=True)
        )

    def start(self) -> np.ndarray:
        """lme4's start: identity factors."""
        out = []
        for q, c in zip(self.sizes, self.correlated, strict=True):
            rows, cols = self._block_indices(q, c)
            out.append((rows == cols).astype(float))
        return np.concatenate(out) if out else np.zeros(0)

    def lower_bounds(self) -> np.ndarray:
        return np.where(self.start() == 1.0, 0.0, -np.inf)

    def factors(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per-block lower-triangular T_k (relative covariance = T_k T_k')."""
        out, k = [], 0
        for q, c in zip(self.sizes, self.correlated, strict=True):
            rows, cols = self._block_indices(q, c)
            T = np.zeros((q, q))
            T[rows, cols] = theta[k : k + len(rows)]
            out.append(T)
            k += len(rows)
        return out

    @cached_property
    def _level_positions(self) -> tuple[np.ndarray, np.ndarray]:
        rows, cols, offset = [], [], 0
        for q, c in zip(self.sizes, self.correlated, strict=True):
            r, k = self._block_indices(q, c)
            rows.append(r + offset)
            cols.append(k + offset)
            offset += q
        return np.concatenate(rows), np.concatenate(cols)

    def level_factor(self, theta: np.ndarray) -> np.ndarray:
        """One level's relative factor (all blocks' T_k on the diagonal), for a single
        grouping factor."""
        rows, cols = self._level_positions
        T = np.zeros((sum(self.sizes), sum(self.sizes)))
        T[rows, cols] = theta
        return T

    def relative_factor(self, theta: np.ndarray) -> sp.csc_matrix:
        """Sparse Lambda (q x q): block diagonal of kron(I_levels, T_k)."""
        mats = [
            sp.kron(sp.identity(n, format="csc"), sp.csc_matrix(T), format="csc")
            for n, T in zip(self.levels, self.factors(theta), strict=True)
        ]
        return sp.block_diag(mats, format="csc") if mats else sp.csc_matrix((0, 0))


@dataclass
class ProfiledFit:
    """Everything one evaluation of the profiled criterion produces."""

    deviance: float  # -2 log-likelihood (ML) or REML criterion
    beta: np.ndarray
    u: np.ndarray  # spherical random effects
    b: np.ndarray  # random effects on the data scale, Lambda u
    sigma: float
    r2: float  # penalised residual sum of squares
    logdet_L: float  # log|L|^2 = log|Lambda'Z'Z Lambda + I|
    logdet_RX: float  # log|R_X|^2
    RX: np.ndarray  # upper Cholesky factor of the Schur complement
    factor: spla.SuperLU | None  # sparse factorisation of Lambda'Z'Z Lambda + I
    Lambda: sp.csc_matrix | None  # sparse path only
    level_cov: Callable[[], np.ndarray] | None = None  # grouped path: Var(b_j | y) / sigma^2

    def conditional_covariance_blocks(self, sizes: list[int], levels: list[int]) -> list:
        """Per block, (levels, q, q) covariances of b given y, beta and theta (lme4 condVar).

        ``Var(b | y) = sigma^2 Lambda (Lambda'Z'Z Lambda + I)^-1 Lambda'``, diagonal
        blocks only, found by solving for one level-column at a time across all levels.
        """
        if self.level_cov is not None:
            starts = np.cumsum([0, *sizes])
            cov = self.level_cov() * self.sigma**2
            return [cov[:, a:b, a:b] for a, b in zip(starts[:-1], starts[1:], strict=True)]
        out, offset = [], 0
        for q, n_lev in zip(sizes, levels, strict=True):
            size = q * n_lev
            lam = self.Lambda[offset : offset + size, :]
            # columns of Lambda' for this block; solve A X = Lambda' e_j for each j
            sol = self.factor.solve(lam.T.toarray())
            full = (lam @ sol) * self.sigma**2  # (size, size): only diagonal blocks needed
            idx = np.arange(n_lev)[:, None] * q + np.arange(q)[None, :]
            out.append(full[idx[:, :, None], idx[:, None, :]])
            offset += size
        return out


def _factorize(A: sp.csc_matrix) -> spla.SuperLU:
    """Sparse LU of a symmetric positive-definite matrix with a fill-reducing order.

    Symmetric mode with no pivoting keeps the ordering symmetric, so ``U``'s diagonal
    holds the pivots of a Cholesky-like factorisation (``log|A| = sum log U_ii``).
    """
    return spla.splu(
        A,
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )


def profiled(theta: np.ndarray, cp: CrossProducts, layout: ThetaLayout, reml: bool) -> ProfiledFit:
    """Solve the PLS problem at ``theta`` and return the profiled criterion.

    With ``A = Lambda'Z'Z Lambda + I`` factored once (sparse), the solves
    ``A^-1 Lambda'[Z'X, Z'y]`` give every piece: the Schur complement
    ``R_X'R_X = X'X - X'Z Lambda A^-1 Lambda'Z'X``, beta, u and the penalised RSS.
    """
    grouped = cp.grouped is not None
    if grouped:
        logdet_L, xx, xy, yy, spherical, T, level_cov = _pls_grouped(theta, cp.grouped, layout)
        factor = Lam = None
    else:
        logdet_L, xx, xy, yy, spherical, Lam, factor = _pls_sparse(theta, cp, layout)
        level_cov = None
    schur = cp.XtX - xx
    if cp.p:
        RX = np.linalg.cholesky(schur).T
        v = cp.Xty - xy
        beta = scipy.linalg.cho_solve((RX, False), v)
        cb2 = float(v @ beta)
        logdet_RX = 2.0 * float(np.sum(np.log(np.abs(np.diag(RX)))))
    else:
        RX, beta, cb2, logdet_RX = np.zeros((0, 0)), np.zeros(0), 0.0, 0.0
    u = spherical(beta)
    if grouped:  # b_j = T u_j per level, then the sparse layout
        b = _to_sparse_layout(u @ T.T, layout.sizes)
        u = _to_sparse_layout(u, layout.sizes)
    else:
        b = Lam @ u
    r2 = max(cp.yty - yy - cb2, 0.0)
    dof = cp.n - cp.p if reml else cp.n
    deviance = logdet_L + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
    if reml:
        deviance += logdet_RX
    return ProfiledFit(
        deviance=float(deviance),
        beta=beta,
        u=u,
        b=b,
        sigma=float(np.sqrt(r2 / dof)),
        r2=float(r2),
        logdet_L=logdet_L,
        logdet_RX=logdet_RX,
        RX=RX,
        factor=factor,
        Lambda=Lam,
        level_cov=level_cov,
    )


def _pls_sparse(theta: np.ndarray, cp: CrossProducts, layout: ThetaLayout):
    """The PLS pieces from a sparse factorisation of Lambda'Z'Z Lambda + I."""
    Lam = layout.relative_factor(theta)
    q = Lam.shape[0]
    rhs = np.column_stack([Lam.T @ cp.ZtX, Lam.T @ cp.Zty]) if q else np.zeros((0, cp.p + 1))
    if q:
        A = (Lam.T @ cp.ZtZ @ Lam + sp.identity(q, format="csc")).tocsc()
        factor = _factorize(A)
        sol = factor.solve(rhs)
        logdet_L = float(np.sum(np.log(np.abs(factor.U.diagonal()))))
    else:
        factor, sol, logdet_L = None, rhs, 0.0
    rhs_x, rhs_y = rhs[:, :-1], rhs[:, -1]
    sol_x, sol_y = sol[:, :-1], sol[:, -1]

    def spherical(beta: np.ndarray) -> np.ndarray:
        return sol_y - sol_x @ beta

    xx, xy, yy = rhs_x.T @ sol_x, rhs_x.T @ sol_y, float(rhs_y @ sol_y)
    return logdet_L, xx, xy, yy, spherical, Lam, factor


def _pls_grouped(theta: np.ndarray, stats: GroupStats, layout: ThetaLayout):
    """The PLS pieces level by level (one grouping factor), vectorised across levels."""
    T = layout.level_factor(theta)
    p, q = stats.p, stats.q
    R = project(T, np.concatenate([stats.ZtX, stats.Zty[:, :, None]], axis=2), np)
    logdet_L, L, C = whiten(T, stats, R, np)
    Cs = np.stack(C, axis=1)  # (G, q, p + 1)
    cross = np.einsum("gia,gib->ab", Cs, Cs)
    xx, xy, yy = cross[:p, :p], cross[:p, p], float(cross[p, p])

    def spherical(beta: np.ndarray) -> np.ndarray:
        c = [Ci[:, p] - Ci[:, :p] @ beta for Ci in C]
        return np.stack([ui[:, 0] for ui in backward_solve(L, [ci[:, None] for ci in c], q)], 1)

    def level_cov() -> np.ndarray:
        """Var(b_j | y) / sigma^2 = T A_j^-1 T', (G, q, q)."""
        Tt = np.broadcast_to(T.T, (stats.n_groups, q, q))
        A_inv_Tt = np.stack(backward_solve(L, forward_solve(L, Tt, q), q), axis=1)
        return np.einsum("ab,gbc->gac", T, A_inv_Tt)

    return logdet_L, xx, xy, yy, spherical, T, level_cov


def grouped_deviance(
    theta: np.ndarray, stats: GroupStats, layout: ThetaLayout, reml: bool
) -> tuple[float, np.ndarray]:
    """Profiled deviance and its exact gradient in theta, for one grouping factor.

    With ``Sigma = T T'`` (relative covariance of one level), ``W_j = (I + Z_j Sigma
    Z_j')^-1``, the GLS fit ``beta`` and its residuals ``e_j``, the derivative in
    ``Sigma`` is

    ``G = sum_j Z_j'W_j Z_j - (dof / r^2) a_j a_j' [- B_j (X'WX)^-1 B_j' for REML]``

    with ``a_j = Z_j'W_j e_j`` and ``B_j = Z_j'W_j X_j``; then ``d/dT = 2 G T``. Every
    term is a batched q x q product over levels (Woodbury: ``Z_j'W_j = Z_j' - S_j K_j
    Z_j'`` with ``S_j = Z_j'Z_j`` and ``K_j = T A_j^-1 T'``), so no row is touched.
    """
    T = layout.level_factor(theta)
    q, p = stats.q, stats.p
    S = stats.ZtZ
    A = np.einsum("ba,gbc,cd->gad", T, S, T, optimize=True) + np.eye(q)
    chol = np.linalg.cholesky(A)
    logdet_L = 2.0 * float(np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2))))
    K = np.einsum("ab,gbc,dc->gad", T, np.linalg.inv(A), T, optimize=True)  # T A^-1 T'
    SK = S @ K
    ZWZ = S - SK @ S
    ZWX = stats.ZtX - SK @ stats.ZtX  # (G, q, p)
    ZWy = stats.Zty - np.einsum("gab,gb->ga", SK, stats.Zty)
    dof = stats.n - p if reml else stats.n
    # X'W y = X'y - sum_j X_j'Z_j K_j Z_j'y_j;  X'W X likewise;  y'W y likewise
    KZy = np.einsum("gab,gb->ga", K, stats.Zty)
    XWy = stats.Xty - np.einsum("gba,gb->a", stats.ZtX, KZy)
    XWX = stats.XtX - np.einsum("gba,gbc,gcd->ad", stats.ZtX, K, stats.ZtX, optimize=True)
    yWy = stats.yty - float(np.einsum("ga,ga->", stats.Zty, KZy))
    if p:
        RX = np.linalg.cholesky(XWX)
        beta = scipy.linalg.cho_solve((RX, True), XWy)
        logdet_RX = 2.0 * float(np.sum(np.log(np.diag(RX))))
    else:
        beta, logdet_RX = np.zeros(0), 0.0
    r2 = max(yWy - float(XWy @ beta), 1e-300)
    deviance = logdet_L + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
    a = ZWy - ZWX @ beta
    G = ZWZ.sum(axis=0) - (dof / r2) * (a.T @ a)
    if reml:
        deviance += logdet_RX
        if p:
            G -= np.einsum(
                "gap,pr,gbr->ab", ZWX, scipy.linalg.cho_solve((RX, True), np.eye(p)), ZWX
            )
    dT = 2.0 * G @ T
    rows, cols = layout._level_positions
    return float(deviance), dT[rows, cols]


def _to_sparse_layout(per_level: np.ndarray, sizes: list[int]) -> np.ndarray:
    """(G, q) effects -> the sparse layout: each block's columns for all levels, level-major."""
    starts = np.cumsum([0, *sizes])
    pieces = zip(starts[:-1], starts[1:], strict=True)
    return np.concatenate([per_level[:, a:b].ravel() for a, b in pieces])


def covariance_deviance(
    beta: np.ndarray,
    psi: list[np.ndarray],
    sigma2: float,
    cp: CrossProducts,
    layout: ThetaLayout,
    reml: bool,
) -> float:
    """-2 log-likelihood at (beta, relative covariances Psi_k, sigma^2), unprofiled.

    ``V = sigma^2 (I + Z Psi Z')`` with ``Psi = blockdiag(kron(I, Psi_k))``. Woodbury
    without inverting ``Psi`` (``V^-1 = (I - Z Psi (I + Z'Z Psi)^-1 Z') / sigma^2``) keeps
    it defined when ``Psi`` is singular or slightly indefinite, as needed for derivatives
    at a boundary fit (statsmodels' ``MixedLM`` parametrisation).
    """
    mats = [
        sp.kron(sp.identity(n, format="csc"), sp.csc_matrix(P), format="csc")
        for n, P in zip(layout.levels, psi, strict=True)
    ]
    Psi = sp.block_diag(mats, format="csc") if mats else sp.csc_matrix((0, 0))
    q = Psi.shape[0]
    M = (sp.identity(q, format="csc") + cp.ZtZ @ Psi).tocsc()
    lu = spla.splu(M)
    logdet_v = float(np.sum(np.log(np.abs(lu.U.diagonal())))) + cp.n * np.log(sigma2)
    rhs = np.column_stack([cp.ZtX, cp.Zty])
    core = Psi @ lu.solve(rhs)  # Psi (I + Z'Z Psi)^-1 [Z'X, Z'y]
    xtvx = (cp.XtX - cp.ZtX.T @ core[:, :-1]) / sigma2
    xtvy = (cp.Xty - cp.ZtX.T @ core[:, -1]) / sigma2
    ytvy = (cp.yty - cp.Zty @ core[:, -1]) / sigma2
    quad = ytvy - 2 * beta @ xtvy + beta @ xtvx @ beta
    dev = logdet_v + quad + cp.n * np.log(2 * np.pi)
    if reml:
        dev += np.linalg.slogdet(xtvx)[1] - cp.p * np.log(2 * np.pi)
    return float(dev)


class BlockedProfile:
    """The profiled criterion of any design and its exact gradient in theta, through the
    blocked Cholesky of :mod:`bayeslmm.gaussian.blocked` (one factor, nested or crossed).

    Parameters
    ----------
    design
        The evaluated formula.
    layout
        Where each block's theta lives.
    stats
        The design's statistics, if already made.
    """

    def __init__(self, design: Design, layout: ThetaLayout, stats: BlockedStats | None = None):
        self.system = BlockedSystem(
            stats if stats is not None else BlockedStats.from_design(design)
        )
        factor_of, column_of = {}, {}
        for f, factor in enumerate(self.system.stats.factors):
            start = 0
            for k in factor.blocks:
                factor_of[k], column_of[k] = f, start
                start += design.blocks[k].n_terms
        where = []
        for k, (q, corr) in enumerate(zip(layout.sizes, layout.correlated, strict=True)):
            rows, cols = layout._block_indices(q, corr)
            where.append((np.full(len(rows), factor_of[k]), rows + column_of[k],
                          cols + column_of[k]))  # fmt: skip
        self.factor, self.row, self.col = (np.concatenate(w) if where else np.zeros(0, int)
                                           for w in zip(*where, strict=True))  # fmt: skip

    def factors(self, theta: np.ndarray) -> np.ndarray:
        """The per-factor relative factors (F, qmax, qmax) at theta."""
        T = np.zeros((self.system.n_factors, self.system.qmax, self.system.qmax))
        T[self.factor, self.row, self.col] = theta
        return T

    def __call__(self, theta: np.ndarray, reml: bool) -> tuple[float, np.ndarray]:
        """Profiled deviance (ML) or REML criterion at theta, and its gradient."""
        dev, dT, _, _ = self.system.profiled_deviance(self.factors(theta), reml)
        return float(dev), dT[self.factor, self.row, self.col]
