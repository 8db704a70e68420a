"""The negative binomial's dispersion by maximum likelihood at given means: MASS's
``theta.ml`` (Newton-Raphson on the score of ``theta``), which ``lme4::glmer.nb`` uses for
its starting value."""

from __future__ import annotations

import numpy as np
import scipy.special as sc

from ..errors import BayesLMMError


class ThetaError(BayesLMMError, ArithmeticError):
    """The negative binomial's theta could not be estimated (no overdispersion)."""


def theta_ml(y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None,
             limit: int = 20, eps: float = np.finfo(float).eps ** 0.25) -> float:  # fmt: skip
    """MASS's ``theta.ml(y, mu, weights)``: the ML dispersion of counts ``y`` with means
    ``mu`` (variance ``mu + mu^2 / theta``), Newton steps from the moment estimate
    ``n / sum(w (y / mu - 1)^2)`` until a step is below ``eps`` (at most ``limit``)."""
    y, mu = np.asarray(y, float), np.asarray(mu, float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, float)
    n = w.sum()

    def score(th):
        return np.sum(w * (sc.digamma(th + y) - sc.digamma(th) + np.log(th) + 1.0
                           - np.log(th + mu) - (y + th) / (mu + th)))  # fmt: skip

    def info(th):
        return np.sum(w * (-sc.polygamma(1, th + y) + sc.polygamma(1, th) - 1.0 / th
                           + 2.0 / (mu + th) - (y + th) / (mu + th) ** 2))  # fmt: skip

    t0 = n / np.sum(w * (y / mu - 1.0) ** 2)
    for _ in range(limit):
        t0 = abs(t0)
        step = score(t0) / info(t0)
        t0 = t0 + step
        if abs(step) <= eps:
            break
    if not np.isfinite(t0) or t0 <= 0:
        raise ThetaError("the counts show no overdispersion at the Poisson fit's means: the "
                         "negative binomial's theta has no finite estimate (fit family="
                         "'poisson')")  # fmt: skip
    return float(t0)
