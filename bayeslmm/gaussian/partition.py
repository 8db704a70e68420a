"""Variance partition of a Gaussian LMM: ICC and R2 of Nakagawa & Schielzeth.

The variances follow ``insight::get_variance`` (as R's ``performance::icc`` and
``performance::r2_nakagawa`` use them; Nakagawa, Johnson & Schielzeth 2017):

- fixed: ``var(X beta)`` over the fitted rows (divisor n - 1);
- random, per block k: the mean over the rows of ``z_i' Sigma_k z_i`` (Johnson 2014),
  ``trace(Sigma_k Z_k'Z_k) / n``; for a random intercept that is its variance;
- residual: ``sigma^2``, the variance of one residual (also with AR(1) or compound
  symmetry, whose correlations leave each residual's variance ``sigma^2``).

Every function is vectorised over leading axes (posterior draws), and reads only the
design's sums, so that a Dask DataFrame's design needs no pass over its rows.

Where insight 0.19.0 differs (checked against it in ``tests/test_partition.py``): it takes
a random slope's values from the fixed-effects matrix, so a slope absent from the fixed
part is left out of its random variance (it warns); it sums the VarCorr groups named like
``ranef()``'s, so a second block of one factor (``(0 + Days | Subject)`` beside ``(1 |
Subject)``) is left out too; and for a singular fit it returns NA. Here every block counts,
with its own columns ``Z_k``, and a singular fit has its (boundary) values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..spec.design import Design
from .statistics import design_sums


@dataclass(frozen=True)
class DesignMoments:
    """The moments of the fitted rows the variances need.

    Attributes
    ----------
    n
        Rows.
    x_cov
        Covariance (divisor n - 1) of the fixed-effects columns, (p, p).
    z_second
        Per random block, ``Z_k'Z_k / n``, (q_k, q_k).
    """

    n: int
    x_cov: np.ndarray
    z_second: list[np.ndarray]

    @classmethod
    def of(cls, design: Design) -> DesignMoments:
        layout, sums = design_sums(design)
        n = int(sums.n)
        mean = sums.moments.mean[1 : 1 + design.n_fixed] if n else np.zeros(design.n_fixed)
        x_cov = (sums.XtX - n * np.outer(mean, mean)) / max(n - 1, 1)
        z_second: list[np.ndarray | None] = [None] * len(design.blocks)
        for f, blocks in enumerate(layout.blocks):
            ztz = sums.within(layout, f)[0].sum(axis=0)
            start = 0
            for k in blocks:
                q = design.blocks[k].n_terms
                z_second[k] = ztz[start : start + q, start : start + q] / n
                start += q
        return cls(n, x_cov, z_second)


@dataclass
class VarianceParts:
    """Variances of a fit, or of every posterior draw (arrays of the draws' shape).

    ``random`` is keyed by grouping factor (blocks of one factor added up), in the order
    of the formula.
    """

    fixed: np.ndarray
    random: dict[str, np.ndarray]
    residual: np.ndarray

    @property
    def random_total(self) -> np.ndarray:
        return sum(self.random.values(), np.zeros_like(self.residual))

    def icc(self) -> dict[str, np.ndarray]:
        """Per grouping factor its share of random + residual variance; then ``adjusted``
        (random / (random + residual)) and ``conditional`` (random / everything).

        With random slopes a factor's share uses its mean variance over the rows, so the
        shares add up to the adjusted ICC (``performance::icc(by_group = TRUE)`` takes the
        intercept variance alone there, and warns that it is not accurate)."""
        rand = self.random_total
        denom = rand + self.residual
        out = {group: v / denom for group, v in self.random.items()}
        out["adjusted"] = rand / denom
        out["conditional"] = rand / (denom + self.fixed)
        return out

    def r2(self) -> dict[str, np.ndarray]:
        """Marginal (fixed / everything) and conditional ((fixed + random) / everything) R2."""
        rand = self.random_total
        total = self.fixed + rand + self.residual
        return {"marginal": self.fixed / total, "conditional": (self.fixed + rand) / total}


def icc_kinds(design: Design) -> list[str]:
    """The ``component`` column of an ICC table: ``group`` for each grouping factor's row,
    ``total`` for the adjusted and conditional ICC."""
    return ["group"] * len(design.groups()) + ["total", "total"]


def variance_parts(
    design: Design,
    beta: np.ndarray,
    covariances: list[np.ndarray],
    sigma: np.ndarray,
    moments: DesignMoments | None = None,
) -> VarianceParts:
    """The variances of fixed effects ``beta`` (..., p), random-effect covariances (one
    (..., q_k, q_k) array per block) and residual SD ``sigma`` (...)."""
    m = moments or DesignMoments.of(design)
    beta = np.asarray(beta, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    if design.n_fixed:
        fixed = np.einsum("...i,ij,...j->...", beta, m.x_cov, beta)
    else:
        fixed = np.zeros_like(sigma)
    fixed = np.maximum(fixed, 0.0)  # rounding of a constant X beta
    random: dict[str, np.ndarray] = {}
    for block, cov, second in zip(design.blocks, covariances, m.z_second, strict=True):
        part = np.einsum("...ij,ij->...", np.asarray(cov, dtype=float), second)
        random[block.group] = random.get(block.group, 0.0) + part
    return VarianceParts(fixed=fixed, random=random, residual=sigma**2)
