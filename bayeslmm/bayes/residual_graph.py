"""Residual correlation structures in the PyMC models (:mod:`bayeslmm.gaussian.residual`).

- the correlation parameter (``phi`` for AR(1), ``rho`` for compound symmetry) with its
  prior;
- the marginal model's statistics as PyTensor expressions of it, ``sum_k c_k(phi) S_k``
  (one grouping factor or two nested: the pure graph, which every PyMC sampler and JAX
  run, with the derivative in ``phi`` by autodiff, O(components x levels) per
  evaluation); other designs through the blocked kernel as one Op (PyMC's sampler);
- the explicit model's likelihood ``N(y | mu, sigma^2 R(phi))`` in closed form (AR(1)'s
  tridiagonal precision, compound symmetry's Sherman-Morrison), O(rows), with draws of
  correlated residuals for posterior predictive checks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from ..gaussian.residual import ResidualSystem, ResidualWeights, StackedStats, residual_noise
from ..gaussian.statistics import GroupStats, NestedStats
from ..spec.residual import ResidualLayout
from .priors import Prior


def correlation_variable(layout: ResidualLayout, prior: Prior) -> pt.TensorVariable:
    """The correlation parameter as a PyMC variable named ``phi`` or ``rho``."""
    return prior.family()(layout.parameter, **prior.params)


@dataclasses.dataclass
class _GraphGroupStats(GroupStats):
    """:class:`GroupStats` whose arrays are PyTensor expressions (static sizes kept)."""

    q_static: int = 0

    @property
    def q(self) -> int:
        return self.q_static


@dataclasses.dataclass
class _GraphNestedStats(NestedStats):
    """:class:`NestedStats` whose arrays are PyTensor expressions (static sizes kept)."""

    sizes_static: tuple[int, int, int] = (0, 0, 0)

    @property
    def qA(self) -> int:
        return self.sizes_static[0]

    @property
    def qB(self) -> int:
        return self.sizes_static[1]

    @property
    def n_outer(self) -> int:
        return self.sizes_static[2]


def weighted_stats(stacked: StackedStats, coef: pt.TensorVariable) -> GroupStats | NestedStats:
    """The ``R(phi)^-1``-weighted per-level statistics as PyTensor expressions."""
    t = stacked.template
    base = {f.name: getattr(t, f.name) for f in dataclasses.fields(t)}
    base.update(stacked.values(coef, pt))
    if isinstance(t, NestedStats):
        return _GraphNestedStats(**base, sizes_static=(t.qA, t.qB, t.n_outer))
    return _GraphGroupStats(**base, q_static=t.q)


class ResidualBlockedLoglik(pytensor.graph.Op):
    """``log p(y | beta, D, sigma, phi)`` of any design as one Op (inputs ``T``, ``beta``,
    ``sigma``, ``phi``): the blocked kernel on the weighted statistics; its gradient is the
    kernel's exact one in ``T``, ``beta``, ``sigma`` and a central difference in ``phi``."""

    itypes = [pt.dtensor3, pt.dvector, pt.dscalar, pt.dscalar]
    otypes = [pt.dscalar]

    def __init__(self, system: ResidualSystem):
        self.system = system
        self.gradient_op = _ResidualBlockedGrad(self)

    def value(self, T, beta, sigma, phi) -> float:
        phi = float(phi)
        lo, hi = self.system.model.bounds
        if not lo < phi < hi:
            return -np.inf
        ll = self.system.system(phi).marginal_loglik(T, beta, sigma, grad=False)[0]
        return float(ll) - 0.5 * self.system.logdet(phi)

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(self.value(*inputs))

    def grad(self, inputs, output_grads):
        dT, dbeta, dsigma, dphi = self.gradient_op(*inputs)
        g = output_grads[0]
        return [g * dT, g * dbeta, g * dsigma, g * dphi]


class _ResidualBlockedGrad(pytensor.graph.Op):
    itypes = [pt.dtensor3, pt.dvector, pt.dscalar, pt.dscalar]
    otypes = [pt.dtensor3, pt.dvector, pt.dscalar, pt.dscalar]

    def __init__(self, parent: ResidualBlockedLoglik):
        self.parent = parent

    def perform(self, node, inputs, outputs):
        T, beta, sigma, phi = inputs
        phi = float(phi)
        system = self.parent.system.system(phi)
        _, dT, dbeta, dsigma, _ = system.marginal_loglik(T, beta, sigma, grad=True)
        lo, hi = self.parent.system.model.bounds
        h = min(1e-6, 0.5 * (phi - lo), 0.5 * (hi - phi))
        up = self.parent.value(T, beta, sigma, phi + h)
        down = self.parent.value(T, beta, sigma, phi - h)
        dphi = (up - down) / (2 * h) if np.isfinite(up) and np.isfinite(down) else 0.0
        outputs[0][0], outputs[1][0] = dT, dbeta
        outputs[2][0], outputs[3][0] = np.asarray(dsigma), np.asarray(dphi)


def residual_logp(resid: Any, sigma: Any, phi: Any, weights: ResidualWeights) -> Any:
    """``log N(resid | 0, sigma^2 R(phi))`` as a PyTensor expression, O(rows):
    ``e'R^-1 e = sum_k c_k(phi) |M_k e|^2`` with each ``M_k e`` a gather (AR(1): pairs of
    rows) or a sum over groups (compound symmetry)."""
    coef = weights.coefficients(phi, pt)
    layout = weights.layout
    quad = coef[0] * pt.sum(resid**2)
    k = 1
    if layout.is_ar1:
        D = len(weights.steps)
        for d in weights.steps:
            sel = layout.gap == d
            prev, nxt = layout.prev[sel], layout.next[sel]
            ends = pt.sum(resid[prev] ** 2) + pt.sum(resid[nxt] ** 2)
            sums = pt.sum((resid[prev] + resid[nxt]) ** 2)
            quad = quad + coef[k] * ends + coef[k + D] * sums
            k += 1
    else:
        sums = pt.zeros(layout.n_groups)
        sums = pt.inc_subtensor(sums[layout.codes], resid)
        sizes = layout.sizes
        for m in weights.steps:
            quad = quad + coef[k] * pt.sum(sums[np.flatnonzero(sizes == m)] ** 2)
            k += 1
    n = len(layout.codes)
    return -0.5 * (n * np.log(2.0 * np.pi) + 2.0 * n * pt.log(sigma)
                   + weights.logdet(phi, pt) + quad / sigma**2)  # fmt: skip


def residual_likelihood(name: str, mu: Any, sigma: Any, phi: Any, y: np.ndarray,
                        weights: ResidualWeights) -> Any:  # fmt: skip
    """The observed response with correlated residuals, ``y ~ N(mu, sigma^2 R(phi))``, as
    one multivariate variable (dim ``obs``) that posterior predictive draws can
    replicate."""
    layout = weights.layout

    def logp(value, mu, sigma, phi):
        return residual_logp(value - mu, sigma, phi, weights)

    def random(mu, sigma, phi, rng=None, size=None):
        rng = np.random.default_rng(rng)
        return np.asarray(mu) + np.asarray(sigma) * residual_noise(layout, float(phi), rng)

    return pm.CustomDist(name, mu, sigma, phi, logp=logp, random=random,
                         signature="(n),(),()->(n)", observed=y, dims="obs")  # fmt: skip
