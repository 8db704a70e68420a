"""Figures of the comparison layer: group fits, shrinkage arrows, caterpillar, 2-D
shrinkage, the forest of the seven models and REML beside the posterior for every
population parameter.

Pure drawing: every number comes from :mod:`bayeslmm.comparison.models` tables (the
population ellipse included), so this module holds no statistics or linear algebra.
Each function returns its :class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...errors import ArgumentError, check_probability
from .model import _grid, legend_outside, level_colors

if TYPE_CHECKING:
    from ...comparison.factors import MultiFactorComparison
    from ...comparison.models import Comparison

COLORS = {
    "no_pooling": "#d95f02",
    "reml": "#1b9e77",
    "posterior": "#7570b3",
    "complete_pooling": "#666666",
    "population": "#e7298a",
}


def _checked(comparison: Comparison) -> Comparison:
    if not (hasattr(comparison, "shrinkage") and hasattr(comparison, "setup")):
        raise ArgumentError(
            f"expected a bayeslmm.compare() result, got {type(comparison).__name__}"
        )
    return comparison


def _percent(level: float) -> str:
    return f"{100 * level:g}%"


def _panels(n: int, height: float, width: float = 5.0) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


MAX_NAMED_LEVELS = 60  # levels drawn one labelled row each; more are drawn as a sorted band


def _term_figure(table: pd.DataFrame) -> tuple[Figure, list[tuple[plt.Axes, str]]]:
    """One panel per random term, tall enough for one row per level."""
    terms = list(dict.fromkeys(table["term"]))
    n_levels = min(table["level"].nunique(), MAX_NAMED_LEVELS)
    fig, axes = _panels(len(terms), height=max(2.5, 0.3 * n_levels + 1.2))
    return fig, list(zip(axes, terms, strict=True))


def _factor_table(comparison: Comparison | MultiFactorComparison, group: str | None):
    """The shrinkage table of one grouping factor (default: the first)."""
    table = _checked(comparison).shrinkage()
    groups = list(dict.fromkeys(table["group"]))
    if group is None:
        group = groups[0]
    if group not in groups:
        raise ArgumentError(f"no grouping factor {group!r} in the comparison; have {groups}")
    return table[table["group"] == group]


def _legend_below(fig: Figure, ax: plt.Axes) -> None:
    """One legend for all panels, under them, so it never covers a level's points; as
    many entries a row as the figure's width holds."""
    handles, labels = ax.get_legend_handles_labels()
    per_row = max(1, min(len(labels), 5, int(fig.get_figwidth() // 2.0)))
    rows = -(-len(labels) // per_row)
    fig.legend(handles, labels, loc="lower center", ncol=per_row, fontsize="small",
               frameon=False)  # fmt: skip
    inch = 0.1 + 0.25 * rows
    fig.tight_layout(rect=(0, inch / fig.get_figheight(), 1, 1))


def _label_levels(ax: plt.Axes, part: pd.DataFrame, term: str, title: str,
                  order: str = "") -> None:  # fmt: skip
    if len(part) <= MAX_NAMED_LEVELS:
        ax.set_yticks(np.arange(len(part)), part["level"].astype(str))
        ax.set_ylabel(part["group"].iloc[0])
    else:  # too many to name: a band of levels in order
        ax.set_yticks([])
        ax.set_ylabel(f"{len(part)} levels of {part['group'].iloc[0]}, {order}")
    ax.set_xlabel(f"{term} [{part.attrs['scale']}]" if part.attrs.get("scale") else term)
    ax.set_title(title)


def shrinkage_arrows(comparison: Comparison | MultiFactorComparison,
                     group: str | None = None) -> Figure:  # fmt: skip
    """Per level, arrows from the no-pooling estimate to REML and on to the posterior mean.

    One panel per random term of ``group`` (default: the first grouping factor); vertical
    lines mark complete pooling (OLS) and the population (REML fixed effect). With more
    than 60 levels, the levels are sorted by their own estimate and drawn as points and
    segments without names.
    """
    table = _factor_table(comparison, group)
    if table["level"].nunique() > MAX_NAMED_LEVELS:
        return _shrinkage_band(table)
    fig, panels = _term_figure(table)
    for ax, term in panels:
        part = table[table["term"] == term].reset_index(drop=True)
        y = np.arange(len(part))
        end = part["posterior_mean"] if "posterior_mean" in part else part["reml"]
        to_reml = {"arrowstyle": "->", "color": COLORS["reml"], "lw": 1.2}
        to_post = {"arrowstyle": "->", "color": COLORS["posterior"], "lw": 1.0}
        for i, row in part.iterrows():  # no arrow from a group without its own estimate
            if np.isfinite(row["no_pooling"]):
                ax.annotate("", xy=(row["reml"], i), xytext=(row["no_pooling"], i),
                            arrowprops=to_reml)  # fmt: skip
            ax.annotate("", xy=(end[i], i), xytext=(row["reml"], i), arrowprops=to_post)
        ax.scatter(part["no_pooling"], y, color=COLORS["no_pooling"], label="no pooling", zorder=3)
        ax.scatter(part["reml"], y, color=COLORS["reml"], label="REML (BLUP)", zorder=3)
        if "posterior_mean" in part:
            ax.scatter(part["posterior_mean"], y, color=COLORS["posterior"], marker="D", s=18,
                       label="posterior mean", zorder=3)  # fmt: skip
        _pooling_lines(ax, part)
        _label_levels(ax, part, term, f"Shrinkage of {term}")
    _legend_below(fig, panels[-1][0])
    return fig


def _pooling_lines(ax, part: pd.DataFrame) -> None:
    """Complete pooling's estimate and the population value (REML), as vertical lines."""
    ax.axvline(part["complete_pooling"].iloc[0], color=COLORS["complete_pooling"], ls="--",
               label="complete pooling (OLS)")  # fmt: skip
    ax.axvline(part["population"].iloc[0], color=COLORS["population"], ls=":",
               label="population (REML)")  # fmt: skip


def _shrinkage_band(table: pd.DataFrame) -> Figure:
    """Shrinkage of many levels: sorted by their own estimate, a segment from it to REML."""
    fig, panels = _term_figure(table)
    for ax, term in panels:
        part = table[table["term"] == term].sort_values("no_pooling").reset_index(drop=True)
        y = np.arange(len(part))
        ax.hlines(y, part["no_pooling"], part["reml"], color=COLORS["reml"], lw=0.5, alpha=0.6)
        ax.scatter(part["no_pooling"], y, color=COLORS["no_pooling"], s=4, label="no pooling",
                   zorder=3)  # fmt: skip
        ax.scatter(part["reml"], y, color=COLORS["reml"], s=4, label="REML (BLUP)", zorder=3)
        if "posterior_mean" in part:
            ax.scatter(part["posterior_mean"], y, color=COLORS["posterior"], marker="D", s=3,
                       label="posterior mean", zorder=3)  # fmt: skip
        _pooling_lines(ax, part)
        _label_levels(ax, part, term, f"Shrinkage of {term}", "sorted by their own estimate")
    _legend_below(fig, panels[-1][0])
    return fig


def caterpillar(comparison: Comparison | MultiFactorComparison,
                group: str | None = None) -> Figure:  # fmt: skip
    """Posterior group coefficients with HDIs, sorted, with REML estimates overlaid.

    One panel per random term of ``group`` (default: the first grouping factor). Needs a
    comparison fitted with ``bayes=True``.
    """
    table = _factor_table(comparison, group)
    if "posterior_mean" not in table:
        raise ArgumentError("caterpillar() needs the Bayesian fit: run compare(..., bayes=True)")
    many = table["level"].nunique() > MAX_NAMED_LEVELS
    fig, panels = _term_figure(table)
    for ax, term in panels:
        part = table[table["term"] == term].sort_values("posterior_mean").reset_index(drop=True)
        y = np.arange(len(part))
        ax.hlines(y, part["hdi_lower"], part["hdi_upper"], color=COLORS["posterior"],
                  lw=0.6 if many else 2, alpha=0.6 if many else 1.0,
                  label=f"{_percent(comparison.level)} HDI")  # fmt: skip
        ax.scatter(part["posterior_mean"], y, color=COLORS["posterior"], zorder=3,
                   s=4 if many else None, label="posterior mean")  # fmt: skip
        ax.scatter(part["reml"], y, color=COLORS["reml"], marker="x", zorder=4,
                   s=4 if many else None, label="REML (fixed + BLUP)")  # fmt: skip
        ax.axvline(part["population"].iloc[0], color=COLORS["population"], ls=":",
                   label="population (REML)")  # fmt: skip
        _label_levels(ax, part, term, f"Group coefficients: {term}",
                      "sorted by posterior mean")  # fmt: skip
    _legend_below(fig, panels[-1][0])
    return fig


def reml_posterior_forest(comparison: MultiFactorComparison) -> Figure:
    """Every fixed effect and variance component: the REML estimate (with its
    Satterthwaite interval for fixed effects) above the posterior mean and HDI.

    Panels with their own scale: the intercept, the other fixed effects, the SDs (residual
    SD included) and the correlations.
    """
    if not (hasattr(comparison, "fixed_effects") and hasattr(comparison, "variance_components")):
        raise ArgumentError(f"reml_posterior_forest() needs a compare() result with several "
                            f"grouping factors, got {type(comparison).__name__}")  # fmt: skip
    fixed, vc = comparison.fixed_effects(), comparison.variance_components()
    bayes = "posterior_mean" in fixed or "posterior_mean" in vc
    panels: list[tuple[str, pd.DataFrame]] = []
    rows = pd.DataFrame({"name": fixed["term"], "reml": fixed["reml_estimate"],
                         "lower": fixed["reml_lower"], "upper": fixed["reml_upper"]})  # fmt: skip
    for col in ("posterior_mean", "hdi_lower", "hdi_upper"):
        rows[col] = fixed[col] if col in fixed else np.nan
    is_intercept = rows["name"] == "(Intercept)"
    if is_intercept.any() and (~is_intercept).any():
        panels.append(("Intercept", rows[is_intercept]))
        panels.append(("Fixed effects", rows[~is_intercept]))
    elif len(rows):
        panels.append(("Fixed effects", rows))
    comp = pd.DataFrame({"name": vc["parameter"], "reml": vc["reml"], "lower": np.nan,
                         "upper": np.nan, "kind": vc["kind"]})  # fmt: skip
    for col in ("posterior_mean", "hdi_lower", "hdi_upper"):
        comp[col] = vc[col] if col in vc else np.nan
    panels.append(("Standard deviations", comp[comp["kind"] == "sd"]))
    if (comp["kind"] == "cor").any():
        panels.append(("Correlations", comp[comp["kind"] == "cor"]))
    heights = [0.45 * len(part) + 0.9 for _, part in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, sum(heights) + 0.6),
                             height_ratios=heights, squeeze=False)  # fmt: skip
    level = _percent(comparison.level)
    for ax, (title, part) in zip(axes[:, 0], panels, strict=True):
        y = np.arange(len(part))[::-1].astype(float)
        ax.hlines(y + 0.15, part["lower"], part["upper"], color=COLORS["reml"], lw=2)
        ax.scatter(part["reml"], y + 0.15, color=COLORS["reml"], zorder=3,
                   label=f"REML (fixed effects: {level} Satterthwaite interval)")  # fmt: skip
        if bayes:
            ax.hlines(y - 0.15, part["hdi_lower"], part["hdi_upper"], color=COLORS["posterior"],
                      lw=2)  # fmt: skip
            ax.scatter(part["posterior_mean"], y - 0.15, color=COLORS["posterior"], marker="D",
                       zorder=3, label=f"posterior mean and {level} HDI")  # fmt: skip
        if title in ("Fixed effects", "Correlations"):
            ax.axvline(0, color="#bbbbbb", lw=0.8, zorder=0)
        ax.set_yticks(y, part["name"])
        ax.set_ylim(-0.6, len(part) - 0.4)
        ax.set_title(title, fontsize="medium")
    _legend_below(fig, axes[0, 0])
    return fig


def shrinkage_2d(comparison: Comparison, level: float | None = None) -> Figure:
    """Intercept vs slope per level: no pooling -> partial pooling, with the population ellipse
    holding ``level`` of the groups (default: the comparison's level).

    Needs a random-slope comparison (the formula gives ``term`` a random slope).
    """
    if not _checked(comparison).setup.random_slope:
        raise ArgumentError("shrinkage_2d() needs a formula with a random slope for the term")
    if level is not None:
        check_probability("level", level)
    table = comparison.shrinkage()
    term = comparison.setup.term
    level = comparison.level if level is None else level
    wide = table.pivot(index="level", columns="term")
    fig, ax = plt.subplots(figsize=(8, 5))
    ellipse = comparison.population_ellipse(level)
    ax.plot(ellipse[:, 0], ellipse[:, 1], color=COLORS["population"], ls=":",
            label=f"population {_percent(level)} ellipse (REML)")  # fmt: skip
    x0, y0 = wide["no_pooling"]["(Intercept)"], wide["no_pooling"][term]
    partial = "posterior_mean" if "posterior_mean" in table else "reml"
    x1, y1 = wide[partial]["(Intercept)"], wide[partial][term]
    for a, b, c, d in zip(x0, y0, x1, y1, strict=True):
        if np.isfinite([a, b]).all():  # no arrow from a group without its own estimate
            ax.annotate("", xy=(c, d), xytext=(a, b),
                        arrowprops={"arrowstyle": "->", "color": "#999999", "lw": 0.8})  # fmt: skip
    ax.scatter(x0, y0, color=COLORS["no_pooling"], label="no pooling (per-group OLS)", zorder=3)
    label = "posterior mean" if partial == "posterior_mean" else "REML (fixed + BLUP)"
    ax.scatter(x1, y1, color=COLORS[partial.split("_")[0]], label=label, zorder=3)
    if partial == "posterior_mean":
        ax.scatter(wide["reml"]["(Intercept)"], wide["reml"][term], color=COLORS["reml"],
                   marker="x", label="REML (fixed + BLUP)", zorder=4)  # fmt: skip
    pop = table.drop_duplicates("term").set_index("term")["population"]
    ax.scatter([pop["(Intercept)"]], [pop[term]], color=COLORS["population"], marker="*", s=150,
               label="population mean", zorder=5)  # fmt: skip
    ax.set_xlabel("(Intercept)")
    ax.set_ylabel(term)
    ax.set_title("Shrinkage of group intercepts and slopes")
    legend_outside(ax)
    fig.tight_layout()
    return fig


def comparison_forest(comparison: Comparison) -> Figure:
    """The term's estimate and interval in every model of the comparison table."""
    table: pd.DataFrame = _checked(comparison).table.dropna(subset=["estimate"])
    # aggregation estimates a different quantity (a slope between group means)
    table = table[~table["model"].str.startswith("Aggregation")]
    if table.empty:
        raise ArgumentError(f"no model of the comparison estimates {comparison.setup.term!r}")
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(table) + 1.2))
    y = np.arange(len(table))[::-1]
    ax.hlines(y, table["ci_lower"], table["ci_upper"], color="#444444")
    ax.scatter(table["estimate"], y, color="black", zorder=3)
    ax.axvline(0, color="#bbbbbb", lw=0.8)
    ax.set_yticks(y, table["model"])
    ax.set_xlabel(f"{comparison.setup.term} ({_percent(comparison.level)} CI / HDI)")
    ax.set_title(f"The same effect, {_count(len(table))} ways")
    fig.tight_layout()
    return fig


def _count(n: int) -> str:
    words = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    return words[n] if n < len(words) else str(n)


MAX_SINGLE_PANEL = 6  # levels drawn together; more get one panel each


def group_fits(comparison: Comparison, max_levels: int = 24) -> Figure:
    """The data with each level's fitted line, the population line and ANCOVA's lines.

    Solid: the level's line from the Bayesian fit (REML's without one); dashed: the
    ANCOVA (no pooling) line; thick grey: the population (REML fixed effects). Up to
    six levels share one panel; more get a panel each (the first ``max_levels``).
    """
    s, data = _checked(comparison).setup, comparison.data
    if isinstance(max_levels, bool) or not isinstance(max_levels, int) or max_levels < 1:
        raise ArgumentError(f"max_levels must be a positive integer, got {max_levels!r}")
    lines = comparison.group_lines()
    partial = "posterior" if (lines["source"] == "posterior").any() else "reml"
    by_source = {src: part.set_index("level") for src, part in lines.groupby("source")}
    levels = list(by_source[partial].index)
    colors = dict(zip(levels, level_colors(len(levels)), strict=True))
    single = len(levels) <= MAX_SINGLE_PANEL
    shown = levels if single else levels[:max_levels]
    if single:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        axes = [ax] * len(shown)
    else:
        fig, axes = _grid(len(shown))
    group_values = data[s.group].astype(str)
    pop = by_source["population"].iloc[0]
    x_all = np.array([data[s.term].min(), data[s.term].max()])
    for ax, level in zip(axes, shown, strict=True):
        rows = (group_values == str(level)).to_numpy()  # levels keep the factor's type
        x, color = data.loc[rows, s.term], colors[level]
        ax.scatter(x, data.loc[rows, s.response], color=color, s=14, alpha=0.7,
                   label=str(level) if single else None)  # fmt: skip
        span = np.array([x.min(), x.max()])
        line = by_source[partial].loc[level]
        ax.plot(span, line["intercept"] + line["slope"] * span, color=color, lw=2)
        if "ancova" in by_source and np.isfinite(by_source["ancova"].loc[level, "intercept"]):
            anc = by_source["ancova"].loc[level]
            ax.plot(span, anc["intercept"] + anc["slope"] * span, color=color, lw=1, ls="--")
        if not single or level == shown[0]:
            ax.plot(x_all, pop["intercept"] + pop["slope"] * x_all, color="#555555", lw=3,
                    alpha=0.5, zorder=0)  # fmt: skip
        if not single:
            ax.set_title(f"{s.group} = {level}", fontsize="small")
    first = axes[0]
    first.set_xlabel(s.term)
    first.set_ylabel(s.response)
    label = "posterior mean" if partial == "posterior" else "REML (fixed + BLUP)"
    fig.suptitle(f"Group fits: {label} (solid), ANCOVA (dashed), population (grey)",
                 fontsize="medium")  # fmt: skip
    if single:
        legend_outside(first, title=s.group)
    fig.tight_layout()
    return fig
