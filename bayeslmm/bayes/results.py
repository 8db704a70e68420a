"""Tables from posterior draws: summary, fixef, ranef, coef, varcorr.

Everything here reads the InferenceData written by either sampling method, using the
variable names documented in :mod:`bayeslmm.bayes.explicit_graph`.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ArgumentError, UnknownNameError
from ..spec.design import Design
from ..spec.naming import ParameterNames, cor_dim, term_dim
from . import stack
from .stack import Results, hdi_columns

HDI_PROB = 0.94
STAT_COLUMNS = ["mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]


def check_hdi_prob(hdi_prob: object) -> float:
    """An HDI probability strictly between 0 and 1, or an :class:`ArgumentError`."""
    if (
        isinstance(hdi_prob, bool | np.bool_)
        or not isinstance(hdi_prob, numbers.Real)
        or not 0 < hdi_prob < 1
    ):
        raise ArgumentError(
            f"hdi_prob must be a number between 0 and 1, e.g. 0.95; got {hdi_prob!r}"
        )
    return float(hdi_prob)


def hdi_of(table: pd.DataFrame) -> list[str]:
    """The HDI bound columns of a summary table, whatever its level."""
    return [c for c in table.columns if str(c).startswith("hdi_")]


def population_draws(idata: Results, design: Design) -> dict[str, xr.DataArray]:
    """Draws of every population parameter under its lme4-style name.

    Order: random-effect SDs and correlations per block, ``sigma`` (or a negative
    binomial's ``theta``), the residual correlation parameter (``phi``, ``rho``) if any,
    fixed effects.
    """
    post = stack.posterior(idata)
    names = ParameterNames.from_design(design)
    out: dict[str, xr.DataArray] = {}
    for block, sd_names, pairs in zip(design.blocks, names.sd, names.cor_pairs, strict=True):
        dim = term_dim(block.label)
        sd = post[f"sd_{block.label}"]
        for col, name in zip(block.columns, sd_names, strict=True):
            out[name] = sd.sel({dim: col}, drop=True)
        if block.correlated:
            cor = post[f"cor_{block.label}"]
            for k, name in enumerate(pairs):
                out[name] = cor.isel({cor_dim(block.label): k}, drop=True)
    if "sigma" in post:  # a non-Gaussian family has none
        out["sigma"] = post["sigma"]
    if "theta" in post:  # the negative binomial's dispersion
        out["theta"] = post["theta"]
    if names.residual:
        out[names.residual] = post[names.residual]
    if "beta" in post:
        for name in design.fixed_names:
            out[name] = post["beta"].sel(fixed=name, drop=True)
    return out


def _component(name: str, residual: str | None = None, dispersion: str | None = None) -> str:
    if name.startswith("sd(") or name.startswith("cor("):
        return "random"
    return "residual" if name in ("sigma", residual, dispersion) else "fixed"


def summary_table(
    idata: Results, design: Design, hdi_prob: float = HDI_PROB
) -> pd.DataFrame:
    """Posterior mean, sd, HDI, MCSE, ESS and R-hat of every population parameter."""
    hdi_prob = check_hdi_prob(hdi_prob)
    draws = population_draws(idata, design)
    table = stack.summary(xr.Dataset(draws), hdi_prob)
    residual = design.residual.parameter if design.residual is not None else None
    # a negative binomial's theta (not a fixed effect that a Gaussian model names so)
    dispersion = "theta" if "theta" in stack.posterior(idata) else None
    table.insert(0, "component", [_component(n, residual, dispersion) for n in table.index])
    return table


def draw_stats(da: xr.DataArray, hdi_prob: float) -> xr.Dataset:
    """mean, sd (divisor draws - 1) and HDI over (chain, draw) of every element of a
    (chain, draw, ...) array; the HDI bounds are named by :func:`hdi_columns`."""
    lo, hi = hdi_columns(hdi_prob)
    lower, upper = stack.hdi(da, hdi_prob)
    return xr.Dataset(
        {
            "mean": da.mean(("chain", "draw")),
            "sd": da.std(("chain", "draw"), ddof=1),
            lo: lower,
            hi: upper,
        }
    )


def _long_stats(da: xr.DataArray, dims: tuple[str, str], hdi_prob: float) -> pd.DataFrame:
    """mean, sd and HDI of every element of a (chain, draw, *dims) array."""
    stats = draw_stats(da, hdi_prob)
    frame = (
        stats.to_dataframe()
        .reset_index()
        .rename(columns=dict(zip(dims, ("level", "term"), strict=True)))
    )
    return frame


def draws_summary(da: xr.DataArray, hdi_prob: float = HDI_PROB) -> pd.DataFrame:
    """Posterior mean, sd and HDI of each element of a (chain, draw, row) array: one
    table row per element, in order (for predictions and grids of them)."""
    stats = draw_stats(da, check_hdi_prob(hdi_prob))
    return pd.DataFrame({name: stats[name].values for name in stats.data_vars})


def ranef_table(
    idata: Results, design: Design, hdi_prob: float = HDI_PROB
) -> dict[str, pd.DataFrame]:
    """Per grouping factor: one row per (level, term) with mean, sd and HDI."""
    hdi_prob = check_hdi_prob(hdi_prob)
    out: dict[str, list[pd.DataFrame]] = {}
    for block in design.blocks:
        da = stack.posterior(idata)[f"u_{block.label}"]
        frame = _long_stats(da, (block.group, term_dim(block.label)), hdi_prob)
        out.setdefault(block.group, []).append(frame)
    tables = {}
    for group, frames in out.items():
        table = pd.concat(frames, ignore_index=True)
        levels = pd.Categorical(table["level"], categories=design.groups()[group], ordered=True)
        table = table.assign(level=levels).sort_values(["level"], kind="stable")
        block = next(b for b in design.blocks if b.group == group)
        values = dict(zip(block.levels, block.level_values, strict=True))
        table["level"] = pd.Index(table["level"].astype(str).map(values),
                                  dtype=block.level_values.dtype)  # the factor's type
        tables[group] = table.set_index(["level", "term"])
    return tables


def group_coefficient_draws(idata: Results, design: Design, group: str) -> xr.DataArray:
    """Draws of fixed + random coefficients per level of ``group``: (chain, draw, level, coef)."""
    post = stack.posterior(idata)
    blocks = [b for b in design.blocks if b.group == group]
    if not blocks:
        raise UnknownNameError(
            f"no random term has grouping factor {group!r}; have {list(design.groups())}"
        )
    columns = list(design.fixed_names)
    for block in blocks:
        columns += [c for c in block.columns if c not in columns]
    levels = blocks[0].levels
    shape = (post.sizes["chain"], post.sizes["draw"], len(levels), len(columns))
    values = np.zeros(shape)
    if "beta" in post:
        values[..., : len(design.fixed_names)] = post["beta"].values[:, :, None, :]
    for block in blocks:
        u = post[f"u_{block.label}"].values
        for j, col in enumerate(block.columns):
            values[..., columns.index(col)] += u[..., j]
    return xr.DataArray(
        values,
        dims=("chain", "draw", "level", "coef"),
        coords={"chain": post.chain, "draw": post.draw, "level": levels, "coef": columns},
    )


def coef_table(idata: Results, design: Design) -> dict[str, pd.DataFrame]:
    """Per grouping factor: levels x coefficients, posterior means of fixed + random.

    The layout of lme4's ``coef()``; random columns absent from the fixed part are added.
    """
    out = {}
    for group in design.groups():
        draws = group_coefficient_draws(idata, design, group)
        out[group] = draws.mean(("chain", "draw")).to_pandas()
        block = next(b for b in design.blocks if b.group == group)
        out[group].index = block.level_values  # the factor's type (draws' coords: labels)
        out[group].index.name = group
        out[group].columns.name = None
    return out


def varcorr_table(summary: pd.DataFrame, design: Design) -> pd.DataFrame:
    """Variance components in lme4's ``as.data.frame(VarCorr())`` layout (posterior stats);
    a residual structure adds the row ``("Residual", "phi")`` (or ``"rho"``)."""
    names = ParameterNames.from_design(design)
    rows = []
    for block, sd_names, pairs in zip(design.blocks, names.sd, names.cor_pairs, strict=True):
        for col, name in zip(block.columns, sd_names, strict=True):
            rows.append((block.label, col, None, name))
        lower = zip(*np.tril_indices(block.n_terms, k=-1), strict=True) if block.correlated else []
        for (i, j), name in zip(lower, pairs, strict=True):
            rows.append((block.label, block.columns[j], block.columns[i], name))
    if "sigma" in summary.index:  # a non-Gaussian family has none
        rows.append(("Residual", None, None, "sigma"))
    if names.residual:
        rows.append(("Residual", names.residual, None, names.residual))
    stats = summary.loc[[r[3] for r in rows], ["mean", "sd", *hdi_of(summary)]]
    frame = pd.DataFrame(rows, columns=["grp", "var1", "var2", "parameter"])
    return pd.concat([frame, stats.reset_index(drop=True)], axis=1)
