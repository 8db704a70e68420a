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
    if "elpd_obs_diff" in t and t["elpd_obs_diff"].notna().any():
        shown["Δelpd (leave one observation out)"] = [
            _plus_minus(v, e) for v, e in zip(t["elpd_obs_diff"], t["elpd_obs_diff_se"],
                                              strict=True)  # fmt: skip
        ]
    shown["verdict"] = [f"{v} (moot)" if m else v for v, m in zip(t["verdict"], t["moot"],
                                                                  strict=True)]  # fmt: skip
    return shown


def bayes_missing(comparison: RandomEffectsComparison) -> list[str]:
    """The Bayesian comparisons the table has no numbers for."""
    t = comparison.table
    return [what for column, what in (("log_BF", "Bayes factors"),
                                      ("elpd_diff", "leave-one-group-out cross-validation"))
            if t[column].isna().all()]  # fmt: skip


def glmm_intro(comparison: RandomEffectsComparison) -> str:
    """What the table of a binary or count model's comparison holds, and what it lacks."""
    text = (f"The fitted {comparison.family} model against each simpler neighbour: one random "
            "term dropped whole (the last one leaving a GLM without random effects), one "
            "random slope removed, or one term's correlations removed. GLMMs have no REML, so "
            "every model is fitted by maximum likelihood (Laplace approximation, bl.glmer) "
            "and compared by lme4's anova(full, reduced) likelihood-ratio test, with the "
            "p-value corrected for a variance tested on its boundary, and ΔAIC, ΔBIC "
            "(simpler minus fitted: positive favours the fitted model).")  # fmt: skip
    t = comparison.table
    if t["log_BF"].notna().any():
        text += (" Bayesian: the log Bayes factor of the fitted model against the simpler one, "
                 "from bridge sampling over the fixed effects, log SDs and correlations with "
                 "each level's random effects integrated out per draw (adaptive "
                 "Gauss-Hermite quadrature; a GLM's evidence over its fixed effects alone), "
                 "± the bridge's Monte Carlo error plus the quadrature's error.")  # fmt: skip
    if t["elpd_diff"].notna().any():
        text += (f" Δelpd leaving one {comparison.group} out scores each left-out "
                 f"{comparison.group} with its effects integrated out (given the other "
                 "factors' effects); leaving one observation out scores each row given its "
                 "groups' effects (± the standard error of the difference).")  # fmt: skip
    bayes = bayes_missing(comparison)
    if bayes:
        what = " and ".join(bayes)
        text += (f" The table has no column for {what}: the notes below say why, and the "
                 f"verdicts rest on the likelihood-ratio test"
                 f"{'' if len(bayes) == 1 and t['log_BF'].notna().any() else ' alone'}.")
    return text


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
        if comparison.method == "REML":
            w.text(sec, "The fitted model against each simpler neighbour: one random slope "
                        "removed, or one term's correlations removed. Frequentist: the REML "
                        "likelihood-ratio test (the fixed effects are the same), with the "
                        "p-value corrected for a variance tested on its boundary, and ΔAIC, "
                        "ΔBIC (simpler minus fitted: positive favours the fitted model). "
                        "Bayesian: the log Bayes factor of the fitted model against the simpler "
                        "one (bridge sampling, ± its Monte Carlo error) and the difference in "
                        "expected log predictive density when whole groups are left out (± its "
                        "standard error). Positive numbers speak for the component "
                        "removed.")  # fmt: skip
        else:
            w.text(sec, html.escape(glmm_intro(comparison)))
        w.table(sec, "random_effects_comparison", comparison.table,
                "Each simpler neighbour against the fitted model"
                + ("" if comparison.method == "REML" else
                   f" ({comparison.method} fits, {comparison.family} family"
                   + (f"; no {' or '.join(bayes_missing(comparison))} column: see the notes)"
                      if bayes_missing(comparison) else ")")),
                shown=shown_table(comparison))  # fmt: skip
        items = "".join(f"<li>{html.escape(c)}</li>" for c in comparison.conclusions)
        sec.parts.append(f"<ul>{items}</ul>")
    if comparison.loo is not None:
        table = comparison.loo.table.rename_axis("model").reset_index()
        w.table(sec, "loo_by_group", table,
                f"Leave-one-{comparison.group}-out cross-validation (PSIS-LOO on each "
                f"{comparison.group}'s marginal likelihood; k_high: {comparison.group} levels "
                "whose Pareto k makes their estimate unreliable)")  # fmt: skip
    if comparison.loo_observation is not None:
        table = comparison.loo_observation.table.rename_axis("model").reset_index()
        w.table(sec, "loo_by_observation", table,
                "Leave-one-observation-out cross-validation (PSIS-LOO on each row's "
                "log-probability given its groups' effects; k_high: rows whose Pareto k makes "
                "their estimate unreliable)")  # fmt: skip
    for text in comparison.notes:
        w.text(sec, html.escape(text), "note")
