"""Marginal likelihoods by bridge sampling, and Bayes factors.

With the random effects integrated out exactly, the posterior of a linear mixed model
lives on a few dimensions (fixed effects, log SDs, correlations, log sigma), where the
unnormalised log posterior, priors and Jacobians included, is the compiled marginal
density (:mod:`bayeslmm.bayes.density`); its integral is ``p(y)``. Bridge sampling
(Meng & Wong 1996) estimates that integral from the posterior draws and draws of a
multivariate normal proposal, with the iterative scheme of the ``bridgesampling`` R
package (Gronau et al. 2017, ``method = "normal"``):

- each chain's first half of draws fits the proposal's mean and covariance, the second
  half enters the bridge (``N1`` draws, effective size ``neff``), with ``N2 = N1``
  proposal draws;
- ``l1 = log q(post) - log g(post)``, ``l2 = log q(prop) - log g(prop)`` and, from
  ``r = 1``, ``r <- mean(e^l2 / (s1 e^l2 + s2 r)) / mean(1 / (s1 e^l1 + s2 r))`` with
  ``s1 = neff / (neff + N2)``, ``s2 = N2 / (neff + N2)`` (in logs, scaled by the
  median of ``l1``) until ``log r`` moves by less than 1e-10;
- the Monte Carlo error is Frühwirth-Schnatter's (2004) relative mean squared error of
  the estimate, ``var(f1) / (N2 mean(f1)^2) + var(f2) / (ESS(f2) mean(f2)^2)``, whose
  square root is the standard error of ``log p(y)``; the autocorrelation of the
  posterior term enters through its effective sample size (ArviZ's ``ess``) where
  ``bridgesampling`` uses a spectral density at zero.

The draws are mapped back to the density's unconstrained space from the posterior's
``beta``, ``sd_L``, ``cor_L`` and ``sigma`` (and, for grouping factors sampled rather
than integrated out, their standardised effects ``z_L``), so any sampler's draws serve,
whichever space it moved in. Every design is covered: one grouping factor, nested and
crossed. Models whose priors the compiled density lacks use PyMC's marginal model instead
(its log density on the transformed value variables, one compiled call per draw, slower).

A binomial, Bernoulli or Poisson model (``bl.LMM(..., family=...)``) samples its random
effects, so its posterior is over ``(beta, SDs, correlations, u)``; bridging that whole
space would need a proposal in hundreds of dimensions. Instead the effects are integrated
out per draw, level by level (:mod:`bayeslmm.bayes.glmm_marginal`: adaptive Gauss-Hermite
quadrature for one effect per level, error bounded by comparing ``n`` and ``2 n`` nodes;
importance sampling from the Laplace mode for several, with its Monte Carlo error), and the
bridge runs as above on ``(beta, log SDs, atanh partial correlations)`` with the priors and
Jacobians of the compiled density (:func:`glmm_log_density`). The posterior draws of those
parameters are draws of their marginal posterior whatever the sampler, so nothing is
re-sampled. This needs the levels to be independent given the parameters: one grouping
factor (crossed or nested factors are refused), and exact draws (not ``method="laplace"``).

The same family without random terms (``bl.LMM("y ~ x", data, family=...)``, a GLM) has
nothing to integrate: the bridge runs on ``beta`` with its priors and the rows' exact
log-pmf (:func:`glm_log_density`), so its error is the bridge's alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.stats
import xarray as xr

from ..errors import ComparisonError, NotFittedError, check_seed
from ..gaussian.statistics import same_response
from ..spec.design import Design
from . import stack
from .chains import ess_bulk
from .density import Layout, MarginalDensity, _prior_row, level_mean_basis, unpack
from .density import _prior as prior_kernel
from .glm_model import is_gaussian
from .glmm_marginal import GroupRows, integrate_levels, row_loglik

if TYPE_CHECKING:
    from .fitted import FittedLMM as LMM  # a protocol: this module is below bayes.model

MAX_ITERATIONS = 1000
TOLERANCE = 1e-10


@dataclass(frozen=True)
class MarginalLikelihood:
    """``log p(y)`` of a model, estimated by bridge sampling.

    Attributes
    ----------
    logml
        The estimate of the log marginal likelihood.
    error
        Its Monte Carlo standard error (on the log scale; Frühwirth-Schnatter's
        approximate relative RMSE of ``p(y)``).
    iterations
        Iterations of the bridge scheme.
    n_posterior, n_proposal
        Posterior draws in the bridge (half of each chain) and proposal draws.
    density
        ``"compiled"`` (:mod:`bayeslmm.bayes.density`), ``"PyMC graph"``, or for a
        binomial/Poisson model ``"GLMM, effects integrated out by <method>"``.
    notes
        What was done beyond the bridge (GLMMs: how the effects were integrated out and
        that integration's error, which :attr:`error` includes).
    """

    logml: float
    error: float
    iterations: int
    n_posterior: int
    n_proposal: int
    density: str
    notes: str = ""

    def __float__(self) -> float:
        return self.logml

    def __str__(self) -> str:
        return f"log p(y) = {self.logml:.4f} (MC error {self.error:.4f}, bridge sampling)"


@dataclass(frozen=True)
class BayesFactor:
    """The Bayes factor of model 1 against model 0, ``p(y | m1) / p(y | m0)``.

    Attributes
    ----------
    log_bf
        ``log p(y | m1) - log p(y | m0)``.
    error
        Monte Carlo standard error of ``log_bf`` (the two errors added in quadrature).
    m1, m0
        The marginal likelihoods.
    """

    log_bf: float
    error: float
    m1: MarginalLikelihood
    m0: MarginalLikelihood

    @property
    def bf(self) -> float:
        """``exp(log_bf)`` (``inf`` beyond the float range)."""
        return math.exp(self.log_bf) if self.log_bf < 709 else math.inf

    def __str__(self) -> str:
        return (f"BF10 = {self.bf:.4g} (log BF = {self.log_bf:.3f} +/- {self.error:.3f} "
                "Monte Carlo error)")  # fmt: skip


def bridge_sampling(
    log_density: Callable[[np.ndarray], np.ndarray],
    draws: np.ndarray,
    rng: np.random.Generator,
    *,
    max_iterations: int = MAX_ITERATIONS,
) -> tuple[float, float, int, int, int]:
    """The bridge-sampling estimate of ``log integral exp(log_density)`` (module text).

    Parameters
    ----------
    log_density
        Unnormalised log density of a batch of points (n, d) -> (n,).
    draws
        Posterior draws (chain, draw, d), at least 4 per chain.
    rng
        Source of the proposal draws.

    Returns
    -------
    logml, error, iterations, n_posterior, n_proposal
    """
    n_chain, n_draw, dim = draws.shape
    if n_draw < 4:
        raise ComparisonError(f"bridge sampling needs at least 4 draws per chain, got {n_draw}")
    half = n_draw // 2
    fit = draws[:, :half].reshape(-1, dim)
    bridge = np.ascontiguousarray(draws[:, half:])
    mean = fit.mean(axis=0)
    cov = np.atleast_2d(np.cov(fit, rowvar=False))
    cov = cov + 1e-10 * np.diag(np.maximum(np.diag(cov), 1e-12))
    proposal = scipy.stats.multivariate_normal(mean, cov)
    post = bridge.reshape(-1, dim)
    n1 = n2 = len(post)
    prop = np.asarray(proposal.rvs(size=n2, random_state=rng)).reshape(n2, dim)
    q11 = _finite(log_density(post))
    q12 = proposal.logpdf(post).reshape(n1)
    q21 = _finite(log_density(prop))
    q22 = proposal.logpdf(prop).reshape(n2)
    neff = float(min(np.median(_per_dim(bridge)), n1))
    log_s1, log_s2 = math.log(neff / (neff + n2)), math.log(n2 / (neff + n2))
    l1, l2 = q11 - q12, q21 - q22
    lstar = float(np.median(l1))
    a1, a2 = l1 - lstar, l2 - lstar
    log_r, iterations, done = 0.0, 0, False
    while not done and iterations < max_iterations:
        iterations += 1
        num = np.exp(a2 - np.logaddexp(log_s1 + a2, log_s2 + log_r))
        den = np.exp(-np.logaddexp(log_s1 + a1, log_s2 + log_r))
        new = math.log(np.mean(num)) - math.log(np.mean(den))
        done = abs(new - log_r) < TOLERANCE
        log_r = new
    if not done:
        warnings.warn(f"bridge sampling stopped after {iterations} iterations before "
                      "converging; the marginal likelihood may be off", UserWarning,
                      stacklevel=3)  # fmt: skip
    logml = log_r + lstar
    # Frühwirth-Schnatter's relative mean squared error of exp(logml)
    f1 = np.exp(-np.logaddexp(log_s1, log_s2 + q22 - q21 + logml))
    f2 = np.exp(q12 - np.logaddexp(log_s1 + q11 - logml, log_s2 + q12))
    ess_f2 = float(ess_bulk(f2.reshape(1, n_chain, -1))[0])
    re2 = np.var(f1, ddof=1) / (n2 * np.mean(f1) ** 2) + np.var(f2, ddof=1) / (
        max(ess_f2, 1.0) * np.mean(f2) ** 2
    )
    return float(logml), float(np.sqrt(re2)), iterations, n1, n2


def _per_dim(draws: np.ndarray) -> np.ndarray:
    """Bulk effective sample size of every coordinate of (chain, draw, d) draws, all at
    once (:func:`~bayeslmm.bayes.chains.ess_bulk`, ArviZ's values to 1e-10)."""
    return ess_bulk(np.moveaxis(draws, -1, 0))


def _finite(values: np.ndarray) -> np.ndarray:
    """Log densities with nan (a point the density rejects) as -inf."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isnan(values), -np.inf, values)


def population_coordinates(layout: Layout, post: xr.Dataset, design: Design,
                           size: int) -> np.ndarray:  # fmt: skip
    """(chain, draw, size) draws with the population parameters at their places in the
    compiled density's space: ``beta``, per block the log SDs and, if correlated,
    ``atanh`` of the canonical partial correlations of ``cor_L`` (``z_ij = W_ij /
    sqrt(1 - sum_{m<j} W_im^2)`` from the Cholesky factor ``W`` of the correlation
    matrix); the other coordinates are left unset."""
    shape = (post.sizes["chain"], post.sizes["draw"])
    x = np.empty((*shape, size))
    if layout.p:
        x[..., : layout.p] = post["beta"].values
    for (_, k, corr), first, block in zip(layout.blocks, layout.starts, design.blocks,
                                          strict=True):  # fmt: skip
        x[..., first : first + k] = np.log(post[f"sd_{block.label}"].values)
        if not corr:
            continue
        w = _correlation_factor(post, block.label, k, shape)
        pos = first + k
        for i in range(1, k):
            rest = np.ones(shape)
            for j in range(i):
                z = w[..., i, j] / np.sqrt(np.maximum(rest, 1e-300))
                x[..., pos] = np.arctanh(np.clip(z, -1 + 1e-15, 1 - 1e-15))
                rest = rest - w[..., i, j] ** 2
                pos += 1
    return x


def unconstrained_draws(layout: Layout, post: xr.Dataset, design: Design) -> np.ndarray:
    """Posterior draws in the compiled density's space, (chain, draw, size).

    The inverse of :meth:`MarginalDensity.constrained`: ``beta`` (plus, for each
    non-centred term of a sampled factor varying around a fixed effect, the mean of its
    effects; less, for the centred term owning one, the mean of ``beta_k + u``, whose
    values go through :func:`level_mean_basis`); per block the log SDs
    and, if correlated, ``atanh`` of the canonical partial correlations of ``cor_L``
    (``z_ij = W_ij / sqrt(1 - sum_{m<j} W_im^2)`` from the Cholesky factor ``W`` of the
    correlation matrix); ``log sigma``.
    """
    shape = (post.sizes["chain"], post.sizes["draw"])
    x = population_coordinates(layout, post, design, layout.size)
    x[..., layout.sigma] = np.log(post["sigma"].values)
    owners = layout.owners
    for (c0, k, _), f, block, sampled, shift in zip(
            layout.blocks, layout.factors, design.blocks,
            layout.explicit or [None] * len(layout.blocks),
            layout.shift or [None] * len(layout.blocks), strict=True):  # fmt: skip
        if sampled is not None:  # effects of a factor sampled, not integrated out
            v_first, q_factor, levels, centred = sampled
            v = x[..., layout.sigma + 1 + v_first : layout.sigma + 1 + v_first
                  + levels * q_factor].reshape(*shape, levels, q_factor)  # fmt: skip
            flags = np.array(centred[c0 : c0 + k])  # centred terms: u, the others: z
            u = post[f"u_{block.label}"].values
            v[..., c0 : c0 + k] = np.where(flags, u, post[f"z_{block.label}"].values)
            for i, column in enumerate(shift or ()):
                if column >= 0 and flags[i]:  # sampled: H (beta_k + u)
                    values = v[..., c0 + i] + post["beta"].values[..., column, None]
                    if owners.get(column) == (f, c0 + i):  # x_k = beta_k - mean
                        x[..., column] -= values.mean(axis=-1)
                    v[..., c0 + i] = level_mean_basis(values) if layout.level_mean_basis else values
                elif column >= 0:  # x_k = beta_k + mean over levels of u_k
                    x[..., column] += u[..., i].mean(axis=-1)
    return x


def _correlation_factor(post: xr.Dataset, label: str, k: int, shape: tuple) -> np.ndarray:
    """Cholesky factor W of each draw's correlation matrix: from the packed Cholesky
    factor of the covariance where the posterior has it (exact, whatever the sampler),
    else from the correlations."""
    rows, cols = np.tril_indices(k)
    if f"chol_{label}" in post:
        chol = np.zeros((*shape, k, k))
        chol[..., rows, cols] = post[f"chol_{label}"].values
        return chol / np.linalg.norm(chol, axis=-1, keepdims=True)
    full = np.broadcast_to(np.eye(k), (*shape, k, k)).copy()
    lower = np.tril_indices(k, k=-1)
    cor = post[f"cor_{label}"].values
    full[..., lower[0], lower[1]] = cor
    full[..., lower[1], lower[0]] = cor
    return np.linalg.cholesky(full)


def _pymc_space(model: LMM) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """PyMC's marginal model: its log density over the stacked value variables, and the
    posterior draws mapped there through the variables' transforms."""
    import pytensor
    import pytensor.tensor as pt

    pm_model = model.marginal_model
    post = stack.posterior(model.idata)
    pieces, inputs, sizes = [], [], []
    for rv in pm_model.free_RVs:
        values = np.asarray(post[rv.name].values, dtype=float)
        transform = pm_model.rvs_to_transforms.get(rv)
        if transform is not None:
            batch = pt.tensor(dtype="float64", shape=(None,) * values.ndim)
            forward = pytensor.function([batch], transform.forward(batch, *rv.owner.inputs))
            values = np.asarray(forward(values))
        pieces.append(values.reshape(*values.shape[:2], -1))
        value_var = pm_model.rvs_to_values[rv]
        inputs.append(value_var)
        sizes.append(pieces[-1].shape[-1])
    logp = pytensor.function(inputs, pm_model.logp())
    shapes = [tuple(int(s) for s in v.type.shape) if None not in v.type.shape else None
              for v in inputs]  # fmt: skip
    shapes = [s if s is not None else p.shape[2:] for s, p in zip(shapes, pieces, strict=True)]
    splits = np.cumsum(sizes)[:-1]

    def log_density(points: np.ndarray) -> np.ndarray:
        out = np.empty(len(points))
        for i, point in enumerate(points):
            args = [part.reshape(shape) for part, shape in
                    zip(np.split(point, splits), shapes, strict=True)]  # fmt: skip
            out[i] = float(logp(*args))
        return out

    return log_density, np.concatenate(pieces, axis=-1)


def log_marginal_likelihood(model: LMM, random_seed: int | None = None) -> MarginalLikelihood:
    """``log p(y)`` of a fitted :class:`~bayeslmm.LMM` by bridge sampling (module text).

    Parameters
    ----------
    model
        A fitted model with random effects (a binomial, Bernoulli or Poisson model: one
        grouping factor, its effects integrated out level by level).
    random_seed
        Seed of the proposal draws.
    """
    check_seed("random_seed", random_seed)
    if model.idata is None:
        raise NotFittedError("the model is not fitted yet: call model.fit() first")
    if not model.marginal_supported and is_gaussian(model):
        if model.design.blocks:  # a residual structure across grouping factors' levels
            raise ComparisonError(
                f"bridge sampling integrates the random effects of {model.formula!r} out, "
                f"which its residual structure ({model.design.residual.describe()}) prevents: "
                "its groups span several levels of a grouping factor"
            )
        raise ComparisonError(
            f"{model.formula!r} has no random effects: bridge sampling here integrates "
            "random effects out; compare models without them by their own likelihoods"
        )
    rng = np.random.default_rng(random_seed)
    if not is_gaussian(model) and not model.design.blocks:
        return _glm_marginal_likelihood(model, rng)
    if not is_gaussian(model):
        return _glmm_marginal_likelihood(model, rng)
    density = model.compiled_density
    post = stack.posterior(model.idata)
    if density is not None:
        density = density.with_log_sds()
        draws = unconstrained_draws(density.layout, post, model.design)
        log_density = density.logp_many

        kind = "compiled"
    else:
        log_density, draws = _pymc_space(model)
        kind = "PyMC graph"
    logml, error, iterations, n1, n2 = bridge_sampling(log_density, draws, rng)
    return MarginalLikelihood(logml, error, iterations, n1, n2, kind)


def bayes_factor(m1: LMM, m0: LMM, random_seed: int | None = None) -> BayesFactor:
    """The Bayes factor ``BF10 = p(y | m1) / p(y | m0)`` of two fitted models.

    Parameters
    ----------
    m1, m0
        Fitted :class:`~bayeslmm.LMM` of the same response on the same rows (both
        Gaussian, or both binomial/Bernoulli/Poisson with one grouping factor: module
        text); their marginal likelihoods come from :meth:`LMM.log_marginal_likelihood`
        (cached per fit).
    random_seed
        Seed of the proposal draws (for models not yet bridged).

    Returns
    -------
    BayesFactor
        ``.bf``, ``.log_bf`` and ``.error`` (Monte Carlo SE of ``log_bf``). A Bayes
        factor depends on the priors of the parameters the models do not share: with
        bayeslmm's autoscaled defaults these are weakly informative, not flat.
    """
    for name, m in (("m1", m1), ("m0", m0)):  # an LMM (its class is above this module)
        if not callable(getattr(type(m), "log_marginal_likelihood", None)):
            raise ComparisonError(f"bayes_factor() compares bl.LMM models; {name} is a "
                                  f"{type(m).__name__}")  # fmt: skip
    check_seed("random_seed", random_seed)
    a, b = m1.design, m0.design
    if not same_response(a, b) or not _same_glm_response(m1, m0):
        raise ComparisonError(
            f"{m1.formula!r} and {m0.formula!r} are not fitted to the same response on the "
            "same rows: their marginal likelihoods are not comparable"
        )
    e1 = m1.log_marginal_likelihood(random_seed=random_seed)
    e0 = m0.log_marginal_likelihood(random_seed=random_seed)
    return BayesFactor(e1.logml - e0.logml, math.hypot(e1.error, e0.error), e1, e0)


def _same_glm_response(m1: LMM, m0: LMM) -> bool:
    """Both Gaussian, or both discrete with the same counts (and trials): a density and a
    probability mass are not comparable."""
    if is_gaussian(m1) != is_gaussian(m0):
        return False
    if is_gaussian(m1):
        return True
    r1, r0 = m1.response, m0.response
    k1 = np.round(np.asarray(r1.y, float) * np.asarray(r1.weights, float))
    k0 = np.round(np.asarray(r0.y, float) * np.asarray(r0.weights, float))
    return bool(np.array_equal(k1, k0) and np.array_equal(np.asarray(r1.weights, float),
                                                          np.asarray(r0.weights, float)))


@dataclass(frozen=True)
class GlmmSpace:
    """The population parameters of a one-factor GLMM as the bridge sees them: ``beta``,
    then per random block its log SDs and, if correlated, ``atanh`` of its canonical
    partial correlations (the compiled density's order and transforms, with every SD as
    ``log sd``), and what the log density needs."""

    layout: Layout
    priors: np.ndarray  # the compiled density's prior rows: beta, then SDs block by block
    etas: np.ndarray  # per block (LKJ eta, log constant)
    rows: GroupRows
    X: np.ndarray
    offset: np.ndarray

    @property
    def dim(self) -> int:
        return self.layout.p + sum(k + (k * (k - 1) // 2 if corr else 0)
                                   for _, k, corr in self.layout.blocks)  # fmt: skip

    def log_prior(self, points: np.ndarray) -> np.ndarray:
        """Log prior density of (n, dim) points with the Jacobians of the transforms."""
        lay, out = self.layout, np.zeros(len(points))
        for s, x in enumerate(points):
            lp = 0.0
            for j in range(lay.p):
                lp += prior_kernel(self.priors[j], x[j])[0]
            row = lay.p
            for b, ((_, k, corr), first) in enumerate(zip(lay.blocks, lay.starts, strict=True)):
                for i in range(k):
                    lp += prior_kernel(self.priors[row + i], math.exp(x[first + i]))[0]
                    lp += x[first + i]  # sd = exp(x)
                row += k
                if corr:  # LKJ(eta) through the partial correlations (density.py's terms)
                    eta, const = self.etas[b]
                    lp += const
                    at = first + k
                    for i in range(1, k):
                        e_i = k - i - 1.0 + 2.0 * eta - 2.0
                        for m in range(i):
                            y = abs(x[at + m])
                            log1m = 2.0 * (math.log(2.0) - y - math.log1p(math.exp(-2.0 * y)))
                            lp += (1.0 + 0.5 * (i - 1 - m) + 0.5 * e_i) * log1m
                        at += i
            out[s] = lp
        return out

    def factor_cholesky(self, points: np.ndarray) -> np.ndarray:
        """(n, q, q) Cholesky factor of the grouping factor's covariance at each point."""
        lay = self.layout
        n, q = len(points), self.rows.q
        L = np.zeros((n, q, q))
        for (c0, k, corr), first in zip(lay.blocks, lay.starts, strict=True):
            sd = np.exp(points[:, first : first + k])
            W = np.broadcast_to(np.eye(k), (n, k, k)).copy()
            if corr:
                at = first + k
                for i in range(1, k):
                    h = np.zeros(n)
                    for j in range(i):
                        y = points[:, at]
                        W[:, i, j] = np.tanh(y) * np.exp(h)
                        h = h + 0.5 * np.log1p(-np.tanh(y) ** 2)
                        at += 1
                    W[:, i, i] = np.exp(h)
            L[:, c0 : c0 + k, c0 : c0 + k] = sd[:, :, None] * W
        return L

    def draws(self, post: xr.Dataset, design: Design) -> np.ndarray:
        """The posterior draws in this space, (chain, draw, dim)."""
        return population_coordinates(self.layout, post, design, self.dim)


def glmm_space(model: LMM) -> GlmmSpace:
    """:class:`GlmmSpace` of a fitted one-factor GLMM (refusals as :class:`ComparisonError`)."""
    design = model.design
    groups = list(dict.fromkeys(b.group for b in design.blocks))
    if len(groups) != 1:
        raise ComparisonError(
            f"the marginal likelihood of a {model.family.name} model integrates each level's "
            f"random effects out on its own, which needs one grouping factor; "
            f"{model.formula!r} has {len(groups)} ({', '.join(groups)}), whose effects are "
            "not independent across one factor's levels"
        )
    density = model.compiled_density
    if density is None:
        raise ComparisonError(
            f"the marginal likelihood of {model.formula!r} needs the compiled density's "
            "priors and link, and it lacks one of them; use priors and links it covers"
        )
    density: MarginalDensity = density.with_log_sds()
    fields = unpack(density.data)
    blocks = design.blocks
    Z = np.zeros((design.n_obs, sum(b.n_terms for b in blocks)))
    for (c0, k, _), block in zip(density.layout.blocks, blocks, strict=True):
        Z[:, c0 : c0 + k] = block.Z
    rows = GroupRows.build(model.response, Z, blocks[0].codes, blocks[0].n_levels)
    return GlmmSpace(density.layout, np.array(fields["priors"]), np.array(fields["etas"]),
                     rows, np.asarray(design.X, float),
                     np.asarray(model.response.offset, float))  # fmt: skip


def glmm_log_density(space: GlmmSpace, points: np.ndarray, *, nodes: int | None = None,
                     rng: np.random.Generator | None = None):  # fmt: skip
    """Unnormalised log posterior density of a one-factor GLMM at (n, dim) points of
    :class:`GlmmSpace`, its random effects integrated out: ``log prior + sum over levels of
    log p(y_g | beta, D)``, and the :class:`~bayeslmm.bayes.glmm_marginal.Integrated`
    record of that integration."""
    points = np.atleast_2d(np.asarray(points, float))
    beta = points[:, : space.layout.p]
    eta0 = beta @ space.X.T + space.offset
    kwargs = {} if nodes is None else {"nodes": nodes}
    integrated = integrate_levels(space.rows, eta0, space.factor_cholesky(points), rng=rng,
                                  **kwargs)  # fmt: skip
    return space.log_prior(points) + integrated.values.sum(axis=1), integrated


def _glmm_marginal_likelihood(model: LMM, rng: np.random.Generator) -> MarginalLikelihood:
    """:func:`log_marginal_likelihood` of a binomial, Bernoulli or Poisson model (module
    text)."""
    if getattr(model, "approximate", False):
        raise ComparisonError(
            f"{model.formula!r} was fitted with method='laplace', whose draws come from an "
            "approximate posterior; bridge sampling needs exact draws: refit with the "
            "default method"
        )
    space = glmm_space(model)
    post = stack.posterior(model.idata)
    draws = space.draws(post, model.design)
    records = []
    seed = int(rng.integers(2**31))

    def log_density(points: np.ndarray) -> np.ndarray:
        # the same importance draws at every call (common random numbers)
        values, integrated = glmm_log_density(space, points, rng=np.random.default_rng(seed))
        records.append(integrated)
        return values

    logml, error, iterations, n1, n2 = bridge_sampling(log_density, draws, rng)
    method = records[0].method
    worst = max(records, key=lambda r: r.total_error)
    total = worst.total_error
    notes = (f"random effects of {space.rows.n_levels} levels integrated out per draw by "
             f"{worst.note()}; bridge sampling on beta, log SDs and correlations "
             f"(MC error {error:.4f}) plus the largest integration error of one draw's "
             f"log-likelihood ({total:.2e})")  # fmt: skip
    return MarginalLikelihood(logml, error + total, iterations, n1, n2,
                              f"GLMM, effects integrated out by {method}", notes)


def glm_log_density(model: LMM) -> Callable[[np.ndarray], np.ndarray]:
    """Unnormalised log posterior density of ``beta`` of a binomial, Bernoulli or Poisson
    model without random terms: its priors (the compiled density's kernels) plus every
    row's log-pmf with its constants (``dbinom``, ``dpois``)."""
    design, response = model.design, model.response
    names = list(design.fixed_names)
    rows_ = [_prior_row(model.priors[name], positive=False) for name in names]
    missing = [n for n, r in zip(names, rows_, strict=True) if r is None]
    if missing:
        raise ComparisonError(
            f"the marginal likelihood of {model.formula!r} needs priors the compiled density "
            f"has (Normal, StudentT, Cauchy, ...); {', '.join(missing)} have others"
        )
    priors = np.array(rows_)
    n = design.n_obs
    rows = GroupRows.build(response, np.zeros((n, 0)), np.zeros(n, np.int64), 1)
    order = rows.order
    X = np.asarray(design.X, float)[order]
    offset = np.asarray(response.offset, float)[order]
    const = float(rows.const.sum())

    def log_density(points: np.ndarray) -> np.ndarray:
        points = np.atleast_2d(np.asarray(points, float))
        eta = points @ X.T + offset
        with np.errstate(invalid="ignore"):
            loglik = row_loglik(rows.code, eta, rows.y, rows.trials).sum(axis=1) + const
        prior = np.zeros(len(points))
        for j, row in enumerate(priors):
            prior += np.array([prior_kernel(row, x)[0] for x in points[:, j]])
        return prior + loglik

    return log_density


def _glm_marginal_likelihood(model: LMM, rng: np.random.Generator) -> MarginalLikelihood:
    """:func:`log_marginal_likelihood` of a binomial, Bernoulli or Poisson model without
    random terms (module text)."""
    if getattr(model, "approximate", False):
        raise ComparisonError(f"{model.formula!r} was fitted with method='laplace': bridge "
                              "sampling needs exact draws; refit with the default method")
    if not model.design.X.shape[1]:
        raise ComparisonError(f"{model.formula!r} has no parameter to integrate over")
    log_density = glm_log_density(model)
    draws = np.asarray(stack.posterior(model.idata)["beta"].values, float)
    logml, error, iterations, n1, n2 = bridge_sampling(log_density, draws, rng)
    notes = (f"no random effects: bridge sampling on beta with the rows' exact log-pmf "
             f"(MC error {error:.4f})")  # fmt: skip
    return MarginalLikelihood(logml, error, iterations, n1, n2, "GLM (no random effects)",
                              notes)  # fmt: skip
