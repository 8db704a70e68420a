"""Figures of one Bayesian fit: data overview, trace and rank plots, posterior
predictive checks and residual diagnostics.

Pure drawing: the numbers come from :class:`~bayeslmm.bayes.model.LMM` (fitted means,
residuals, posterior predictive draws) and ArviZ. Each function returns its
:class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.stats
from matplotlib.figure import Figure

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


def fitted(model: LMM) -> az.InferenceData:
    """The posterior of a fitted model, or an error saying what was passed instead."""
    if not (hasattr(model, "_posterior") and hasattr(model, "design")):
        raise ArgumentError(f"expected a fitted bayeslmm.LMM, got {type(model).__name__}")
    return model._posterior()


def _labeller(model: LMM) -> az.labels.MapLabeller:
    names = {"beta": "fixed", "sigma": "sigma (residual)"}
    for block in model.design.blocks:
        names[f"sd_{block.label}"] = f"sd | {block.label}"
        names[f"cor_{block.label}"] = f"cor | {block.label}"
    return az.labels.MapLabeller(var_name_map=names)


def trace(model: LMM) -> Figure:
    """ArviZ trace plot of the population parameters (densities and chains)."""
    axes = az.plot_trace(fitted(model), var_names=model.population_variables(),
                         labeller=_labeller(model), compact=False)  # fmt: skip
    fig = np.asarray(axes).ravel()[0].figure
    fig.tight_layout()
    return fig


def rank(model: LMM) -> Figure:
    """ArviZ rank plot of the population parameters: flat bars when chains mix."""
    axes = az.plot_rank(fitted(model), var_names=model.population_variables(),
                        labeller=_labeller(model), kind="bars")  # fmt: skip
    fig = np.asarray(axes).ravel()[0].figure
    fig.tight_layout()
    return fig


def _predictive(model: LMM, random_seed: int | None) -> az.InferenceData:
    idata = fitted(model)
    if "posterior_predictive" not in idata.groups():
        model.posterior_predictive(random_seed=random_seed)
    return idata


def _n_draws(idata: az.InferenceData) -> int:
    post = idata.posterior
    return int(post.sizes["chain"] * post.sizes["draw"])


def ppc(model: LMM, num_pp_samples: int = 100, random_seed: int | None = 0) -> Figure:
    """Posterior predictive check: density of the data against replicated data sets."""
    if isinstance(num_pp_samples, bool) or not isinstance(num_pp_samples, int | np.integer) \
            or num_pp_samples < 1:
        raise ArgumentError(f"num_pp_samples must be a positive integer, got {num_pp_samples!r}")
    check_seed("random_seed", random_seed)
    idata = _predictive(model, random_seed)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    num_pp_samples = min(num_pp_samples, _n_draws(idata))
    az.plot_ppc(idata, num_pp_samples=num_pp_samples, ax=ax, random_seed=random_seed, textsize=10)
    legend_outside(ax)  # ArviZ puts it over the densities' tails
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
    idata = _predictive(model, random_seed)
    block = _block_of(model, group)
    shown = block.levels[:max_levels]
    fig, axes = _grid(len(shown), sharey=False)
    for ax, (code, level) in zip(axes, enumerate(shown), strict=True):
        rows = np.flatnonzero(block.codes == code)
        az.plot_ppc(idata, coords={"obs": rows}, num_pp_samples=min(num_pp_samples,
                    _n_draws(idata)), ax=ax,
                    legend=False, random_seed=random_seed, textsize=9)  # fmt: skip
        ax.set_title(f"{block.group} = {level}", fontsize="small")
        ax.set_xlabel("")
    more = "" if len(block.levels) <= max_levels else f" (first {max_levels} levels)"
    fig.suptitle(f"Posterior predictive check by {block.group}{more}")
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
    mean, resid = model.fitted_mean(), model.residuals()
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
    az.plot_kde(resid, ax=ax, plot_kwargs={"color": "black"}, textsize=9)
    grid = np.linspace(resid.min(), resid.max(), 200)
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
