"""Residual covariance structures: ``bl.AR1`` and ``bl.CompoundSymmetry``, and where they
put the rows.

With a residual structure the residuals of the rows of one *residual group* are
correlated, ``Var(e_g) = sigma^2 R_g(phi)``, and rows of different groups independent
(``R`` block diagonal), as nlme's ``correlation=`` argument of ``lme`` and ``gls``:

- :class:`AR1` (nlme's ``corAR1(form = ~ time | group)``): ``cor(e_i, e_j) =
  phi^|t_i - t_j|`` for integer times ``t`` within a group, ``-1 < phi < 1``. Times must
  be whole numbers and distinct within a group; they need not be consecutive nor sorted.
  A gap is a missing occasion: rows two steps apart correlate ``phi^2``, exactly as nlme
  does with ``form = ~ time | group``. Without ``time`` the rows of a group are taken in
  the order of the data, one step apart (nlme's ``form = ~ 1 | group``).
- :class:`CompoundSymmetry` (nlme's ``corCompSymm(form = ~ 1 | group)``): every pair of
  rows of a group correlates ``rho``, ``-1 / (m - 1) < rho < 1`` for the largest group
  of ``m`` rows.

This module only validates the arguments and lays the rows out
(:class:`ResidualLayout`); the mathematics is in :mod:`bayeslmm.gaussian.residual`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import ArgumentError, ColumnTypeError, DataError
from .columns import NUMBER, column_kind
from .levels import group_levels
from .tokens import _display_columns

if TYPE_CHECKING:
    from .blocks import RandomBlock

#: Name of the group made of every row when a structure has no grouping column.
ALL_ROWS = "(all rows)"


def _column_name(argument: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ArgumentError(f"{argument} must be a column name (text), got {value!r}")
    return value


def _group_columns(value: object) -> tuple[str, ...] | None:
    """``group=``: one column name, or several (their interaction, as ``a:b`` in lme4)."""
    if value is None:
        return None
    if isinstance(value, str):
        return (_column_name("group", value),)
    if isinstance(value, Sequence) and value and all(isinstance(v, str) and v for v in value):
        if len(set(value)) < len(value):
            raise ArgumentError(f"group names a column twice: {list(value)!r}")
        return tuple(value)
    raise ArgumentError(f"group must be a column name or a list of column names, got {value!r}")


class ResidualStructure:
    """Base class of the residual correlation structures (see the module text)."""

    #: What the structure is called in tables and messages.
    kind: str = ""
    #: Name of its correlation parameter (the prior's key and the posterior variable).
    parameter: str = ""

    def __init__(self, group: str | Sequence[str] | None = None):
        self.group = _group_columns(group)

    @property
    def time(self) -> str | None:
        return None

    @property
    def columns(self) -> list[str]:
        """Data columns the structure reads (time first)."""
        return ([self.time] if self.time else []) + list(self.group or ())

    def _args(self) -> list[str]:
        if self.group is None:
            return []
        group = self.group[0] if len(self.group) == 1 else list(self.group)
        return [f"group={group!r}"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._args())})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and repr(other) == repr(self)

    def __hash__(self) -> int:
        return hash(repr(self))


class AR1(ResidualStructure):
    """First-order autoregressive residuals within groups (nlme's ``corAR1``).

    ``cor(e_i, e_j) = phi^|t_i - t_j|`` for two rows of one group, ``-1 < phi < 1``.

    Parameters
    ----------
    time
        Column of whole-number times, distinct within a group (gaps allowed: a missing
        occasion). ``None``: the order of the rows in the data.
    group
        Column (or list of columns) whose levels are the independent series. ``None``:
        the model's grouping factor when it has exactly one, else every row in one series.

    Examples
    --------
    >>> AR1(time="Days", group="Subject")
    AR1(time='Days', group='Subject')
    """

    kind = "AR(1)"
    parameter = "phi"

    def __init__(self, time: str | None = None, group: str | Sequence[str] | None = None):
        super().__init__(group)
        self._time = _column_name("time", time)
        if self._time is not None and self.group is not None and self._time in self.group:
            raise ArgumentError(f"time column {self._time!r} is also the group column")

    @property
    def time(self) -> str | None:
        return self._time

    def _args(self) -> list[str]:
        return ([f"time={self._time!r}"] if self._time else []) + super()._args()


class CompoundSymmetry(ResidualStructure):
    """Exchangeable residuals within groups (nlme's ``corCompSymm``): every pair of rows
    of a group correlates ``rho``, ``-1 / (m - 1) < rho < 1`` (``m``: rows of the largest
    group).

    Parameters
    ----------
    group
        Column (or list of columns) whose levels are the groups. ``None``: the model's
        grouping factor when it has exactly one, else every row in one group.

    Examples
    --------
    >>> CompoundSymmetry(group="litter")
    CompoundSymmetry(group='litter')
    """

    kind = "compound symmetry"
    parameter = "rho"


@dataclass(frozen=True)
class ResidualLayout:
    """A residual structure on the rows of a design.

    Attributes
    ----------
    structure
        The user's :class:`AR1` or :class:`CompoundSymmetry`.
    group
        The residual groups' name (``"Subject"``, ``"a:b"``, or ``"(all rows)"``).
    group_columns
        The columns that define the groups (empty for one group of every row).
    codes, labels
        Group of every row; group labels.
    times
        Whole-number time of every row (AR(1); the position within its group when the
        structure has no time column), else None.
    prev, next, gap
        AR(1): every pair of rows adjacent in time within a group (``next`` follows
        ``prev`` by ``gap >= 1`` steps), else empty.
    sizes
        Rows per group.
    lower, upper
        Bounds of the correlation parameter.
    """

    structure: ResidualStructure
    group: str
    group_columns: tuple[str, ...]
    codes: np.ndarray
    labels: list[str]
    times: np.ndarray | None
    prev: np.ndarray
    next: np.ndarray
    gap: np.ndarray
    sizes: np.ndarray
    lower: float
    upper: float

    @property
    def parameter(self) -> str:
        return self.structure.parameter

    @property
    def is_ar1(self) -> bool:
        return isinstance(self.structure, AR1)

    @property
    def n_groups(self) -> int:
        return len(self.labels)

    def describe(self) -> str:
        """One line: ``AR(1) in Days within Subject (phi)``."""
        if self.is_ar1:
            time = self.structure.time or "row order"
            return f"AR(1) in {time} within {self.group} ({self.parameter})"
        return f"compound symmetry within {self.group} ({self.parameter})"


def _group_of(frame: pd.DataFrame, columns: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    levels = group_levels(frame, columns)
    return levels.codes, levels.labels


def _times(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column]
    if isinstance(values.dtype, pd.CategoricalDtype) or column_kind(values) != NUMBER:
        raise ColumnTypeError(f"AR(1) time column {column!r} must hold whole numbers, but its "
                              f"type is {values.dtype}")  # fmt: skip
    t = values.to_numpy(dtype=float)
    whole = t == np.round(t)
    if not whole.all():
        bad = values[~whole]
        raise DataError(
            f"AR(1) time column {column!r} must hold whole numbers (time steps); it has "
            f"{int((~whole).sum())} other value(s), e.g. {bad.iloc[0]!r} (row "
            f"{bad.index[0]!r}). Number the occasions 0, 1, 2, ... (nlme's corAR1 needs "
            "integer times too)"
        )
    if np.abs(t).max() >= 2**52:
        raise DataError(f"AR(1) time column {column!r} holds values too large to be steps")
    return t.astype(np.int64)


def resolve_residual(
    structure: ResidualStructure,
    frame: pd.DataFrame,
    blocks: list[RandomBlock],
    new_rows: bool = False,
) -> ResidualLayout:
    """Lay ``structure`` out on the rows of ``frame`` (the design's cleaned rows).

    ``new_rows``: rows to predict (a group may have one row).

    Raises
    ------
    ArgumentError
        No group given while the model has several grouping factors.
    ColumnTypeError, DataError
        A time column that is not whole numbers, a time repeated within a group, or no
        group with two rows.
    """
    n = len(frame)
    if structure.group is not None:
        columns = structure.group
        codes, labels = _group_of(frame, columns)
        name = ":".join(columns)
    else:
        groups = list(dict.fromkeys(b.group for b in blocks))
        if len(groups) > 1:
            last = next(b for b in blocks if b.group == groups[-1]).term.factors
            example = last[0] if len(last) == 1 else list(last)
            raise ArgumentError(
                f"the model has several grouping factors ({', '.join(groups)}): name the one "
                f"the residuals are correlated within, e.g. {type(structure).__name__}("
                + (f"time={structure.time!r}, " if structure.time else "")
                + f"group={example!r})"
            )
        if groups:
            b = blocks[0]
            columns, codes, labels, name = b.term.factors, b.codes, b.levels, b.group
        else:
            columns, codes, labels, name = (), np.zeros(n, dtype=np.int64), [ALL_ROWS], ALL_ROWS
    codes = np.asarray(codes, dtype=np.int64)
    sizes = np.bincount(codes, minlength=len(labels))
    if sizes.max() < 2 and not new_rows:
        raise DataError(
            f"every residual group of {name!r} has one row: a {structure.kind} correlation "
            "needs groups with several rows"
        )
    empty = np.zeros(0, dtype=np.int64)
    if isinstance(structure, AR1):
        if structure.time is not None:
            times = _times(frame, structure.time)
        else:  # nlme's ~ 1 | g: the order of the rows within their group
            times = pd.Series(codes).groupby(codes).cumcount().to_numpy(dtype=np.int64)
        order = np.lexsort((times, codes))
        prev, nxt = order[:-1], order[1:]
        same = codes[prev] == codes[nxt]
        prev, nxt = prev[same], nxt[same]
        gap = times[nxt] - times[prev]
        if np.any(gap == 0):
            k = int(np.flatnonzero(gap == 0)[0])
            raise DataError(
                f"AR(1) time column {structure.time!r} repeats the value {times[prev[k]]} "
                f"within group {labels[codes[prev[k]]]!r} of {name!r} (rows {prev[k]} and "
                f"{nxt[k]} of the data used): times must be distinct within a group"
            )
        return ResidualLayout(structure, name, tuple(columns), codes, list(labels), times,
                              prev, nxt, gap, sizes, -1.0, 1.0)  # fmt: skip
    lower = -1.0 / (int(sizes.max()) - 1) if sizes.max() > 1 else -1.0
    return ResidualLayout(structure, name, tuple(columns), codes, list(labels), None, empty,
                          empty, empty, sizes, lower, 1.0)  # fmt: skip


def new_layout(layout: ResidualLayout, data: pd.DataFrame) -> ResidualLayout:
    """A fitted structure laid out on new rows (prediction): grouped by the same columns
    (every row in one group if the fit had no group column), times from the same column."""
    structure = layout.structure
    labels = _display_columns(data)
    for name in structure.columns:
        if name not in labels:
            raise DataError(f"newdata lacks column {name!r} of the residual structure "
                            f"{structure!r}")  # fmt: skip
    frame = pd.DataFrame(
        {
            c: data[labels[c][0]].to_numpy()
            for c in dict.fromkeys([*structure.columns, *layout.group_columns])
        }
    )
    group = list(layout.group_columns) or None
    if isinstance(structure, AR1):
        again: ResidualStructure = AR1(time=structure.time, group=group)
    else:
        again = CompoundSymmetry(group=group)
    return resolve_residual(again, frame.reset_index(drop=True), [], new_rows=True)


def non_nested_factors(layout: ResidualLayout, blocks: list[RandomBlock]) -> list[str]:
    """Grouping factors of the random effects that some residual group spans several
    levels of. The random effects can be integrated out with the residual correlation
    from per-level statistics only where there are none (nlme's ``lme`` requires it)."""
    out = []
    for block in blocks:
        key = layout.codes * block.n_levels + block.codes
        if len(np.unique(key)) != layout.n_groups and block.group not in out:
            out.append(block.group)
    return out


def check_structure(residual: object) -> ResidualStructure | None:
    """``residual=``: None or a structure, else an :class:`ArgumentError`."""
    if residual is None or isinstance(residual, ResidualStructure):
        return residual
    raise ArgumentError(
        "residual must be bl.AR1(time=..., group=...) or bl.CompoundSymmetry(group=...), got "
        f"{residual!r}"
    )
