"""A :class:`ModelSpec` evaluated on a DataFrame: :func:`build_design` makes the
:class:`Design`.

The design stays small: the fixed-effects matrix ``X`` (n x p), and for every random
term an n x q matrix ``Z`` of its columns plus an integer code per row for its group
level. A dense rows x levels matrix is never built.

Each step has its module: :mod:`~bayeslmm.spec.tokens` (the columns a formula reads and
their aliases), :mod:`~bayeslmm.spec.columns` (column types, missing values),
:mod:`~bayeslmm.spec.levels` (grouping factors' levels), :mod:`~bayeslmm.spec.matrices`
(formulaic's model matrices, lme4's names, rank), :mod:`~bayeslmm.spec.identification`
(random terms the data cannot identify), :mod:`~bayeslmm.spec.arrays` and
:mod:`~bayeslmm.spec.blocks` (the design's data) and :mod:`~bayeslmm.spec.prediction`
(new rows). Their names used elsewhere are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from ..errors import (
    ColumnTypeError,
    DataError,
    FormulaError,
    RowsNotInMemoryError,
    UnknownNameError,
)
from .arrays import ROWS_AT_ONCE, Design, Reduction, Rows
from .blocks import RandomBlock, _block_labels
from .columns import (
    BOOL,
    EXAMPLES,
    KEEP,
    NUMBER,
    OTHER,
    TEXT,
    TO_BOOL,
    TO_FLOAT,
    TO_INT,
    TO_NUMBER,
    TO_OBJECT,
    ColumnProfile,
    _clean_frame,
    check_missing,
    column_conversion,
    column_kind,
    convert_column,
    infinite_values_error,
    profile_column,
)
from .formula import ModelSpec, parse_formula
from .identification import check_identified
from .levels import (
    GroupLevels,
    group_codes,
    group_levels,
    level_index,
    level_values,
    match_levels,
    term_levels,
)
from .matrices import (
    _column_names,
    _matrix,
    _response,
    check_matrix_finite,
    check_rank,
    check_response,
    lme4_name,
    qr_r,
)
from .prediction import NewDesign, fixed_columns, new_design
from .residual import ResidualStructure, check_structure, resolve_residual
from .tokens import (
    ColumnNames,
    _display_columns,
    _suggest,
    _used_columns,
    respellings,
    response_column,
)

__all__ = [
    "BOOL", "EXAMPLES", "KEEP", "NUMBER", "OTHER", "ROWS_AT_ONCE", "TEXT", "TO_BOOL", "TO_FLOAT",
    "TO_INT", "TO_NUMBER", "TO_OBJECT", "ColumnNames", "ColumnProfile", "Design", "GroupLevels",
    "NewDesign", "RandomBlock", "Reduction", "Rows", "build_design", "check_matrix_finite",
    "check_missing", "check_rank", "check_response", "column_conversion", "column_kind",
    "convert_column", "fixed_columns", "group_codes", "group_levels", "infinite_values_error",
    "is_dask_frame", "level_index", "level_values", "lme4_name", "match_levels", "new_design",
    "parse_spec", "profile_column", "qr_r", "respellings", "response_column", "term_levels",
]  # fmt: skip

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
    # one factorisation: its R for the rank, its Q for the random terms' identification
    basis, R = np.linalg.qr(X) if spec.random and X.shape[0] else (None, qr_r(X))
    check_rank(R, X.shape[0], fixed_names)

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
    check_identified(basis, blocks)
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
