"""Figure of a :class:`~bayeslmm.bayes.conditional.ConditionalEffects` (brms'
``plot(conditional_effects(fit))``): the posterior mean of the fixed-effects prediction
along a covariate with its HDI band, or per level of a factor with HDI bars, one colour
per value of the ``by`` variable. Importing this module makes it the drawer of
``ConditionalEffects.plot()``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...bayes.conditional import ConditionalEffects
from ...errors import ArgumentError
from .model import legend_outside, level_colors


def _label(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def conditional_effects(effects: ConditionalEffects, points: bool = False,
                        ax: plt.Axes | None = None) -> Figure:  # fmt: skip
    """Draw conditional effects; ``points=True`` adds the data's rows (jittered along a
    factor), coloured by ``by`` where it is a factor."""
    if not isinstance(effects, ConditionalEffects):
        raise ArgumentError("expected model.conditional_effects(...), got "
                            f"{type(effects).__name__}")  # fmt: skip
    if not isinstance(points, bool):
        raise ArgumentError(f"points must be True or False, got {points!r}")
    table, effect, by = effects.table, effects.effect, effects.by
    lo, hi = effects.hdi
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
    else:
        fig = ax.figure
    groups = list(pd.unique(table[by])) if by else [None]
    colors = level_colors(len(groups)) if by else ["#1f77b4"]
    levels = list(pd.unique(table[effect])) if effects.factor else None
    if points:
        data = effects.data
        x = data[effect].to_numpy()
        if levels is not None:
            position = {v: i for i, v in enumerate(levels)}
            rng = np.random.default_rng(0)
            x = np.array([position[v] for v in x]) + rng.uniform(-0.15, 0.15, len(x))
        ax.scatter(x, data[effects.response], s=8, color="#999999", alpha=0.5, zorder=1,
                   label="data")  # fmt: skip
    width = 0.5 / max(len(groups), 1)
    for k, (group, color) in enumerate(zip(groups, colors, strict=True)):
        rows = table if by is None else table.loc[table[by] == group]
        label = None if by is None else f"{by} = {_label(group)}"
        if levels is None:
            ax.fill_between(rows[effect], rows[lo], rows[hi], color=color, alpha=0.25, lw=0)
            ax.plot(rows[effect], rows["mean"], color=color, lw=2, label=label)
        else:
            x = np.arange(len(levels)) + (k - (len(groups) - 1) / 2) * width
            ax.errorbar(x, rows["mean"], yerr=[rows["mean"] - rows[lo], rows[hi] - rows["mean"]],
                        fmt="o", color=color, capsize=3, label=label, zorder=2)  # fmt: skip
    if levels is not None:
        ax.set_xticks(np.arange(len(levels)), [_label(v) for v in levels])
    ax.set_xlabel(effect)
    ax.set_ylabel(f"{effects.response} (fixed effects)")
    held = ", ".join(f"{k} = {_label(v)}" for k, v in effects.conditions.items())
    ax.set_title(f"Conditional effect of {effect}" + (f" by {by}" if by else "")
                 + f" ({effects.hdi_prob:.0%} HDI)")  # fmt: skip
    if held:
        ax.text(0.0, -0.16, f"held at: {held}", transform=ax.transAxes, fontsize="small",
                va="top", color="#555555")  # fmt: skip
    legend_outside(ax)
    fig.tight_layout()
    return fig


ConditionalEffects.drawer = conditional_effects
