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
from ..jit import kernel
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
#: the family codes whose likelihood has the negative binomial's theta
NEGATIVE_BINOMIAL = (6, 7)
#: counts up to this sum ``lgamma(y + theta) - lgamma(theta) - y log theta`` as
#: ``sum_k log1p(k / theta)`` (exact however large theta: the Poisson limit); larger ones
#: take the lgamma difference
NB_DIRECT_SUM = 64
#: the density buffer's row sections: ``glm`` = (family code, summed log-pmf constant);
#: per row the successes or counts, the trials, the offset, the row of ``X``, for each
#: grouping factor (node order) the first sampled effect of its level and the row of its
#: ``Z`` (``qmax`` columns per factor, zero padded)
ROW_FIELDS = (
    ("glm", "float64", 1), ("rows_y", "float64", 1), ("rows_n", "float64", 1),
    ("rows_off", "float64", 1), ("rows_X", "float64", 2), ("rows_node", "int64", 2),
    ("rows_Z", "float64", 2),
)  # fmt: skip
LOG_2PI = math.log(2.0 * math.pi)
SQRT_2 = math.sqrt(2.0)


def gaussian_rows(p: int, n_factors: int, qmax: int) -> dict[str, np.ndarray]:
    """:data:`ROW_FIELDS` of a Gaussian model: its family code and no rows."""
    return {"glm": np.array([float(GAUSSIAN), 0.0]), "rows_y": np.zeros(0),
            "rows_n": np.zeros(0), "rows_off": np.zeros(0), "rows_X": np.zeros((0, p)),
            "rows_node": np.zeros((0, n_factors), np.int64),
            "rows_Z": np.zeros((0, n_factors * qmax))}  # fmt: skip


def has_theta(code: int) -> bool:
    """Does the family code's likelihood have the negative binomial's theta?"""
    return int(code) in NEGATIVE_BINOMIAL


def family_code(response: GlmResponse) -> int | None:
    """The kernel's code of the response's family and link (None: not covered)."""
    return CODES.get((response.family.name, response.family.link.name))


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
    trials = np.round(np.asarray(response.weights, float))
    if code <= 3:
        y = np.round(np.asarray(response.y, float) * trials)
        const = float(np.sum(gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1)))
    else:
        y = np.asarray(response.y, float)
        const = -float(np.sum(gammaln(y + 1)))
    node = np.zeros((n, F), np.int64)
    Z = np.zeros((n, F * qmax))
    e_offset = system.sampled().e_offset
    for f, factor in enumerate(stats.factors):
        codes = design.blocks[factor.blocks[0]].codes
        node[:, f] = e_offset[factor.first + codes]
        column = f * qmax
        for k in factor.blocks:
            block = design.blocks[k]
            Z[:, column : column + block.n_terms] = block.Z
            column += block.n_terms
    return {"glm": np.array([float(code), const]), "rows_y": y, "rows_n": trials,
            "rows_off": np.asarray(response.offset, float),
            "rows_X": np.asarray(design.X, float), "rows_node": node, "rows_Z": Z}  # fmt: skip


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


@kernel
def row_loglik(code, const, beta, uE, y, n, off, X, node, Z, qf, dbeta, duE, theta,
               dtheta):  # fmt: skip
    """The log-likelihood of the rows at ``beta`` and the sampled effects ``uE``; writes
    its gradient into ``dbeta`` and ``duE`` (both zeroed first). ``qf``: terms of each
    grouping factor (``Z`` has ``Z.shape[1] / F`` columns per factor). A negative binomial
    (:data:`NEGATIVE_BINOMIAL`) reads its ``theta`` and writes the derivative in it to
    ``dtheta[0]``; the other families ignore both."""
    p, F = X.shape[1], node.shape[1]
    width = Z.shape[1] // F if F else 0
    for j in range(p):
        dbeta[j] = 0.0
    for j in range(duE.shape[0]):
        duE[j] = 0.0
    total = const
    nb = code == 6 or code == 7
    d_theta = 0.0
    for i in range(y.shape[0]):
        eta = off[i]
        for j in range(p):
            eta += X[i, j] * beta[j]
        for f in range(F):
            at, col = node[i, f], f * width
            for a in range(qf[f]):
                eta += Z[i, col + a] * uE[at + a]
        if nb:
            value, g, gt = nb_term(code, eta, y[i], theta)
            d_theta += gt
        else:
            value, g = row_term(code, eta, y[i], n[i])
        total += value
        for j in range(p):
            dbeta[j] += g * X[i, j]
        for f in range(F):
            at, col = node[i, f], f * width
            for a in range(qf[f]):
                duE[at + a] += g * Z[i, col + a]
    if nb:
        dtheta[0] = d_theta
    return total
