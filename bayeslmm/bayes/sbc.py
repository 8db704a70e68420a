"""Simulation-based calibration (Talts et al. 2018) of the samplers.

Draw parameters from the prior, simulate data from them, fit, and record the rank of
each true value among the posterior draws. A calibrated sampler gives uniform ranks.

:func:`run_sbc` fits ``y ~ x + (1 [+ x] | g)`` with ``LMM.fit``; :func:`run_sbc_ar1`
fits ``y ~ x + (1 | g)`` with AR(1) residuals within ``g`` (times with gaps), on the
marginal PyMC graph of :mod:`bayeslmm.bayes.residual_graph` (the correlation parameter's
weighted statistics), compiled once (PyTensor's numba backend): the statistics that
depend on the response are shared variables set anew for every simulated data set.
:func:`run_sbc_glmm` fits Bernoulli, binomial (``cbind``, varying trials) and Poisson
(``offset(log(exposure))``) models ``... ~ x + (1 | g)`` with ``LMM(..., family=...)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats

from ..errors import ArgumentError, PriorError
from ..gaussian.residual import residual_noise
from ..spec.residual import AR1
from .model import LMM
from .priors import Prior
from .results import population_draws


@dataclass
class SBCResult:
    """Ranks (replications x parameters) of the true values among ``n_draws`` draws.

    ``truth`` (replications x parameters) and ``draws`` (parameter -> replications x
    ``n_draws``), where the run kept them, allow :meth:`shifted`.
    """

    ranks: pd.DataFrame
    n_draws: int
    truth: pd.DataFrame | None = None
    draws: dict[str, np.ndarray] | None = None

    def shifted(self, by_sd: float) -> SBCResult:
        """The ranks of a deliberately miscalibrated posterior: every replication's draws
        moved by ``by_sd`` of their own SDs (a check that :meth:`uniformity` can fail)."""
        if self.truth is None or self.draws is None:
            raise ArgumentError("shifted() needs the draws: run the SBC with keep_draws=True")
        ranks = {}
        for name, draws in self.draws.items():
            moved = draws + by_sd * draws.std(axis=1, keepdims=True)
            ranks[name] = np.sum(moved < self.truth[name].to_numpy()[:, None], axis=1)
        return SBCResult(pd.DataFrame(ranks), self.n_draws)

    def uniformity(self, bins: int = 5) -> pd.DataFrame:
        """Chi-square test of uniform ranks per parameter: statistic and p-value."""
        rows = {}
        for name, ranks in self.ranks.items():
            counts = np.bincount(
                np.minimum(ranks.to_numpy() * bins // (self.n_draws + 1), bins - 1),
                minlength=bins,
            )
            stat, p = scipy.stats.chisquare(counts)
            rows[name] = {"chi2": stat, "p_value": p}
        return pd.DataFrame(rows).T


def _draw(prior: Prior, rng: np.random.Generator, size=None) -> np.ndarray:
    scale = prior.params.get("sigma", 1.0)
    if prior.dist == "HalfNormal":
        return np.abs(rng.normal(0, scale, size))
    if prior.dist == "Normal":
        return rng.normal(prior.params.get("mu", 0.0), scale, size)
    raise PriorError(f"SBC draws only Normal/HalfNormal priors, got {prior.dist}")


def simulate_random_slopes(
    rng: np.random.Generator,
    groups: int,
    per_group: int,
    slope: bool,
    priors: dict[str, Prior],
    crossed: int = 0,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """One data set from the prior of ``y ~ x + (1 [+ x] | g)`` (LKJ(1) correlation), or,
    with ``crossed`` levels of a second factor ``h`` crossed with ``g`` (one row per cell,
    x drawn per row), of ``y ~ x + (1 [+ x] | g) + (1 | h)``."""
    if crossed:
        g = np.repeat(np.arange(groups), crossed)
        h = np.tile(np.arange(crossed), groups)
        x = rng.uniform(-1, 1, len(g))
    else:
        x = np.tile(np.linspace(-1, 1, per_group), groups)
        g = np.repeat(np.arange(groups), per_group)
    beta = _draw(priors["fixed"], rng, 2)
    sds = _draw(priors["sd"], rng, 2 if slope else 1)
    sigma = float(_draw(priors["sigma"], rng))
    truth = {"(Intercept)": beta[0], "x": beta[1], "sd((Intercept)|g)": sds[0], "sigma": sigma}
    if slope:
        cor = rng.uniform(-1, 1)  # LKJ(1) in 2-D is uniform on (-1, 1)
        chol = np.linalg.cholesky(np.array([[1, cor], [cor, 1]])) * sds[:, None]
        u = rng.standard_normal((groups, 2)) @ chol.T
        truth |= {"sd(x|g)": sds[1], "cor((Intercept),x|g)": cor}
        mu = beta[0] + beta[1] * x + u[g, 0] + u[g, 1] * x
    else:
        u = rng.standard_normal(groups) * sds[0]
        mu = beta[0] + beta[1] * x + u[g]
    frame = {"x": x, "g": [f"g{j}" for j in g]}
    if crossed:
        sd_h = float(_draw(priors["sd"], rng))
        truth["sd((Intercept)|h)"] = sd_h
        mu = mu + (rng.standard_normal(crossed) * sd_h)[h]
        frame["h"] = [f"h{j}" for j in h]
    y = mu + rng.normal(0, sigma, len(x))
    return pd.DataFrame({"y": y, **frame}), truth


def run_sbc(
    replications: int,
    slope: bool,
    groups: int = 8,
    per_group: int = 6,
    draws: int = 99,
    method: str = "marginal",
    seed: int = 0,
    sampler: str = "auto",
    crossed: int = 0,
) -> SBCResult:
    """SBC of ``y ~ x + (1|g)`` or ``y ~ x + (1 + x|g)`` with fixed, proper priors; with
    ``crossed`` levels of a factor ``h`` crossed with ``g``, of ``y ~ x + (1 [+ x]|g) +
    (1|h)`` (``per_group`` is then unused: one row per cell).

    Draws are thinned to ``draws`` nearly independent ones (from 4x as many). The
    default sampler is the one ``fit`` uses (for ``method="marginal"``: nutpie on the
    compiled density). Not numpyro: hundreds of numpyro fits in one process exhaust
    memory (every new model adds JIT-compiled code that JAX keeps).
    """
    priors = {
        "fixed": Prior("Normal", mu=0, sigma=1),
        "sd": Prior("HalfNormal", sigma=1),
        "sigma": Prior("HalfNormal", sigma=1),
        "cor": Prior("LKJ", eta=1),
    }
    rng = np.random.default_rng(seed)
    formula = "y ~ x + (1 + x | g)" if slope else "y ~ x + (1 | g)"
    if crossed:
        formula += " + (1 | h)"
    rows = []
    for rep in range(replications):
        data, truth = simulate_random_slopes(rng, groups, per_group, slope, priors, crossed)
        model = LMM(formula, data, priors=priors)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(draws=4 * draws, tune=500, chains=1, random_seed=seed + rep,
                      progressbar=False, method=method, target_accept=0.95,
                      sampler=sampler)  # fmt: skip
        post = {k: v.values.ravel() for k, v in population_draws(model.idata, model.design).items()}
        rows.append({k: int(np.sum(post[k][::4][:draws] < v)) for k, v in truth.items()})
    return SBCResult(pd.DataFrame(rows), draws)


#: Statistics of the component pseudo-designs that depend on the response.
RESPONSE_FIELDS = ("Zty", "Xty", "yty")


def ar1_design(rng: np.random.Generator, groups: int, per_group: int) -> pd.DataFrame:
    """Rows of ``y ~ x + (1 | g)`` with AR(1) times: ``per_group`` whole-number times per
    group out of ``0 .. per_group + 1`` (so some gaps of 2 or 3 steps), rows shuffled;
    ``y`` a placeholder."""
    rows = []
    for j in range(groups):
        times = np.sort(rng.choice(per_group + 2, per_group, replace=False))
        rows += [(f"g{j}", int(t), float(x)) for t, x in zip(times, rng.normal(size=per_group),
                                                                 strict=True)]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["g", "t", "x"]).sample(frac=1.0, random_state=1)
    return frame.reset_index(drop=True).assign(y=rng.normal(size=len(frame)))


def simulate_ar1(model: LMM, rng: np.random.Generator, priors: dict[str, Prior]
                 ) -> tuple[np.ndarray, dict[str, float]]:  # fmt: skip
    """A response drawn from the prior of an AR(1) model built by :func:`run_sbc_ar1`."""
    design = model.design
    beta = _draw(priors["fixed"], rng, 2)
    sd = float(_draw(priors["sd"], rng))
    sigma = float(_draw(priors["sigma"], rng))
    phi = float(rng.uniform(-1, 1))
    u = rng.normal(0.0, sd, design.blocks[0].n_levels)
    noise = residual_noise(design.residual, phi, rng)
    y = design.X @ beta + u[design.blocks[0].codes] + sigma * noise
    truth = {"(Intercept)": beta[0], "x": beta[1], "sd((Intercept)|g)": sd, "sigma": sigma,
             "phi": phi}  # fmt: skip
    return y, truth


def run_sbc_ar1(
    replications: int,
    groups: int = 8,
    per_group: int = 6,
    draws: int = 99,
    seed: int = 0,
    tune: int = 500,
    mode: str = "NUMBA",
) -> SBCResult:
    """SBC of ``y ~ x + (1 | g)`` with ``bl.AR1(time="t", group="g")`` residuals.

    The design is drawn once; every replication draws parameters from the priors (phi
    from its default ``Uniform(-1, 1)``), a response, and samples the marginal model
    with PyMC's NUTS (one chain; ``4 * draws`` draws thinned to ``draws``), its log
    density compiled once in PyTensor's ``mode``.
    """
    import pymc as pm
    import pytensor

    from .sampling import quiet_pymc

    priors = {
        "fixed": Prior("Normal", mu=0, sigma=1),
        "sd": Prior("HalfNormal", sigma=1),
        "sigma": Prior("HalfNormal", sigma=1),
    }
    rng = np.random.default_rng(seed)
    frame = ar1_design(rng, groups, per_group)
    model = LMM("y ~ x + (1 | g)", frame, priors=priors, residual=AR1(time="t", group="g"))
    stacked = model.residual_model.group_stats()
    shared = {k: pytensor.shared(stacked.fields[k], name=f"sbc_{k}") for k in RESPONSE_FIELDS}
    stacked.fields.update(shared)  # the graph reads the response through these
    pm_model = model.marginal_model
    with pm_model:
        step = pm.NUTS(target_accept=0.95, compile_kwargs={"mode": mode})
    rows = []
    for rep in range(replications):
        y, truth = simulate_ar1(model, rng, priors)
        for k, values in model.residual_model.group_response(y).items():
            shared[k].set_value(values)
        with warnings.catch_warnings(), quiet_pymc():
            warnings.simplefilter("ignore")
            trace = pm.sample(draws=4 * draws, tune=tune, chains=1, step=step, model=pm_model,
                              random_seed=seed + rep, progressbar=False,
                              compute_convergence_checks=False,
                              return_inferencedata=False)  # fmt: skip
        beta = trace.get_values("beta")
        post = {"(Intercept)": beta[:, 0], "x": beta[:, 1],
                "sd((Intercept)|g)": trace.get_values("sd_g")[:, 0],
                "sigma": trace.get_values("sigma"), "phi": trace.get_values("phi")}  # fmt: skip
        rows.append({k: int(np.sum(post[k][::4][:draws] < v)) for k, v in truth.items()})
    return SBCResult(pd.DataFrame(rows), draws)


#: the families :func:`run_sbc_glmm` simulates, and the formula it fits for each
GLMM_FORMULAS = {
    "bernoulli": "y ~ x + (1 | g)",
    "binomial": "cbind(k, n - k) ~ x + (1 | g)",
    "poisson": "y ~ x + offset(log(exposure)) + (1 | g)",
}


def simulate_glmm(rng: np.random.Generator, family: str, groups: int, per_group: int,
                  priors: dict[str, Prior], max_trials: int = 10
                  ) -> tuple[pd.DataFrame, dict[str, float]]:  # fmt: skip
    """One data set from the prior of :data:`GLMM_FORMULAS`'s ``family`` model: ``x`` on
    ``per_group`` even steps in (-1, 1) per group, a random intercept per group; binomial
    trials drawn per row from 1 to ``max_trials``, Poisson exposures from U(0.5, 2)."""
    x = np.tile(np.linspace(-1, 1, per_group), groups)
    g = np.repeat(np.arange(groups), per_group)
    beta = _draw(priors["fixed"], rng, 2)
    sd = float(_draw(priors["sd"], rng))
    u = rng.standard_normal(groups) * sd
    eta = beta[0] + beta[1] * x + u[g]
    frame: dict[str, np.ndarray | list[str]] = {"x": x, "g": [f"g{j}" for j in g]}
    if family == "bernoulli":
        frame["y"] = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    elif family == "binomial":
        trials = rng.integers(1, max_trials + 1, len(x))
        frame |= {"k": rng.binomial(trials, 1.0 / (1.0 + np.exp(-eta))), "n": trials}
    else:
        exposure = rng.uniform(0.5, 2.0, len(x))
        frame |= {"y": rng.poisson(exposure * np.exp(eta)), "exposure": exposure}
    truth = {"(Intercept)": beta[0], "x": beta[1], "sd((Intercept)|g)": sd}
    return pd.DataFrame(frame), truth


def run_sbc_glmm(
    replications: int,
    family: str = "bernoulli",
    groups: int = 8,
    per_group: int = 8,
    draws: int = 49,
    tune: int = 300,
    method: str | None = None,
    sampler: str = "auto",
    seed: int = 0,
    keep_draws: bool = False,
) -> SBCResult:
    """SBC of a GLMM with a random intercept: ``family`` ``"bernoulli"`` (``y ~ x + (1 |
    g)``), ``"binomial"`` (``cbind(k, n - k) ~ x + (1 | g)``, 1 to 10 trials a row) or
    ``"poisson"`` (``y ~ x + offset(log(exposure)) + (1 | g)``), with priors
    ``Normal(0, 1)`` on both fixed effects and ``HalfNormal(1)`` on the SD.

    Every replication fits ``LMM(formula, data, family=family, priors=...).fit(...)``
    with ``method`` and ``sampler`` passed through (one chain, ``4 * draws`` draws
    thinned to ``draws``, target acceptance 0.95). ``sampler="auto"`` by default: nutpie on
    the compiled density (:mod:`bayeslmm.bayes.density`), about 0.15 s a fit here, against
    about 1 s for PyMC's NUTS on the graph (``sampler="pymc"``); numpyro recompiles every
    new model (2.7 s) and keeps each in memory. ``keep_draws``: keep the truths and the
    thinned draws (:meth:`SBCResult.shifted`).
    """
    if family not in GLMM_FORMULAS:
        raise ArgumentError(f"run_sbc_glmm simulates the families {list(GLMM_FORMULAS)}, "
                            f"not {family!r}")  # fmt: skip
    priors = {"fixed": Prior("Normal", mu=0, sigma=1), "sd": Prior("HalfNormal", sigma=1)}
    rng = np.random.default_rng(seed)
    rows, truths = [], []
    kept: dict[str, list[np.ndarray]] = {}
    for rep in range(replications):
        data, truth = simulate_glmm(rng, family, groups, per_group, priors)
        model = LMM(GLMM_FORMULAS[family], data, priors=priors, family=family)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(draws=4 * draws, tune=tune, chains=1, random_seed=seed + rep,
                      progressbar=False, method=method, target_accept=0.95, sampler=sampler,
                      store_log_likelihood=False)  # fmt: skip
        post = population_draws(model.idata, model.design)
        thinned = {k: post[k].values.ravel()[::4][:draws] for k in truth}
        rows.append({k: int(np.sum(thinned[k] < v)) for k, v in truth.items()})
        truths.append(truth)
        for k, v in thinned.items():
            kept.setdefault(k, []).append(v)
    if not keep_draws:
        return SBCResult(pd.DataFrame(rows), draws)
    return SBCResult(pd.DataFrame(rows), draws, truth=pd.DataFrame(truths),
                     draws={k: np.stack(v) for k, v in kept.items()})  # fmt: skip
