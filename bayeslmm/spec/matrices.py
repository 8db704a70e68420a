"""Model matrices from formulaic: the response, the fixed-effects and random-term
matrices with lme4's column names, checked finite and (fixed effects) of full rank."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
from formulaic import model_matrix

from ..errors import ColumnTypeError, DataError, FormulaError, RankDeficiencyError
from .columns import NUMBER, column_kind
from .formula import ModelSpec
from .tokens import _CONTEXT, ColumnNames, _respell, response_column

_RAW_POLY = re.compile(r"(poly\([^()]*raw\s*=\s*True[^()]*\))\[(\d+)\]")


def lme4_name(name: str) -> str:
    """Turn a formulaic column name into the name lme4 prints.

    ``Intercept`` -> ``(Intercept)``, ``sex[T.Male]`` -> ``sexMale``,
    ``f[a]`` -> ``fa``; other names are kept.
    """
    if name == "Intercept":
        return "(Intercept)"
    # formulaic numbers raw polynomial columns from 0 (x^1 is [0]); R from 1, by power
    name = _RAW_POLY.sub(lambda m: f"{m.group(1)}[{int(m.group(2)) + 1}]", name)
    return re.sub(r"\[(?:T\.)?([^\]]*)\]", r"\1", name)


def _numeric_response(column: str, values: pd.Series) -> None:
    if column_kind(values) != NUMBER or isinstance(values.dtype, pd.CategoricalDtype):
        raise ColumnTypeError(
            f"response {column!r} must be numeric, but its type is {values.dtype}"
        )


def _response_spec(spec: ModelSpec, frame: pd.DataFrame, names: ColumnNames):
    """The response as one column of the data, or a formulaic model matrix of its
    expression: (column or None, model matrix or None, name)."""
    column = response_column(spec.response)
    if column is not None and column in frame.columns:
        _numeric_response(column, frame[column])
        return column, None, column
    text = names.encode(spec.response, set(frame.columns))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # log(0) etc.: checked below
            lhs = model_matrix(f"0 + {text}", names.rename(frame), context=_CONTEXT,
                               na_action="ignore")  # fmt: skip
    except Exception as exc:  # formulaic raises many kinds
        raise FormulaError(
            f"cannot evaluate response {spec.response!r}: {names.decode(str(exc))}"
        ) from exc
    if lhs.shape[1] != 1:
        raise ColumnTypeError(
            f"response {spec.response!r} must be one numeric column, got {lhs.shape[1]}"
        )
    return None, lhs, spec.response.strip()


def check_response(name: str, n: int, n_bad: int, low: float, high: float) -> None:
    """A response finite in every row (an expression's) and not constant."""
    if n_bad:
        raise DataError(f"response {name!r} is not finite in {n_bad} row(s) "
                        "(e.g. log of 0 or of a negative number)")  # fmt: skip
    if n > 1 and high == low:
        raise DataError(f"response {name!r} is constant (every value is {low:g}): there is "
                        "no variation to model")  # fmt: skip


def _response(spec: ModelSpec, frame: pd.DataFrame, names: ColumnNames) -> tuple[np.ndarray, str]:
    """Response vector and its name (the column, or the expression as written)."""
    column, lhs, name = _response_spec(spec, frame, names)
    if column is not None:
        y = frame[column].to_numpy(dtype=float)
        n_bad = 0
    else:
        y = np.asarray(lhs, dtype=float)[:, 0]
        n_bad = int((~np.isfinite(y)).sum())
    low, high = (float(np.min(y)), float(np.max(y))) if len(y) and not n_bad else (0.0, 0.0)
    check_response(name, len(y), n_bad, low, high)
    return y, name


def _matrix_frame(rhs: str, frame: pd.DataFrame, where: str, names: ColumnNames):
    """formulaic's model matrix of ``rhs`` on ``frame`` (FormulaError naming ``where``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # log(0) etc.: checked below
            return model_matrix(names.encode(rhs, set(frame.columns)), names.rename(frame),
                                context=_CONTEXT, na_action="ignore")  # fmt: skip
    except Exception as exc:  # formulaic raises many kinds
        raise FormulaError(f"cannot build {where} from {rhs!r}: {names.decode(str(exc))}") from exc


def check_matrix_finite(where: str, columns: list[str], n_bad: np.ndarray) -> None:
    """Every column of a model matrix finite (``n_bad`` non-finite values per column)."""
    bad = np.flatnonzero(np.asarray(n_bad))
    if bad.size:
        j = int(bad[0])
        raise DataError(f"{where}: column {columns[j]!r} is not finite in {int(n_bad[j])} "
                        "row(s) (e.g. log of 0 or of a negative number)")  # fmt: skip


def _matrix(rhs: str, frame: pd.DataFrame, where: str, names: ColumnNames):
    mm = _matrix_frame(rhs, frame, where, names)
    values = np.asarray(mm, dtype=float)
    n_bad = (~np.isfinite(values)).sum(axis=0)
    check_matrix_finite(where, [_column_name(c, names) for c in mm.columns], n_bad)
    return mm, values


def _column_name(name: str, names: ColumnNames) -> str:
    # formulaic's Intercept, not a column so named
    return _respell(names.decode(lme4_name(str(name))), names)


def _column_names(columns, names: ColumnNames, where: str) -> list[str]:
    out = [_column_name(c, names) for c in columns]
    twice = sorted({c for c in out if out.count(c) > 1})
    if twice:
        raise FormulaError(f"{where}: two columns are both named {twice} (a column's name "
                           "is a factor's name plus one of its levels); rename one")  # fmt: skip
    return out


def qr_r(X: np.ndarray) -> np.ndarray:
    """The R factor of ``X`` (singular values of ``X`` and of its column subsets); R factors
    of row blocks stack: the R of ``[R_a; R_b]`` is an R of ``[X_a; X_b]``."""
    return np.linalg.qr(X, mode="r") if X.shape[0] else np.zeros((0, X.shape[1]))


def _rank(R: np.ndarray, n: int) -> int:
    """``np.linalg.matrix_rank`` of the n-row matrix whose R factor is ``R``."""
    s = np.linalg.svd(R, compute_uv=False)
    if not s.size:
        return 0
    return int(np.count_nonzero(s > s.max() * max(n, R.shape[1]) * np.finfo(float).eps))


def check_rank(R: np.ndarray, n: int, names: list[str]) -> None:
    """A fixed-effects matrix of full column rank, from its R factor and its rows."""
    p = R.shape[1]
    if p == 0:
        return
    if n < p:
        raise RankDeficiencyError(f"{p} fixed-effect columns but only {n} rows", names)
    if _rank(R, n) == p:
        return
    # as lme4: a column is at fault when it adds nothing to the columns before it
    kept: list[int] = []
    bad: list[int] = []
    for j in range(p):
        if _rank(R[:, kept + [j]], n) > len(kept):
            kept.append(j)
        else:
            bad.append(j)
    raise RankDeficiencyError(
        f"fixed-effect design is rank deficient: column(s) {[names[j] for j in bad]} "
        f"are constant zero or linear combinations of the columns before them; "
        "remove or recode them",
        [names[j] for j in bad],
    )
