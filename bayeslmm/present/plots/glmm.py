"""Figures of a binomial, Bernoulli, Poisson or negative binomial mixed model's checks.

Pure drawing: the tables come from :mod:`bayeslmm.present.glmm_report` (posterior
predictive summaries per level, per count, per statistic, and randomized quantile
residuals). Each function returns its :class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.stats
from matplotlib.figure import Figure

from .model import legend_outside

OBSERVED, REPLICATED, OUTSIDE = "#d95f02", "#7570b3", "#e7298a"
MAX_NAMED_LEVELS = 60


def group_check(table: pd.DataFrame, group: str, what: str) -> Figure:
    """Per level (sorted by the observed value): the posterior predictive interval and
    mean of ``what`` (a proportion or a rate) and the observed value, marked where it
    falls outside the interval. ``table``: ``level``, ``observed``, ``pp_mean``,
    ``pp_lower``, ``pp_upper``, ``outside``."""
    part = table.sort_values("observed").reset_index(drop=True)
    n = len(part)
    many = n > MAX_NAMED_LEVELS
    fig, ax = plt.subplots(figsize=(11 if many else max(8.0, 0.22 * n + 5), 4.2))
    x = np.arange(n)
    ax.vlines(x, part["pp_lower"], part["pp_upper"], color=REPLICATED, alpha=0.6,
              lw=1 if many else 3, label="posterior predictive interval")  # fmt: skip
    ax.scatter(x, part["pp_mean"], color=REPLICATED, marker="_", s=40 if not many else 8,
               label="posterior predictive mean")  # fmt: skip
    inside = ~part["outside"].to_numpy(bool)
    size = 10 if many else 24
    ax.scatter(x[inside], part["observed"][inside], color=OBSERVED, s=size, zorder=3,
               label="observed")  # fmt: skip
    ax.scatter(x[~inside], part["observed"][~inside], color=OUTSIDE, marker="x", s=size * 1.5,
               zorder=4, label="observed, outside the interval")  # fmt: skip
    if many:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} levels of {group}, sorted by the observed {what}")
    else:
        ax.set_xticks(x, part["level"].astype(str), rotation=90, fontsize="small")
        ax.set_xlabel(f"{group} (sorted by the observed {what})")
    ax.set_ylabel(what)
    ax.set_title(f"{what.capitalize()} per {group}: observed and replicated")
    legend_outside(ax)
    fig.tight_layout()
    return fig


def count_check(table: pd.DataFrame, response: str) -> Figure:
    """Counts: the observed number of rows with each count (bars) and the posterior
    predictive number (mean and interval). ``table``: ``count`` (the last one may be an
    open bin, ``label`` says), ``observed``, ``pp_mean``, ``pp_lower``, ``pp_upper``."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    x = np.arange(len(table))
    ax.bar(x, table["observed"], color="#cccccc", edgecolor="white", label="observed")
    ax.errorbar(x, table["pp_mean"],
                yerr=[table["pp_mean"] - table["pp_lower"], table["pp_upper"] - table["pp_mean"]],
                fmt="o", color=REPLICATED, ms=4, label="posterior predictive mean and "
                "interval")  # fmt: skip
    step = max(1, -(-len(table) // 16))
    ax.set_xticks(x[::step], table["label"].astype(str).to_numpy()[::step])
    ax.set_xlabel(response)
    ax.set_ylabel("rows")
    ax.set_title(f"How many rows have each count of {response}")
    legend_outside(ax)
    fig.tight_layout()
    return fig


def statistic_check(draws: dict[str, np.ndarray], observed: dict[str, float]) -> Figure:
    """One panel per statistic: the histogram of its replicated values and the observed
    value (a line)."""
    names = list(draws)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = np.asarray(draws[name], float)
        ax.hist(values, bins=min(40, max(10, len(np.unique(values)))), color=REPLICATED,
                alpha=0.6, edgecolor="white")  # fmt: skip
        ax.axvline(observed[name], color=OBSERVED, lw=2)
        ax.set_title(name, fontsize="medium")
        ax.set_yticks([])
    axes[0][0].set_ylabel("replicated data sets")
    fig.suptitle("Observed statistic (line) against the posterior predictive (histogram)",
                 fontsize="medium")  # fmt: skip
    fig.tight_layout()
    return fig


def quantile_residuals(residuals: np.ndarray, fitted_link: np.ndarray, link: str) -> Figure:
    """Randomized quantile residuals: a normal QQ plot (with a pointwise 95% band of the
    order statistics of N(0, 1) samples) and the residuals against the fitted linear
    predictor."""
    r = np.sort(np.asarray(residuals, float))
    n = len(r)
    p = (np.arange(1, n + 1) - 0.5) / n
    theory = scipy.stats.norm.ppf(p)
    # the k-th order statistic of n uniforms is Beta(k, n - k + 1)
    k = np.arange(1, n + 1)
    low = scipy.stats.norm.ppf(scipy.stats.beta.ppf(0.025, k, n - k + 1))
    high = scipy.stats.norm.ppf(scipy.stats.beta.ppf(0.975, k, n - k + 1))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    ax.fill_between(theory, low, high, color="#cccccc", alpha=0.6, label="95% band of N(0, 1)")
    ax.plot(theory, theory, color="black", lw=0.8)
    ax.scatter(theory, r, s=8, color=REPLICATED, label="residuals")
    ax.set_xlabel("N(0, 1) quantile")
    ax.set_ylabel("randomized quantile residual")
    ax.set_title("Normal QQ plot")
    ax.legend(fontsize="small", loc="upper left")
    ax = axes[1]
    ax.scatter(fitted_link, residuals, s=8, color=REPLICATED, alpha=0.7)
    for y in (-2, 0, 2):
        ax.axhline(y, color="black", lw=0.8 if y == 0 else 0.5, ls="-" if y == 0 else ":")
    ax.set_xlabel(f"fitted linear predictor ({link} scale)")
    ax.set_ylabel("randomized quantile residual")
    ax.set_title("Residuals against fitted")
    fig.tight_layout()
    return fig
