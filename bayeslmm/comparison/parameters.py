"""REML beside the posterior for every population parameter of one formula.

Two tables, one row per parameter: the fixed effects (lme4's estimate and SE with
lmerTest's Satterthwaite df, t, p and interval, beside the posterior mean, sd, HDI and
probability of direction) and the variance components (lme4's ``VarCorr`` SDs and
correlations beside their posterior mean, median, sd and HDI).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

from ..bayes import stack
from ..bayes.model import LMM
from ..bayes.results import hdi_of, population_draws
from ..classical.lmer import LmerResult, satterthwaite
from ..errors import ArgumentError
from ..spec.naming import ParameterNames


def _posterior_stats(model: LMM, names: list[str], level: float) -> pd.DataFrame:
    """Posterior mean, sd, HDI, R-hat and bulk ESS of ``names``: the model's summary."""
    summary = model.summary(print_it=False, level=level)
    lower, upper = hdi_of(summary)
    stats = summary.loc[names, ["mean", "sd", lower, upper, "r_hat", "ess_bulk"]]
    return stats.set_axis(["posterior_mean", "posterior_sd", "hdi_lower", "hdi_upper", "r_hat",
                           "ess_bulk"], axis=1)  # fmt: skip


def _check_pair(reml: LmerResult, model: LMM | None) -> None:
    if model is None:
        return
    if list(model.design.fixed_names) != list(reml.design.fixed_names) or [
        (b.label, b.columns) for b in model.design.blocks
    ] != [(b.label, b.columns) for b in reml.design.blocks]:
        raise ArgumentError(
            f"the Bayesian fit {model.formula!r} and the REML fit {reml.design.spec.formula!r} "
            "do not have the same parameters"
        )


def fixed_effects_table(
    reml: LmerResult,
    model: LMM | None,
    level: float,
    satt: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every fixed effect by REML and by the posterior, one row each.

    Columns: ``term``; ``reml_estimate``, ``reml_se`` (lme4's ``vcov``, given the variance
    parameters), ``df_satterthwaite``, ``t_satterthwaite``, ``p_satterthwaite`` (lmerTest)
    and ``reml_lower``/``reml_upper``, the t interval at ``level`` with Satterthwaite df;
    with a Bayesian fit, ``posterior_mean``, ``posterior_sd``, ``hdi_lower``/``hdi_upper``
    (HDI at ``level``), ``pd`` (probability of direction: the posterior share on the side
    of zero where most of it lies), ``shift_se`` ((posterior mean - REML estimate) / REML
    SE), ``r_hat`` and ``ess_bulk``.
    """
    _check_pair(reml, model)
    satt = satterthwaite(reml) if satt is None else satt
    names = list(reml.design.fixed_names)
    crit = scipy.stats.t.ppf(0.5 + level / 2, satt["df"].to_numpy())
    est, se = reml.fixef()["estimate"].to_numpy(), reml.se.to_numpy()
    table = pd.DataFrame({
        "term": names, "reml_estimate": est, "reml_se": se,
        "reml_lower": est - crit * se, "reml_upper": est + crit * se,
        "df_satterthwaite": satt["df"].to_numpy(), "t_satterthwaite": satt["t"].to_numpy(),
        "p_satterthwaite": satt["p"].to_numpy(),
    })  # fmt: skip
    if model is None or not names:
        return table
    post = _posterior_stats(model, names, level).reset_index(drop=True)
    beta = stack.posterior(model.idata)["beta"].sel(fixed=names).values.reshape(-1, len(names))
    post.insert(4, "pd", np.maximum((beta > 0).mean(axis=0), (beta < 0).mean(axis=0)))
    post.insert(5, "shift_se", (post["posterior_mean"].to_numpy() - est) / se)
    return pd.concat([table, post], axis=1)


def _component_rows(reml: LmerResult) -> list[tuple[str, str | None, str | None, str, str]]:
    """(grp, var1, var2, parameter, kind) in lme4's ``VarCorr`` order."""
    names = ParameterNames.from_design(reml.design)
    rows = []
    for block, sd_names, pairs in zip(reml.design.blocks, names.sd, names.cor_pairs,
                                      strict=True):  # fmt: skip
        for col, name in zip(block.columns, sd_names, strict=True):
            rows.append((block.label, col, None, name, "sd"))
        if block.correlated:
            lower = zip(*np.tril_indices(block.n_terms, k=-1), strict=True)
            for (i, j), name in zip(lower, pairs, strict=True):
                rows.append((block.label, block.columns[j], block.columns[i], name, "cor"))
    rows.append(("Residual", None, None, "sigma", "sd"))
    return rows


def variance_components_table(reml: LmerResult, model: LMM | None, level: float) -> pd.DataFrame:
    """Every SD and correlation of the random effects, and the residual SD, by REML and by
    the posterior, one row each (lme4's ``VarCorr`` order).

    Columns: ``grp``, ``var1``, ``var2`` (as ``as.data.frame(VarCorr(fit))``),
    ``parameter`` (the name in :meth:`LMM.summary`), ``kind`` (``sd`` or ``cor``),
    ``reml`` (the REML SD or correlation); with a Bayesian fit ``posterior_mean``,
    ``posterior_median``, ``posterior_sd``, ``hdi_lower``/``hdi_upper`` (at ``level``),
    ``r_hat`` and ``ess_bulk``. REML is the mode of the restricted likelihood; an SD's
    posterior is skewed to the right when the data say little about it, so its mean
    lies above its median, and both above a REML estimate at or near zero.
    """
    _check_pair(reml, model)
    rows = _component_rows(reml)
    vc = reml.varcorr()
    table = pd.DataFrame(rows, columns=["grp", "var1", "var2", "parameter", "kind"])
    table["reml"] = vc["sdcor"].to_numpy()
    if model is None:
        return table
    names = list(table["parameter"])
    post = _posterior_stats(model, names, level).reset_index(drop=True)
    draws = population_draws(model.idata, model.design)
    post.insert(1, "posterior_median", [float(draws[n].median()) for n in names])
    return pd.concat([table, post], axis=1)


def reml_coefficients(fit: LmerResult, group: str) -> pd.DataFrame:
    """lme4's ``coef()``: fixed effect + BLUP per level of ``group``."""
    ranef = fit.ranef()[group]
    out, beta = ranef.copy(), fit.fixef()["estimate"]
    for col in ranef.columns:
        if col in beta.index:
            out[col] = ranef[col] + beta[col]
    return out
