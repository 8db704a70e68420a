"""Names of posterior dimensions shared by the model builders and the result tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .design import Design

PARAMETRIZATIONS = ("noncentered", "centered")


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


def coords_of(design: Design) -> dict[str, list[str]]:
    """Coordinates of every dimension used by the model."""
    coords: dict[str, list[str]] = {"fixed": list(design.fixed_names)}
    for block in design.blocks:
        coords[block.group] = list(block.levels)
        coords[term_dim(block.label)] = list(block.columns)
        if block.correlated:
            coords[cor_dim(block.label)] = cor_pairs(block.columns)
    coords["obs"] = list(range(design.n_obs))
    return coords
