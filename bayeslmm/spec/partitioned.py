"""A formula evaluated on a Dask DataFrame: a :class:`DaskDesign`, whose rows stay put.

Two passes over the partitions, on whatever Dask scheduler is active (threads, processes,
a ``dask.distributed`` cluster):

1. what the cleaning rules need, added up over partitions: rows, missing values per
   column, every column's :class:`~bayeslmm.spec.design.ColumnProfile`, the distinct values
   of the grouping factors and of the other non-numeric columns, and the first rows. The
   rules of :func:`~bayeslmm.spec.design.build_design` then decide as for pandas (the same
   errors and warning), and the levels and formulaic's encodings are fixed once, on a small
   frame that holds every level.
2. every partition cleaned and encoded with those encodings (``X``, ``y``, ``Z``, level
   codes), checked (non-finite values, constant response, the rank of ``X`` from an R
   factor) and summed by every requested :class:`~bayeslmm.spec.design.Reduction` (the
   sufficient statistics); partitions' results are combined in a tree.

The design keeps the names, levels, encodings and sums, never the rows: the memory of the
process that fits does not grow with them. More sums over the rows
(:meth:`DaskDesign.reduce`) and lazy per-row results (:meth:`DaskDesign.map_rows`) make
further passes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial, reduce
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FormulaError, MissingDependencyError, RowsNotInMemoryError
from .arrays import Design, Reduction, Rows
from .blocks import RandomBlock, _block_labels
from .columns import (
    NUMBER,
    ColumnProfile,
    check_missing,
    column_conversion,
    column_kind,
    convert_column,
    infinite_values_error,
    profile_column,
)
from .formula import ModelSpec
from .levels import level_index, match_levels, term_levels
from .matrices import (
    _column_names,
    _matrix_frame,
    _response_spec,
    check_matrix_finite,
    check_rank,
    check_response,
    qr_r,
)
from .tokens import ColumnNames, _display_columns, _used_columns

HEAD = 64  # first rows kept to stand for the numeric columns when encodings are fitted
SPLIT_EVERY = 8  # partitions' results combined at a time


def _dask():
    try:
        import dask
    except ImportError as err:  # pragma: no cover - a Dask DataFrame implies Dask
        raise MissingDependencyError(
            "fitting a Dask DataFrame needs dask: pip install 'bayeslmm[dask]'"
        ) from err
    return dask


class RowsNotHeld:
    """Stands for an array of the rows of a Dask DataFrame: it has a shape, and any use of its
    values raises :class:`~bayeslmm.errors.RowsNotInMemoryError` saying what to do."""

    def __init__(self, shape: tuple[int, ...], what: str):
        self.shape = shape
        self.what = what

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"RowsNotHeld({self.what}, shape={self.shape})"

    def _refuse(self, *args: Any, **kwargs: Any):
        raise RowsNotInMemoryError(
            f"this needs {self.what} of all {self.shape[0]} rows in memory, and they stay in "
            "the Dask DataFrame the model was fitted from. bayeslmm computes on Dask what it "
            "can (fitted values and residuals, lazily); for the rest fit a pandas DataFrame, "
            "e.g. a sample: ddf.sample(frac=0.01).compute()"
        )

    __array__ = __getitem__ = __iter__ = _refuse
    __matmul__ = __rmatmul__ = __add__ = __radd__ = __sub__ = __rsub__ = _refuse
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __neg__ = __pow__ = _refuse
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]


# --- pass 1: what the cleaning rules need --------------------------------------------------


@dataclass
class _Facts:
    """One partition's (or several partitions') pass-1 findings; they add up."""

    n_rows: int
    missing: dict[str, int]
    n_dropped: int
    profiles: dict[str, ColumnProfile]
    uniques: dict[str, pd.Series]
    combos: dict[tuple[str, ...], pd.DataFrame]
    head: pd.DataFrame

    def merge(self, other: _Facts) -> _Facts:
        def distinct(a, b):
            return pd.concat([a, b]).drop_duplicates()

        head = self.head if len(self.head) >= HEAD else pd.concat([self.head, other.head])
        return _Facts(
            self.n_rows + other.n_rows,
            {c: k + other.missing[c] for c, k in self.missing.items()},
            self.n_dropped + other.n_dropped,
            {c: p.merge(other.profiles[c]) for c, p in self.profiles.items()},
            {c: distinct(u, other.uniques[c]) if c in other.uniques else u
             for c, u in self.uniques.items()}
            | {c: u for c, u in other.uniques.items() if c not in self.uniques},
            {k: distinct(v, other.combos[k]) if k in other.combos else v
             for k, v in self.combos.items()}
            | {k: v for k, v in other.combos.items() if k not in self.combos},
            head.head(HEAD),
        )  # fmt: skip


def _has_levels(profile: ColumnProfile) -> bool:
    """Does the column hold categories, booleans or text (values formulaic encodes)?"""
    dtype = profile.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return True
    if profile.unhashable:
        return False
    return bool(profile.kinds) and set(profile.kinds) != {NUMBER}


def _named(part: pd.DataFrame, used: list[str]) -> pd.DataFrame:
    part = part.copy(deep=False)
    part.columns = used
    return part


def _pass_one(used: list[str], groups: frozenset[str], interactions: tuple[tuple[str, ...], ...],
              part: pd.DataFrame) -> _Facts:  # fmt: skip
    part = _named(part, used)
    missing = part.isna()
    drop = missing.any(axis=1).to_numpy()
    kept = part.loc[~drop] if drop.any() else part
    profiles = {c: profile_column(kept[c], predictor=c not in groups) for c in used}
    wanted = [c for c in used if _has_levels(profiles[c])
              or (c in groups and not profiles[c].unhashable)]  # fmt: skip
    uniques = {c: kept[c].drop_duplicates() for c in wanted}
    combos = {f: kept[list(f)].drop_duplicates() for f in interactions
              if not any(profiles[c].unhashable for c in f)}  # fmt: skip
    return _Facts(len(part), {c: int(k) for c, k in missing.sum().items()}, int(drop.sum()),
                  profiles, uniques, combos, kept.head(HEAD))  # fmt: skip


# --- the encoder: one partition's rows -> arrays ------------------------------------------


@dataclass
class _Encoder:
    """Cleans and encodes one partition as :func:`~bayeslmm.spec.design.build_design` would
    the whole table, with the conversions, encodings and levels fixed in pass 1."""

    used: list[str]
    conversions: dict[str, str]
    dtypes: dict[str, pd.CategoricalDtype]
    names: ColumnNames
    response_column: str | None
    response_spec: Any
    fixed_spec: Any
    block_specs: list[Any]
    levels: list[tuple[tuple[str, ...], tuple[str, ...], pd.Index]]

    def clean(self, part: pd.DataFrame) -> pd.DataFrame:
        """The partition's complete rows, every column one plain type (user's row labels)."""
        part = _named(part, self.used)
        drop = part.isna().any(axis=1).to_numpy()
        if drop.any():
            part = part.loc[~drop]
        columns = {}
        for c in self.used:
            values = convert_column(part[c], self.conversions[c])
            if c in self.dtypes:
                values = values.astype(self.dtypes[c])
            columns[c] = values
        return pd.DataFrame(columns, index=part.index)

    def rows(self, frame: pd.DataFrame) -> Rows:
        encoded = self.names.rename(frame)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # log(0) etc.: counted, refused

            def matrix(spec) -> np.ndarray:
                return np.asarray(spec.get_model_matrix(encoded, na_action="ignore"), dtype=float)

            if self.response_column is not None:
                y = frame[self.response_column].to_numpy(dtype=float)
            else:
                y = matrix(self.response_spec)[:, 0]
            X = matrix(self.fixed_spec)
            Z = [matrix(spec) for spec in self.block_specs]
        codes = []
        for factors, kinds, index in self.levels:
            code = match_levels(frame, factors, kinds, index)
            if (code < 0).any():
                raise RowsNotInMemoryError(
                    f"a level of {':'.join(factors)!r} was not in the data's first pass: the "
                    "Dask DataFrame changed between passes; fit data that stay the same "
                    "(e.g. Parquet files, or ddf.persist())"
                )
            codes.append(code)
        return Rows(X, np.ascontiguousarray(y), Z, codes)


# --- pass 2: checks and sums ---------------------------------------------------------------


@dataclass
class _Checks:
    """What the checks of the encoded rows need; adds up over partitions."""

    n: int
    y_bad: int
    y_low: float
    y_high: float
    X_bad: np.ndarray
    Z_bad: list[np.ndarray]
    R: np.ndarray

    @classmethod
    def of(cls, rows: Rows) -> _Checks:
        finite = np.isfinite(rows.y)
        y = rows.y[finite]
        low, high = (float(y.min()), float(y.max())) if len(y) else (np.inf, -np.inf)
        X = rows.X
        X_bad = (~np.isfinite(X)).sum(axis=0)
        R = qr_r(X) if not X_bad.any() else np.zeros((0, X.shape[1]))
        return cls(rows.n, int((~finite).sum()), low, high, X_bad,
                   [(~np.isfinite(Z)).sum(axis=0) for Z in rows.Z], R)  # fmt: skip

    def combine(self, other: _Checks) -> _Checks:
        return _Checks(
            self.n + other.n, self.y_bad + other.y_bad, min(self.y_low, other.y_low),
            max(self.y_high, other.y_high), self.X_bad + other.X_bad,
            [a + b for a, b in zip(self.Z_bad, other.Z_bad, strict=True)],
            qr_r(np.vstack([self.R, other.R])),
        )  # fmt: skip


def _combine(combines: Sequence[Callable], *results):
    """Combine partitions' results (tuples, one entry per reduction; None: no rows)."""
    present = [r for r in results if r is not None]
    if not present:
        return None
    return reduce(lambda a, b: tuple(c(x, y) for c, x, y in zip(combines, a, b, strict=True)),
                  present)  # fmt: skip


def _reduce_partition(chunks: Sequence[Callable], encoder: _Encoder, part: pd.DataFrame):
    frame = encoder.clean(part)
    if not len(frame):
        return None
    rows = encoder.rows(frame)
    return tuple(chunk(rows) for chunk in chunks)


def _tree_reduce(source, task: Callable, combine: Callable, encoder: Any = None):
    """``task`` on every partition of ``source``, the results combined in a tree, computed on
    the active Dask scheduler."""
    dask = _dask()
    parts = source.to_delayed()
    if encoder is not None:
        shared = dask.delayed(encoder)  # one key: sent to each worker once
        results = [dask.delayed(task)(shared, part) for part in parts]
    else:
        results = [dask.delayed(task)(part) for part in parts]
    while len(results) > 1:
        results = [dask.delayed(combine)(*results[i : i + SPLIT_EVERY])
                   for i in range(0, len(results), SPLIT_EVERY)]  # fmt: skip
    if not results:
        return None
    (out,) = dask.compute(results[0])
    return out


def _merge_facts(*facts: _Facts) -> _Facts:
    return reduce(_Facts.merge, facts)


# --- the design ----------------------------------------------------------------------------


@dataclass
class DaskDesign(Design):
    """A :class:`~bayeslmm.spec.design.Design` of a Dask DataFrame: the same names, levels and
    encodings, its sums computed on the Dask scheduler (:meth:`reduce`), no rows.

    ``y``, ``X`` and every block's ``Z`` and ``codes`` are :class:`RowsNotHeld`; ``frame`` is
    the cleaned rows as a lazy Dask DataFrame (the used columns, complete rows).
    """

    n_kept: int = 0
    source: Any = field(repr=False, default=None)
    encoder: _Encoder | None = field(repr=False, default=None)

    @property
    def n_obs(self) -> int:
        return self.n_kept

    @property
    def rows_in_memory(self) -> bool:
        return False

    def rows(self) -> Rows:
        return self.y._refuse()

    def reduce(self, key: str, reduction: Reduction) -> Any:
        """A sum over the rows, by one pass over the partitions (kept under ``key``)."""
        if key not in self.summaries:
            out = _tree_reduce(self.source, partial(_reduce_partition, (reduction.chunk,)),
                               partial(_combine, (reduction.combine,)), self.encoder)  # fmt: skip
            self.summaries[key] = out[0]
        return self.summaries[key]

    def map_rows(self, function: Callable[[Rows], np.ndarray], name: str):
        """``function`` of every partition's rows, as a lazy Dask Series indexed by the
        rows' labels (one value per row kept)."""
        meta = pd.Series(np.zeros(0), name=name)
        return self.source.map_partitions(_map_partition, self.encoder, function, name,
                                          meta=meta)  # fmt: skip


def _map_partition(part: pd.DataFrame, encoder: _Encoder, function: Callable, name: str):
    frame = encoder.clean(part)
    if not len(frame):
        return pd.Series(np.zeros(0), index=frame.index, name=name)
    return pd.Series(np.asarray(function(encoder.rows(frame)), dtype=float), index=frame.index,
                     name=name)  # fmt: skip


def _stateful(spec: Any, where: str, names: ColumnNames) -> None:
    """Refuse formulaic transforms whose values depend on the whole column (``scale``,
    ``center``, ``poly``, splines): fitted on a sample they would be wrong."""
    state = getattr(spec, "transform_state", None) or {}
    if state:
        terms = ", ".join(names.decode(str(t)) for t in state)
        raise FormulaError(
            f"{where} uses {terms}, whose values depend on the whole column (formulaic keeps "
            "its mean, scale or basis); with a Dask DataFrame add the transformed column to "
            "the data first, e.g. ddf['x_c'] = ddf['x'] - ddf['x'].mean()"
        )


def _sample(facts: _Facts, conversions: dict[str, str],
            dtypes: dict[str, pd.CategoricalDtype]) -> pd.DataFrame:  # fmt: skip
    """A small frame with every value formulaic encodes (every level of every non-numeric
    column) and real values of the others, converted as the rows will be."""

    def converted(values: pd.Series, c: str) -> pd.Series:
        values = convert_column(values.reset_index(drop=True), conversions[c])
        return values.astype(dtypes[c]) if c in dtypes else values

    head = pd.DataFrame({c: converted(facts.head[c], c) for c in facts.head.columns})
    levels = {c: converted(u, c) for c, u in facts.uniques.items()}
    size = max((len(u) for u in levels.values()), default=0)
    if not size:
        return head
    extra = {}
    for c in head.columns:
        values = levels.get(c, head[c])
        extra[c] = values.iloc[np.arange(size) % len(values)].reset_index(drop=True)
    return pd.concat([head, pd.DataFrame(extra)], ignore_index=True)


def build_dask_design(
    spec: ModelSpec,
    data,
    summaries: Mapping[str, Callable[[Design], Reduction]] | None = None,
) -> DaskDesign:
    """:func:`~bayeslmm.spec.design.build_design` for a Dask DataFrame (see the module)."""
    used, names = _used_columns(spec, data)
    labels = _display_columns(data)
    source = data[[labels[name][0] for name in used]]
    groups = frozenset(f for term in spec.random for f in term.factors)
    interactions = tuple(dict.fromkeys(t.factors for t in spec.random if len(t.factors) > 1))
    facts = _tree_reduce(source, partial(_pass_one, used, groups, interactions), _merge_facts)
    if facts is None:  # no partition at all
        check_missing(0, {}, 0, used)
    check_missing(facts.n_rows, facts.missing, facts.n_dropped, used)
    n = facts.n_rows - facts.n_dropped
    conversions = {c: column_conversion(facts.profiles[c], c, predictor=c not in groups,
                                        where="") for c in used}  # fmt: skip
    dtypes = {}
    for c in used:
        profile = facts.profiles[c]
        if isinstance(profile.dtype, pd.CategoricalDtype):
            dtypes[c] = pd.CategoricalDtype(profile.categories, ordered=profile.dtype.ordered)
    sample = _sample(facts, conversions, dtypes)
    kinds = {c: column_kind(sample[c]) for c in used}
    for c in used:
        if kinds[c] == NUMBER and c not in dtypes and facts.profiles[c].n_inf:
            raise infinite_values_error(c, facts.profiles[c].n_inf)

    column, lhs, response = _response_spec(spec, sample, names)
    response_spec = None if lhs is None else lhs.model_spec
    if response_spec is not None:
        _stateful(response_spec, f"the response {spec.response!r}", names)
    fixed_mm = _matrix_frame(spec.fixed, sample, "fixed effects", names)
    fixed_names = _column_names(fixed_mm.columns, names, "fixed effects")
    _stateful(fixed_mm.model_spec, "the fixed part", names)

    blocks, block_specs, levels_at = [], [], []
    p = len(fixed_names)
    for term, label in zip(spec.random, _block_labels(spec.random), strict=True):
        if len(term.factors) == 1:
            raw = facts.uniques[term.factors[0]].to_frame()
        else:
            raw = facts.combos[term.factors]
        distinct = pd.DataFrame(index=range(len(raw)))
        for f in term.factors:
            values = convert_column(raw[f].reset_index(drop=True), conversions[f])
            distinct[f] = values.astype(dtypes[f]) if f in dtypes else values
        levels = term_levels(term, distinct.reset_index(drop=True), n)
        where = f"random term {term}"
        z_mm = _matrix_frame(term.expr, sample, where, names)
        if z_mm.shape[1] == 0:
            raise FormulaError(f"random term {term} has no columns")
        _stateful(z_mm.model_spec, where, names)
        columns = _column_names(z_mm.columns, names, where)
        blocks.append(RandomBlock(
            term=term, label=label, columns=columns,
            Z=RowsNotHeld((n, len(columns)), f"the random-effect columns of {term}"),
            codes=RowsNotHeld((n,), f"the levels of {term.group!r}"), levels=levels.labels,
            matrix_spec=z_mm.model_spec, level_keys=levels.keys, factor_kinds=levels.kinds,
        ))  # fmt: skip
        block_specs.append(z_mm.model_spec)
        levels_at.append((term.factors, levels.kinds, level_index(levels.keys, levels.kinds)))
    encoder = _Encoder(used, conversions, dtypes, names, column, response_spec,
                       fixed_mm.model_spec, block_specs, levels_at)  # fmt: skip
    frame = source.map_partitions(encoder.clean, meta=sample.iloc[:0])
    design = DaskDesign(
        spec=spec, y=RowsNotHeld((n,), f"the response {response!r}"),
        X=RowsNotHeld((n, p), "the fixed-effect columns"), fixed_names=fixed_names,
        blocks=blocks, frame=frame, n_dropped=facts.n_dropped, fixed_spec=fixed_mm.model_spec,
        names=names, response_name=response, column_kinds=kinds, n_kept=n, source=source,
        encoder=encoder,
    )  # fmt: skip
    _check_rows(design, summaries or {})
    return design


def _check_rows(design: DaskDesign, summaries: Mapping[str, Callable]) -> None:
    """Pass 2: the checks of the encoded rows, with the requested sums (kept in the design)."""
    requested = {key: make(design) for key, make in summaries.items()}
    chunks = (_Checks.of, *(r.chunk for r in requested.values()))
    combines = (_Checks.combine, *(r.combine for r in requested.values()))
    out = _tree_reduce(design.source, partial(_reduce_partition, chunks),
                       partial(_combine, combines), design.encoder)  # fmt: skip
    checks, *results = out
    check_response(design.response, checks.n, checks.y_bad, checks.y_low, checks.y_high)
    check_matrix_finite("fixed effects", design.fixed_names, checks.X_bad)
    check_rank(checks.R, checks.n, design.fixed_names)
    for block, bad in zip(design.blocks, checks.Z_bad, strict=True):
        check_matrix_finite(f"random term {block.term}", block.columns, bad)
    design.summaries.update(zip(requested, results, strict=True))


__all__ = ["DaskDesign", "RowsNotHeld", "build_dask_design"]
