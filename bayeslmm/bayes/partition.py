"""ICC and R2 of a posterior, one value per draw, and their summary tables.

The ICC is Nakagawa & Schielzeth's (as R's ``performance::icc``, see
:mod:`bayeslmm.gaussian.partition`) computed from every draw of the population
parameters. The R2 is the Bayesian R2 of Gelman, Goodrich, Gabry & Vehtari (2019) as
brms' ``bayes_R2`` computes it: per draw, ``var(mu) / (var(mu) + var(y - mu))`` over the
fitted rows, with ``mu`` the conditional mean ``X beta + Z u`` (``conditional``) or the
fixed part ``X beta`` alone (``marginal``, brms' ``re_formula = NA``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ArgumentError
from ..gaussian.partition import VarianceParts, variance_parts
from ..spec.design import Design
from . import stack
from .effects import block_scale_draws
from .predict import linear_predictor
from .results import HDI_PROB, check_hdi_prob, draw_stats

#: draws x rows of the conditional mean held at once by :func:`r2_draws`
VALUES_AT_ONCE = 4_000_000


def variance_draws(idata, design: Design) -> VarianceParts:
    """:class:`~bayeslmm.gaussian.partition.VarianceParts` of every draw, (chain, draw)."""
    post = stack.posterior(idata)
    shape = (post.sizes["chain"], post.sizes["draw"])
    beta = post["beta"].values if "beta" in post else np.zeros(shape + (0,))
    covariances = []
    for block in design.blocks:
        tril = block_scale_draws(post, block)
        covariances.append(np.einsum("...ik,...jk->...ij", tril, tril))
    return variance_parts(design, beta, covariances, post["sigma"].values)


def _dataset(values: dict[str, np.ndarray], post: xr.Dataset) -> xr.DataArray:
    keys = list(values)
    stacked = np.stack([values[k] for k in keys], axis=-1)
    return xr.DataArray(stacked, dims=("chain", "draw", "component"),
                        coords={"chain": post.chain, "draw": post.draw,
                                "component": keys})  # fmt: skip


def icc_draws(idata, design: Design) -> xr.DataArray:
    """Per draw: the ICC of every grouping factor, then ``adjusted`` and ``conditional``;
    dims (chain, draw, component)."""
    if not design.blocks:
        raise ArgumentError(
            f"{design.spec.formula!r} has no random effects, so no intraclass correlation"
        )
    return _dataset(variance_draws(idata, design).icc(), stack.posterior(idata))


def r2_draws(idata, design: Design) -> xr.DataArray:
    """Per draw: Bayesian R2 ``conditional`` on the random effects and ``marginal`` (fixed
    effects only); dims (chain, draw, component). Reads the fitted rows in pieces of
    draws, so that draws x rows values never exceed :data:`VALUES_AT_ONCE`."""
    post = stack.posterior(idata)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    y = design.y
    step = max(1, VALUES_AT_ONCE // max(1, design.n_obs * n_chain))
    out = {"conditional": np.empty((n_chain, n_draw)), "marginal": np.empty((n_chain, n_draw))}
    Zs, codes = [b.Z for b in design.blocks], [b.codes for b in design.blocks]
    for start in range(0, n_draw, step):
        piece = post.isel(draw=slice(start, start + step))
        effects = [piece[f"u_{b.label}"].values for b in design.blocks]
        for key, mu in (
            ("conditional", linear_predictor(piece, design.X, Zs, codes, effects)),
            ("marginal", linear_predictor(piece, design.X, [], [], [])),
        ):
            fitted = mu.var(axis=-1, ddof=1)
            resid = (y - mu).var(axis=-1, ddof=1)
            total = fitted + resid
            with np.errstate(invalid="ignore", divide="ignore"):
                out[key][:, start : start + step] = np.where(total > 0, fitted / total, np.nan)
    return _dataset(out, post)


def draws_table(draws: xr.DataArray, hdi_prob: float | None,
                kinds: list[str] | None = None) -> pd.DataFrame:  # fmt: skip
    """mean, sd and HDI of every component of :func:`icc_draws` or :func:`r2_draws` (rows
    named by component); ``kinds`` adds a first column ``component`` (:func:`~bayeslmm.
    gaussian.partition.icc_kinds`)."""
    hdi_prob = check_hdi_prob(HDI_PROB if hdi_prob is None else hdi_prob)
    stats = draw_stats(draws, hdi_prob).to_dataframe()
    stats.index = pd.Index([str(c) for c in stats.index], name=None)
    if kinds is not None:
        stats.insert(0, "component", kinds)
    return stats
