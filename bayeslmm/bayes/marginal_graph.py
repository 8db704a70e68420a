"""The PyMC model of the marginal likelihood (see :mod:`bayeslmm.bayes.effects`).

With one grouping factor or two nested ones, ``log p(y | beta, D, sigma)`` is a PyTensor
graph from per-level statistics, which any PyMC sampler (PyMC's, nutpie's PyMC backend,
numpyro through JAX) can run. Other designs (crossed factors, deeper nesting) need the
blocked sparse Cholesky of :mod:`bayeslmm.gaussian.blocked`: it enters the graph as one
Op with its exact gradient, which PyMC's own sampler runs (JAX cannot trace it).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from ..gaussian.blocked import BlockedSystem
from ..gaussian.factorisation import nested_whiten, project, whiten
from ..gaussian.residual import ResidualModel, ResidualSystem
from ..gaussian.statistics import GroupStats, NestedStats
from ..spec.design import Design
from ..spec.naming import ParameterNames, coords_of
from .explicit_graph import block_scale, vector_rv
from .priors import Prior
from .residual_graph import ResidualBlockedLoglik, correlation_variable, weighted_stats


def _level_factor(chols: list[pt.TensorVariable], sizes: list[int]) -> pt.TensorVariable:
    """Block-diagonal Cholesky factor of one level's covariance D (static block sizes,
    as JAX needs)."""
    if len(chols) == 1:
        return chols[0]
    q = sum(sizes)
    out = pt.zeros((q, q))
    start = 0
    for chol, k in zip(chols, sizes, strict=True):
        out = pt.set_subtensor(out[start : start + k, start : start + k], chol)
        start += k
    return out


def _whitened_loglik(
    stats: GroupStats | NestedStats,
    beta: pt.TensorVariable,
    sigma: pt.TensorVariable,
    logdet: pt.TensorVariable,
    cc: pt.TensorVariable,
) -> pt.TensorVariable:
    """The Gaussian log-density from ``sum log|A|`` and the whitened residual sum ``cc``."""
    rr = stats.yty - 2.0 * pt.dot(beta, stats.Xty) + pt.dot(beta, pt.dot(stats.XtX, beta))
    return -0.5 * (
        stats.n * np.log(2.0 * np.pi) + 2.0 * stats.n * pt.log(sigma) + logdet
        + (rr - cc) / sigma**2
    )  # fmt: skip


def marginal_loglik(
    T: pt.TensorVariable, beta: pt.TensorVariable, sigma: pt.TensorVariable, stats: GroupStats
) -> pt.TensorVariable:
    """log p(y | beta, D = sigma^2 T T', sigma) from the per-level statistics."""
    ZtX = pt.as_tensor(stats.ZtX)
    resid_z = pt.as_tensor(stats.Zty) - pt.tensordot(ZtX, beta, axes=[[2], [0]])  # (G, q)
    R = project(T, resid_z[:, :, None], pt)
    logdet, _, C = whiten(T, stats, R, pt)
    cc = sum(pt.sum(c**2) for c in C)
    return _whitened_loglik(stats, beta, sigma, logdet, cc)


def nested_marginal_loglik(
    TA: pt.TensorVariable,
    TB: pt.TensorVariable,
    beta: pt.TensorVariable,
    sigma: pt.TensorVariable,
    stats: NestedStats,
) -> pt.TensorVariable:
    """log p(y | beta, D, sigma) for two nested factors (see :func:`nested_whiten`)."""
    rA = pt.as_tensor(stats.Ay) - pt.tensordot(pt.as_tensor(stats.AX), beta, axes=[[2], [0]])
    rB = pt.as_tensor(stats.By) - pt.tensordot(pt.as_tensor(stats.BX), beta, axes=[[2], [0]])
    logdet, cB, cA = nested_whiten(TA, TB, stats, rA, rB, pt)
    cc = sum(pt.sum(c**2) for c in cB) + sum(pt.sum(c**2) for c in cA)
    return _whitened_loglik(stats, beta, sigma, logdet, cc)


class BlockedLoglik(pytensor.graph.Op):
    """``log p(y | beta, D, sigma)`` of any design as one Op: inputs ``T`` (F, qmax, qmax),
    ``beta`` and ``sigma``; its gradient is the kernel's exact one."""

    itypes = [pt.dtensor3, pt.dvector, pt.dscalar]
    otypes = [pt.dscalar]

    def __init__(self, system: BlockedSystem):
        self.system = system
        self.gradient_op = _BlockedLoglikGrad(system)

    def perform(self, node, inputs, outputs):
        T, beta, sigma = inputs
        outputs[0][0] = np.asarray(self.system.marginal_loglik(T, beta, sigma, grad=False)[0])

    def grad(self, inputs, output_grads):
        dT, dbeta, dsigma = self.gradient_op(*inputs)
        g = output_grads[0]
        return [g * dT, g * dbeta, g * dsigma]


class _BlockedLoglikGrad(pytensor.graph.Op):
    itypes = [pt.dtensor3, pt.dvector, pt.dscalar]
    otypes = [pt.dtensor3, pt.dvector, pt.dscalar]

    def __init__(self, system: BlockedSystem):
        self.system = system

    def perform(self, node, inputs, outputs):
        _, dT, dbeta, dsigma, _ = self.system.marginal_loglik(*inputs, grad=True)
        outputs[0][0], outputs[1][0], outputs[2][0] = dT, dbeta, np.asarray(dsigma)


def _factor_stack(pairs, system: BlockedSystem) -> pt.TensorVariable:
    """The (F, qmax, qmax) relative factors of every grouping factor (block diagonals)."""
    T = pt.zeros((system.n_factors, system.qmax, system.qmax))
    for f, factor in enumerate(system.stats.factors):
        column = 0
        for k in factor.blocks:
            chol, block = pairs[k]
            q = block.n_terms
            T = pt.set_subtensor(T[f, column : column + q, column : column + q], chol)
            column += q
    return T


def build_marginal_model(
    design: Design,
    priors: dict[str, Prior],
    stats: GroupStats | NestedStats | None,
    system: BlockedSystem | None = None,
    residual: ResidualModel | None = None,
    residual_system: ResidualSystem | None = None,
) -> pm.Model:
    """The PyMC model of (beta, SDs, correlations, sigma) with the random effects integrated out.

    Same parameter names, priors, dims and coords as :func:`build_full_model`, minus
    the random effects (drawn afterwards by :func:`draw_random_effects`). ``stats`` gives
    the pure graph (one factor or two nested); with ``stats=None`` the blocked ``system``
    enters as :class:`BlockedLoglik`. With a residual structure (``residual``), the
    statistics are weighted by ``R(phi)^-1`` (:mod:`bayeslmm.bayes.residual_graph`; the
    blocked path through ``residual_system``).
    """
    names = ParameterNames.from_design(design)
    with pm.Model(coords=coords_of(design, obs=False)) as model:
        if design.X.shape[1]:
            beta = vector_rv("beta", [priors[n] for n in names.fixed], "fixed")
        else:
            beta = pt.zeros(0)
        chols = []
        for block, sd_names, cor_name in zip(design.blocks, names.sd, names.cor, strict=True):
            chol, sd = block_scale(
                block, [priors[n] for n in sd_names], priors[cor_name] if cor_name else None
            )
            chols.append(chol if chol is not None else pt.diag(sd))
        sigma = priors["sigma"].family()("sigma", **priors["sigma"].params)
        phi = None
        if residual is not None:
            phi = correlation_variable(residual.layout, priors[residual.parameter])
            coef = residual.coefficients(phi, pt)
            if isinstance(stats, NestedStats):
                stats = weighted_stats(residual.nested_stats(), coef)
            elif stats is not None:
                stats = weighted_stats(residual.group_stats(), coef)
        pairs = list(zip(chols, design.blocks, strict=True))

        def factor(group: str | None) -> pt.TensorVariable:
            chosen = [(c, b.n_terms) for c, b in pairs if group is None or b.group == group]
            return _level_factor([c for c, _ in chosen], [k for _, k in chosen]) / sigma

        if stats is None:
            T = _factor_stack(pairs, system) / sigma
            beta_f = pt.as_tensor(beta, dtype="float64")
            if residual is None:
                loglik = BlockedLoglik(system)(T, beta_f, sigma)
            else:
                op = ResidualBlockedLoglik(residual_system)
                loglik = op(T, beta_f, pt.as_tensor(sigma, dtype="float64"),
                            pt.as_tensor(phi, dtype="float64"))  # fmt: skip
        elif isinstance(stats, NestedStats):
            TA, TB = factor(stats.outer), factor(stats.inner)
            loglik = nested_marginal_loglik(TA, TB, beta, sigma, stats)
        else:
            loglik = marginal_loglik(factor(None), beta, sigma, stats)
        if residual is not None and stats is not None:
            loglik = loglik - 0.5 * residual.logdet(phi, pt)
        pm.Potential("marginal_loglik", loglik)
    return model
