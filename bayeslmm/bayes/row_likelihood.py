"""The row-by-row likelihood of a generalised linear mixed model for the compiled density.

:func:`bayeslmm.bayes.density.logp_and_grad` has two likelihoods behind one parameter side
(priors, SD and correlation transforms, centred or non-centred sampled effects): the
Gaussian marginal likelihood with some factors integrated out, and, for a GLMM, this one,
with every grouping factor sampled: per row ``eta = X beta + sum_f Z_f u_f[level] +
offset`` and the log-pmf of the family and link, with every constant PyMC's graph has
(:mod:`bayeslmm.bayes.glm_graph`), so the two log densities are equal. Its gradient in
``eta`` goes back to ``beta`` (``X'g``) and to each level's effects (``Z_f'g`` by level).

The negative binomial (NB2: mean ``mu``, size ``theta``, variance ``mu + mu^2 / theta``,
lme4/MASS's ``theta``) has the log-pmf ``lgamma(y + theta) - lgamma(theta) - lgamma(y + 1) +
theta log(theta / (theta + mu)) + y log(mu / (theta + mu))``; its ``theta`` is a parameter
of the density (sampled as ``log theta``, :attr:`~bayeslmm.bayes.density.Layout.has_theta`),
and the rows' likelihood also gives its derivative in ``theta`` (:func:`nb_term`).

The rows enter the density's flat buffer as the fields :data:`ROW_FIELDS` (empty, with
family code :data:`GAUSSIAN`, for a Gaussian model).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

from ..gaussian.blocked import BlockedSystem
from ..jit import kernel, vector_kernel
from ..spec.design import Design
from ..spec.response import GlmResponse

#: family codes of the kernel, by (family, link); 0 is the Gaussian marginal likelihood
GAUSSIAN = 0
CODES = {
    ("bernoulli", "logit"): 1, ("binomial", "logit"): 1,
    ("bernoulli", "probit"): 2, ("binomial", "probit"): 2,
    ("bernoulli", "cloglog"): 3, ("binomial", "cloglog"): 3,
    ("poisson", "log"): 4, ("poisson", "identity"): 5,
    ("negative_binomial", "log"): 6, ("negative_binomial", "identity"): 7,
}  # fmt: skip
#: a grouping factor with at least this many rows per level on average leads the row
#: pass (:func:`lead_factor`): the rows sorted by its level, its effects added and summed
#: run by run (a broadcast and a reduction that vectorise) instead of gathered and
#: scattered row by row
LEAD_MIN_ROWS = 16
#: the family codes whose likelihood has the negative binomial's theta
NEGATIVE_BINOMIAL = (6, 7)
#: counts up to this sum ``lgamma(y + theta) - lgamma(theta) - y log theta`` as
#: ``sum_k log1p(k / theta)`` (exact however large theta: the Poisson limit); larger ones
#: take the lgamma difference
NB_DIRECT_SUM = 64
#: the density buffer's row sections: ``glm`` = (family code, summed log-pmf constant);
#: per row the successes or counts, the trials, the offset; then, stored by column so
#: that the row pass vectorises (one row of each array per column, one entry per row):
#: ``X'`` (``p x n``), for each grouping factor (node order) the first sampled effect of
#: the row's level (``F x n``), and ``Z'`` (``qmax`` rows per factor, zero padded); the
#: boundaries of the pass's runs of rows (:func:`row_runs`) and the factor leading it
#: (-1: none)
ROW_FIELDS = (
    ("glm", "float64", 1), ("rows_y", "float64", 1), ("rows_n", "float64", 1),
    ("rows_off", "float64", 1), ("rows_X", "float64", 2), ("rows_node", "int64", 2),
    ("rows_Z", "float64", 2), ("rows_run", "int64", 1), ("rows_lead", "int64", 0),
)  # fmt: skip
#: rows per block of the row pass: its work arrays (a few kB) stay in the L1 cache
ROW_BLOCK = 256
#: ``|eta|`` up to which the vectorised ``exp`` (:func:`_exp_block`) serves the logit and
#: log links; a block with a larger one goes row by row through :func:`row_term`
EXP_LIMIT = 700.0
LOG2_E = 1.4426950408889634
#: ``ln 2`` in two parts (Cody and Waite): ``k * LN2_HI`` is exact for ``|k| < 2^11``
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
#: Taylor coefficients of ``exp`` on ``|r| <= ln 2 / 2`` (degree 13: truncation < 5e-18)
EXP_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(14))
#: ``2 / (2k + 1)``: ``log((1 + s) / (1 - s)) = sum_k 2 s^(2k+1) / (2k + 1)``, 12 terms for
#: ``|s| <= 3 - 2 sqrt 2`` (truncation < 1e-18)
ATANH_SERIES = tuple(2.0 / (2 * k + 1) for k in range(12))
SQRT_2_M1 = math.sqrt(2.0) - 1.0
LN_2 = math.log(2.0)
LOG_2PI = math.log(2.0 * math.pi)
SQRT_2 = math.sqrt(2.0)


def gaussian_rows(p: int, n_factors: int, qmax: int) -> dict[str, np.ndarray]:
    """:data:`ROW_FIELDS` of a Gaussian model: its family code and no rows."""
    return {"glm": np.array([float(GAUSSIAN), 0.0]), "rows_y": np.zeros(0),
            "rows_n": np.zeros(0), "rows_off": np.zeros(0), "rows_X": np.zeros((p, 0)),
            "rows_node": np.zeros((n_factors, 0), np.int64),
            "rows_Z": np.zeros((n_factors * qmax, 0)), "rows_run": row_runs(None, 0),
            "rows_lead": np.array(-1, np.int64)}  # fmt: skip


def has_theta(code: int) -> bool:
    """Does the family code's likelihood have the negative binomial's theta?"""
    return int(code) in NEGATIVE_BINOMIAL


def family_code(response: GlmResponse) -> int | None:
    """The kernel's code of the response's family and link (None: not covered)."""
    return CODES.get((response.family.name, response.family.link.name))


def row_counts(response: GlmResponse, code: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, as the kernels read them: the successes (binomial families) or counts,
    the trials, and the log-pmf's constant that :func:`row_term` and :func:`nb_term`
    leave out (``log choose(n, y)``; ``-log y!``)."""
    trials = np.round(np.asarray(response.weights, float))
    if code <= 3:
        y = np.round(np.asarray(response.y, float) * trials)
        return y, trials, gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1)
    y = np.asarray(response.y, float)
    return y, trials, -gammaln(y + 1)


def glm_rows(design: Design, response: GlmResponse, system: BlockedSystem) -> dict | None:
    """:data:`ROW_FIELDS` of a GLMM whose grouping factors are all sampled (``system``
    integrates none out); None where the kernel lacks the family or link."""
    code = family_code(response)
    if code is None:
        return None
    stats = system.stats
    if stats.n_marginal:
        raise ValueError("the row likelihood samples every grouping factor")
    n, qmax, F = design.n_obs, system.qmax, len(stats.factors)
    y, trials, constants = row_counts(response, code)
    const = float(np.sum(constants))
    node = np.zeros((F, n), np.int64)
    Zt = np.zeros((F * qmax, n))
    e_offset = system.sampled().e_offset
    for f, factor in enumerate(stats.factors):
        codes = design.blocks[factor.blocks[0]].codes
        node[f] = e_offset[factor.first + codes]
        column = f * qmax
        for k in factor.blocks:
            block = design.blocks[k]
            Zt[column : column + block.n_terms] = np.asarray(block.Z, float).T
            column += block.n_terms
    lead = lead_factor(node, n)
    order = np.argsort(node[lead], kind="stable") if lead >= 0 else np.arange(n)
    node = np.ascontiguousarray(node[:, order])
    return {"glm": np.array([float(code), const]), "rows_y": y[order],
            "rows_n": trials[order], "rows_off": np.asarray(response.offset, float)[order],
            "rows_X": np.ascontiguousarray(np.asarray(design.X, float)[order].T),
            "rows_node": node, "rows_Z": np.ascontiguousarray(Zt[:, order]),
            "rows_run": row_runs(node[lead] if lead >= 0 else None, n),
            "rows_lead": np.array(lead, np.int64)}  # fmt: skip


def lead_factor(node: np.ndarray, n: int) -> int:
    """The grouping factor that leads the row pass: the one with the most rows per level,
    where that is at least :data:`LEAD_MIN_ROWS` on average (-1: none; the pass then
    gathers and scatters every factor's effects row by row). Measured on the rows'
    gradient (:func:`row_loglik`), best of 7 x 200 calls, same process: the 50,000-row
    Bernoulli ``(1 + x | g)`` (1,000 levels of 50 rows) led by ``g`` 278-280 us against
    346-375 us in blocks. A factor with few rows per level would pay more per run than
    it saves: the runs are short and the gathers hit the cache."""
    best, best_rows = -1, float(LEAD_MIN_ROWS)
    for f in range(node.shape[0]):
        rows = n / max(len(np.unique(node[f])), 1)
        if rows >= best_rows:
            best, best_rows = f, rows
    return best


def row_runs(level: np.ndarray | None, n: int) -> np.ndarray:
    """The boundaries of the leading factor's runs of rows: ``0``, every row where
    ``level`` (rows sorted by it) changes, ``n``; ``[0, n]`` without a leading factor."""
    if level is None or n == 0:
        return np.array([0, n], np.int64)
    return np.concatenate([[0], np.flatnonzero(np.diff(level)) + 1, [n]]).astype(np.int64)


# ---------------------------------------------------------------------------------------
# compiled kernel


@kernel
def _log_ndtr(x):
    """``(log Phi(x), phi(x) / Phi(x))``, the standard normal cdf's log and the inverse
    Mills ratio, through ``erfc`` (an asymptotic series below -20, where it underflows
    towards zero)."""
    if x > 0.0:
        lp = math.log1p(-0.5 * math.erfc(x / SQRT_2))
    elif x > -20.0:
        lp = math.log(0.5 * math.erfc(-x / SQRT_2))
    else:
        r = 1.0 / (x * x)
        lp = (-0.5 * x * x - 0.5 * LOG_2PI - math.log(-x)
              + math.log(1.0 - r + 3.0 * r * r - 15.0 * r * r * r))  # fmt: skip
    return lp, math.exp(-0.5 * x * x - 0.5 * LOG_2PI - lp)


@kernel
def row_term(code, eta, y, n):
    """One row's log-pmf (without its constant) and its derivative in ``eta``: binomial
    (``y`` successes of ``n``) with the logit (1), probit (2) or cloglog (3) link, Poisson
    (``y`` counts) with the log (4) or identity (5) link."""
    if code == 1:  # log(1 + e^eta) and the probability from one exp and one log
        # log(1 + e) for e = exp(-|eta|) in (0, 1]: its absolute error is at most one
        # rounding of 1 + e (1.1e-16), as log1p's; log is 2.4x faster than log1p here
        e = math.exp(-abs(eta))
        one_e = 1.0 + e
        if eta >= 0.0:
            return y * eta - n * (eta + math.log(one_e)), y - n / one_e
        return y * eta - n * math.log(one_e), y - n * (e / one_e)
    if code == 2:
        value, grad = 0.0, 0.0
        if y > 0.0:
            lp, r = _log_ndtr(eta)
            value += y * lp
            grad += y * r
        if n - y > 0.0:
            lq, r = _log_ndtr(-eta)
            value += (n - y) * lq
            grad -= (n - y) * r
        return value, grad
    if code == 3:
        e = math.exp(eta)
        value, grad = -(n - y) * e, -(n - y) * e
        if y > 0.0:
            if eta < -20.0:  # log(1 - exp(-e)) = log e + log(1 - e/2 + ...)
                value += y * (eta - 0.5 * e)
            else:
                value += y * math.log(-math.expm1(-e))
            if e < 700.0:
                grad += y * e / math.expm1(e) if e > 0.0 else y
        return value, grad
    if code == 4:
        mu = math.exp(eta)
        return y * eta - mu, y - mu
    if code == 5:
        if eta <= 0.0:
            return -math.inf, math.nan
        return y * math.log(eta) - eta, y / eta - 1.0
    return math.nan, math.nan


@kernel
def _digamma(x):
    """The digamma function for ``x > 0``: the recurrence up to 10, then the asymptotic
    series (error below 1e-13)."""
    acc = 0.0
    while x < 10.0:
        acc -= 1.0 / x
        x += 1.0
    r = 1.0 / (x * x)
    return acc + math.log(x) - 0.5 / x - r * (1.0 / 12.0 - r * (1.0 / 120.0 - r * (
        1.0 / 252.0 - r * (1.0 / 240.0 - r / 132.0))))


@kernel
def nb_term(code, eta, y, theta):
    """One row's negative binomial log-pmf (without ``-lgamma(y + 1)``) with the log (6)
    or identity (7) link, and its derivatives in ``eta`` and ``theta``: ``A + y (log mu -
    l) - theta l`` with ``l = log1p(mu / theta)`` and ``A = lgamma(y + theta) -
    lgamma(theta) - y log theta`` (:data:`NB_DIRECT_SUM`)."""
    if code == 6:
        mu = math.exp(eta)
        log_mu = eta
    else:
        mu = eta
        if mu <= 0.0:
            return -math.inf, math.nan, math.nan
        log_mu = math.log(mu)
    if not mu < math.inf:
        return -math.inf, math.nan, math.nan
    l1 = math.log1p(mu / theta)
    value = y * (log_mu - l1) - theta * l1
    tm = theta + mu
    d_eta = theta * (y - mu) / tm if code == 6 else y / mu - (theta + y) / tm
    d_theta = -l1 + mu / tm + y * mu / (theta * tm)
    if y <= NB_DIRECT_SUM:
        for k in range(int(y)):
            value += math.log1p(k / theta)
            d_theta -= k / (theta * (theta + k))
    else:
        value += math.lgamma(y + theta) - math.lgamma(theta) - y * math.log(theta)
        d_theta += _digamma(y + theta) - _digamma(theta) - y / theta
    return value, d_eta, d_theta


@vector_kernel
def _horner(coefficients, x):
    """``sum_k coefficients[k] x^k`` by Horner's rule (a fixed-length tuple: the loop
    unrolls and, inlined, vectorises with its caller's)."""
    q = coefficients[-1]
    for k in range(len(coefficients) - 2, -1, -1):
        q = q * x + coefficients[k]
    return q


@vector_kernel
def _exp_block(x, out, bits, m):
    """``out[:m] = exp(x[:m])`` for ``|x| <= 708``, a loop that vectorises (numba's
    ``math.exp`` is a libm call per element): ``x = k ln 2 + r`` (Cody and Waite), the
    Taylor polynomial of ``exp(r)`` (:data:`EXP_TAYLOR`), times ``2^k`` written into the
    exponent bits. Relative error about 1e-15 (a few roundings). ``x`` and ``out`` must
    be different arrays: LLVM vectorises the loop only where they do not overlap."""
    for i in range(m):
        v = x[i]
        k = math.floor(v * LOG2_E + 0.5)
        r = (v - k * LN2_HI) - k * LN2_LO
        out[i] = _horner(EXP_TAYLOR, r)
        bits[i] = (np.int64(k) + 1023) << 52
    scale = bits.view(np.float64)
    for i in range(m):
        out[i] *= scale[i]


@vector_kernel
def _log1p_unit(e):
    """``log(1 + e)`` for ``0 <= e <= 1`` without a libm call: ``2 atanh(s)`` with ``s =
    e / (2 + e)``, or ``ln 2 + 2 atanh(s)`` with ``s = (e - 1) / (e + 3)`` above
    ``sqrt 2 - 1`` (so ``|s| <= 3 - 2 sqrt 2``), by :data:`ATANH_SERIES`; relative error
    about 1e-16, as log1p's."""
    t = 1.0 if e > SQRT_2_M1 else 0.0
    s = (e - t) / (e + 2.0 + t)
    return s * _horner(ATANH_SERIES, s * s) + t * LN_2


@vector_kernel
def _family_rows(code, eta, y, n, theta, g, value, work, bits, m):
    """The log-pmf (without its constant) of the ``m`` rows in ``eta[:m]`` with ``y``,
    ``n`` from the block's first row: writes each row's value to ``value`` and its
    derivative in ``eta`` to ``g``; returns ``(sum, derivative in theta)``. The logit and
    log links vectorise (while every ``|eta| <= EXP_LIMIT``); the other families, and
    blocks beyond that, go row by row through :func:`row_term` and :func:`nb_term`."""
    far = 0
    for i in range(m):
        far += abs(eta[i]) > EXP_LIMIT
    total = 0.0
    if code == 1 and far == 0:  # as row_term: e = exp(-|eta|), log(1 + e), e / (1 + e)
        for i in range(m):  # g holds -|eta| (the exp's input and output must not alias,
            g[i] = -abs(eta[i])  # or the loop stays scalar: 3x slower)
        _exp_block(g, work, bits, m)
        for i in range(m):
            x, e = eta[i], work[i]
            pos = 1.0 if x >= 0.0 else 0.0
            v = y[i] * x - n[i] * (pos * x + _log1p_unit(e))
            value[i] = v
            total += v
            g[i] = y[i] - n[i] * ((pos + (1.0 - pos) * e) / (1.0 + e))
        return total, 0.0
    if code == 4 and far == 0:
        _exp_block(eta, work, bits, m)
        for i in range(m):
            v = y[i] * eta[i] - work[i]
            value[i] = v
            total += v
            g[i] = y[i] - work[i]
        return total, 0.0
    d_theta = 0.0
    for i in range(m):
        if code == 6 or code == 7:
            value[i], g[i], gt = nb_term(code, eta[i], y[i], theta)
            d_theta += gt
        else:
            value[i], g[i] = row_term(code, eta[i], y[i], n[i])
        total += value[i]
    return total, d_theta


@vector_kernel
def _block_eta(beta, uE, off, Xt, node, Zt, qf, s, e, eta, lead):
    """``eta[:e - s] = off + X beta + sum_f Z_f u_f[level]`` for rows ``s..e`` (the arrays
    by column, as :func:`row_loglik` reads them); slices of the block's rows, because
    indexing a slice vectorises where ``x[j, s + i]`` does not (2x). The factor ``lead``
    (-1: none) is left out: :func:`_lead_eta` adds its effects."""
    p, F, m = Xt.shape[0], node.shape[0], e - s
    width = Zt.shape[0] // F if F else 0
    offset = off[s:e]
    for i in range(m):
        eta[i] = offset[i]
    for j in range(p):
        b, x = beta[j], Xt[j, s:e]
        for i in range(m):
            eta[i] += x[i] * b
    for f in range(F):
        if f == lead:
            continue
        level = node[f, s:e]
        for a in range(qf[f]):
            z = Zt[f * width + a, s:e]
            for i in range(m):
                eta[i] += z[i] * uE[level[i] + a]


@vector_kernel
def _lead_eta(uE, node, Zt, q, row, run, k, s, e, eta):
    """Adds the leading factor's effects to ``eta[:e - s]`` (rows ``s..e``, sorted by its
    level) a run at a time, from run ``k`` on: ``q`` terms, whose ``Z'`` rows start at
    ``row`` (one constant per run and term, a broadcast that vectorises)."""
    while k < run.shape[0] - 1 and run[k] < e:
        a, b = max(run[k], s), min(run[k + 1], e)
        first = node[a]
        part = eta[a - s : b - s]
        for t in range(q):
            u, z = uE[first + t], Zt[row + t, a:b]
            for i in range(b - a):
                part[i] += z[i] * u
        k += 1


@vector_kernel
def _lead_grad(duE, node, Zt, q, row, run, k, s, e, g):
    """Adds the leading factor's gradient of rows ``s..e`` (``g[:e - s]``, the derivative
    in ``eta``) to its levels' effects in ``duE``, summed run by run as
    :func:`_lead_eta` reads them."""
    while k < run.shape[0] - 1 and run[k] < e:
        a, b = max(run[k], s), min(run[k + 1], e)
        first = node[a]
        part = g[a - s : b - s]
        for t in range(q):
            z, acc = Zt[row + t, a:b], 0.0
            for i in range(b - a):
                acc += part[i] * z[i]
            duE[first + t] += acc
        k += 1


@vector_kernel
def row_loglik(code, const, beta, uE, y, n, off, Xt, node, Zt, qf, run, lead, dbeta, duE,
               theta, dtheta):  # fmt: skip
    """The log-likelihood of the rows at ``beta`` and the sampled effects ``uE``; writes
    its gradient into ``dbeta`` and ``duE`` (both zeroed first). The rows' arrays by
    column (:data:`ROW_FIELDS`): ``Xt`` is ``X'``, ``node`` each factor's first effect by
    row, ``Zt`` is ``Z'`` with ``Zt.shape[0] / F`` rows per factor, of which ``qf`` are
    the factor's terms. Blocks of :data:`ROW_BLOCK` rows: the linear predictor, the
    family (:func:`_family_rows`), then ``X'g`` and ``Z'g`` by level. The factor ``lead``
    (-1: none) has its rows sorted by level, in runs between the boundaries ``run``
    (:func:`row_runs`): its effects enter run by run as constants and its gradient as
    sums over each run (:func:`_lead_eta`, :func:`_lead_grad`) instead of a gather and a
    scatter per row. A negative binomial (:data:`NEGATIVE_BINOMIAL`) reads its ``theta``
    and writes the derivative in it to ``dtheta[0]``; the other families ignore both."""
    p, N, F = Xt.shape[0], y.shape[0], node.shape[0]
    width = Zt.shape[0] // F if F else 0
    for j in range(p):
        dbeta[j] = 0.0
    for j in range(duE.shape[0]):
        duE[j] = 0.0
    eta, g, work = np.empty(ROW_BLOCK), np.empty(ROW_BLOCK), np.empty(ROW_BLOCK)
    value, bits = np.empty(ROW_BLOCK), np.empty(ROW_BLOCK, np.int64)
    total, d_theta, k = const, 0.0, 0
    for s in range(0, N, ROW_BLOCK):
        e = min(s + ROW_BLOCK, N)
        m = e - s
        _block_eta(beta, uE, off, Xt, node, Zt, qf, s, e, eta, lead)
        if lead >= 0:
            while run[k + 1] <= s:  # the run holding row s
                k += 1
            _lead_eta(uE, node[lead], Zt, qf[lead], lead * width, run, k, s, e, eta)
        block_total, gt = _family_rows(code, eta, y[s:e], n[s:e], theta, g, value, work,
                                       bits, m)  # fmt: skip
        total += block_total
        d_theta += gt
        for j in range(p):
            x, acc = Xt[j, s:e], 0.0
            for i in range(m):
                acc += x[i] * g[i]
            dbeta[j] += acc
        for f in range(F):
            if f == lead:
                _lead_grad(duE, node[f], Zt, qf[f], f * width, run, k, s, e, g)
                continue
            level = node[f, s:e]
            for a in range(qf[f]):
                z = Zt[f * width + a, s:e]
                for i in range(m):
                    duE[level[i] + a] += g[i] * z[i]
    if code == 6 or code == 7:
        dtheta[0] = d_theta
    return total


def pointwise_loglik(design: Design, response: GlmResponse, beta: np.ndarray,
                     effects: list[np.ndarray], theta: np.ndarray | None = None
                     ) -> np.ndarray | None:  # fmt: skip
    """Each row's log-pmf with its constant at each draw: ``(draws, rows)``, from the
    draws of ``beta`` ``(draws, p)``, of each random-effect block's effects ``(draws,
    levels, terms)`` (``design.blocks``' order) and a negative binomial's ``theta``
    ``(draws,)``: the pointwise log-likelihood of LOO, on the link scale as the sampler's
    density (no ``mu`` rounded to 0 or 1), by the rows' vectorised pass. None where the
    kernel lacks the family or link."""
    code = family_code(response)
    if code is None:
        return None
    y, trials, constants = row_counts(response, code)
    n, draws = design.n_obs, beta.shape[0]
    sizes = [b.n_terms for b in design.blocks]
    qmax = max(sizes, default=0)
    node = np.zeros((len(sizes), n), np.int64)
    Zt = np.zeros((len(sizes) * qmax, n))
    columns, start = [], 0
    for k, (block, u) in enumerate(zip(design.blocks, effects, strict=True)):
        node[k] = start + np.asarray(block.codes, np.int64) * sizes[k]
        Zt[k * qmax : k * qmax + sizes[k]] = np.asarray(block.Z, float).T
        columns.append(np.asarray(u, float).reshape(draws, -1))
        start += columns[-1].shape[1]
    U = np.ascontiguousarray(np.concatenate(columns, axis=1) if columns
                             else np.zeros((draws, 0)))  # fmt: skip
    theta = np.zeros(draws) if theta is None else np.asarray(theta, float).reshape(draws)
    out = np.empty((draws, n))
    _pointwise_kernel(code, np.ascontiguousarray(beta, float), U,
                      np.asarray(response.offset, float),
                      np.ascontiguousarray(np.asarray(design.X, float).T), node, Zt,
                      np.array(sizes, np.int64), y, trials, constants, theta, out)  # fmt: skip
    return out


@vector_kernel
def _pointwise_kernel(code, beta, U, off, Xt, node, Zt, qf, y, n, const, theta, out):
    """``out[d, i]``: row ``i``'s log-pmf with its constant at draw ``d``
    (:func:`pointwise_loglik`); the rows' arrays as :func:`row_loglik` reads them, the
    effects of draw ``d`` in ``U[d]``."""
    N = y.shape[0]
    eta, g, work = np.empty(ROW_BLOCK), np.empty(ROW_BLOCK), np.empty(ROW_BLOCK)
    value, bits = np.empty(ROW_BLOCK), np.empty(ROW_BLOCK, np.int64)
    for d in range(out.shape[0]):
        for s in range(0, N, ROW_BLOCK):
            e = min(s + ROW_BLOCK, N)
            _block_eta(beta[d], U[d], off, Xt, node, Zt, qf, s, e, eta, -1)
            _family_rows(code, eta, y[s:e], n[s:e], theta[d], g, value, work, bits, e - s)
            row, c = out[d, s:e], const[s:e]
            for i in range(e - s):
                row[i] = value[i] + c[i]
