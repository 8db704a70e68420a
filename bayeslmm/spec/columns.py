"""Column values and their type rules: every used column one plain type, no stray text,
no infinities, the missing-value rules; decided from a :class:`ColumnProfile` that adds up
over the partitions of a larger-than-memory table."""

from __future__ import annotations

import numbers
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ColumnTypeError, DataError, warn
from .tokens import _display_columns

# ---------------------------------------------------------------------------------------
# column values: one type per column, no stray text, no infinities

NUMBER, BOOL, TEXT, OTHER = "number", "bool", "text", "other"


def _value_kind(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return BOOL
    if isinstance(value, numbers.Number):
        return NUMBER
    if isinstance(value, str):
        return TEXT
    return OTHER


_INFERRED = {"string": TEXT, "integer": NUMBER, "floating": NUMBER,
             "mixed-integer-float": NUMBER, "boolean": BOOL}  # fmt: skip


def _uniform_kind(values: pd.Series) -> str | None:
    """The one type of a text or object column's values, found without a Python loop where
    pandas can tell (None: look value by value)."""
    if isinstance(values.dtype, pd.StringDtype):
        return TEXT
    return _INFERRED.get(pd.api.types.infer_dtype(values, skipna=False))


def column_kind(values: pd.Series) -> str:
    """``"number"``, ``"bool"``, ``"text"`` or ``"other"`` (a cleaned column's type)."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return column_kind(pd.Series(dtype.categories))
    if pd.api.types.is_bool_dtype(dtype):
        return BOOL
    if pd.api.types.is_numeric_dtype(dtype):
        return NUMBER
    if pd.api.types.is_string_dtype(dtype):
        fast = _uniform_kind(values)
        kinds = {fast} if fast else {_value_kind(v) for v in values}
        return kinds.pop() if len(kinds) == 1 else OTHER
    return OTHER


EXAMPLES = 3  # values quoted in an error message


def _shown(values: pd.Series, mask: np.ndarray | None = None, k: int = EXAMPLES) -> list[str]:
    """The first ``k`` values (where ``mask``) as an error message quotes them."""
    chosen = values if mask is None else values[mask]
    return [f"{v!r} (row {i!r})" for i, v in chosen.head(k).items()]


def _example_text(shown: list[str], count: int, k: int = EXAMPLES) -> str:
    shown = shown[:k]
    more = count - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _examples(values: pd.Series, mask: np.ndarray, k: int = EXAMPLES) -> str:
    return _example_text(_shown(values, mask, k), int(mask.sum()), k)


@dataclass
class ColumnProfile:
    """What the cleaning rules need to know about one column's values, in a form that adds
    up over the partitions of a larger-than-memory table (:meth:`merge`): so a column in
    pieces gets the very decision, and error message, the whole column would get.

    Attributes
    ----------
    dtype
        The column's type.
    n
        Values seen.
    kinds
        Values of each kind (``"number"``, ``"text"``, ``"bool"``, ``"other"``) in a text or
        object column.
    examples
        Per kind, the first values as an error message quotes them (with their row labels).
    other_types, unhashable
        Type names of the ``"other"`` values, and whether one of them cannot be hashed.
    parsed, unparsed
        Text values that read as numbers, and the first that do not (text predictors).
    n_inf
        Infinite values once the column is numeric.
    categories
        A categorical column's categories.
    """

    dtype: object
    n: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    other_types: frozenset[str] = frozenset()
    unhashable: bool = False
    parsed: int = 0
    unparsed: list[str] = field(default_factory=list)
    n_inf: int = 0
    categories: list | None = None

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """The profile of this column's values followed by ``other``'s."""
        kinds = dict(self.kinds)
        examples = {k: list(v) for k, v in self.examples.items()}
        for kind, count in other.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
            examples[kind] = (examples.get(kind, []) + other.examples.get(kind, []))[:EXAMPLES]
        categories = self.categories
        dtype = _merged_dtype(self.dtype, other.dtype)
        if other.categories is not None:
            known = categories or []
            categories = known + [c for c in other.categories if c not in known]
        return ColumnProfile(
            dtype=dtype, n=self.n + other.n, kinds=kinds, examples=examples,
            other_types=self.other_types | other.other_types,
            unhashable=self.unhashable or other.unhashable, parsed=self.parsed + other.parsed,
            unparsed=(self.unparsed + other.unparsed)[:EXAMPLES], n_inf=self.n_inf + other.n_inf,
            categories=categories,
        )  # fmt: skip


def _merged_dtype(a, b):
    """The type of a column whose pieces (a Dask DataFrame's partitions) have types ``a`` and
    ``b``: the same, a common numeric type, or ``object`` (whose values' kinds, counted per
    piece, then decide as they would for the whole column)."""
    if a == b:
        return a
    numeric = [pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t)
               and not isinstance(t, pd.CategoricalDtype) for t in (a, b)]  # fmt: skip
    if all(numeric):
        try:
            return np.result_type(np.dtype(getattr(a, "numpy_dtype", a)),
                                  np.dtype(getattr(b, "numpy_dtype", b)))  # fmt: skip
        except TypeError:
            return np.dtype(float)
    if isinstance(a, pd.CategoricalDtype) and isinstance(b, pd.CategoricalDtype):
        return a
    return np.dtype(object)


def _is_text_like(dtype) -> bool:
    return isinstance(dtype, pd.StringDtype) or pd.api.types.is_object_dtype(dtype)


def _count_inf(values: pd.Series) -> int:
    return int(np.isinf(values.to_numpy(dtype=float)).sum())


def profile_column(values: pd.Series, predictor: bool) -> ColumnProfile:
    """The :class:`ColumnProfile` of one column's (non-missing) values."""
    dtype = values.dtype
    n = len(values)
    if isinstance(dtype, pd.CategoricalDtype):
        return ColumnProfile(dtype, n, categories=list(dtype.categories))
    if not _is_text_like(dtype):
        numeric = (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
                   and not pd.api.types.is_complex_dtype(dtype))  # fmt: skip
        # the kind of every value too, so that a piece of a column typed otherwise (text in
        # one Dask partition) adds up to the mix the whole column would show
        kind = NUMBER if numeric else BOOL if pd.api.types.is_bool_dtype(dtype) else None
        kinds, examples = ({kind: n}, {kind: _shown(values)}) if kind and n else ({}, {})
        return ColumnProfile(dtype, n, kinds=kinds, examples=examples,
                             n_inf=_count_inf(values) if numeric else 0)
    fast = _uniform_kind(values)
    if fast:
        profile = ColumnProfile(dtype, n, kinds={fast: n}, examples={fast: _shown(values)})
        kinds = None
    else:
        kinds = np.array([_value_kind(v) for v in values], dtype=object)
        present = [k for k in (NUMBER, TEXT, BOOL, OTHER) if (kinds == k).any()]
        profile = ColumnProfile(
            dtype, n, kinds={k: int((kinds == k).sum()) for k in present},
            examples={k: _shown(values, kinds == k) for k in present},
        )  # fmt: skip
    if OTHER in profile.kinds:
        odd = values if kinds is None else values[kinds == OTHER]
        profile.other_types = frozenset(type(v).__name__ for v in odd)
        profile.unhashable = not all(isinstance(v, Hashable) for v in odd)
    if set(profile.kinds) == {NUMBER}:
        profile.n_inf = _count_inf(pd.to_numeric(values))
    if set(profile.kinds) == {TEXT} and predictor:  # each distinct value parsed once
        counts = values.value_counts(sort=False)
        parses = pd.to_numeric(pd.Series(counts.index, dtype=object), errors="coerce").notna()
        profile.parsed = int(counts.to_numpy()[parses.to_numpy()].sum())
        if profile.parsed == 0:
            profile.unparsed = _shown(values)
        elif profile.parsed < n:
            numbers = counts.index[parses.to_numpy()]
            profile.unparsed = _shown(values, ~values.isin(numbers).to_numpy())
    return profile


#: How a column is made one plain type (see :func:`column_conversion`).
KEEP, TO_BOOL, TO_INT, TO_FLOAT, TO_NUMBER, TO_OBJECT = (
    "keep", "bool", "int64", "float64", "number", "object")  # fmt: skip


def column_conversion(profile: ColumnProfile, name: str, predictor: bool, where: str) -> str:
    """The conversion that makes a column one plain NumPy-backed type, or the error.

    Nullable pandas types become NumPy ones; an object column of numbers becomes numeric;
    a column mixing numbers, text and booleans, or (for a predictor) text that is mostly
    numbers with a few stray words, is refused: each would silently become a factor.
    """
    dtype = profile.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return KEEP
    if pd.api.types.is_complex_dtype(dtype) or (
        predictor and (pd.api.types.is_datetime64_any_dtype(dtype)
                       or pd.api.types.is_timedelta64_dtype(dtype))
    ):  # fmt: skip
        raise ColumnTypeError(
            f"column {name!r}{where} has type {dtype}, which a model cannot use; convert it "
            "to real numbers (or text, for a factor)"
        )
    if isinstance(dtype, pd.BooleanDtype):
        return TO_BOOL
    if pd.api.types.is_extension_array_dtype(dtype) and pd.api.types.is_numeric_dtype(dtype):
        return TO_INT if pd.api.types.is_integer_dtype(dtype) else TO_FLOAT
    if not _is_text_like(dtype):
        return KEEP
    counts = {k: c for k, c in profile.kinds.items() if c}
    if OTHER in counts and profile.unhashable:
        types = sorted(profile.other_types)
        raise ColumnTypeError(f"column {name!r}{where} holds {', '.join(types)} values "
                              f"({_example_text(profile.examples[OTHER], counts[OTHER], 2)}); "
                              "a model needs numbers or text")  # fmt: skip
    if len(counts) > 1:
        main = max(counts, key=counts.get)
        others = [k for k in (NUMBER, TEXT, BOOL, OTHER) if k in counts and k != main]

        def shown(kind: str) -> str:  # text: the words that are not numbers first
            if kind == TEXT and profile.unparsed:
                words = _example_text(profile.unparsed, counts[TEXT] - profile.parsed)
                return words + (f" (and {profile.parsed} numbers stored as text)"
                                if profile.parsed else "")  # fmt: skip
            return _example_text(profile.examples[kind], counts[kind])

        detail = "; ".join(f"{k}: {shown(k)}" for k in others)
        raise ColumnTypeError(
            f"column {name!r}{where} mixes types: {counts[main]} {main} values but also "
            f"{detail}; convert it to one type, e.g. pd.to_numeric(data[{name!r}], "
            f"errors='coerce') or data[{name!r}].astype(str)"
        )
    if set(counts) == {NUMBER}:
        return TO_NUMBER
    if set(counts) == {BOOL}:
        return TO_BOOL
    if set(counts) == {TEXT} and predictor:
        n = profile.n
        if n and profile.parsed == n:
            raise ColumnTypeError(
                f"column {name!r}{where} holds numbers stored as text "
                f"({_example_text(profile.examples[TEXT], n)}); as text they would make a "
                f"factor with one level per value. Convert it: pd.to_numeric(data[{name!r}]) "
                f"for numbers, or data[{name!r}].astype('category') for a factor"
            )
        if n and profile.parsed / n >= 0.5 and profile.parsed < n:
            raise ColumnTypeError(
                f"column {name!r}{where} is text, but {profile.parsed} of its {n} "
                f"values are numbers; the others would turn it into a factor: "
                f"{_example_text(profile.unparsed, n - profile.parsed)}. Fix or remove those "
                f"values (e.g. pd.to_numeric(data[{name!r}], errors='coerce') makes them "
                f"missing), or make the column categorical to use it as a factor"
            )
    return TO_OBJECT if isinstance(dtype, pd.StringDtype) else KEEP


def convert_column(values: pd.Series, conversion: str) -> pd.Series:
    """Apply a :func:`column_conversion` to (a piece of) the column."""
    if conversion == TO_BOOL:
        return values.astype(bool)
    if conversion in (TO_INT, TO_FLOAT, TO_OBJECT):
        return values.astype(conversion)
    if conversion == TO_NUMBER:
        values = pd.to_numeric(values)
        dtype = values.dtype
        if pd.api.types.is_extension_array_dtype(dtype):
            return values.astype("int64" if pd.api.types.is_integer_dtype(dtype) else "float64")
    return values


def _normalise(values: pd.Series, name: str, predictor: bool, where: str) -> pd.Series:
    """One column, without missing values, as a plain NumPy-backed column of one type
    (:func:`column_conversion`)."""
    profile = profile_column(values, predictor)
    return convert_column(values, column_conversion(profile, name, predictor, where))


def infinite_values_error(name: str, count: int, where: str = "") -> DataError:
    return DataError(f"column {name!r}{where} has {count} infinite value(s)")


def _check_finite(frame: pd.DataFrame, where: str = "") -> None:
    for col in frame.columns:
        values = frame[col]
        if column_kind(values) == NUMBER and not isinstance(values.dtype, pd.CategoricalDtype):
            n_inf = _count_inf(values)
            if n_inf:
                raise infinite_values_error(col, n_inf, where)


def check_missing(n_rows: int, missing: dict[str, int], n_dropped: int, used: list[str]) -> None:
    """The missing-value rules, from counts: no rows, a column without values, rows dropped
    (a warning), no complete row."""
    if n_rows == 0:
        raise DataError("the data have no rows")
    empty = [c for c, k in missing.items() if k == n_rows]
    if empty:
        raise DataError(f"column(s) {empty} have no values (every value is missing)")
    if n_dropped:
        detail = ", ".join(f"{c}: {int(k)}" for c, k in missing.items() if k)
        warn(f"{n_dropped} of {n_rows} rows dropped for missing values ({detail})")
    if n_rows == n_dropped:
        raise DataError("no rows left after dropping rows with missing values (no row has "
                        f"a value in every one of {used})")  # fmt: skip


def _select(data: pd.DataFrame, used: list[str]) -> pd.DataFrame:
    """The used columns of ``data``, named as text (a copy)."""
    labels = _display_columns(data)
    frame = data.loc[:, [labels[name][0] for name in used]].copy()
    frame.columns = used
    return frame


def _clean_frame(data: pd.DataFrame, used: list[str], groups: set[str]) -> tuple[pd.DataFrame, int]:
    """Copy the used columns (named as text), drop incomplete rows (warning), make every
    column one plain type and reject infinities."""
    frame = _select(data, used)
    missing_per_column = frame.isna().sum()
    missing = frame.isna().any(axis=1).to_numpy()
    n_dropped = int(missing.sum())
    check_missing(len(frame), {c: int(k) for c, k in missing_per_column.items()}, n_dropped,
                  used)  # fmt: skip
    if n_dropped:
        frame = frame.loc[~missing]
    for col in used:  # before the index is reset: messages give the user's row labels
        frame[col] = _normalise(frame[col], col, predictor=col not in groups, where="")
    _check_finite(frame)
    return frame.reset_index(drop=True), n_dropped
