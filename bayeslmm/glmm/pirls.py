"""Penalised iteratively re-weighted least squares (PIRLS) and lme4's GLMM deviances.

The model is ``eta = offset + X beta + Z Lambda(theta) u`` with spherical random effects
``u ~ N(0, I)`` and a response family with link ``g(mu) = eta``. For given ``theta`` (and
``beta``, or jointly with it) PIRLS finds the conditional mode of ``u`` by Fisher scoring
on the penalised deviance ``sum(dev_resid) + |u|^2``, halving steps that do not reduce it
(lme4's ``pwrssUpdate``). At the mode, with ``A = Lambda'Z'W Z Lambda + I`` and
``log|A| = ldL2``:

- Laplace (``nAGQ = 1``): ``-2 sum(log p(y | mu)) + |u|^2 + ldL2`` (lme4's
  ``glmResp::Laplace``: the family's ``aic`` term holds every constant), so the deviance is
  ``-2 logLik``;
- adaptive Gauss-Hermite (``nAGQ > 1``, one scalar random effect): lme4's ``glmerAGQ``,
  ``sum(devc0) + ldL2 - 2 sum(log(mult))`` with ``devc0`` per level the squared mode plus
  the level's deviance residuals, and ``mult`` the quadrature of the level's conditional
  density around its mode, scaled by its conditional SD ``1 / L_jj``.

``A`` is re-weighted and factored at every iteration in two blocks (:class:`BlockedFactor`:
the random term with the most columns is block diagonal in ``A``, one small Cholesky per
level; the others' columns get a dense Cholesky of their Schur complement), or, where the
other terms have more than 3,000 columns, by a sparse LU in symmetric mode with a
fill-reducing order. This is not yet the blocked Cholesky of
:mod:`bayeslmm.gaussian.blocked` (whose numba kernels work on fixed cross-products).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import BayesLMMError
from ..spec.family import Family
from .kernels import assemble, b_times, bt_times

SQRT_2PI = float(np.sqrt(2.0 * np.pi))


class PirlsError(BayesLMMError, ArithmeticError):
    """PIRLS did not converge (step halving failed or values not finite)."""


def _factor(A: sp.csc_matrix):
    """Sparse symmetric factorisation of a positive-definite ``A`` and ``log|A|``."""
    lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                   options={"SymmetricMode": True})  # fmt: skip
    diag = lu.U.diagonal()
    if np.any(diag <= 0) or not np.all(np.isfinite(diag)):
        raise PirlsError("the penalised weighted system is not positive definite")
    return lu, float(np.sum(np.log(diag)))


def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """lme4's ``GHrule(n)``: nodes and weights of an ``n``-point rule for integrals against
    the standard normal density (weights sum to 1), made exactly symmetric."""
    x, w = np.polynomial.hermite.hermgauss(n)
    z, w = x * np.sqrt(2.0), w / w.sum()
    return (z - z[::-1]) / 2.0, (w + w[::-1]) / 2.0


class BlockedFactor:
    """``A = Lambda'Z'W Z Lambda + I`` factored in two blocks: the random term with the most
    columns first, whose part of ``A`` is block diagonal (one ``k x k`` block per level),
    then the dense Cholesky of the Schur complement of the other terms' columns, assembled
    level by level by :func:`bayeslmm.glmm.kernels.assemble`. ``solve`` takes one
    right-hand side or a matrix of them (rows in ``u``'s order)."""

    def __init__(self, Dinv, logdet, S, b_rows, b_cols, b_vals, first, rest):
        if not np.isfinite(logdet):
            raise PirlsError("the penalised weighted system is not positive definite")
        self.Dinv, self.first, self.rest = Dinv, first, rest
        self.m, self.k = Dinv.shape[0], Dinv.shape[1]
        self.b = (b_rows, b_cols, b_vals)
        if len(rest):
            self.S = scipy.linalg.cho_factor(S, lower=True)
            logdet += 2.0 * float(np.sum(np.log(np.diag(self.S[0]))))
        self.logdet = float(logdet)

    def _solve_first(self, r: np.ndarray) -> np.ndarray:
        """``D^-1 r`` for ``r`` (q_first, c)."""
        rr = r.reshape(self.m, self.k, -1)
        if self.k == 1:
            return (rr * self.Dinv).reshape(r.shape)
        return np.einsum("mij,mjc->mic", self.Dinv, rr).reshape(r.shape)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        rhs = np.asarray(rhs, float)
        flat = rhs.ndim == 1
        rhs2 = rhs[:, None] if flat else rhs
        out = np.empty_like(rhs2)
        r0, r1 = rhs2[self.first], rhs2[self.rest]
        y0 = self._solve_first(r0)
        if len(self.rest):
            x1 = scipy.linalg.cho_solve(self.S, r1 - b_times(*self.b, y0, len(self.rest)))
            x0 = self._solve_first(r0 - bt_times(*self.b, np.ascontiguousarray(x1),
                                                 len(self.first)))  # fmt: skip
            out[self.rest] = x1
        else:
            x0 = y0
        out[self.first] = x0
        return out[:, 0] if flat else out


@dataclass
class PirlsState:
    """The conditional mode and what the deviances need."""

    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    ldL2: float  # log|A|
    factor: object  # sparse factorisation of A
    ZL: sp.csr_matrix  # Z Lambda
    sqrt_w: np.ndarray  # square roots of the working weights
    iterations: int


class GlmmProblem:
    """One GLMM's data: ``y`` (proportion for a binomial), prior ``weights``, ``offset``,
    ``X``, the random-effects blocks and the theta -> per-block factors ``T_k`` map.

    Parameters
    ----------
    X
        Fixed-effects matrix (n, p).
    blocks
        Per random term ``(Z_k, codes_k, n_levels_k)``: its (n, k) columns and level codes;
        ``u`` and ``Z Lambda`` are laid out block by block, level-major (lme4's order within
        a term).
    factors
        theta -> list of the lower-triangular ``T_k`` (k x k) per block.
    family
        The response family.
    y, weights, offset
        Per row.
    """

    def __init__(self, X, blocks, factors, family: Family, y, weights, offset):
        self.X = np.asarray(X, float)
        self.blocks = [(np.asarray(Z, float), np.asarray(c, np.int64), int(m))
                       for Z, c, m in blocks]  # fmt: skip
        self.factors = factors
        self.family = family
        self.y = np.asarray(y, float)
        self.weights = np.asarray(weights, float)
        self.offset = np.asarray(offset, float)
        self.n, self.p = self.X.shape
        sizes = [Z.shape[1] for Z, _, _ in self.blocks]
        self.q = sum(k * m for (_, _, m), k in zip(self.blocks, sizes, strict=True))
        # Z Lambda keeps Z's pattern: per row, each block's k columns, in column order
        cols, start = [], 0
        for (_, codes, m), k in zip(self.blocks, sizes, strict=True):
            cols.append(start + codes[:, None] * k + np.arange(k)[None, :])
            start += m * k
        per_row = sum(sizes)
        self._indices = np.hstack(cols).ravel() if cols else np.zeros(0, np.int64)
        self._indptr = np.arange(self.n + 1, dtype=np.int64) * per_row
        self._u = np.zeros(self.q)
        self._setup_blocks(sizes, per_row)

    def _setup_blocks(self, sizes: list[int], per_row: int) -> None:
        """The two-block factorisation's layout (None: sparse LU instead)."""
        self._blocked = None
        if not self.blocks:
            return
        widths = [k * m for (_, _, m), k in zip(self.blocks, sizes, strict=True)]
        big = int(np.argmax(widths))
        starts = np.cumsum([0, *widths])
        q_rest = self.q - widths[big]
        if q_rest > 3000:
            return
        first = np.arange(starts[big], starts[big + 1])
        rest = np.setdiff1d(np.arange(self.q), first)
        at = int(sum(sizes[:big]))  # the big block's entries within a row
        k = sizes[big]
        in_row = np.r_[0:at, at + k : per_row]
        rest_cols = self._indices.reshape(self.n, per_row)[:, in_row]
        position = np.full(self.q, -1)
        position[rest] = np.arange(len(rest))
        self._blocked = {"big": big, "k": k, "m": self.blocks[big][2], "at": at,
                         "first": first, "rest": rest, "in_row": in_row,
                         "rest_idx": position[rest_cols].ravel(),
                         "rest_pos": np.ascontiguousarray(position[rest_cols], dtype=np.int64),
                         "order": np.argsort(self.blocks[big][1], kind="stable"),
                         "level_start": np.concatenate([[0], np.cumsum(np.bincount(
                             self.blocks[big][1], minlength=self.blocks[big][2]))]),
                         "rest_ptr": np.arange(self.n + 1) * len(in_row),
                         "codes": self.blocks[big][1]}  # fmt: skip

    def _blocked_factor(self, ZL, sqrt_w) -> BlockedFactor:
        b = self._blocked
        V = ZL.data.reshape(self.n, -1) * sqrt_w[:, None]
        out = assemble(V, b["at"], b["k"], b["in_row"].astype(np.int64), b["rest_pos"],
                       b["order"], b["level_start"].astype(np.int64), len(b["rest"]))  # fmt: skip
        return BlockedFactor(*out, b["first"], b["rest"])

    def z_lambda(self, theta) -> sp.csr_matrix:
        """``Z Lambda(theta)`` (n x q, sparse)."""
        data = [Z @ T for (Z, _, _), T in zip(self.blocks, self.factors(theta), strict=True)]
        values = np.hstack(data).ravel() if data else np.zeros(0)
        return sp.csr_matrix((values, self._indices, self._indptr), shape=(self.n, self.q))

    # -- pieces ------------------------------------------------------------------------
    def _mu(self, eta):
        return self.family.linkinv(eta)

    def _pdev(self, mu, u) -> float:
        return float(np.sum(self.family.dev_resid(self.y, mu, self.weights)) + u @ u)

    def _weights(self, eta, mu):
        """Square roots of the working weights and the working residual ``(y-mu)/mu_eta``."""
        mu_eta = self.family.mu_eta(eta)
        sqrt_w = mu_eta * np.sqrt(self.weights / self.family.variance(mu))
        return sqrt_w, (self.y - mu) / mu_eta

    def _scaled(self, ZL, sqrt_w) -> sp.csr_matrix:
        """``diag(sqrt_w) Z Lambda`` (same pattern)."""
        per_row = self._indptr[1] if self.n else 0
        return sp.csr_matrix((ZL.data * np.repeat(sqrt_w, per_row), ZL.indices, ZL.indptr),
                             shape=ZL.shape)  # fmt: skip

    def _system(self, ZL, sqrt_w):
        WZL = self._scaled(ZL, sqrt_w)
        if self._blocked is not None:
            factor = self._blocked_factor(ZL, sqrt_w)
            return (factor, factor.logdet), WZL
        A = (WZL.T @ WZL).tocsc() + sp.identity(self.q, format="csc")
        return _factor(A.tocsc()), WZL

    # -- PIRLS -------------------------------------------------------------------------
    def pirls(self, theta, beta=None, u0=None, tol: float = 1e-12, maxit: int = 200) -> PirlsState:
        """The conditional mode of ``u`` at ``theta`` and ``beta`` (``beta=None``: of ``u``
        and ``beta`` jointly, lme4's ``nAGQ = 0`` step)."""
        ZL = self.z_lambda(theta)
        joint = beta is None
        # Fisher scoring converges only linearly for the negative binomial's log link (not
        # canonical): its modes go to 1e-12, else the Hessian of the deviance by finite
        # differences (the SEs) is off by 1e-3 (measured on grouseticks)
        step_tol = 1e-12 if self.family.negative_binomial else 1e-8
        u = self._u.copy() if u0 is None else np.asarray(u0, float).copy()
        if joint:
            beta = getattr(self, "_beta", None)
            if beta is None:
                beta = self._start_beta()
        beta = np.asarray(beta, float).copy()
        fixed = self.offset + self.X @ beta
        eta = fixed + ZL @ u
        mu = self._mu(eta)
        old = self._pdev(mu, u)
        if not np.isfinite(old):
            u = np.zeros(self.q)
            eta = fixed
            mu = self._mu(eta)
            old = self._pdev(mu, u)
        for it in range(1, maxit + 1):  # noqa: B007 (the count is kept)
            sqrt_w, resid = self._weights(eta, mu)
            (lu, _), WZL = self._system(ZL, sqrt_w)
            wz = sqrt_w * (resid + ZL @ u + (self.X @ beta if joint else 0.0))
            if joint:
                WX = sqrt_w[:, None] * self.X
                ZtX = np.asarray(WZL.T @ WX)
                AinvZtX = lu.solve(ZtX) if self.q else ZtX
                rhs_u = WZL.T @ wz
                schur = WX.T @ WX - ZtX.T @ AinvZtX
                beta_new = scipy.linalg.solve(schur, WX.T @ wz - AinvZtX.T @ rhs_u,
                                              assume_a="pos")  # fmt: skip
                u_new = lu.solve(rhs_u - ZtX @ beta_new)
            else:
                beta_new = beta
                u_new = lu.solve(WZL.T @ wz)
            du, db = u_new - u, beta_new - beta
            for _ in range(30):  # step halving
                u_try, b_try = u + du, beta + db
                eta_try = self.offset + self.X @ b_try + ZL @ u_try
                mu_try = self._mu(eta_try)
                pdev = self._pdev(mu_try, u_try)
                if np.isfinite(pdev) and pdev <= old * (1 + 1e-15) + 1e-15:
                    break
                du, db = du / 2, db / 2
            else:
                raise PirlsError("PIRLS step halving failed to reduce the penalised deviance")
            u, beta, eta, mu = u_try, b_try, eta_try, mu_try
            change = abs(old - pdev) / max(pdev, 1e-300)
            small = max(np.max(np.abs(du), initial=0.0), np.max(np.abs(db), initial=0.0))
            old = pdev
            if change < tol and (small < step_tol or (change == 0.0 and small < 1e-10)):
                break
        else:
            raise PirlsError(f"PIRLS did not converge in {maxit} iterations")
        sqrt_w, _ = self._weights(eta, mu)
        (lu, ldL2), _ = self._system(ZL, sqrt_w)
        self._u = u
        if joint:
            self._beta = beta
        return PirlsState(u, beta, eta, mu, ldL2, lu, ZL, sqrt_w, it)

    def _start_beta(self) -> np.ndarray:
        """A GLM's start: beta of ``g((y w + 0.5) / (w + 1))`` regressed on X (mustart as
        R's binomial family; counts shifted by 0.1)."""
        if self.family.binomial:
            mu = (self.weights * self.y + 0.5) / (self.weights + 1.0)
        elif self.family.counts:
            mu = self.y + 0.1
        else:
            mu = self.y
        eta = self.family.linkfun(mu) - self.offset
        return np.linalg.lstsq(self.X, eta, rcond=None)[0]

    # -- deviances ---------------------------------------------------------------------
    def laplace(self, state: PirlsState) -> float:
        """lme4's Laplace deviance at a PIRLS mode (-2 log-likelihood)."""
        return (self.family.aic_deviance(self.y, state.mu, self.weights)
                + float(state.u @ state.u) + state.ldL2)  # fmt: skip

    def agq(self, state: PirlsState, codes: np.ndarray, n_levels: int, n_agq: int) -> float:
        """lme4's adaptive Gauss-Hermite deviance for one scalar random-effects term."""
        fam, y, wt = self.family, self.y, self.weights
        a_diag = 1.0 + np.bincount(codes, (state.sqrt_w * state.ZL.sum(axis=1).A1) ** 2,
                                   minlength=n_levels)  # fmt: skip
        sd = 1.0 / np.sqrt(a_diag)
        devc0 = state.u**2 + np.bincount(codes, fam.dev_resid(y, state.mu, wt), minlength=n_levels)
        zl = state.ZL.sum(axis=1).A1  # one column per row
        nodes, weights = gauss_hermite(n_agq)
        mult = np.zeros(n_levels)
        for z, w in zip(nodes, weights, strict=True):
            if z == 0:
                mult += w
                continue
            shift = z * sd
            eta = state.eta + zl * shift[codes]
            devc = (state.u + shift) ** 2 + np.bincount(
                codes, fam.dev_resid(y, fam.linkinv(eta), wt), minlength=n_levels)
            ldnorm = -0.5 * z * z - np.log(SQRT_2PI)
            mult += np.exp(-0.5 * (devc - devc0) - ldnorm) * w / SQRT_2PI
        return float(np.sum(devc0) + state.ldL2 - 2.0 * np.sum(np.log(mult)))

    def unscaled_vcov(self, state: PirlsState) -> np.ndarray:
        """``(X'WX - X'W Z Lambda A^-1 Lambda'Z'W X)^-1`` at the mode (lme4's ``unsc``,
        the RX-based covariance of beta)."""
        WX = state.sqrt_w[:, None] * self.X
        WZL = self._scaled(state.ZL, state.sqrt_w)
        ZtX = np.asarray(WZL.T @ WX)
        schur = WX.T @ WX - (ZtX.T @ state.factor.solve(ZtX) if self.q else 0.0)
        return np.linalg.inv(schur)
