"""``bl.icc(fit)`` and ``bl.r2(fit)``: one call for a posterior or a REML/ML fit."""

from __future__ import annotations

import pandas as pd

from ..bayes.model import LMM
from ..classical.lmer import LmerResult
from ..errors import ArgumentError


def _check(fit: object, level: float | None, hdi_prob: float | None, what: str) -> None:
    if not isinstance(fit, LMM | LmerResult):
        raise ArgumentError(f"{what}() needs a bl.LMM (fitted) or a bl.lmer() result, got "
                            f"{type(fit).__name__}")  # fmt: skip
    if isinstance(fit, LmerResult) and (level is not None or hdi_prob is not None):
        given = "level" if level is not None else "hdi_prob"
        raise ArgumentError(f"{given} applies to a posterior; a bl.lmer() fit's {what} is a "
                            "point estimate")  # fmt: skip


def icc(fit: LMM | LmerResult, level: float | None = None, *,
        hdi_prob: float | None = None) -> pd.DataFrame:  # fmt: skip
    """Intraclass correlations per grouping factor, adjusted and conditional: posterior
    mean, sd and HDI per draw for a :class:`~bayeslmm.LMM` (:meth:`LMM.icc`), the estimate
    for a :func:`~bayeslmm.lmer` fit (:meth:`LmerResult.icc`)."""
    _check(fit, level, hdi_prob, "icc")
    return fit.icc(level, hdi_prob=hdi_prob) if isinstance(fit, LMM) else fit.icc()


def r2(fit: LMM | LmerResult, level: float | None = None, *,
       hdi_prob: float | None = None) -> pd.DataFrame:  # fmt: skip
    """R2: the Bayesian R2 (brms' ``bayes_R2``, conditional and marginal) of a
    :class:`~bayeslmm.LMM` (:meth:`LMM.r2`), Nakagawa & Schielzeth's marginal and
    conditional R2 of a :func:`~bayeslmm.lmer` fit (:meth:`LmerResult.r2`)."""
    _check(fit, level, hdi_prob, "r2")
    return fit.r2(level, hdi_prob=hdi_prob) if isinstance(fit, LMM) else fit.r2()
