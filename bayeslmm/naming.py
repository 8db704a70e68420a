"""Names of posterior dimensions shared by the model builders and the result tables."""

from __future__ import annotations

import numpy as np


def term_dim(label: str) -> str:
    """Dimension name of a block's columns."""
    return f"{label}_term"


def cor_dim(label: str) -> str:
    """Dimension name of a block's correlations (strict lower triangle, row-major)."""
    return f"{label}_cor"


def cor_pairs(columns: list[str]) -> list[str]:
    """Coordinates ``"a,b"`` of the correlations, in ``np.tril_indices(q, -1)`` order."""
    rows, cols = np.tril_indices(len(columns), k=-1)
    return [f"{columns[j]},{columns[i]}" for i, j in zip(rows, cols, strict=True)]
