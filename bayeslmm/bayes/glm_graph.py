"""The explicit-random-effects PyMC model of a generalised linear mixed model.

The population parameters and random effects are those of
:mod:`bayeslmm.bayes.explicit_graph` (``beta``, ``sd_L``, ``cor_L``, ``u_L``; ``z_L`` when
non-centred), with the same priors machinery; there is no ``sigma``. The linear predictor
``eta = X beta + Z u + offset`` enters the likelihood through the family's link:

- Bernoulli: ``Bernoulli(p = g^-1(eta))`` of the 0/1 response (``logit_p = eta`` for the
  logit link);
- binomial: ``Binomial(n = trials, p = g^-1(eta))`` of the successes;
- Poisson: ``Poisson(mu = g^-1(eta))`` of the counts;
- negative binomial: ``NegativeBinomial(mu = g^-1(eta), alpha = theta)`` of the counts (NB2:
  variance ``mu + mu^2 / theta``; ``theta`` is lme4/MASS's ``theta``, brms's ``shape``), with
  the scalar ``theta`` sampled (its prior: :data:`~bayeslmm.bayes.priors.THETA_PRIOR` unless
  overridden).

The observed variable is named as the response is written (``cbind(incidence, size -
incidence)``) and has dim ``obs``.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..errors import ArgumentError
from ..spec.design import Design
from ..spec.naming import PARAMETRIZATIONS, ParameterNames, coords_of
from ..spec.response import GlmResponse
from .explicit_graph import linear_predictor_graph
from .priors import Prior


def inverse_link(name: str, eta: pt.TensorVariable) -> pt.TensorVariable:
    """``g^-1(eta)`` of the link ``name`` as a PyTensor expression (unclamped)."""
    if name == "logit":
        return pm.math.invlogit(eta)
    if name == "probit":
        return 0.5 * pt.erfc(-eta / np.sqrt(2.0))
    if name == "cloglog":
        return -pt.expm1(-pt.exp(eta))
    if name == "log":
        return pt.exp(eta)
    if name == "identity":
        return eta
    raise ArgumentError(f"unknown link {name!r}")


def build_glm_model(
    design: Design,
    response: GlmResponse,
    priors: dict[str, Prior],
    parametrization: str = "noncentered",
) -> pm.Model:
    """The PyMC model of a GLMM with explicit random effects.

    Parameters
    ----------
    design
        The evaluated formula (from :func:`~bayeslmm.spec.response.glm_design`).
    response
        Its checked response: family, trials (``weights``) and offset.
    priors
        Complete priors keyed by parameter name (no ``sigma``).
    parametrization
        ``"noncentered"`` (default) or ``"centered"`` random effects.
    """
    if parametrization not in PARAMETRIZATIONS:
        raise ArgumentError(f"parametrization must be one of {PARAMETRIZATIONS}")
    family = response.family
    names = ParameterNames.from_design(design)
    with pm.Model(coords=coords_of(design)) as model:
        offset = pt.as_tensor(np.asarray(response.offset, dtype=float))
        eta = linear_predictor_graph(design, priors, names, parametrization, offset)
        link = family.link.name
        observed_name = design.response
        if family.negative_binomial:
            prior = priors["theta"]
            theta = prior.family()("theta", **prior.params)
            pm.NegativeBinomial(observed_name, mu=inverse_link(link, eta), alpha=theta,
                                observed=response.y, dims="obs")  # fmt: skip
            return model
        if family.name == "poisson":
            pm.Poisson(observed_name, mu=inverse_link(link, eta), observed=response.y,
                       dims="obs")  # fmt: skip
            return model
        trials = np.round(response.weights).astype("int64")
        successes = np.round(response.y * response.weights).astype("int64")
        if family.name == "bernoulli" and np.all(trials == 1):
            if link == "logit":
                pm.Bernoulli(observed_name, logit_p=eta, observed=successes, dims="obs")
            else:
                pm.Bernoulli(observed_name, p=inverse_link(link, eta), observed=successes,
                             dims="obs")  # fmt: skip
        elif link == "logit":
            pm.Binomial(observed_name, n=trials, logit_p=eta, observed=successes, dims="obs")
        else:
            pm.Binomial(observed_name, n=trials, p=inverse_link(link, eta), observed=successes,
                        dims="obs")  # fmt: skip
    return model
