"""A table that prints as its text block: what ``summary()`` returns for every result.

Below every layer (as :mod:`bayeslmm.errors`), so that Bayesian and classical results
share one kind of summary object.
"""

from __future__ import annotations

import pandas as pd


class SummaryTable(pd.DataFrame):
    """A summary's table: a DataFrame whose printed form (``repr``, ``str``) is the
    lme4-like block (``text``), so that a REPL shows the summary once. Any operation on it
    (``.loc``, arithmetic, ``.copy()``) gives a plain DataFrame; ``.table`` is the table
    itself."""

    _metadata = ["text"]

    @property
    def _constructor(self):
        return pd.DataFrame

    @property
    def table(self) -> pd.DataFrame:
        """The summary as a plain DataFrame."""
        return pd.DataFrame(self)

    def __repr__(self) -> str:
        return getattr(self, "text", None) or pd.DataFrame.__repr__(self)

    __str__ = __repr__

    def _repr_html_(self) -> str | None:  # notebooks: the block, not the HTML table
        return None


def summary_object(table: pd.DataFrame, text: str) -> SummaryTable:
    """``table`` as a :class:`SummaryTable` printed as ``text``."""
    out = SummaryTable(table)
    out.text = text
    return out
