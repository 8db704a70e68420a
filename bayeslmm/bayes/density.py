"""The marginal model's log density and gradient, hand-written and compiled with numba.

PyMC builds the same density (:func:`bayeslmm.bayes.marginal_graph.build_marginal_model`) as a
graph that nutpie or JAX must compile in every new process (about 10 s for nutpie's
numba backend, 1-3 s for JAX, ``benchmarks/results``). Here it is written once, with its
exact gradient, and numba caches the machine code on disk, so a fit pays only for
loading it. The priors are PyMC's, so the posterior is the same; ``tests/test_density.py``
checks the log density (through the change of variables) and gradient against PyMC's.

Parameters, in order: ``beta`` (p); per random block, the log SDs and, if correlated, the
canonical partial correlations of its correlation matrix ``R`` through ``atanh`` (Stan's
Cholesky-correlation transform: row ``i`` of ``chol(R)`` is ``w_ij = z_ij sqrt(c_ij)``,
``w_ii = sqrt(c_ii)``, ``c_ij = prod_{m<j} (1 - z_im^2)``, ``z = tanh``); ``log sigma``.
PyMC's ``LKJCholeskyCov`` samples the packed Cholesky factor of the covariance instead; SDs
and correlations apart give the same posterior a more nearly Gaussian shape, about 10%
more effective draws per draw on sleepstudy (docs/marginal.md). With ``D`` the level
covariance, ``T = chol(D) / sigma``, ``A_j = T'S_jT + I`` (``S_j = Z_j'Z_j``),
``P_j = T A_j^-1 T'`` and ``r_j = Z_j'(y_j - X_j beta)``:

    log p(y | beta, D, sigma) = -(n log(2 pi sigma^2) + sum_j log|A_j|
                                  + (||y - X beta||^2 - sum_j r_j'P_j r_j) / sigma^2) / 2

and, with ``V_j = sigma^2 (I + Z_j T T'Z_j')`` and ``e_j = y_j - X_j beta``,
``d/dD = sum_j (g_j g_j' - H_j) / 2`` (``g_j = Z_j'V_j^-1 e_j = (r_j - S_jP_jr_j) / sigma^2``,
``H_j = Z_j'V_j^-1 Z_j = (S_j - S_jP_jS_j) / sigma^2``), ``d/dbeta = X'V^-1 e`` and
``d/dsigma^2 = (e'V^-2 e - tr V^-1) / 2``: per-level sums of q x q products. With
``chol(D) = diag(sd) W``, ``d/dsd_i = sum_j (dL/dchol(D) W)_ij`` and the rows of ``W`` are
differentiated back to the partial correlations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numba
import numpy as np

from ..gaussian.statistics import GroupStats
from ..spec.design import Design
from ..spec.naming import ParameterNames
from .priors import Prior

# prior family codes of the compiled kernel, with their parameters in order
UNBOUNDED = {
    "Flat": (0, ()),
    "Normal": (1, ("mu", "sigma")),
    "StudentT": (2, ("nu", "mu", "sigma")),
    "Cauchy": (3, ("alpha", "beta")),
}
POSITIVE = {"HalfFlat": (10, ()), "HalfNormal": (11, ("sigma",)), "Exponential": (12, ("lam",)),
            "HalfStudentT": (13, ("nu", "sigma")), "HalfCauchy": (14, ("beta",)),
            "Gamma": (15, ("alpha", "beta")), "InverseGamma": (16, ("alpha", "beta")),
            "LogNormal": (17, ("mu", "sigma"))}  # fmt: skip
DEFAULTS = {"mu": 0.0, "sigma": 1.0}  # PyMC's defaults where a parameter may be left out
HEADER = 8
PRIOR_WIDTH = 5  # code, three parameters, log normalising constant
LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)


def _prior_row(prior: Prior, positive: bool) -> np.ndarray | None:
    """``[code, a, b, c, log constant]`` of a prior, or None if the kernel lacks it."""
    table = POSITIVE if positive else UNBOUNDED
    if prior.dist not in table:
        return None
    code, names = table[prior.dist]
    if set(prior.params) - set(names):
        return None
    try:
        a = [float(prior.params[k]) if k in prior.params else DEFAULTS[k] for k in names]
    except (KeyError, TypeError):
        return None
    row = np.zeros(PRIOR_WIDTH)
    row[0] = code
    row[1 : 1 + len(a)] = a
    row[4] = _log_constant(prior.dist, a)
    return row


def _log_constant(dist: str, a: list[float]) -> float:
    lg = math.lgamma
    if dist == "Normal":
        return -math.log(a[1]) - 0.5 * LOG_2PI
    if dist == "StudentT":
        nu = a[0]
        return lg((nu + 1) / 2) - lg(nu / 2) - 0.5 * math.log(nu * math.pi) - math.log(a[2])
    if dist == "Cauchy":
        return -math.log(math.pi * a[1])
    if dist == "HalfNormal":
        return 0.5 * math.log(2.0 / math.pi) - math.log(a[0])
    if dist == "Exponential":
        return math.log(a[0])
    if dist == "HalfStudentT":
        nu = a[0]
        return (math.log(2.0) + lg((nu + 1) / 2) - lg(nu / 2) - 0.5 * math.log(nu * math.pi)
                - math.log(a[1]))  # fmt: skip
    if dist == "HalfCauchy":
        return math.log(2.0) - math.log(math.pi * a[0])
    if dist in ("Gamma", "InverseGamma"):
        return a[0] * math.log(a[1]) - lg(a[0])
    if dist == "LogNormal":
        return -math.log(a[1]) - 0.5 * LOG_2PI
    return 0.0  # Flat, HalfFlat


def _lkj_log_constant(eta: float, n: int) -> float:
    """log normalising constant of the LKJ density, as PyMC writes it
    (``pymc.distributions.multivariate._lkj_normalizing_constant``)."""
    lg, log_pi = math.lgamma, math.log(math.pi)
    if eta == 1.0:
        result = sum(lg(2.0 * k) for k in range(1, (n - 1) // 2 + 1))
        if n % 2 == 1:
            return result + (0.25 * (n**2 - 1) * log_pi - 0.25 * (n - 1) ** 2 * math.log(2.0)
                             - (n - 1) * lg((n + 1) // 2))  # fmt: skip
        return result + (0.25 * n * (n - 2) * log_pi + 0.25 * (3 * n**2 - 4 * n) * math.log(2.0)
                         + n * lg(n / 2) - (n - 1) * lg(n))  # fmt: skip
    result = -(n - 1) * lg(eta + 0.5 * (n - 1))
    return result + sum(0.5 * k * log_pi + lg(eta + 0.5 * (n - 1 - k)) for k in range(1, n))


@dataclass(frozen=True)
class Layout:
    """Where each population parameter sits in the unconstrained vector."""

    p: int
    blocks: list[tuple[int, int, bool]]  # (first column, terms, correlated) per block
    starts: list[int]  # first unconstrained index of each block
    sigma: int  # index of log sigma

    @property
    def size(self) -> int:
        return self.sigma + 1

    @classmethod
    def from_design(cls, design: Design) -> Layout:
        blocks, starts, col, pos = [], [], 0, design.X.shape[1]
        for block in design.blocks:
            k = block.n_terms
            blocks.append((col, k, bool(block.correlated)))
            starts.append(pos)
            col += k
            pos += k * (k + 1) // 2 if block.correlated else k
        return cls(p=design.X.shape[1], blocks=blocks, starts=starts, sigma=pos)


@dataclass(frozen=True)
class MarginalDensity:
    """Everything the compiled kernel reads, packed in one float64 buffer.

    Build with :meth:`from_model`; ``None`` comes back where the kernel does not cover
    the model (nested factors, or a prior family it lacks), and the PyMC graph is used.
    """

    layout: Layout
    data: np.ndarray
    start: np.ndarray  # unconstrained starting point (before jitter)

    @classmethod
    def from_model(
        cls, design: Design, priors: dict[str, Prior], stats: object
    ) -> MarginalDensity | None:
        if not isinstance(stats, GroupStats):
            return None
        names = ParameterNames.from_design(design)
        layout = Layout.from_design(design)
        rows, start = [], np.zeros(layout.size)
        for j, name in enumerate(names.fixed):
            rows.append(_prior_row(priors[name], positive=False))
            start[j] = _location(priors[name])
        etas = []
        for (_, k, corr), first, sd_names, cor_name in zip(
            layout.blocks, layout.starts, names.sd, names.cor, strict=True
        ):
            for i, name in enumerate(sd_names):
                rows.append(_prior_row(priors[name], positive=True))
                if rows[-1] is None:  # a family or parametrisation the kernel lacks
                    return None
                start[first + i] = math.log(_scale(priors[name]))  # correlations start at 0
            if corr:
                prior = priors[cor_name]
                if set(prior.params) - {"eta"}:
                    return None
                eta = float(prior.params.get("eta", 1.0))
                etas.append((eta, _lkj_log_constant(eta, k)))
            else:
                etas.append((0.0, 0.0))
        rows.append(_prior_row(priors["sigma"], positive=True))
        if any(r is None for r in rows):
            return None
        start[layout.sigma] = math.log(_scale(priors["sigma"]))
        G, q, p = stats.n_groups, stats.q, stats.p
        header = np.array([0, G, q, p, stats.n, len(layout.blocks), stats.yty, 0.0])
        block_rows = [(c, k, float(corr), s) for (c, k, corr), s in
                      zip(layout.blocks, layout.starts, strict=True)]  # fmt: skip
        parts = [header, stats.XtX.ravel(), stats.Xty.ravel(), stats.ZtZ.ravel(),
                 stats.ZtX.ravel(), stats.Zty.ravel(), np.asarray(block_rows, float).ravel(),
                 np.asarray(etas, float).ravel(), np.asarray(rows).ravel()]  # fmt: skip
        data = np.ascontiguousarray(np.concatenate(parts), dtype=np.float64)
        data[0] = data.size
        return cls(layout=layout, data=data, start=start)

    def logp_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Log density and its gradient at the unconstrained point ``x``."""
        grad = np.zeros(self.layout.size)
        value = logp_and_grad(np.ascontiguousarray(x, dtype=np.float64), self.data, grad)
        return value, grad

    def constrained(self, x: np.ndarray, design: Design) -> dict[str, np.ndarray]:
        """Posterior variables, named as PyMC names them, from unconstrained draws (..., k)."""
        lay = self.layout
        out: dict[str, np.ndarray] = {}
        if lay.p:
            out["beta"] = x[..., : lay.p]
        for (_, k, corr), first, block in zip(lay.blocks, lay.starts, design.blocks, strict=True):
            label = block.label
            if not corr:
                out[f"sd_{label}"] = np.exp(x[..., first : first + k])
                continue
            sd = np.exp(x[..., first : first + k])
            w = correlation_cholesky(x[..., first + k : first + k * (k + 1) // 2], k)
            corr_matrix = w @ np.swapaxes(w, -1, -2)
            lower = np.tril_indices(k, k=-1)
            out[f"chol_{label}"] = (sd[..., :, None] * w)[..., *np.tril_indices(k)]
            out[f"sd_{label}"] = sd
            out[f"cor_{label}"] = corr_matrix[..., lower[0], lower[1]]
        out["sigma"] = np.exp(x[..., lay.sigma])
        return out


def correlation_cholesky(y: np.ndarray, k: int) -> np.ndarray:
    """Cholesky factors (..., k, k) of the correlation matrices whose canonical partial
    correlations are ``tanh(y)`` (..., k(k-1)/2, the strict lower triangle row by row)."""
    z = np.tanh(y)
    w = np.zeros(y.shape[:-1] + (k, k))
    w[..., 0, 0] = 1.0
    pos = 0
    for i in range(1, k):
        rest = np.ones(y.shape[:-1])
        for j in range(i):
            w[..., i, j] = z[..., pos] * np.sqrt(rest)
            rest = rest * (1.0 - z[..., pos] ** 2)
            pos += 1
        w[..., i, i] = np.sqrt(rest)
    return w


def _location(prior: Prior) -> float:
    """PyMC's starting value of an unbounded prior (its location)."""
    return float(prior.params.get("mu", prior.params.get("alpha", 0.0)))


def _scale(prior: Prior) -> float:
    """A typical value of a positive prior, where its chain starts (log scale)."""
    par = prior.params
    if prior.dist == "Exponential":
        return 1.0 / float(par["lam"])
    if prior.dist == "Gamma":
        return float(par["alpha"]) / float(par["beta"])
    if prior.dist == "InverseGamma":
        return float(par["beta"]) / (float(par["alpha"]) + 1.0)
    if prior.dist == "LogNormal":
        return math.exp(float(par.get("mu", 0.0)))
    return float(par.get("sigma", par.get("beta", 1.0)))


# ---------------------------------------------------------------------------------------
# compiled kernel


@numba.njit(cache=True, error_model="numpy")
def _prior(row, x):
    """(log density, derivative) of one prior at x."""
    code = int(row[0])
    a, b, c, const = row[1], row[2], row[3], row[4]
    if code == 0 or code == 10:
        return 0.0, 0.0
    if code == 1:
        z = (x - a) / b
        return const - 0.5 * z * z, -z / b
    if code == 2:
        z = (x - b) / c
        return const - 0.5 * (a + 1.0) * math.log1p(z * z / a), -(a + 1.0) * z / (c * (a + z * z))
    if code == 3:
        z = (x - a) / b
        return const - math.log1p(z * z), -2.0 * z / (b * (1.0 + z * z))
    if code == 11:
        return const - 0.5 * (x / a) ** 2, -x / (a * a)
    if code == 12:
        return const - a * x, -a
    if code == 13:
        z = x / b
        return const - 0.5 * (a + 1.0) * math.log1p(z * z / a), -(a + 1.0) * x / (a * b * b + x * x)
    if code == 14:
        z = x / a
        return const - math.log1p(z * z), -2.0 * x / (a * a + x * x)
    if code == 15:
        return const + (a - 1.0) * math.log(x) - b * x, (a - 1.0) / x - b
    if code == 16:
        return const - (a + 1.0) * math.log(x) - b / x, -(a + 1.0) / x + b / (x * x)
    if code == 17:
        lx = math.log(x)
        z = (lx - a) / b
        return const - lx - 0.5 * z * z, -(1.0 + z / b) / x
    return math.nan, math.nan


# error_model="numpy": a division by zero (an SD whose exp underflowed) gives inf or nan,
# which the C entry reports as a rejected point, instead of raising inside nutpie's threads
@numba.njit(cache=True, error_model="numpy")
def logp_and_grad(x, data, grad):
    """Log density of the marginal model at unconstrained ``x``; writes its gradient."""
    G, q, p = int(data[1]), int(data[2]), int(data[3])
    n, nb, yty = data[4], int(data[5]), data[6]
    o = HEADER
    XtX = data[o : o + p * p].reshape((p, p))
    o += p * p
    Xty = data[o : o + p]
    o += p
    S = data[o : o + G * q * q].reshape((G, q, q))
    o += G * q * q
    W = data[o : o + G * q * p].reshape((G, q, p))
    o += G * q * p
    r0 = data[o : o + G * q].reshape((G, q))
    o += G * q
    blocks = data[o : o + 4 * nb].reshape((nb, 4))
    o += 4 * nb
    etas = data[o : o + 2 * nb].reshape((nb, 2))
    o += 2 * nb
    priors = data[o : o + PRIOR_WIDTH * (p + q + 1)].reshape((p + q + 1, PRIOR_WIDTH))

    for i in range(grad.shape[0]):
        grad[i] = 0.0
    lp = 0.0
    beta = x[:p]
    for i in range(p):
        v, d = _prior(priors[i], beta[i])
        lp += v
        grad[i] += d

    # the level covariance's Cholesky factor, block by block; correlated blocks keep their
    # correlation factor W and its log masses for the gradient below
    lam = np.zeros((q, q))
    cpc_w = np.zeros((nb, q, q))
    cpc_h = np.zeros((nb, q, q))
    for b in range(nb):
        c0, k, corr, pos = int(blocks[b, 0]), int(blocks[b, 1]), blocks[b, 2] > 0, int(blocks[b, 3])
        if corr:
            wc, half_log_c = _cpc_cholesky(x, pos + k, k)
            cpc_w[b, :k, :k] = wc
            cpc_h[b, :k, :k] = half_log_c
            for i in range(k):
                sd = math.exp(x[pos + i])
                for j in range(i + 1):
                    lam[c0 + i, c0 + j] = sd * wc[i, j]
        else:
            for i in range(k):
                lam[c0 + i, c0 + i] = math.exp(x[pos])
                pos += 1
    ls = x[p + _n_cov(blocks)]
    sig = math.exp(ls)
    s2 = sig * sig
    T = lam / sig

    # global residual terms
    Xb = np.zeros(p)
    for i in range(p):
        for j in range(p):
            Xb[i] += XtX[i, j] * beta[j]
    rr = yty
    gb = np.zeros(p)
    for i in range(p):
        rr += -2.0 * beta[i] * Xty[i] + beta[i] * Xb[i]
        gb[i] = Xty[i] - Xb[i]

    GD = np.zeros((q, q))
    ST = np.empty((q, q))
    A = np.empty((q, q))
    B = np.empty((q, q))
    P = np.empty((q, q))
    SP = np.empty((q, q))
    r = np.empty(q)
    Pr = np.empty(q)
    SPr = np.empty(q)
    logdet = 0.0
    sum_t = 0.0
    sum_quad = 0.0
    sum_tr = 0.0
    for g in range(G):
        Sg = S[g]
        for i in range(q):  # ST = S T, A = T'S T + I
            for j in range(q):
                acc = 0.0
                for m in range(q):
                    acc += Sg[i, m] * T[m, j]
                ST[i, j] = acc
        for i in range(q):
            for j in range(i + 1):
                acc = 0.0
                for m in range(q):
                    acc += T[m, i] * ST[m, j]
                A[i, j] = acc + (1.0 if i == j else 0.0)
        for j in range(q):  # in-place Cholesky of the lower triangle
            acc = A[j, j]
            for m in range(j):
                acc -= A[j, m] * A[j, m]
            if acc <= 0.0:
                return -np.inf
            A[j, j] = math.sqrt(acc)
            logdet += 2.0 * math.log(A[j, j])
            for i in range(j + 1, q):
                acc = A[i, j]
                for m in range(j):
                    acc -= A[i, m] * A[j, m]
                A[i, j] = acc / A[j, j]
        for c in range(q):  # B = L^-1 T'
            for i in range(q):
                acc = T[c, i]
                for m in range(i):
                    acc -= A[i, m] * B[m, c]
                B[i, c] = acc / A[i, i]
        for i in range(q):  # P = B'B
            for j in range(i + 1):
                acc = 0.0
                for m in range(q):
                    acc += B[m, i] * B[m, j]
                P[i, j] = acc
                P[j, i] = acc
        for i in range(q):
            acc = r0[g, i]
            for m in range(p):
                acc -= W[g, i, m] * beta[m]
            r[i] = acc
        t = _product_and_quadratic(P, r, Pr)  # Pr = P r, t = r'P r
        pSp = _product_and_quadratic(Sg, Pr, SPr)  # SPr = S Pr, pSp = Pr'S Pr
        for i in range(q):
            for j in range(q):
                acc = 0.0
                for m in range(q):
                    acc += Sg[i, m] * P[m, j]
                SP[i, j] = acc
            sum_tr += SP[i, i]
        for i in range(q):
            gi = r[i] - SPr[i]
            for j in range(q):
                acc = 0.0
                for m in range(q):
                    acc += SP[i, m] * Sg[m, j]
                GD[i, j] += 0.5 * (gi * (r[j] - SPr[j]) / s2 - (Sg[i, j] - acc)) / s2
        for m in range(p):
            acc = 0.0
            for i in range(q):
                acc += W[g, i, m] * Pr[i]
            gb[m] -= acc
        sum_t += t
        sum_quad += 2.0 * t - pSp

    lp += -0.5 * (n * LOG_2PI + 2.0 * n * ls + logdet + (rr - sum_t) / s2)
    for m in range(p):
        grad[m] += gb[m] / s2
    dl_ds2 = 0.5 * ((rr - sum_quad) / (s2 * s2) - (n - sum_tr) / s2)
    grad[p + _n_cov(blocks)] += 2.0 * s2 * dl_ds2

    # dlogL/dlam = 2 GD lam (block diagonal), then each block's prior and transform
    pr = p
    for b in range(nb):
        c0, k, corr, pos = int(blocks[b, 0]), int(blocks[b, 1]), blocks[b, 2] > 0, int(blocks[b, 3])
        if corr:
            # lam = diag(sd) w: d/dsd_i = sum_j (dL/dlam W)_ij, d/dw_ij = sd_i dL/dlam_ij, then
            # back through the rows of W to the canonical partial correlations
            lp += etas[b, 1]
            wc, half_log_c = cpc_w[b], cpc_h[b]
            gW = np.empty(k)
            off = pos + k
            for i in range(k):
                sd = math.exp(x[pos + i])
                v, d = _prior(priors[pr + i], sd)
                lp += v + x[pos + i]
                g_sd = 0.0
                for j in range(i + 1):
                    acc = 0.0
                    for m in range(k):
                        acc += GD[c0 + i, c0 + m] * lam[c0 + m, c0 + j]
                    g_sd += 2.0 * acc * wc[i, j]
                    gW[j] = 2.0 * acc * sd
                grad[pos + i] += (d + g_sd) * sd + 1.0
                # log terms of row i, each a multiple of a_m = log(1 - z_m^2): LKJ with the
                # Jacobian of R -> W (W_ii^(k-i-1+2eta-2)), W's own Jacobian (sqrt c_ij for
                # j >= 1) and tanh's (1 - z^2)
                e_i = k - i - 1.0 + 2.0 * etas[b, 0] - 2.0
                back = 0.5 * gW[i] * wc[i, i]  # sum over j > m of dL/dW_ij dW_ij/da_m
                for m in range(i - 1, -1, -1):
                    y = x[off + m]
                    z = math.tanh(y)
                    a = 2.0 * _half_log1m_tanh2(y)
                    coef = 1.0 + 0.5 * (i - 1 - m) + 0.5 * e_i
                    lp += coef * a
                    grad[off + m] += (gW[m] * math.exp(half_log_c[i, m] + a)
                                      - 2.0 * z * (back + coef))  # fmt: skip
                    back += 0.5 * gW[m] * wc[i, m]
                off += i
        else:
            for i in range(k):
                sd = lam[c0 + i, c0 + i]
                v, d = _prior(priors[pr + i], sd)
                lp += v + math.log(sd)
                grad[pos + i] += (d + 2.0 * GD[c0 + i, c0 + i] * sd) * sd + 1.0
        pr += k
    v, d = _prior(priors[pr], sig)
    lp += v + ls
    grad[p + _n_cov(blocks)] += d * sig + 1.0
    return lp


@numba.njit(cache=True, error_model="numpy")
def _cpc_cholesky(x, first, k):
    """Cholesky factor W of the correlation matrix whose canonical partial correlations are
    tanh(x[first:]), and half the log of the mass c_ij left before each entry of row i."""
    W = np.zeros((k, k))
    half_log_c = np.zeros((k, k))
    W[0, 0] = 1.0
    pos = first
    for i in range(1, k):
        h = 0.0
        for j in range(i):
            y = x[pos]
            half_log_c[i, j] = h
            W[i, j] = math.tanh(y) * math.exp(h)
            h += _half_log1m_tanh2(y)
            pos += 1
        half_log_c[i, i] = h
        W[i, i] = math.exp(h)
    return W, half_log_c


@numba.njit(cache=True)
def _half_log1m_tanh2(y):
    """``log(1 - tanh(y)^2) / 2 = log sech(y)``, finite however large ``|y|``."""
    return LOG_2 - abs(y) - math.log1p(math.exp(-2.0 * abs(y)))


@numba.njit(cache=True)
def _product_and_quadratic(M, v, out):
    """Writes ``out = M v`` and returns ``v'M v``."""
    total = 0.0
    for i in range(v.shape[0]):
        acc = 0.0
        for m in range(v.shape[0]):
            acc += M[i, m] * v[m]
        out[i] = acc
        total += v[i] * acc
    return total


@numba.njit(cache=True)
def _n_cov(blocks):
    """Unconstrained size of the covariance parameters."""
    total = 0
    for b in range(blocks.shape[0]):
        k = int(blocks[b, 1])
        total += k * (k + 1) // 2 if blocks[b, 2] > 0 else k
    return total


# ---------------------------------------------------------------------------------------
# C entry points for nutpie

_LOGP_SIG = numba.types.int64(
    numba.types.uint64,
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.voidptr,
)
_EXPAND_SIG = numba.types.int64(
    numba.types.uint64,
    numba.types.uint64,
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.voidptr,
)


def _c_logp(dim, x_, grad_, logp_, data_):
    size = int(numba.carray(data_, (1,), np.float64)[0])
    data = numba.carray(data_, (size,), np.float64)
    x = numba.carray(x_, (dim,))
    grad = numba.carray(grad_, (dim,))
    try:
        value = logp_and_grad(x, data, grad)
    except Exception:  # noqa: BLE001 - nothing may escape into nutpie's threads
        return 1
    logp_[0] = value
    if not np.isfinite(value):
        return 4
    for i in range(dim):
        if not np.isfinite(grad[i]):
            return 3
    return 0


def _c_expand(dim, expanded, x_, out_, data_):
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (expanded,))
    for i in range(dim):
        out[i] = x[i]
    return 0


@cache
def c_functions():
    """The compiled C callbacks (log density with gradient, and the draw copier).

    Compiled on first use and cached on disk by numba, so later processes only load them.
    """
    return (numba.cfunc(_LOGP_SIG, cache=True)(_c_logp),
            numba.cfunc(_EXPAND_SIG, cache=True)(_c_expand))  # fmt: skip
