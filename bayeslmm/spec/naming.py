"""Names shared by priors, model builders and result tables: parameters, dims, coords."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class ParameterNames:
    """Names of the model's parameters, shared by priors, summaries and outputs."""

    fixed: list[str]
    sd: list[list[str]]  # per random block, one per column
    cor: list[str | None]  # per random block; None where uncorrelated
    cor_pairs: list[list[str]]  # per block, "cor(a,b|g)" for the lower triangle

    @classmethod
    def from_design(cls, design: Design) -> ParameterNames:
        sd, cor, pairs = [], [], []
        taken: set[str] = set()
        for block in design.blocks:
            names = []
            for col in block.columns:
                name = f"sd({col}|{block.group})"
                if name in taken:
                    name = f"sd({col}|{block.label})"
                taken.add(name)
                names.append(name)
            sd.append(names)
            cor_name = f"cor({block.label})" if block.correlated else None
            cor.append(cor_name)
            pairs.append(
                [f"cor({pair}|{block.label})" for pair in cor_pairs(block.columns)]
                if block.correlated
                else []
            )
        return cls(fixed=list(design.fixed_names), sd=sd, cor=cor, cor_pairs=pairs)

    def all(self) -> list[str]:
        out = list(self.fixed)
        for names in self.sd:
            out.extend(names)
        out.extend(c for c in self.cor if c)
        out.append("sigma")
        return out
