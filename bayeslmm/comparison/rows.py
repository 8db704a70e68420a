"""What every comparison table shares: one row per model for one fixed term, and the
checks of the arguments passed on to the Bayesian fits."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from ..bayes import stack
from ..bayes.model import LMM
from ..bayes.settings import FitSettings
from ..classical.lmer import LmerResult, satterthwaite
from ..errors import ArgumentError, ComparisonError, NotFittedError
from ..spec.design import Design

TABLE_COLUMNS = [
    "model", "method", "rmse", "estimate", "se", "statistic", "stat_type", "df", "p_value",
    "ci_lower", "ci_upper", "t_satterthwaite", "df_satterthwaite", "p_satterthwaite", "pd", "note",
]  # fmt: skip

#: Keyword arguments of :meth:`LMM.fit` that :func:`compare` passes on.
FIT_ARGUMENTS = FitSettings.names()


def refuse_known_se(model: LMM, what: str) -> None:
    """Refuse a model with known standard errors (``bl.LMM(..., se=...)``) in ``what``,
    whose models estimate a residual variance (and would ignore the standard errors)."""
    if getattr(model, "known_se", None) is not None:
        raise ComparisonError(
            f"{what} is not for a model with known standard errors (se={model.se_column!r}) "
            "yet: its models estimate a residual variance and would ignore the standard "
            f"errors; compare models with these standard errors by bl.anova() of "
            f"bl.lmer(..., se={model.se_column!r}) fits instead"
        )


def check_level(level: object) -> float:
    """An interval coverage strictly between 0 and 1."""
    if (
        isinstance(level, bool | np.bool_)
        or not isinstance(level, numbers.Real)
        or not (0 < level < 1)
    ):
        raise ArgumentError(f"level must be a number between 0 and 1 (e.g. 0.95), got {level!r}")
    return float(level)


def check_arguments(level: object, bayes: object, model: object, fit_kwargs: dict) -> None:
    """The arguments of :func:`compare` but the formula and term, before anything is read."""
    check_level(level)
    if not isinstance(bayes, bool | np.bool_):
        raise ArgumentError(f"bayes must be True or False, got {bayes!r}")
    FitSettings.from_kwargs(fit_kwargs, "compare()")  # unknown keywords, before anything
    if model is not None and not isinstance(model, LMM):
        raise ArgumentError(f"model must be a fitted bayeslmm.LMM, got {type(model).__name__}")
    if model is not None and model.idata is None:
        raise NotFittedError("compare(model=...) needs a fitted model: call model.fit() first")


def check_fit_settings(fit_kwargs: dict) -> None:
    """The settings passed on to :meth:`LMM.fit`, before anything is fitted; the progress
    bar is off unless asked for."""
    fit_kwargs.setdefault("progressbar", False)
    FitSettings.from_kwargs(fit_kwargs, "compare()").check()


def fit_bayes(design: Design, fit_kwargs: dict[str, Any]) -> LMM:
    """:class:`LMM` of a built design (default priors), fitted with ``fit_kwargs``."""
    model = LMM(design)
    model.fit(**fit_kwargs)
    return model


def lmer_row(
    fit: LmerResult,
    term: str,
    level: float,
    information: str = "observed",
    satt: pd.DataFrame | None = None,
) -> dict[str, float]:
    """An REML row: Wald z (SE from the full observed information, or lme4's given the
    variance parameters with ``information="expected"``), Satterthwaite beside it
    (``satt``: :func:`satterthwaite` of ``fit`` if already computed)."""
    coefs = fit.coefficients(information=information).loc[term]
    half = scipy.stats.norm.ppf(0.5 + level / 2) * coefs["se"]
    satt = (satterthwaite(fit) if satt is None else satt).loc[term]
    return {
        "rmse": fit.rmse, "estimate": float(coefs["estimate"]), "se": float(coefs["se"]),
        "statistic": float(coefs["z"]), "stat_type": "z", "df": np.inf,
        "p_value": float(coefs["p_z"]), "ci_lower": float(coefs["estimate"] - half),
        "ci_upper": float(coefs["estimate"] + half), "t_satterthwaite": float(satt["t"]),
        "df_satterthwaite": float(satt["df"]), "p_satterthwaite": float(satt["p"]),
    }  # fmt: skip


def bayes_row(model: LMM, term: str, level: float) -> dict[str, float]:
    """A Bayesian row: posterior mean, sd, HDI and probability of direction."""
    beta = stack.posterior(model.idata)["beta"].sel(fixed=term)
    draws = beta.values.ravel()
    lower, upper = stack.hdi(beta, level)
    resid = model.design.y - model.fitted()
    df_resid = model.design.n_obs - len(model.design.fixed_names)
    return {
        "rmse": float(np.sqrt(np.sum(resid**2) / df_resid)),
        "estimate": float(draws.mean()), "se": float(draws.std(ddof=1)),
        "stat_type": "posterior", "ci_lower": float(lower), "ci_upper": float(upper),
        "pd": float(max(np.mean(draws > 0), np.mean(draws < 0))),
    }  # fmt: skip


def model_table(
    methods: dict[str, str],
    fits: dict[str, Any],
    notes: dict[str, str],
    term: str,
    level: float,
    information: str = "observed",
    satterthwaites: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per model (in the order of ``methods``) for ``term`` at ``level``; a model
    without a fit keeps its row, its note saying why. REML rows: see :func:`lmer_row`
    (``satterthwaites``: already computed tables by row name)."""
    records = []
    for name, method in methods.items():
        record: dict[str, Any] = {"model": name, "method": method}
        fit = fits.get(name)
        parts = [notes.get(name, "")]
        if isinstance(fit, LmerResult):
            satt = (satterthwaites or {}).get(name)
            record.update(lmer_row(fit, term, level, information, satt))
            parts.append("singular fit" if fit.singular else "")
        elif isinstance(fit, LMM):
            record.update(bayes_row(fit, term, level))
        elif fit is not None:
            record.update(fit.row(term, level))
            parts.append(record.pop("note", ""))
        record["note"] = "; ".join(p for p in parts if p)
        records.append(record)
    table = pd.DataFrame(records).reindex(columns=TABLE_COLUMNS)
    table["note"] = table["note"].fillna("")
    return table
