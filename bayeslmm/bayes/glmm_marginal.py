"""A GLMM's likelihood of each level of one grouping factor with its effects integrated out.

For the levels ``g`` of one grouping factor with ``q`` terms, per posterior (or proposal)
draw of the fixed part ``eta0`` of the linear predictor (``X beta + offset`` plus, where
other factors exist, their effects) and of the factor's covariance ``D = L L'``,

``log p(y_g | eta0, D) = log integral prod_{i in g} p(y_i | eta0_i + z_i' L v) N(v; 0, I) dv``

with every constant of the log-pmf (``dbinom``, ``dpois``), so that the sum over levels is
the exact ``log p(y | beta, D)`` of a one-factor model. The integrand is log-concave
(binomial with the logit, probit or cloglog link; Poisson with the log link), and Newton's
method with step halving finds its mode ``v_hat`` and the curvature ``H`` there, level by
level and draw by draw at once (vectorised numpy). Then:

- ``q <= 3``: adaptive Gauss-Hermite quadrature (Liu & Pierce 1994; lme4's ``nAGQ`` for
  ``q = 1``), the nodes at ``v_hat + sqrt(2) C t_k`` with ``C C' = (-H)^-1`` (a tensor
  grid for ``q > 1``, :data:`AGQ_NODES` per dimension). It is run with ``n`` and ``2 n``
  nodes per dimension; the ``2 n``-node value is returned and the largest difference
  between the two is its error bound (:attr:`Integrated.error`). One node is Laplace's
  approximation.
- ``q > 3``: importance sampling from a multivariate t (5 degrees of freedom) centred at
  the mode with scale ``(-H)^-1`` (the Laplace Gaussian with heavier tails), in antithetic
  pairs; the error is the Monte Carlo standard error of each ``log p_hat`` from the
  variance of the pair-averaged weights, with their effective sample size. ``log`` of an
  unbiased estimate is biased low by about half its variance: negligible where the error
  is small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, log_ndtr, logsumexp

from ..errors import ComparisonError
from ..jit import kernel
from ..spec.response import GlmResponse
from .row_likelihood import family_code, row_term

#: family codes (:data:`bayeslmm.bayes.row_likelihood.CODES`) integrated here
COVERED = {1: "logit", 2: "probit", 3: "cloglog", 4: "log"}
NODES = 16  # AGQ nodes of one effect per level; the values use twice as many
#: AGQ nodes per dimension by effects per level (tensor grids); importance sampling beyond
AGQ_NODES = {1: NODES, 2: 10, 3: 5}
IS_DRAWS = 1000  # importance draws per level and posterior draw (an even number)
T_DF = 5.0  # degrees of freedom of the importance proposal
CHUNK = 4_000_000  # rows x nodes (or importance draws) x draws handled at once
LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class GroupRows:
    """The rows of one grouping factor's levels, sorted by level.

    Attributes
    ----------
    order
        Original row index of every sorted row.
    starts
        First sorted row of each level.
    level
        Level of every sorted row.
    Z
        The factor's columns of ``Z`` (sorted rows, q).
    y, trials, const
        Successes (or counts), trials (1 for Poisson) and log-pmf constant per sorted row.
    code
        Family code (:data:`COVERED`).
    """

    order: np.ndarray
    starts: np.ndarray
    level: np.ndarray
    Z: np.ndarray
    y: np.ndarray
    trials: np.ndarray
    const: np.ndarray
    code: int

    @property
    def n_levels(self) -> int:
        return len(self.starts)

    @property
    def q(self) -> int:
        return self.Z.shape[1]

    @classmethod
    def build(cls, response: GlmResponse, Z: np.ndarray, codes: np.ndarray,
              n_levels: int) -> GroupRows:  # fmt: skip
        """From a GLMM's response and one factor's ``Z`` (n, q) and level codes."""
        code = family_code(response)
        if code not in COVERED:
            fam = response.family
            raise ComparisonError(
                f"integrating a GLMM's random effects out covers bernoulli/binomial (logit, "
                f"probit, cloglog) and poisson (log); not the {fam.name} family's "
                f"{fam.link.name} link"
            )
        codes = np.asarray(codes, np.int64)
        counts = np.bincount(codes, minlength=n_levels)
        if np.any(counts == 0):
            raise ComparisonError("a level of the grouping factor has no rows")
        order = np.argsort(codes, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        trials = np.round(np.asarray(response.weights, float))
        trials = np.broadcast_to(trials, np.shape(response.y)).astype(float)
        if code <= 3:
            y = np.round(np.asarray(response.y, float) * trials)
            const = gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1)
        else:
            y = np.asarray(response.y, float)
            const = -gammaln(y + 1)
        Z = np.asarray(Z, float).reshape(len(codes), -1)
        return cls(order, starts, codes[order], np.ascontiguousarray(Z[order]), y[order],
                   trials[order], const[order], int(code))  # fmt: skip

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Sums over each level's rows along axis 1 of ``values`` (.., n, ...)."""
        return np.add.reduceat(values, self.starts, axis=1)


def row_loglik(code: int, eta: np.ndarray, y: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Each row's log-pmf without its constant (:func:`row_terms` without derivatives)."""
    if code == 1:
        return y * eta - n * np.logaddexp(0.0, eta)
    if code == 4:
        with np.errstate(over="ignore"):
            return y * eta - np.exp(eta)
    return row_terms(code, eta, y, n)[0]


def row_terms(code: int, eta: np.ndarray, y: np.ndarray, n: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Each row's log-pmf without its constant and its first two derivatives in ``eta``;
    ``y`` and ``n`` broadcast against ``eta``."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if code == 1:  # logit
            p = 0.5 * (1.0 + np.tanh(0.5 * eta))  # the logistic, without overflow
            ll = y * eta - n * np.logaddexp(0.0, eta)
            return ll, y - n * p, -n * p * (1.0 - p)
        if code == 2:  # probit: log Phi and the inverse Mills ratio r = phi / Phi
            lp, lq = log_ndtr(eta), log_ndtr(-eta)
            lphi = -0.5 * eta * eta - 0.5 * LOG_2PI
            r1, r0 = np.exp(lphi - lp), np.exp(lphi - lq)
            ll = y * lp + (n - y) * lq
            d1 = y * r1 - (n - y) * r0
            d2 = -y * r1 * (eta + r1) - (n - y) * r0 * (r0 - eta)
            return ll, d1, d2
        if code == 3:  # cloglog: p = 1 - exp(-e), e = exp(eta)
            e = np.exp(np.minimum(eta, 700.0))
            big = e > 700.0
            em1 = np.expm1(np.where(big, 1.0, e))
            log_p = np.where(eta < -30.0, eta - 0.5 * e, np.log(-np.expm1(-e)))
            g = np.where(big, 0.0, e / em1)  # e / (exp(e) - 1), 1 at e = 0
            g = np.where(e < 1e-300, 1.0, g)
            dg = np.where(big | (e < 1e-300), 0.0,
                          e * (em1 - e * (em1 + 1.0)) / (em1 * em1))  # fmt: skip
            dg = np.where(np.isfinite(dg), dg, 0.0)
            ll = np.where(y > 0, y * log_p, 0.0) - (n - y) * e
            return ll, y * g - (n - y) * e, y * dg - (n - y) * e
        mu = np.exp(eta)  # Poisson, log link
        return y * eta - mu, y - mu, -mu


@dataclass(frozen=True)
class Integrated:
    """Per draw and level ``log p(y_g | ...)`` with how it was computed.

    Attributes
    ----------
    values
        (draws, levels).
    method
        ``"adaptive Gauss-Hermite quadrature"`` or ``"importance sampling"``.
    nodes
        AGQ nodes per dimension of the returned values (twice :data:`AGQ_NODES`), or
        importance draws per level and draw.
    error
        AGQ: the largest ``|AGQ(n) - AGQ(2 n)|`` over draws and levels; IS: the largest
        Monte Carlo standard error of one level's ``log p_hat``.
    total_error
        The largest over draws of the error of the sum over levels (AGQ: ``|sum of
        differences|``; IS: the square root of the summed variances).
    ess_min
        IS only: the smallest effective sample size of one level's weights (else None).
    q
        Effects per level.
    """

    values: np.ndarray
    method: str
    nodes: int
    error: float
    total_error: float
    ess_min: float | None = None
    q: int = 1

    def note(self) -> str:
        """One line saying what was done and its error."""
        if self.method.startswith("adaptive"):
            grid = f"{self.nodes}^{self.q} tensor-grid" if self.q > 1 else str(self.nodes)
            return (f"{self.method} with {grid} nodes per level (error bound: largest "
                    f"difference from {self.nodes // 2} nodes {self.error:.2e} per level, "
                    f"{self.total_error:.2e} summed over levels)")  # fmt: skip
        return (f"{self.method} from the Laplace mode (multivariate t, {T_DF:g} df, "
                f"{self.nodes} antithetic draws per level and draw; largest MC SE "
                f"{self.error:.2e} per level, {self.total_error:.2e} summed over levels; "
                f"smallest effective sample size {self.ess_min:.0f})")  # fmt: skip


def _eta(rows: GroupRows, eta0: np.ndarray, L: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``eta0 + z_i' L v_{level(i)}`` for v (S, G, q, ...) -> (S, n, ...)."""
    extra = (1,) * (v.ndim - 3)
    if rows.q == 1:  # one effect per level: no sum over terms
        u = L[:, 0, 0].reshape((-1, 1) + extra) * v[:, :, 0]
        return (eta0.reshape(eta0.shape + extra)
                + rows.Z[:, 0].reshape((1, -1) + extra) * u[:, rows.level])  # fmt: skip
    u = np.einsum("sab,sgb...->sga...", L, v)
    u_rows = u[:, rows.level]  # (S, n, q, ...)
    Z = rows.Z.reshape(rows.Z.shape + (1,) * (v.ndim - 3))
    return eta0.reshape(eta0.shape + (1,) * (v.ndim - 3)) + np.sum(Z[None] * u_rows, axis=2)


@kernel
def _node_loglik(code, eta0, Z, starts, u, y, n, const, out):
    """``out[s, g, k] = sum over level g's rows i of log p(y_i | eta0[s, i] + Z_i' u[s, g,
    :, k])`` (rows sorted by level, ``starts`` the first of each level), through the
    compiled sampler's own row log-pmf (:func:`~bayeslmm.bayes.row_likelihood.row_term`)."""
    S, G, q, K = u.shape
    N = y.shape[0]
    for s in range(S):
        for g in range(G):
            end = starts[g + 1] if g + 1 < G else N
            for k in range(K):
                total = 0.0
                for i in range(starts[g], end):
                    eta = eta0[s, i]
                    for a in range(q):
                        eta += Z[i, a] * u[s, g, a, k]
                    value, _ = row_term(code, eta, y[i], n[i])
                    total += value + const[i]
                out[s, g, k] = total if total == total else -np.inf


def _log_joint(rows: GroupRows, eta0: np.ndarray, L: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``sum_{i in g} log p(y_i | ..) + log N(v; 0, I)`` per level at v (S, G, q, K)."""
    q = v.shape[2]
    if v.ndim == 4:  # many points per level: the compiled row log-pmf
        u = np.ascontiguousarray(np.einsum("sab,sgbk->sgak", L, v))
        out = np.empty((v.shape[0], v.shape[1], v.shape[3]))
        _node_loglik(rows.code, np.ascontiguousarray(eta0), rows.Z, rows.starts, u, rows.y,
                     rows.trials, rows.const, out)  # fmt: skip
        return out - 0.5 * np.sum(v * v, axis=2) - 0.5 * q * LOG_2PI
    eta = _eta(rows, eta0, L, v)
    extra = (1,) * (v.ndim - 3)
    y = rows.y.reshape(rows.y.shape + extra)
    n = rows.trials.reshape(y.shape)
    ll = row_loglik(rows.code, eta, y, n) + rows.const.reshape(y.shape)
    ll = np.where(np.isnan(ll), -np.inf, ll)
    q = v.shape[2]
    return rows.sums(ll) - 0.5 * np.sum(v * v, axis=2) - 0.5 * q * LOG_2PI


def conditional_modes(rows: GroupRows, eta0: np.ndarray, L: np.ndarray,
                      iterations: int = 100, tol: float = 1e-10
                      ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Mode ``v_hat`` (S, G, q) of every level's standardised effects and the negative
    Hessian of the log integrand there (S, G, q, q), by Newton's method with step
    halving from ``v = 0``."""
    S, G, q = eta0.shape[0], rows.n_levels, rows.q
    v = np.zeros((S, G, q))
    eye = np.eye(q)
    y, n = rows.y, rows.trials
    ZZ = rows.Z[:, :, None] * rows.Z[:, None, :]  # (n, q, q)

    def derivatives(v):
        eta = _eta(rows, eta0, L, v)
        ll, d1, d2 = row_terms(rows.code, eta, y, n)
        grad = np.einsum("sba,sgb->sga", L, rows.sums(d1[:, :, None] * rows.Z[None])) - v
        info = rows.sums(-d2[:, :, None, None] * ZZ[None])  # (S, G, q, q)
        neg_h = np.einsum("sca,sgcd,sdb->sgab", L, info, L) + eye
        h = rows.sums(ll) - 0.5 * np.sum(v * v, axis=2)
        return h, grad, neg_h

    h, grad, neg_h = derivatives(v)
    for _ in range(iterations):
        step = np.linalg.solve(neg_h, grad[..., None])[..., 0]
        step = np.where(np.isfinite(step), step, 0.0)
        t = np.ones((S, G))
        for _ in range(30):  # halve where the log integrand would fall
            trial = v + t[..., None] * step
            h_new, grad_new, neg_h_new = derivatives(trial)
            worse = ~(h_new >= h - 1e-12 * np.abs(h))
            if not worse.any():
                break
            t = np.where(worse, 0.5 * t, t)
        v, h, grad, neg_h = trial, h_new, grad_new, neg_h_new
        if np.max(np.abs(t[..., None] * step)) < tol:
            break
    return v, neg_h


def integrate_levels(rows: GroupRows, eta0: np.ndarray, L: np.ndarray, *,
                     nodes: int = NODES, is_draws: int = IS_DRAWS,
                     rng: np.random.Generator | None = None) -> Integrated:  # fmt: skip
    """``log p(y_g | eta0, D = L L')`` per draw and level (module text).

    Parameters
    ----------
    rows
        The factor's rows (:meth:`GroupRows.build`).
    eta0
        (S, n) the rest of the linear predictor, rows in their original order.
    L
        (S, q, q) lower Cholesky factor of the factor's covariance per draw.
    nodes
        AGQ nodes (``q = 1``); the values use twice as many, the error compares.
    is_draws
        Importance draws per level and draw (``q > 1``).
    rng
        Source of the importance draws (``q > 1``).
    """
    eta0 = np.asarray(eta0, float)[:, rows.order]
    L = np.asarray(L, float).reshape(eta0.shape[0], rows.q, rows.q)
    if rows.q in AGQ_NODES:
        return _agq(rows, eta0, L, nodes if rows.q == 1 else AGQ_NODES[rows.q])
    return _importance(rows, eta0, L, is_draws, rng or np.random.default_rng())


def _chunks(S: int, per_draw: int):
    step = max(1, CHUNK // max(1, per_draw))
    for lo in range(0, S, step):
        yield slice(lo, min(S, lo + step))


def _agq(rows: GroupRows, eta0: np.ndarray, L: np.ndarray, nodes: int) -> Integrated:
    """Tensor-product AGQ in ``q`` dimensions, ``nodes`` and ``2 nodes`` per dimension, at
    ``v_hat + sqrt(2) C t`` with ``C C' = (-H)^-1``."""
    S, G, q = eta0.shape[0], rows.n_levels, rows.q
    rules = []
    for K in (nodes, 2 * nodes):
        t, w = np.polynomial.hermite.hermgauss(K)
        grid = np.stack(np.meshgrid(*[t] * q, indexing="ij"), -1).reshape(-1, q)
        log_w = np.stack(np.meshgrid(*[np.log(w)] * q, indexing="ij"), -1).reshape(-1, q)
        rules.append((grid, log_w.sum(axis=1) + np.sum(grid * grid, axis=1)))
    both = [np.empty((S, G)), np.empty((S, G))]
    for sl in _chunks(S, len(rows.y) * len(rules[1][0])):
        v_hat, neg_h = conditional_modes(rows, eta0[sl], L[sl])
        C = np.linalg.cholesky(np.linalg.inv(neg_h))  # (s, G, q, q)
        log_det = np.sum(np.log(np.diagonal(C, axis1=-2, axis2=-1)), axis=-1)
        for out, (grid, extra) in zip(both, rules, strict=True):
            v = v_hat[..., None] + math.sqrt(2.0) * np.einsum("sgab,kb->sgak", C, grid)
            f = _log_joint(rows, eta0[sl], L[sl], v)  # (s, G, K^q)
            out[sl] = log_det + 0.5 * q * math.log(2.0) + logsumexp(f + extra, axis=-1)
    diff = both[1] - both[0]
    return Integrated(both[1], "adaptive Gauss-Hermite quadrature", 2 * nodes,
                      float(np.max(np.abs(diff))), float(np.max(np.abs(diff.sum(axis=1)))),
                      q=q)


def _importance(rows: GroupRows, eta0: np.ndarray, L: np.ndarray, M: int,
                rng: np.random.Generator) -> Integrated:  # fmt: skip
    S, G, q = eta0.shape[0], rows.n_levels, rows.q
    half = max(1, M // 2)
    eps = rng.standard_normal((half, q))
    radius = np.sqrt(T_DF / rng.chisquare(T_DF, half))
    r = np.concatenate([eps * radius[:, None], -eps * radius[:, None]])  # (M, q) antithetic
    log_t = (gammaln((T_DF + q) / 2) - gammaln(T_DF / 2) - 0.5 * q * math.log(T_DF * math.pi)
             - 0.5 * (T_DF + q) * np.log1p(np.sum(r * r, axis=1) / T_DF))  # fmt: skip
    out, se, ess = np.empty((S, G)), np.empty((S, G)), np.empty((S, G))
    for sl in _chunks(S, len(rows.y) * 2 * half):
        v_hat, neg_h = conditional_modes(rows, eta0[sl], L[sl])
        C = np.linalg.cholesky(np.linalg.inv(neg_h))  # scale of the proposal (s, G, q, q)
        log_det = np.sum(np.log(np.diagonal(C, axis1=-2, axis2=-1)), axis=-1)
        v = v_hat[..., None] + np.einsum("sgab,mb->sgam", C, r)  # (s, G, q, M)
        lw = _log_joint(rows, eta0[sl], L[sl], v) - (log_t - log_det[..., None])
        m = len(r)
        out[sl] = logsumexp(lw, axis=-1) - math.log(m)
        top = np.max(lw, axis=-1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        w = np.exp(lw - top)
        pairs = 0.5 * (w[..., :half] + w[..., half:])
        mean = pairs.mean(axis=-1)
        se[sl] = np.sqrt(pairs.var(axis=-1, ddof=1) / half) / mean
        ess[sl] = w.sum(axis=-1) ** 2 / np.sum(w * w, axis=-1)
    return Integrated(out, "importance sampling", 2 * half, float(np.max(se)),
                      float(np.max(np.sqrt(np.sum(se * se, axis=1)))), float(np.min(ess)))


def block_cholesky(post, blocks, q: int, starts: list[int]) -> np.ndarray:
    """Every posterior draw's Cholesky factor (S, q, q) of one grouping factor's
    covariance, block diagonal over its random blocks (``starts``: each block's first
    column), from ``sd_L`` and the packed ``chol_L`` (or ``cor_L``)."""
    S = post.sizes["chain"] * post.sizes["draw"]
    L = np.zeros((S, q, q))
    for block, c0 in zip(blocks, starts, strict=True):
        k, label = block.n_terms, block.label
        sd = post[f"sd_{label}"].values.reshape(S, k)
        if not block.correlated:
            L[:, c0 + np.arange(k), c0 + np.arange(k)] = sd
            continue
        if f"chol_{label}" in post:
            lk = np.zeros((S, k, k))
            lk[:, *np.tril_indices(k)] = post[f"chol_{label}"].values.reshape(S, -1)
        else:
            R = np.broadcast_to(np.eye(k), (S, k, k)).copy()
            lower = np.tril_indices(k, k=-1)
            cor = post[f"cor_{label}"].values.reshape(S, -1)
            R[:, lower[0], lower[1]] = cor
            R[:, lower[1], lower[0]] = cor
            lk = sd[:, :, None] * np.linalg.cholesky(R)
        L[:, c0 : c0 + k, c0 : c0 + k] = lk
    return L
