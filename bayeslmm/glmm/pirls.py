"""Penalised iteratively re-weighted least squares (PIRLS) and lme4's GLMM deviances.

The model is ``eta = offset + X beta + Z Lambda(theta) u`` with spherical random effects
``u ~ N(0, I)`` and a response family with link ``g(mu) = eta``. For given ``theta`` (and
``beta``, or jointly with it) PIRLS finds the conditional mode of ``u`` by Fisher scoring
on the penalised deviance ``sum(dev_resid) + |u|^2``, halving steps that do not reduce it
(lme4's ``pwrssUpdate``; with ``beta`` free, the fixed effects' rows of the system are
eliminated through the Schur complement ``X'WX - RZX'RZX``, ``RZX = L^-1 Lambda'Z'WX``, as
lme4's ``nAGQ = 0`` step and MixedModels.jl's ``pirls!``). At the mode, with
``A = Lambda'Z'W Z Lambda + I`` and ``log|A| = ldL2``:

- Laplace (``nAGQ = 1``): ``-2 sum(log p(y | mu)) + |u|^2 + ldL2`` (lme4's
  ``glmResp::Laplace``: the family's ``aic`` term holds every constant), so the deviance is
  ``-2 logLik``;
- adaptive Gauss-Hermite (``nAGQ > 1``, one scalar random effect): lme4's ``glmerAGQ``,
  ``sum(devc0) + ldL2 - 2 sum(log(mult))`` with ``devc0`` per level the squared mode plus
  the level's deviance residuals, and ``mult`` the quadrature of the level's conditional
  density around its mode, scaled by its conditional SD ``1 / L_jj``.

``A`` is the package's one blocked Cholesky (:mod:`bayeslmm.gaussian.blocked`): one node
per level of every grouping factor, the pattern of ``L`` made once by
:func:`~bayeslmm.gaussian.blocked.symbolic`; every PIRLS iteration writes the weighted node
blocks of ``Z'WZ`` into the values the blocked kernels read and factors ``A`` with
:func:`~bayeslmm.gaussian.blocked.factorize`. The whole iteration runs in one numba kernel
(:func:`bayeslmm.glmm.kernels.pirls_run`), warm-started at the previous mode.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import BayesLMMError
from ..gaussian.blocked import (
    FACTORED_FIELDS,
    Factored,
    NodeBlocks,
    apply_factor,
    selected_inverse,
    solve_lower,
    solve_upper,
    symbolic,
    typed_fields,
)
from ..spec.family import Family
from . import kernels as K

SQRT_2PI = float(np.sqrt(2.0 * np.pi))


class PirlsError(BayesLMMError, ArithmeticError):
    """PIRLS did not converge (step halving failed or values not finite)."""


@functools.lru_cache(maxsize=32)
def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite.hermgauss(n)
    z, w = x * np.sqrt(2.0), w / w.sum()
    z, w = (z - z[::-1]) / 2.0, (w + w[::-1]) / 2.0
    z.flags.writeable = w.flags.writeable = False
    return z, w


def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """lme4's ``GHrule(n)``: nodes and weights of an ``n``-point rule for integrals against
    the standard normal density (weights sum to 1), made exactly symmetric (computed once
    per ``n``: 0.6 ms, more than the quadrature itself)."""
    z, w = _gauss_hermite(int(n))
    return z.copy(), w.copy()


class PirlsFactor:
    """The blocked Cholesky factor ``L`` of ``A = Lambda'Z'WZ Lambda + I`` at a PIRLS mode
    (the blocked kernels' sparse node blocks ``Lval`` and dense trailing block ``LD``);
    ``solve`` takes one right-hand side or a matrix of them, rows in lme4's order of
    ``u``."""

    def __init__(self, problem: GlmmProblem, Lval: np.ndarray, LD: np.ndarray, logdet: float):
        self.problem, self.Lval, self.LD, self.logdet = problem, Lval, LD, float(logdet)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        rhs = np.asarray(rhs, float)
        flat = rhs.ndim == 1
        perm = self.problem.perm
        R = np.ascontiguousarray((rhs[:, None] if flat else rhs)[perm])
        fs = self.problem.fs
        solve_lower(self.Lval, self.LD, R, fs)
        solve_upper(self.Lval, self.LD, R, fs)
        out = np.empty_like(R)
        out[perm] = R
        return out[:, 0] if flat else out


@dataclass
class PirlsState:
    """The conditional mode and what the deviances need."""

    u: np.ndarray  # lme4's order: block after block, level after level, term after term
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    ldL2: float  # log|A|
    factor: PirlsFactor  # the blocked Cholesky factor of A
    w: np.ndarray  # the working weights at the mode
    T: np.ndarray  # the relative factors by grouping factor (F, qmax, qmax)
    aic: float  # -2 sum(log p(y | mu))
    iterations: int

    @property
    def sqrt_w(self) -> np.ndarray:
        """Square roots of the working weights."""
        return np.sqrt(self.w)


class GlmmProblem:
    """One GLMM's data: ``y`` (proportion for a binomial), prior ``weights``, ``offset``,
    ``X``, the random-effects blocks and the theta -> per-block factors ``T_k`` map, laid
    out for the blocked Cholesky: blocks with the same level codes form one grouping
    factor, the factors in decreasing order of levels (as
    :class:`~bayeslmm.gaussian.statistics.BlockedStats`), one node per level.

    Parameters
    ----------
    X
        Fixed-effects matrix (n, p).
    blocks
        Per random term ``(Z_k, codes_k, n_levels_k)``: its (n, k) columns and level codes;
        ``u`` is reported block by block, level-major (lme4's order within a term).
    factors
        theta -> list of the lower-triangular ``T_k`` (k x k) per block.
    family
        The response family.
    y, weights, offset
        Per row.
    """

    def __init__(self, X, blocks, factors, family: Family, y, weights, offset):
        self.X = np.ascontiguousarray(X, dtype=float)
        self.blocks = [(np.asarray(Z, float), np.asarray(c, np.int64), int(m))
                       for Z, c, m in blocks]  # fmt: skip
        self.factors = factors
        self.family = family
        self.y = np.ascontiguousarray(y, dtype=float)
        self.weights = np.ascontiguousarray(weights, dtype=float)
        self.offset = np.ascontiguousarray(offset, dtype=float)
        self.n, self.p = self.X.shape
        self.q = sum(Z.shape[1] * m for Z, _, m in self.blocks)
        self._layout()
        self._u = np.zeros(self.q)  # the warm start, node numbering

    def _layout(self) -> None:
        """Grouping factors, nodes, the node blocks of ``Z'Z`` each row adds to, the
        symbolic factorisation and the permutation to lme4's order."""
        groups: list[list[int]] = []
        for k, (_, codes, m) in enumerate(self.blocks):
            for g in groups:
                _, c0, m0 = self.blocks[g[0]]
                if m0 == m and np.array_equal(c0, codes):
                    g.append(k)
                    break
            else:
                groups.append([k])
        groups.sort(key=lambda g: -self.blocks[g[0]][2])  # stable: ties in formula order
        self.groups = groups
        F = len(groups)
        self._levels = [self.blocks[g[0]][2] for g in groups]
        q_f = [sum(self.blocks[k][0].shape[1] for k in g) for g in groups]
        levels = [self.blocks[g[0]][2] for g in groups]
        first = np.concatenate([[0], np.cumsum(levels)]).astype(np.int64)
        node_factor = np.repeat(np.arange(F), levels).astype(np.int64)
        size = np.repeat(np.asarray(q_f, dtype=np.int64), levels)
        noffset = np.concatenate([[0], np.cumsum(size)]).astype(np.int64)
        self.qmax = max(q_f, default=0)
        self.Zr = np.ascontiguousarray(
            np.hstack([self.blocks[k][0] for g in groups for k in g])
            if groups else np.zeros((self.n, 0)))  # fmt: skip
        self.colstart = np.concatenate([[0], np.cumsum(q_f)]).astype(np.int64)
        codes = [self.blocks[g[0]][1] for g in groups]
        self.node_of = np.ascontiguousarray(
            np.stack([first[f] + codes[f] for f in range(F)], axis=1)
            if F else np.zeros((self.n, 0), np.int64), dtype=np.int64)  # fmt: skip
        # node pairs: each factor's levels, each pair of levels of two factors sharing a row
        pi, pj, row_old, fa, fb, count = [], [], [], [], [], 0
        for a in range(F):
            for b in range(a, F):
                if a == b:
                    lb = la = np.arange(levels[a])
                    where = codes[a]
                else:
                    key = codes[b] * levels[a] + codes[a]
                    uniq, where = np.unique(key, return_inverse=True)
                    lb, la = uniq // levels[a], uniq % levels[a]
                pi.append(first[b] + lb)
                pj.append(first[a] + la)
                row_old.append(count + where.ravel())
                count += len(lb)
                fa.append(a)
                fb.append(b)
        if F:
            pair_i = np.concatenate(pi).astype(np.int64)
            pair_j = np.concatenate(pj).astype(np.int64)
        else:
            pair_i = pair_j = np.zeros(0, np.int64)
        order = np.lexsort((pair_i, pair_j))  # column-major, as BlockedStats
        new = np.empty(len(order), dtype=np.int64)
        new[order] = np.arange(len(order))
        pair_i, pair_j = pair_i[order], pair_j[order]
        self.row_pair = np.ascontiguousarray(
            np.stack([new[r] for r in row_old], axis=1)
            if row_old else np.zeros((self.n, 0), np.int64), dtype=np.int64)  # fmt: skip
        self.pair_fa = np.asarray(fa, dtype=np.int64)
        self._saturated: dict = {}
        self.pair_fb = np.asarray(fb, dtype=np.int64)
        widths = size[pair_i] * size[pair_j]
        pair_ptr = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        #: where each row's weighted products go: the first value of its pairs' blocks
        self.row_ptr = np.ascontiguousarray(pair_ptr[self.row_pair], dtype=np.int64)
        nodes = NodeBlocks(size, noffset, node_factor, pair_i, pair_j, pair_ptr,
                           np.zeros(pair_ptr[-1]))  # fmt: skip
        pattern = symbolic(nodes, [int(f) for f in first[1:F]])
        Q, p = int(noffset[-1]), self.p
        values = {"size": size, "offset": noffset, "node_factor": node_factor,
                  "pair_i": pair_i, "pair_j": pair_j, "pair_ptr": pair_ptr,
                  "pair_val": nodes.pair_val, "pair_pos": pattern.pair_pos,
                  "colptr": pattern.colptr, "rowidx": pattern.rowidx,
                  "blockptr": pattern.blockptr, "first": pattern.first,
                  "t": pattern.dense_start, "base": pattern.base, "m": pattern.m,
                  "ZtX": np.zeros((Q, p)), "Zty": np.zeros(Q), "XtX": np.zeros((p, p)),
                  "Xty": np.zeros(p), "yty": 0.0, "n": float(self.n)}  # fmt: skip
        #: the blocked kernels' input; its ``pair_val`` is rewritten with ``Z'WZ`` by PIRLS
        self.fs: Factored = typed_fields(Factored, FACTORED_FIELDS, values)
        # node numbering -> lme4's (block after block, level after level, term after term)
        starts = np.cumsum([0] + [Z.shape[1] * m for Z, _, m in self.blocks])
        perm = np.empty(Q, dtype=np.int64)
        for f, g in enumerate(groups):
            column = 0
            lv = np.arange(levels[f])[:, None]
            for k in g:
                qk = self.blocks[k][0].shape[1]
                node = noffset[first[f] + lv] + column + np.arange(qk)
                perm[node.ravel()] = (starts[k] + lv * qk + np.arange(qk)).ravel()
                column += qk
        self.perm = perm

    def factor_stack(self, theta) -> np.ndarray:
        """The relative factors by grouping factor (its blocks' ``T_k`` on the diagonal):
        (F, qmax, qmax)."""
        Ts = self.factors(np.asarray(theta, float))
        T = np.zeros((len(self.groups), self.qmax, self.qmax))
        for f, g in enumerate(self.groups):
            c = 0
            for k in g:
                q = Ts[k].shape[0]
                T[f, c : c + q, c : c + q] = Ts[k]
                c += q
        return T

    def _saturated_loglik(self, family: int, theta: float) -> float:
        """The log-likelihood at ``mu = y`` (``-2 logLik = deviance - 2`` this), kept per
        family and dispersion."""
        key = (family, theta)
        if key not in self._saturated:
            if len(self._saturated) > 64:  # the negative binomial's theta while it is fitted
                self._saturated.clear()
            self._saturated[key] = float(K.saturated_loglik(family, theta, self.y, self.weights))
        return self._saturated[key]

    def _codes(self) -> tuple[int, int, float]:
        fam = self.family
        theta = float(fam.theta) if fam.negative_binomial else 1.0
        return K.FAMILY_CODES[fam.name], K.LINK_CODES[fam.link.name], theta

    # -- PIRLS -------------------------------------------------------------------------
    def pirls(self, theta, beta=None, u0=None, tol: float = 1e-12, maxit: int = 200) -> PirlsState:
        """The conditional mode of ``u`` at ``theta`` and ``beta`` (``beta=None``: of ``u``
        and ``beta`` jointly, lme4's ``nAGQ = 0`` step); ``u0`` (lme4's order) starts it,
        else the last mode."""
        T = self.factor_stack(theta)
        joint = beta is None
        # modes to 1e-11: log|A| moves with the mode to first order, and the deviance's
        # Hessian by finite differences (step 1e-4, the SEs) needs it to ~1e-11 (modes to
        # 1e-8 left VerbAgg's Hessian indefinite)
        step_tol = 1e-11
        if u0 is None:
            u = self._u.copy()
        else:
            u = np.ascontiguousarray(np.asarray(u0, float)[self.perm])
        if joint:
            beta = getattr(self, "_beta", None)
            if beta is None:
                beta = self._start_beta()
        beta = np.ascontiguousarray(beta, dtype=float)
        family, link, nb_theta = self._codes()
        status, u, beta, eta, mu, w, ldL2, Lval, LD, it, dev = K.pirls_run(
            family, link, nb_theta, self.y, self.weights, self.offset, self.X, beta, u,
            joint, self.Zr, self.colstart, self.node_of, self.row_ptr, self.pair_fa,
            self.pair_fb, T, self.fs, float(tol), float(step_tol), int(maxit))  # fmt: skip
        if status == K.NOT_POSITIVE_DEFINITE:
            raise PirlsError("the penalised weighted system is not positive definite")
        if status == K.HALVING_FAILED:
            raise PirlsError("PIRLS step halving failed to reduce the penalised deviance")
        if status == K.NOT_CONVERGED:
            raise PirlsError(f"PIRLS did not converge in {maxit} iterations")
        self._u = u
        if joint:
            self._beta = beta
        aic = dev - 2.0 * self._saturated_loglik(family, nb_theta)
        out = np.empty_like(u)
        out[self.perm] = u
        return PirlsState(out, beta, eta, mu, float(ldL2), PirlsFactor(self, Lval, LD, ldL2),
                          w, T, float(aic), int(it))  # fmt: skip

    def pirls_start(self, u: np.ndarray | None = None) -> np.ndarray:
        """The mode the next PIRLS starts from (node numbering; a copy), after setting it
        to ``u`` where given."""
        if u is not None:
            self._u = np.array(u, dtype=float)
        return self._u.copy()

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
        return state.aic + float(state.u @ state.u) + state.ldL2

    def agq(self, state: PirlsState, codes: np.ndarray, n_levels: int, n_agq: int) -> float:
        """lme4's adaptive Gauss-Hermite deviance for one scalar random-effects term."""
        family, link, nb_theta = self._codes()
        zl = np.ascontiguousarray(self.Zr[:, 0] * state.T[0, 0, 0])
        nodes, weights = gauss_hermite(n_agq)
        return float(K.agq_deviance(family, link, nb_theta, self.y, self.weights, state.eta,
                                    state.u, state.mu, state.w, zl,
                                    np.ascontiguousarray(codes, dtype=np.int64), state.ldL2,
                                    nodes, weights))  # fmt: skip

    @property
    def canonical(self) -> bool:
        """Is the link canonical (logit binomial, log Poisson)? The Laplace deviance then
        has the exact gradient of :meth:`laplace_gradient`."""
        fam = self.family
        logit = fam.binomial and fam.link.name == "logit"
        return logit or (fam.name == "poisson" and fam.link.name == "log")

    def _theta_positions(self, n_theta: int) -> tuple[np.ndarray, ...]:
        """Where each theta component sits in :meth:`factor_stack` (factor, row, column)."""
        if getattr(self, "_positions", None) is None or len(self._positions[0]) != n_theta:
            where = [np.argwhere(self.factor_stack(np.eye(n_theta)[i]) != 0)[0]
                     for i in range(n_theta)]  # fmt: skip
            self._positions = tuple(np.array(where, dtype=np.int64).reshape(-1, 3).T)
        return self._positions

    def laplace_gradient(self, state: PirlsState, n_theta: int,
                         joint: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """The exact gradient of :meth:`laplace` at a PIRLS mode over theta and (unless
        ``joint``: beta from PIRLS) beta, for a canonical link
        (:func:`~bayeslmm.glmm.kernels.laplace_gradient`)."""
        if not self.canonical:
            raise ValueError("the exact Laplace gradient needs a canonical link")
        family, _, _ = self._codes()
        u = np.ascontiguousarray(state.u[self.perm])
        G, g_beta = K.laplace_gradient(family, self.y, self.weights, self.X, self.Zr,
                                       self.colstart, self.node_of, self.row_pair,
                                       self.row_ptr, self.pair_fa, self.pair_fb, state.T,
                                       self.fs, u, state.mu, state.w, state.factor.Lval,
                                       state.factor.LD, bool(joint))  # fmt: skip
        f, r, c = self._theta_positions(n_theta)
        return G[f, r, c], g_beta

    def conditional_covariances(self, state: PirlsState) -> list[np.ndarray]:
        """Per random block (formula order), each level's conditional covariance of its
        random effects ``b = Lambda u`` at the mode, ``T A^-1_jj T'`` (levels, k, k): lme4's
        ``ranef(condVar = TRUE)`` "postVar", from the mode's factor by the selected inverse
        (the diagonal node blocks of ``A^-1``)."""
        fs = self.fs
        Zval, ZD = selected_inverse(state.factor.Lval, state.factor.LD, fs)
        out: list[np.ndarray | None] = [None] * len(self.blocks)
        first = 0
        for f, g in enumerate(self.groups):
            q = int(self.colstart[f + 1] - self.colstart[f])
            nodes = first + np.arange(self._levels[f])
            first += self._levels[f]
            S = np.empty((len(nodes), q, q))
            sparse = nodes < fs.t
            starts = fs.blockptr[fs.colptr[nodes[sparse]]]
            S[sparse] = Zval[starts[:, None] + np.arange(q * q)].reshape(-1, q, q)
            at = fs.offset[nodes[~sparse]] - fs.base
            k = np.arange(q)
            S[~sparse] = ZD[at[:, None, None] + k[None, :, None], at[:, None, None] + k]
            T = state.T[f, :q, :q]
            cov = T @ S @ T.T
            column = 0
            for b in g:
                qk = self.blocks[b][0].shape[1]
                out[b] = cov[:, column : column + qk, column : column + qk].copy()
                column += qk
        return out

    def unscaled_vcov(self, state: PirlsState) -> np.ndarray:
        """``(X'WX - RZX'RZX)^-1``, ``RZX = L^-1 Lambda'Z'WX``, at the mode (lme4's
        ``unsc``, the RX-based covariance of beta), from the mode's blocked factor."""
        WX = np.ascontiguousarray(state.w[:, None] * self.X)
        fs = self.fs
        Q = int(fs.offset[-1])
        RZX = apply_factor(state.T, K.z_transpose(self.Zr, self.colstart, self.node_of,
                                                  fs.offset, WX, Q),
                           fs.size, fs.offset, fs.node_factor, True)  # fmt: skip
        solve_lower(state.factor.Lval, state.factor.LD, RZX, fs)
        return np.linalg.inv(self.X.T @ WX - RZX.T @ RZX)
