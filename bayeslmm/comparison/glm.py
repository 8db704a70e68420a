"""Generalised linear models of the GLMM comparison: statsmodels' GLM, with separation
found before the fit.

Separation
----------
A binomial, Poisson or negative binomial maximum-likelihood estimate does not exist (a
coefficient runs off to +/- infinity, and R's ``glm`` prints a huge number with a huge SE)
when a direction ``d`` of the coefficients makes every fitted probability or mean move
towards the data without any row moving away: ``x_i'd >= 0`` where every trial succeeded,
``x_i'd <= 0`` where none did (or the count is 0) and ``x_i'd = 0`` elsewhere, some row
strictly (complete or quasi-complete separation; Albert & Anderson 1984).
:func:`separation` finds such a direction by the linear program of Konis (2007; R's
``detectseparation``): maximise ``sum_i s_i x_i'd`` under those constraints with
``-1 <= d_j <= 1``. The coefficients with
``d_j != 0`` are infinite; the rows with ``x_i'd != 0`` are fitted exactly in the limit
(probability 0 or 1, mean 0) and carry no information about the rest, so the finite
coefficients' estimates are the GLM of the other rows, as the limit of R's ``glm`` is.
:func:`fit_glm` drops those rows and the columns they leave unidentified, repeats until no
direction is left, and fits the rest; the row of a coefficient that is infinite says so
(``note``) instead of showing a number.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.sparse as sp
import scipy.stats

from ..classical.ols import estimable_columns, independent_columns
from ..errors import ComparisonError, DataError
from ..glmm.negbin import theta_ml
from ..spec.family import Family

#: Rounds of "find a separating direction, drop its rows" before giving up.
MAX_SEPARATION_ROUNDS = 20
#: |x_i'd| (columns scaled to max |x| = 1, |d_j| <= 1) above which a row is separated.
SEPARATION_TOL = 1e-7


@dataclass
class GlmResponse:
    """A GLM's response: ``y`` (0/1, proportion of ``trials``, or counts), ``trials``
    (binomial; 1 otherwise) and ``offset`` per row, and the family."""

    family: Family
    y: np.ndarray
    trials: np.ndarray
    offset: np.ndarray

    def subset(self, rows: np.ndarray) -> GlmResponse:
        return GlmResponse(self.family, self.y[rows], self.trials[rows], self.offset[rows])

    @property
    def successes(self) -> np.ndarray:
        return self.y * self.trials if self.family.binomial else self.y

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows at the low end (no successes, or a zero count) and at the high end (every
        trial a success; never for counts)."""
        if self.family.binomial:
            k = np.round(self.successes)
            return k <= 0, k >= np.round(self.trials)
        return self.y <= 0, np.zeros(len(self.y), bool)


def check_family(family: Family, where: str) -> None:
    """The families whose GLMs statsmodels fits here (binomial, Bernoulli, Poisson,
    negative binomial)."""
    if family.binomial or family.counts:
        return
    raise ComparisonError(f"{where} compares binomial, Bernoulli and Poisson models; the "
                          f"{family} family is not one of them")  # fmt: skip


def _sm_family(family: Family):
    import statsmodels.api as sm  # here: importing it takes 0.4 s that a check does not need

    links = sm.families.links
    link = {"logit": links.Logit, "probit": links.Probit, "cloglog": links.CLogLog,
            "log": links.Log, "identity": links.Identity}[family.link.name]()  # fmt: skip
    if family.binomial:
        return sm.families.Binomial(link=link)
    if family.negative_binomial:
        return sm.families.NegativeBinomial(link=link, alpha=1.0 / family.theta)
    return sm.families.Poisson(link=link)


#: The negative binomial's dispersion is kept within these bounds (above: no
#: overdispersion left, the Poisson limit; as bl.glmer's NB_THETA_MAX).
NB_THETA_BOUNDS = (1e-6, 1e6)


def nb_theta(endog: np.ndarray, X: np.ndarray, offset: np.ndarray, family: Family) -> float:
    """The negative binomial's ``theta`` by maximum likelihood, as MASS's ``glm.nb``: a
    GLM at ``theta`` and ``theta.ml`` at its fitted means in turn, from a Poisson fit's,
    until ``theta`` changes by less than 1e-10 of itself."""
    import statsmodels.api as sm

    from ..spec.family import get_family

    def means(fam: Family) -> np.ndarray:
        model = sm.GLM(endog, X, family=_sm_family(fam), offset=offset)
        with warnings.catch_warnings():  # separation is found and named by the caller
            warnings.filterwarnings("ignore", message=".*[Pp]erfect separation")
            return model.fit(tol=1e-12, maxiter=200).mu

    low, high = NB_THETA_BOUNDS
    mu = means(get_family("poisson", link=family.link.name))
    theta = float(np.clip(theta_ml(endog, mu, limit=200, eps=1e-12), low, high))
    for _ in range(200):
        new = float(np.clip(theta_ml(endog, means(family.with_theta(theta)), limit=200,
                                     eps=1e-12), low, high))  # fmt: skip
        if abs(new - theta) <= 1e-10 * theta:
            return new
        theta = new
    return theta


def separation(X: np.ndarray, resp: GlmResponse) -> tuple[np.ndarray, np.ndarray]:
    """A separating direction of ``X`` for ``resp`` (see the module text), as (the
    direction ``d``, nonzero on the coefficients that are infinite, with their sign; the
    rows fitted exactly in the limit); ``d = 0`` and no rows when the maximum-likelihood
    estimate exists."""
    n, p = X.shape
    none = (np.zeros(p), np.zeros(n, bool))
    low, high = resp.bounds()
    one_sided = low | high
    if p == 0 or not one_sided.any():
        return none
    scale = np.abs(X).max(axis=0)
    Xs = X / np.where(scale > 0, scale, 1.0)
    sign = np.where(high, 1.0, -1.0)[one_sided]
    signed = sign[:, None] * Xs[one_sided]
    equal = Xs[~one_sided]
    result = scipy.optimize.linprog(
        -signed.sum(axis=0), A_ub=sp.csr_matrix(-signed), b_ub=np.zeros(len(signed)),
        A_eq=sp.csr_matrix(equal) if len(equal) else None,
        b_eq=np.zeros(len(equal)) if len(equal) else None,
        bounds=(-1.0, 1.0), method="highs",
    )  # fmt: skip
    if result.status != 0 or -result.fun <= SEPARATION_TOL:
        return none
    d = np.where(np.abs(result.x) > SEPARATION_TOL, result.x, 0.0)
    fitted = Xs @ d
    # a direction bought by the solver's feasibility tolerance is no separation: the rows
    # it separates must stand well clear of its largest violation of the constraints
    wrong_side = -(np.where(high, 1.0, -1.0) * fitted)[one_sided]
    violation = max(np.abs(fitted[~one_sided]).max(initial=0.0), wrong_side.max(initial=0.0))
    rows = one_sided & (np.abs(fitted) > max(SEPARATION_TOL, 1e3 * violation))
    if not rows.any():
        return none
    return d * np.where(scale > 0, 1.0 / np.where(scale > 0, scale, 1.0), 0.0), rows


@dataclass
class GlmFit:
    """A GLM (statsmodels) of the columns of ``X`` that remain identified once separated
    rows are set aside.

    Attributes
    ----------
    names
        Names of every column given.
    kept
        Names of the columns fitted (the others are infinite or not identified).
    infinite
        Columns whose maximum-likelihood estimate is infinite (separation), with the sign
        of their direction.
    n_separated
        Rows fitted exactly in the limit (probability 0 or 1, mean 0), left out of the fit.
    result
        The statsmodels GLM results of the rest (None if nothing was left to fit).
    """

    names: list[str]
    kept: list[str]
    infinite: dict[str, float]
    n_separated: int
    result: Any = field(repr=False)
    n_rows: int = 0
    #: finite columns whose coefficient the rows do not identify (a combination of others)
    unidentified: list[str] = field(default_factory=list)
    #: the negative binomial's dispersion (estimated, or the family's), else None
    theta: float | None = None

    @property
    def params(self) -> pd.Series:
        """Every column's estimate: NaN where infinite or not identified."""
        out = pd.Series(np.nan, index=self.names)
        if self.result is not None:
            out[self.kept] = np.asarray(self.result.params)
        out[list(self.infinite) + self.unidentified] = np.nan
        return out

    @property
    def bse(self) -> pd.Series:
        out = pd.Series(np.nan, index=self.names)
        if self.result is not None:
            out[self.kept] = np.asarray(self.result.bse)
        out[list(self.infinite) + self.unidentified] = np.nan
        return out

    @property
    def converged(self) -> bool:
        return self.result is not None and bool(getattr(self.result, "converged", True))

    def separation_note(self) -> str:
        """What separation did to this fit, in words ('' if none)."""
        if not self.infinite:
            return ""
        shown = ", ".join(f"{k} -> {'+' if v > 0 else '-'}inf"
                          for k, v in list(self.infinite.items())[:6])  # fmt: skip
        more = f" and {len(self.infinite) - 6} more" if len(self.infinite) > 6 else ""
        return (f"separation: {shown}{more} (no finite estimate); the {self.n_separated} "
                "row(s) they fit exactly are left out of the other estimates")  # fmt: skip

    def row(self, term: str, level: float) -> dict[str, Any]:
        """The comparison row of ``term``: Wald z and its interval, or why there is none."""
        notes = [self.separation_note(),
                 f"theta {self.theta:.4g}" if self.theta is not None else ""]  # fmt: skip
        if not self.converged and self.result is not None:
            notes.append("the GLM's IRLS did not converge")
        if term in self.unidentified and term not in self.infinite:
            return {"stat_type": "z", "note": "; ".join(
                [f"not identified: {term!r} is a combination of the other columns"]
                + [n for n in notes if n])}  # fmt: skip
        if term in self.infinite:
            side = "+" if self.infinite[term] > 0 else "-"
            return {
                "stat_type": "z",
                "note": f"{term!r} is not estimable: its maximum-"
                f"likelihood estimate is {side}inf; " + "; ".join(n for n in notes if n),
            }
        if term not in self.kept or term in self.unidentified or self.result is None:
            return {"stat_type": "z", "note": "; ".join(
                [f"not identified: {term!r} is a combination of the other columns"]
                + [n for n in notes if n])}  # fmt: skip
        j = self.kept.index(term)
        est, se = float(np.asarray(self.result.params)[j]), float(np.asarray(self.result.bse)[j])
        z = est / se
        half = scipy.stats.norm.ppf(0.5 + level / 2) * se
        return {
            "estimate": est, "se": se, "statistic": z, "stat_type": "z", "df": np.inf,
            "p_value": float(2 * scipy.stats.norm.sf(abs(z))), "ci_lower": est - half,
            "ci_upper": est + half, "note": "; ".join(n for n in notes if n),
        }  # fmt: skip


def fit_glm(
    X: np.ndarray, names: list[str], resp: GlmResponse, named: list[str] | None = None
) -> GlmFit:
    """The GLM of ``resp`` on ``X`` (see the module text): collinear columns dropped
    (earlier ones kept), separated rows and their infinite coefficients set aside, the
    rest fitted by statsmodels' IRLS to a relative deviance change of 1e-12. ``named``:
    the columns whose own coefficient means something (default: all; the level dummies
    of an over-parametrised coding are left out, as none of them is identified alone)."""
    import statsmodels.api as sm

    X = np.asarray(X, float)
    rows = np.ones(len(X), bool)
    infinite: dict[str, float] = {}
    # columns that no data could identify (absorbed by others) are not separation's doing
    named = list(names) if named is None else named
    absorbed = [n for n, ok in zip(names, estimable_columns(X), strict=True)
                if not ok and n in named]  # fmt: skip
    cols = independent_columns(X) if X.shape[1] else []
    for _ in range(MAX_SEPARATION_ROUNDS):
        if not rows.any() or not cols:
            break
        d, sep_rows = separation(X[rows][:, cols], resp.subset(rows))
        if not sep_rows.any():
            break
        for k in np.flatnonzero(d):
            if names[cols[k]] not in absorbed:
                infinite.setdefault(names[cols[k]], float(np.sign(d[k])))
        rows[np.flatnonzero(rows)[sep_rows]] = False
        # the columns that still span the rest, the infinite ones last (kept only where
        # the finite ones need them to span it; their estimates are not shown)
        cols = sorted(cols, key=lambda c: names[c] in infinite)
        cols = [cols[i] for i in independent_columns(X[rows][:, cols])] if rows.any() else []
    else:
        raise DataError(
            "separation: no finite GLM after "
            f"{MAX_SEPARATION_ROUNDS} rounds of setting separated rows aside"
        )
    kept = [names[c] for c in cols]
    n_sep = int((~rows).sum())
    if not rows.any() or not cols:
        return GlmFit(list(names), [], infinite, n_sep, None, int(rows.sum()),
                      [n for n in names if n not in infinite])  # fmt: skip
    finite = [c for c in range(X.shape[1]) if names[c] not in infinite]
    identified = estimable_columns(X[rows][:, finite])
    unidentified = [names[c] for c, ok in zip(finite, identified, strict=True)
                    if (not ok and names[c] in named) or names[c] in absorbed]  # fmt: skip
    sub = resp.subset(rows)
    Xk = X[rows][:, cols]
    if resp.family.binomial:
        k = sub.successes
        endog = np.column_stack([k, sub.trials - k])
    else:
        endog = sub.y
    family = resp.family
    if family.negative_binomial and family.theta is None:
        family = family.with_theta(nb_theta(endog, Xk, sub.offset, family))
    model = sm.GLM(endog, Xk, family=_sm_family(family), offset=sub.offset)
    with warnings.catch_warnings():  # separation was found and set aside above
        warnings.filterwarnings("ignore", message=".*[Pp]erfect separation")
        result = model.fit(tol=1e-12, maxiter=200)
    return GlmFit(list(names), kept, infinite, n_sep, result, int(rows.sum()), unidentified,
                  family.theta)  # fmt: skip


def _describe_bound(resp: GlmResponse) -> tuple[str, float] | None:
    """Why a level's rows alone have no finite estimate of an intercept: all at the low
    end (-inf) or all at the high end (+inf); None otherwise."""
    low, high = resp.bounds()
    if low.all():
        what = "no successes (every trial a failure)" if resp.family.binomial else \
            "every count 0"  # fmt: skip
        return what, -1.0
    if high.all():
        return "no failures (every trial a success)", 1.0
    return None


@dataclass
class LevelFits:
    """Per level of a grouping factor, a GLM of its rows alone: the estimates (levels x
    columns, NaN where there is none) and, per level, why not (``note``)."""

    estimates: pd.DataFrame
    notes: pd.Series
    kinds: pd.Series  # "", "separated", "not identified", "not converged"


def per_level_glm(
    X: np.ndarray,
    names: list[str],
    resp: GlmResponse,
    codes: np.ndarray,
    index: pd.Index,
    need: str | None = None,
) -> LevelFits:
    """A GLM of ``resp`` on ``X`` within every level (``codes`` into ``index``). A level
    gets no estimates (NaN, and a note saying why) where its rows separate (no successes,
    no failures, every count 0, or a direction of :func:`separation`), where a column
    (``need``: the one column that must be identified; None: every column) does not vary
    apart from the others within it, or where IRLS does not converge. Statsmodels fits one
    level at a time (a loop over the levels)."""
    n_levels = len(index)
    est = np.full((n_levels, len(names)), np.nan)
    notes = np.full(n_levels, "", dtype=object)
    kinds = np.full(n_levels, "", dtype=object)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=n_levels))])
    for j in range(n_levels):
        rows = order[starts[j] : starts[j + 1]]
        sub, Xj = resp.subset(rows), X[rows]
        bound = _describe_bound(sub)
        if bound is not None:
            notes[j], kinds[j] = f"{bound[0]}: its own estimate is {'+' if bound[1] > 0 else '-'}" \
                "inf", "separated"  # fmt: skip
            continue
        cols = independent_columns(Xj)
        wanted = [names.index(need)] if need is not None else list(range(len(names)))
        identified = estimable_columns(Xj)
        missing = [names[c] for c in wanted if not identified[c]]
        if missing:
            notes[j] = (f"not identified: {', '.join(missing)} does not vary apart from the "
                        "other columns within it")  # fmt: skip
            kinds[j] = "not identified"
            continue
        d, sep_rows = separation(Xj[:, cols], sub)
        if sep_rows.any():
            shown = ", ".join(names[cols[k]] for k in np.flatnonzero(d))
            notes[j] = f"separated (quasi-complete): {shown} infinite in its own GLM"
            kinds[j] = "separated"
            continue
        with warnings.catch_warnings():  # a saturated level's scale is 0 / 0
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = fit_glm(Xj[:, cols], [names[c] for c in cols], sub)
        if not fit.converged:
            notes[j], kinds[j] = "its own GLM did not converge", "not converged"
            continue
        values = fit.params.to_numpy()
        if not np.all(np.isfinite(values)):
            notes[j], kinds[j] = "its own GLM has no finite estimate", "not converged"
            continue
        est[j, cols] = values
    return LevelFits(pd.DataFrame(est, index=index, columns=names),
                     pd.Series(notes, index=index), pd.Series(kinds, index=index))  # fmt: skip
