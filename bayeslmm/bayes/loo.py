"""PSIS leave-one-out cross-validation, by observation or leaving out whole groups.

``by="observation"`` is the usual pointwise LOO (brms' ``loo``): each row's
log-likelihood given the parameters *and its group's random effects*. Leaving out one
row of a group barely moves that group's effects, but the importance weights of a
hierarchical model are heavy-tailed, and Pareto k is often high.

``by="group"`` leaves out one level of the grouping factor at a time, scoring the
group's rows by their exact marginal likelihood ``log N(y_j | X_j beta, Z_j D Z_j' +
sigma^2 I)`` (:func:`bayeslmm.gaussian.blocked.group_loglik`): the random effects are integrated
out, so the estimate asks how well the model predicts a *new* group, which is the
question a random slope answers. With two nested factors the outer factor's levels are
left out, each with all its inner levels. With a residual correlation structure the
group's likelihood is ``N(y_j | X_j beta, Z_j D Z_j' + sigma^2 R_j(phi))``, one weighted
system per draw of ``phi``; by observation, each row's density given the other rows.
Both use ArviZ's PSIS-LOO (``az.loo``) and ``az.compare``.

A binomial, Bernoulli or Poisson model (``bl.LMM(..., family=...)``) samples its random
effects. By observation, each row's log-pmf given the draw's effects. By group, one level
of a grouping factor is left out and scored by ``log p(y_g | beta, D, other factors'
effects)`` with its own effects integrated out per posterior draw
(:mod:`bayeslmm.bayes.glmm_marginal`: adaptive Gauss-Hermite quadrature for one effect per
level, importance sampling from the Laplace mode for several; what was used and its error
are in the values' ``attrs`` and :attr:`LooComparison.notes`). The factor is the one with
most levels in which no other factor is nested (with one factor, that one; the other
factors' effects are taken at their posterior draws, which saw the left-out level's rows:
a factor nested in the left-out one would be scored by effects fitted to the left-out data,
so such a factor is never left out).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ArgumentError, ComparisonError, NotFittedError, RowsNotInMemoryError
from ..gaussian.statistics import level_moments, node_groups, same_response
from . import stack
from .effects import kernel_draws
from .glm_model import is_gaussian
from .glmm_marginal import GroupRows, block_cholesky, integrate_levels
from .stack import Results

if TYPE_CHECKING:
    from .model import LMM

BY = ("group", "observation")
CHUNK_ELEMENTS = 2_000_000  # draws x levels x q x q handled at once


def loo_group(model: LMM) -> str:
    """The factor whose levels leave-one-group-out leaves out: the one with most levels
    whose groups are independent (one factor, or the outer factor of nested ones); for a
    binomial or Poisson model, :func:`glmm_loo_group`."""
    if not is_gaussian(model):
        return glmm_loo_group(model)
    design = model.design
    stats = model.blocked_system.stats
    candidates = [f.group for f in stats.factors
                  if node_groups(design, stats, f.group) is not None]  # fmt: skip
    if not candidates:
        raise ComparisonError(
            f"leave-one-group-out needs groups whose data are independent; the grouping "
            f"factors of {model.formula!r} are crossed, so no factor's levels split the data "
            "into independent groups; use by='observation'"
        )
    return candidates[0]  # factors come by decreasing number of levels


def group_log_likelihood(model: LMM) -> xr.DataArray:
    """Per posterior draw and level, the level's exact marginal log-likelihood.

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, <group>)`` with the levels as coordinates (the outer factor
        for nested designs).
    """
    idata = model.idata
    if idata is None:
        raise NotFittedError("the model is not fitted yet: call model.fit() first")
    if not is_gaussian(model):
        return glmm_group_log_likelihood(model)
    group = loo_group(model)
    design, post, system = model.design, stack.posterior(idata), model.blocked_system
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    S = n_chain * n_draw
    block = next(b for b in design.blocks if b.group == group)
    # known standard errors: the rows scaled by them, and each level's - sum log se
    moments = level_moments(model._fit_design, group)
    node_group = node_groups(design, system.stats, group)
    kd = kernel_draws(post, design, system)
    if design.residual is not None:
        out = _residual_group_loglik(model, kd, block, node_group)
    else:
        chunk = max(1, CHUNK_ELEMENTS // max(1, system.stats.n_effects * system.qmax))
        out = np.empty((S, block.n_levels))
        for lo in range(0, S, chunk):
            sl = slice(lo, min(S, lo + chunk))
            out[sl] = system.group_loglik(kd.T[sl], kd.beta[sl], kd.sigma[sl], node_group,
                                          moments)  # fmt: skip
        if model.known_se is not None:
            out -= np.bincount(block.codes, weights=np.log(model.known_se),
                               minlength=block.n_levels)  # fmt: skip
    return xr.DataArray(
        out.reshape(n_chain, n_draw, block.n_levels),
        dims=("chain", "draw", group),
        coords={"chain": post.chain, "draw": post.draw, group: list(block.levels)},
        name=design.response,
    )


def glmm_loo_group(model: LMM) -> str:
    """A binomial or Poisson model's factor to leave out by level: the one with most levels
    in which no other factor is nested (module text)."""
    design = model.design
    factors: dict[str, Any] = {}
    for block in design.blocks:
        factors.setdefault(block.group, block)
    for group, block in sorted(factors.items(), key=lambda item: -item[1].n_levels):
        if not any(_nested_in(other.codes, block.codes, other.n_levels)
                   for g, other in factors.items() if g != group):  # fmt: skip
            return group
    raise ComparisonError(f"every grouping factor of {model.formula!r} has another nested in "
                          "it: no factor's levels can be left out on their own")  # fmt: skip


def _nested_in(inner: np.ndarray, outer: np.ndarray, n_inner: int) -> bool:
    """Does every level of ``inner`` lie within one level of ``outer``?"""
    first = np.full(n_inner, -1)
    first[inner] = outer
    return bool(np.all(first[inner] == outer))


def glmm_group_log_likelihood(model: LMM, group: str | None = None, *,
                              random_seed: int | None = 0) -> xr.DataArray:  # fmt: skip
    """Per posterior draw and level of ``group`` (default :func:`glmm_loo_group`), the
    level's log-likelihood with its own random effects integrated out, given ``beta``, its
    covariance and the other factors' effects at that draw (module text).

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, <group>)``; ``attrs``: ``integration`` (what was done and its
        error), ``method``, ``error`` (largest per level: AGQ's ``n`` vs ``2 n`` node
        difference, or importance sampling's Monte Carlo SE) and ``conditional_on`` (the
        other factors).
    """
    idata = model.idata
    if idata is None:
        raise NotFittedError("the model is not fitted yet: call model.fit() first")
    design, post = model.design, stack.posterior(idata)
    group = glmm_loo_group(model) if group is None else group
    cached = getattr(model, "_group_loglik", None)  # loo() then loo_compare's notes
    if cached is not None and cached[0] is idata and cached[1] == (group, random_seed):
        return cached[2]
    own = [b for b in design.blocks if b.group == group]
    if not own:
        raise ArgumentError(f"{group!r} is not a grouping factor of {model.formula!r}")
    others = [b for b in design.blocks if b.group != group]
    for other in others:
        if _nested_in(other.codes, own[0].codes, other.n_levels):
            raise ComparisonError(f"{other.group!r} is nested in {group!r}: leaving out a level "
                                  f"of {group!r} leaves out its levels of {other.group!r} too")
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    S = n_chain * n_draw
    beta = post["beta"].values.reshape(S, -1) if design.X.shape[1] else np.zeros((S, 0))
    eta0 = beta @ np.asarray(design.X, float).T + np.asarray(model.response.offset, float)
    for block in others:  # the other factors' effects at each draw
        u = post[f"u_{block.label}"].values.reshape(S, block.n_levels, block.n_terms)
        eta0 += np.einsum("nk,snk->sn", block.Z, u[:, block.codes], optimize=True)
    starts = np.cumsum([0] + [b.n_terms for b in own])
    Z = np.concatenate([b.Z for b in own], axis=1)
    L = block_cholesky(post, own, int(starts[-1]), [int(c) for c in starts[:-1]])
    rows = GroupRows.build(model.response, Z, own[0].codes, own[0].n_levels)
    done = integrate_levels(rows, eta0, L, rng=np.random.default_rng(random_seed))
    note = done.note()
    if others:
        note += ("; given the draws of the other factors' effects ("
                 + ", ".join(dict.fromkeys(b.group for b in others)) + ")")
    out = xr.DataArray(
        done.values.reshape(n_chain, n_draw, own[0].n_levels),
        dims=("chain", "draw", group),
        coords={"chain": post.chain, "draw": post.draw, group: list(own[0].levels)},
        name=design.response,
        attrs={"integration": note, "method": done.method, "error": done.error,
               "conditional_on": ",".join(dict.fromkeys(b.group for b in others))},
    )
    model._group_loglik = (idata, (group, random_seed), out)
    return out


def _residual_group_loglik(model: LMM, kd, block, node_group: np.ndarray) -> np.ndarray:
    """Per draw and level of ``block``'s factor, the level's marginal log-likelihood with
    correlated residuals (the residual groups lie within its levels)."""
    residual, lay = model.residual_system, model.design.residual
    stacked = residual.model.level_moments(block.codes, block.n_levels)
    first = np.zeros(lay.n_groups, dtype=np.int64)
    first[lay.codes[::-1]] = np.arange(len(lay.codes))[::-1]
    level_of_group = block.codes[first]
    phis = stack.posterior(model.idata)[lay.parameter].values.reshape(-1)
    out = np.empty((len(phis), block.n_levels))
    for d, phi in enumerate(phis):
        moments = stacked.at(residual.model.coefficients(float(phi)))
        sl = slice(d, d + 1)
        out[d] = residual.system(phi).group_loglik(kd.T[sl], kd.beta[sl], kd.sigma[sl],
                                                   node_group, moments)[0]  # fmt: skip
        logdet = residual.model.weights.group_logdet(float(phi))
        out[d] -= 0.5 * np.bincount(level_of_group, logdet, minlength=block.n_levels)
    return out


def _loo_data(model: LMM, by: str) -> Results:
    """The population posterior with the log-likelihood ``az.loo`` should use."""
    idata = model.idata
    if idata is None:
        raise NotFittedError(f"{model.formula!r} is not fitted yet: call model.fit() first")
    post = stack.posterior(idata)
    post = post[[v for v in model.population_variables() if v in post]]
    if by == "group":
        values = group_log_likelihood(model)
        loglik = xr.Dataset({values.name: values})
    elif stack.has_group(idata, "log_likelihood"):
        loglik = stack.group(idata, "log_likelihood")
    elif not model.design.rows_in_memory:
        raise RowsNotInMemoryError(
            f"leave-one-observation-out needs a log-likelihood value per row and draw, and "
            f"{model.formula!r} was fitted from a Dask DataFrame whose rows stay on the "
            "cluster; use by='group' (leave-one-group-out, from sums)"
        )
    else:
        loglik = model._log_likelihood(idata)
    return stack.from_datasets(posterior=post, log_likelihood=loglik)


def loo(model: LMM, by: str = "group") -> Any:
    """PSIS-LOO of one fitted model, leaving out groups (default) or observations."""
    if by not in BY:
        raise ArgumentError(f"by must be one of {BY}, got {by!r}")
    return stack.loo(_loo_data(model, by))


@dataclass
class LooComparison:
    """Models ranked by expected log predictive density, as ``az.compare``.

    Attributes
    ----------
    table
        ``az.compare``'s table (``rank``, ``elpd_loo``, ``p_loo``, ``elpd_diff``,
        ``weight``, ``se``, ``dse``, ``warning``, ``scale``) with ``k_max`` (the largest
        Pareto k) and ``k_high`` (points with k above ArviZ's threshold, where the
        estimate of that point is unreliable).
    loo
        Each model's ``ELPDData`` (pointwise values and Pareto k).
    by
        ``"group"`` or ``"observation"``; ``unit`` names what one point is.
    notes
        Per model, how its left-out groups' random effects were integrated out and that
        integration's error (binomial and Poisson models by group; else empty).
    """

    table: pd.DataFrame
    loo: dict[str, Any] = field(repr=False)
    by: str
    unit: str
    notes: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"PSIS-LOO by {self.unit}\n{self.table.to_string()}"


def loo_compare(models: Mapping[str, LMM], by: str = "group") -> LooComparison:
    """Compare fitted models by PSIS leave-one-out cross-validation.

    Parameters
    ----------
    models
        Names -> fitted :class:`~bayeslmm.LMM` of the same response on the same rows.
    by
        ``"group"`` (default): leave one level of the grouping factor out at a time,
        scored by its exact marginal likelihood (the outer factor of nested designs;
        every model must have that factor with the same levels; binomial and Poisson
        models: its effects integrated out numerically, given the other factors'
        effects, module text); ``"observation"``: leave one row out, scored given its
        group's random effects.

    Returns
    -------
    LooComparison
        ``.table`` like ``az.compare``'s: best model first, ``elpd_diff`` and ``dse``
        against it, stacking weights, a warning flag and Pareto k columns; ``.notes``
        how binomial and Poisson models' groups were integrated out, with its error.
    """
    if by not in BY:
        raise ArgumentError(f"by must be one of {BY}, got {by!r}")
    from .model import LMM

    if not isinstance(models, Mapping) or len(models) < 2:
        raise ComparisonError("loo_compare() needs a dict of at least two named models")
    for name, m in models.items():
        if not isinstance(m, LMM):
            raise ComparisonError(f"model {name!r} is a {type(m).__name__}, not a bl.LMM")
    if len({is_gaussian(m) for m in models.values()}) > 1:
        raise ComparisonError(
            "loo_compare() got Gaussian and binomial/Poisson models: a log density and a log "
            "probability are not comparable"
        )
    names = list(models)
    first = models[names[0]].design
    for name in names[1:]:
        if not same_response(models[name].design, first):
            raise ComparisonError(
                f"models {names[0]!r} and {name!r} are not fitted to the same response on "
                "the same rows"
            )
    unit, notes = "observation", {}
    if by == "group":
        groups = {name: loo_group(m) for name, m in models.items()}
        levels = {name: m.design.groups()[groups[name]] for name, m in models.items()}
        unit = groups[names[0]]
        for name in names[1:]:
            if groups[name] != unit or levels[name] != levels[names[0]]:
                raise ComparisonError(
                    f"leave-one-group-out needs the same groups in every model: "
                    f"{names[0]!r} leaves out levels of {unit!r}, {name!r} of "
                    f"{groups[name]!r} (or their levels differ)"
                )
    with warnings.catch_warnings():  # the table reports Pareto k itself
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        results = {name: loo(m, by) for name, m in models.items()}
    if by == "group":
        for name, m in models.items():
            if not is_gaussian(m):
                notes[name] = group_log_likelihood(m).attrs["integration"]
    return compare_results(results, by, unit, notes)


def compare_results(results: Mapping[str, Any], by: str, unit: str,
                    notes: Mapping[str, str] | None = None) -> LooComparison:  # fmt: skip
    """:class:`LooComparison` of PSIS-LOO results already computed (``az.compare`` with
    the Pareto k columns)."""
    results = dict(results)
    table = stack.compare(results)
    k_max, k_high = {}, {}
    for name, res in results.items():
        k = np.asarray(res.pareto_k)
        k_max[name] = float(np.nanmax(k))
        k_high[name] = int(np.sum(k > res.good_k))
    table["k_max"] = pd.Series(k_max)
    table["k_high"] = pd.Series(k_high)
    return LooComparison(table=table, loo=results, by=by, unit=unit, notes=dict(notes or {}))


def glmm_loo_by(model: LMM, group: str, codes: np.ndarray, levels: list, *,
                random_seed: int | None = 0) -> tuple[Any, str]:  # fmt: skip
    """PSIS-LOO of a binomial, Bernoulli or Poisson model leaving out the levels of
    ``group`` (``codes``: each row's level, ``levels`` their names), and how each left-out
    level was scored. Where ``group`` is a grouping factor of the model, its effects are
    integrated out (:func:`glmm_group_log_likelihood`); where it is not (a simpler model
    of a comparison, a GLM), the level's rows' log-pmf given the draw's parameters and
    other effects is summed: what the model predicts for a new level."""
    idata = model.idata
    if idata is None:
        raise NotFittedError(f"{model.formula!r} is not fitted yet: call model.fit() first")
    codes = np.asarray(codes, np.int64)
    if len(codes) != model.design.n_obs:
        raise ComparisonError(f"{len(codes)} level codes for the {model.design.n_obs} rows "
                              f"of {model.formula!r}")  # fmt: skip
    if any(b.group == group for b in model.design.blocks):
        values = glmm_group_log_likelihood(model, group, random_seed=random_seed)
        note = values.attrs["integration"]
    else:
        rows = model._log_likelihood(idata)[model.design.response].values
        flat = rows.reshape(rows.shape[0] * rows.shape[1], -1)
        onehot = np.zeros((flat.shape[1], len(levels)))
        onehot[np.arange(len(codes)), codes] = 1.0
        sums = flat @ onehot
        post = stack.posterior(idata)
        values = xr.DataArray(sums.reshape(*rows.shape[:2], len(levels)),
                              dims=("chain", "draw", group),
                              coords={"chain": post.chain, "draw": post.draw, group: levels},
                              name=model.design.response)  # fmt: skip
        note = (f"no random effects of {group}: each level's rows' log-pmf summed, given the "
                "draw's parameters" + (" and effects" if model.design.blocks else ""))
    post = stack.posterior(idata)
    post = post[[v for v in model.population_variables() if v in post]]
    data = stack.from_datasets(posterior=post,
                               log_likelihood=xr.Dataset({values.name: values}))  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        return stack.loo(data), note
