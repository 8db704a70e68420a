"""A fitted design's encodings evaluated on new rows (prediction): :func:`new_design`."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic.errors import DataMismatchWarning

from ..errors import ColumnTypeError, DataError, UnknownNameError
from .arrays import Design
from .blocks import RandomBlock
from .columns import NUMBER, _check_finite, _normalise, column_kind
from .levels import _keys, _label, match_levels
from .tokens import ColumnNames, _display_columns, _expression_names


@dataclass
class NewDesign:
    """Design arrays for new rows (prediction)."""

    X: np.ndarray
    Z: list[np.ndarray]
    codes: list[np.ndarray]
    new_levels: list[list[str]]


#: The reference level of a treatment contrast written out (R's ``relevel(x, "b")`` is read
#: as ``C(x, contr.treatment("b"))``)
_TREATMENT_BASE = re.compile(r"contr\.treatment\(\s*(?:base\s*=\s*)?(['\"])(.*?)\1")


def _categories(spec, names: ColumnNames) -> dict[str, list]:
    """Fitted levels of every factor a model matrix encodes, by the column it reads; the
    reference level first where a treatment contrast names one (``relevel``)."""
    out: dict[str, list] = {}
    for expr, (kind, state) in getattr(spec, "encoder_state", {}).items():
        if str(getattr(kind, "value", kind)) != "categorical" or "categories" not in state:
            continue
        variables = _expression_names(str(expr)) or {str(expr)}
        if len(variables) == 1:
            var = variables.pop()
            levels = list(state["categories"])
            base = _TREATMENT_BASE.search(str(expr))
            if base is not None:
                first = [v for v in levels if str(v) == base.group(2)]
                levels = first + [v for v in levels if v not in first]
            out[names.inverse.get(var, var)] = levels
    return out


def _check_levels(frame: pd.DataFrame, design: Design) -> None:
    """Refuse values of a fixed or random-term factor that the fit never saw: they have no
    coefficient (formulaic would encode them as the reference level)."""
    specs = [("the fixed effects", design.fixed_spec)]
    specs += [(f"random term {b.term}", b.matrix_spec) for b in design.blocks]
    for where, spec in specs:
        for column, categories in _categories(spec, design.names).items():
            if column not in frame.columns:
                continue
            values = frame[column]
            known = pd.Series(categories, dtype=object)
            unseen = ~values.isin(known).to_numpy()
            if unseen.any():
                new = list(dict.fromkeys(values[unseen].tolist()))
                raise DataError(
                    f"newdata column {column!r} has level(s) {new[:5]} that {where} never saw "
                    f"in fitting (fitted levels: {categories[:10]}); the model has no "
                    "coefficient for them"
                )


def _new_codes(block: RandomBlock, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Level index of every new row (``n_levels + i`` for the i-th unseen level)."""
    kinds = block.factor_kinds or tuple(column_kind(frame[f]) for f in block.term.factors)
    for name, kind in zip(block.term.factors, kinds, strict=True):
        new_kind = column_kind(frame[name])
        if new_kind != kind:
            raise ColumnTypeError(
                f"newdata column {name!r} (grouping factor of {block.term}) holds {new_kind} "
                f"values but the fitted data held {kind} values; convert it so that levels "
                "can be matched"
            )
    factors = block.term.factors
    codes = match_levels(frame, factors, kinds, block.level_keys)
    keys = pd.MultiIndex.from_arrays(
        [_keys(frame[name], kind) for name, kind in zip(factors, kinds, strict=True)]
    )
    unseen: list[str] = []
    missing = np.flatnonzero(codes < 0)
    if missing.size:  # unseen levels: numbered after the fitted ones, in order of appearance
        new_keys, first, inverse = np.unique(
            keys[missing].to_numpy(), return_index=True, return_inverse=True
        )
        order = np.argsort(first)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        codes[missing] = block.n_levels + rank[inverse.reshape(-1)]
        rows = missing[first[order]]
        unseen = [":".join(_label(frame[name].iloc[r]) for name in factors) for r in rows]
    return codes, unseen


def fixed_columns(design: Design) -> list[str]:
    """The data columns the fixed-effects part of the formula reads (in the data's order)."""
    spec = design.fixed_spec
    read = {str(v) for v in getattr(spec, "required_variables", ())} if spec is not None else set()
    read = {design.names.inverse.get(v, v) for v in read}
    read |= {c for c in design.column_kinds if c in _expression_names(design.spec.fixed)}
    return [c for c in design.column_kinds if c in read and c != design.response]


def new_design(design: Design, newdata: pd.DataFrame, include_random: bool = True) -> NewDesign:
    """Evaluate the fitted encodings on new rows; unseen group levels get new codes.

    New levels are coded per block: ``codes[k] >= n_levels`` indexes
    ``new_levels[k]``. Group levels are matched by value (an integer level 1 matches
    1.0); missing or infinite values, text in a numeric column and factor levels the
    fit never saw raise an error naming the column. ``include_random=False`` evaluates
    the fixed effects alone: only their columns are needed (``Z``, ``codes`` and
    ``new_levels`` are empty).
    """
    if not isinstance(newdata, pd.DataFrame):
        raise ColumnTypeError(f"newdata must be a DataFrame, got {type(newdata).__name__}")
    labels = _display_columns(newdata)
    if include_random:
        needed = [c for c in design.column_kinds if c != design.response]
    else:
        needed = fixed_columns(design)
    missing = sorted(c for c in needed if c not in labels)
    if missing:
        raise UnknownNameError(f"newdata lacks column(s) {missing} used by the model")
    twice = [c for c in needed if len(labels[c]) > 1]
    if twice:
        raise DataError(f"newdata has several columns named {twice}")
    if len(newdata) == 0:
        raise DataError("newdata has no rows")
    frame = newdata.loc[:, [labels[c][0] for c in needed]].copy()
    frame.columns = needed
    frame = frame.reset_index(drop=True)
    n_missing = frame.isna().sum()
    if n_missing.any():
        detail = ", ".join(f"{c!r}: {int(k)} row(s)" for c, k in n_missing.items() if k)
        raise DataError(f"newdata has missing values in columns the model uses ({detail})")
    groups = {f for b in design.blocks for f in b.term.factors}
    if design.residual is not None:
        groups |= set(design.residual.group_columns)
    for col in needed:
        values = _normalise(frame[col], col, predictor=col not in groups, where=" of newdata")
        fitted = design.column_kinds[col]
        if col not in groups and fitted == NUMBER and column_kind(values) != NUMBER:
            raise ColumnTypeError(f"newdata column {col!r} must be numeric, as in the fitted "
                                  f"data; its type is {values.dtype}")  # fmt: skip
        frame[col] = values
    _check_finite(frame, " of newdata")
    _check_levels(frame, design)
    encoded = design.names.rename(frame)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataMismatchWarning)
            X = np.asarray(design.fixed_spec.get_model_matrix(encoded, na_action="ignore"),
                           dtype=float)  # fmt: skip
            blocks = design.blocks if include_random else []
            Zs = [np.asarray(b.matrix_spec.get_model_matrix(encoded, na_action="ignore"),
                             dtype=float) for b in blocks]  # fmt: skip
    except Exception as exc:
        raise DataError(
            f"cannot encode newdata as the fitted data: {design.names.decode(str(exc))}"
        ) from exc
    for values, where in [(X, "fixed effects"), *((z, "random effects") for z in Zs)]:
        if not np.all(np.isfinite(values)):
            raise DataError(f"newdata gives non-finite {where} (e.g. log of 0)")
    codes_all, new_all = [], []
    for block in design.blocks if include_random else []:
        codes, unseen = _new_codes(block, frame)
        codes_all.append(codes)
        new_all.append(unseen)
    return NewDesign(X=X, Z=Zs, codes=codes_all, new_levels=new_all)
