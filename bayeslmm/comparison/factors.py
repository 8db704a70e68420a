"""The comparison for any design: several grouping factors, nested or crossed.

``compare()`` hands a formula with more than one grouping factor (``(1 | subj) +
(1 | item)``, ``(1 | school/class)``, or a single interaction ``(1 | a:b)``) to
:func:`compare_factors`. What it gives:

- REML beside the posterior for every fixed effect and variance component
  (:meth:`MultiFactorComparison.fixed_effects`, :meth:`~MultiFactorComparison.variance_components`);
- shrinkage per factor (:meth:`MultiFactorComparison.shrinkage`): for every level of every
  factor and each of its random terms, the level's own (no-pooling) estimate, the REML
  coefficient, the posterior and the population value;
- for one fixed term (``term``), the classical models that still answer a question about
  it: complete-pooling OLS, ANCOVA with fixed effects for every level of every factor,
  and, per factor, OLS on the factor's level means (aggregation: by-subject and by-item
  analyses) and the two-stage model (per-level OLS, then a t-test: psycholinguistics' F1
  and F2 analyses); then REML (and REML with random intercepts only, where the formula
  has more) and the Bayesian fit.

The one-factor tutorial's ANCOVA with per-level slopes has no counterpart: with slopes per
level of two crossed factors, each set of level slopes spans the term, so its coefficient
is not identified.

No pooling, with several factors
--------------------------------
A level's own estimate is the OLS fit, on that level's rows alone, of the *partial
residual* ``y - X beta - sum over the other factors of Z b`` (REML fixed effects and the
other factors' BLUPs) on the factor's random-effect columns, plus the fixed effects: the
level's estimate when only its own factor is left unpooled. The REML BLUP of the level is
exactly this estimate shrunk by the level's ridge,
``b_j = (Z_j'Z_j + sigma^2 D^-1)^-1 Z_j' r_j`` (Henderson's equations read one factor
at a time), so for random intercepts the shrinkage fraction is the textbook
``sigma^2 / (sigma^2 + n_j tau^2)`` in crossed and nested designs as with one factor.
It is undefined (NaN, with a note) where the level's own rows do not identify its random
terms: fewer rows than terms, or a term's column constant within the level.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..bayes import stack
from ..bayes.model import LMM
from ..classical.lmer import LmerResult, lmer, satterthwaite
from ..classical.ols import (
    TwoStageFit,
    estimable,
    estimable_columns,
    ols_arrays,
    per_level_ols,
)
from ..classical.summary import effects_by_block
from ..errors import ArgumentError, DataError, FormulaError
from ..gaussian.statistics import SUMMARIES
from ..spec.design import Design, build_design
from ..spec.formula import ModelSpec, quote
from ..spec.reuse import Designs
from .parameters import fixed_effects_table, reml_coefficients, variance_components_table
from .rows import check_fit_settings, check_level, fit_bayes, model_table

#: Dummy columns, and rows x columns, beyond which the ANCOVA (a dense OLS) is not fitted.
MAX_DUMMIES = 2000
MAX_CELLS = 30_000_000


@dataclass(frozen=True)
class FactorsSetup:
    """What a comparison with several grouping factors is built from.

    Attributes
    ----------
    formula, response, fixed
        The user's formula, its response and fixed part.
    groups
        The grouping factors, as lme4 names them (``treatment:litter`` for the inner
        factor of ``treatment/litter``).
    n_levels
        Levels of each factor.
    nested_in
        Per factor, the factors whose levels it nests in (every level of it lies within one
        level of each of them); empty for a crossed factor.
    term
        The fixed effect the classical models are compared on (``None``: the formula has
        no fixed effect besides the intercept, and there is no model table).
    random_slope
        Does any random term have more than an intercept?
    """

    formula: str
    response: str
    fixed: str
    groups: tuple[str, ...]
    n_levels: tuple[int, ...]
    nested_in: tuple[tuple[str, ...], ...]
    term: str | None
    random_slope: bool
    response_text: str = ""

    @classmethod
    def from_spec(cls, spec: ModelSpec, term: str | None, data: pd.DataFrame) -> FactorsSetup:
        """The setup of ``spec`` on ``data`` (its design built here: see :meth:`from_design`)."""
        _check_setup(spec, term)
        return cls.from_design(build_design(spec, data), term)

    @classmethod
    def from_design(cls, design: Design, term: str | None) -> FactorsSetup:
        """The setup of a built design of the user's formula (nothing is built)."""
        spec = design.spec
        _check_setup(spec, term)
        candidates = [n for n in design.fixed_names if n != "(Intercept)"]
        if term is None:
            term = candidates[0] if candidates else None
        elif term not in candidates:
            have = candidates or "none (only the intercept)"
            raise FormulaError(f"term {term!r} is not a fixed effect of {spec.formula!r}: "
                               f"choose one of {have}")  # fmt: skip
        codes = _factor_codes(design)
        groups = tuple(codes)
        nested = tuple(
            tuple(other for other in groups if other != g and _nests(codes[g], codes[other]))
            for g in groups
        )
        slope = any(b.n_terms > 1 or b.columns != ["(Intercept)"] for b in design.blocks)
        return cls(spec.formula, design.response, spec.fixed, groups,
                   tuple(len(np.unique(c)) for c in codes.values()), nested, term, slope,
                   spec.response)  # fmt: skip

    @property
    def ols(self) -> str:
        return f"{self.response_text or quote(self.response)} ~ {self.fixed}"

    @property
    def structure(self) -> str:
        """The design in words: which factors are crossed, which nested in which."""
        parts = []
        for g, n, outer in zip(self.groups, self.n_levels, self.nested_in, strict=True):
            within = f" nested in {' and '.join(outer)}" if outer else ""
            parts.append(f"{g} ({n} levels){within}")
        crossed = [g for g, outer in zip(self.groups, self.nested_in, strict=True)
                   if not outer and not any(g in o for o in self.nested_in)]  # fmt: skip
        kind = "crossed" if len(crossed) > 1 else ("nested" if any(self.nested_in) else "")
        return f"{kind + ': ' if kind else ''}{'; '.join(parts)}"


def _check_setup(spec: ModelSpec, term: object) -> None:
    if not spec.random:
        raise FormulaError(f"compare() needs a random term such as (1 | g); "
                           f"{spec.formula!r} has none")  # fmt: skip
    if term is not None and not isinstance(term, str):
        raise ArgumentError(f"term must be the name of a fixed effect, got {term!r}")


def _factor_codes(design: Design) -> dict[str, np.ndarray]:
    """Level index of every row, per grouping factor (in the design's order)."""
    out: dict[str, np.ndarray] = {}
    for block in design.blocks:
        out.setdefault(block.group, block.codes)
    return out


def _nests(inner: np.ndarray, outer: np.ndarray) -> bool:
    """Does every level of ``inner`` lie within one level of ``outer``?"""
    pairs = np.unique(np.stack([inner, outer]), axis=1)
    return pairs.shape[1] == len(np.unique(inner))


def _dummies(codes: np.ndarray, n_levels: int) -> np.ndarray:
    """Indicator columns of every level but the first."""
    out = np.zeros((len(codes), n_levels))
    out[np.arange(len(codes)), codes] = 1.0
    return out[:, 1:]


def _absorbing(s: FactorsSetup) -> list[str]:
    """The factors whose level dummies span all factors' dummies: a factor is left out
    when a finer one nests in it (of two with the same levels, the first is kept)."""
    keep = []
    for g in s.groups:
        finer = [h for h in s.groups if h != g and g in _outer(s, h)]  # h nests in g
        if not any(h not in _outer(s, g) or s.groups.index(h) < s.groups.index(g)
                   for h in finer):  # fmt: skip
            keep.append(g)
    return keep


def _outer(s: FactorsSetup, g: str) -> tuple[str, ...]:
    return s.nested_in[s.groups.index(g)]


def _ancova(design: Design, s: FactorsSetup):
    """OLS with fixed effects for every level of every factor (see the module text)."""
    codes = _factor_codes(design)
    factors = _absorbing(s)
    sizes = [len(np.unique(codes[g])) - 1 for g in factors]
    if sum(sizes) > MAX_DUMMIES:
        raise DataError(f"not fitted: {sum(sizes)} level dummies ({', '.join(factors)}) are "
                        f"more than a dense OLS should hold ({MAX_DUMMIES})")  # fmt: skip
    X, names = design.X, list(design.fixed_names)
    if design.n_obs * (X.shape[1] + sum(sizes)) > MAX_CELLS:
        raise DataError(f"not fitted: {design.n_obs} rows x {sum(sizes)} level dummies are "
                        "more than a dense OLS should hold")  # fmt: skip
    dummies = [_dummies(codes[g], n + 1) for g, n in zip(factors, sizes, strict=True)]
    XA = np.hstack([X, *dummies])
    j = names.index(s.term)
    identified = estimable_columns(XA)
    if not identified[j]:
        alone = [g for g, D in zip(factors, dummies, strict=True)
                 if not estimable(np.hstack([X, D]), j)]  # fmt: skip
        by = f"the {alone[0]} dummies" if alone else f"the dummies of {' and '.join(factors)}"
        raise DataError(f"{s.term!r} does not vary within levels once {by} are in the model")
    absorbed = [n for k, n in enumerate(names) if n != s.term and not identified[k]]
    level_names = [f"{g}[{lv}]" for g, n in zip(factors, sizes, strict=True)
                   for lv in range(1, n + 1)]  # fmt: skip
    fit = ols_arrays(XA, design.y, names + level_names)
    note = f"not identified beside the level dummies: {', '.join(absorbed)}" if absorbed else ""
    return fit, note


def _aggregation(design: Design, group: str, term: str):
    """OLS of the level means of the response on the level means of every fixed column."""
    codes = _factor_codes(design)[group]
    n = np.bincount(codes)
    means = np.stack([np.bincount(codes, weights=col) for col in design.X.T], axis=1) / n[:, None]
    y = np.bincount(codes, weights=design.y) / n
    names = list(design.fixed_names)
    if not estimable(means, names.index(term)):
        raise DataError(f"the {group} means of {term!r} do not vary apart from the other "
                        "columns' means (the same in every level, say)")  # fmt: skip
    return ols_arrays(means, y, names)


def _two_stage(design: Design, group: str, term: str) -> tuple[TwoStageFit, str]:
    """Per-level OLS, then a t-test of the term's coefficients over the levels that
    identify it (the others are left out, and the note names them)."""
    codes = _factor_codes(design)[group]
    levels = list(next(b.level_values for b in design.blocks if b.group == group))
    coefs = per_level_ols(design.X, design.y, codes, levels, list(design.fixed_names), group,
                          term)  # fmt: skip
    missing = coefs.index[coefs[term].isna()].astype(str).tolist()
    if len(levels) - len(missing) < 2:
        raise DataError(f"{term!r} is identified within fewer than two levels of {group!r}")
    note = ""
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")  # fmt: skip
        note = (f"{len(missing)} of {len(levels)} {group} levels left out: {term!r} does not "
                f"vary within them ({shown})")  # fmt: skip
    return TwoStageFit(coefs.dropna(subset=[term])), note


def _intercepts_formula(spec: ModelSpec) -> str:
    """The formula with a random intercept for every grouping factor and nothing else."""
    seen: dict[tuple[str, ...], None] = {}
    for t in spec.random:
        seen.setdefault(t.factors, None)
    bars = " + ".join(f"(1 | {':'.join(quote(f) for f in factors)})" for factors in seen)
    return f"{spec.response} ~ {spec.fixed} + {bars}"


@dataclass
class MultiFactorComparison:
    """REML beside the posterior, shrinkage per factor and the classical models, for a
    formula with several grouping factors (see :mod:`bayeslmm.comparison.factors`).

    Attributes
    ----------
    setup
        Formula, factors (with their nesting) and the term of the model table.
    table
        One row per model for ``setup.term`` (the columns of :class:`Comparison`'s table);
        empty without a term. The REML rows' Wald z uses lme4's SE (given the variance
        parameters, as ``summary(lmer(...))``; the one-factor table's statsmodels-style
        observed information has no statsmodels counterpart here and costs many refits
        on large designs), with lmerTest's Satterthwaite t, df and p beside it.
    fits
        Every fitted model by its row name: ``LMM`` (REML of the formula), ``Bayes`` (the
        posterior, with ``bayes=True``) and the classical models.
    level
        Coverage of every interval.
    """

    setup: FactorsSetup
    table: pd.DataFrame = field(repr=False)
    fits: dict[str, Any] = field(repr=False)
    level: float = 0.95
    methods: dict[str, str] = field(repr=False, default_factory=dict)
    notes: dict[str, str] = field(repr=False, default_factory=dict)
    satterthwaite: pd.DataFrame | None = field(repr=False, default=None)
    _tables: dict[tuple[str, float], pd.DataFrame] = field(repr=False, default_factory=dict)

    @property
    def reml(self) -> LmerResult:
        """The REML fit of the formula."""
        return self.fits["LMM"]

    @property
    def bayes(self) -> LMM | None:
        """The Bayesian fit of the formula, if any."""
        return self.fits.get("Bayes")

    def fit(self, name: str) -> Any:
        """The fitted model of row ``name``, or a DataError saying why there is none."""
        if name not in self.fits:
            why = self.notes.get(name, "it was not fitted")
            raise DataError(f"the comparison has no {name} model: {why}")
        return self.fits[name]

    def table_at(self, level: float) -> pd.DataFrame:
        """The model table with confidence intervals and HDIs at ``level``."""
        level = check_level(level)
        if self.setup.term is None:
            return pd.DataFrame(columns=["model", "method", "note"])
        return model_table(self.methods, self.fits, self.notes, self.setup.term, level,
                           "expected", {"LMM": self._satterthwaite()})  # fmt: skip

    def _satterthwaite(self) -> pd.DataFrame:
        """lmerTest's table of the REML fit, computed once."""
        if self.satterthwaite is None:
            self.satterthwaite = satterthwaite(self.reml)
        return self.satterthwaite

    def at_level(self, level: float) -> MultiFactorComparison:
        """The same comparison with every interval at ``level`` (nothing is refitted)."""
        level = check_level(level)
        return dataclasses.replace(self, level=level, table=self.table_at(level))

    def fixed_effects(self) -> pd.DataFrame:
        """Every fixed effect by REML and by the posterior (see
        :func:`~bayeslmm.comparison.parameters.fixed_effects_table`)."""
        return fixed_effects_table(self.reml, self.bayes, self.level, self._satterthwaite())

    def variance_components(self) -> pd.DataFrame:
        """Every SD, correlation and the residual SD by REML and by the posterior (see
        :func:`~bayeslmm.comparison.parameters.variance_components_table`)."""
        return variance_components_table(self.reml, self.bayes, self.level)

    def factors(self) -> pd.DataFrame:
        """One row per grouping factor: levels, rows per level, random terms, nesting."""
        design, rows = self.reml.design, []
        codes = _factor_codes(design)
        for g, outer in zip(self.setup.groups, self.setup.nested_in, strict=True):
            n = np.bincount(codes[g])
            terms = [c for b in design.blocks if b.group == g for c in b.columns]
            rows.append({"factor": g, "levels": len(n), "rows_min": int(n.min()),
                         "rows_median": float(np.median(n)), "rows_max": int(n.max()),
                         "random_terms": ", ".join(terms),
                         "nested_in": ", ".join(outer) or "none"})  # fmt: skip
        return pd.DataFrame(rows)

    def no_pooling(self, group: str) -> pd.DataFrame:
        """Each level's own estimate of ``group``'s random terms (see the module text):
        levels x terms, plus ``n`` (rows) and ``note`` (why a level has none)."""
        reml = self.reml
        design = reml.design
        if group not in self.setup.groups:
            raise ArgumentError(f"no grouping factor {group!r}; have {list(self.setup.groups)}")
        ranef = reml.ranef()
        partial = design.y - design.X @ reml.solution.beta
        effects = effects_by_block(design.blocks, reml.solution.b)
        for block, u in zip(design.blocks, effects, strict=True):
            if block.group != group:
                partial = partial - np.einsum("nq,nq->n", block.Z, u[block.codes])
        Z = np.hstack([b.Z for b in design.blocks if b.group == group])
        codes = _factor_codes(design)[group]
        columns = list(ranef[group].columns)
        n_levels, q = len(ranef[group]), Z.shape[1]
        scale = np.sqrt((Z**2).sum(axis=0))
        scale[scale == 0] = 1.0
        Zs = Z / scale
        gram = np.empty((n_levels, q, q))
        for i in range(q):
            for k in range(i + 1):
                w = Zs[:, i] * Zs[:, k]
                gram[:, i, k] = gram[:, k, i] = np.bincount(codes, w, minlength=n_levels)
        rhs = np.stack([np.bincount(codes, Zs[:, i] * partial, minlength=n_levels)
                        for i in range(q)], axis=1)  # fmt: skip
        n = np.bincount(codes, minlength=n_levels)
        full = np.linalg.matrix_rank(gram, hermitian=True) == q
        own = np.full((n_levels, q), np.nan)
        if full.any():
            own[full] = np.linalg.solve(gram[full], rhs[full][..., None])[..., 0] / scale
        fixef = reml.fixef()["estimate"]
        out = pd.DataFrame(own + np.array([fixef.get(c, 0.0) for c in columns]),
                           index=ranef[group].index, columns=columns)  # fmt: skip
        cols = ", ".join(columns)
        out["n"] = n
        out["note"] = np.where(
            full, "",
            np.where(n < q, f"fewer rows than random terms ({cols}): no estimate of its own",
                     f"the columns of {cols} are collinear within the level (a term constant "
                     "in it): no estimate of its own"),
        )  # fmt: skip
        return out

    def shrinkage(self) -> pd.DataFrame:
        """One row per factor, level and random term: how far each estimate shrinks.

        Columns: ``group``, ``level``, ``term``, ``n`` (rows of the level);
        ``no_pooling`` (the level's own estimate: see the module text), ``reml`` (fixed
        effect + BLUP, lme4's ``coef``) and ``reml_sd`` (the BLUP's conditional SD),
        ``population`` (the REML fixed effect; 0 for a random term without one),
        ``complete_pooling`` (the OLS coefficient ignoring every factor); with a Bayesian
        fit ``posterior_mean``, ``posterior_sd``, ``hdi_lower``/``hdi_upper`` (of fixed +
        random coefficient, as ``reml``); ``shrinkage``,
        ``(no_pooling - reml) / (no_pooling - population)`` (0: none, 1: complete; for random
        intercepts exactly ``sigma^2 / (sigma^2 + n tau^2)``), and ``shrinkage_posterior``,
        ``1 - E[u | y] / (no_pooling - population)`` with ``E[u | y]`` the posterior mean of
        the level's random effect (the coefficient's posterior mean less the fixed
        effect's), so that the fixed effects' own uncertainty, wide where a factor has few
        levels, does not enter it; ``note``: why a level has no estimate of its own.
        """
        key = ("shrinkage", self.level)
        if key not in self._tables:
            self._tables[key] = self._shrinkage()
        return self._tables[key].copy()

    def _shrinkage(self) -> pd.DataFrame:
        reml, bayes = self.reml, self.bayes
        design = reml.design
        sds = reml.ranef_sd()
        complete = np.linalg.lstsq(design.X, design.y, rcond=None)[0]
        complete = dict(zip(design.fixed_names, complete, strict=True))
        frames, fixef = [], reml.fixef()["estimate"]
        for group in self.setup.groups:
            own = self.no_pooling(group)
            coef = reml_coefficients(reml, group)
            draws = None
            if bayes is not None:
                draws = bayes.group_coefficients(group)
            for term in coef.columns:
                frame = pd.DataFrame({
                    "group": group, "level": coef.index, "term": term,
                    "n": own["n"].to_numpy(), "no_pooling": own[term].to_numpy(),
                    "reml": coef[term].to_numpy(), "reml_sd": sds[group][term].to_numpy(),
                    "population": fixef.get(term, 0.0),
                    "complete_pooling": complete.get(term, 0.0),
                })  # fmt: skip
                if draws is not None:
                    frame = frame.join(_posterior_columns(draws, term, self.level))
                frame["note"] = own["note"].to_numpy()
                frames.append(frame)
        return shrinkage_columns(pd.concat(frames, ignore_index=True), bayes)


def shrinkage_columns(table: pd.DataFrame, bayes: LMM | None) -> pd.DataFrame:
    """``table`` (one row per level and term: ``no_pooling``, ``reml``, ``population``,
    ``posterior_mean`` where ``bayes`` is fitted, ``note``) with the shrinkage of the
    estimate and of the posterior mean towards the population value inserted before
    ``note``: 1 - (estimate - population) / (no-pooling - population)."""
    gap = table["no_pooling"] - table["population"]
    gap = gap.where(gap != 0)
    table.insert(table.columns.get_loc("note"), "shrinkage",
                 (table["no_pooling"] - table["reml"]) / gap)  # fmt: skip
    if bayes is not None:
        beta = stack.posterior(bayes.idata)["beta"].mean(("chain", "draw")).to_series()
        effect = table["posterior_mean"] - table["term"].map(beta).fillna(0.0)
        table.insert(table.columns.get_loc("note"), "shrinkage_posterior",
                     1.0 - effect / gap)  # fmt: skip
    return table


def _posterior_columns(draws, term: str, level: float) -> pd.DataFrame:
    """Posterior mean, sd and HDI of one coefficient per level (NaN if not drawn)."""
    names = ["posterior_mean", "posterior_sd", "hdi_lower", "hdi_upper"]
    n_levels = draws.sizes["level"]
    if term not in draws.coords["coef"].values:
        return pd.DataFrame(np.nan, index=range(n_levels), columns=names)
    d = draws.sel(coef=term)
    lower, upper = stack.hdi(d, level)
    return pd.DataFrame({
        "posterior_mean": d.mean(("chain", "draw")).values,
        "posterior_sd": d.std(("chain", "draw"), ddof=1).values,
        "hdi_lower": lower.values, "hdi_upper": upper.values,
    })  # fmt: skip


def compare_factors(
    spec: ModelSpec | Design,
    data: pd.DataFrame | None,
    term: str | None,
    bayes: bool,
    level: float,
    model: LMM | None,
    fit_kwargs: dict[str, Any],
) -> MultiFactorComparison:
    """The comparison of a formula with several grouping factors (see :func:`compare`):
    ``spec`` the formula, or a built design of it (then ``data`` is None, and its rows
    are the data)."""
    if isinstance(spec, Design):
        user = spec
    else:
        _check_setup(spec, term)
        user = build_design(spec, data, summaries=SUMMARIES)
    spec, rows = user.spec, user.frame if data is None else data
    s = FactorsSetup.from_design(user, term)
    if bayes:
        check_fit_settings(fit_kwargs)
    reml = lmer(user)
    design = reml.design
    if bayes and model is not None and model.design is not design:
        same = (list(model.design.fixed_names) == list(design.fixed_names)
                and [(b.label, b.columns) for b in model.design.blocks]
                == [(b.label, b.columns) for b in design.blocks]
                and np.array_equal(model.design.y, design.y))  # fmt: skip
        if not same:
            raise ArgumentError(f"compare(model=...): the model {model.formula!r} is not a fit "
                                f"of {spec.formula!r} to these data")  # fmt: skip
    steps: list[tuple[str, str, Any]] = []
    if s.term is not None:
        t = s.term
        steps += [
            ("LM-Global", f"OLS {s.ols} (every grouping factor ignored: complete pooling)",
             lambda: ols_arrays(design.X, design.y, list(design.fixed_names))),
            ("ANCOVA", f"OLS {s.ols} + fixed effects for every level of "
                       f"{' and '.join(_absorbing(s))} (no pooling)", lambda: _ancova(design, s)),
        ]  # fmt: skip
        for g in s.groups:
            steps.append((f"Aggregation ({g})", f"OLS on {g} means {s.ols}",
                          lambda g=g: _aggregation(design, g, t)))  # fmt: skip
        for g in s.groups:
            steps.append((f"Two-stage ({g})",
                          f"two-stage: per-{g} OLS of {s.ols}, then t-test of the {t} "
                          "coefficients", lambda g=g: _two_stage(design, g, t)))  # fmt: skip
        if s.random_slope:
            inter = _intercepts_formula(spec)
            steps.append(("LMM-Inter", f"REML {inter} (Wald z, lme4's SE)",
                          lambda: lmer(Designs(rows, user).get(inter))))  # fmt: skip
        steps.append(("LMM", f"REML {spec.formula} (Wald z, lme4's SE)", lambda: reml))
    fits: dict[str, Any] = {"LMM": reml}
    methods: dict[str, str] = {}
    notes: dict[str, str] = {}
    for name, method, fit_model in steps:
        methods[name] = method
        try:
            fitted = fit_model()
        except DataError as err:  # a model the data cannot identify: its row says why
            text = str(err)
            notes[name] = text if text.startswith("not fitted") else f"not identified: {text}"
            continue
        if isinstance(fitted, tuple):  # a fit and what its row should say about it
            fitted, note = fitted
            if note:
                notes[name] = note
        fits[name] = fitted
    if bayes:
        fits["Bayes"] = model if model is not None else fit_bayes(user, fit_kwargs)
        if s.term is not None:
            methods["Bayes"] = f"Bayesian {fits['Bayes'].formula} (posterior mean, sd, HDI)"
    comparison = MultiFactorComparison(setup=s, table=pd.DataFrame(), fits=fits, level=level,
                                       methods=methods, notes=notes)  # fmt: skip
    comparison.table = comparison.table_at(level)
    return comparison
