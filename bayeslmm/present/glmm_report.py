"""The report of a binomial, Bernoulli, Poisson or negative binomial mixed model.

What the Gaussian report shows, suited to the family: the data as proportions
(successes / trials) or rates (counts / exposure) per level; glmer's fit (Laplace) beside
the posterior on the link scale, with odds or rate ratios; the convergence verdict;
posterior predictive checks of each level's proportion or rate and of the whole response
(the proportion of successes, the counts' histogram); randomized quantile residuals
(Dunn & Smyth 1996, :func:`bayeslmm.glmm.residuals.quantile_residuals`) at the posterior
mean of each row's mean; the comparison (:mod:`bayeslmm.comparison.glmm`) and its
shrinkage; which random effects the data support (glmer's likelihood-ratio tests and,
with Bayesian neighbours, Bayes factors and leave-one-group-out and leave-one-observation-out
cross-validation: :func:`bayeslmm.compare_random_effects` with ``family=``); and a
section naming the Gaussian-only parts left out.

A negative binomial model's posterior has its dispersion ``theta`` (in the printed
summary); its residuals take the posterior mean of theta (glmer.nb's theta for a glmer.nb
fit reported alone).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.stats

from ..bayes import stack
from ..classical.glmer import GlmerResult
from ..comparison.glmm import RATIOS, GlmmComparison
from ..comparison.random_effects import RandomEffectsComparison
from ..glmm.residuals import quantile_residuals
from .plots import glmm as figures
from .plots.comparison import shrinkage_arrows
from .random_effects_section import random_effects_section
from .sections import _convergence_section, _models_table, _percent, _shrinkage_note
from .writer import Section, _Writer

if TYPE_CHECKING:
    from ..bayes.model import LMM
    from ..spec.design import Design
    from ..spec.response import GlmResponse

MAX_SHOWN_LEVELS = 60
#: counts drawn one bar each in the count check; larger counts share the last bar
MAX_COUNT_BARS = 30
#: posterior predictive draws used by the checks (thinned evenly from all draws)
MAX_PP_DRAWS = 1000


class _Fit:
    """What the report reads: the design, the response and, where they exist, the
    posterior (``model``) and glmer's fit."""

    def __init__(self, model: LMM | None, glmer: GlmerResult | None):
        self.model, self.glmer = model, glmer
        source = model if model is not None else glmer
        self.design: Design = source.design
        self.response: GlmResponse = source.response
        self.family = self.glmer.family if model is None else model.family
        self.formula: str = source.formula

    @property
    def ratio(self) -> str | None:
        return RATIOS.get(self.family.link.name)


# -- the data ------------------------------------------------------------------------------
def level_table(fit: _Fit, group: str, codes: np.ndarray, levels: pd.Index) -> pd.DataFrame:
    """Per level of ``group``: rows and the pooled proportion (successes / trials) or rate
    (count / exposure, exposure ``exp(offset)``, 1 per row without an offset)."""
    r, n_levels = fit.response, len(levels)
    rows = np.bincount(codes, minlength=n_levels)
    out = pd.DataFrame({"level": levels.astype(str), "rows": rows})
    if fit.family.binomial:
        trials = np.bincount(codes, r.weights, minlength=n_levels)
        successes = np.bincount(codes, r.successes, minlength=n_levels)
        out["trials"], out["successes"] = trials, successes
        out["proportion"] = successes / trials
    else:
        exposure = np.bincount(codes, np.exp(r.offset), minlength=n_levels)
        total = np.bincount(codes, r.y, minlength=n_levels)
        out["count"], out["exposure"] = total, exposure
        out["rate"] = total / exposure
        out["zeros"] = np.bincount(codes, r.y == 0, minlength=n_levels)
    return out


def _groups(design: Design) -> dict[str, tuple[np.ndarray, pd.Index]]:
    out: dict[str, tuple[np.ndarray, pd.Index]] = {}
    for block in design.blocks:
        out.setdefault(block.group, (block.codes, pd.Index(block.level_values)))
    return out


def _response_rows(fit: _Fit) -> pd.DataFrame:
    """The response as a whole, one statistic a row."""
    r = fit.response
    y = r.successes
    if fit.family.binomial and np.all(r.weights == 1):  # 0/1 rows
        rows = [("rows", len(y)), ("rows with 1 (successes)", y.sum()),
                ("rows with 0", len(y) - y.sum()), ("proportion of 1s", y.mean())]
    elif fit.family.binomial:
        rows = [("rows", len(y)), ("trials", r.weights.sum()), ("successes", y.sum()),
                ("proportion of successes", y.sum() / r.weights.sum()),
                ("rows with no successes", int(np.sum(y == 0))),
                ("rows with only successes", int(np.sum(y == r.weights)))]  # fmt: skip
    else:
        rows = [("rows", len(y)), ("total count", y.sum()), ("mean count", y.mean()),
                ("variance of the counts", y.var(ddof=1) if len(y) > 1 else np.nan),
                ("variance / mean", y.var(ddof=1) / y.mean() if len(y) > 1 and y.mean() > 0
                 else np.nan),
                ("rows with a zero count", int(np.sum(y == 0))), ("largest count", y.max()),
                ("exposure (sum of exp(offset))", np.exp(r.offset).sum())]  # fmt: skip
    return pd.DataFrame(rows, columns=["statistic", "value"])


def _data_section(w: _Writer, fit: _Fit) -> None:
    d, fam = fit.design, fit.family
    sec = w.section("data", "Data and model")
    dropped = f", {d.n_dropped} dropped for missing values" if d.n_dropped else ""
    what = ("the number of successes out of each row's trials" if fam.name == "binomial"
            else "0/1 outcomes" if fam.binomial else "counts")  # fmt: skip
    w.text(sec, f"Formula <code>{html.escape(fit.formula)}</code>, family "
                f"<code>{html.escape(str(fam))}</code>, fitted to {d.n_obs} rows{dropped}: "
                f"the response <code>{html.escape(fit.response.name)}</code> is {what}. "
                f"Estimates are on the {fam.link.name} (link) scale"
                + (f", with exp() of them, the {fit.ratio}s, beside them." if fit.ratio
                   else "."))  # fmt: skip
    model = fit.model
    if model is not None:
        info = model.fit_info
        took = f" Sampling took {info.seconds:.1f} s." if info.seconds is not None else ""
        w.text(sec, f"Sampler: {info.sampler} NUTS, method <code>{info.method}</code> "
                    f"(explicit random effects), {info.settings.chains} chains x "
                    f"{info.settings.draws} draws after {info.settings.tune} tuning steps, "
                    f"target acceptance {info.target_accept}, "
                    f"{info.mass_matrix or 'diagonal'} mass matrix.{took}")  # fmt: skip
    w.table(sec, "data_summary", _response_rows(fit), "The response as a whole")
    unit = "proportion" if fam.binomial else "rate"
    for group, (codes, levels) in _groups(d).items():
        table = level_table(fit, group, codes, levels)
        values = table[unit]
        w.heading(sec, f"{group}: {len(levels)} levels")
        w.text(sec, f"Rows per level {table['rows'].min()} to {table['rows'].max()} (median "
                    f"{table['rows'].median():g}); the {unit} per level from "
                    f"{values.min():.4g} to {values.max():.4g} (median {values.median():.4g})"
                    + (f"; {int((values == 0).sum())} level(s) with no successes and "
                       f"{int((values == 1).sum())} with only successes" if fam.binomial
                       else f"; {int((values == 0).sum())} level(s) with no counts at all")
                    + ".")  # fmt: skip
        name = f"data_{_safe(group)}"
        path = w.csv(name, table)
        caption = f"The {unit} per level of {group}"
        if len(table) > MAX_SHOWN_LEVELS:
            caption += f"; the first {MAX_SHOWN_LEVELS} of {len(table)} levels, all in the file"
        w.show(sec, table.head(MAX_SHOWN_LEVELS), caption, path.name)
    if model is not None:
        priors = pd.DataFrame({"parameter": list(model.priors),
                               "prior": [repr(p) for p in model.priors.values()]})  # fmt: skip
        w.table(sec, "priors", priors, "Priors on the link scale (autoscaled defaults unless "
                                       "overridden)")  # fmt: skip


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "factor"


# -- the fit ---------------------------------------------------------------------------------
def fixed_effects_table(fit: _Fit, level: float) -> pd.DataFrame:
    """Per fixed effect: glmer's estimate, SE, z, p and Wald interval, and the posterior
    mean, sd and HDI, each with exp() of the estimate and interval ends beside it (the
    odds or rate ratio; none for other links)."""
    z = scipy.stats.norm.ppf(0.5 + level / 2)
    parts = []
    if fit.glmer is not None:
        g = fit.glmer
        wald = g.coefficients()
        est, se = wald["Estimate"], wald["Std. Error"]
        glmer = pd.DataFrame({"glmer_estimate": est, "glmer_se": se, "z": wald["z value"],
                              "p_value": wald["Pr(>|z|)"], "glmer_lower": est - z * se,
                              "glmer_upper": est + z * se})  # fmt: skip
        if fit.ratio:
            for col in ("estimate", "lower", "upper"):
                glmer[f"glmer_exp_{col}"] = np.exp(glmer[f"glmer_{col}"])
        parts.append(glmer)
    if fit.model is not None:
        beta = stack.posterior(fit.model.idata)["beta"]
        lower, upper = stack.hdi(beta, level)
        names = [str(n) for n in beta["fixed"].values]
        post = pd.DataFrame({"posterior_mean": beta.mean(("chain", "draw")).values,
                             "posterior_sd": beta.std(("chain", "draw"), ddof=1).values,
                             "hdi_lower": np.asarray(lower, float),
                             "hdi_upper": np.asarray(upper, float)}, index=names)  # fmt: skip
        if fit.ratio:
            post["exp_posterior_mean"] = np.exp(post["posterior_mean"])
            post["exp_hdi_lower"] = np.exp(post["hdi_lower"])
            post["exp_hdi_upper"] = np.exp(post["hdi_upper"])
        parts.append(post)
    return pd.concat(parts, axis=1).rename_axis("term").reset_index()


def _fit_section(w: _Writer, fit: _Fit, level: float) -> pd.DataFrame | None:
    fits = [n for n, f in (("glmer (Laplace)", fit.glmer), ("the posterior", fit.model))
            if f is not None]  # fmt: skip
    sec = w.section("fit", f"The fit: {' and '.join(fits)}")
    pct = _percent(level)
    ratio = f" and exp() of them, the {fit.ratio}s," if fit.ratio else ""
    summary = None
    if fit.glmer is not None:
        w.text(sec, "lme4's glmer by maximum likelihood (Laplace approximation), as "
                    "<code>summary(glmer(...))</code> prints it:")  # fmt: skip
        sec.parts.append(f"<pre>{html.escape(str(fit.glmer.summary()))}</pre>")
    if fit.model is not None:
        summary = fit.model.summary(print_it=False, level=level)
        w.text(sec, "The posterior (NUTS), lme4-like, on the link scale:")
        sec.parts.append(f"<pre>{html.escape(str(summary))}</pre>")
    what = " and ".join(p for p, f in (("glmer's estimate, Wald SE, z, p and "
                                         f"{pct} Wald interval", fit.glmer),
                                        (f"the posterior mean, sd and {pct} HDI", fit.model))
                        if f is not None)  # fmt: skip
    w.table(sec, "fixed_effects_glmer_posterior", fixed_effects_table(fit, level),
            f"Fixed effects on the {fit.family.link.name} scale: {what}{ratio} (exp of the "
            "estimate and of the interval's ends)")  # fmt: skip
    if fit.glmer is not None:
        w.table(sec, "glmer_variance_components", fit.glmer.varcorr(),
                "glmer's variance components: SDs and correlations of the random effects "
                "(link scale)")  # fmt: skip
    if fit.model is not None:
        w.table(sec, "variance_components", fit.model.varcorr(level=level),
                "Posterior variance components: SDs and correlations of the random effects "
                f"(link scale); mean, sd and {pct} HDI")  # fmt: skip
        ranef = pd.concat(fit.model.ranef(level=level), names=["group"]).reset_index()
        w.csv("random_effects", ranef)
    return summary


# -- posterior predictive checks --------------------------------------------------------------
def replicates(model: LMM, random_seed: int | None) -> np.ndarray:
    """Posterior predictive draws of the response (successes, 0/1 or counts), (draws x
    rows), at most :data:`MAX_PP_DRAWS` evenly thinned draws."""
    draws = model.predict(kind="response", random_seed=random_seed).values
    draws = draws.reshape(-1, draws.shape[-1])
    if len(draws) > MAX_PP_DRAWS:
        draws = draws[np.linspace(0, len(draws) - 1, MAX_PP_DRAWS).round().astype(int)]
    return draws.astype(float)


def _interval(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The central (equal-tailed) interval of the draws along axis 0."""
    return (np.quantile(values, 0.5 - level / 2, axis=0),
            np.quantile(values, 0.5 + level / 2, axis=0))  # fmt: skip


def group_check_table(fit: _Fit, rep: np.ndarray, codes: np.ndarray, levels: pd.Index,
                      level: float) -> pd.DataFrame:  # fmt: skip
    """Per level: the observed proportion (rate) and its posterior predictive mean and
    central interval, from the replicated successes (counts) summed over the level's rows."""
    table = level_table(fit, "", codes, levels)
    indicator = scipy.sparse.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)),
                                        shape=(len(codes), len(levels)))  # fmt: skip
    sums = np.asarray((indicator.T @ rep.T).T)
    unit = "proportion" if fit.family.binomial else "rate"
    per = table["trials" if fit.family.binomial else "exposure"].to_numpy(float)
    values = sums / per
    lower, upper = _interval(values, level)
    observed = table[unit].to_numpy(float)
    out = table[["level", "rows"]].assign(observed=observed, pp_mean=values.mean(axis=0),
                                          pp_lower=lower, pp_upper=upper)  # fmt: skip
    out["outside"] = (observed < lower) | (observed > upper)
    return out


def statistics(fit: _Fit, rep: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Whole-response statistics per replicate and of the data: the proportion of
    successes (and, with trials, of rows with none) or the counts' mean, variance, share
    of zeros and maximum."""
    r = fit.response
    y = r.successes
    if fit.family.binomial:
        trials = r.weights.sum()
        draws = {"proportion of successes": rep.sum(axis=1) / trials}
        observed = {"proportion of successes": y.sum() / trials}
        if np.any(r.weights > 1):
            draws["share of rows with no successes"] = (rep == 0).mean(axis=1)
            observed["share of rows with no successes"] = float(np.mean(y == 0))
        return draws, observed
    draws = {"mean count": rep.mean(axis=1), "variance of the counts": rep.var(axis=1, ddof=1),
             "share of zeros": (rep == 0).mean(axis=1), "largest count": rep.max(axis=1)}
    observed = {"mean count": float(y.mean()), "variance of the counts": float(y.var(ddof=1)),
                "share of zeros": float(np.mean(y == 0)), "largest count": float(y.max())}
    return draws, observed


def statistics_table(draws: dict[str, np.ndarray], observed: dict[str, float],
                     level: float) -> pd.DataFrame:  # fmt: skip
    rows = []
    for name, values in draws.items():
        lower, upper = _interval(values, level)
        rows.append({"statistic": name, "observed": observed[name], "pp_mean": values.mean(),
                     "pp_lower": float(lower), "pp_upper": float(upper),
                     "p_greater_equal": float(np.mean(values >= observed[name]))})  # fmt: skip
    return pd.DataFrame(rows)


def count_table(y: np.ndarray, rep: np.ndarray, level: float) -> pd.DataFrame:
    """Rows with each count 0, 1, ..., the last bar open (``K+``) where the counts go on
    past :data:`MAX_COUNT_BARS`: observed and posterior predictive mean and interval."""
    top = int(min(max(y.max(), np.quantile(rep, 0.99)), MAX_COUNT_BARS))
    edges = np.minimum(rep, top).astype(np.int64)
    # one bincount over (replicate, count) pairs: rows x (top + 1) frequencies
    index = (np.arange(len(rep))[:, None] * (top + 1) + edges).ravel()
    freq = np.bincount(index, minlength=len(rep) * (top + 1)).reshape(len(rep), top + 1)
    obs = np.bincount(np.minimum(y, top).astype(np.int64), minlength=top + 1)
    lower, upper = _interval(freq, level)
    open_end = bool(y.max() > top or rep.max() > top)
    labels = [str(k) for k in range(top + 1)]
    if open_end:
        labels[-1] = f"{top}+"
    return pd.DataFrame({"count": np.arange(top + 1), "label": labels, "observed": obs,
                         "pp_mean": freq.mean(axis=0), "pp_lower": lower,
                         "pp_upper": upper})  # fmt: skip


def _checks_section(w: _Writer, fit: _Fit, level: float, seed: int | None) -> None:
    sec = w.section("checks", "Model checks")
    pct = _percent(level)
    if fit.model is None:
        w.text(sec, f"No posterior predictive checks: they need posterior draws, and the "
                    f"{fit.family.name} family has glmer's fit only.", "note")  # fmt: skip
    else:
        rep = replicates(fit.model, seed)
        unit = "proportion" if fit.family.binomial else "rate"
        w.text(sec, f"Posterior predictive checks: {len(rep)} data sets replicated from the "
                    "posterior (<code>model.predict(kind='response')</code>, the random "
                    f"effects of the fitted levels included), each level's {unit} and the "
                    f"response as a whole computed on every one; intervals are central {pct} "
                    "intervals of the replicates.")  # fmt: skip
        for group, (codes, levels) in _groups(fit.design).items():
            table = group_check_table(fit, rep, codes, levels, level)
            outside = int(table["outside"].sum())
            w.heading(sec, f"The {unit} per {group}")
            w.text(sec, f"{outside} of {len(table)} levels of {group} have an observed {unit} "
                        f"outside its {pct} posterior predictive interval (about "
                        f"{(1 - level) * len(table):.1f} expected by chance, fewer where the "
                        "levels' own random effects fit them closely).")  # fmt: skip
            name = _safe(group)
            path = w.csv(f"ppc_{name}", table)
            w.figure(sec, f"ppc_{name}",
                     lambda t=table, g=group: figures.group_check(t, g, unit),
                     f"Observed {unit} per level of {group} (dots; crosses outside the "
                     f"interval) against the posterior predictive mean and {pct} interval; "
                     f"the numbers are in {path.name}")  # fmt: skip
        draws, observed = statistics(fit, rep)
        w.heading(sec, "The response as a whole")
        w.table(sec, "ppc_statistics", statistics_table(draws, observed, level),
                f"Statistics of the response, observed and replicated (mean and central {pct} "
                "interval; p_greater_equal: the share of replicates at or above the "
                "observed value, near 0 or 1 where the model misses it)")  # fmt: skip
        w.figure(sec, "ppc_statistics", lambda: figures.statistic_check(draws, observed),
                 "Each statistic of the data (line) against its replicates "
                 "(histogram)")  # fmt: skip
        if fit.family.counts:
            counts = count_table(fit.response.y, rep, level)
            w.table(sec, "ppc_counts", counts,
                    f"Rows with each count: observed and posterior predictive (mean, central "
                    f"{pct} interval)")  # fmt: skip
            w.figure(sec, "ppc_counts", lambda: figures.count_check(counts, fit.design.response),
                     "The counts' histogram (bars) against the posterior predictive (points "
                     f"and {pct} intervals)")  # fmt: skip
    _residuals(w, sec, fit, seed)


def fitted_mean(fit: _Fit) -> tuple[np.ndarray, np.ndarray, str]:
    """Each row's mean (a probability, an expected count) and linear predictor where the
    residuals are taken, and the words for it: the posterior mean of the mean (random
    effects included), or glmer's fitted mean without a posterior."""
    if fit.model is not None:
        mu = fit.model.fitted()
        return mu, fit.family.linkfun(mu), "the posterior mean of each row's mean"
    g = fit.glmer
    return g.fitted("response"), g.fitted("link"), "glmer's fitted mean of each row"


def residual_table(resid: np.ndarray) -> pd.DataFrame:
    ks = scipy.stats.kstest(resid, "norm")
    return pd.DataFrame([{
        "rows": len(resid), "mean": resid.mean(), "sd": resid.std(ddof=1),
        "share_beyond_2": float(np.mean(np.abs(resid) > 2)), "expected_share_beyond_2":
        float(2 * scipy.stats.norm.sf(2)), "ks_statistic": ks.statistic, "ks_p_value": ks.pvalue,
    }])  # fmt: skip


def _residuals(w: _Writer, sec: Section, fit: _Fit, seed: int | None) -> None:
    mu, eta, where = fitted_mean(fit)
    family = fit.family
    if family.negative_binomial and family.theta is None and fit.model is not None:
        theta = stack.posterior(fit.model._posterior())["theta"]
        family = family.with_theta(float(theta.mean()))
    elif family.negative_binomial and family.theta is None and fit.glmer is not None:
        family = family.with_theta(fit.glmer.nb_theta)
    rng = np.random.default_rng(None if seed is None else [seed, 2])
    resid = quantile_residuals(family, fit.response.y, fit.response.weights, mu, rng)
    w.heading(sec, "Randomized quantile residuals")
    w.text(sec, html.escape(
                f"Randomized quantile residuals (Dunn & Smyth 1996) at {where}: with F the "
                f"row's {family.name} distribution function at that mean, u is drawn "
                "uniformly between F(y - 1) and F(y) and the residual is the standard normal "
                "quantile of u. Under the model they are N(0, 1) whatever the family, so "
                "the QQ plot should follow its line; points outside the band, a wide "
                "spread or a pattern against the fitted values say the family or the mean "
                "is wrong (overdispersion makes them too spread out). The uniform draw "
                "varies from run to run (one draw is shown); taken at a fitted mean, they "
                "are slightly less spread than N(0, 1) when a level has few rows."))  # fmt: skip
    w.table(sec, "residual_summary", residual_table(resid),
            "Residual summary: mean, sd, share beyond ±2 (N(0, 1): 4.6%), and the "
            "Kolmogorov-Smirnov test against N(0, 1)")  # fmt: skip
    w.csv("residuals", pd.DataFrame({"row": np.arange(len(resid)), "fitted_mean": mu,
                                     "fitted_link": eta, "residual": resid}))  # fmt: skip
    w.figure(sec, "residuals", lambda: figures.quantile_residuals(resid, eta, family.link.name),
             "Randomized quantile residuals: normal QQ plot (grey: the 95% band of N(0, 1) "
             "order statistics) and residuals against the fitted linear predictor")  # fmt: skip


# -- the comparison -------------------------------------------------------------------------
def _comparison_section(w: _Writer, comparison: GlmmComparison) -> None:
    s = comparison.setup
    pct = _percent(comparison.level)
    sec = w.section("comparison", "The GLMM and the classical models")
    ratio = (f" exp_estimate, exp_ci_lower and exp_ci_upper are the {s.ratio} and its "
             "interval." if s.ratio else "")  # fmt: skip
    w.text(sec, f"The effect of <code>{html.escape(s.term)}</code> on "
                f"<code>{html.escape(s.response)}</code> on the {s.family.link.name} scale: "
                "GLMs with complete pooling and with a dummy per level (no pooling), the "
                "GLM of the levels' aggregates, the two-stage analysis, glmer (Laplace; Wald "
                f"z) and the posterior (mean, sd, {pct} HDI, probability of direction); the "
                f"other intervals are {pct} Wald intervals.{ratio}")  # fmt: skip
    _models_table(w, sec, comparison.table, "models long")
    shown = comparison.table.dropna(subset=["estimate"])
    shown = shown[~shown["model"].str.startswith("Aggregation")]
    if len(shown):
        from .plots import comparison_forest

        w.figure(sec, "comparison_forest", lambda: comparison_forest(comparison),
                 f"Estimate and {pct} interval of {s.term} ({s.family.link.name} scale) in "
                 f"the {len(shown)} models that estimate it (aggregation, a between-level "
                 "association, left out)")  # fmt: skip
    sec = w.section("shrinkage", "Shrinkage of group effects")
    try:
        shrinkage = comparison.shrinkage()
    except Exception as err:  # noqa: BLE001 - the page says why, never crashes
        w.text(sec, html.escape(f"No shrinkage table: {err}"), "note")
        return
    w.text(sec, html.escape(
        f"On the {s.family.link.name} (link) scale. Each level's own estimate (no pooling: "
        "a GLM of its rows alone, the fixed effects and the other factors' modes held at "
        "glmer's fit) is pulled toward the population by the mixed model: glmer's "
        "conditional mode (fixed effect + mode; the columns 'reml' and 'reml_sd' keep "
        "the Gaussian table's names and hold glmer's mode and its conditional SD) and the "
        "posterior mean. A level whose rows separate (no successes, no failures, only zero "
        "counts) has no finite own estimate: NaN and a note."))  # fmt: skip
    path = w.csv("shrinkage", shrinkage)
    from .plots import caterpillar

    for group in s.groups:
        part = shrinkage[shrinkage["group"] == group]
        n_levels = part["level"].nunique()
        w.heading(sec, f"{group}: {n_levels} levels")
        w.text(sec, html.escape(_shrinkage_note(part)))
        first = pd.unique(part["level"])[:MAX_SHOWN_LEVELS]
        caption = f"Shrinkage per level and random term of {group} (posterior HDI: {pct})"
        if n_levels > MAX_SHOWN_LEVELS:
            caption += f"; the first {MAX_SHOWN_LEVELS} of {n_levels} levels, all in the file"
        w.show(sec, part[part["level"].isin(first)].drop(columns="group"), caption, path.name)
        name = _safe(group)
        w.figure(sec, f"shrinkage_arrows_{name}",
                 lambda g=group: shrinkage_arrows(comparison, g),
                 f"{group}: from no pooling to glmer's conditional mode to "
                 "the posterior mean, per level, on the link scale")  # fmt: skip
        if comparison.bayes is not None:
            w.figure(sec, f"caterpillar_{name}", lambda g=group: caterpillar(comparison, g),
                     f"{group}: posterior coefficients with {pct} HDIs; crosses: glmer's "
                     "conditional modes")  # fmt: skip


#: the random-effects choice when the report was not given it
RANDOM_EFFECTS_MISSING = (
    "Which random effects does the data support?",
    "not computed for this report: bl.report(..., random_effects=bl.compare_random_effects("
    "formula, data, family=..., bayes=True)) adds glmer's likelihood-ratio test of every "
    "random term and, from Bayesian fits of the neighbours, Bayes factors and "
    "leave-one-group-out (bayeslmm fit ... --family does)")  # fmt: skip

#: what a one-factor model's Bayes factor needs that crossed or nested factors lack
CROSSED_BAYES_FACTORS = (
    "Bayes factors of crossed or nested factors",
    "bridge sampling integrates each level's random effects out on its own, which needs "
    "one grouping factor; leave-one-group-out is computed for these models (one factor's "
    "levels left out, given the other factors' effects)")  # fmt: skip

NOT_YET = [
    ("ICC and R2", "the variance partition (Nakagawa & Schielzeth) on the latent scale is "
     "not written for GLMMs yet"),
]  # fmt: skip


def _not_yet_section(w: _Writer, fit: _Fit, comparison_note: str | None,
                     random_effects: bool) -> None:  # fmt: skip
    sec = w.section("not_yet", f"Not yet for the {fit.family.name} family")
    items = list(NOT_YET) if random_effects else [RANDOM_EFFECTS_MISSING, *NOT_YET]
    if fit.model is not None and len({b.group for b in fit.design.blocks}) > 1:
        items.insert(0, CROSSED_BAYES_FACTORS)
    if fit.model is None:
        items.insert(0, ("The posterior", "the report was given the glmer fit alone: no "
                         "posterior summaries, convergence checks or posterior predictive "
                         f"checks (bl.LMM(..., family={fit.family.name!r}).fit() samples "
                         "it)"))  # fmt: skip
    if comparison_note:
        items.append(("The comparison", comparison_note))
    w.text(sec, "Parts of the Gaussian report that this model's report leaves out:")
    lis = "".join(f"<li><b>{html.escape(t)}</b>: {html.escape(why)}</li>" for t, why in items)
    sec.parts.append(f"<ul>{lis}</ul>")


def write_glmm_report(
    w: _Writer,
    model: LMM | None,
    glmer: GlmerResult | None,
    comparison: GlmmComparison | None,
    level: float,
    comparison_note: str | None,
    random_seed: int | None = 0,
    random_effects: RandomEffectsComparison | None = None,
    random_effects_note: str | None = None,
) -> None:
    """Add every section of a GLMM's report to ``w`` (see the module text); with
    ``random_effects`` (or a note why there is none) the section "Which random effects
    does the data support?" of :mod:`bayeslmm.present.random_effects_section`."""
    fit = _Fit(model, glmer)
    _data_section(w, fit)
    summary = _fit_section(w, fit, level)
    if model is not None:
        _convergence_section(w, model, summary)
    _checks_section(w, fit, level, random_seed)
    if comparison is not None:
        _comparison_section(w, comparison)
    shown = random_effects is not None or bool(random_effects_note)
    if shown:
        random_effects_section(w, random_effects, random_effects_note)
    _not_yet_section(w, fit, comparison_note if comparison is None else None, shown)
