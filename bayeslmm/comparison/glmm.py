"""The comparison of a binomial, Bernoulli, Poisson or negative binomial mixed model:
``bl.compare(formula, data, family=...)``.

One fixed term (``term``) in every model, on the link scale (log-odds, log-rate), with the
ratio it means beside it (odds ratio for the logit link, rate ratio for the log link):

- ``GLM-Global``: complete pooling, the GLM of the fixed part (every grouping factor
  ignored).
- ``GLM-Groups``: group effects as fixed, the GLM of the fixed part plus a dummy for
  every level of every grouping factor (no pooling). A level whose rows have no successes,
  no failures or only zero counts has an infinite dummy (separation, found by a linear
  program before the fit: :mod:`bayeslmm.comparison.glm`); its rows are then set aside,
  the term is estimated from the others, and the note says which levels.
- ``Aggregation (g)``, per factor: one row per level of ``g``. Binomial and Bernoulli: the
  level's pooled proportion of successes out of its trials (a binomial GLM with the level's
  total trials), on the trial-weighted means of the fixed columns. Poisson (log link): the
  level's total count with the log of its summed exposure (``exp(offset)``; 1 per row
  without an offset) as offset, on the exposure-weighted means of the fixed columns. It
  estimates the between-level association, not the within-level one. (A Poisson model with
  the identity link has no such aggregate: the row says so.)
- ``Two-stage (g)``, per factor: the GLM of the fixed part within every level (the columns
  constant within it left out), then the mean of the levels' estimates of the term with
  its SE across levels (a t-test with levels - 1 df). Levels whose own GLM separates (no
  successes, no failures, zero counts), does not identify the term or does not converge
  are left out and counted in the note.
- ``GLMM``: ``bl.glmer`` (Laplace) of the formula, exactly as ``bl.glmer(formula, data,
  family=...)`` returns it (Wald z with lme4's Hessian-based SE).
- ``Bayes``: the posterior of ``bl.LMM(formula, data, family=...)`` (mean, SD, HDI and
  the probability of direction), with ``bayes=True``.

The GLM rows are statsmodels' GLMs (Wald z, scale fixed at 1), fitted to the rows of the
GLMM's design. ``rmse`` and the Satterthwaite columns of the Gaussian table are NaN here.

Negative binomial (log link): every GLM row estimates its own ``theta`` by maximum
likelihood as MASS's ``glm.nb`` (the aggregated GLM too, on the levels' totals), and its
note gives it; the per-level fits of the two-stage model hold ``theta`` at the
``GLM-Groups`` estimate (a level's few rows do not estimate it), the no-pooling fits at
glmer's; glmer estimates it as lme4's ``glmer.nb``; the ``Bayes`` row's ``bl.LMM``
samples it.

Shrinkage (:meth:`GlmmComparison.shrinkage`) is on the link scale, per level and random
term of every grouping factor: the level's own estimate (a GLM of its rows alone on its
random-effect columns, with everything else held at the glmer fit: the fixed effects and
the other factors' conditional modes enter as an offset; infinite where the level
separates, then NaN and a note), glmer's conditional mode (fixed effect + mode, lme4's
``coef``) with its conditional SD (lme4's ``condVar``), and the posterior mean and HDI.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from ..bayes import stack
from ..bayes.glm_model import BAYES_FAMILIES, is_gaussian
from ..bayes.model import LMM
from ..classical.glmer import GlmerResult, glmer
from ..classical.ols import TwoStageFit, estimable, refuse_dask
from ..errors import (
    ArgumentError,
    BayesLMMError,
    DataError,
    FormulaError,
    check_probability,
)
from ..spec.design import Design
from ..spec.family import Family
from ..spec.response import glm_design
from .factors import MAX_CELLS, MAX_DUMMIES, _posterior_columns, shrinkage_columns
from .glm import GlmResponse, check_family, fit_glm, per_level_glm
from .rows import check_fit_settings, check_level, model_table

#: The ratio that ``exp()`` of a coefficient is, per link.
RATIOS = {"logit": "odds ratio", "log": "rate ratio"}
EXP_COLUMNS = ["exp_estimate", "exp_ci_lower", "exp_ci_upper"]


@dataclass(frozen=True)
class GlmmSetup:
    """What a GLMM comparison is built from: formula, family, grouping factors, term.

    ``group`` is the first grouping factor and ``random_slope`` says whether any random
    term has more than an intercept (the names the shrinkage figures read).
    """

    formula: str
    response: str
    fixed: str
    family: Family
    groups: tuple[str, ...]
    term: str
    random_slope: bool

    @property
    def group(self) -> str:
        return self.groups[0]

    @property
    def glm(self) -> str:
        return f"{self.response} ~ {self.fixed}"

    @property
    def ratio(self) -> str | None:
        """``"odds ratio"``, ``"rate ratio"``, or None (a link without a ratio reading)."""
        return RATIOS.get(self.family.link.name)


def _codes(design: Design) -> dict[str, tuple[np.ndarray, pd.Index]]:
    """Per grouping factor (design order): level code of every row and the levels."""
    out: dict[str, tuple[np.ndarray, pd.Index]] = {}
    for block in design.blocks:
        out.setdefault(block.group, (block.codes, block.level_values))
    return out


class _GlmerRow:
    """The glmer row: lme4's Wald z with the Hessian-based SE."""

    def __init__(self, fit: GlmerResult):
        self.fit = fit

    def row(self, term: str, level: float) -> dict[str, Any]:
        wald = self.fit.coefficients().loc[term]
        est, se, z = float(wald["Estimate"]), float(wald["Std. Error"]), float(wald["z value"])
        half = scipy.stats.norm.ppf(0.5 + level / 2) * se
        notes = [
            "singular fit" if self.fit.singular else "",
            f"theta {self.fit.nb_theta:.4g}" if self.fit.nb_theta is not None else "",
            "" if self.fit.converged else "the optimiser did not report convergence",
        ]
        return {"estimate": est, "se": se, "statistic": z, "stat_type": "z", "df": np.inf,
                "p_value": float(wald["Pr(>|z|)"]), "ci_lower": est - half,
                "ci_upper": est + half, "note": "; ".join(n for n in notes if n)}  # fmt: skip


class _BayesRow:
    """The posterior row: mean, SD, HDI and probability of direction of the term."""

    def __init__(self, model: LMM):
        self.model = model

    def row(self, term: str, level: float) -> dict[str, Any]:
        beta = stack.posterior(self.model.idata)["beta"].sel(fixed=term)
        draws = beta.values.ravel()
        lower, upper = stack.hdi(beta, level)
        return {"estimate": float(draws.mean()), "se": float(draws.std(ddof=1)),
                "stat_type": "posterior", "ci_lower": float(lower), "ci_upper": float(upper),
                "pd": float(max(np.mean(draws > 0), np.mean(draws < 0)))}  # fmt: skip


class _GlmRow:
    """A GLM row whose fit comes with what its row should say."""

    def __init__(self, fit: Any, note: str = ""):
        self.fit, self.note = fit, note

    def row(self, term: str, level: float) -> dict[str, Any]:
        out = self.fit.row(term, level)
        out["note"] = "; ".join(n for n in (self.note, out.get("note", "")) if n)
        return out


@dataclass
class GlmmComparison:
    """The classical GLMs, glmer and the posterior of a binomial, Bernoulli or Poisson
    mixed model for one fixed term, and the shrinkage of every level (see
    :mod:`bayeslmm.comparison.glmm`).

    Attributes
    ----------
    setup
        Formula, family, grouping factors and term.
    table
        One row per model (the Gaussian table's columns, :data:`~bayeslmm.comparison.rows.
        TABLE_COLUMNS`, then ``exp_estimate``, ``exp_ci_lower``, ``exp_ci_upper``: exp of
        the estimate and of the interval's ends, the odds ratio (logit link) or rate ratio
        (log link), as ``table.attrs["ratio"]`` says; NaN, with a note, for other links).
        The estimates are on the link scale (``table.attrs["scale"]``).
    fits
        Every fitted model by row name: ``GLMM`` (:class:`~bayeslmm.classical.glmer.
        GlmerResult`), ``Bayes`` (:class:`~bayeslmm.LMM`) and the GLMs.
    level
        Coverage of every interval.
    """

    setup: GlmmSetup
    table: pd.DataFrame = field(repr=False)
    fits: dict[str, Any] = field(repr=False)
    level: float = 0.95
    methods: dict[str, str] = field(repr=False, default_factory=dict)
    notes: dict[str, str] = field(repr=False, default_factory=dict)
    row_notes: dict[str, str] = field(repr=False, default_factory=dict)
    _tables: dict[tuple[str, float], pd.DataFrame] = field(repr=False, default_factory=dict)

    @property
    def glmer(self) -> GlmerResult:
        """The glmer (Laplace) fit of the formula."""
        return self.fit("GLMM")

    @property
    def bayes(self) -> LMM | None:
        """The Bayesian fit of the formula, if any."""
        return self.fits.get("Bayes")

    @property
    def scale(self) -> str:
        return f"{self.setup.family.link.name} (link)"

    def fit(self, name: str) -> Any:
        """The fitted model of row ``name``, or a DataError saying why there is none."""
        if name not in self.fits:
            why = self.notes.get(name, "it was not fitted")
            raise DataError(f"the comparison has no {name} model: {why}")
        return self.fits[name]

    def table_at(self, level: float) -> pd.DataFrame:
        """The model table with every interval at ``level``."""
        level = check_level(level)
        rows: dict[str, Any] = {}
        for name, fitted in self.fits.items():
            if isinstance(fitted, GlmerResult):
                rows[name] = _GlmerRow(fitted)
            elif isinstance(fitted, LMM):
                rows[name] = _BayesRow(fitted)
            else:
                rows[name] = _GlmRow(fitted, self.row_notes.get(name, ""))
        table = model_table(self.methods, rows, self.notes, self.setup.term, level)
        ratio = self.setup.ratio
        if ratio is None:
            for col in EXP_COLUMNS:
                table[col] = np.nan
            why = (f"no exp() columns: the {self.setup.family.link.name} link's coefficients "
                   "are not log ratios")  # fmt: skip
            table["note"] = [f"{n}; {why}" if n else why for n in table["note"]]
        else:
            with np.errstate(over="ignore"):
                for col, src in zip(EXP_COLUMNS, ("estimate", "ci_lower", "ci_upper"),
                                    strict=True):  # fmt: skip
                    table[col] = np.exp(table[src].astype(float))
        table.attrs["scale"] = self.scale
        table.attrs["ratio"] = ratio
        return table

    def at_level(self, level: float) -> GlmmComparison:
        """The same comparison with every interval at ``level`` (nothing is refitted)."""
        level = check_level(level)
        return dataclasses.replace(self, level=level, table=self.table_at(level), _tables={})

    @property
    def data(self) -> pd.DataFrame:
        """The rows the models were fitted to (the GLMM design's frame)."""
        return self.glmer.design.frame

    def group_lines(self) -> pd.DataFrame:
        """Not for GLMMs: :func:`~bayeslmm.plots.group_fits` draws each group's straight
        line of a Gaussian model; a GLMM's group curves are on the response scale and
        are not drawn yet (an :class:`~bayeslmm.errors.ArgumentError` says so)."""
        raise ArgumentError(
            f"group_fits() draws the straight group lines of a Gaussian comparison; the "
            f"{self.setup.family} comparison has none yet: draw its shrinkage "
            "(bl.plots.shrinkage_arrows, caterpillar) or its table (comparison_forest)"
        )

    def population_ellipse(self, level: float = 0.95, n_points: int = 100) -> np.ndarray:
        """Points (n_points x 2) on glmer's population ellipse of (intercept, term) on the
        link scale: the region holding ``level`` of the first factor's group coefficients
        under the fitted normal distribution of random effects (for
        :func:`~bayeslmm.plots.shrinkage_2d`; needs a random slope of the term)."""
        check_probability("level", level)
        if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 3:
            raise ArgumentError(f"n_points must be an integer of at least 3, got {n_points!r}")
        fit, term = self.glmer, self.setup.term
        for block, block_cov in zip(fit.design.blocks, fit.covariances(), strict=True):
            if block.group == self.setup.group and {"(Intercept)", term} <= set(block.columns):
                at = [block.columns.index("(Intercept)"), block.columns.index(term)]
                cov = block_cov[np.ix_(at, at)]
                break
        else:
            raise ArgumentError(f"no random intercept and {term} slope of "
                                f"{self.setup.group!r} in {self.setup.formula!r}")  # fmt: skip
        mean = fit.fixef()["estimate"][["(Intercept)", term]].to_numpy()
        radius = np.sqrt(scipy.stats.chi2.ppf(level, df=2))
        vals, vecs = np.linalg.eigh(cov)
        angle = np.linspace(0, 2 * np.pi, n_points)
        circle = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return mean + radius * circle * np.sqrt(np.clip(vals, 0, None)) @ vecs.T

    # -- shrinkage ---------------------------------------------------------------------
    def no_pooling(self, group: str) -> pd.DataFrame:
        """Each level's own estimate of ``group``'s random terms on the link scale:
        levels x terms (fixed effect + the level's own deviation), plus ``n`` (rows) and
        ``note`` (why a level has none: separation, a term constant within it, or a GLM
        that did not converge). See the module text."""
        if group not in self.setup.groups:
            raise ArgumentError(f"no grouping factor {group!r}; have {list(self.setup.groups)}")
        fit = self.glmer
        design, resp = fit.design, fit.response
        modes = block_modes(fit)
        eta = design.X @ fit.beta + resp.offset
        for block, b in zip(design.blocks, modes, strict=True):
            if block.group != group:
                eta = eta + np.einsum("nq,nq->n", block.Z, b[block.codes])
        blocks = [b for b in design.blocks if b.group == group]
        Z = np.hstack([b.Z for b in blocks])
        columns = list(fit.ranef()[group].columns)
        codes, index = _codes(design)[group]
        own = per_level_glm(Z, columns, GlmResponse(fit.family, resp.y, resp.weights, eta),
                            codes, index)  # fmt: skip
        fixef = fit.fixef()["estimate"]
        out = own.estimates + np.array([fixef.get(c, 0.0) for c in columns])
        out["n"] = np.bincount(codes, minlength=len(index))
        out["note"] = own.notes
        return out

    def shrinkage(self) -> pd.DataFrame:
        """One row per factor, level and random term, on the link scale (the layout of
        :meth:`MultiFactorComparison.shrinkage`, so that the shrinkage figures draw it).

        Columns: ``group``, ``level``, ``term``, ``n`` (rows); ``no_pooling`` (the level's
        own estimate, see :meth:`no_pooling`; NaN where it separates); ``reml``: glmer's
        fixed effect + conditional mode (lme4's ``coef``; the column keeps the Gaussian
        table's name, though the fit is Laplace maximum likelihood) and ``reml_sd``, the
        mode's conditional SD (lme4's ``condVar``); ``population`` (glmer's fixed effect,
        0 for a random term without one); ``complete_pooling`` (the complete-pooling GLM's
        coefficient); with a Bayesian fit ``posterior_mean``, ``posterior_sd``,
        ``hdi_lower``/``hdi_upper`` of fixed + random coefficient; ``shrinkage``,
        ``(no_pooling - reml) / (no_pooling - population)``, ``shrinkage_posterior``,
        ``1 - E[u | y] / (no_pooling - population)``; ``note``. ``attrs["scale"]`` names
        the link scale.
        """
        key = ("shrinkage", self.level)
        if key not in self._tables:
            self._tables[key] = self._shrinkage()
        table = self._tables[key].copy()
        table.attrs["scale"] = self.scale
        return table

    def _shrinkage(self) -> pd.DataFrame:
        fit, bayes = self.glmer, self.bayes
        fixef = fit.fixef()["estimate"]
        complete = self.fits.get("GLM-Global")
        complete = complete.params if complete is not None else pd.Series(dtype=float)
        modes, sds = fit.ranef(), fit.ranef_sd()
        frames = []
        for group in self.setup.groups:
            own = self.no_pooling(group)
            draws = bayes.group_coefficients(group) if bayes is not None else None
            for term in modes[group].columns:
                frame = pd.DataFrame({
                    "group": group, "level": modes[group].index, "term": term,
                    "n": own["n"].to_numpy(), "no_pooling": own[term].to_numpy(),
                    "reml": modes[group][term].to_numpy() + fixef.get(term, 0.0),
                    "reml_sd": sds[group][term].to_numpy(),
                    "population": fixef.get(term, 0.0),
                    "complete_pooling": complete.get(term, 0.0) if term in fixef.index
                    else 0.0,
                })  # fmt: skip
                if draws is not None:
                    frame = frame.join(_posterior_columns(draws, term, self.level))
                frame["note"] = own["note"].to_numpy()
                frames.append(frame)
        return shrinkage_columns(pd.concat(frames, ignore_index=True), bayes)


def block_modes(fit: GlmerResult) -> list[np.ndarray]:
    """glmer's conditional modes per random block, (levels x terms) each, from
    :meth:`GlmerResult.ranef` (whose frames put two blocks of one factor side by side,
    a repeated term suffixed with its block's label)."""
    frames, taken, out = fit.ranef(), {}, []
    for block in fit.design.blocks:
        seen = taken.setdefault(block.group, set())
        cols = [f"{c}_{block.label}" if c in seen else c for c in block.columns]
        seen.update(block.columns)
        out.append(frames[block.group][cols].to_numpy())
    return out


def _dummies(codes: np.ndarray, n_levels: int) -> np.ndarray:
    out = np.zeros((len(codes), n_levels))
    out[np.arange(len(codes)), codes] = 1.0
    return out


def _group_effects(X: np.ndarray, names: list[str], resp: GlmResponse,
                   codes: dict[str, tuple[np.ndarray, pd.Index]]):  # fmt: skip
    """The GLM with a dummy for every level of every factor: the intercept's column gives
    way to the first factor's full set of dummies, so that a separated level's
    infinite coefficient is its own dummy's."""
    n_dummies = sum(len(index) for _, index in codes.values())
    if n_dummies > MAX_DUMMIES or len(X) * (X.shape[1] + n_dummies) > MAX_CELLS:
        raise DataError(f"not fitted: {n_dummies} level dummies on {len(X)} rows are more than "
                        "a dense GLM should hold")  # fmt: skip
    keep = [j for j, name in enumerate(names) if name != "(Intercept)"]
    dummy_names = [f"{g}[{lv}]" for g, (_, index) in codes.items() for lv in index]
    XA = np.hstack([X[:, keep], *[_dummies(c, len(index)) for c, index in codes.values()]])
    fixed = [names[j] for j in keep]
    fit = fit_glm(XA, fixed + dummy_names, resp, named=fixed)
    return fit, ""


def _aggregated(X: np.ndarray, names: list[str], resp: GlmResponse, codes: np.ndarray,
                n_levels: int, term: str, group: str):  # fmt: skip
    """The GLM of every level's pooled response (see the module text)."""
    fam = resp.family
    if fam.binomial:
        weight = resp.trials
        total = np.bincount(codes, resp.trials, minlength=n_levels)
        y = np.bincount(codes, resp.successes, minlength=n_levels) / total
        offset = np.bincount(codes, resp.offset * weight, minlength=n_levels) / total
        agg = GlmResponse(fam, y, total, offset)
    else:
        if fam.link.name != "log":
            raise DataError(
                f"not fitted: a Poisson total with the {fam.link.name} link has "
                "no offset for the summed exposure (only the log link has)"
            )
        weight = np.exp(resp.offset)
        exposure = np.bincount(codes, weight, minlength=n_levels)
        y = np.bincount(codes, resp.y, minlength=n_levels)
        agg = GlmResponse(fam, y, np.ones(n_levels), np.log(exposure))
    sums = np.bincount(codes, weight, minlength=n_levels)
    means = np.stack([np.bincount(codes, col * weight, minlength=n_levels) for col in X.T],
                     axis=1) / sums[:, None]  # fmt: skip
    if not estimable(means, names.index(term)):
        raise DataError(f"the {group} means of {term!r} do not vary apart from the other "
                        "columns' means (the same in every level, say)")  # fmt: skip
    return fit_glm(means, names, agg), ""


def _two_stage(X: np.ndarray, names: list[str], resp: GlmResponse, codes: np.ndarray,
               index: pd.Index, term: str, group: str):  # fmt: skip
    """Per-level GLMs of the fixed part, then the mean of the term's estimates."""
    fits = per_level_glm(X, names, resp, codes, index, need=term)
    ok = fits.estimates[term].notna()
    left = fits.kinds[~ok]
    if ok.sum() < 2:
        raise DataError(f"{term!r} has an estimate of its own in fewer than two levels of "
                        f"{group!r} ({_count_reasons(left)})")  # fmt: skip
    note = ""
    if len(left):
        shown = ", ".join(map(str, left.index[:5])) + (f" and {len(left) - 5} more"
                                                       if len(left) > 5 else "")  # fmt: skip
        note = (f"{len(left)} of {len(index)} {group} levels left out "
                f"({_count_reasons(left)}: {shown})")  # fmt: skip
    return TwoStageFit(fits.estimates.loc[ok, [term]]), note


def _count_reasons(kinds: pd.Series) -> str:
    counts = kinds.value_counts()
    return ", ".join(f"{v} {k}" for k, v in counts.items()) or "none left"


def compare_glmm(
    formula: str,
    data: pd.DataFrame | None,
    family: Family,
    term: str | None,
    bayes: bool,
    level: float,
    model: LMM | None,
    weights: Any,
    offset: Any,
    fit_kwargs: dict[str, Any],
) -> GlmmComparison:
    """The comparison of a binomial, Bernoulli or Poisson GLMM (see the module text);
    called by :func:`~bayeslmm.compare` with ``family`` other than Gaussian."""
    check_family(family, "bl.compare()")
    if not isinstance(formula, str):
        raise ArgumentError(
            f"bl.compare(..., family={family.name!r}) takes the formula as a string and the "
            f"data (the trials and offsets are read from them), not a {type(formula).__name__}"
        )
    if data is None:
        raise ArgumentError("compare(formula, data, family=...): data is missing")
    refuse_dask(data, "compare()")
    if term is not None and not isinstance(term, str):
        raise ArgumentError(f"term must be the name of a fixed effect, got {term!r}")
    if model is not None:
        if not isinstance(model, LMM) or is_gaussian(model):
            raise ArgumentError(f"model must be a fitted bl.LMM(..., family={family.name!r}), "
                                f"got {type(model).__name__}")  # fmt: skip
        if model.family.base != family.base or model.formula != formula.strip():
            raise ArgumentError(
                f"compare(model=...): the model is {model.formula!r} ({model.family}), not "
                f"{formula.strip()!r} ({family})"
            )
    design, response = glm_design(formula, data, family, weights=weights, offset=offset)
    if not design.blocks:
        raise FormulaError(f"compare() needs a random term such as (1 | g); {formula!r} "
                           "has none")  # fmt: skip
    names = list(design.fixed_names)
    candidates = [n for n in names if n != "(Intercept)"]
    if term is None:
        if not candidates:
            raise FormulaError(f"no fixed term to compare in {formula!r}: it has only the "
                               "intercept")  # fmt: skip
        term = candidates[0]
    elif term not in candidates:
        raise FormulaError(f"term {term!r} is not a fixed effect of {formula!r}: choose one "
                           f"of {candidates or 'none (only the intercept)'}")  # fmt: skip
    if bayes:
        check_fit_settings(fit_kwargs)
    codes = _codes(design)
    groups = tuple(codes)
    slope = any(b.columns != ["(Intercept)"] for b in design.blocks)
    s = GlmmSetup(formula.strip(), response.name, design.spec.fixed, family, groups, term,
                  slope)  # fmt: skip
    resp = GlmResponse(family, response.y, response.weights, response.offset)
    X = design.X
    fam = f"{family}"
    steps: list[tuple[str, str, Any]] = [
        ("GLM-Global", f"GLM {fam} {s.glm} (complete pooling; Wald z)",
         lambda: (fit_glm(X, names, resp), "")),
        ("GLM-Groups", f"GLM {fam} {s.glm} + a dummy for every level of "
                       f"{' and '.join(groups)} (no pooling; Wald z)",
         lambda: _group_effects(X, names, resp, codes)),
    ]  # fmt: skip
    for g, (c, index) in codes.items():
        what = ("pooled proportion per level, with its trials" if family.binomial
                else "total count per level, with its summed exposure")  # fmt: skip
        steps.append((f"Aggregation ({g})", f"GLM {fam} of the {what}, on {g} means",
                      lambda c=c, index=index, g=g: _aggregated(X, names, resp, c, len(index),
                                                                term, g)))  # fmt: skip

    def within(name: str) -> tuple[GlmResponse, str]:
        """The response of the per-level fits: a negative binomial's theta is held at the
        GLM with level dummies' estimate (else complete pooling's): a level's few rows do
        not estimate it."""
        if not (family.negative_binomial and family.theta is None):
            return resp, ""
        source = next((n for n in ("GLM-Groups", "GLM-Global") if n in fits), None)
        if source is None or fits[source].theta is None:
            raise DataError("not fitted: no GLM estimated the negative binomial's theta")
        theta = fits[source].theta
        fixed = GlmResponse(family.with_theta(theta), resp.y, resp.trials, resp.offset)
        return fixed, f"theta held at {theta:.4g} ({source})"

    def two_stage(c, index, g):
        fixed, why = within(g)
        fit, note = _two_stage(X, names, fixed, c, index, term, g)
        return fit, "; ".join(n for n in (why, note) if n)

    for g, (c, index) in codes.items():
        steps.append((f"Two-stage ({g})", f"two-stage: per-{g} GLM of {s.glm}, then the mean "
                      f"of the {term} estimates (t-test)",
                      lambda c=c, index=index, g=g: two_stage(c, index, g)))  # fmt: skip
    steps.append(("GLMM", f"glmer (Laplace) {s.formula} (Wald z)",
                  lambda: (glmer(formula, data, family=family, weights=weights,
                                 offset=offset), "")))  # fmt: skip
    fits: dict[str, Any] = {}
    methods: dict[str, str] = {}
    notes: dict[str, str] = {}
    row_notes: dict[str, str] = {}
    for name, method, fit_model in steps:
        methods[name] = method
        complete = fits.get("GLM-Global")
        if name == "GLMM" and complete is not None and term in complete.infinite:
            # the likelihood rises without bound along the separating direction, whatever
            # the random effects: glmer has no optimum to find (and would search long)
            notes[name] = (f"not fitted: the fixed part alone separates the data (see "
                           f"GLM-Global), so no finite maximum-likelihood estimate of "
                           f"{term!r} exists")  # fmt: skip
            continue
        try:
            fitted, note = fit_model()
        except (BayesLMMError, np.linalg.LinAlgError) as err:  # the row says why
            text = str(err)
            if name == "GLMM":
                notes[name] = f"not fitted: glmer failed ({text})"
            else:
                notes[name] = text if text.startswith("not fitted") else \
                    f"not identified: {text}"  # fmt: skip
            continue
        fits[name] = fitted
        if note:
            row_notes[name] = note
    if bayes and model is None and family.name not in BAYES_FAMILIES:
        methods["Bayes"] = f"Bayesian {s.formula} (posterior mean, sd, HDI)"
        notes["Bayes"] = (f"not fitted: bl.LMM does not sample the {family.name} family "
                          f"(it samples {', '.join(BAYES_FAMILIES)})")  # fmt: skip
    elif bayes:
        if model is None:
            model = LMM(formula, data, family=family, weights=weights, offset=offset)
            model.fit(**fit_kwargs)
        fits["Bayes"] = model
        methods["Bayes"] = f"Bayesian {model.formula} (posterior mean, sd, HDI)"
    complete = fits.get("GLM-Global")
    if bayes and complete is not None and term in complete.infinite:
        notes["Bayes"] = (f"the fixed part alone separates the data (see GLM-Global): the "
                          f"posterior of {term!r} rests on its prior")  # fmt: skip
    comparison = GlmmComparison(setup=s, table=pd.DataFrame(), fits=fits, level=level,
                                methods=methods, notes=notes, row_notes=row_notes)  # fmt: skip
    comparison.table = comparison.table_at(level)
    return comparison
