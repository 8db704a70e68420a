"""Parts that the Gaussian report and the GLMM report share: what was written, the
convergence section, the models table and the text on shrinkage fractions."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..bayes.diagnostics import verdict
from . import plots
from .writer import Section, _Writer

if TYPE_CHECKING:
    from ..bayes.model import LMM
    from ..comparison.factors import MultiFactorComparison
    from ..comparison.models import Comparison


@dataclass
class ReportFiles:
    """What :func:`report` wrote."""

    html: Path
    tables: dict[str, Path]
    figures: dict[str, Path]
    failed: dict[str, str]  # figure name -> why it could not be drawn


def _percent(level: float) -> str:
    return f"{100 * level:g}%"


def _convergence_section(w: _Writer, model: LMM, summary: pd.DataFrame) -> None:
    sec = w.section("convergence", "Can the draws be trusted?")
    conv = model.convergence
    items = "".join(f"<li>{html.escape(p)}</li>" for p in conv.problems)
    sec.parts.append(
        f"<div class='verdict {'ok' if conv.ok else 'bad'}'>"
        f"{html.escape(verdict(conv))}{f'<ul>{items}</ul>' if items else ''}</div>"
    )
    cols = ["mean", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]
    table = summary[cols].rename_axis("parameter").reset_index()
    table.insert(len(table.columns), "divergences", conv.divergences)
    w.table(sec, "convergence", table, "R-hat, bulk/tail ESS and MCSE per population parameter")
    w.figure(sec, "trace", lambda: plots.trace(model),
             "Trace plots: left the posterior density of each chain, right the draws in order; "
             "chains should overlap and look like noise around one level")  # fmt: skip
    w.figure(sec, "rank", lambda: plots.rank(model),
             "Rank plots: histograms of each chain's ranks among all draws are flat when "
             "the chains mix")  # fmt: skip


def _shrinkage_note(table: pd.DataFrame) -> str:
    """What the shrinkage fractions of this table mean, their odd values included."""
    text = ("Each group's own estimate (no pooling) is pulled toward the population mean by "
            "the mixed model. The shrinkage fraction is (no pooling - estimate) / (no pooling "
            "- population): 0 means no shrinkage, 1 complete pooling.")  # fmt: skip
    columns = [c for c in ("shrinkage", "shrinkage_posterior") if c in table]
    values = table[columns].to_numpy(dtype=float)
    below, above = int((values < 0).sum()), int((values > 1).sum())
    missing = int(np.isnan(values).sum())
    if below or above:
        text += (f" {below + above} fraction(s) fall outside [0, 1] ({below} below 0, {above} "
                 "above 1): below 0 the estimate moved away from the population mean, above 1 "
                 "it moved past it. That happens with correlated random effects, where a "
                 "group's slope is also pulled by how its intercept shrinks (and the other way "
                 "round), and where a group's own estimate lies close to the population mean, "
                 "so that the fraction divides by a small gap; the estimates themselves are "
                 "in the other columns.")  # fmt: skip
    if missing:
        text += (f" {missing} fraction(s) are empty: the group has no estimate of its own "
                 "(a term constant within the group), or its own estimate equals the "
                 "population mean.")  # fmt: skip
    return text


def _models_table(w: _Writer, sec: Section, table: pd.DataFrame, css: str) -> None:
    """The comparison table, and what each of its models fits as a definition list."""
    w.table(sec, "comparison", table, "The comparison table", shown=table.drop(columns="method"))
    items = "".join(f"<dt>{html.escape(r.model)}</dt><dd>{html.escape(r.method)}</dd>"
                    for r in table.itertuples())  # fmt: skip
    sec.parts.append(f"<dl class='{css}'>{items}</dl>")


def comparison_forest_rows(comparison: Comparison | MultiFactorComparison) -> pd.DataFrame:
    """The rows the forest plot shows: every model with an estimate of the term, but
    aggregation (a between-group slope, another estimand)."""
    table = comparison.table
    if "estimate" not in table:
        return table.iloc[:0]
    table = table.dropna(subset=["estimate"])
    return table[~table["model"].str.startswith("Aggregation")]
