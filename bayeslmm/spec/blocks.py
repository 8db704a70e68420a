"""A random term evaluated on data: :class:`RandomBlock`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .formula import RandomTerm
from .levels import level_values


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


def _block_labels(terms: tuple[RandomTerm, ...]) -> list[str]:
    seen: dict[str, int] = {}
    labels = []
    for term in terms:
        k = seen.get(term.group, 0)
        labels.append(term.group if k == 0 else f"{term.group}.{k}")
        seen[term.group] = k + 1
    return labels
