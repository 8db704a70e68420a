"""lme4's first ``glmer`` stage (``nAGQ = 0``): the Laplace deviance minimised over theta
with beta from PIRLS, and the bounded quasi-Newton search both ``glmer`` stages use.

``bl.glmer`` (:mod:`bayeslmm.classical.glmer`) starts its second stage here; the compiled
sampler (:mod:`bayeslmm.bayes.glm_model`) reads its centring and its SDs' starting
values from the first stage's estimates and conditional variances
(:func:`fit_stage_one`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..gaussian.profiled import ThetaLayout
from ..spec.design import Design
from ..spec.family import get_family
from ..spec.response import GlmResponse
from .negbin import ThetaError, theta_ml
from .pirls import GlmmProblem, PirlsState


def central_gradient(f, x: np.ndarray, lower: np.ndarray, h: float = 1e-5):
    """Central differences (one-sided at a lower bound)."""
    g = np.empty_like(x)
    for i in range(len(x)):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] = max(x[i] - h, lower[i])
        g[i] = (f(up) - f(down)) / (up[i] - down[i])
    return g


def minimise(f, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray | None = None,
             fg=None) -> tuple[np.ndarray, bool]:  # fmt: skip
    """Bounded quasi-Newton (L-BFGS-B) on the exact gradient ``fg`` (value and gradient)
    where given, else on central-difference gradients of ``f``; a Nelder-Mead polish
    (inside the bounds, by reflection at them) where it stops without converging."""
    import scipy.optimize  # here: a Gaussian fit imports this module, not the optimiser

    upper = np.full(len(x0), np.inf) if upper is None else upper
    bounds = [(lo if np.isfinite(lo) else None, up if np.isfinite(up) else None)
              for lo, up in zip(lower, upper, strict=True)]  # fmt: skip

    exact = fg is not None
    if fg is None:

        def fg(x):
            return f(x), central_gradient(f, x, lower)

    options = {"maxiter": 500, "ftol": 1e-15, "gtol": 1e-6}
    res = scipy.optimize.minimize(fg, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                  options=options)  # fmt: skip
    x = np.clip(res.x, lower, upper)
    at_bound = np.isfinite(lower) & (x <= lower)
    if exact and at_bound.any():
        # a scalar term's deviance is even in its theta, so theta = 0 is always stationary
        # and its exact gradient there is 0: a line search that lands on the bound stops,
        # maximum or not. Restart off the bound; keep the lower optimum.
        x1 = x.copy()
        x1[at_bound] = lower[at_bound] + 0.1
        again = scipy.optimize.minimize(fg, x1, jac=True, method="L-BFGS-B", bounds=bounds,
                                        options=options)  # fmt: skip
        if again.fun < res.fun:
            res, x = again, np.clip(again.x, lower, upper)
    if res.success:
        return x, True

    def inside(z):  # reflect at the bounds
        return np.where(z > upper, 2 * upper - z, np.where(z < lower, 2 * lower - z, z))

    def g(z):
        return f(inside(z))

    step = np.maximum(np.abs(x) * 0.01, 0.005)
    simplex = np.vstack([x, x + np.diag(step)])
    polish = scipy.optimize.minimize(g, x, method="Nelder-Mead",
                                     options={"initial_simplex": simplex, "xatol": 1e-9,
                                              "fatol": 1e-11, "maxfev": 400 * len(x)})  # fmt: skip
    best = inside(polish.x)
    if f(best) > f(x):
        best = x
    return best, bool(polish.success)


def stage_one_gradient(problem: GlmmProblem, n_theta: int):
    """The first stage's deviance and its exact gradient over theta (canonical links),
    or None (central differences)."""
    if not problem.canonical:
        return None

    def fg(theta: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            state = problem.pirls(theta)
            return problem.laplace(state), problem.laplace_gradient(state, n_theta, True)[0]
        except (ArithmeticError, np.linalg.LinAlgError, RuntimeError):
            return np.inf, np.zeros(len(theta))

    return fg


def stage_one_deviance(problem: GlmmProblem, theta: np.ndarray) -> float:
    """lme4's first stage (``nAGQ = 0``): the Laplace deviance with beta from PIRLS."""
    try:
        return problem.laplace(problem.pirls(theta))
    except (ArithmeticError, np.linalg.LinAlgError, RuntimeError):
        return np.inf


def one_blas_thread():
    """BLAS limited to one thread while fitting (threadpoolctl): the dense factors are
    small, and BLAS threads waiting on busy cores made each one ~500x slower on a loaded
    2-core machine."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


class StageOne(NamedTuple):
    """A first-stage fit: the problem, its theta layout, theta and the PIRLS state there."""

    problem: GlmmProblem
    layout: ThetaLayout
    theta: np.ndarray
    state: PirlsState
    converged: bool


def fit_stage_one(design: Design, response: GlmResponse) -> StageOne:
    """lme4's ``nAGQ = 0`` fit of a GLMM: theta from lme4's start (identity factors) by
    :func:`minimise` on :func:`stage_one_deviance` (exact gradient for canonical links); a
    negative binomial without a given theta at glmer.nb's starting theta (MASS's
    ``theta.ml`` at a Poisson fit's means).
    Raises :class:`~bayeslmm.glmm.pirls.PirlsError` (an ``ArithmeticError``) where PIRLS
    fails at the optimum."""
    layout = ThetaLayout.from_design(design)
    problem = GlmmProblem(design.X, [(b.Z, b.codes, b.n_levels) for b in design.blocks],
                          layout.factors, response.family, response.y, response.weights,
                          response.offset)  # fmt: skip
    lower = layout.lower_bounds()

    def fit() -> tuple[np.ndarray, bool]:
        return minimise(lambda t: stage_one_deviance(problem, t), layout.start(), lower,
                        fg=stage_one_gradient(problem, len(lower)))  # fmt: skip

    family = response.family
    if family.negative_binomial and family.theta is None:
        # glmer.nb's start: a Poisson fit, then MASS's theta.ml at its means
        problem.family = get_family("poisson", link=family.link.name)
        theta, ok = fit()
        try:
            nb_theta = theta_ml(response.y, problem.pirls(theta).mu, response.weights)
        except ThetaError:  # no overdispersion: the Poisson fit stands
            return StageOne(problem, layout, theta, problem.pirls(theta), ok)
        problem.family = family.with_theta(nb_theta)
    theta, ok = fit()
    return StageOne(problem, layout, theta, problem.pirls(theta), ok)
