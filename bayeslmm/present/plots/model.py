"""Figures of one Bayesian fit: data overview, trace and rank plots, posterior
predictive checks and residual diagnostics.

Pure drawing: the numbers come from :class:`~bayeslmm.bayes.model.LMM` (fitted means,
residuals, posterior predictive draws); trace and rank plots are ArviZ's
(:mod:`bayeslmm.bayes.stack` calls the installed ArviZ line). Each function returns its
:class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.ndimage
import scipy.stats
from matplotlib.figure import Figure

from ...bayes import stack
from ...errors import ArgumentError, UnknownNameError, check_seed

if TYPE_CHECKING:
    from ...bayes.model import LMM

MAX_LEGEND = 12  # levels named in a legend; beyond that colours only


def level_colors(n: int) -> list:
    """One colour per group level (tab10, tab20, then a continuous map)."""
    if n <= 10:
        return list(plt.get_cmap("tab10").colors[:n])
    if n <= 20:
        return list(plt.get_cmap("tab20").colors[:n])
    return list(plt.get_cmap("viridis")(np.linspace(0, 1, n)))


def _grid(
    n: int, ncols: int = 4, size: float = 2.6, sharey: bool = True
) -> tuple[Figure, np.ndarray]:
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + 0.6, size * nrows + 0.4),
                             squeeze=False, sharex=True, sharey=sharey)  # fmt: skip
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:n]


def legend_outside(ax: plt.Axes, **kwargs) -> None:
    """The axes' legend to the right of the plotting area, where it covers no data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  fontsize="small", title_fontsize="small", **kwargs)  # fmt: skip


def _legend(ax: plt.Axes, n_levels: int, title: str) -> None:
    if n_levels <= MAX_LEGEND:
        legend_outside(ax, title=title)


def data_overview(data: pd.DataFrame, response: str, predictor: str, group: str) -> Figure:
    """The response against a predictor, one colour per level of ``group``."""
    for col in (response, predictor, group):
        if col not in data.columns:
            raise UnknownNameError(f"column {col!r} is not in the data")
    levels = pd.unique(data[group])
    colors = level_colors(len(levels))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for level, color in zip(levels, colors, strict=True):
        rows = data[group] == level
        ax.scatter(data.loc[rows, predictor], data.loc[rows, response], color=color, s=18,
                   alpha=0.8, label=str(level))  # fmt: skip
    ax.set_xlabel(predictor)
    ax.set_ylabel(response)
    ax.set_title(f"{response} against {predictor}, by {group}")
    _legend(ax, len(levels), group)
    fig.tight_layout()
    return fig


def fitted(model: LMM) -> stack.Results:
    """The posterior of a fitted model, or an error saying what was passed instead."""
    if not (hasattr(model, "_posterior") and hasattr(model, "design")):
        raise ArgumentError(f"expected a fitted bayeslmm.LMM, got {type(model).__name__}")
    return model._posterior()


def _names(model: LMM) -> dict[str, str]:
    names = {"beta": "fixed", "sigma": "sigma (residual)"}
    for block in model.design.blocks:
        names[f"sd_{block.label}"] = f"sd | {block.label}"
        names[f"cor_{block.label}"] = f"cor | {block.label}"
    return names


def trace(model: LMM) -> Figure:
    """ArviZ trace plot of the population parameters (densities and chains)."""
    fig = stack.plot_trace(fitted(model), model.population_variables(), _names(model))
    fig.tight_layout()
    return fig


def rank(model: LMM) -> Figure:
    """ArviZ rank plot of the population parameters: flat bars when chains mix."""
    fig = stack.plot_rank(fitted(model), model.population_variables(), _names(model))
    fig.tight_layout()
    return fig


def _replicates(model: LMM, random_seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The observed response and the posterior predictive draws, (draws, rows)."""
    idata = fitted(model)
    if not stack.has_group(idata, "posterior_predictive"):
        model.posterior_predictive(random_seed=random_seed)
    response = model.design.response
    replicated = stack.group(idata, "posterior_predictive")[response]
    return np.asarray(model.design.y), replicated.values.reshape(-1, replicated.shape[-1])


def _kde(values: np.ndarray, grid: np.ndarray) -> np.ndarray | None:
    """Gaussian kernel density of ``values`` on the evenly spaced ``grid`` (None where they
    have no spread), binned: the values counted into the grid's cells and smoothed with
    Scott's bandwidth, O(rows + grid) however many rows (a direct sum is rows x grid)."""
    if values.size < 2 or np.ptp(values) == 0:
        return None
    step = grid[1] - grid[0]
    edges = np.append(grid - step / 2, grid[-1] + step / 2)
    counts = np.histogram(values, bins=edges)[0] / (values.size * step)
    bandwidth = np.std(values, ddof=1) * values.size ** -0.2  # scipy's gaussian_kde default
    return scipy.ndimage.gaussian_filter1d(counts, bandwidth / step, mode="constant",
                                           truncate=6.0)  # fmt: skip


def _density_check(ax, observed: np.ndarray, replicated: np.ndarray, num: int,
                   rng: np.random.Generator, legend: bool) -> None:  # fmt: skip
    """Densities of ``num`` replicated data sets, their mean and the observed data's."""
    chosen = replicated[rng.choice(len(replicated), size=min(num, len(replicated)),
                                   replace=False)]  # fmt: skip
    lo = min(observed.min(), np.quantile(chosen, 0.001))
    hi = max(observed.max(), np.quantile(chosen, 0.999))
    grid = np.linspace(lo, hi, 200)
    curves = [c for c in (_kde(r, grid) for r in chosen) if c is not None]
    for k, curve in enumerate(curves):
        ax.plot(grid, curve, color="#1f77b4", alpha=0.15, lw=0.8,
                label="replicated data" if k == 0 else None)  # fmt: skip
    if curves:
        ax.plot(grid, np.mean(curves, axis=0), color="#d95f02", ls="--", lw=1.5,
                label="mean of replicates")  # fmt: skip
    observed_curve = _kde(observed, grid)
    if observed_curve is not None:
        ax.plot(grid, observed_curve, color="black", lw=1.8, label="observed")
    ax.set_yticks([])
    if legend:
        ax.legend(fontsize="small")


def ppc(model: LMM, num_pp_samples: int = 100, random_seed: int | None = 0) -> Figure:
    """Posterior predictive check: density of the data against replicated data sets."""
    if isinstance(num_pp_samples, bool) or not isinstance(num_pp_samples, int | np.integer) \
            or num_pp_samples < 1:
        raise ArgumentError(f"num_pp_samples must be a positive integer, got {num_pp_samples!r}")
    check_seed("random_seed", random_seed)
    observed, replicated = _replicates(model, random_seed)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    _density_check(ax, observed, replicated, num_pp_samples, np.random.default_rng(random_seed),
                   legend=True)  # fmt: skip
    legend_outside(ax)  # keep it off the densities' tails
    ax.set_xlabel(model.design.response)
    ax.set_title("Posterior predictive check")
    fig.tight_layout()
    return fig


def ppc_by_group(
    model: LMM,
    group: str | None = None,
    max_levels: int = 12,
    num_pp_samples: int = 50,
    random_seed: int | None = 0,
) -> Figure:
    """Posterior predictive check per level of ``group`` (the first ``max_levels``)."""
    fitted(model)
    block = _block_of(model, group)  # before sampling replicates: a wrong name costs nothing
    for name, value in (("max_levels", max_levels), ("num_pp_samples", num_pp_samples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArgumentError(f"{name} must be a positive integer, got {value!r}")
    observed, replicated = _replicates(model, random_seed)
    shown = block.levels[:max_levels]
    fig, axes = _grid(len(shown), sharey=False)
    rng = np.random.default_rng(random_seed)
    for ax, (code, level) in zip(axes, enumerate(shown), strict=True):
        rows = np.flatnonzero(block.codes == code)
        _density_check(ax, observed[rows], replicated[:, rows], num_pp_samples, rng,
                       legend=False)  # fmt: skip
        ax.set_title(f"{block.group} = {level}", fontsize="small")
        ax.set_xlabel("")
    more = "" if len(block.levels) <= max_levels else f" (first {max_levels} levels)"
    fig.suptitle(f"Posterior predictive check by {block.group}{more}")
    fig.tight_layout()
    return fig


def prior_predictive(
    model: LMM, draws: int = 100, random_seed: int | None = 0, shown: int = 50
) -> Figure:
    """Prior predictive check: the density of data sets simulated from the priors alone
    (:meth:`~bayeslmm.LMM.prior_predictive`, thin lines, ``shown`` of ``draws``) against the
    data's (black), with the central 90% of the simulated values shaded. Needs no fit."""
    if not (hasattr(model, "prior_predictive") and hasattr(model, "design")):
        raise ArgumentError(f"expected a bayeslmm.LMM, got {type(model).__name__}")
    if isinstance(shown, bool) or not isinstance(shown, int) or shown < 1:
        raise ArgumentError(f"shown must be a whole number >= 1, got {shown!r}")
    response = model.design.response
    simulated = model.prior_predictive(draws=draws, random_seed=random_seed)
    simulated_y = stack.group(simulated, "prior_predictive")[response]
    values = np.asarray(simulated_y).reshape(-1, model.design.n_obs)
    y = np.asarray(model.design.y, dtype=float)
    lo, hi = np.quantile(values, [0.05, 0.95])
    first, last = np.quantile(values, [0.01, 0.99])
    edges = np.linspace(min(first, y.min()), max(last, y.max()), 61)
    centres = 0.5 * (edges[1:] + edges[:-1])
    width = edges[1] - edges[0]
    # histogram of every simulated data set at once: bin index per value, counted per row
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(centres) - 1)
    inside = (values >= edges[0]) & (values <= edges[-1])
    rows = np.repeat(np.arange(values.shape[0]), values.shape[1])
    counts = np.zeros((values.shape[0], len(centres)))
    np.add.at(counts, (rows[inside.ravel()], index.ravel()[inside.ravel()]), 1.0)
    density = counts / (values.shape[1] * width)
    observed, _ = np.histogram(y, bins=edges, density=True)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.axvspan(lo, hi, color="#dddddd", alpha=0.6, lw=0,
               label="central 90% of simulated values")  # fmt: skip
    for k, row in enumerate(density[:shown]):
        ax.plot(centres, row, color="#1f77b4", alpha=0.25, lw=0.8,
                label="data simulated from the priors" if k == 0 else None)  # fmt: skip
    ax.plot(centres, observed, color="black", lw=2, label="data")
    ax.set_xlabel(response)
    ax.set_ylabel("density")
    ax.set_title(f"Prior predictive check ({min(shown, values.shape[0])} of {values.shape[0]} "
                 "simulated data sets)")  # fmt: skip
    legend_outside(ax)
    fig.tight_layout()
    return fig


def _block_of(model: LMM, group: str | None):
    blocks = model.design.blocks
    if not blocks:
        raise ArgumentError("the model has no random terms")
    if group is None:
        return blocks[0]
    for block in blocks:
        if group in (block.group, block.label):
            return block
    raise UnknownNameError(f"{group!r} is not a grouping factor of the model; "
                   f"choose one of {sorted({b.group for b in blocks})}")  # fmt: skip


def residuals(model: LMM, group: str | None = None) -> Figure:
    """Residual diagnostics (posterior mean fit): against fitted values by group, their
    density against a normal curve, and a box plot per group."""
    fitted(model)
    block = _block_of(model, group)
    mean, resid = model.fitted(), model.residuals()
    colors = level_colors(block.n_levels)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.2, 1, 1.3]})
    ax = axes[0]
    for code, level in enumerate(block.levels):
        rows = block.codes == code
        ax.scatter(mean[rows], resid[rows], color=colors[code], s=14, alpha=0.8,
                   label=str(level))  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("fitted value (posterior mean)")
    ax.set_ylabel("residual")
    ax.set_title(f"Residuals against fitted (colours: {block.group}, as on the right)")

    ax = axes[1]
    ax.hist(resid, bins="auto", density=True, color="#cccccc", edgecolor="white")
    grid = np.linspace(resid.min(), resid.max(), 200)
    density = _kde(resid, grid)
    if density is not None:
        ax.plot(grid, density, color="black")
    ax.plot(grid, scipy.stats.norm.pdf(grid, 0, resid.std(ddof=1)), color="#d95f02", ls="--")
    ax.set_xlabel("residual")
    ax.set_title("Residual density (dashed: normal, same SD)")

    ax = axes[2]
    per_level = [resid[block.codes == code] for code in range(block.n_levels)]
    boxes = ax.boxplot(per_level, patch_artist=True, widths=0.6)
    for patch, color in zip(boxes["boxes"], colors, strict=True):
        patch.set_facecolor(color)
        patch.set_alpha(0.6)
    ax.set_xticks(np.arange(1, block.n_levels + 1), [str(lv) for lv in block.levels],
                  rotation=90 if block.n_levels > 8 else 0, fontsize="small")  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(block.group)
    ax.set_ylabel("residual")
    ax.set_title(f"Residuals by {block.group}")
    fig.tight_layout()
    return fig
