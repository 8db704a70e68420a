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

from ..errors import ArgumentError, DataError, RowsNotInMemoryError
from ..spec.design import Design, is_dask_frame
from ..spec.formula import quote
from ..spec.reuse import design_from, group_dummies


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


def ols(formula: str | Design, data: pd.DataFrame | None = None) -> OLSFit:
    """OLS of a fixed-effects formula, with lme4-style column names; or of the fixed part
    of a built :class:`~bayeslmm.Design` (its random terms left out), ``ols(design)``."""
    refuse_dask(formula.frame if isinstance(formula, Design) else data, "ols()")
    design = design_from(formula, data, caller="ols()")
    return _ols(design.X, design.y, list(design.fixed_names))


def _ols(X: np.ndarray, y: np.ndarray, names: list[str]) -> OLSFit:
    import statsmodels.api as sm  # here: importing it takes 0.4 s that a fit does not need

    return OLSFit(names, sm.OLS(y, X).fit())


def ancova(design: Design, group: str, slopes: tuple[str, ...] = ()) -> OLSFit | None:
    """OLS of the design's fixed part plus dummies of ``group``'s levels (and ``slopes``
    times them): ``ols(f"{fixed} + C(group) + slope:C(group)", data)`` on the design's
    rows, from its level codes (:func:`~bayeslmm.spec.reuse.group_dummies`); None where
    the dummies' coding needs the formula (a fixed part without intercept)."""
    refuse_dask(design.frame, "ANCOVA")
    made = group_dummies(design, group, slopes)
    return None if made is None else _ols(made[0], design.y, made[1])


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


def per_group_ols(
    formula: str | Design, data: pd.DataFrame | None = None, group: str | None = None
) -> TwoStageFit:
    """OLS of ``formula`` within every level of ``group``, all levels solved at once; or of
    the fixed part of a built :class:`~bayeslmm.Design` within every level of ``group``
    (default: its first grouping factor), ``per_group_ols(design)``."""
    refuse_dask(formula.frame if isinstance(formula, Design) else data, "the two-stage model")
    if isinstance(formula, Design):
        design = design_from(formula, data, caller="per_group_ols()")
        group = design.blocks[0].group if group is None else group
        formula = design.spec.formula
    else:
        if group is None:
            raise ArgumentError("per_group_ols(formula, data, group): group is missing")
        design = design_from(f"{formula} + (1 | {quote(group)})", data,
                             caller="per_group_ols()")  # fmt: skip
    block = next(b for b in design.blocks if b.group == group)
    levels, codes = np.asarray(block.levels), block.codes
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
    index = block.level_values.rename(group)  # the factor's type
    frame = pd.DataFrame(coefs, index=index, columns=design.fixed_names)
    return TwoStageFit(frame)


#: Relative size below which an eigenvalue of the unit-column Gram matrix counts as zero.
RANK_TOL = 1e-10


def _unit_gram(X: np.ndarray) -> np.ndarray:
    """X'X of ``X`` with every column scaled to unit length (all-zero columns kept at 0)."""
    norms = np.sqrt((X**2).sum(axis=0))
    Xs = X / np.where(norms > 0, norms, 1.0)
    return Xs.T @ Xs


def estimable_columns(X: np.ndarray) -> np.ndarray:
    """Per column of ``X``, is its coefficient identified (not a combination of the others)?

    Column ``j`` is identified when the unit vector ``e_j`` lies in the row space of ``X``:
    the projector onto the range of ``X'X`` keeps it, ``P_jj = 1``.
    """
    gram = _unit_gram(np.asarray(X, float))
    if gram.size == 0:
        return np.zeros(0, bool)
    values, vectors = np.linalg.eigh(gram)
    kept = values > RANK_TOL * max(values.max(), 1.0) * len(values)
    return (vectors[:, kept] ** 2).sum(axis=1) > 1.0 - 1e-6


def estimable(X: np.ndarray, j: int) -> bool:
    """Is the coefficient of column ``j`` identified: not a combination of the others?"""
    return bool(estimable_columns(X)[j])


def independent_columns(X: np.ndarray) -> list[int]:
    """Indices of a maximal set of linearly independent columns, earlier columns first (a
    Cholesky factorisation of the unit-column Gram matrix that skips a column whose pivot
    is ~0)."""
    gram = _unit_gram(np.asarray(X, float))
    k = len(gram)
    L = np.zeros((k, k))
    keep: list[int] = []
    for j in range(k):
        m = len(keep)
        v = gram[j:, j] - L[j:, :m] @ L[j, :m]
        if v[0] > RANK_TOL * k:
            L[j:, m] = v / np.sqrt(v[0])
            keep.append(j)
    return keep


def ols_arrays(X: np.ndarray, y: np.ndarray, names: list[str]) -> OLSFit:
    """OLS of ``y`` on the columns of ``X`` named ``names`` (statsmodels).

    Collinear columns are allowed: a column that adds nothing to the ones before it is
    left out of the fit (and of the fit's names). Every identified coefficient (see
    :func:`estimable_columns`) is kept, and its estimate and SE are those of the full
    design.
    """
    import statsmodels.api as sm

    keep = independent_columns(X)
    result = sm.OLS(np.asarray(y, float), np.asarray(X, float)[:, keep]).fit()
    return OLSFit([names[k] for k in keep], result)


def per_level_ols(
    X: np.ndarray, y: np.ndarray, codes: np.ndarray, levels: list[str], names: list[str],
    group: str, term: str,
) -> pd.DataFrame:  # fmt: skip
    """First stage of the two-stage model from arrays: OLS within every level of ``group``.

    Returns levels x ``names`` coefficients. Other columns may be collinear within a level
    (a covariate constant in it): their coefficients are NaN there. The ``term``
    coefficient is NaN in the levels that do not identify it (it does not vary there apart
    from the other columns).
    """
    g, p = len(levels), X.shape[1]
    scale = np.sqrt((X**2).sum(axis=0))
    scale[scale == 0] = 1.0
    Xs = X / scale  # unit columns: the ranks below compare like with like
    xtx = np.zeros((g, p, p))
    xty = np.zeros((g, p))
    np.add.at(xtx, codes, Xs[:, :, None] * Xs[:, None, :])
    np.add.at(xty, codes, Xs * y[:, None])
    j = names.index(term)
    keep = [k for k in range(p) if k != j]
    rank = np.linalg.matrix_rank(xtx, hermitian=True)
    rank_others = (np.linalg.matrix_rank(xtx[:, keep][:, :, keep], hermitian=True)
                   if keep else np.zeros(g, int))  # fmt: skip
    coefs = np.einsum("gij,gj->gi", np.linalg.pinv(xtx, hermitian=True), xty) / scale
    frame = pd.DataFrame(coefs, index=pd.Index(levels, name=group), columns=names)
    frame.loc[rank < p, [n for n in names if n != term]] = np.nan  # not identified there
    frame.loc[rank <= rank_others, term] = np.nan
    return frame
