"""Profiled log-likelihood of a Gaussian LMM over the relative covariance factor theta.

lme4's formulation (Bates et al. 2015, section 3): with ``b = Lambda_theta u``,
``u ~ N(0, sigma^2 I)``, the penalised least-squares system

    [Lambda'Z'Z Lambda + I   Lambda'Z'X] [u]   [Lambda'Z'y]
    [X'Z Lambda              X'X       ] [b] = [X'y       ]

is solved by the blocked Cholesky factor of its upper-left block
(:mod:`bayeslmm.gaussian.blocked`, MixedModels.jl's ``updateL!``: block-diagonal, nested
and crossed structures) and a Cholesky factor ``R_X`` of the Schur complement, from the
cross-products made once (:mod:`bayeslmm.gaussian.statistics`); an evaluation costs
O(levels q^3) where ``L`` stays sparse, independent of the number of rows. The same
factorisation gives the optimiser's criterion and gradient (:class:`BlockedProfile`) and
the fit's estimates, conditional modes and conditional variances (:func:`profiled`).

Two functions here do not factor ``A``: :func:`grouped_deviance`, dense per-level
formulas for one grouping factor kept as an independent check of the blocked kernel in
the tests, and :func:`covariance_deviance`, the deviance at relative covariances ``Psi``
that may be singular or indefinite (finite differences of the observed information at a
boundary fit), where no Cholesky factor exists: a sparse LU of ``I + Z'Z Psi``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy
import scipy.sparse as sp

from ..spec.design import Design
from .blocked import BlockedSystem
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
    """Everything one evaluation of the profiled criterion produces (lme4's numbering of the
    random effects: block after block, level after level, term after term)."""

    deviance: float  # -2 log-likelihood (ML) or REML criterion
    beta: np.ndarray
    u: np.ndarray  # spherical random effects
    b: np.ndarray  # random effects on the data scale, Lambda u
    sigma: float
    r2: float  # penalised residual sum of squares
    logdet_L: float  # log|L|^2 = log|Lambda'Z'Z Lambda + I|
    logdet_RX: float  # log|R_X|^2
    RX: np.ndarray  # upper Cholesky factor of the Schur complement
    level_cov: list[np.ndarray] | None = None  # per block, Var(b_j | y) / sigma^2 per level

    def conditional_covariance_blocks(self, sizes: list[int], levels: list[int]) -> list:
        """Per block, (levels, q, q) covariances of b given y, beta and theta (lme4 condVar):
        ``Var(b | y) = sigma^2 Lambda A^-1 Lambda'``, its diagonal blocks, from the diagonal
        node blocks of ``A^-1`` (the blocked factor's selected inverse)."""
        if self.level_cov is None:
            raise ValueError("this fit was evaluated without the conditional covariances")
        return [c * self.sigma**2 for c in self.level_cov]


def profiled(theta: np.ndarray, cp: CrossProducts, layout: ThetaLayout, reml: bool,
             conditional: bool = True, sigma: float | None = None) -> ProfiledFit:  # fmt: skip
    """Solve the PLS problem at ``theta`` and return the profiled criterion.

    One evaluation of the blocked Cholesky (:func:`bayeslmm.gaussian.blocked.
    profiled_deviance`) on the statistics behind ``cp``: the Schur complement
    ``R_X'R_X = X'X - X'Z Lambda A^-1 Lambda'Z'X``, beta, u and the penalised RSS; with
    ``conditional``, also the conditional covariances of the random effects (the selected
    inverse of ``A``, as the gradient needs). With ``sigma`` the residual SD is known
    (rows scaled by known standard errors: ``sigma = 1``) and theta is the random effects'
    own covariance factor (:func:`bayeslmm.gaussian.blocked.deviance`).
    """
    if cp.stats is None:
        raise ValueError("these cross-products carry no blocked statistics")
    if not len(cp.Zty):  # no random effects (nlme's gls): generalised least squares
        if sigma is not None:
            raise ValueError("a known residual SD needs random effects here")
        return _least_squares(cp, reml)
    profile = BlockedProfile.of(blocked_system(cp), layout)
    T = profile.factors(theta)
    dev, _, beta, s2, logdet, logdet_M, RX, u_node, inverse = profile.system.profiled_deviance(
        T, reml, conditional, sigma)
    dof = cp.n - cp.p if reml else cp.n
    r2 = s2 * dof
    if sigma is not None:  # dev = log|A| + r2 / s2 + dof log(2 pi s2) (+ log|R_X'R_X|)
        r2 = s2 * (dev - logdet - (logdet_M if reml else 0.0) - dof * np.log(2 * np.pi * s2))
    stats = profile.system.stats
    b_node = np.empty_like(u_node)
    for f, factor in enumerate(stats.factors):  # b = Lambda u, level by level
        lo, hi = stats.offset[factor.first], stats.offset[factor.first + factor.n_levels]
        q = factor.q
        b_node[lo:hi] = (u_node[lo:hi].reshape(-1, q) @ T[f, :q, :q].T).ravel()
    u, b = np.empty_like(u_node), np.empty_like(u_node)
    u[cp.perm], b[cp.perm] = u_node, b_node
    level_cov = _level_covariances(profile, T, inverse, layout) if conditional else None
    return ProfiledFit(deviance=float(dev), beta=beta, u=u, b=b, sigma=float(np.sqrt(s2)),
                       r2=float(r2), logdet_L=float(logdet), logdet_RX=float(logdet_M),
                       RX=np.asarray(RX).T, level_cov=level_cov)  # fmt: skip


def blocked_system(cp: CrossProducts) -> BlockedSystem:
    """The blocked system of ``cp``'s statistics (its symbolic factorisation made once and
    kept with them)."""
    if cp.system is None or cp.system.stats is not cp.stats:
        cp.system = BlockedSystem(cp.stats)
    return cp.system


def _least_squares(cp: CrossProducts, reml: bool) -> ProfiledFit:
    """The criterion without random effects: generalised least squares on the statistics."""
    if cp.p:
        RX = np.linalg.cholesky(cp.XtX).T
        beta = scipy.linalg.cho_solve((RX, False), cp.Xty)
        logdet_RX = 2.0 * float(np.sum(np.log(np.abs(np.diag(RX)))))
    else:
        RX, beta, logdet_RX = np.zeros((0, 0)), np.zeros(0), 0.0
    r2 = max(cp.yty - float(cp.Xty @ beta), 0.0)
    dof = cp.n - cp.p if reml else cp.n
    deviance = dof * (1.0 + np.log(2.0 * np.pi * r2 / dof)) + (logdet_RX if reml else 0.0)
    return ProfiledFit(deviance=float(deviance), beta=beta, u=np.zeros(0), b=np.zeros(0),
                       sigma=float(np.sqrt(r2 / dof)), r2=float(r2), logdet_L=0.0,
                       logdet_RX=logdet_RX, RX=RX, level_cov=[])  # fmt: skip


def _level_covariances(profile: BlockedProfile, T: np.ndarray, inverse: np.ndarray,
                       layout: ThetaLayout) -> list[np.ndarray]:  # fmt: skip
    """Per block, ``T A_jj^-1 T'`` of each level (levels, q, q): ``Var(b_j | y) / sigma^2``."""
    stats = profile.system.stats
    starts = np.concatenate([[0], np.cumsum(stats.size.astype(np.int64) ** 2)])
    out = []
    for k, q in enumerate(layout.sizes):
        f, c = profile.factor_of[k], profile.column_of[k]
        factor = stats.factors[f]
        qf = factor.q
        lo = starts[factor.first]
        blocks = inverse[lo : lo + factor.n_levels * qf * qf].reshape(-1, qf, qf)
        Tf = T[f, :qf, :qf]
        cov = Tf @ blocks @ Tf.T
        out.append(np.ascontiguousarray(cov[:, c : c + q, c : c + q]))
    return out


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
    lu = sp.linalg.splu(M)
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

    #: The known residual SD (rows scaled by known standard errors: 1), or None: profiled.
    sigma: float | None = None

    def __init__(self, design: Design, layout: ThetaLayout, stats: BlockedStats | None = None):
        system = BlockedSystem(stats if stats is not None else BlockedStats.from_design(design))
        self._place(system, layout)

    @classmethod
    def of(cls, system: BlockedSystem, layout: ThetaLayout,
           sigma: float | None = None) -> BlockedProfile:  # fmt: skip
        """The criterion on a system already made (every factor integrated out); with
        ``sigma`` the residual SD is known, not profiled."""
        out = cls.__new__(cls)
        out._place(system, layout)
        out.sigma = sigma
        return out

    def _place(self, system: BlockedSystem, layout: ThetaLayout) -> None:
        """Where theta goes in the (F, qmax, qmax) factors: block k is factor
        ``factor_of[k]``'s terms from ``column_of[k]``."""
        self.system = system
        self.factor_of, self.column_of = {}, {}
        for f, factor in enumerate(system.stats.factors):
            start = 0
            for k in factor.blocks:
                self.factor_of[k], self.column_of[k] = f, start
                start += layout.sizes[k]
        where = []
        for k, (q, corr) in enumerate(zip(layout.sizes, layout.correlated, strict=True)):
            rows, cols = layout._block_indices(q, corr)
            f, c = self.factor_of[k], self.column_of[k]
            where.append((np.full(len(rows), f), rows + c, cols + c))
        self.factor, self.row, self.col = (np.concatenate(w) if where else np.zeros(0, int)
                                           for w in zip(*where, strict=True))  # fmt: skip

    def factors(self, theta: np.ndarray) -> np.ndarray:
        """The per-factor relative factors (F, qmax, qmax) at theta."""
        T = np.zeros((self.system.n_factors, self.system.qmax, self.system.qmax))
        T[self.factor, self.row, self.col] = theta
        return T

    def __call__(self, theta: np.ndarray, reml: bool) -> tuple[float, np.ndarray]:
        """Profiled deviance (ML) or REML criterion at theta, and its gradient."""
        dev, dT = self.system.profiled_deviance(self.factors(theta), reml, True, self.sigma)[:2]
        return float(dev), dT[self.factor, self.row, self.col]
