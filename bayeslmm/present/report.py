"""A report a person reads: one self-contained HTML file plus a CSV of every table.

The report gathers tables from the model and the comparison and figures from
:mod:`bayeslmm.plots`; figures are embedded as base64 PNGs (and saved beside the HTML)
so the page needs no network and no other file to display.
"""

from __future__ import annotations

import datetime
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..bayes import stack
from ..bayes.glm_model import is_gaussian
from ..bayes.model import LMM
from ..classical.glmer import GlmerResult
from ..classical.lmer import LmerResult
from ..comparison.factors import MultiFactorComparison
from ..comparison.glmm import GlmmComparison
from ..comparison.models import Comparison
from ..comparison.random_effects import RandomEffectsComparison
from ..errors import ArgumentError, BayesLMMError, DataError, NotFittedError, interval_level
from ..gaussian.statistics import level_counts, response_summary
from . import plots
from .glmm_report import write_glmm_report
from .random_effects_section import random_effects_section
from .sections import (
    ReportFiles,
    _convergence_section,
    _models_table,
    _percent,
    _shrinkage_note,
    comparison_forest_rows,
)
from .writer import Section, _Writer


def _data_section(w: _Writer, model: LMM) -> None:
    d = model.design
    sec = w.section("data", "Data and model")
    dropped = f", {d.n_dropped} dropped for missing values" if d.n_dropped else ""
    w.text(sec, f"Formula <code>{html.escape(model.formula)}</code> fitted to {d.n_obs} rows"
                f"{dropped}.")  # fmt: skip
    if d.residual is not None:
        lay = d.residual
        w.text(sec, f"Residuals: {html.escape(lay.describe())}, "
                    f"<code>{html.escape(repr(lay.structure))}</code>: residuals of one group "
                    f"are correlated, with {lay.parameter} between {lay.lower:.4g} and "
                    f"{lay.upper:.4g}; the estimate is in the variance components.")  # fmt: skip
    if model.known_se is not None:
        se = model.known_se
        w.text(sec, f"The residual SDs are known: the column <code>{html.escape(model.se_column)}"
                    f"</code> holds each row's standard error (from {se.min():.4g} to "
                    f"{se.max():.4g}), and row i's residual is N(0, se_i^2), as a "
                    f"meta-analysis's (brms <code>{html.escape(d.response)} | se("
                    f"{html.escape(model.se_column)})</code>, metafor's <code>rma</code>): "
                    + ("with an extra residual SD sigma estimated beside them (residual "
                       "variance se_i^2 + sigma^2, brms <code>se(..., sigma = TRUE)</code>)."
                       if model.extra_sigma else "no residual SD is estimated."))  # fmt: skip
    info = model.fit_info
    how = ("random effects integrated out, then drawn exactly"
           if info.method == "marginal" else "explicit random effects")  # fmt: skip
    took = f" Sampling took {info.seconds:.1f} s." if info.seconds is not None else ""
    w.text(sec, f"Sampler: {info.sampler} NUTS, method <code>{info.method}</code> "
                f"({how}), {info.settings.chains} chains x {info.settings.draws} draws after "
                f"{info.settings.tune} tuning steps, target acceptance "
                f"{info.target_accept}, {info.mass_matrix or 'diagonal'} mass "
                f"matrix.{took}")  # fmt: skip
    if not d.rows_in_memory:
        w.text(sec, "The data are a Dask DataFrame: the model was fitted from sums computed "
                    "partition by partition, and its rows were never gathered.")  # fmt: skip
    _, mean, sd, low, high = response_summary(d)
    rows = [{"variable": d.response, "role": "response", "levels": np.nan,
             "mean": mean, "sd": sd, "min": low, "max": high}]  # fmt: skip
    for group, levels in d.groups().items():
        sizes = level_counts(d, group)
        spread = float(sizes.std(ddof=1)) if len(sizes) > 1 else np.nan
        rows.append({"variable": group, "role": "grouping factor", "levels": len(levels),
                     "mean": float(sizes.mean()), "sd": spread, "min": float(sizes.min()),
                     "max": float(sizes.max())})  # fmt: skip
    if d.residual is not None:
        sizes = d.residual.sizes
        spread = float(sizes.std(ddof=1)) if len(sizes) > 1 else np.nan
        rows.append({"variable": d.residual.group, "role": "residual groups",
                     "levels": len(sizes), "mean": float(sizes.mean()), "sd": spread,
                     "min": float(sizes.min()), "max": float(sizes.max())})  # fmt: skip
    w.table(sec, "data_summary", pd.DataFrame(rows),
            "Response, and rows per level of every grouping factor")  # fmt: skip
    priors = pd.DataFrame({"parameter": list(model.priors),
                           "prior": [repr(p) for p in model.priors.values()]})  # fmt: skip
    w.table(sec, "priors", priors, "Priors (autoscaled defaults unless overridden)")


def _estimates_section(w: _Writer, model: LMM, summary: pd.DataFrame, level: float,
                       reml: LmerResult | None = None) -> None:  # fmt: skip
    sec = w.section("estimates", "Fixed effects, variance components, ICC and R2")
    fixed = summary.loc[summary["component"] == "fixed"].drop(columns="component")
    if len(fixed):
        w.table(sec, "fixed_effects", fixed.rename_axis("term").reset_index(),
                f"Fixed effects: posterior mean, sd and {_percent(level)} HDI")  # fmt: skip
    w.table(
        sec,
        "variance_components",
        model.varcorr(level=level),
        "Variance components: SDs and correlations of the random effects (var1, and var2 "
        "for a correlation)" + (", residual SD" if model.known_se is None else "")
        + f"; posterior mean, sd and {_percent(level)} HDI",
    )
    if reml is not None:
        column = html.escape(model.se_column)
        w.text(sec, f"REML with the same known standard errors (<code>bl.lmer(..., se="
                    f"'{column}')</code>, metafor's <code>rma(yi, sei = {column}, "
                    "method = 'REML')</code> for one grouping factor):")  # fmt: skip
        w.table(sec, "reml_fixed_effects", reml.coefficients().rename_axis("term").reset_index(),
                "Fixed effects by REML: estimate, SE, Wald z and its p-value")  # fmt: skip
        w.table(sec, "reml_variance_components", reml.varcorr(),
                "Variance components by REML (vcov: variance, sdcor: SD or correlation); no "
                "residual row, the residual SDs being known")  # fmt: skip
    _partition_tables(w, sec, model, level)
    if model.design.blocks:
        ranef = pd.concat(model.ranef(level=level), names=["group"]).reset_index()
        w.table(sec, "random_effects", ranef,
                f"Random effects per level: posterior mean, sd, {_percent(level)} HDI")  # fmt: skip


def _partition_tables(w: _Writer, sec: Section, model: LMM, level: float) -> None:
    """The ICC (random effects' share of the variance) and the Bayesian R2, per draw."""
    if model.known_se is not None:
        w.text(sec, "No ICC or R2: both divide by a residual variance, and this model's "
                    f"residual SDs are the known standard errors ({html.escape(model.se_column)}"
                    "), one per row, not an estimated variance.", "note")  # fmt: skip
        return
    if model.design.blocks:
        icc = model.icc(level=level).rename_axis("icc").reset_index()
        w.table(sec, "icc", icc,
                "Intraclass correlation per draw (Nakagawa & Schielzeth, as R's "
                "performance::icc): each grouping factor's variance (with random slopes its "
                "mean over the rows) as a share of random + residual variance; adjusted: "
                "all random effects' share of random + residual, conditional: their share "
                f"of the total with the fixed effects' variance; posterior mean, sd and "
                f"{_percent(level)} HDI")  # fmt: skip
    if not model.design.rows_in_memory:
        w.text(sec, "The Bayesian R2 needs the fitted mean of every row per draw, and the "
                    "rows of this Dask DataFrame stay in its partitions: it is left out.",
               "note")  # fmt: skip
        return
    r2 = model.r2(level=level).rename_axis("r2").reset_index()
    w.table(sec, "r2", r2,
            "Bayesian R2 (Gelman et al. 2019, as brms' bayes_R2): per draw var(fit) / "
            "(var(fit) + var(residual)) over the rows, conditional on the random effects "
            f"and marginal (fixed effects alone); posterior mean, sd and {_percent(level)} "
            "HDI")  # fmt: skip


def _known_se_checks(w: _Writer, sec: Section, model: LMM) -> None:
    """Each row's standardized residual against its known standard error."""
    se = model.known_se
    fitted = model.fitted()
    resid = model.design.y - fitted
    scale, over = se, "its known standard error"
    if model.extra_sigma:  # the extra residual SD at its posterior mean
        sigma = float(stack.posterior(model.idata)["sigma"].mean())
        scale = np.sqrt(se**2 + sigma**2)
        over = "sqrt(se_i^2 + sigma^2), sigma at its posterior mean"
    table = pd.DataFrame({"row": np.arange(len(se)), model.design.response: model.design.y,
                          model.se_column: se, "fitted": fitted, "residual": resid,
                          "standardized": resid / scale})  # fmt: skip
    outside = int(np.sum(np.abs(table["standardized"]) > 2))
    w.text(sec, f"With known standard errors there are no posterior predictive draws here yet "
                "(they need the rows' scaling carried through). Instead each row's residual "
                "(data minus the posterior mean fit, the random effects included) divided by "
                f"{over}: under the model they spread no more than N(0, 1) "
                f"(less, as the fit includes each row's own random effect); {outside} of "
                f"{len(se)} lie beyond ±2.")  # fmt: skip
    w.table(sec, "standardized_residuals", table,
            "Rows: response, known standard error, posterior mean fit, residual and "
            "residual / standard error")  # fmt: skip


def _checks_section(w: _Writer, model: LMM, predictor: str | None) -> None:
    sec = w.section("checks", "Model checks")
    d = model.design
    if model.known_se is not None:
        _known_se_checks(w, sec, model)
        return
    if not d.rows_in_memory:
        w.text(sec, f"The figures of this section (the data against a predictor, posterior "
                    f"predictive checks and residuals) draw every row, and the model was "
                    f"fitted from a Dask DataFrame whose {d.n_obs} rows stay in its "
                    "partitions: they are left out. Draw them for a pandas sample of the rows "
                    "(fit bl.LMM to ddf.sample(frac=...).compute()).", "note")  # fmt: skip
        return
    if predictor is not None and d.blocks:
        group = d.blocks[0].group
        frame = d.frame.assign(**{d.response: d.y})
        w.figure(sec, "data_overview",
                 lambda: plots.data_overview(frame, d.response, predictor, group),
                 f"The data: {d.response} against {predictor}, coloured by {group}")  # fmt: skip
    w.figure(sec, "ppc", lambda: plots.ppc(model),
             "Posterior predictive check: the density of the data (black) should look like "
             "the densities of data sets replicated from the posterior (blue)")  # fmt: skip
    if d.blocks:
        w.figure(sec, "ppc_by_group", lambda: plots.ppc_by_group(model),
                 "Posterior predictive check within groups")  # fmt: skip
        w.figure(
            sec,
            "residuals",
            lambda: plots.residuals(model),
            "Residuals (data minus posterior mean fit): no pattern against the fitted "
            "values, a roughly normal density, and similar spread in every group",
        )


def _comparison_section(w: _Writer, comparison: Comparison) -> None:
    s = comparison.setup
    level = _percent(comparison.level)
    sec = w.section("comparison", "Bayesian, REML and the classical models")
    w.text(sec, f"The effect of <code>{html.escape(s.term)}</code> on "
                f"<code>{html.escape(s.response)}</code> in the tutorial's seven models and the "
                "Bayesian LMMs. LMM rows show the Wald z (statsmodels' SE) with lmerTest's "
                "Satterthwaite t beside it; Bayesian rows show the posterior mean, sd, "
                f"{level} HDI and the probability of direction; the other intervals are "
                f"{level} confidence intervals.")  # fmt: skip
    table = comparison.table
    _models_table(w, sec, table, "models")
    shown = comparison_forest_rows(comparison)
    w.figure(sec, "comparison_forest", lambda: plots.comparison_forest(comparison),
             f"Estimate and {level} interval of {s.term} in the {len(shown)} models that "
             "estimate it (Aggregation, a between-group slope, left out)")  # fmt: skip
    w.figure(sec, "group_fits", lambda: plots.group_fits(comparison),
             "Each group's fitted line (partial pooling), the ANCOVA lines (no pooling) and "
             "the population line")  # fmt: skip
    sec, shrinkage = _shrinkage_section(w, comparison)
    if shrinkage is None:
        return
    w.text(sec, html.escape(_shrinkage_note(shrinkage)))
    w.table(sec, "shrinkage", shrinkage,
            f"Shrinkage per level and random term (posterior HDI: {level})")  # fmt: skip
    w.figure(sec, "shrinkage_arrows", lambda: plots.shrinkage_arrows(comparison),
             "From no pooling to REML to the posterior mean, per level")  # fmt: skip
    if "Bayes-" + comparison.primary in comparison.fits:
        w.figure(sec, "caterpillar", lambda: plots.caterpillar(comparison),
                 f"Posterior group coefficients with {level} HDIs; crosses: REML")  # fmt: skip
    if s.random_slope:
        w.figure(
            sec,
            "shrinkage_2d",
            lambda: plots.shrinkage_2d(comparison),
            "Intercepts and slopes move from no pooling toward the population ellipse",
        )


#: Levels of a factor whose shrinkage rows the page shows (all are in shrinkage.csv).
MAX_SHOWN_LEVELS = 60

FIXED_CAPTION = (
    "Fixed effects, REML beside the posterior: lme4's estimate and SE, lmerTest's "
    "Satterthwaite df, t and p with the {level} t interval; the posterior mean, sd, {level} "
    "HDI and probability of direction (pd); shift_se = (posterior mean - REML estimate) / "
    "REML SE"
)
VARIANCE_CAPTION = (
    "Variance components, REML beside the posterior: SDs and correlations of the random "
    "effects and the residual SD; REML's estimate (a mode) with the posterior mean, median, "
    "sd and {level} HDI"
)
NO_POOLING = (
    "With several grouping factors, a level's own (no-pooling) estimate is the OLS fit, on "
    "that level's rows alone, of the partial residual (the response less the REML fixed "
    "effects and the other factors' BLUPs) on its factor's random-effect columns, plus the "
    "fixed effects. The REML BLUP is exactly that estimate shrunk toward the population, so "
    "that for random intercepts the REML shrinkage fraction is sigma^2 / (sigma^2 + n tau^2) "
    "(n: the level's rows, tau: the factor's SD). The posterior fraction uses the posterior "
    "mean of the level's random effect in place of the BLUP; as the own estimate is taken "
    "given REML's BLUPs of the other factors, a posterior that spreads the variation over "
    "the factors differently from REML (a factor with few levels, say) moves it outside "
    "[0, 1] more often. A level whose own rows do not identify its random terms (fewer rows "
    "than terms, a term constant within it) has no own estimate."
)


def _file_name(name: str, taken: set[str]) -> str:
    """A file-name-safe, unused version of a grouping factor's name."""
    base = re.sub(r"[^0-9A-Za-z_-]+", "_", name).strip("_") or "factor"
    out, k = base, 2
    while out in taken:
        out, k = f"{base}_{k}", k + 1
    taken.add(out)
    return out


def _factors_comparison_section(w: _Writer, comparison: MultiFactorComparison) -> None:
    s = comparison.setup
    level = _percent(comparison.level)
    bayes = comparison.bayes is not None
    sec = w.section("comparison", "Bayesian, REML and the classical models")
    w.text(sec, f"Grouping factors, {html.escape(s.structure)}. The formula "
                f"<code>{html.escape(s.formula)}</code> by REML (lme4's criterion) and "
                + ("by the posterior, side by side for every fixed effect and variance "
                   "component." if bayes else "(no Bayesian fit: bayes=False)."))  # fmt: skip
    w.table(sec, "factors", comparison.factors(),
            "Grouping factors: levels, rows per level, random terms and nesting")  # fmt: skip
    w.table(sec, "reml_vs_posterior_fixed", comparison.fixed_effects(),
            FIXED_CAPTION.format(level=level))  # fmt: skip
    w.table(sec, "reml_vs_posterior_variance", comparison.variance_components(),
            VARIANCE_CAPTION.format(level=level))  # fmt: skip
    w.figure(sec, "reml_posterior_forest", lambda: plots.reml_posterior_forest(comparison),
             f"REML (green, with the {level} Satterthwaite interval of each fixed effect) and "
             f"the posterior (purple: mean and {level} HDI) for every population "
             "parameter")  # fmt: skip
    if s.term is None:
        w.text(sec, "No table of classical models: the formula has no fixed effect besides "
                    "the intercept to compare them on.", "note")  # fmt: skip
    else:
        w.text(sec, f"The effect of <code>{html.escape(s.term)}</code> on "
                    f"<code>{html.escape(s.response)}</code> in the classical models that "
                    "still answer a question about it with several grouping factors: "
                    "complete pooling, fixed effects for every level (ANCOVA), and per factor "
                    "the analysis of level means (aggregation) and the two-stage analysis "
                    "(per-level OLS, then a t-test over levels: the by-subject and by-item, "
                    "F1 and F2, analyses), beside REML and the posterior. The tutorial's "
                    "ANCOVA with per-level slopes has no counterpart: with slopes per level "
                    "of two crossed factors the term itself is not identified. LMM rows "
                    "show the Wald z with lme4's SE and lmerTest's Satterthwaite t beside "
                    f"it; intervals are {level}.")  # fmt: skip
        table = comparison.table
        _models_table(w, sec, table, "models long")
        shown = comparison_forest_rows(comparison)
        if len(shown):
            w.figure(sec, "comparison_forest", lambda: plots.comparison_forest(comparison),
                     f"Estimate and {level} interval of {s.term} in the {len(shown)} models "
                     "that estimate it (aggregation, a slope between level means, left "
                     "out)")  # fmt: skip
    sec, shrinkage = _shrinkage_section(w, comparison)
    if shrinkage is None:
        return
    w.text(sec, html.escape(NO_POOLING))
    path = w.csv("shrinkage", shrinkage)
    taken: set[str] = set()
    for group in s.groups:
        part = shrinkage[shrinkage["group"] == group]
        n_levels = part["level"].nunique()
        w.heading(sec, f"{group}: {n_levels} levels")
        w.text(sec, html.escape(_shrinkage_note(part)))
        caption = f"Shrinkage per level and random term of {group} (posterior HDI: {level})"
        first = pd.unique(part["level"])[:MAX_SHOWN_LEVELS]
        if n_levels > MAX_SHOWN_LEVELS:
            caption += f"; the first {MAX_SHOWN_LEVELS} of {n_levels} levels, all in the file"
        shown = part[part["level"].isin(first)].drop(columns="group")
        if not shown["note"].astype(bool).any():
            shown = shown.drop(columns="note")
        w.show(sec, shown, caption, path.name)
        name = _file_name(group, taken)
        w.figure(sec, f"shrinkage_arrows_{name}",
                 lambda g=group: plots.shrinkage_arrows(comparison, g),
                 f"{group}: from no pooling to REML to the posterior mean, per level")  # fmt: skip
        if bayes:
            w.figure(sec, f"caterpillar_{name}", lambda g=group: plots.caterpillar(comparison, g),
                     f"{group}: posterior coefficients with {level} HDIs; crosses: "
                     "REML")  # fmt: skip


def _shrinkage_section(
    w: _Writer, comparison: Comparison | MultiFactorComparison
) -> tuple[Section, pd.DataFrame | None]:
    """The shrinkage section and the comparison's shrinkage table, or None (and a note
    saying why) where it has none."""
    sec = w.section("shrinkage", "Shrinkage of group effects")
    try:
        return sec, comparison.shrinkage()
    except BayesLMMError as err:
        w.text(sec, html.escape(f"No shrinkage table: {err}"), "note")
        return sec, None


def _predictor(model: LMM, comparison: Comparison | MultiFactorComparison | None) -> str | None:
    """The numeric column the data overview draws the response against (none without rows)."""
    if not model.design.rows_in_memory:
        return None
    frame = model.design.frame
    term = comparison.setup.term if comparison is not None else None
    if term in frame.columns and pd.api.types.is_numeric_dtype(frame[term]):
        return term
    if isinstance(comparison, Comparison):
        return term
    for name in model.design.fixed_names:
        if name in frame.columns and pd.api.types.is_numeric_dtype(frame[name]):
            return name
    return None


def report(
    model: LMM,
    comparison: Comparison | MultiFactorComparison | None = None,
    path: str | Path = "bayeslmm_report",
    title: str | None = None,
    comparison_note: str | None = None,
    random_effects: RandomEffectsComparison | None = None,
    random_effects_note: str | None = None,
    level: float | None = None,
    *,
    hdi_prob: float | None = None,
    glmer: GlmerResult | None = None,
    lmer: LmerResult | None = None,
) -> ReportFiles:
    """Write ``report.html`` (self-contained), the CSV tables and the PNG figures.

    Parameters
    ----------
    model
        A fitted :class:`~bayeslmm.LMM`. A binomial, Bernoulli or Poisson one
        (``bl.LMM(..., family=...)``) gets the GLMM report
        (:mod:`bayeslmm.present.glmm_report`: proportions or rates per level, glmer beside
        the posterior with odds or rate ratios, posterior predictive checks, randomized
        quantile residuals, the comparison and shrinkage); a negative binomial model is
        reported from its ``bl.glmer(..., family="negative_binomial")`` fit, without the
        posterior parts.
    comparison
        The :func:`~bayeslmm.compare` result for the same formula, if any. One grouping
        factor: adds the seven-model table, group fits and shrinkage. Several (nested or
        crossed): REML beside the posterior for every fixed effect and variance component,
        the classical models for the term, and shrinkage per factor. A GLMM's comparison
        is ``bl.compare(formula, data, family=...)``'s.
    path
        Output directory (created if needed).
    title
        Page title (default: the formula).
    comparison_note
        Why there is no comparison, shown in its place.
    random_effects
        The :func:`~bayeslmm.compare_random_effects` result for the model, if any: adds
        the section "Which random effects does the data support?" (a GLMM's:
        ``bl.compare_random_effects(formula, data, family=...)``, glmer's
        likelihood-ratio tests).
    random_effects_note
        Why that section has no comparison, shown in its place.
    level
        The one interval level of every table and figure (HDIs and confidence
        intervals); default: the comparison's ``level``, else 0.95.
    hdi_prob
        Deprecated old name of ``level`` (warns).
    glmer
        For a GLMM: its ``bl.glmer`` fit, shown beside the posterior (default: the
        comparison's; without either, the posterior alone).
    lmer
        For a model with known standard errors (``bl.LMM(..., se=...)``, without
        ``extra_sigma``): its ``bl.lmer(..., se=...)`` REML fit, shown beside the
        posterior.

    Returns
    -------
    ReportFiles
        Paths of the HTML file, every CSV and every figure.
    """
    if isinstance(model, GlmerResult) or (isinstance(model, LMM) and not is_gaussian(model)):
        return _glmm_report(model, comparison, path, title, comparison_note, random_effects,
                            random_effects_note, interval_level(level, hdi_prob, comparison.level
                                                                if comparison else 0.95),
                            glmer)  # fmt: skip
    if not isinstance(model, LMM):
        raise ArgumentError(f"report() needs a fitted bayeslmm.LMM, got "
                            f"{type(model).__name__}")  # fmt: skip
    if glmer is not None:
        raise ArgumentError("glmer= is for the report of a binomial, Bernoulli or Poisson "
                            "model; this model is Gaussian")  # fmt: skip
    if lmer is not None:
        _check_known_se_reml(model, lmer)
    if model.idata is None or model.convergence is None:
        raise NotFittedError("report() needs a fitted model: call model.fit() first")
    if random_effects is not None and not isinstance(random_effects, RandomEffectsComparison):
        raise ArgumentError(f"random_effects must come from bayeslmm.compare_random_effects(), "
                            f"got {type(random_effects).__name__}")  # fmt: skip
    if random_effects is not None and random_effects.family != "gaussian":
        raise ArgumentError(f"random_effects is the comparison of a {random_effects.family} "
                            "model and this model is Gaussian")  # fmt: skip
    if comparison is not None and not isinstance(comparison,
                                                 Comparison | MultiFactorComparison):  # fmt: skip
        raise ArgumentError(f"comparison must come from bayeslmm.compare(), got "
                            f"{type(comparison).__name__}")  # fmt: skip
    level = interval_level(level, hdi_prob, comparison.level if comparison else 0.95)
    for name, value in (("path", path), ("title", title), ("comparison_note", comparison_note),
                        ("random_effects_note", random_effects_note)):  # fmt: skip
        if not (isinstance(value, str | Path) if name == "path" else value is None
                or isinstance(value, str)):
            raise ArgumentError(f"{name} must be {'a path' if name == 'path' else 'text'}, "
                                f"got {value!r}")  # fmt: skip
    if comparison is not None and comparison.level != level:
        comparison = comparison.at_level(level)
    out = Path(path)
    prepare_output(out)
    summary = model.summary(print_it=False, level=level)
    w = _Writer(out)
    _data_section(w, model)
    _convergence_section(w, model, summary)
    _estimates_section(w, model, summary, level, lmer)
    _checks_section(w, model, _predictor(model, comparison))
    if isinstance(comparison, MultiFactorComparison):
        _factors_comparison_section(w, comparison)
    elif comparison is not None:
        _comparison_section(w, comparison)
    elif comparison_note:
        sec = w.section("comparison", "Bayesian, REML and the classical models")
        w.text(sec, html.escape(comparison_note), "note")
    if random_effects is not None or random_effects_note:
        random_effects_section(w, random_effects, random_effects_note)
    return _write_page(w, out, title or f"bayeslmm: {model.formula}", level)


def _check_known_se_reml(model: LMM, lmer: LmerResult) -> None:
    """``lmer=`` must be the REML fit, with the same known standard errors, of a model with
    known standard errors."""
    if model.known_se is None:
        raise ArgumentError("lmer= is for a model with known standard errors (bl.LMM(..., "
                            "se=...)); other models' REML fits are in the comparison "
                            "(bl.compare)")  # fmt: skip
    if not isinstance(lmer, LmerResult) or getattr(lmer, "known_se", None) is None:
        raise ArgumentError(f"lmer must be a bl.lmer(..., se={model.se_column!r}) fit, got "
                            f"{type(lmer).__name__}"
                            + (" without known standard errors"
                               if isinstance(lmer, LmerResult) else ""))  # fmt: skip
    if not lmer.reml or lmer.design.spec.formula != model.formula \
            or lmer.se_column != model.se_column or lmer.extra_sigma \
            or not np.array_equal(lmer.known_se, model.known_se):
        raise ArgumentError(f"lmer= must be the REML fit of {model.formula!r} with se="
                            f"{model.se_column!r} to the model's rows, got one of "
                            f"{lmer.design.spec.formula!r} (se={lmer.se_column!r}, "
                            f"{'REML' if lmer.reml else 'ML'})")  # fmt: skip


def _glmm_report(model, comparison, path, title, comparison_note, random_effects,
                 random_effects_note, level: float, glmer) -> ReportFiles:  # fmt: skip
    """The report of a binomial, Bernoulli or Poisson ``bl.LMM`` (with glmer's fit beside
    it), or of a negative binomial's glmer fit (:mod:`bayeslmm.present.glmm_report`)."""
    if isinstance(model, GlmerResult):
        if not model.family.negative_binomial:
            raise ArgumentError(
                f"report() of a {model.family.name} GLMM needs its Bayesian fit, "
                f"bl.LMM(formula, data, family={model.family.name!r}).fit(), with this glmer "
                "fit as glmer=...; a glmer fit alone is reported for the negative binomial "
                "family only (whose posterior, bl.LMM(..., family='negative_binomial'), "
                "may be reported instead)"
            )
        model, glmer = None, model
    elif model.idata is None or model.convergence is None:
        raise NotFittedError("report() needs a fitted model: call model.fit() first")
    source = model if model is not None else glmer
    if glmer is not None and not isinstance(glmer, GlmerResult):
        raise ArgumentError(f"glmer must be a bl.glmer() fit, got {type(glmer).__name__}")
    if comparison is not None and not isinstance(comparison, GlmmComparison):
        raise ArgumentError(f"comparison must come from bl.compare(formula, data, family=...) "
                            f"for this {source.family.name} model, got "
                            f"{type(comparison).__name__}")  # fmt: skip
    if random_effects is not None:
        if not isinstance(random_effects, RandomEffectsComparison):
            raise ArgumentError(f"random_effects must come from bl.compare_random_effects("
                                f"formula, data, family=...), got "
                                f"{type(random_effects).__name__}")  # fmt: skip
        if random_effects.family != source.family.name:
            raise ArgumentError(f"random_effects is the comparison of a {random_effects.family} "
                                f"model and this model is {source.family.name}: pass "
                                f"family={source.family.name!r} to "
                                "bl.compare_random_effects()")  # fmt: skip
        if random_effects.formula != source.formula:
            raise ArgumentError(f"random_effects is of {random_effects.formula!r}, the model "
                                f"of {source.formula!r}")  # fmt: skip
    for name, value in (("path", path), ("title", title), ("comparison_note", comparison_note),
                        ("random_effects_note", random_effects_note)):  # fmt: skip
        if not (isinstance(value, str | Path) if name == "path" else value is None
                or isinstance(value, str)):
            raise ArgumentError(f"{name} must be {'a path' if name == 'path' else 'text'}, "
                                f"got {value!r}")  # fmt: skip
    for fitted, what in ((glmer, "glmer fit"), (comparison, "comparison")):
        formula = getattr(getattr(fitted, "setup", fitted), "formula", None)
        if fitted is not None and formula != source.formula:
            raise ArgumentError(f"the {what} is of {formula!r}, the model of "
                                f"{source.formula!r}")  # fmt: skip
    if comparison is not None:
        if comparison.level != level:
            comparison = comparison.at_level(level)
        if glmer is None:
            glmer = comparison.fits.get("GLMM")
    out = Path(path)
    prepare_output(out)
    w = _Writer(out)
    write_glmm_report(w, model, glmer, comparison, level, comparison_note,
                      random_effects=random_effects,
                      random_effects_note=random_effects_note)  # fmt: skip
    return _write_page(w, out, title or f"bayeslmm: {source.formula}", level)


def prepare_output(out: Path) -> None:
    """Create the output directory (and ``figures/``), or say in one line why it cannot be."""
    if out.exists() and not out.is_dir():
        raise DataError(f"output directory {str(out)!r} is an existing file")
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
        probe = out / ".bayeslmm-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise DataError(f"cannot write the report to {str(out)!r}: {err.strerror or err}") from err


def _write_page(w: _Writer, out: Path, title: str, level: float) -> ReportFiles:
    """Render the sections ``w`` holds into ``out/report.html``, stamped with the version,
    the time and the intervals' level."""
    from .. import __version__

    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = w.render(title, f"Written by bayeslmm {__version__} on {stamp}; intervals are "
                           f"{_percent(level)} throughout.")  # fmt: skip
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return ReportFiles(html_path, w.tables, w.figures, w.failed)
