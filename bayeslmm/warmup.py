"""Compile the package's numba kernels for this machine, into their on-disk cache.

``python -m bayeslmm.warmup`` runs every compiled entry point once on small designs (one
grouping factor with correlated terms, crossed factors with a sampled factor, nested
factors, an AR(1) residual structure): the REML/ML criterion and its gradient, the
compiled posterior density nutpie calls, exact draws of the random effects and the
per-group likelihoods of leave-one-group-out, a GLMM's pointwise log-likelihood, the
convergence checks' R-hat and ESS, and glmer's kernels (PIRLS on the blocked
Cholesky, the Laplace deviance's exact gradient, the saturated likelihood, adaptive
quadrature: binomial, Poisson, crossed; the other families and links are codes of the
same compiled kernels). The package's build runs it
(``hatch_build.py``), so the first fit after installation finds its kernels compiled;
afterwards it is a quick no-op. It needs numpy, numba, scipy, pandas and formulaic, not
PyMC, ArviZ or nutpie.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd


def _frame(seed: int = 0) -> pd.DataFrame:
    """A small crossed data set: 12 subjects x 6 items, 2 rows per cell, a covariate."""
    rng = np.random.default_rng(seed)
    g, h = np.meshgrid(np.arange(12), np.arange(6), indexing="ij")
    g, h = np.repeat(g.ravel(), 2), np.repeat(h.ravel(), 2)
    x = rng.normal(size=g.size)
    y = (
        1.0
        + 0.5 * x
        + rng.normal(size=12)[g]
        + 0.5 * rng.normal(size=6)[h]
        + rng.normal(size=g.size)
    )
    t = np.tile(np.arange(12), 12)
    return pd.DataFrame({
        "y": y, "x": x, "t": t, "yb": (y > 1.0).astype(int), "yc": rng.poisson(np.exp(y / 3)),
        "g": [f"s{i}" for i in g], "h": [f"i{j}" for j in h],
        "k": [f"s{i}c{j % 2}" for i, j in zip(g, h, strict=True)],
    })  # fmt: skip


def _posterior_kernels(design, explicit: tuple[str, ...]) -> None:
    """The compiled density (value and gradient), exact draws and per-group likelihoods."""
    from .bayes.density import MarginalDensity
    from .bayes.priors import default_priors
    from .gaussian.blocked import BlockedSystem
    from .gaussian.draws import draw_random_effects
    from .gaussian.statistics import BlockedStats, level_moments, node_groups

    stats = BlockedStats.from_design(design, list(explicit))
    system = BlockedSystem(stats)
    density = MarginalDensity.from_model(design, default_priors(design), system)
    if density is not None:
        density.logp_grad(density.start)
    S = 3
    T = np.stack([system.factor_stack([np.eye(f.q) for f in stats.factors])] * S)
    beta, sigma = np.zeros((S, design.X.shape[1])), np.ones(S)
    uE = np.zeros((S, system.n_explicit_effects))
    system.marginal_loglik(T[0], beta[0], 1.0, uE[0], grad=True)
    draw_random_effects(system, T, beta, sigma, np.random.default_rng(0), uE)
    if not explicit:
        group = design.blocks[0].group
        nodes = node_groups(design, stats, group)
        if nodes is not None:
            system.group_loglik(T, beta, sigma, nodes, level_moments(design, group))


def _glm_kernels(formula: str, data: pd.DataFrame, family: str) -> None:
    """The compiled density with a GLMM's row likelihood (every factor sampled)."""
    from .bayes.density import MarginalDensity
    from .bayes.priors import default_priors
    from .bayes.row_likelihood import pointwise_loglik
    from .gaussian.blocked import BlockedSystem
    from .gaussian.statistics import BlockedStats
    from .spec.response import glm_design

    design, response = glm_design(formula, data, family)
    groups = tuple(dict.fromkeys(b.group for b in design.blocks))
    system = BlockedSystem(BlockedStats.from_design(design, groups))
    density = MarginalDensity.from_glm(design, response, default_priors(design, gaussian=False),
                                       system)  # fmt: skip
    if density is not None:
        density.logp_grad(density.start)
    draws = 2  # the pointwise log-likelihood of a fit's draws (LOO)
    pointwise_loglik(design, response, np.zeros((draws, design.X.shape[1])),
                     [np.zeros((draws, b.n_levels, b.n_terms)) for b in design.blocks],
                     np.ones(draws))  # fmt: skip


def _chain_kernels() -> None:
    """The convergence checks' R-hat and ESS (:mod:`bayeslmm.bayes.chains`)."""
    from .bayes.chains import diagnose

    diagnose(np.random.default_rng(0).normal(size=(2, 2, 20)), rhat=True, ess=True)


def warm(verbose: bool = False) -> float:
    """Run every compiled kernel once (compiling or loading it); returns the seconds."""
    import warnings

    from .classical.glmer import glmer
    from .classical.lmer import lmer
    from .spec.design import build_design
    from .spec.residual import AR1

    start = time.perf_counter()
    data = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular fits and the like on made-up data
        for formula, explicit in [
            ("y ~ x + (x | g)", ()),
            ("y ~ x + (1 | g) + (1 | h)", ()),
            ("y ~ x + (1 | g) + (x || h)", ("h",)),
            ("y ~ x + (1 | g/k)", ()),
        ]:
            _posterior_kernels(build_design(formula, data), explicit)
            if verbose:
                print(f"  {formula}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
        for reml in (True, False):
            lmer("y ~ x + (x | g)", data, reml=reml)
        lmer("y ~ x + (1 | g) + (1 | h)", data)
        lmer("y ~ x + (1 | g)", data, residual=AR1(time="t", group="g"))
        for formula, family in [("yb ~ x + (x | g)", "bernoulli"),
                                ("yc ~ x + (1 | g) + (1 | h)", "poisson")]:  # fmt: skip
            _glm_kernels(formula, data, family)
        _chain_kernels()
        glmer("yb ~ x + (x | g)", data, family="binomial")
        glmer("yc ~ x + (1 | g) + (1 | h)", data, family="poisson")
        glmer("yb ~ x + (1 | g)", data, family="binomial", nAGQ=5)
    return time.perf_counter() - start


if __name__ == "__main__":
    seconds = warm(verbose=True)
    print(f"bayeslmm: kernels ready ({seconds:.1f} s)", file=sys.stderr)
