"""Ordinary least squares fits of the classical comparison models.

Complete-pooling OLS, ANCOVA (group dummies, with or without group slopes), OLS on group
means, and the per-group OLS of the two-stage model, with lme4-style coefficient names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from ..errors import DataError, RowsNotInMemoryError
from ..spec.design import build_design, is_dask_frame
from ..spec.formula import quote


@dataclass
class OLSFit:
    """An OLS fit (statsmodels) with the design it came from."""

    names: list[str]
    result: Any  # statsmodels RegressionResults

    def row(self, term: str, level: float) -> dict[str, float]:
        r, j = self.result, self.names.index(term)
        if r.df_resid <= 0:  # as many coefficients as rows: an exact fit, nothing to test
            return {"estimate": float(r.params[j]), "stat_type": "t", "df": float(r.df_resid),
                    "note": f"no residual degrees of freedom ({int(r.nobs)} rows, "
                            f"{len(self.names)} coefficients): no SE or test"}  # fmt: skip
        ci = r.conf_int(alpha=1 - level)[j]
        return {
            "rmse": float(np.sqrt(r.ssr / r.df_resid)),
            "estimate": float(r.params[j]), "se": float(r.bse[j]),
            "statistic": float(r.tvalues[j]), "stat_type": "t", "df": float(r.df_resid),
            "p_value": float(r.pvalues[j]), "ci_lower": float(ci[0]), "ci_upper": float(ci[1]),
        }  # fmt: skip


def refuse_dask(data: object, what: str) -> None:
    """The classical comparison models are fitted to rows in memory."""
    if is_dask_frame(data):
        raise RowsNotInMemoryError(
            f"{what} fits OLS, ANCOVA, aggregation and two-stage models to the rows in memory, "
            "and the data are a Dask DataFrame; fit bl.lmer() and bl.LMM() to it (from its "
            "sums), or compare on a pandas sample, e.g. ddf.sample(frac=0.01).compute()"
        )


def ols(formula: str, data: pd.DataFrame) -> OLSFit:
    """OLS of a fixed-effects formula, with lme4-style column names."""
    refuse_dask(data, "ols()")
    design = build_design(formula, data)
    import statsmodels.api as sm  # here: importing it takes 0.4 s that a fit does not need

    result = sm.OLS(design.y, design.X).fit()
    return OLSFit(list(design.fixed_names), result)


@dataclass
class TwoStageFit:
    """Per-group OLS coefficients (first stage) and a t-test of their mean (second)."""

    coefficients: pd.DataFrame  # levels x fixed names

    def row(self, term: str, level: float) -> dict[str, float]:
        slopes = self.coefficients[term].to_numpy()
        g = len(slopes)
        mean, sd = slopes.mean(), slopes.std(ddof=1)
        se = sd / np.sqrt(g)
        t = mean / se
        half = scipy.stats.t.ppf(0.5 + level / 2, g - 1) * se
        return {
            "rmse": float(sd), "estimate": float(mean), "se": float(se), "statistic": float(t),
            "stat_type": "t", "df": float(g - 1),
            "p_value": float(2 * scipy.stats.t.sf(abs(t), g - 1)),
            "ci_lower": float(mean - half), "ci_upper": float(mean + half),
        }  # fmt: skip


def per_group_ols(formula: str, data: pd.DataFrame, group: str) -> TwoStageFit:
    """OLS of ``formula`` within every level of ``group``, all levels solved at once."""
    refuse_dask(data, "the two-stage model")
    design = build_design(f"{formula} + (1 | {quote(group)})", data)
    levels, codes = np.asarray(design.blocks[0].levels), design.blocks[0].codes
    X, y = design.X, design.y
    g, p = len(levels), X.shape[1]
    xtx = np.zeros((g, p, p))
    xty = np.zeros((g, p))
    np.add.at(xtx, codes, X[:, :, None] * X[:, None, :])
    np.add.at(xty, codes, X * y[:, None])
    rank = np.linalg.matrix_rank(xtx)
    if np.any(rank < p):
        bad = [str(lv) for lv in levels[rank < p]]
        raise DataError(
            f"per-group OLS of {formula!r} is not identified in level(s) {bad} of "
            f"{group!r}: too few distinct rows"
        )
    coefs = np.linalg.solve(xtx, xty[..., None])[..., 0]
    frame = pd.DataFrame(coefs, index=pd.Index(levels, name=group), columns=design.fixed_names)
    return TwoStageFit(frame)
