"""The report's section "Which random effects does the data support?"

It shows a :class:`~bayeslmm.comparison.random_effects.RandomEffectsComparison`: the
verdict in plain words first, then the side-by-side table (frequentist and Bayesian)
and each neighbour's paragraph, then the leave-one-group-out table.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..comparison.random_effects import RandomEffectsComparison

if TYPE_CHECKING:
    from .writer import _Writer

TITLE = "Which random effects does the data support?"


def _plus_minus(value: float, error: float) -> str:
    return "" if not np.isfinite(value) else f"{value:.2f} ± {error:.2f}"


def shown_table(comparison: RandomEffectsComparison) -> pd.DataFrame:
    """The columns a reader needs, with estimates and their errors side by side."""
    t = comparison.table
    shown = pd.DataFrame({
        "removed": t["component"], "simpler model": t["neighbour"], "Df": t["Df"],
        "LRT": t["LRT"], "p (boundary)": t["p_boundary"].fillna(t["p"]),
        "ΔAIC": t["AIC_diff"], "ΔBIC": t["BIC_diff"],
    })  # fmt: skip
    if t["log_BF"].notna().any():
        shown["log BF"] = [_plus_minus(v, e) for v, e in zip(t["log_BF"], t["log_BF_error"],
                                                             strict=True)]  # fmt: skip
    if t["elpd_diff"].notna().any():
        shown[f"Δelpd (leave one {comparison.group} out)"] = [
            _plus_minus(v, e) for v, e in zip(t["elpd_diff"], t["elpd_diff_se"], strict=True)
        ]
    shown["verdict"] = [f"{v} (moot)" if m else v for v, m in zip(t["verdict"], t["moot"],
                                                                  strict=True)]  # fmt: skip
    return shown


def random_effects_section(
    w: _Writer, comparison: RandomEffectsComparison | None, note: str | None = None
) -> None:
    """Add the section to a report being written (a note in its place if ``None``)."""
    sec = w.section("random_effects_choice", TITLE)
    if comparison is None:
        w.text(sec, html.escape(note or "Not computed."), "note")
        return
    if len(comparison.table):
        sec.parts.append(f"<div class='verdict ok'>{html.escape(comparison.summary)}</div>")
        w.text(sec, "The fitted model against each simpler neighbour: one random slope removed, "
                    "or one term's correlations removed. Frequentist: the REML likelihood-ratio "
                    "test (the fixed effects are the same), with the p-value corrected for a "
                    "variance tested on its boundary, and ΔAIC, ΔBIC (simpler minus fitted: "
                    "positive favours the fitted model). Bayesian: the log Bayes factor of the "
                    "fitted model against the simpler one (bridge sampling, ± its Monte Carlo "
                    "error) and the difference in expected log predictive density when whole "
                    "groups are left out (± its standard error). Positive numbers speak for "
                    "the component removed.")  # fmt: skip
        w.table(sec, "random_effects_comparison", comparison.table,
                "Each simpler neighbour against the fitted model",
                shown=shown_table(comparison))  # fmt: skip
        items = "".join(f"<li>{html.escape(c)}</li>" for c in comparison.conclusions)
        sec.parts.append(f"<ul>{items}</ul>")
    if comparison.loo is not None:
        table = comparison.loo.table.rename_axis("model").reset_index()
        w.table(sec, "loo_by_group", table,
                f"Leave-one-{comparison.group}-out cross-validation (PSIS-LOO on each "
                f"{comparison.group}'s marginal likelihood; k_high: {comparison.group} levels "
                "whose Pareto k makes their estimate unreliable)")  # fmt: skip
    for text in comparison.notes:
        w.text(sec, html.escape(text), "note")
