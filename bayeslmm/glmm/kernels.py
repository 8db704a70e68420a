"""numba kernels of PIRLS on the blocked Cholesky (:mod:`bayeslmm.gaussian.blocked`).

The families and links of :mod:`bayeslmm.spec.family` per row, by code (the same
formulas and clamping, so deviances equal R's), and the whole penalised iteratively
re-weighted least squares loop (:func:`pirls_run`): per iteration the IRLS weights, the
weighted node blocks of ``Z'WZ`` (:func:`weighted_cross`, written into the ``pair_val``
the blocked kernels read, so ``A = Lambda'Z'WZ Lambda + I`` is assembled and factored by
:func:`~bayeslmm.gaussian.blocked.assemble` / :func:`~bayeslmm.gaussian.blocked.factorize`
on the pattern of ``L`` made once by :func:`~bayeslmm.gaussian.blocked.symbolic`), the
solves, and step halving, with no Python between iterations.

Rows are given as ``Zr`` (n, sum of terms): each grouping factor's random-effect columns
from ``colstart[f]``, the row's node of factor ``f`` in ``node_of[r, f]``, and the node
block of ``Z'Z`` that each pair of the row's factors (``pair_fa[t] <= pair_fb[t]``) adds to
from ``row_ptr[r, t]`` (its first value in ``pair_val``).
"""

from __future__ import annotations

import math

import numpy as np

from ..gaussian.blocked import (
    apply_factor,
    assemble,
    factorize,
    logdet_gradient,
    outer_by_factor,
    selected_inverse,
    solve_lower,
    solve_upper,
)
from ..jit import kernel

#: family codes
BINOMIAL, POISSON, NEGATIVE_BINOMIAL = 0, 1, 2
#: link codes
LOGIT, PROBIT, CLOGLOG, LOG, IDENTITY = 0, 1, 2, 3, 4
FAMILY_CODES = {"binomial": BINOMIAL, "bernoulli": BINOMIAL, "poisson": POISSON,
                "negative_binomial": NEGATIVE_BINOMIAL}  # fmt: skip
LINK_CODES = {"logit": LOGIT, "probit": PROBIT, "cloglog": CLOGLOG, "log": LOG,
              "identity": IDENTITY}  # fmt: skip
EPS = float(np.finfo(float).eps)
#: R's ``-qnorm(.Machine$double.eps)`` (:mod:`bayeslmm.spec.family`)
PROBIT_THRESH = 8.125890664701906
SQRT_2 = math.sqrt(2.0)
SQRT_2PI = math.sqrt(2.0 * math.pi)
#: :func:`pirls_run`'s status
OK, HALVING_FAILED, NOT_CONVERGED, NOT_POSITIVE_DEFINITE = 0, 1, 2, 3


@kernel
def linkinv(link, eta):  # pragma: no cover
    """``mu = g^-1(eta)`` of one row, clamped as R's families."""
    if link == LOGIT:
        e = min(max(eta, -30.0), 30.0)
        return 1.0 / (1.0 + math.exp(-e))
    if link == PROBIT:
        e = min(max(eta, -PROBIT_THRESH), PROBIT_THRESH)
        return 0.5 * math.erfc(-e / SQRT_2)
    if link == CLOGLOG:
        v = -math.expm1(-math.exp(min(eta, 700.0)))
        return min(max(v, EPS), 1.0 - EPS)
    if link == LOG:
        return max(math.exp(eta), EPS)
    return eta


@kernel
def mu_eta(link, eta):  # pragma: no cover
    """``d mu / d eta`` of one row (R's ``mu.eta``)."""
    if link == LOGIT:
        e = math.exp(-abs(eta))
        return max(e / (1.0 + e) ** 2, EPS)
    if link == PROBIT:
        return max(math.exp(-0.5 * eta * eta) / SQRT_2PI, EPS)
    if link == CLOGLOG:
        e = min(eta, 700.0)
        return max(math.exp(e - math.exp(e)), EPS)
    if link == LOG:
        return max(math.exp(eta), EPS)
    return 1.0


@kernel
def variance(family, theta, mu):  # pragma: no cover
    """The variance function ``V(mu)``."""
    if family == BINOMIAL:
        return mu * (1.0 - mu)
    if family == POISSON:
        return mu
    return mu + mu * mu / theta


@kernel
def _ylogy(y, mu):  # pragma: no cover
    return y * math.log(y / mu) if y > 0.0 else 0.0


@kernel
def dev_resid(family, theta, y, mu, wt):  # pragma: no cover
    """The squared deviance residual of one row (R's ``dev.resids``)."""
    if family == BINOMIAL:
        return 2.0 * wt * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))
    if family == POISSON:
        return 2.0 * wt * (_ylogy(y, mu) - (y - mu))
    return 2.0 * wt * (y * math.log(max(1.0, y) / mu)
                       - (y + theta) * math.log1p((y - mu) / (mu + theta)))  # fmt: skip


@kernel
def loglik(family, theta, y, mu, wt):  # pragma: no cover
    """The log-likelihood of one row with every constant (``dbinom`` of the successes out
    of ``wt`` trials, ``dpois``, ``dnbinom`` times ``wt``), as scipy's ``logpmf``."""
    if family == BINOMIAL:
        if not wt > 0.0:
            return 0.0
        n = float(round(wt))
        k = float(round(wt * y))
        out = math.lgamma(n + 1.0) - math.lgamma(k + 1.0) - math.lgamma(n - k + 1.0)
        if k > 0.0:
            out += k * math.log(mu)
        if n - k > 0.0:
            out += (n - k) * math.log1p(-mu)
        return out
    if family == POISSON:
        out = -mu - math.lgamma(y + 1.0)
        if y > 0.0:
            out += y * math.log(mu)
        return wt * out
    p = theta / (theta + mu)
    out = math.lgamma(theta + y) - math.lgamma(y + 1.0) - math.lgamma(theta) + theta * math.log(p)
    if y > 0.0:
        out += y * math.log1p(-p)
    return wt * out


@kernel
def saturated_loglik(family, theta, y, wt):  # pragma: no cover
    """The log-likelihood at ``mu = y`` (summed): ``-2 sum(loglik(mu)) = sum(dev_resid(mu))
    - 2 saturated_loglik`` for every family here (the deviance residuals are twice the
    log-likelihood ratio against it)."""
    acc = 0.0
    for r in range(y.shape[0]):
        acc += loglik(family, theta, y[r], y[r], wt[r])
    return acc


@kernel
def _predictor(offset, X, beta, Zr, colstart, node_of, b, noffset, family, link, theta, y, wt,
               eta, mu):  # fmt: skip
    """``eta = offset + X beta + Z b`` (``b = Lambda u`` by node) and ``mu``, in place;
    returns the sum of the deviance residuals."""
    n, p = X.shape
    F = node_of.shape[1]
    dev = 0.0
    for r in range(n):
        acc = offset[r]
        for a in range(p):
            acc += X[r, a] * beta[a]
        for f in range(F):
            o = noffset[node_of[r, f]]
            c0 = colstart[f]
            for c in range(colstart[f + 1] - c0):
                acc += Zr[r, c0 + c] * b[o + c]
        eta[r] = acc
        m = linkinv(link, acc)
        mu[r] = m
        dev += dev_resid(family, theta, y[r], m, wt[r])
    return dev


@kernel
def _squares(u):  # pragma: no cover
    acc = 0.0
    for j in range(u.shape[0]):
        acc += u[j] * u[j]
    return acc


@kernel
def irls_weights(family, link, theta, y, wt, eta, mu, w, z):  # pragma: no cover
    """Working weights ``w = wt mu_eta^2 / V(mu)`` and residuals ``z = (y - mu) / mu_eta``."""
    for r in range(y.shape[0]):
        d = mu_eta(link, eta[r])
        w[r] = wt[r] * d * d / variance(family, theta, mu[r])
        z[r] = (y[r] - mu[r]) / d


@kernel
def weighted_cross(Zr, colstart, row_ptr, pair_fa, pair_fb, w, pair_val):
    """``pair_val <- Z'WZ`` by node block (the pattern of ``Z'Z``; blocks row-major, the
    row node of pair ``(fa, fb)`` in factor ``fb``; row r's block of its pair t starts at
    ``row_ptr[r, t]``)."""
    pair_val[:] = 0.0
    n = Zr.shape[0]
    for r in range(n):
        wr = w[r]
        for t in range(pair_fa.shape[0]):
            fa, fb = pair_fa[t], pair_fb[t]
            ca, cb = colstart[fa], colstart[fb]
            sa, sb = colstart[fa + 1] - ca, colstart[fb + 1] - cb
            pc = row_ptr[r, t]
            for i in range(sb):
                zi = wr * Zr[r, cb + i]
                for j in range(sa):
                    pair_val[pc + i * sa + j] += zi * Zr[r, ca + j]


@kernel
def z_transpose(Zr, colstart, node_of, noffset, V, Q):  # pragma: no cover
    """``Z'V`` (Q, k) by node, for V (n, k)."""
    n, k = V.shape
    out = np.zeros((Q, k))
    for r in range(n):
        for f in range(node_of.shape[1]):
            o, c0 = noffset[node_of[r, f]], colstart[f]
            for c in range(colstart[f + 1] - c0):
                zc = Zr[r, c0 + c]
                for col in range(k):
                    out[o + c, col] += zc * V[r, col]
    return out


@kernel
def _weighted_x(X, w, v):  # pragma: no cover
    """``W X`` (n, p) and, in its last column, ``W v``: (n, p + 1)."""
    n, p = X.shape
    out = np.empty((n, p + 1))
    for r in range(n):
        for a in range(p):
            out[r, a] = w[r] * X[r, a]
        out[r, p] = w[r] * v[r]
    return out


@kernel
def pirls_run(family, link, theta, y, wt, offset, X, beta0, u0, joint, Zr, colstart,
              node_of, row_ptr, pair_fa, pair_fb, T, fs, tol, step_tol, maxit):  # fmt: skip
    """PIRLS for the conditional mode of ``u`` (node numbering) at ``T`` and ``beta0``,
    or of ``u`` and ``beta`` jointly (``joint``, lme4's ``nAGQ = 0`` step): Fisher scoring
    on ``sum(dev_resid) + |u|^2`` with step halving (lme4's ``pwrssUpdate``), the system
    ``A = Lambda'Z'WZ Lambda + I`` assembled into ``fs.pair_val`` and factored by the
    blocked Cholesky at every iteration. Stops when the full scoring step changes no
    element of ``u`` (and ``beta``) by more than ``step_tol`` and the penalised deviance
    by less than ``tol`` (relative); then refactors at the mode's weights.

    Returns ``(status, u, beta, eta, mu, w, log|A|, Lval, LD, iterations, sum of the
    deviance residuals)``; ``status`` is
    :data:`OK`, :data:`HALVING_FAILED`, :data:`NOT_CONVERGED` or
    :data:`NOT_POSITIVE_DEFINITE`.
    """
    n, p = X.shape
    size, noffset, node_factor = fs.size, fs.offset, fs.node_factor
    Q = u0.shape[0]
    u = u0.copy()
    beta = beta0.copy()
    eta, mu = np.empty(n), np.empty(n)
    w, z, wz = np.empty(n), np.empty(n), np.empty(n)
    eta_try, mu_try = np.empty(n), np.empty(n)
    ucol = np.empty((Q, 1))
    ucol[:, 0] = u
    b = apply_factor(T, ucol, size, noffset, node_factor, False)[:, 0]
    old = _predictor(offset, X, beta, Zr, colstart, node_of, b, noffset, family, link, theta,
                     y, wt, eta, mu) + _squares(u)  # fmt: skip
    if not math.isfinite(old):
        u[:] = 0.0
        b[:] = 0.0
        old = _predictor(offset, X, beta, Zr, colstart, node_of, b, noffset, family, link,
                         theta, y, wt, eta, mu)  # fmt: skip
    Lval = np.zeros(fs.blockptr[-1])
    LD = np.zeros((0, 0))
    logdet = math.nan
    du, db = np.empty(Q), np.empty(p)
    u_try, b_try = np.empty(Q), np.empty(p)
    iterations = 0
    converged = False
    dev = old - _squares(u)
    dev_try = dev
    for it in range(1, maxit + 1):
        iterations = it
        irls_weights(family, link, theta, y, wt, eta, mu, w, z)
        for r in range(n):  # working response less the fixed part (all of it if joint)
            acc = z[r] + eta[r] - offset[r]
            if not joint:
                for a in range(p):
                    acc -= X[r, a] * beta[a]
            wz[r] = acc
        weighted_cross(Zr, colstart, row_ptr, pair_fa, pair_fb, w, fs.pair_val)
        Lval, D = assemble(T, fs)
        logdet, LD = factorize(Lval, D, fs)
        if math.isnan(logdet):
            return NOT_POSITIVE_DEFINITE, u, beta, eta, mu, w, logdet, Lval, LD, it, dev
        if joint and p > 0:
            WXv = _weighted_x(X, w, wz)
            R = apply_factor(T, z_transpose(Zr, colstart, node_of, noffset, WXv, Q), size,
                             noffset, node_factor, True)  # fmt: skip
            solve_lower(Lval, LD, R, fs)  # [RZX | c_u]
            M = np.ascontiguousarray(X.T) @ WXv  # [X'WX | X'W wz]
            S = np.empty((p, p))
            v = np.empty(p)
            for a in range(p):
                for c in range(p):
                    acc = M[a, c]
                    for q in range(Q):
                        acc -= R[q, a] * R[q, c]
                    S[a, c] = acc
                acc = M[a, p]
                for q in range(Q):
                    acc -= R[q, a] * R[q, p]
                v[a] = acc
            beta_new = np.linalg.solve(S, v)
            ucol = np.empty((Q, 1))
            for q in range(Q):
                acc = R[q, p]
                for a in range(p):
                    acc -= R[q, a] * beta_new[a]
                ucol[q, 0] = acc
            for a in range(p):
                db[a] = beta_new[a] - beta[a]
        else:
            V = np.empty((n, 1))
            for r in range(n):
                V[r, 0] = w[r] * wz[r]
            ucol = apply_factor(T, z_transpose(Zr, colstart, node_of, noffset, V, Q), size,
                                noffset, node_factor, True)  # fmt: skip
            solve_lower(Lval, LD, ucol, fs)
            db[:] = 0.0
        solve_upper(Lval, LD, ucol, fs)
        full = 0.0  # the largest change of the full (Fisher scoring) step
        for q in range(Q):
            du[q] = ucol[q, 0] - u[q]
            full = max(full, abs(du[q]))
        for a in range(p):
            full = max(full, abs(db[a]))
        pdev = math.inf
        accepted = False
        # a step is kept unless it raises the penalised deviance by more than its rounding
        # (near the mode a Newton step's decrease is below it: requiring a decrease there
        # halves steps at random and leaves the mode, so log|A|, noisy at 1e-8)
        slack = 1e-12 * abs(old) + 1e-300
        for _ in range(30):  # step halving
            for q in range(Q):
                u_try[q] = u[q] + du[q]
                ucol[q, 0] = u_try[q]
            for a in range(p):
                b_try[a] = beta[a] + db[a]
            b = apply_factor(T, ucol, size, noffset, node_factor, False)[:, 0]
            dev_try = _predictor(offset, X, b_try, Zr, colstart, node_of, b, noffset, family,
                                 link, theta, y, wt, eta_try, mu_try)  # fmt: skip
            pdev = dev_try + _squares(u_try)
            if math.isfinite(pdev) and pdev <= old + slack:
                accepted = True
                break
            for q in range(Q):
                du[q] *= 0.5
            for a in range(p):
                db[a] *= 0.5
        if not accepted:
            return HALVING_FAILED, u, beta, eta, mu, w, logdet, Lval, LD, it, dev
        u[:] = u_try
        dev = dev_try
        beta[:] = b_try
        eta[:] = eta_try
        mu[:] = mu_try
        change = abs(old - pdev) / max(pdev, 1e-300)
        old = pdev
        if full < step_tol and change < tol:
            converged = True
            break
    if not converged:
        return NOT_CONVERGED, u, beta, eta, mu, w, logdet, Lval, LD, iterations, dev
    irls_weights(family, link, theta, y, wt, eta, mu, w, z)
    weighted_cross(Zr, colstart, row_ptr, pair_fa, pair_fb, w, fs.pair_val)
    Lval, D = assemble(T, fs)
    logdet, LD = factorize(Lval, D, fs)
    status = NOT_POSITIVE_DEFINITE if math.isnan(logdet) else OK
    return status, u, beta, eta, mu, w, logdet, Lval, LD, iterations, dev


@kernel
def agq_deviance(family, link, theta, y, wt, eta, u, mu, w, zl, codes, ldL2, nodes,
                 node_weights):  # fmt: skip
    """lme4's adaptive Gauss-Hermite deviance of one scalar random-effects term at the
    PIRLS mode: ``sum(devc0) + ldL2 - 2 sum(log(mult))``, ``devc0`` per level the squared
    mode plus its rows' deviance residuals, ``mult`` the quadrature of the level's
    conditional density around its mode, scaled by its conditional SD ``1 / L_jj``
    (``zl`` per row: its ``Z Lambda`` entry; ``w`` the working weights at the mode)."""
    m = u.shape[0]
    n = y.shape[0]
    a_diag = np.ones(m)
    devc0 = np.empty(m)
    for j in range(m):
        devc0[j] = u[j] * u[j]
    for r in range(n):
        a_diag[codes[r]] += w[r] * zl[r] * zl[r]
        devc0[codes[r]] += dev_resid(family, theta, y[r], mu[r], wt[r])
    sd = np.empty(m)
    for j in range(m):
        sd[j] = 1.0 / math.sqrt(a_diag[j])
    mult = np.zeros(m)
    devc = np.empty(m)
    log_sqrt_2pi = math.log(SQRT_2PI)
    for k in range(nodes.shape[0]):
        zk, wk = nodes[k], node_weights[k]
        if zk == 0.0:
            for j in range(m):
                mult[j] += wk
            continue
        for j in range(m):
            shift = zk * sd[j]
            devc[j] = (u[j] + shift) ** 2
        for r in range(n):
            j = codes[r]
            mu_r = linkinv(link, eta[r] + zl[r] * zk * sd[j])
            devc[j] += dev_resid(family, theta, y[r], mu_r, wt[r])
        ldnorm = -0.5 * zk * zk - log_sqrt_2pi
        for j in range(m):
            mult[j] += math.exp(-0.5 * (devc[j] - devc0[j]) - ldnorm) * wk / SQRT_2PI
    out = ldL2
    for j in range(m):
        out += devc0[j] - 2.0 * math.log(mult[j])
    return out


@kernel
def laplace_gradient(family, y, wt, X, Zr, colstart, node_of, row_pair, row_ptr, pair_fa,
                     pair_fb, T, fs, u, mu, w, Lval, LD, joint):  # fmt: skip
    """The exact gradient of the Laplace deviance ``D + |u|^2 + log|A|`` at a PIRLS mode,
    for a canonical link (logit binomial, log Poisson: the scoring weights are then the
    Hessian, ``ds/deta = -w``, ``dw/deta = w (1 - 2 mu)`` or ``w``): over the relative
    factors ``T`` (F, qmax, qmax) and, with ``beta`` given (not ``joint``), over ``beta``.

    With ``s = wt (y - mu)``, ``h_r = (Z Lambda)_r A^-1 (Z Lambda)_r'`` (from the selected
    inverse of ``A``) and ``a = h dw/deta``: the mode's own terms drop out (envelope), the
    direct part of ``log|A|`` is :func:`~bayeslmm.gaussian.blocked.logdet_gradient`, and
    the mode's response to the parameters enters through one solve ``v = H^-1 [X | Z
    Lambda]'a`` with ``H`` the penalised system over ``u`` (or ``(beta, u)`` jointly, lme4's
    ``nAGQ = 0`` stage, by its Schur complement): with ``e = W (X v_beta + Z Lambda v_u)``,
    ``dD/dT = outer(Z'(a - 2 s - e), u) + outer(Z's, v_u)`` per factor and
    ``dD/dbeta = X'(a - 2 s - e)``. ``fs.pair_val`` is rewritten with ``Z'WZ``."""
    n, p = X.shape
    size, noffset, node_factor = fs.size, fs.offset, fs.node_factor
    pair_i, pair_j, pair_pos = fs.pair_i, fs.pair_j, fs.pair_pos
    blockptr, base = fs.blockptr, fs.base
    Q = u.shape[0]
    F = node_of.shape[1]
    weighted_cross(Zr, colstart, row_ptr, pair_fa, pair_fb, w, fs.pair_val)
    Zval, ZD = selected_inverse(Lval, LD, fs)
    qmax = T.shape[1]
    zeta = np.empty((F, qmax))
    V = np.empty((n, 2))  # [a, s]
    for r in range(n):
        for f in range(F):  # T_f' z_rf
            c0, qf = colstart[f], colstart[f + 1] - colstart[f]
            for c in range(qf):
                acc = 0.0
                for v in range(qf):
                    acc += T[f, v, c] * Zr[r, c0 + v]
                zeta[f, c] = acc
        h = 0.0
        for t in range(pair_fa.shape[0]):
            fa, fb = pair_fa[t], pair_fb[t]
            k = row_pair[r, t]
            i, j, pos = pair_i[k], pair_j[k], pair_pos[k]
            si, sj = size[i], size[j]
            acc = 0.0
            for rr in range(si):
                for cc in range(sj):
                    if pos >= 0:
                        z = Zval[blockptr[pos] + rr * sj + cc]
                    else:
                        z = ZD[noffset[i] - base + rr, noffset[j] - base + cc]
                    acc += zeta[fb, rr] * z * zeta[fa, cc]
            h += acc if fa == fb else 2.0 * acc
        dw = w[r] * (1.0 - 2.0 * mu[r]) if family == BINOMIAL else w[r]
        V[r, 0] = h * dw
        V[r, 1] = wt[r] * (y[r] - mu[r])
    ZV = z_transpose(Zr, colstart, node_of, noffset, V, Q)
    Za = np.ascontiguousarray(ZV[:, 0:1])
    c = apply_factor(T, Za, size, noffset, node_factor, True)
    solve_lower(Lval, LD, c, fs)
    v_beta = np.zeros(p)
    if joint and p > 0:
        WX = np.empty((n, p))
        for r in range(n):
            for a in range(p):
                WX[r, a] = w[r] * X[r, a]
        RZX = apply_factor(T, z_transpose(Zr, colstart, node_of, noffset, WX, Q), size,
                           noffset, node_factor, True)  # fmt: skip
        solve_lower(Lval, LD, RZX, fs)
        S = np.ascontiguousarray(X.T) @ WX
        rhs = np.zeros(p)
        for a in range(p):
            acc = 0.0
            for r in range(n):
                acc += X[r, a] * V[r, 0]
            for q in range(Q):
                acc -= RZX[q, a] * c[q, 0]
            rhs[a] = acc
            for b in range(p):
                acc = 0.0
                for q in range(Q):
                    acc += RZX[q, a] * RZX[q, b]
                S[a, b] -= acc
        v_beta = np.linalg.solve(S, rhs)
        for q in range(Q):
            acc = 0.0
            for a in range(p):
                acc += RZX[q, a] * v_beta[a]
            c[q, 0] -= acc
    solve_upper(Lval, LD, c, fs)  # v_u
    bv = apply_factor(T, c, size, noffset, node_factor, False)[:, 0]
    E = np.empty((n, 1))  # a - 2 s - e
    for r in range(n):
        acc = 0.0
        for a in range(p):
            acc += X[r, a] * v_beta[a]
        for f in range(F):
            o, c0 = noffset[node_of[r, f]], colstart[f]
            for cc in range(colstart[f + 1] - c0):
                acc += Zr[r, c0 + cc] * bv[o + cc]
        E[r, 0] = V[r, 0] - 2.0 * V[r, 1] - w[r] * acc
    ZE = z_transpose(Zr, colstart, node_of, noffset, E, Q)
    ucol = np.empty((Q, 1))
    ucol[:, 0] = u
    G = logdet_gradient(T, Zval, ZD, fs)
    G += outer_by_factor(ZE, ucol, size, noffset, node_factor, F, qmax)
    G += outer_by_factor(np.ascontiguousarray(ZV[:, 1:2]), c, size, noffset, node_factor, F,
                         qmax)  # fmt: skip
    g_beta = np.zeros(p)
    if not joint:
        for a in range(p):
            acc = 0.0
            for r in range(n):
                acc += X[r, a] * E[r, 0]
            g_beta[a] = acc
    return G, g_beta
