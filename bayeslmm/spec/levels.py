"""Levels of grouping factors: codes per row, labels in lme4's order, identities matched
by value (an integer level 1 matches 1.0)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from .columns import BOOL, NUMBER, TEXT, column_kind
from .formula import RandomTerm


def level_values(labels: list[str], kinds: tuple[str, ...]) -> pd.Index:
    """Level labels back as values of the factor's type (see :attr:`RandomBlock.level_values`)."""
    if len(kinds) == 1 and kinds[0] == NUMBER:
        numbers = pd.to_numeric(pd.Series(labels, dtype=object), errors="coerce")
        if not numbers.isna().any():
            integral = all("." not in lb and "e" not in lb.lower() for lb in labels)
            return pd.Index(numbers.astype(np.int64 if integral else np.float64))
    if len(kinds) == 1 and kinds[0] == BOOL:
        return pd.Index([lb == "True" for lb in labels], dtype=bool)
    return pd.Index(labels, dtype=object)


def _level_order(values: pd.Series) -> list:
    """Levels in lme4's order: factor levels if categorical, else sorted values."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.unique())
        return [c for c in values.cat.categories if c in present]
    uniques = pd.unique(values)
    try:
        return sorted(uniques)
    except TypeError:
        return sorted(uniques, key=str)


def _key(value: object, kind: str) -> object:
    """A level's identity: numbers by value (1 == 1.0), text as text, booleans as such."""
    if kind == NUMBER:
        return float(value)
    if kind == BOOL:
        return bool(value)
    if kind == TEXT:
        return str(value)
    return value


@dataclass(frozen=True)
class GroupLevels:
    """Levels of a grouping factor (or an interaction of several) on some rows."""

    codes: np.ndarray  # level index of every row
    labels: list[str]  # level labels, in lme4's order
    keys: list[tuple]  # per level, the identity of its value in every factor
    kinds: tuple[str, ...]  # per factor, the type of its values


def group_levels(frame: pd.DataFrame, factors: tuple[str, ...]) -> GroupLevels:
    """Integer code per row, labels and identities of the levels of ``factors``."""
    per_factor, kinds = [], []
    for name in factors:
        kind = column_kind(frame[name])
        order = _level_order(frame[name])
        lookup = {v: i for i, v in enumerate(order)}
        per_factor.append((frame[name].map(lookup).to_numpy(dtype=np.int64), order))
        kinds.append(kind)
    if len(per_factor) == 1:
        codes, order = per_factor[0]
        labels = [str(v) for v in order]
        keys = [(_key(v, kinds[0]),) for v in order]
    else:  # interaction: levels ordered by the first factor, then the second, ...
        stacked = np.column_stack([c for c, _ in per_factor])
        combos, codes = np.unique(stacked, axis=0, return_inverse=True)
        codes = codes.reshape(-1).astype(np.int64)
        labels = [":".join(str(o[i]) for (_, o), i in zip(per_factor, row, strict=True))
                  for row in combos]  # fmt: skip
        keys = [tuple(_key(o[i], k) for (_, o), i, k in zip(per_factor, row, kinds, strict=True))
                for row in combos]  # fmt: skip
    if len(set(labels)) < len(labels):
        twice = sorted({lb for lb in labels if labels.count(lb) > 1})
        raise DataError(f"grouping factor {':'.join(factors)!r} has distinct values that print "
                        f"alike ({twice[:5]}); make its values distinct text")  # fmt: skip
    return GroupLevels(codes, labels, keys, tuple(kinds))


def group_codes(frame: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Integer code per row and level labels of the interaction of ``factors``."""
    levels = group_levels(frame, factors)
    return levels.codes, levels.labels


def term_levels(term: RandomTerm, frame: pd.DataFrame, n_rows: int) -> GroupLevels:
    """The levels of a random term's grouping factor, checked: at least two, and fewer than
    the rows. ``frame`` holds the factor columns of the rows, or only their distinct
    combinations (the levels are the same)."""
    for name in term.factors:
        k = frame[name].nunique()
        if k < 2:
            raise DataError(f"grouping factor {name!r} of {term} has only {k} level; it needs "
                            "at least 2")  # fmt: skip
    levels = group_levels(frame, term.factors)
    if len(levels.labels) < 2:
        raise DataError(f"grouping factor {term.group!r} of {term} has only 1 level")
    if len(levels.labels) >= n_rows:
        raise DataError(
            f"grouping factor {term.group!r} has {len(levels.labels)} levels for "
            f"{n_rows} observations; each level needs several observations"
        )
    return levels


_INDEX_DTYPES = {NUMBER: float, BOOL: bool}


def level_index(level_keys: list[tuple], kinds: tuple[str, ...]) -> pd.Index:
    """An index of level identities (:func:`_key`) to look rows' levels up in."""
    if len(kinds) == 1:
        values = [k[0] for k in level_keys]
        return pd.Index(np.array(values, dtype=_INDEX_DTYPES.get(kinds[0], object)))
    return pd.MultiIndex.from_tuples(level_keys)


def match_levels(frame: pd.DataFrame, factors: tuple[str, ...], kinds: tuple[str, ...],
                 levels: list[tuple] | pd.Index) -> np.ndarray:  # fmt: skip
    """The level code of every row (-1 where the level is not among ``levels``, a list of
    level identities or their :func:`level_index`), matched by value as :func:`_key`
    identifies levels (an integer 1 matches 1.0)."""
    index = levels if isinstance(levels, pd.Index) else level_index(levels, kinds)
    keys = [_keys(frame[name], kind) for name, kind in zip(factors, kinds, strict=True)]
    if not isinstance(index, pd.MultiIndex):
        return index.get_indexer(keys[0]).astype(np.int64)
    return index.get_indexer(pd.MultiIndex.from_arrays(keys)).astype(np.int64)


def _label(value: object) -> str:
    """A new level's label: whole numbers without ``.0`` (99.0 is level 99)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _keys(values: pd.Series, kind: str) -> np.ndarray:
    """Level identities of a column (see :func:`_key`), vectorised."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if kind == NUMBER:
        return values.to_numpy(dtype=float)
    if kind == BOOL:
        return values.to_numpy(dtype=bool)
    if kind == TEXT:
        return values.astype(str).to_numpy(dtype=object)
    return values.to_numpy(dtype=object)
