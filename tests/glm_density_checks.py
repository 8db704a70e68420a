"""Checks shared by the GLMM compiled-density tests (test_glm_density, test_negbin_bayes):
a density with every factor's terms centred or not, the PyMC graph's point of a draw, and
the exact gradient against central differences."""

from __future__ import annotations

import numpy as np

from bayeslmm.bayes.density import MarginalDensity


def glm_density(model, centred: bool, signed: bool = False) -> MarginalDensity:
    """``model``'s compiled density with every term centred (or not) and every SD signed
    (or not), chains starting at its pooled fit (a negative binomial's theta too)."""
    factors = model.blocked_system.stats.factors
    flags = {f.group: (centred,) * f.q for f in factors}
    signs = {f.group: (signed,) * f.q for f in factors}
    return MarginalDensity.from_glm(model.design, model.response, model.priors,
                                    model.blocked_system, flags, signs, None,
                                    model._pooled[0], model._pooled_theta)  # fmt: skip


def pymc_point(model, values: dict, centred: bool) -> dict:
    """The PyMC graph's point (its transformed names) of constrained ``values``."""
    point = {"beta": values["beta"]} if "beta" in values else {}  # none without columns
    if "theta" in values:
        point["theta_log__"] = np.log(values["theta"])
    for block in model.design.blocks:
        point[f"sd_{block.label}_log__"] = np.log(values[f"sd_{block.label}"])
        kind = "u" if centred else "z"
        point[f"{kind}_{block.label}"] = values[f"{kind}_{block.label}"]
    return point


def assert_exact_gradient(density: MarginalDensity, seed: int = 4) -> np.ndarray:
    """The density's gradient at a point near its start equals central differences
    (rtol 1e-5); returns it."""
    rng = np.random.default_rng(seed)
    x = density.start + 0.5 * rng.normal(size=density.start.size)
    value, grad = density.logp_grad(x)
    assert np.isfinite(value)
    h = 1e-6
    numeric = [(density.logp_grad(x + e)[0] - density.logp_grad(x - e)[0]) / (2 * h)
               for e in np.eye(x.size) * h]  # fmt: skip
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * np.abs(grad).max())
    return grad
