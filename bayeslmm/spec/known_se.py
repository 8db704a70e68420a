"""Gaussian outcomes with known standard errors (meta-analysis; brms ``y | se(sei)``).

Row ``i``'s residual is ``N(0, se_i^2)`` with ``se_i`` read from a column. Dividing every
row of ``y``, ``X`` and ``Z`` by ``se_i`` gives a Gaussian LMM whose residual SD is known
to be 1, so the one Gaussian core fits it exactly: the REML/ML criterion with sigma fixed
(:func:`bayeslmm.gaussian.blocked.deviance`) and the marginal posterior density with sigma
fixed at 1. :func:`check_se_column` refuses a bad column before any fit;
:func:`known_se_design` builds the design on the original scale and its row-scaled copy
(the user's data are never modified).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..errors import ArgumentError, ColumnTypeError, DataError, UnknownNameError
from .arrays import Design
from .design import build_design
from .tokens import _display_columns, _suggest

#: How many offending rows an error names.
ROWS_SHOWN = 5


def _rows(data: pd.DataFrame, bad: np.ndarray) -> str:
    labels = [repr(v) if isinstance(v, str) else str(v) for v in data.index[bad][:ROWS_SHOWN]]
    more = f" and {int(bad.sum()) - ROWS_SHOWN} more" if bad.sum() > ROWS_SHOWN else ""
    return f"{int(bad.sum())} row(s), first at index {', '.join(labels)}{more}"


def check_se_column(data: object, column: object) -> str:
    """Check the known standard errors' column; return its label.

    Raises
    ------
    ArgumentError
        ``column`` is not a column name, or the data are not a pandas DataFrame.
    UnknownNameError
        The column is not in the data.
    ColumnTypeError
        The column is not numeric.
    DataError
        Missing (NaN), infinite, zero or negative values, naming the first rows.
    """
    if not isinstance(column, str) or not column:
        raise ArgumentError(f"se must be the name of the column of known standard errors, got "
                            f"{column!r}")  # fmt: skip
    if not isinstance(data, pd.DataFrame):
        kind = f"{type(data).__module__.split('.')[0]}.{type(data).__name__}"
        raise ArgumentError(f"se={column!r} needs the data as a pandas DataFrame (rows in "
                            f"memory), got a {kind}")  # fmt: skip
    labels = _display_columns(data)
    if column not in labels:
        raise UnknownNameError(f"the standard-error column se={column!r} is not in the data"
                               f"{_suggest(column, list(labels))}")  # fmt: skip
    if len(labels[column]) > 1:
        raise DataError(f"the data have {len(labels[column])} columns named {column!r}; "
                        "rename all but one")  # fmt: skip
    values = data[labels[column][0]]
    if (isinstance(values.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(values)
            or not pd.api.types.is_numeric_dtype(values)):  # fmt: skip
        raise ColumnTypeError(f"the standard-error column {column!r} must be numeric, it is "
                              f"{values.dtype}")  # fmt: skip
    x = values.to_numpy(dtype=float, na_value=np.nan)
    for bad, what, why in ((np.isnan(x), "missing (NaN) values", ""),
                           (np.isinf(x), "infinite values", ""),
                           (x == 0, "zeros", " (a row with standard error 0 would be fitted "
                                             "exactly)"),
                           (x < 0, "negative values", "")):  # fmt: skip
        if bad.any():
            raise DataError(f"the standard-error column {column!r} has {what} in "
                            f"{_rows(data, bad)}; standard errors must be finite and "
                            f"positive{why}")  # fmt: skip
    return labels[column][0]


def scale_rows(design: Design, se: np.ndarray) -> Design:
    """A copy of ``design`` with every row of ``y``, ``X`` and each ``Z`` divided by
    ``se`` (the design given is unchanged; the copy's sums are computed afresh)."""
    w = 1.0 / np.asarray(se, dtype=float)
    blocks = [dataclasses.replace(b, Z=b.Z * w[:, None]) for b in design.blocks]
    return dataclasses.replace(design, y=design.y * w, X=design.X * w[:, None], blocks=blocks)


def extra_sigma_column(data: pd.DataFrame) -> str:
    """A column name not in ``data`` for the observation-level factor of an extra residual
    SD (``obs_extra``, with underscores added while taken)."""
    name, taken = "obs_extra", {str(c) for c in data.columns}
    while name in taken:
        name += "_"
    return name


def known_se_design(formula: object, data: pd.DataFrame, column: str, caller: str,
                    extra_sigma: bool = False) -> tuple[Design, Design, np.ndarray]:  # fmt: skip
    """The design of ``formula`` on ``data`` (original scale), its row-scaled copy and the
    standard errors of its rows, for a model whose residual SDs are the column
    ``column``. ``extra_sigma``: the residual variance is ``se_i^2 + sigma^2`` (brms
    ``se(se, sigma = TRUE)``), as an observation-level random intercept
    ``(1 | obs_extra)``, the design's last block (on a copy of the data)."""
    if isinstance(formula, Design):
        raise ArgumentError(f"{caller}: se= needs a formula with data (the column is read "
                            "from the data), not a built Design")  # fmt: skip
    if not isinstance(extra_sigma, bool):
        raise ArgumentError(f"extra_sigma must be True or False, got {extra_sigma!r}")
    label = check_se_column(data, column)
    if extra_sigma:
        if not isinstance(formula, str):
            raise ArgumentError(f"{caller}: extra_sigma=True needs the formula as text")
        obs = extra_sigma_column(data)
        data = data.assign(**{obs: np.arange(len(data))})
        formula = f"{formula} + (1 | {obs})"
    # one row per level is fine: the residual variance is known, so the variance of a
    # random intercept is identified (eight schools, one estimate per study)
    design = build_design(formula, data, carry=(label,), level_per_row=True)
    se = design.frame[label].to_numpy(dtype=float)
    return design, scale_rows(design, se), se


def refuse_gaussian_weights(weights: object, caller: str) -> None:
    """Refuse lme4's ``weights=`` for a Gaussian model, saying why (see :func:`known_se_design`
    for ``se=``, the model of known standard errors)."""
    if weights is None:
        return
    raise ArgumentError(
        f"{caller}: weights={weights!r} is not taken for a Gaussian model. lme4's lmer "
        "weights are precision weights with the residual SD still estimated (residual "
        "variance sigma^2 / w_i), which bayeslmm does not fit; for outcomes with known "
        "standard errors (meta-analysis, brms y | se(sei)) give se='column' instead: the "
        "residual variance is then se_i^2 and no sigma is estimated"
    )
