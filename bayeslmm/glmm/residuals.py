"""Randomized quantile residuals of a discrete response (Dunn & Smyth 1996).

For a row with cumulative distribution ``F`` at its fitted mean, the residual is
``Phi^-1(u)`` with ``u`` drawn uniformly between ``F(y - 1)`` and ``F(y)``: under the
right model (and the true mean) ``u`` is exactly Uniform(0, 1), so the residuals are
N(0, 1) whatever the family, the trials or the mean. A wrong family (a Poisson fitted to
overdispersed counts, say) shows as residuals too spread out for a normal QQ line.
"""

from __future__ import annotations

import numpy as np
import scipy.special as sc
import scipy.stats

from ..errors import ArgumentError
from ..spec.family import Family

#: u is kept this far inside (0, 1), so that Phi^-1(u) stays finite (|r| <= ~8.3)
U_EDGE = 1e-16


def _counts(name: str, values: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ArgumentError(f"{name} must be finite and non-negative in every row")
    return values


def quantile_residuals(family: Family, y: np.ndarray, trials: np.ndarray | None,
                       mu: np.ndarray, rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """Randomized quantile residuals of ``y`` at the means ``mu``.

    Parameters
    ----------
    family
        Bernoulli, binomial, Poisson or negative binomial (with its ``theta``).
    y
        The response as a :class:`~bayeslmm.spec.response.GlmResponse` holds it: 0/1
        (Bernoulli), the proportion of successes (binomial, with ``trials``), counts.
    trials
        Trials per row (binomial; None means 1); ignored for counts.
    mu
        The mean on the response scale (a probability, a rate); any shape that broadcasts
        against ``y`` (draws x rows gives one residual per draw and row).
    rng
        The generator of the uniform draws.

    Returns
    -------
    numpy.ndarray
        ``Phi^-1(u)``, ``u ~ Uniform(F(y - 1), F(y))``, of the broadcast shape.
    """
    if not isinstance(family, Family) or family.name == "gaussian":
        raise ArgumentError(f"quantile_residuals() is for discrete families (bernoulli, "
                            f"binomial, poisson, negative_binomial), got {family}")  # fmt: skip
    if not isinstance(rng, np.random.Generator):
        raise ArgumentError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    y = np.asarray(y, float)
    mu = np.asarray(mu, float)
    if family.binomial:
        n = np.ones_like(y) if trials is None else _counts("trials", np.asarray(trials, float))
        k = _counts("y", np.round(y * n))
        p = np.clip(mu, 0.0, 1.0)
        low = np.where(k > 0, scipy.stats.binom.cdf(k - 1, n, p), 0.0)
        high = scipy.stats.binom.cdf(k, n, p)
    else:
        k = _counts("y", y)
        if family.name == "poisson":
            low = np.where(k > 0, sc.pdtr(np.maximum(k - 1, 0), mu), 0.0)
            high = sc.pdtr(k, mu)
        else:  # negative binomial, variance mu + mu^2 / theta
            th = family.theta
            if th is None:
                raise ArgumentError("the negative binomial's residuals need its theta: "
                                    "family.with_theta(...) (a glmer.nb fit's nb_theta)")
            prob = th / (th + mu)
            low = np.where(k > 0, scipy.stats.nbinom.cdf(k - 1, th, prob), 0.0)
            high = scipy.stats.nbinom.cdf(k, th, prob)
    low, high = np.broadcast_arrays(low, high)
    u = low + rng.uniform(size=low.shape) * (high - low)
    return scipy.stats.norm.ppf(np.clip(u, U_EDGE, 1.0 - U_EDGE))
