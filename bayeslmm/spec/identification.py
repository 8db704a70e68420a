"""Random terms the data cannot identify, found when the design is built (a warning each,
before any fit): lme4 fits them and reports a singular fit or a convergence warning; a
sampler wanders along the ridge (R-hat far above 1.01), which says nothing of the cause.

- **A term within the fixed effects' span**: every column of every level of the term is a
  combination of the fixed-effects columns (``y ~ year + (1 | year)``). The fixed effects
  already give each level its own value, and only the prior sets the term's spread.
- **A slope constant within every level of its factor**, beside an intercept for that
  factor (``(1 + treatment | litter)`` with treatment given per litter): each level's
  slope and intercept add up to one number, and the two spreads are told apart only by
  how the levels' effects spread with the predictor.

Both are checked with sums over rows by level (``np.bincount``), in one pass per column.
A Dask design (:mod:`~bayeslmm.spec.partitioned`) is not checked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import IdentificationWarning, warn
from .blocks import RandomBlock

#: A level's column counts as in the fixed effects' span (or a slope as constant within
#: a level) when what is left of its sum of squares is below this share of it.
TOLERANCE = 1e-9


def check_identified(basis: np.ndarray | None, blocks: Sequence[RandomBlock]) -> None:
    """Warn, naming the term, the factor and the column, for each random term that the
    fixed effects absorb (``basis``: an orthonormal basis of their columns, the Q of
    their full-rank matrix's QR; None: no rows) and each slope constant within every
    level of its factor."""
    if blocks and basis is not None and basis.shape[1]:
        for block in blocks:
            if _within_span(basis, block):
                warn(
                    f"random term {block.term}: the fixed effects already give every level of "
                    f"{block.group} its own value (each of the term's columns, level by level, "
                    "is a combination of the fixed-effect columns), so the data cannot tell "
                    "its spread from the fixed effects and only its prior sets its SD; "
                    f"remove the term, or the fixed effect of {block.group}",
                    IdentificationWarning,
                )
    for block, columns in _constant_slopes(blocks):
        named = ", ".join(columns)
        verb, them = ("does", "it") if len(columns) == 1 else ("do", "them")
        warn(
            f"random term {block.term}: {named} {verb} not vary within any level of "
            f"{block.group}, so each level's slope adds to its intercept as one number, and "
            f"the data tell their spreads apart only by how {block.group}'s effects spread "
            f"with {named}: expect a singular fit (lme4) or a sampler that does not "
            f"converge; {named} belong{'s' if len(columns) == 1 else ''} in the fixed "
            f"effects alone (remove {them} from the term)",
            IdentificationWarning,
        )


def _within_span(basis: np.ndarray, block: RandomBlock) -> bool:
    """Every level's part of every column of ``block`` in the span of ``basis`` (an
    orthonormal basis of the fixed effects): its sum of squares equals that of its
    projection, ``sum_k (sum_i q_ik z_i)^2`` over the level's rows."""
    n_levels = block.n_levels
    for z in block.Z.T:
        square = np.bincount(block.codes, z * z, n_levels)
        projected = sum(np.bincount(block.codes, q * z, n_levels) ** 2 for q in basis.T)
        if np.any(square - projected > TOLERANCE * square):
            return False
    return True


def _constant_slopes(blocks: Sequence[RandomBlock]) -> list[tuple[RandomBlock, list[str]]]:
    """``(block, columns)`` for each block with columns, other than an intercept, that
    are constant within every level of a factor with an intercept among its terms (and
    vary between levels)."""
    found = []
    by_factor: dict[str, list[RandomBlock]] = {}
    for block in blocks:
        by_factor.setdefault(block.group, []).append(block)
    for factor_blocks in by_factor.values():
        intercepts = {(id(b), j) for b in factor_blocks for j, z in enumerate(b.Z.T)
                      if np.all(z == 1.0)}  # fmt: skip
        if not intercepts:
            continue
        for block in factor_blocks:
            counts = np.maximum(np.bincount(block.codes, minlength=block.n_levels), 1)
            constant = []
            for j, z in enumerate(block.Z.T):
                if (id(block), j) in intercepts:
                    continue
                means = np.bincount(block.codes, z, block.n_levels) / counts
                within = np.sum((z - means[block.codes]) ** 2)
                total = np.sum((z - z.mean()) ** 2)
                if total > 0 and within <= TOLERANCE * total:
                    constant.append(block.columns[j])
            if constant:
                found.append((block, constant))
    return found
