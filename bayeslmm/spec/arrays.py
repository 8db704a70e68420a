"""The design's data: :class:`Design`, its :class:`Rows` and the sums over them
(:class:`Reduction`).

The design stays small: the fixed-effects matrix ``X`` (n x p), and for every random
term an n x q matrix ``Z`` of its columns plus an integer code per row for its group
level (:class:`~bayeslmm.spec.blocks.RandomBlock`). A dense rows x levels matrix is never
built. :func:`~bayeslmm.spec.design.build_design` makes one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .blocks import RandomBlock
from .formula import ModelSpec
from .residual import ResidualLayout
from .tokens import ColumnNames

ROWS_AT_ONCE = 1_000_000  # rows summed at a time (the sums do not depend on the pieces)


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
