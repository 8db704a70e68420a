"""Profiled log-likelihood of a Gaussian LMM over the relative covariance factor theta.

lme4's formulation (Bates et al. 2015, section 3): with ``b = Lambda_theta u``,
``u ~ N(0, sigma^2 I)``, the penalised least-squares system

    [Lambda'Z'Z Lambda + I   Lambda'Z'X] [u]   [Lambda'Z'y]
    [X'Z Lambda              X'X       ] [b] = [X'y       ]

is solved by a Cholesky factor of its upper-left block and of the Schur complement
``R_X``. Everything is computed from cross-products made once (``Z'Z``, ``Z'X``,
``Z'y``, ``X'X``, ``X'y``, ``y'y``), so an evaluation costs O(q^3) with q the number
of random effects, independent of the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .design import Design


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
    """The data's sufficient statistics for a Gaussian LMM."""

    ZtZ: np.ndarray
    ZtX: np.ndarray
    Zty: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n: int
    p: int

    @classmethod
    def from_design(cls, design: Design) -> CrossProducts:
        Z = random_effects_matrix(design)
        X, y = design.X, design.y
        return cls(
            ZtZ=(Z.T @ Z).toarray(),
            ZtX=np.asarray(Z.T @ X),
            Zty=np.asarray(Z.T @ y),
            XtX=X.T @ X,
            Xty=X.T @ y,
            yty=float(y @ y),
            n=len(y),
            p=X.shape[1],
        )


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

    def lambda_diagonal_blocks(self, theta: np.ndarray) -> np.ndarray:
        """Dense Lambda (q x q): block diagonal of kron(I_levels, T_k)."""
        mats = [
            np.kron(np.eye(n), T) for n, T in zip(self.levels, self.factors(theta), strict=True)
        ]
        return scipy.linalg.block_diag(*mats) if mats else np.zeros((0, 0))


@dataclass
class ProfiledFit:
    """Everything one evaluation of the profiled criterion produces."""

    deviance: float  # -2 log-likelihood (ML) or REML criterion
    beta: np.ndarray
    u: np.ndarray  # spherical random effects
    b: np.ndarray  # random effects on the data scale, Lambda u
    sigma: float
    r2: float  # penalised residual sum of squares
    logdet_L: float  # log|L|^2
    logdet_RX: float  # log|R_X|^2
    RX: np.ndarray  # upper Cholesky factor of the Schur complement
    L: np.ndarray  # lower Cholesky factor of Lambda'Z'Z Lambda + I
    Lambda: np.ndarray


def profiled(theta: np.ndarray, cp: CrossProducts, layout: ThetaLayout, reml: bool) -> ProfiledFit:
    """Solve the PLS problem at ``theta`` and return the profiled criterion."""
    Lam = layout.lambda_diagonal_blocks(theta)
    q = Lam.shape[0]
    A = Lam.T @ cp.ZtZ @ Lam + np.eye(q)
    L = np.linalg.cholesky(A)
    LtZX = Lam.T @ cp.ZtX
    LtZy = Lam.T @ cp.Zty
    cu = scipy.linalg.solve_triangular(L, LtZy, lower=True)
    RZX = scipy.linalg.solve_triangular(L, LtZX, lower=True)
    schur = cp.XtX - RZX.T @ RZX
    RX = np.linalg.cholesky(schur).T if cp.p else np.zeros((0, 0))
    if cp.p:
        cb = scipy.linalg.solve_triangular(RX.T, cp.Xty - RZX.T @ cu, lower=True)
        beta = scipy.linalg.solve_triangular(RX, cb, lower=False)
    else:
        cb, beta = np.zeros(0), np.zeros(0)
    u = scipy.linalg.solve_triangular(L.T, cu - RZX @ beta, lower=False)
    r2 = max(cp.yty - cu @ cu - cb @ cb, 0.0)
    logdet_L = 2.0 * float(np.sum(np.log(np.diag(L))))
    logdet_RX = 2.0 * float(np.sum(np.log(np.abs(np.diag(RX))))) if cp.p else 0.0
    dof = cp.n - cp.p if reml else cp.n
    deviance = logdet_L + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
    if reml:
        deviance += logdet_RX
    return ProfiledFit(
        deviance=float(deviance),
        beta=beta,
        u=u,
        b=Lam @ u,
        sigma=float(np.sqrt(r2 / dof)),
        r2=float(r2),
        logdet_L=logdet_L,
        logdet_RX=logdet_RX,
        RX=RX,
        L=L,
        Lambda=Lam,
    )
