"""Likelihood-ratio tests of nested mixed models: lme4's ``anova`` and lmerTest's ``ranova``.

``anova(fit0, fit1, ...)`` refits REML fits by maximum likelihood (lme4's ``refit=TRUE``),
orders the models by their number of parameters and tests each against the one before
it. ``ranova(fit)`` removes one random term (or one term of a random term's expression)
at a time and tests each reduced model against the fit, with the fit's own criterion
(REML for REML fits), as lmerTest does.

Both add a boundary-corrected p-value. A variance tested at zero sits on the edge of its
parameter space, so the likelihood-ratio statistic is not chi-square with ``Df`` degrees
of freedom under the null: when the larger model has exactly one more random-effect
dimension (one more column of ``Z`` per level; its variance and its ``Df - 1``
covariances and other parameters tested together) the null distribution is the
chi-bar-square mixture ``0.5 chi2(Df - 1) + 0.5 chi2(Df)`` (Self & Liang 1987; Stram &
Lee 1994), ``chi2(0)`` being a point mass at zero; when the models have the same number
of random-effect dimensions (only correlations or fixed effects removed) nothing is on
the boundary and the plain p-value stands. With two or more variances tested at zero
the mixture weights depend on the information matrix; the corrected p-value is then
left empty (a parametric bootstrap answers that case).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats

from ..errors import (
    ArgumentError,
    ComparisonError,
    RowsNotInMemoryError,
    SingularFitWarning,
    check_bool,
)
from ..gaussian.profiled import ThetaLayout, profiled
from ..gaussian.statistics import CrossProducts, same_response
from ..spec.design import Design, build_design
from ..spec.formula import ModelSpec
from ..spec.neighbours import single_term_deletions
from .glmer import GlmerResult
from .lmer import LmerResult, lmer

ANOVA_COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)",
                 "Pr(>Chisq) boundary"]  # fmt: skip
RANOVA_COLUMNS = ["npar", "logLik", "AIC", "LRT", "Df", "Pr(>Chisq)", "Pr(>Chisq) boundary"]
SPAN_TOL = 1e-8


def chibar_pvalue(chisq: float, df: int, variances_at_zero: int) -> tuple[float, str]:
    """Boundary-corrected p-value of a likelihood-ratio statistic, and the null it used.

    Parameters
    ----------
    chisq
        The statistic, ``2 (logLik1 - logLik0) >= 0``.
    df
        Parameters added by the larger model.
    variances_at_zero
        Random-effect dimensions the larger model adds (variances tested at zero).

    Returns
    -------
    p, null
        ``0``: the plain ``chi2(df)`` tail; ``1``: ``0.5 chi2(df - 1) + 0.5 chi2(df)``
        (``chi2(0)``: a point mass at zero); more: ``nan`` (weights not available).
    """
    if df <= 0 or variances_at_zero < 0:
        return np.nan, ""
    if variances_at_zero == 0:
        return float(scipy.stats.chi2.sf(chisq, df)), f"chi2({df})"
    if variances_at_zero == 1:
        lower = float(chisq <= 0.0) if df == 1 else float(scipy.stats.chi2.sf(chisq, df - 1))
        p = 0.5 * lower + 0.5 * float(scipy.stats.chi2.sf(chisq, df))
        return p, f"0.5 chi2({df - 1}) + 0.5 chi2({df})"
    return np.nan, f"{variances_at_zero} variances at zero: no simple mixture"


def fixed_only_fit(design: Design, reml: bool) -> LmerResult:
    """A model without random effects as an :class:`LmerResult` (the linear model's
    likelihood, REML or ML), for the last row of :func:`ranova`; with a residual
    correlation structure, nlme's ``gls``."""
    if design.residual is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingularFitWarning)
            return lmer(design.spec.formula, design.frame, reml=reml,
                        residual=design.residual.structure)  # fmt: skip
    cp = CrossProducts.from_design(design)
    layout = ThetaLayout.from_design(design)
    theta = np.zeros(0)
    return LmerResult(design, reml, theta, profiled(theta, cp, layout, reml), layout, cp)


def _refit(fit: LmerResult, spec: ModelSpec | str, reml: bool) -> LmerResult:
    """``spec`` fitted by REML or ML to the rows ``fit`` used (no singular-fit warnings:
    the tables below are where a boundary shows)."""
    frame = fit.design.frame
    residual = fit.residual_structure  # refits keep the residual correlation structure
    se = getattr(fit, "se_column", None)  # ... and the known standard errors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        spec_text = spec if isinstance(spec, str) else spec.formula
        if isinstance(spec, ModelSpec) and not spec.random:
            if se is not None:
                raise ComparisonError(
                    f"the model {spec_text!r} without random effects is not fitted with "
                    f"known standard errors (se={se!r}) here: compare fits with random terms"
                )
            return fixed_only_fit(build_design(spec, frame, residual), reml)
        if se is not None:
            return lmer(spec_text, frame, reml=reml, se=se)
        return lmer(spec_text, frame, reml=reml, residual=residual)


def _in_span(columns: np.ndarray, basis: np.ndarray) -> bool:
    """Are the columns linear combinations of the basis' columns (on these rows)?"""
    if columns.shape[1] == 0:
        return True
    if basis.shape[1] == 0:
        return False
    coef, *_ = np.linalg.lstsq(basis, columns, rcond=None)
    resid = columns - basis @ coef
    scale = np.maximum(np.linalg.norm(columns, axis=0), 1e-300)
    return bool(np.all(np.linalg.norm(resid, axis=0) <= SPAN_TOL * np.sqrt(len(basis)) * scale
                       + 1e-12))  # fmt: skip


def _partition(codes: np.ndarray) -> bytes:
    """A key equal for two code vectors that group the rows alike."""
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse.reshape(-1)].astype(np.int64).tobytes()


def _units(design: Design) -> list[tuple[bytes, np.ndarray]]:
    """Random-effect units: a correlated block whole, an independent block column by column."""
    out = []
    for block in design.blocks:
        key = _partition(block.codes)
        if block.correlated:
            out.append((key, block.Z))
        else:
            out.extend((key, block.Z[:, [j]]) for j in range(block.n_terms))
    return out


def _rows_needed(designs: Sequence[Design], what: str, instead: str) -> None:
    if not all(d.rows_in_memory for d in designs):
        raise RowsNotInMemoryError(
            f"{what} compares the models' columns row by row, and a fit of a Dask DataFrame "
            f"does not hold its rows; {instead}"
        )


def is_nested(small: Design, large: Design) -> bool:
    """Is the model of ``small`` a special case of the model of ``large`` (same rows)?

    The fixed columns of ``small`` must lie in the span of those of ``large``; every
    random unit of ``small`` (a correlated block, or one column of an independent one)
    must lie in the span of one unit of ``large`` with the same grouping of the rows,
    so that ``large``'s covariance can reproduce ``small``'s (a correlated unit holds any
    covariance of its span; a single column only its own variance). A residual
    correlation structure of ``small`` must be ``large``'s; independent residuals are the
    special case ``phi = 0`` of any structure.
    """
    _rows_needed([small, large], "checking that one model is nested in another",
                  "pass check_nested=False to anova() if you know they are (lme4 does not "
                  "check)")  # fmt: skip
    if not _in_span(small.X, large.X):
        return False
    if small.residual is not None and (
        large.residual is None
        or large.residual.structure != small.residual.structure
        or not np.array_equal(large.residual.codes, small.residual.codes)
    ):
        return False
    large_units = _units(large)
    for key, Z in _units(small):
        if not any(k == key and _in_span(Z, Zl) for k, Zl in large_units):
            return False
    return True


def random_dimensions(design: Design) -> int:
    """Random-effect columns per level, summed over blocks (the variances a model has)."""
    return sum(block.n_terms for block in design.blocks)


def check_same_rows(designs: Sequence[Design], names: Sequence[str]) -> None:
    """Raise unless every design uses the same rows of the same data."""
    first = designs[0]
    for design, name in zip(designs[1:], names[1:], strict=True):
        problem = None
        if design.n_obs != first.n_obs:
            problem = f"{design.n_obs} rows against {first.n_obs}"
        elif not same_response(design, first):
            problem = "a different response"
        elif design.rows_in_memory and first.rows_in_memory:
            shared = [c for c in design.frame.columns if c in first.frame.columns]
            differ = [c for c in shared if not design.frame[c].equals(first.frame[c])]
            if differ:
                problem = f"different values of column(s) {differ}"
        if problem:
            raise ComparisonError(
                f"models {names[0]!r} and {name!r} were not fitted to the same rows "
                f"({problem}); fit every model to the same data (rows dropped for missing "
                "values count)"
            )


@dataclass
class LikelihoodRatioTable:
    """The result of :func:`anova` or :func:`ranova`.

    Attributes
    ----------
    table
        One row per model (lme4's and lmerTest's columns, plus
        ``"Pr(>Chisq) boundary"``).
    fits
        The fits the rows were computed from (ML refits where ``anova`` refitted).
    nulls
        Per row, the null distribution of the corrected p-value (see
        :func:`chibar_pvalue`).
    criterion
        ``"ML"`` or ``"REML"``: the likelihood compared.
    heading
        What was compared, printed above the table.
    """

    table: pd.DataFrame
    fits: list[LmerResult] = field(repr=False)
    nulls: list[str]
    criterion: str
    heading: str

    def __str__(self) -> str:
        notes = [f"  {name}: {null}" for name, null in zip(self.table.index, self.nulls,
                                                            strict=True) if null]  # fmt: skip
        shown = self.table.astype({"Df": float})  # an empty cell, not <NA>, in the first row
        text = shown.to_string(float_format=lambda v: f"{v:.6g}", na_rep="")
        tail = "\nNull distributions of the boundary-corrected p:\n" + "\n".join(notes)
        return f"{self.heading}\n{text}" + (tail if notes else "")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return f"<p>{self.heading}</p>" + self.table.to_html(float_format=lambda v: f"{v:.6g}")


def anova(
    *fits: LmerResult | GlmerResult,
    refit: bool = True,
    names: Sequence[str] | None = None,
    check_nested: bool = True,
) -> LikelihoodRatioTable:
    """Likelihood-ratio tests of nested ``lmer`` fits, as lme4's ``anova(m0, m1, ...)``.

    Parameters
    ----------
    *fits
        Two or more :class:`~bayeslmm.LmerResult` of the same rows, or two or more
        :class:`~bayeslmm.GlmerResult` of the same family and ``nAGQ`` (ML fits: ``refit``
        does not apply).
    refit
        Refit REML fits by maximum likelihood first (lme4's default). With ``False`` the
        REML likelihoods are compared, which is valid only when every model has the
        same fixed effects (else :class:`~bayeslmm.ComparisonError`).
    names
        Row names (default: the formulas, numbered ``m1: ...`` when two are the same).
    check_nested
        Raise unless each model is nested in the next larger one (the test assumes it);
        ``False`` tabulates anyway, as lme4 does (the boundary p is then left empty). Fits
        of a Dask DataFrame cannot be checked (it takes their rows): pass ``False``.

    Returns
    -------
    LikelihoodRatioTable
        Rows ordered by number of parameters: ``npar``, ``AIC``, ``BIC``, ``logLik``,
        ``deviance``, and against the row above ``Chisq = 2 max(0, diff(logLik))``,
        ``Df``, ``Pr(>Chisq)`` and ``Pr(>Chisq) boundary`` (see the module text).
    """
    if len(fits) < 2:
        raise ComparisonError(f"anova() needs at least two fits to compare, got {len(fits)}")
    for i, fit in enumerate(fits):
        if not isinstance(fit, LmerResult | GlmerResult):
            raise ComparisonError(f"anova() compares bl.lmer or bl.glmer fits; argument {i + 1} "
                                  f"is a {type(fit).__name__}")  # fmt: skip
    # a family without the negative binomial's theta: glmer.nb fits compare as lme4's anova
    kinds = {(type(f), getattr(getattr(f, "family", None), "base", ""), getattr(f, "nagq", 0))
             for f in fits}  # fmt: skip
    if len(kinds) > 1:
        raise ComparisonError("anova() compares fits of one kind: all bl.lmer, or all bl.glmer "
                              "of the same family and nAGQ (their likelihoods differ otherwise)")
    if len({getattr(f, "se_column", None) for f in fits}) > 1:
        raise ComparisonError("anova() compares fits with the same known standard errors "
                              "(se=) or none: their likelihoods differ otherwise")
    check_bool("refit", refit)
    check_bool("check_nested", check_nested)
    if names is not None and (isinstance(names, str) or not isinstance(names, Sequence)
                              or len(names) != len(fits)
                              or not all(isinstance(n, str) for n in names)):
        raise ArgumentError(f"names must be a list of {len(fits)} strings (one per fit), "
                            f"got {names!r}")  # fmt: skip
    labels = [getattr(fit, "formula", fit.design.spec.formula) for fit in fits] \
        if names is None else list(names)  # fmt: skip
    if names is None and len(set(labels)) < len(labels):  # the same formula twice
        labels = [f"m{i + 1}: {label}" for i, label in enumerate(labels)]
    if len(labels) != len(fits) or len(set(labels)) != len(labels):
        raise ComparisonError(f"names must be {len(fits)} distinct labels, got {labels}")
    check_same_rows([fit.design for fit in fits], labels)
    if refit:
        fits = tuple(_refit(f, f.design.spec, reml=False) if f.reml else f for f in fits)
        criterion = "ML"
    else:
        kinds = {f.reml for f in fits}
        if len(kinds) > 1:
            raise ComparisonError("refit=False needs all fits by REML or all by ML")
        criterion = "REML" if kinds.pop() else "ML"
        if criterion == "REML":
            _rows_needed([f.design for f in fits], "refit=False", "use refit=True")
            X0 = fits[0].design.X
            for fit, label in zip(fits[1:], labels[1:], strict=True):
                X = fit.design.X
                if not (_in_span(X, X0) and _in_span(X0, X)):
                    raise ComparisonError(
                        f"REML likelihoods of models with different fixed effects are not "
                        f"comparable ({labels[0]!r} and {label!r}); use refit=True"
                    )
    order = sorted(range(len(fits)), key=lambda i: fits[i].n_params)
    fits = [fits[i] for i in order]
    labels = [labels[i] for i in order]
    rows, nulls = [], [""]
    for i, fit in enumerate(fits):
        row = {"npar": fit.n_params, "AIC": fit.aic, "BIC": fit.bic, "logLik": fit.loglik,
               "deviance": -2.0 * fit.loglik}  # fmt: skip
        if i:
            prev = fits[i - 1]
            in_memory = prev.design.rows_in_memory and fit.design.rows_in_memory
            nested = is_nested(prev.design, fit.design) if check_nested or in_memory else False
            if check_nested and not nested:
                raise ComparisonError(
                    f"{labels[i - 1]!r} is not nested in {labels[i]!r}: a likelihood-ratio "
                    "test needs the smaller model to be a special case of the larger one "
                    "(compare AIC/BIC instead, or pass check_nested=False)"
                )
            chisq = 2.0 * max(0.0, fit.loglik - prev.loglik)
            df = fit.n_params - prev.n_params
            extra = random_dimensions(fit.design) - random_dimensions(prev.design)
            p = float(scipy.stats.chi2.sf(chisq, df)) if df > 0 else np.nan
            p_boundary, null = chibar_pvalue(chisq, df, extra) if nested else (np.nan, "")
            row.update({"Chisq": chisq, "Df": df, "Pr(>Chisq)": p,
                        "Pr(>Chisq) boundary": p_boundary})  # fmt: skip
            nulls.append(null)
        rows.append(row)
    table = pd.DataFrame(rows, index=pd.Index(labels, name="model")).reindex(columns=ANOVA_COLUMNS)
    table["Df"] = table["Df"].astype("Int64")
    heading = f"Likelihood-ratio tests ({criterion} fits)"
    return LikelihoodRatioTable(table, fits, nulls, criterion, heading)


def ranova(fit: LmerResult, reduce_terms: bool = True) -> LikelihoodRatioTable:
    """Single-term deletions of random terms, as lmerTest's ``ranova``.

    Parameters
    ----------
    fit
        A :class:`~bayeslmm.LmerResult`; the reduced models are fitted with its
        criterion (REML or ML) to the rows it used.
    reduce_terms
        ``True`` (lmerTest's default): each term of a random term's expression is
        removed in turn (``(1 + x | g)`` -> ``(1 | g)``; ``(1 | g)`` removed; ``(1 + x
        || g)`` as lme4 reads it, ``(1 | g) + (0 + x | g)``). ``False``: each random
        term is dropped whole. A model left without random terms is the linear model.

    Returns
    -------
    LikelihoodRatioTable
        First row ``<none>`` (the fit), then one row per reduction named as lmerTest
        names it (``"Days in (Days | Subject)"``): ``npar``, ``logLik``, ``AIC``, ``LRT =
        2 max(0, logLik(fit) - logLik(reduced))``, ``Df``, ``Pr(>Chisq)`` and
        ``Pr(>Chisq) boundary``.
    """
    if not isinstance(fit, LmerResult):
        raise ComparisonError(f"ranova() takes a bl.lmer fit, got {type(fit).__name__}")
    check_bool("reduce_terms", reduce_terms)
    reductions = single_term_deletions(fit.design.spec, reduce_terms=reduce_terms)
    rows = [{"npar": fit.n_params, "logLik": fit.loglik, "AIC": fit.aic}]
    fits, nulls, labels = [fit], [""], ["<none>"]
    for reduction in reductions:
        small = _refit(fit, reduction.spec, reml=fit.reml)
        lrt = 2.0 * max(0.0, fit.loglik - small.loglik)
        df = fit.n_params - small.n_params
        extra = random_dimensions(fit.design) - random_dimensions(small.design)
        p_boundary, null = chibar_pvalue(lrt, df, extra)
        rows.append({"npar": small.n_params, "logLik": small.loglik, "AIC": small.aic,
                     "LRT": lrt, "Df": df, "Pr(>Chisq)": float(scipy.stats.chi2.sf(lrt, df)),
                     "Pr(>Chisq) boundary": p_boundary})  # fmt: skip
        fits.append(small)
        nulls.append(null)
        labels.append(reduction.label)
    table = pd.DataFrame(rows, index=pd.Index(labels, name="term")).reindex(columns=RANOVA_COLUMNS)
    table["Df"] = table["Df"].astype("Int64")
    criterion = "REML" if fit.reml else "ML"
    heading = (f"Random-effect terms removed one at a time ({criterion} likelihood-ratio "
               f"tests), model {fit.design.spec.formula}")  # fmt: skip
    return LikelihoodRatioTable(table, fits, nulls, criterion, heading)
