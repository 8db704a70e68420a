"""Responses of generalised linear mixed models as users write them, checked before a fit.

- Bernoulli: a 0/1, bool or two-level factor column (lme4: the first level is failure, 0;
  a text column's levels sort as R's ``factor()`` does, a pandas Categorical keeps its
  order).
- Binomial: lme4's ``cbind(successes, failures) ~ ...``, or a proportion with
  ``weights=`` the trials (a column name or an array).
- Poisson: non-negative integer counts.
- ``offset(expr)`` terms in the formula (``offset(log(exposure))``) and/or an
  ``offset=`` argument, summed.

:func:`glm_design` rewrites the formula into one that :func:`~bayeslmm.spec.design.
build_design` reads (the response, trials and offset become the columns ``(response)``,
``(weights)`` and ``(offset)`` of a copy of the data, as in lme4's model frame), so that the
rows dropped for missing values are the same for all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import model_matrix

from ..errors import (
    ArgumentError,
    ColumnTypeError,
    DataError,
    FormulaError,
    RowsNotInMemoryError,
    warn,
)
from .design import Design, build_design, is_dask_frame
from .family import Family, get_family
from .formula import _split_top, mask_backticks, python_spelling, quote
from .tokens import _CONTEXT, response_column

RESPONSE, WEIGHTS, OFFSET = "(response)", "(weights)", "(offset)"
_OFFSET_CALL = re.compile(r"^\s*offset\s*\((.*)\)\s*$", re.S)
_CBIND_CALL = re.compile(r"^\s*cbind\s*\((.*)\)\s*$", re.S)


@dataclass
class GlmResponse:
    """The response of a GLMM on the design's rows.

    Attributes
    ----------
    family
        The :class:`~bayeslmm.spec.family.Family`.
    y
        0/1 (Bernoulli), the proportion of successes (binomial), counts (Poisson).
    weights
        Prior weights: the trials of a binomial response, else 1.
    offset
        The summed offsets (0 without any).
    name
        The response as written (``cbind(incidence, size - incidence)``).
    formula
        The formula as written.
    levels
        A factor response's (failure, success) levels, else None.
    """

    family: Family
    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    name: str
    formula: str
    levels: tuple | None = None

    @property
    def successes(self) -> np.ndarray:
        """Counts of successes (binomial) or the response itself."""
        return self.y * self.weights if self.family.binomial else self.y


def _evaluate(expr: str, data: pd.DataFrame, where: str) -> np.ndarray:
    """One numeric value per row of ``expr`` (a column or an expression such as
    ``log(exposure)``, R's spelling), NaN where an input is missing."""
    column = response_column(expr)
    if column is not None and column in data.columns:
        values = data[column]
        if values.dtype == bool or values.dtype == "boolean":
            return values.astype("float64").to_numpy()
        if not pd.api.types.is_numeric_dtype(values):
            raise ColumnTypeError(f"{where} {column!r} must be numeric, but its type is "
                                  f"{values.dtype}")  # fmt: skip
        return values.to_numpy(dtype=float, na_value=np.nan)
    try:
        mm = model_matrix(f"0 + I({python_spelling(expr)})", data, context=_CONTEXT,
                          na_action="ignore")  # fmt: skip
    except Exception as exc:  # formulaic raises many kinds
        raise FormulaError(f"cannot evaluate {where} {expr.strip()!r}: {exc}") from exc
    if mm.shape[1] != 1:
        raise ColumnTypeError(f"{where} {expr.strip()!r} must be one numeric column")
    return np.asarray(mm, dtype=float)[:, 0]


def _split_formula(formula: str) -> tuple[str, list[str], list[str]]:
    """(response text, right-hand-side pieces other than offsets, offset expressions)."""
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, got {type(formula).__name__}")
    masked = mask_backticks(formula, formula)
    if masked.count("~") != 1:
        raise FormulaError("formula needs one '~': 'y ~ ...'", formula, 0)
    at = masked.index("~")
    lhs, rhs, masked_rhs = formula[:at].strip(), formula[at + 1 :], masked[at + 1 :]
    pieces, offsets = [], []
    for start, piece in _split_top(masked_rhs, "+"):
        text = rhs[start : start + len(piece)]
        call = _OFFSET_CALL.match(piece)
        if call:
            offsets.append(text.strip()[len("offset") :].strip()[1:-1])
        else:
            pieces.append(text)
    return lhs, pieces, offsets


def _factor_response(values: pd.Series, column: str, family: Family):
    """0/1 of a bool or two-level factor column (first level: failure) and its levels."""
    if isinstance(values.dtype, pd.CategoricalDtype):  # its order; unused levels dropped
        used = set(values.dropna().unique())
        levels = [c for c in values.cat.categories if c in used]
    else:
        levels = sorted(values.dropna().unique(), key=str)
    if len(levels) != 2:
        shown = ", ".join(map(repr, levels[:6]))
        raise DataError(f"response {column!r} of the {family.name} family must have two levels "
                        f"(failure, success), but it has {len(levels)}: {shown}")  # fmt: skip
    y = np.where(values.isna(), np.nan, (values == levels[1]).to_numpy(dtype=float))
    return y, (levels[0], levels[1])


def _check_counts(name: str, values: np.ndarray, what: str) -> None:
    ok = values[np.isfinite(values)]
    if np.any(ok < 0):
        bad = ok[ok < 0]
        raise DataError(f"{what} {name!r} has {bad.size} negative value(s) (e.g. {bad[0]:g}); "
                        "counts are 0, 1, 2, ...")  # fmt: skip
    frac = ok[ok != np.round(ok)]
    if frac.size:
        raise DataError(f"{what} {name!r} has {frac.size} non-integer value(s) (e.g. "
                        f"{frac[0]:g}); counts are 0, 1, 2, ...")  # fmt: skip
    if np.any(np.isinf(values)):
        raise DataError(f"{what} {name!r} has infinite values")


def _given(values, data: pd.DataFrame, what: str) -> tuple[np.ndarray, str]:
    """``weights=`` / ``offset=``: a column name or one number per row."""
    if isinstance(values, str):
        if values not in data.columns:
            raise DataError(f"{what} column {values!r} is not in the data")
        return _evaluate(values, data, what), values
    arr = np.asarray(values, dtype=float).ravel()
    if arr.shape[0] != len(data):
        raise DataError(f"{what} has {arr.shape[0]} values for {len(data)} rows of data")
    return arr, what


def _check_finite_offset(values: np.ndarray, name: str) -> None:
    n_missing, n_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    if n_missing or n_inf:
        raise DataError(f"offset {name!r} has {n_missing} missing and {n_inf} infinite "
                        "value(s) (e.g. log of 0); an offset needs a finite value in every "
                        "row")  # fmt: skip


def _summed_offsets(offsets: list[str], offset, data: pd.DataFrame) -> np.ndarray:
    """The formula's ``offset(expr)`` terms and ``offset=`` (a column name, or one value per
    row) evaluated on ``data`` and summed; each checked finite, named in the error."""
    total = np.zeros(len(data))
    for expr in offsets:
        values = _evaluate(expr, data, "offset")
        _check_finite_offset(values, f"offset({expr})")
        total = total + values
    if offset is not None:
        values, name = _given(offset, data, "offset")
        _check_finite_offset(values, name)
        total = total + values
    return total


def glm_design(
    formula: str,
    data: pd.DataFrame,
    family: str | Family,
    weights: str | np.ndarray | None = None,
    offset: str | np.ndarray | None = None,
) -> tuple[Design, GlmResponse]:
    """The design and checked response of a GLMM formula.

    Parameters
    ----------
    formula
        lme4 formula; the response may be ``cbind(successes, failures)`` and the right-hand
        side may hold ``offset(expr)`` terms.
    data
        A pandas DataFrame (never modified).
    family
        Family name or :class:`Family`.
    weights
        Binomial trials for a proportion response (column name or array).
    offset
        An offset added to the formula's (column name or array).

    Raises
    ------
    DataError, ColumnTypeError, FormulaError, FamilyError
        Naming the column at fault, before any fit.
    """
    family = get_family(family)
    if is_dask_frame(data):
        raise RowsNotInMemoryError(
            f"the {family.name} family needs the rows in memory (penalised IRLS passes over "
            "them), and the data are a Dask DataFrame whose rows stay in its partitions; fit "
            "a pandas DataFrame (ddf.compute(), or a sample of the groups)"
        )
    if not isinstance(data, pd.DataFrame):
        raise ColumnTypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    lhs, pieces, offsets = _split_formula(formula)
    if not lhs:
        raise FormulaError("formula needs a response before '~'", formula, 0)
    n = len(data)
    levels = None
    cbind = _CBIND_CALL.match(mask_backticks(lhs))
    if cbind:
        if not family.binomial:
            raise FormulaError(f"cbind(successes, failures) is a binomial response; the "
                               f"{family.name} family takes one column")  # fmt: skip
        args = [a for _, a in _split_top(mask_backticks(lhs)[lhs.index("(") + 1 : -1], ",")]
        inner = lhs[lhs.index("(") + 1 : -1]
        if len(args) != 2:
            raise FormulaError("cbind() takes two columns: cbind(successes, failures)",
                               formula, 0)  # fmt: skip
        first = len(args[0])
        texts = [inner[:first].strip(), inner[first + 1 :].strip()]
        if weights is not None:
            raise DataError("weights= and cbind(successes, failures) both give the trials; "
                            "give one")  # fmt: skip
        succ = _evaluate(texts[0], data, "successes")
        fail = _evaluate(texts[1], data, "failures")
        _check_counts(texts[0], succ, "successes")
        _check_counts(texts[1], fail, "failures")
        trials = succ + fail
        zero = np.isfinite(trials) & (trials == 0)
        if zero.any():
            raise DataError(f"{int(zero.sum())} row(s) of {lhs!r} have 0 trials ({texts[0]} + "
                            f"{texts[1]} = 0); drop them (they carry no information)")  # fmt: skip
        with np.errstate(invalid="ignore", divide="ignore"):
            y = succ / trials
        w = trials
    else:
        column = response_column(lhs)
        name = column if column is not None else lhs
        values = data[column] if column is not None and column in data.columns else None
        textual = values is not None and (isinstance(values.dtype, pd.CategoricalDtype)
                                          or not pd.api.types.is_numeric_dtype(values)) \
            and not (values.dtype == bool or values.dtype == "boolean")  # fmt: skip
        if textual:
            if not family.binomial:
                raise ColumnTypeError(f"response {name!r} of the {family.name} family must be "
                                      f"numeric, but its type is {values.dtype}")  # fmt: skip
            y, levels = _factor_response(values, name, family)
        else:
            y = _evaluate(lhs, data, "response")
        if weights is not None:
            if not family.binomial:
                raise DataError(f"weights= are binomial trials; the {family.name} family "
                                "takes none here")  # fmt: skip
            w, wname = _given(weights, data, "weights")
            _check_counts(wname, w, "trials (weights)")
            if np.any(np.isnan(w)):
                raise DataError(f"trials (weights) {wname!r} have missing values")
            if np.any(w == 0):
                raise DataError(f"{int(np.sum(w == 0))} row(s) have 0 trials (weights "
                                f"{wname!r}); drop them")  # fmt: skip
            ok = np.isfinite(y)
            if np.any((y[ok] < 0) | (y[ok] > 1)):
                raise DataError(f"response {name!r} with weights= (trials) is a proportion "
                                "and must lie in [0, 1]")  # fmt: skip
            k = y * w
            if np.any(np.abs(k[ok] - np.round(k[ok])) > 1e-7 * np.maximum(1, w[ok])):
                raise DataError(f"response {name!r} times the trials {wname!r} is not a whole "
                                "number of successes in some rows")  # fmt: skip
        else:
            w = np.ones(n)
            ok = y[np.isfinite(y)]
            if family.binomial and np.any((ok != 0) & (ok != 1)):
                bad = ok[(ok != 0) & (ok != 1)]
                raise DataError(
                    f"response {name!r} of the {family.name} family must be 0/1 (or bool, or "
                    f"a two-level factor), but it has {bad.size} other value(s) (e.g. "
                    f"{bad[0]:g}); a count of successes needs cbind(successes, failures), "
                    "a proportion needs weights= (the trials)"
                )
            if family.counts:
                _check_counts(name, y, "response")
    total = _summed_offsets(offsets, offset, data)
    frame = data.assign(**{RESPONSE: y, WEIGHTS: w, OFFSET: total})
    rhs = " + ".join(p.strip() for p in pieces) if pieces else "1"
    design = build_design(f"{quote(RESPONSE)} ~ {rhs}", frame, carry=(WEIGHTS, OFFSET),
                          level_per_row=not family.has_scale)  # fmt: skip
    response = GlmResponse(
        family=family, y=design.y.copy(),
        weights=design.frame[WEIGHTS].to_numpy(dtype=float),
        offset=design.frame[OFFSET].to_numpy(dtype=float),
        name=lhs, formula=formula.strip(), levels=levels,
    )  # fmt: skip
    design.response_name = lhs
    return design, response


def check_gaussian(family: str | Family | None, where: str) -> None:
    """Refuse a non-Gaussian ``family`` in a part of bayeslmm that fits only Gaussian
    responses yet (:class:`~bayeslmm.errors.ArgumentError` naming it and what to use)."""
    if family is None:
        return
    fam = get_family(family)
    if fam.name != "gaussian" or fam.link.name != "identity":
        raise ArgumentError(
            f"{where} does not fit the {fam} family yet (only Gaussian responses with the "
            f"identity link); for a maximum-likelihood fit use bl.glmer(formula, data, "
            f"family={fam.name!r})"
        )


def suggest_family(y: np.ndarray) -> str | None:
    """The family a Gaussian fit of ``y`` probably should have had: ``"bernoulli"`` for a
    response all 0/1, ``"poisson"`` for non-negative integers with many (>= 10%) zeros."""
    y = np.asarray(y, float)
    if y.size == 0 or not np.all(np.isfinite(y)):
        return None
    if np.all((y == 0) | (y == 1)):
        return "bernoulli"
    if np.all(y >= 0) and np.all(y == np.round(y)) and np.mean(y == 0) >= 0.1:
        return "poisson"
    return None


def warn_gaussian_misuse(design: Design) -> None:
    """One warning when a Gaussian model is given a 0/1 or count response."""
    if not design.rows_in_memory:
        return
    family = suggest_family(design.y)
    if family is not None:
        kind = "all 0/1" if family == "bernoulli" else "non-negative integers with many zeros"
        call = "family='binomial'" if family == "bernoulli" else "family='poisson'"
        warn(f"response {design.response!r} is {kind}: a Gaussian model predicts values "
             f"outside its range; the {family} family fits it (bl.glmer(..., {call}))")


def new_rows_offset(formula: str, data: pd.DataFrame,
                    offset: str | np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """The summed offsets of new rows (for predictions): the formula's ``offset(expr)``
    terms and ``offset=`` (a column name, or one value per row) evaluated on ``data``;
    a missing or infinite value is a :class:`~bayeslmm.errors.DataError`."""
    return _summed_offsets(_split_formula(formula)[2], offset, data)


def new_rows_trials(formula: str, data: pd.DataFrame) -> np.ndarray | None:
    """The trials of new rows of a ``cbind(successes, failures)`` response (successes +
    failures evaluated on ``data``), or None for any other response."""
    lhs = _split_formula(formula)[0]
    masked = mask_backticks(lhs)
    if not _CBIND_CALL.match(masked):
        return None
    args = [a for _, a in _split_top(masked[lhs.index("(") + 1 : -1], ",")]
    inner = lhs[lhs.index("(") + 1 : -1]
    first = len(args[0])
    texts = [inner[:first].strip(), inner[first + 1 :].strip()]
    succ = _evaluate(texts[0], data, "successes")
    fail = _evaluate(texts[1], data, "failures")
    trials = succ + fail
    if not np.all(np.isfinite(trials)):
        raise DataError(f"the trials ({texts[0]} + {texts[1]}) of some new rows are missing")
    _check_counts(f"{texts[0]} + {texts[1]}", trials, "trials")
    return trials
