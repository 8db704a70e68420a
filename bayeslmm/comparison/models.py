"""The tutorial's seven models side by side, and how much each group effect shrinks.

``compare(formula, data, term=...)`` fits, for one fixed term, complete-pooling OLS,
ANCOVA with group intercepts, OLS on group means, the two-stage model, REML LMMs with
random intercepts and with random slopes, ANCOVA with group slopes, and the Bayesian
LMMs, then tabulates estimate, uncertainty and test for the term in every model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import scipy.stats

from ..bayes.model import LMM
from ..classical.lmer import LmerResult, lmer, satterthwaite
from ..classical.ols import OLSFit, ols, per_group_ols
from ..errors import ColumnTypeError, DataError, FormulaError, NotFittedError
from ..spec.design import build_design
from ..spec.formula import ModelSpec, parse_formula

TABLE_COLUMNS = [
    "model", "method", "rmse", "estimate", "se", "statistic", "stat_type", "df", "p_value",
    "ci_lower", "ci_upper", "t_satterthwaite", "df_satterthwaite", "p_satterthwaite", "pd", "note",
]  # fmt: skip


@dataclass(frozen=True)
class ComparisonSetup:
    """What the seven models are built from: response, fixed part, group and term."""

    response: str
    fixed: str
    group: str
    term: str
    random_slope: bool  # does the user's formula give ``term`` a random slope?

    @classmethod
    def from_spec(cls, spec: ModelSpec, term: str | None, data: pd.DataFrame) -> ComparisonSetup:
        groups = {t.group for t in spec.random}
        if len(groups) != 1:
            raise FormulaError(
                "compare() needs exactly one grouping factor; the formula has "
                f"{sorted(groups) or 'none'} in {spec.formula!r}"
            )
        group = groups.pop()
        if group not in data.columns:
            raise DataError(f"grouping factor {group!r} must be a single column of the data")
        fixed_design = build_design(f"{spec.response} ~ {spec.fixed}", data)
        candidates = [n for n in fixed_design.fixed_names if n != "(Intercept)"]
        if term is None:
            if not candidates:
                raise FormulaError(f"no fixed term besides the intercept in {spec.formula!r}")
            term = candidates[0]
        if term not in candidates:
            raise FormulaError(f"term {term!r} is not a fixed effect of {spec.formula!r}: "
                               f"choose one of {candidates}")  # fmt: skip
        if term not in data.columns or not pd.api.types.is_numeric_dtype(data[term]):
            raise ColumnTypeError(
                f"term {term!r} must be a numeric column of the data (the aggregation and "
                "two-stage models average it and fit per-group slopes)"
            )
        slope = any(term in t.expr.replace(" ", "").split("+") for t in spec.random)
        return cls(spec.response, spec.fixed, group, term, slope)

    @property
    def ols(self) -> str:
        return f"{self.response} ~ {self.fixed}"

    @property
    def ancova_intercepts(self) -> str:
        return f"{self.ols} + C({self.group})"

    @property
    def ancova_slopes(self) -> str:
        return f"{self.ancova_intercepts} + {self.term}:C({self.group})"

    @property
    def lmm_intercepts(self) -> str:
        return f"{self.ols} + (1 | {self.group})"

    @property
    def lmm_slopes(self) -> str:
        return f"{self.ols} + (1 + {self.term} | {self.group})"


def _lmer_row(fit: LmerResult, term: str, level: float) -> dict[str, float]:
    coefs = fit.coefficients(information="observed").loc[term]
    half = scipy.stats.norm.ppf(0.5 + level / 2) * coefs["se"]
    satt = satterthwaite(fit).loc[term]
    return {
        "rmse": fit.rmse, "estimate": float(coefs["estimate"]), "se": float(coefs["se"]),
        "statistic": float(coefs["z"]), "stat_type": "z", "df": np.inf,
        "p_value": float(coefs["p_z"]), "ci_lower": float(coefs["estimate"] - half),
        "ci_upper": float(coefs["estimate"] + half), "t_satterthwaite": float(satt["t"]),
        "df_satterthwaite": float(satt["df"]), "p_satterthwaite": float(satt["p"]),
    }  # fmt: skip


def _bayes_row(model: LMM, term: str, level: float) -> dict[str, float]:
    beta = model.idata.posterior["beta"].sel(fixed=term)
    draws = beta.values.ravel()
    hdi = az.hdi(beta, hdi_prob=level)["beta"].values
    resid = model.design.y - model.fitted_mean()
    df_resid = model.design.n_obs - len(model.design.fixed_names)
    return {
        "rmse": float(np.sqrt(np.sum(resid**2) / df_resid)),
        "estimate": float(draws.mean()), "se": float(draws.std(ddof=1)),
        "stat_type": "posterior", "ci_lower": float(hdi[0]), "ci_upper": float(hdi[1]),
        "pd": float(max(np.mean(draws > 0), np.mean(draws < 0))),
    }  # fmt: skip


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
          intercepts; with correlated slopes a coordinate may move past the mean.
        """
        s, suffix = self.setup, self.primary
        reml: LmerResult = self.fits[f"LMM-{suffix}"]
        reml_coef = reml_coefficients(reml, s.group)
        terms = [c for b in reml.design.blocks for c in b.columns]
        no_pool = self._no_pooling(reml, terms)
        ancova = self._ancova_coefficients(terms)
        complete: OLSFit = self.fits["LM-Global"]
        bayes = self.fits.get(f"Bayes-{suffix}")
        draws = bayes.group_coefficients(s.group) if bayes is not None else None
        rows = []
        for term in terms:
            frame = pd.DataFrame({
                "group": s.group, "level": reml_coef.index.astype(str), "term": term,
                "no_pooling": no_pool[term].reindex(reml_coef.index).to_numpy(),
                "ancova": ancova[term].reindex(reml_coef.index).to_numpy(),
                "reml": reml_coef[term].to_numpy(),
                "population": reml.fixef[term],
                "complete_pooling": complete.result.params[complete.names.index(term)],
            })  # fmt: skip
            if draws is not None:
                d = draws.sel(coef=term).rename("coef_draws")
                hdi = az.hdi(d, hdi_prob=self.level)["coef_draws"]
                frame["posterior_mean"] = d.mean(("chain", "draw")).values
                frame["hdi_lower"] = hdi.sel(hdi="lower").values
                frame["hdi_upper"] = hdi.sel(hdi="higher").values
            rows.append(frame)
        table = pd.concat(rows, ignore_index=True)
        gap = table["no_pooling"] - table["population"]
        table["shrinkage"] = (table["no_pooling"] - table["reml"]) / gap
        if draws is not None:
            table["shrinkage_posterior"] = (table["no_pooling"] - table["posterior_mean"]) / gap
        return table

    def _no_pooling(self, reml: LmerResult, terms: list[str]) -> pd.DataFrame:
        """Per-level own-data estimates of the random terms (see :meth:`shrinkage`)."""
        if self.setup.random_slope:
            return self.fits["Hierarchical"].coefficients[terms]
        design, block = reml.design, reml.design.blocks[0]
        resid = design.y - design.X @ reml.fit.beta
        n_j = np.bincount(block.codes, minlength=block.n_levels)
        mean_resid = np.bincount(block.codes, weights=resid, minlength=block.n_levels) / n_j
        out = pd.DataFrame(index=pd.Index(block.levels, name=self.setup.group))
        for term in terms:
            out[term] = reml.fixef[term] + (mean_resid if term == "(Intercept)" else 0.0)
        return out

    def _ancova_coefficients(self, terms: list[str]) -> pd.DataFrame:
        """Per-level coefficients of the ANCOVA fit (reference level + its contrasts)."""
        s = self.setup
        levels = self.fits[f"LMM-{self.primary}"].design.blocks[0].levels
        out = pd.DataFrame(index=pd.Index(levels, name=s.group), columns=terms, dtype=float)
        fit: OLSFit | None = self.fits.get("ANCOVA-Full" if s.random_slope else "ANCOVA-Inter")
        if fit is None:  # not identified (a term constant within groups)
            return out
        params = pd.Series(fit.result.params, index=fit.names)
        for term in terms:
            prefix = f"C({s.group})" if term == "(Intercept)" else f"{term}:C({s.group})"
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
        reml: LmerResult = self.fits[f"LMM-{suffix}"]
        bayes: LMM | None = self.fits.get(f"Bayes-{suffix}")
        ancova: OLSFit | None = self.fits.get(f"ANCOVA-{suffix}")
        sources = {"reml": (reml.fixef, reml.design.X)}
        if ancova is not None:
            sources["ancova"] = (pd.Series(ancova.result.params, index=ancova.names),
                                 ancova.result.model.exog)  # fmt: skip
        if bayes is not None:
            beta = bayes.idata.posterior["beta"].mean(("chain", "draw")).to_series()
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
        offset = _held_at_means(reml.fixef, reml.design.X, ("(Intercept)", s.term), s.group)
        frames.append(pd.DataFrame({"level": [""], "source": ["population"],
                                    "intercept": [reml.fixef["(Intercept)"] + offset],
                                    "slope": [reml.fixef[s.term]]}))  # fmt: skip
        return pd.concat(frames, ignore_index=True)

    def population_ellipse(self, level: float = 0.95, n_points: int = 100) -> np.ndarray:
        """Points (n_points x 2) on the REML population ellipse of (intercept, term).

        The region holding ``level`` of group coefficients under the fitted normal
        distribution of random effects, centred at the fixed effects.
        """
        reml: LmerResult = self.fits["LMM-Full"]
        block = reml.design.blocks[0]
        cov = reml.covariances()[0]
        mean = reml.fixef[list(block.columns)].to_numpy()
        radius = np.sqrt(scipy.stats.chi2.ppf(level, df=2))
        vals, vecs = np.linalg.eigh(cov)
        angle = np.linspace(0, 2 * np.pi, n_points)
        circle = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return mean + radius * circle * np.sqrt(np.clip(vals, 0, None)) @ vecs.T


def _held_at_means(params: pd.Series, X: np.ndarray, keep: tuple[str, ...], group: str) -> float:
    """Contribution of the fixed predictors other than ``keep`` at their column means
    (group dummies and their interactions excluded)."""
    names = list(params.index)
    other = [i for i, n in enumerate(names) if n not in keep and f"C({group})" not in n]
    return float(np.asarray(params)[other] @ np.asarray(X)[:, other].mean(axis=0))


def _fit_bayes(formula: str, data: pd.DataFrame, fit_kwargs: dict[str, Any]) -> LMM:
    model = LMM(formula, data)
    model.fit(**fit_kwargs)
    return model


def reml_coefficients(fit: LmerResult, group: str) -> pd.DataFrame:
    """lme4's ``coef()``: fixed effect + BLUP per level of ``group``."""
    ranef = fit.ranef()[group]
    out = ranef.copy()
    for col in ranef.columns:
        if col in fit.fixef.index:
            out[col] = ranef[col] + fit.fixef[col]
    return out


def compare(
    formula: str,
    data: pd.DataFrame,
    term: str | None = None,
    bayes: bool = True,
    level: float = 0.95,
    model: LMM | None = None,
    **fit_kwargs: Any,
) -> Comparison:
    """Fit the tutorial's seven models (and the Bayesian LMMs) for one fixed term.

    Parameters
    ----------
    formula
        An lme4 formula with one grouping factor, e.g. ``score ~ edu + (1|classroom)``.
    data
        The data (never modified).
    term
        Numeric fixed term compared across models (default: the first non-intercept one).
    bayes
        Also fit the Bayesian random-intercept and random-slope LMMs.
    level
        Coverage of confidence intervals and HDIs.
    model
        An already fitted :class:`LMM` of ``formula`` (with the user's priors, say): it
        becomes the Bayesian row whose random part matches the formula instead of a
        refit with default priors.
    **fit_kwargs
        Passed to :meth:`LMM.fit` (``draws``, ``chains``, ``random_seed``, ...).

    Returns
    -------
    Comparison
        ``.table`` and ``.shrinkage()``; rows ``LM-Global``, ``ANCOVA-Inter``,
        ``Aggregation``, ``Hierarchical``, ``LMM-Inter``, ``ANCOVA-Full``, ``LMM-Full``,
        ``Bayes-Inter``, ``Bayes-Full``.
    """
    spec = parse_formula(formula)
    s = ComparisonSetup.from_spec(spec, term, data)
    numeric = [c for c in data.columns if c != s.group and pd.api.types.is_numeric_dtype(data[c])]
    means = data.groupby(s.group, observed=True)[numeric].mean().reset_index()
    steps = [
        ("LM-Global", f"OLS {s.ols}", lambda: ols(s.ols, data)),
        ("ANCOVA-Inter", f"OLS {s.ancova_intercepts}", lambda: ols(s.ancova_intercepts, data)),
        ("Aggregation", f"OLS on {s.group} means {s.ols}", lambda: ols(s.ols, means)),
        ("Hierarchical", f"two-stage: per-{s.group} OLS, then t-test of the {s.term} slopes",
         lambda: per_group_ols(s.ols, data, s.group)),
        ("LMM-Inter", f"REML {s.lmm_intercepts} (Wald z)", lambda: lmer(s.lmm_intercepts, data)),
        ("ANCOVA-Full", f"OLS {s.ancova_slopes}", lambda: ols(s.ancova_slopes, data)),
        ("LMM-Full", f"REML {s.lmm_slopes} (Wald z)", lambda: lmer(s.lmm_slopes, data)),
    ]  # fmt: skip
    if model is not None and model.idata is None:
        raise NotFittedError("compare(model=...) needs a fitted model: call model.fit() first")
    if bayes:
        fit_kwargs.setdefault("progressbar", False)
        primary = "Full" if s.random_slope else "Inter"
        for suffix, f in (("Inter", s.lmm_intercepts), ("Full", s.lmm_slopes)):
            if model is not None and suffix == primary:
                steps.append((f"Bayes-{suffix}", f"Bayesian {model.formula} (posterior mean, "
                              "sd, HDI)", lambda: model))  # fmt: skip
                continue
            steps.append((f"Bayes-{suffix}", f"Bayesian {f} (posterior mean, sd, HDI)",
                          lambda f=f: _fit_bayes(f, data, fit_kwargs)))  # fmt: skip

    fits: dict[str, Any] = {}
    records = []
    for name, method, fit_model in steps:
        record: dict[str, Any] = {"model": name, "method": method}
        try:
            fits[name] = fit_model()
        except DataError as err:  # e.g. a term constant within groups: not identified
            record["note"] = f"not identified: {err}"
            records.append(record)
            continue
        fit = fits[name]
        if isinstance(fit, LmerResult):
            record.update(_lmer_row(fit, s.term, level))
            record["note"] = "singular fit" if fit.singular else ""
        elif isinstance(fit, LMM):
            record.update(_bayes_row(fit, s.term, level))
        else:
            record.update(fit.row(s.term, level))
        records.append(record)

    table = pd.DataFrame(records).reindex(columns=TABLE_COLUMNS)
    table["note"] = table["note"].fillna("")
    return Comparison(setup=s, data=data, table=table, fits=fits, level=level)
