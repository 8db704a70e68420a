"""The tutorial's seven models side by side, and how much each group effect shrinks.

``compare(formula, data, term=...)`` fits, for one fixed term, complete-pooling OLS,
ANCOVA with group intercepts, OLS on group means, the two-stage model, REML LMMs with
random intercepts and with random slopes, ANCOVA with group slopes, and the Bayesian
LMMs, then tabulates estimate, uncertainty and test for the term in every model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from ..bayes import stack
from ..bayes.glm_model import gaussian_only, is_gaussian
from ..bayes.model import LMM
from ..classical.lmer import LmerResult, lmer
from ..classical.ols import OLSFit, ancova, ols, per_group_ols, refuse_dask
from ..errors import (
    ArgumentError,
    ColumnTypeError,
    ComparisonError,
    DataError,
    FormulaError,
    NotFittedError,
    check_probability,
)
from ..spec.design import NUMBER, Design, build_design, column_kind
from ..spec.family import Family, get_family
from ..spec.formula import ModelSpec, parse_formula, quote
from ..spec.response import check_gaussian
from ..spec.reuse import Designs
from .factors import FactorsSetup, MultiFactorComparison, compare_factors
from .glmm import GlmmComparison, compare_glmm
from .parameters import reml_coefficients
from .rows import (
    TABLE_COLUMNS,
    check_arguments,
    check_fit_settings,
    check_level,
    fit_bayes,
    model_table,
    refuse_known_se,
)

__all__ = ["TABLE_COLUMNS", "Comparison", "ComparisonSetup", "compare", "comparison_setup"]


@dataclass(frozen=True)
class ComparisonSetup:
    """What the seven models are built from: response, fixed part, group and term.

    ``response``, ``group`` and ``term`` are names as the data and the tables show them;
    the formulas of the seven models quote them where they need backticks.
    """

    response: str
    fixed: str
    group: str
    term: str
    random_slope: bool  # does the user's formula give ``term`` a random slope?
    response_text: str = ""  # the response as the formula writes it
    between: bool = False  # is ``term`` constant within every group?

    @classmethod
    def from_spec(cls, spec: ModelSpec, term: str | None, data: pd.DataFrame) -> ComparisonSetup:
        """The setup of ``spec`` on ``data`` (its design built here: see :meth:`from_design`)."""
        refuse_dask(data, "compare()")
        _one_column_factor(spec)
        if term is not None and not isinstance(term, str):
            raise ArgumentError(f"term must be the name of a fixed effect, got {term!r}")
        return cls.from_design(build_design(spec, data), term)

    @classmethod
    def from_design(cls, design: Design, term: str | None) -> ComparisonSetup:
        """The setup of a built design of the user's formula (nothing is built)."""
        spec = design.spec
        refuse_dask(design.frame, "compare()")
        _one_column_factor(spec)
        if term is not None and not isinstance(term, str):
            raise ArgumentError(f"term must be the name of a fixed effect, got {term!r}")
        group = spec.random[0].factors[0]
        frame = design.frame
        candidates = [n for n in design.fixed_names if n != "(Intercept)"]
        numeric = [
            n for n in candidates
            if n in frame.columns and n != group and column_kind(frame[n]) == NUMBER
        ]  # fmt: skip
        if term is None:
            if not numeric:
                raise FormulaError(
                    f"no numeric fixed term to compare in {spec.formula!r}: the comparison "
                    "needs a numeric column of the data among the fixed effects "
                    f"(have {candidates or 'only the intercept'})"
                )
            term = numeric[0]
        if term not in candidates:
            raise FormulaError(f"term {term!r} is not a fixed effect of {spec.formula!r}: "
                               f"choose one of {candidates}")  # fmt: skip
        if term not in numeric:
            raise ColumnTypeError(
                f"term {term!r} must be a numeric column of the data (the aggregation and "
                "two-stage models average it and fit per-group slopes); numeric fixed terms: "
                f"{numeric or 'none'}"
            )
        slope = any(term in b.columns for b in design.blocks)
        between = bool((frame[term].groupby(design.blocks[0].codes).nunique() <= 1).all())
        return cls(design.response, spec.fixed, group, term, slope, spec.response, between)

    @property
    def ols(self) -> str:
        return f"{self.response_text or quote(self.response)} ~ {self.fixed}"

    @property
    def ancova_intercepts(self) -> str:
        return f"{self.ols} + C({quote(self.group)})"

    @property
    def ancova_slopes(self) -> str:
        return f"{self.ancova_intercepts} + {quote(self.term)}:C({quote(self.group)})"

    @property
    def lmm_intercepts(self) -> str:
        return f"{self.ols} + (1 | {quote(self.group)})"

    @property
    def lmm_slopes(self) -> str:
        return f"{self.ols} + (1 + {quote(self.term)} | {quote(self.group)})"


@dataclass
class Comparison:
    """The seven (or nine, with the Bayesian fits) models and their table.

    Attributes
    ----------
    setup
        Response, fixed part, grouping factor and term compared.
    table
        One row per model: RMSE, estimate, SE, statistic, df, p-value, CI for ``term``.
        The LMM rows' Wald z uses the full observed information (statsmodels' SEs, as in
        the tutorial's table; :func:`~bayeslmm.classical.lmer.observed_vcov`), with
        lmerTest's Satterthwaite t/df/p (lme4's SE) beside it; probability of direction for the
        Bayesian rows (whose SE is the posterior sd and CI the HDI).
    fits
        Every fitted model by its row name.
    """

    setup: ComparisonSetup
    data: pd.DataFrame = field(repr=False)
    table: pd.DataFrame = field(repr=False)
    fits: dict[str, Any] = field(repr=False)
    level: float = 0.95
    methods: dict[str, str] = field(repr=False, default_factory=dict)  # row -> what it fits
    notes: dict[str, str] = field(repr=False, default_factory=dict)  # row -> why it is odd

    def table_at(self, level: float) -> pd.DataFrame:
        """The comparison table with confidence intervals and HDIs at ``level``."""
        level = check_level(level)
        methods = self.methods or dict(zip(self.table["model"], self.table["method"], strict=True))
        return model_table(methods, self.fits, self.notes, self.setup.term, level)

    def at_level(self, level: float) -> Comparison:
        """The same comparison with every interval at ``level`` (nothing is refitted)."""
        return dataclasses.replace(self, level=check_level(level), table=self.table_at(level))

    def fit(self, name: str) -> Any:
        """The fitted model of row ``name``, or a DataError saying why there is none."""
        if name not in self.fits:
            why = self.notes.get(name, "it was not fitted")
            raise DataError(f"the comparison has no {name} model: {why}")
        return self.fits[name]

    @property
    def primary(self) -> str:
        """Suffix of the models whose random part matches the user's formula."""
        return "Full" if self.setup.random_slope else "Inter"

    def shrinkage(self) -> pd.DataFrame:
        """One row per group level and random term: how far each estimate shrinks.

        Columns:

        - ``no_pooling``: the group's own estimate. With random slopes, the per-group
          OLS coefficient. With random intercepts only, the group's intercept given the
          REML fixed slopes, ``alpha + mean_j(y - X beta)``, so that shrinkage follows
          the textbook factor ``sigma^2 / (sigma^2 + n_j tau^2)`` exactly.
        - ``ancova``: the ANCOVA fixed-effect estimate of the group's coefficient.
        - ``reml``: fixed effect + BLUP (lme4's ``coef``); ``population``: the REML
          fixed effect; ``complete_pooling``: the OLS coefficient.
        - ``posterior_mean``, ``hdi_lower``, ``hdi_upper``: the Bayesian fit, if any.
        - ``shrinkage`` (REML) and ``shrinkage_posterior``:
          ``(no_pooling - estimate) / (no_pooling - population)``; 0 is no shrinkage,
          1 complete shrinkage to the population mean. Within [0, 1] for random
          intercepts; with correlated slopes a coordinate may move past the mean (above 1)
          or away from it (below 0). Empty (NaN) where the group has no estimate of its
          own or it equals the population mean.
        """
        s, suffix = self.setup, self.primary
        reml: LmerResult = self.fit(f"LMM-{suffix}")
        reml_coef = reml_coefficients(reml, s.group)
        terms = [c for b in reml.design.blocks for c in b.columns]
        no_pool = self._no_pooling(reml, terms)
        ancova = self._ancova_coefficients(terms)
        complete: OLSFit = self.fit("LM-Global")
        bayes = self.fits.get(f"Bayes-{suffix}")
        draws = bayes.group_coefficients(s.group) if bayes is not None else None
        rows, beta = [], reml.fixef()["estimate"]
        for term in terms:
            frame = pd.DataFrame({  # levels keep the factor's type (reml_coef's index)
                "group": s.group, "level": reml_coef.index, "term": term,
                "no_pooling": no_pool[term].reindex(reml_coef.index).to_numpy(),
                "ancova": ancova[term].reindex(reml_coef.index).to_numpy(),
                "reml": reml_coef[term].to_numpy(),
                "population": beta[term],
                "complete_pooling": complete.result.params[complete.names.index(term)],
            })  # fmt: skip
            if draws is not None:
                d = draws.sel(coef=term)
                lower, upper = stack.hdi(d, self.level)
                frame["posterior_mean"] = d.mean(("chain", "draw")).values
                frame["hdi_lower"] = lower.values
                frame["hdi_upper"] = upper.values
            rows.append(frame)
        table = pd.concat(rows, ignore_index=True)
        gap = table["no_pooling"] - table["population"]
        gap = gap.where(gap != 0)  # no gap, no fraction
        table["shrinkage"] = (table["no_pooling"] - table["reml"]) / gap
        if draws is not None:
            table["shrinkage_posterior"] = (table["no_pooling"] - table["posterior_mean"]) / gap
        return table

    def _no_pooling(self, reml: LmerResult, terms: list[str]) -> pd.DataFrame:
        """Per-level own-data estimates of the random terms (see :meth:`shrinkage`)."""
        if self.setup.random_slope:
            if "Hierarchical" not in self.fits:  # not identified: no group has its own slope
                index = reml.design.blocks[0].level_values.rename(self.setup.group)
                return pd.DataFrame(np.nan, index=index, columns=terms)
            return self.fits["Hierarchical"].coefficients[terms]
        design, block = reml.design, reml.design.blocks[0]
        resid = design.y - design.X @ reml.solution.beta
        n_j = np.bincount(block.codes, minlength=block.n_levels)
        mean_resid = np.bincount(block.codes, weights=resid, minlength=block.n_levels) / n_j
        out = pd.DataFrame(index=block.level_values.rename(self.setup.group))
        beta = reml.fixef()["estimate"]
        for term in terms:
            out[term] = beta[term] + (mean_resid if term == "(Intercept)" else 0.0)
        return out

    def _ancova_coefficients(self, terms: list[str]) -> pd.DataFrame:
        """Per-level coefficients of the ANCOVA fit (reference level + its contrasts)."""
        s = self.setup
        block = self.fit(f"LMM-{self.primary}").design.blocks[0]
        levels = block.levels  # as the ANCOVA fit names its columns
        out = pd.DataFrame(index=block.level_values.rename(s.group), columns=terms, dtype=float)
        fit: OLSFit | None = self.fits.get("ANCOVA-Full" if s.random_slope else "ANCOVA-Inter")
        if fit is None:  # not identified (a term constant within groups)
            return out
        params = pd.Series(fit.result.params, index=fit.names)
        for term in terms:
            dummy = f"C({quote(s.group)})"  # as the ANCOVA fit names its columns
            prefix = dummy if term == "(Intercept)" else f"{term}:{dummy}"
            shift = np.array([params.get(f"{prefix}{lv}", 0.0) for lv in levels])
            out[term] = params.get(term, 0.0) + shift
        return out

    def group_lines(self) -> pd.DataFrame:
        """Per level, the fitted line of the response on ``term`` in every model.

        Rows (level, source) with ``intercept`` and ``slope``; sources ``ancova`` (the
        no-pooling fixed-effect fit), ``reml`` (fixed + BLUP), ``posterior`` (posterior
        means, with ``bayes=True``) and ``population`` (REML fixed effects, one row with
        an empty level). Other fixed predictors are held at their means, so the lines
        live in the plane of the data overview plot.
        """
        s, suffix = self.setup, self.primary
        wide = self.shrinkage().pivot(index="level", columns="term")
        reml: LmerResult = self.fit(f"LMM-{suffix}")
        bayes: LMM | None = self.fits.get(f"Bayes-{suffix}")
        ancova: OLSFit | None = self.fits.get(f"ANCOVA-{suffix}")
        sources = {"reml": (reml.fixef()["estimate"], reml.design.X)}
        if ancova is not None:
            sources["ancova"] = (pd.Series(ancova.result.params, index=ancova.names),
                                 ancova.result.model.exog)  # fmt: skip
        if bayes is not None:
            beta = stack.posterior(bayes.idata)["beta"].mean(("chain", "draw")).to_series()
            sources["posterior"] = (beta, bayes.design.X)
        column = {"reml": "reml", "ancova": "ancova", "posterior": "posterior_mean"}
        frames = []
        for source, (params, X) in sources.items():
            offset = _held_at_means(params, X, keep=("(Intercept)", s.term), group=s.group)
            per_level = wide[column[source]]
            slope = per_level[s.term] if s.term in per_level else params[s.term]
            frames.append(pd.DataFrame({
                "level": per_level.index, "source": source,
                "intercept": (per_level["(Intercept)"] + offset).to_numpy(),
                "slope": np.broadcast_to(slope, len(per_level)),
            }))  # fmt: skip
        beta = sources["reml"][0]
        offset = _held_at_means(beta, reml.design.X, ("(Intercept)", s.term), s.group)
        frames.append(pd.DataFrame({"level": [""], "source": ["population"],
                                    "intercept": [beta["(Intercept)"] + offset],
                                    "slope": [beta[s.term]]}))  # fmt: skip
        return pd.concat(frames, ignore_index=True)

    def population_ellipse(self, level: float = 0.95, n_points: int = 100) -> np.ndarray:
        """Points (n_points x 2) on the REML population ellipse of (intercept, term).

        The region holding ``level`` of group coefficients under the fitted normal
        distribution of random effects, centred at the fixed effects.
        """
        check_probability("level", level)
        if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 3:
            raise ArgumentError(f"n_points must be an integer of at least 3, got {n_points!r}")
        reml: LmerResult = self.fit("LMM-Full")
        block = reml.design.blocks[0]
        cov = reml.covariances()[0]
        mean = reml.fixef()["estimate"][list(block.columns)].to_numpy()
        radius = np.sqrt(scipy.stats.chi2.ppf(level, df=2))
        vals, vecs = np.linalg.eigh(cov)
        angle = np.linspace(0, 2 * np.pi, n_points)
        circle = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return mean + radius * circle * np.sqrt(np.clip(vals, 0, None)) @ vecs.T


def _one_column_factor(spec: ModelSpec) -> None:
    groups = {t.group for t in spec.random}
    if len(groups) != 1 or len(spec.random[0].factors) != 1:
        raise FormulaError(
            "compare() needs exactly one grouping factor (a single column); the formula "
            f"has {sorted(groups) or 'none'} in {spec.formula!r}"
        )


def _held_at_means(params: pd.Series, X: np.ndarray, keep: tuple[str, ...], group: str) -> float:
    """Contribution of the fixed predictors other than ``keep`` at their column means
    (group dummies and their interactions excluded)."""
    names = list(params.index)
    dummy = f"C({quote(group)})"
    other = [i for i, n in enumerate(names) if n not in keep and dummy not in n]
    return float(np.asarray(params)[other] @ np.asarray(X)[:, other].mean(axis=0))


def _group_means(s: ComparisonSetup, inter: Design) -> pd.DataFrame:
    """One row per group: the mean of every numeric column the OLS formula reads, and the
    value of every other one (which must then be constant within groups), from the rows of
    the random-intercept design ``inter`` (``ols + (1 | group)``)."""
    frame = inter.frame
    codes = frame[s.group]
    out = {}
    for col in frame.columns:
        if col == s.group:
            continue
        if column_kind(frame[col]) in (NUMBER, "bool"):
            out[col] = frame[col].astype(float).groupby(codes, observed=True).mean()
            continue
        if (frame[col].groupby(codes, observed=True).nunique() > 1).any():
            raise DataError(
                f"{col!r} is not numeric and varies within {s.group}, so it has no {s.group} mean"
            )
        out[col] = frame[col].groupby(codes, observed=True).first()
    means = pd.DataFrame(out)
    means.index.name = s.group
    return means.reset_index()


def _between_note(name: str, s: ComparisonSetup) -> tuple[bool, str]:
    """For a term constant within every group: (skip the model?, why) per row."""
    if not s.between:
        return False, ""
    where = f"{s.term!r} is constant within each {s.group} (a between-{s.group} covariate)"
    slope = f"{where}: a random {s.term} slope is not identified; the estimate is the fixed effect"
    return {
        "ANCOVA-Inter": (True, f"not identified: {where}, so the {s.group} dummies absorb it"),
        "ANCOVA-Full": (True, f"not identified: {where}, so the {s.group} dummies absorb it"),
        "Hierarchical": (True, f"not identified: {where}, so no {s.group} has a slope of its own"),
        "LMM-Full": (False, slope),
        "Bayes-Full": (not s.random_slope, slope if s.random_slope else f"not fitted: {slope}"),
    }.get(name, (False, ""))


def compare(
    formula: str | Design | LMM,
    data: pd.DataFrame | None = None,
    term: str | None = None,
    bayes: bool = True,
    level: float = 0.95,
    model: LMM | None = None,
    family: str | Family = "gaussian",
    link: str | None = None,
    weights: str | np.ndarray | None = None,
    offset: str | np.ndarray | None = None,
    **fit_kwargs: Any,
) -> Comparison | MultiFactorComparison | GlmmComparison:
    """The same formula by REML, Bayes and the classical models, and its shrinkage.

    With one grouping factor, the tutorial's seven models (and the Bayesian LMMs) for one
    fixed term. With several (crossed ``(1 | subj) + (1 | item)``, nested
    ``(1 | school/class)``), REML beside the posterior for every fixed effect and variance
    component, shrinkage of every level of every factor, and the classical models that
    still answer a question about the term (:mod:`bayeslmm.comparison.factors`).

    Parameters
    ----------
    formula
        An lme4 formula, e.g. ``score ~ edu + (1|classroom)`` or
        ``rt ~ cond + (1 | subj) + (1 | item)``; or a built :class:`~bayeslmm.Design` of
        it (``bl.compare(design)``), or a fitted :class:`LMM` (``bl.compare(model)``, the
        same as ``model=model`` with the model's design): then ``data`` is left out, and
        every model is fitted to the design's rows. Each distinct design is built once
        (the formula's, the random-intercept model's, and the slopes model's where it
        differs from the formula's); the OLS and ANCOVA fits take theirs from the
        random-intercept design (its fixed columns, its level codes as dummies).
    data
        The data (never modified); left out with a Design or a fitted model.
    term
        Fixed term compared across models. One factor: a numeric column of the data
        (default: the first); several factors: any fixed effect but the intercept
        (default: the first).
    bayes
        Also fit the Bayesian LMMs (one factor: random intercepts and random slopes;
        several factors: the formula).
    level
        Coverage of confidence intervals and HDIs (one level for every row).
    model
        An already fitted :class:`LMM` of ``formula`` (with the user's priors, say): it
        becomes the Bayesian row whose random part matches the formula instead of a
        refit with default priors.
    family, link
        ``"gaussian"`` (default): the models above. ``"binomial"``, ``"bernoulli"``,
        ``"poisson"`` or ``"negative_binomial"`` (and their links, as
        :func:`~bayeslmm.glmer`): the GLMM comparison
        of :mod:`bayeslmm.comparison.glmm` (complete-pooling GLM, GLM with group dummies,
        aggregation and two-stage per factor, glmer and the posterior, with odds or rate
        ratios, and shrinkage on the link scale), for one grouping factor or several;
        ``formula`` is then a string and ``data`` the data (the negative binomial: theta
        by maximum likelihood in every GLM row; no Bayesian row, which ``bl.LMM`` does
        not sample).
    weights, offset
        Binomial trials of a proportion response, and an offset (column names or arrays),
        as :func:`~bayeslmm.glmer`; for the binomial and Poisson families only.
    **fit_kwargs
        Passed to :meth:`LMM.fit` (``draws``, ``chains``, ``random_seed``, ...).

    Returns
    -------
    Comparison or MultiFactorComparison
        One factor: a :class:`Comparison`, ``.table`` and ``.shrinkage()``; rows
        ``LM-Global``, ``ANCOVA-Inter``, ``Aggregation``, ``Hierarchical``, ``LMM-Inter``,
        ``ANCOVA-Full``, ``LMM-Full``, ``Bayes-Inter``, ``Bayes-Full``. Several factors: a
        :class:`~bayeslmm.comparison.factors.MultiFactorComparison`, with
        ``.fixed_effects()``, ``.variance_components()``, ``.shrinkage()`` and ``.table``
        (rows ``LM-Global``, ``ANCOVA``, ``Aggregation (g)`` and ``Two-stage (g)`` per
        factor, ``LMM-Inter`` where the formula has more than intercepts, ``LMM``,
        ``Bayes``). A model that cannot estimate the term on these data (a term constant
        within groups, say) keeps its row, with a note saying why. A binomial,
        Bernoulli or Poisson family: a :class:`~bayeslmm.comparison.glmm.GlmmComparison`
        (rows ``GLM-Global``, ``GLM-Groups``, ``Aggregation (g)`` and ``Two-stage (g)`` per
        factor, ``GLMM``, ``Bayes``).
    """
    given_model = model if model is not None else formula if isinstance(formula, LMM) else None
    fam = get_family("gaussian" if family is None else family, link)
    if given_model is not None and not is_gaussian(given_model):
        if isinstance(formula, LMM):
            raise ComparisonError(
                f"bl.compare(model) is not for non-Gaussian families yet: a "
                f"{given_model.family} model does not keep the data its trials and offsets "
                f"are read from; it needs its formula and data: bl.compare(formula, data, "
                f"family={given_model.family.name!r}, model=model)"
            )
        if fam.name == "gaussian" and link is None:
            fam = given_model.family
    if fam.name != "gaussian":
        check_arguments(level, bayes, None, fit_kwargs)
        if model is not None and getattr(model, "idata", None) is None:
            raise NotFittedError("compare(model=...) needs a fitted model: call model.fit() "
                                 "first")  # fmt: skip
        return compare_glmm(formula, data, fam, term, bayes, level, model, weights, offset,
                            fit_kwargs)  # fmt: skip
    check_gaussian(fam, "bl.compare")
    if weights is not None or offset is not None:
        raise ArgumentError("weights= and offset= are for the binomial and Poisson families "
                            "(family=...); a Gaussian comparison takes neither")  # fmt: skip
    if isinstance(formula, LMM):
        if model is not None and model is not formula:
            raise ArgumentError("compare(model, ...): give the fitted model once, as the "
                                "first argument or as model=")  # fmt: skip
        model, formula = formula, formula.design
    if model is not None:
        gaussian_only(model, "bl.compare()")
        refuse_known_se(model, "bl.compare()")
    check_arguments(level, bayes, model, fit_kwargs)
    given = formula if isinstance(formula, Design) else None
    if given is not None and data is not None:
        raise ArgumentError("compare(design) takes no data: a Design (or a fitted model) "
                            "carries its rows")  # fmt: skip
    if given is None and data is None:
        raise ArgumentError("compare(formula, data): data is missing")
    refuse_dask(data if given is None else given.frame, "compare()")
    if model is not None and model.residual_structure is not None:
        raise ComparisonError(
            f"the seven-model comparison contrasts ways of pooling groups, every model with "
            f"independent residuals; {model.formula!r} has correlated residuals "
            f"({model.design.residual.describe()}), which OLS, ANCOVA and the two-stage "
            "model would ignore. Compare it with bl.lmer(..., residual=...) and "
            "bl.compare_random_effects instead"
        )
    if given is not None and given.residual is not None:
        raise ComparisonError(
            f"the seven-model comparison fits every model with independent residuals; the "
            f"design of {given.spec.formula!r} has correlated residuals "
            f"({given.residual.describe()}): compare it with bl.compare_random_effects"
        )
    spec = given.spec if given is not None else parse_formula(formula)
    if not spec.random:
        raise FormulaError(f"compare() needs a random term such as (1 | g); {spec.formula!r} "
                           "has none")  # fmt: skip
    if not _one_factor(spec):
        return compare_factors(given or spec, data, term, bayes, level, model, fit_kwargs)
    if given is None:  # what can be checked before the build
        _one_column_factor(spec)
        if term is not None and not isinstance(term, str):
            raise ArgumentError(f"term must be the name of a fixed effect, got {term!r}")
        given = build_design(spec, data)
    s = ComparisonSetup.from_design(given, term)
    if bayes:
        check_fit_settings(fit_kwargs)
    # every model's design is built once from these rows, or derived from one built
    rows = given.frame if data is None else data
    designs = Designs(rows, given)

    def inter() -> Design:
        return designs.get(s.lmm_intercepts)

    def complete_pooling() -> OLSFit:
        """OLS of the fixed part: the random-intercept design's rows where they are the
        formula's (none dropped for a missing group), else its own design."""
        try:
            same = inter().n_dropped == 0
        except DataError:
            same = False
        return ols(inter()) if same else ols(designs.get(s.ols))

    def ancova_fit(slopes: tuple[str, ...], formula: str) -> OLSFit:
        fit = ancova(inter(), s.group, slopes)  # the dummies from the level codes
        return fit if fit is not None else ols(designs.get(formula))

    steps = [
        ("LM-Global", f"OLS {s.ols}", complete_pooling),
        ("ANCOVA-Inter", f"OLS {s.ancova_intercepts}",
         lambda: ancova_fit((), s.ancova_intercepts)),
        ("Aggregation", f"OLS on {s.group} means {s.ols}",
         lambda: ols(s.ols, _group_means(s, inter()))),
        ("Hierarchical", f"two-stage: per-{s.group} OLS, then t-test of the {s.term} slopes",
         lambda: per_group_ols(inter(), group=s.group)),
        ("LMM-Inter", f"REML {s.lmm_intercepts} (Wald z)", lambda: lmer(inter())),
        ("ANCOVA-Full", f"OLS {s.ancova_slopes}",
         lambda: ancova_fit((s.term,), s.ancova_slopes)),
        ("LMM-Full", f"REML {s.lmm_slopes} (Wald z)", lambda: lmer(designs.get(s.lmm_slopes))),
    ]  # fmt: skip
    if bayes:
        primary = "Full" if s.random_slope else "Inter"
        for suffix, f in (("Inter", s.lmm_intercepts), ("Full", s.lmm_slopes)):
            if model is not None and suffix == primary:
                steps.append((f"Bayes-{suffix}", f"Bayesian {model.formula} (posterior mean, "
                              "sd, HDI)", lambda: model))  # fmt: skip
                continue
            steps.append((f"Bayes-{suffix}", f"Bayesian {f} (posterior mean, sd, HDI)",
                          lambda f=f: fit_bayes(designs.get(f), fit_kwargs)))  # fmt: skip

    fits: dict[str, Any] = {}
    methods, notes = {}, {}
    for name, method, fit_model in steps:
        methods[name] = method
        skip, why = _between_note(name, s)
        if why:
            notes[name] = why
        if skip:
            continue
        try:
            fits[name] = fit_model()
        except DataError as err:  # a model the data cannot identify: its row says why
            notes[name] = f"not identified: {err}"
    comparison = Comparison(setup=s, data=_plot_frame(s, inter()), table=pd.DataFrame(),
                            fits=fits, level=level, methods=methods, notes=notes)  # fmt: skip
    comparison.table = comparison.table_at(level)
    return comparison


def _one_factor(spec: ModelSpec) -> bool:
    """Is there one grouping factor, a single column (the tutorial's comparison)?"""
    return len(spec.group_factors) == 1 and len(spec.random[0].factors) == 1


def comparison_setup(
    spec: ModelSpec | Design, term: str | None, data: pd.DataFrame | None = None
) -> ComparisonSetup | FactorsSetup:
    """What :func:`compare` would compare, checked without fitting anything: the formula,
    the term and the columns they read (``spec``: the formula with ``data``, or a built
    design of it, which is not built again)."""
    if isinstance(spec, Design):
        if spec.spec.random and not _one_factor(spec.spec):
            return FactorsSetup.from_design(spec, term)
        return ComparisonSetup.from_design(spec, term)
    if spec.random and not _one_factor(spec):
        return FactorsSetup.from_spec(spec, term, data)
    return ComparisonSetup.from_spec(spec, term, data)


def _plot_frame(s: ComparisonSetup, design: Design) -> pd.DataFrame:
    """The rows and columns of the random-intercept design, with the response (even a
    transformed one, ``np.log(y)``) under its name: what the figures draw."""
    frame = design.frame.copy()
    frame[s.response] = design.y
    return frame
