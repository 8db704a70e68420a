"""A :class:`ModelSpec` evaluated on a DataFrame: the :class:`Design`.

The design stays small: the fixed-effects matrix ``X`` (n x p), and for every random
term an n x q matrix ``Z`` of its columns plus an integer code per row for its group
level. A dense rows x levels matrix is never built.
"""

from __future__ import annotations

import ast
import difflib
import keyword
import numbers
import re
import warnings
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import DataMismatchWarning, FormulaicError

from ..errors import (
    ColumnTypeError,
    DataError,
    FormulaError,
    RankDeficiencyError,
    RowsNotInMemoryError,
    UnknownNameError,
    warn,
)
from .formula import ModelSpec, RandomTerm, parse_formula, python_spelling, quote
from .residual import ResidualLayout, ResidualStructure, check_structure, resolve_residual

ROWS_AT_ONCE = 1_000_000  # rows summed at a time (the sums do not depend on the pieces)
#: numpy functions formulas may call by R's name
_R_NAMED = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "log10": np.log10, "log2": np.log2,
            "log1p": np.log1p, "expm1": np.expm1, "abs": np.abs}  # fmt: skip
_CONTEXT = {"np": np, "numpy": np, **_R_NAMED}


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


@dataclass
class RandomBlock:
    """A random term evaluated on data.

    Attributes
    ----------
    term
        The parsed term.
    label
        Unique name of the block (the group name, with ``.1``, ``.2`` appended when a
        group has several blocks, as lme4's ``VarCorr`` does).
    columns
        lme4-style names of the columns of ``Z``.
    Z
        n x q matrix of the term's columns.
    codes
        Group level index of every row.
    levels
        Level labels, in lme4's order.
    level_keys, factor_kinds
        The identity of every level's value in each factor, and each factor's type
        (``"number"``, ``"text"``, ``"bool"``): new data are matched by value.
    """

    term: RandomTerm
    label: str
    columns: list[str]
    Z: np.ndarray
    codes: np.ndarray
    levels: list[str]
    matrix_spec: object = field(repr=False, default=None)
    level_keys: list[tuple] = field(repr=False, default_factory=list)
    factor_kinds: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return self.term.group

    @property
    def level_values(self) -> pd.Index:
        """The levels as the grouping factor's values, for tables: integers (labels such as
        ``'330'``) stay integers, other numbers floats, booleans booleans; text and
        interactions of several factors as their labels."""
        return level_values(self.levels, self.factor_kinds)

    @property
    def correlated(self) -> bool:
        return self.term.correlated and len(self.columns) > 1

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_terms(self) -> int:
        return len(self.columns)


@dataclass
class Rows:
    """A design's rows as arrays: all of them, or one partition's.

    ``Z[k]`` and ``codes[k]`` are random block k's columns and level codes.
    """

    X: np.ndarray
    y: np.ndarray
    Z: list[np.ndarray]
    codes: list[np.ndarray]

    @property
    def n(self) -> int:
        return len(self.y)

    def piece(self, start: int, stop: int) -> Rows:
        """Rows ``start`` to ``stop``."""
        sl = slice(start, stop)
        return Rows(self.X[sl], self.y[sl], [Z[sl] for Z in self.Z], [c[sl] for c in self.codes])


class Reduction(NamedTuple):
    """A sum over rows that adds up over pieces: ``chunk(rows)`` of every piece, then
    ``combine`` two results at a time (in row order)."""

    chunk: Callable[[Rows], Any]
    combine: Callable[[Any, Any], Any]


@dataclass
class Design:
    """Everything the model builders need, as plain arrays.

    Attributes
    ----------
    spec
        The parsed formula.
    y
        Response vector (n,).
    X
        Fixed-effects matrix (n, p) with lme4-style ``fixed_names``.
    blocks
        One :class:`RandomBlock` per random term.
    frame
        The used columns of the rows kept (a copy; the user's DataFrame is untouched).
    n_dropped
        Rows dropped for missing values.
    column_kinds
        The type (``"number"``, ``"text"``, ``"bool"``, ``"other"``) of every used column.

    A design of a Dask DataFrame (:class:`bayeslmm.spec.partitioned.DaskDesign`) has the same
    names, levels and encodings but holds no rows: its ``frame`` is lazy and its sums come
    from :meth:`reduce`.
    residual
        The residual correlation structure laid out on the rows (None: independent
        residuals), see :mod:`bayeslmm.spec.residual`.
    """

    spec: ModelSpec
    y: np.ndarray
    X: np.ndarray
    fixed_names: list[str]
    blocks: list[RandomBlock]
    frame: pd.DataFrame
    n_dropped: int
    fixed_spec: object = field(repr=False, default=None)
    names: ColumnNames = field(repr=False, default_factory=lambda: ColumnNames())
    response_name: str | None = None
    column_kinds: dict[str, str] = field(repr=False, default_factory=dict)
    summaries: dict[str, Any] = field(init=False, repr=False, compare=False, default_factory=dict)
    residual: ResidualLayout | None = field(repr=False, default=None)

    @property
    def n_obs(self) -> int:
        return len(self.y)

    @property
    def n_fixed(self) -> int:
        return len(self.fixed_names)

    @property
    def rows_in_memory(self) -> bool:
        """Does the design hold its rows (False for a Dask DataFrame's)?"""
        return True

    @property
    def response(self) -> str:
        """The response column's name (or its expression, such as ``np.log(weight)``)."""
        return self.response_name or self.spec.response

    def groups(self) -> dict[str, list[str]]:
        """Levels of every grouping factor, in order of appearance."""
        out: dict[str, list[str]] = {}
        for block in self.blocks:
            out.setdefault(block.group, block.levels)
        return out

    def rows(self) -> Rows:
        """All rows as arrays."""
        return Rows(self.X, self.y, [b.Z for b in self.blocks], [b.codes for b in self.blocks])

    def reduce(self, key: str, reduction: Reduction) -> Any:
        """A sum over the rows, computed once (piece by piece, so that its temporary arrays
        stay small) and kept under ``key``."""
        if key not in self.summaries:
            rows, out = self.rows(), None
            for start in range(0, rows.n, ROWS_AT_ONCE):
                part = reduction.chunk(rows.piece(start, start + ROWS_AT_ONCE))
                out = part if out is None else reduction.combine(out, part)
            self.summaries[key] = out
        return self.summaries[key]


def _suggest(name: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=3)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def _expression_names(expr: str) -> set[str]:
    """Variable names read by one factor expression (function names excluded)."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return set()
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    modules = {
        node.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return names - called - modules


# ---------------------------------------------------------------------------------------
# column names: any name pandas allows, written bare or in backticks


@dataclass(frozen=True)
class _Token:
    """A name in formula text: ``start:end`` covers it (backticks included)."""

    start: int
    end: int
    name: str
    quoted: bool


_PY_WORDS = frozenset(keyword.kwlist)


def _name_tokens(text: str) -> list[_Token]:
    """Backticked names and bare names that may be columns (not function names, keyword
    arguments, numbers, string literals or Python keywords) in a piece of formula text."""
    tokens, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "`":
            j = text.index("`", i + 1)  # closed: parse_formula checked
            tokens.append(_Token(i, j + 1, text[i + 1 : j], True))
            i = j + 1
        elif ch in "'\"":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
        elif ch.isdigit():
            while i < n and (text[i].isalnum() or text[i] in "._"):
                i += 1
        elif ch.isalpha() or ch in "_.":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "._"):
                j += 1
            word, k = text[i:j], j
            while k < n and text[k].isspace():
                k += 1
            call = k < n and text[k] == "("
            kwarg = k < n and text[k] == "=" and text[k : k + 2] != "=="
            if not (call or kwarg or word in _PY_WORDS):
                tokens.append(_Token(i, j, word, False))
            i = j
        else:
            i += 1
    return tokens


def _needs_alias(name: str) -> bool:
    """Names formulaic cannot read as they are (dots, spaces, digits first, non-ASCII...) or
    would confuse with its own (``Intercept``)."""
    plain = name.isascii() and name.isidentifier() and not keyword.iskeyword(name)
    return not plain or name == "Intercept"


@dataclass
class ColumnNames:
    """The data's columns as the formula names them, and the identifiers formulaic sees.

    ``alias`` maps a column name that formulaic cannot read (``my x``, ``a.b``, ``1``,
    ``Größe``) to a plain identifier; formula text and the frame given to formulaic use
    the alias, and every name shown to the user is mapped back.
    """

    alias: dict[str, str] = field(default_factory=dict)
    #: calls rewritten from R's spelling (formulaic's rendering -> as written), see
    #: :func:`~bayeslmm.spec.formula.r_spellings`
    spellings: dict[str, str] = field(default_factory=dict)

    @property
    def inverse(self) -> dict[str, str]:
        return {v: k for k, v in self.alias.items()}

    def rename(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with aliased column names, for formulaic."""
        return frame.rename(columns=self.alias) if self.alias else frame

    def encode(self, text: str, columns: set[str]) -> str:
        """Formula text as formulaic reads it: R's spellings rewritten
        (:func:`~bayeslmm.spec.formula.python_spelling`) and every column name that needs
        one replaced by its alias."""
        text = python_spelling(text)
        out, last = [], 0
        for tok in _name_tokens(text):
            if tok.name in self.alias and (tok.quoted or tok.name in columns):
                out += [text[last : tok.start], self.alias[tok.name]]
                last = tok.end
        return "".join(out) + text[last:]

    def decode(self, text: str) -> str:
        """A formulaic name or message with the aliases turned back into column names:
        bare at the top level (``my x``, ``f f:g``), backticked inside a call
        (``np.log(`my x`)``)."""
        if not self.alias:
            return text
        inverse = self.inverse
        pattern = re.compile("|".join(map(re.escape, sorted(inverse, key=len, reverse=True))))
        out, last = [], 0
        for m in pattern.finditer(text):
            depth = text.count("(", 0, m.start()) - text.count(")", 0, m.start())
            name = inverse[m.group()]
            out += [text[last : m.start()], quote(name) if depth > 0 else name]
            last = m.end()
        return "".join(out) + text[last:]


def respellings(spec: ModelSpec) -> dict[str, str]:
    """The formula's calls rewritten from R's spelling, keyed by formulaic's rendering of
    the Python text (``I(x ** 2)``, single quotes) as well as the text itself."""
    out = {}
    for python, written in spec.spellings:
        out[python] = written
        try:
            out[ast.unparse(ast.parse(python, mode="eval"))] = written
        except SyntaxError:  # a backticked name: formulaic sees its alias
            pass
    return out


def _respell(name: str, names: ColumnNames) -> str:
    """A column name with calls rewritten from R's spelling shown as written
    (``C(cond)b`` -> ``factor(cond)b``, as lme4 names it)."""
    for python in sorted(names.spellings, key=len, reverse=True):
        name = name.replace(python, names.spellings[python])
    return name


def _display_columns(data: pd.DataFrame) -> dict[str, list]:
    """Column name as text -> the data's labels with that text (two if ``1`` and ``"1"``)."""
    names: dict[str, list] = {}
    for label in data.columns:
        names.setdefault(str(label), []).append(label)
    return names


def _required(text: str, where: str, names: ColumnNames) -> set[str]:
    """Variables read by a piece of aliased formula text (formulaic misses arguments of
    scale())."""
    try:
        formula = Formula(text)
        needed = set(formula.required_variables)
        for term in formula:
            for factor in term.factors:
                needed |= _expression_names(str(factor.expr))
    except (FormulaicError, SyntaxError, ValueError) as exc:
        raise FormulaError(
            f"cannot parse {where} {names.decode(text)!r}: {names.decode(str(exc))}"
        ) from exc
    return needed


def _used_columns(spec: ModelSpec, data: pd.DataFrame) -> tuple[list[str], ColumnNames]:
    """Columns the formula reads (checked to exist in ``data``), and their aliases."""
    labels = _display_columns(data)
    columns = list(labels)
    pieces = [(spec.response, "the response"), (spec.fixed, "the fixed part")]
    pieces += [(term.expr, f"random term {term}") for term in spec.random]
    needs: dict[str, str] = {}
    for text, where in pieces:
        for tok in _name_tokens(text):
            if tok.quoted and tok.name not in labels:
                raise UnknownNameError(f"column {tok.name!r} used in {where} is not in the "
                                       f"data{_suggest(tok.name, columns)}")  # fmt: skip
            if tok.name in labels:
                needs.setdefault(tok.name, where)
    for term in spec.random:
        for var in term.factors:
            needs.setdefault(var, f"random term {term}")
    names = ColumnNames(spellings=respellings(spec))
    taken = set(columns)
    for name in needs:
        if name in labels and _needs_alias(name):
            alias = f"_col{len(names.alias)}_"
            while alias in taken:
                alias = f"_{alias}"
            names.alias[name] = alias
    present = {n for n in needs if n in labels}
    for text, where in pieces:
        tokens = {t.name for t in _name_tokens(text) if not t.quoted}
        for var in _required(names.encode(text, present), where, names):
            var = names.inverse.get(var, var)
            if var in labels:  # also a name only formulaic saw (Q('x'))
                needs.setdefault(var, where)
                continue
            if var in _CONTEXT:
                continue
            if re.search(rf"(?<![\w.]){re.escape(var)}\s*\(", text):
                raise UnknownNameError(
                    f"function {var}() used in {where} is not known: formulas call numpy "
                    f"(np.{var}(x) if numpy has it), {', '.join(sorted(_R_NAMED))}, and "
                    "formulaic's C(), I(), poly(), scale(), center(), bs(); R's factor(), "
                    "as.factor(), ordered() and relevel() are read as C()"
                )
            full = next((t for t in sorted(tokens) if t.startswith(f"{var}.")), var)
            raise UnknownNameError(
                f"column {full!r} used in {where} is not in the data{_suggest(full, columns)}"
            )
    for var, where in needs.items():
        if var not in labels:
            raise UnknownNameError(
                f"column {var!r} used in {where} is not in the data{_suggest(var, columns)}"
            )
        if len(labels[var]) > 1:
            both = ", ".join(map(repr, labels[var]))
            raise DataError(f"the data have {len(labels[var])} columns named {var!r} ({both}); "
                            "rename all but one")  # fmt: skip
    return [c for c in columns if c in needs], names


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


def response_column(text: str) -> str | None:
    """The column name if the response is one column (``y``, ```my y```), else None."""
    text = text.strip()
    tokens = _name_tokens(text)
    if len(tokens) == 1 and tokens[0].start == 0 and tokens[0].end == len(text):
        return tokens[0].name
    return None


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


def _block_labels(terms: tuple[RandomTerm, ...]) -> list[str]:
    seen: dict[str, int] = {}
    labels = []
    for term in terms:
        k = seen.get(term.group, 0)
        labels.append(term.group if k == 0 else f"{term.group}.{k}")
        seen[term.group] = k + 1
    return labels


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


def parse_spec(formula: str | ModelSpec) -> ModelSpec:
    if isinstance(formula, str):
        return parse_formula(formula)
    if isinstance(formula, ModelSpec):
        return formula
    raise FormulaError(f"formula must be a string such as 'y ~ x + (1 | g)', got "
                       f"{type(formula).__name__}")  # fmt: skip


def is_dask_frame(data: object) -> bool:
    """Is ``data`` a Dask DataFrame? (Dask itself is imported only if it already is.)"""
    if not type(data).__module__.startswith("dask"):
        return False
    import dask.dataframe as dd

    return isinstance(data, dd.DataFrame)


def _residual_columns(structure: ResidualStructure, data: pd.DataFrame, used: list[str]) -> None:
    """Add the columns a residual structure reads to ``used`` (checked to exist)."""
    labels = _display_columns(data)
    for name in structure.columns:
        if name not in labels:
            raise UnknownNameError(f"column {name!r} of the residual structure {structure!r} is "
                                   f"not in the data{_suggest(name, list(labels))}")  # fmt: skip
        if len(labels[name]) > 1:
            raise DataError(f"the data have {len(labels[name])} columns named {name!r}; "
                            "rename all but one")  # fmt: skip
        if name not in used:
            used.append(name)


def build_design(
    formula: str | ModelSpec,
    data: pd.DataFrame,
    residual: ResidualStructure | None = None,
    summaries: Mapping[str, Callable[[Design], Reduction]] | None = None,
    carry: tuple[str, ...] = (),
    level_per_row: bool = False,
) -> Design:
    """Evaluate a formula on data.

    Parameters
    ----------
    formula
        lme4 formula text or a parsed :class:`ModelSpec`. Any column name can be used,
        in backticks where it is not a plain name (```my x```, ```1```).
    data
        The data: a pandas DataFrame, or a Dask DataFrame (``dask.dataframe``, e.g.
        ``dd.read_parquet(...)``), whose rows stay where they are: see
        :mod:`bayeslmm.spec.partitioned`. Never modified.
    residual
        A residual correlation structure (:class:`~bayeslmm.spec.residual.AR1`,
        :class:`~bayeslmm.spec.residual.CompoundSymmetry`); its columns join the design's
        frame (a row missing one of them is dropped too). Needs rows in memory.
    summaries
        Sums over the rows to compute with the design, by name (a function of the design
        giving a :class:`Reduction`); a Dask design computes them in the pass that checks
        its rows. They are kept in :meth:`Design.reduce`'s cache.
    carry
        Columns of ``data`` the formula does not read that the design's frame keeps, row
        for row (GLM trials and offsets, :mod:`bayeslmm.spec.response`).
    level_per_row
        Allow a grouping factor with one level per row (a GLMM's observation-level effect).

    Returns
    -------
    Design

    Raises
    ------
    FormulaError, DataError, ColumnTypeError
        Naming the column, term or level at fault.
    """
    spec = parse_spec(formula)
    residual = check_structure(residual)
    if is_dask_frame(data):
        if residual is not None:
            raise RowsNotInMemoryError(
                f"a residual structure ({residual!r}) needs the rows in memory, and the data "
                "are a Dask DataFrame whose rows stay in its partitions; fit a pandas "
                "DataFrame (ddf.compute(), or a sample of the groups)"
            )
        from .partitioned import build_dask_design

        return build_dask_design(spec, data, summaries)
    if not isinstance(data, pd.DataFrame):
        raise ColumnTypeError(f"data must be a pandas or Dask DataFrame, got "
                              f"{type(data).__name__}")  # fmt: skip
    used, names = _used_columns(spec, data)
    used += [c for c in carry if c not in used]
    group_columns = {f for term in spec.random for f in term.factors}
    if residual is not None:
        _residual_columns(residual, data, used)
        group_columns |= set(residual.group or ())
    frame, n_dropped = _clean_frame(data, used, group_columns)
    y, response = _response(spec, frame, names)

    fixed_mm, X = _matrix(spec.fixed, frame, "fixed effects", names)
    fixed_names = _column_names(fixed_mm.columns, names, "fixed effects")
    check_rank(qr_r(X), X.shape[0], fixed_names)

    blocks = []
    for term, label in zip(spec.random, _block_labels(spec.random), strict=True):
        levels = term_levels(term, frame, len(frame) + level_per_row)
        z_mm, Z = _matrix(term.expr, frame, f"random term {term}", names)
        if z_mm.shape[1] == 0:
            raise FormulaError(f"random term {term} has no columns")
        blocks.append(
            RandomBlock(
                term=term,
                label=label,
                columns=_column_names(z_mm.columns, names, f"random term {term}"),
                Z=Z,
                codes=levels.codes,
                levels=levels.labels,
                matrix_spec=z_mm.model_spec,
                level_keys=levels.keys,
                factor_kinds=levels.kinds,
            )
        )
    design = Design(
        spec=spec,
        y=y,
        X=X,
        fixed_names=fixed_names,
        blocks=blocks,
        frame=frame,
        n_dropped=n_dropped,
        fixed_spec=fixed_mm.model_spec,
        names=names,
        response_name=response,
        column_kinds={c: column_kind(frame[c]) for c in frame.columns},
        residual=resolve_residual(residual, frame, blocks) if residual is not None else None,
    )
    for key, make in (summaries or {}).items():
        design.reduce(key, make(design))
    return design


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
