"""Names shared by priors, model builders and result tables: parameters, dims, coords."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError

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


def coords_of(design: Design, obs: bool = True) -> dict[str, list[str]]:
    """Coordinates of every dimension used by the model (the rows' ``obs`` only if asked:
    a model that integrates the random effects out has no per-row variable)."""
    coords: dict[str, list[str]] = {"fixed": list(design.fixed_names)}
    for block in design.blocks:
        coords[block.group] = list(block.levels)
        coords[term_dim(block.label)] = list(block.columns)
        if block.correlated:
            coords[cor_dim(block.label)] = cor_pairs(block.columns)
    if obs:
        coords["obs"] = list(range(design.n_obs))
    return coords


@dataclass(frozen=True)
class ParameterNames:
    """Names of the model's parameters, shared by priors, summaries and outputs."""

    fixed: list[str]
    sd: list[list[str]]  # per random block, one per column
    cor: list[str | None]  # per random block; None where uncorrelated
    cor_pairs: list[list[str]]  # per block, "cor(a,b|g)" for the lower triangle
    residual: str | None = None  # the residual correlation parameter ("phi", "rho"), if any

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
        residual = design.residual.parameter if design.residual is not None else None
        names = cls(fixed=list(design.fixed_names), sd=sd, cor=cor, cor_pairs=pairs,
                    residual=residual)  # fmt: skip
        others = {"sigma", *(n for block in sd for n in block), *(c for c in cor if c)}
        others |= {residual} if residual else set()
        clash = sorted(set(names.fixed) & others)
        if clash:
            what = "the residual SD is 'sigma'" + (
                f", the residual correlation {residual!r}" if residual else ""
            )
            raise DataError(
                f"fixed effect(s) {clash} share their name with a variance parameter "
                f"({what}); rename the column(s)"
            )
        dims = {"fixed", "obs", "chain", "draw", "hdi"}
        for block in design.blocks:
            dims |= {term_dim(block.label), cor_dim(block.label)}
        taken = sorted({b.group for b in design.blocks} & dims)
        if taken:
            raise DataError(f"grouping factor(s) {taken} would share their name with a "
                            "dimension of the posterior; rename the column(s)")  # fmt: skip
        return names

    def all(self) -> list[str]:
        out = list(self.fixed)
        for names in self.sd:
            out.extend(names)
        out.extend(c for c in self.cor if c)
        out.append("sigma")
        if self.residual:
            out.append(self.residual)
        return out
