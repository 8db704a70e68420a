"""Posterior predictions for new rows, with draws for unseen group levels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse
import xarray as xr

from ..errors import ArgumentError, DataError, UnknownNameError, interval_level
from ..gaussian.residual import ResidualWeights, conditional_loglik, residual_noise
from ..spec.design import Design, new_design
from ..spec.residual import new_layout
from . import stack
from .effects import block_scale_draws
from .results import HDI_PROB, draw_stats
from .sampling import whole_number
from .stack import Results

KINDS = ("mean", "response")


def prediction_arguments(
    data: pd.DataFrame | None,
    newdata: pd.DataFrame | None,
    summary: object,
    level: float | None,
    hdi_prob: float | None,
) -> tuple[pd.DataFrame | None, float]:
    """``predict()``'s arguments every model shares, checked: the rows (``data``, or its
    other name ``newdata``) and the interval level of ``summary=True``."""
    if newdata is not None:
        if data is not None:
            raise ArgumentError("give the rows to predict as data or as newdata, not both")
        data = newdata
    if not isinstance(summary, bool | np.bool_):
        raise ArgumentError(f"summary must be True or False, got {summary!r}")
    if (level is not None or hdi_prob is not None) and not summary:
        given = "level" if level is not None else "hdi_prob"
        raise ArgumentError(f"{given} sets the interval of summary=True; the draws "
                            "(summary=False) have none")  # fmt: skip
    return data, interval_level(level, hdi_prob, HDI_PROB)


def prediction_table(draws: xr.DataArray, level: float, index: pd.Index) -> pd.DataFrame:
    """``predict(summary=True)``: mean, sd and HDI per predicted row, indexed as its rows."""
    table = draw_stats(draws, level).to_dataframe()
    table.index = index
    return table


def linear_predictor(
    post: xr.Dataset,
    X: np.ndarray,
    Zs: list[np.ndarray],
    codes: list[np.ndarray],
    effects: list[np.ndarray],
) -> np.ndarray:
    """Draws of ``X beta + sum_k rowwise(Z_k * u_k[codes_k])``: (chain, draw, n).

    Each block's ``Z_k`` spread over its levels is a sparse (n, levels x terms) matrix, so
    every product is one BLAS or sparse product over all draws (no (draws, n, terms)
    gather)."""
    shape = (post.sizes["chain"], post.sizes["draw"])
    mu = np.zeros((shape[0] * shape[1], X.shape[0]))
    if "beta" in post:
        mu += post["beta"].values.reshape(mu.shape[0], -1) @ X.T
    for Z, code, u in zip(Zs, codes, effects, strict=True):
        n, q = Z.shape
        if len(code) and (code.min() < 0 or code.max() >= u.shape[2]):
            raise ValueError(f"level codes outside 0..{u.shape[2] - 1}")  # sparse: no check
        spread = scipy.sparse.csr_matrix(
            (Z.ravel(), (code[:, None] * q + np.arange(q)).ravel(), np.arange(0, n * q + 1, q)),
            shape=(n, u.shape[2] * q),
        )
        mu += (spread @ u.reshape(mu.shape[0], -1).T).T
    return mu.reshape(*shape, X.shape[0])


def log_likelihood(idata: Results, design: Design) -> xr.Dataset:
    """Pointwise Normal log-likelihood of the fitted rows, given all parameters.

    With correlated residuals the rows do not factorise: each row's value is its density
    given every other row, ``log p(y_i | y_-i, theta)`` (:func:`bayeslmm.gaussian.residual.
    conditional_loglik`), which PSIS-LOO by observation needs (Bürkner, Gabry & Vehtari
    2021, as brms does for ``ar()`` and ``cosy()`` terms)."""
    post = stack.posterior(idata)
    effects = [post[f"u_{b.label}"].values for b in design.blocks]
    mu = linear_predictor(
        post, design.X, [b.Z for b in design.blocks], [b.codes for b in design.blocks], effects
    )
    sigma = post["sigma"].values[..., None]
    if design.residual is None:
        resid = (design.y - mu) / sigma
        values = -0.5 * resid**2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    else:
        weights = ResidualWeights.from_layout(design.residual)
        shape = mu.shape
        phi = post[design.residual.parameter].values.reshape(-1)
        values = conditional_loglik(weights, (design.y - mu).reshape(-1, shape[-1]),
                                    sigma.reshape(-1), phi).reshape(shape)  # fmt: skip
    da = xr.DataArray(
        values,
        dims=("chain", "draw", "obs"),
        coords={"chain": post.chain, "draw": post.draw, "obs": np.arange(design.n_obs)},
    )
    return xr.Dataset({design.response: da})


def predict_draws(
    idata: Results,
    design: Design,
    newdata: pd.DataFrame,
    *,
    include_random: bool = True,
    allow_new_levels: bool = True,
    kind: str = "mean",
    random_seed: int | None = None,
) -> xr.DataArray:
    """Posterior draws of the mean (or of new responses) for ``newdata``.

    Parameters
    ----------
    idata
        Posterior of a fitted model.
    design
        Its design.
    newdata
        Rows to predict; must hold every predictor and grouping column (with
        ``include_random=False`` only the fixed effects' columns).
    include_random
        Add the group effects (``False``: population-level predictions, ``X beta``).
    allow_new_levels
        A level unseen in fitting gets a fresh effect drawn, for every posterior draw,
        from the fitted population distribution; ``False`` raises instead.
    kind
        ``"mean"`` for the linear predictor, ``"response"`` to add residual noise (with a
        residual structure, correlated among the new rows of one residual group as the
        structure says, e.g. ``phi^|t_i - t_j|``; not conditioned on the fitted rows'
        residuals).
    random_seed
        Seed for new-level effects and residual noise.

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, obs)``.
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise ArgumentError(f"kind must be one of {KINDS}, got {kind!r}")
    for name, flag in (("include_random", include_random), ("allow_new_levels", allow_new_levels)):
        if not isinstance(flag, bool | np.bool_):
            raise ArgumentError(f"{name} must be True or False, got {flag!r}")
    if random_seed is not None:
        whole_number("random_seed", random_seed, minimum=0)
    rng = np.random.default_rng(random_seed)
    post = stack.posterior(idata)
    if not isinstance(newdata, pd.DataFrame):
        raise ArgumentError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    if kind == "response" and design.residual is not None:
        lacking = [c for c in dict.fromkeys([*design.residual.structure.columns,
                                             *design.residual.group_columns])
                   if c not in set(map(str, newdata.columns))]  # fmt: skip
        if lacking:
            raise UnknownNameError(
                f"newdata lacks column(s) {lacking} of the residual structure "
                f"{design.residual.structure!r}, which kind='response' needs to correlate the "
                "new residuals"
            )
    nd = new_design(design, newdata, include_random=include_random)
    effects = []
    if include_random:
        for block, unseen in zip(design.blocks, nd.new_levels, strict=True):
            u = post[f"u_{block.label}"].values
            if unseen:
                if not allow_new_levels:
                    raise DataError(
                        f"newdata has level(s) {unseen[:5]} of {block.group!r} not seen in "
                        "fitting; pass allow_new_levels=True to draw them from the population"
                    )
                tril = block_scale_draws(post, block)
                z = rng.standard_normal(u.shape[:2] + (len(unseen), block.n_terms))
                u = np.concatenate([u, np.einsum("cdij,cdmj->cdmi", tril, z)], axis=2)
            effects.append(u)
    if include_random:
        mu = linear_predictor(post, nd.X, nd.Z, nd.codes, effects)
    else:
        mu = linear_predictor(post, nd.X, [], [], [])
    shape = mu.shape
    n_new = shape[-1]
    if kind == "response":
        if design.residual is None:
            noise = rng.standard_normal(shape)
        else:
            layout = new_layout(design.residual, newdata)
            phi = post[design.residual.parameter].values.reshape(-1)
            noise = residual_noise(layout, phi, rng, len(phi)).reshape(shape)
        mu = mu + post["sigma"].values[..., None] * noise
    return xr.DataArray(
        mu,
        dims=("chain", "draw", "obs"),
        coords={"chain": post.chain, "draw": post.draw, "obs": np.arange(n_new)},
        name=f"{design.response}_{kind}",
    )
