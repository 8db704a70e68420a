"""What ``print(bl.lmer(...))`` and ``LmerResult.summary()`` show: lmerTest's ``summary()``.

The block has lme4's layout (criterion, information criteria, scaled residuals, the
random-effects table, numbers of observations and levels, the fixed effects with
Satterthwaite df and p-values, their correlation); :class:`LmerSummary` is the table
behind it, a DataFrame printed as the block. :class:`RenamedSeries` keeps a Series
attribute that became a method working for one release.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.special

from ..errors import deprecated
from ..spec.naming import ParameterNames
from ..tables import SummaryTable

#: Significant digits lme4's ``summary`` prints (``max(3, getOption("digits") - 3)``).
DIGITS = 4
#: lmerTest's smallest printed p-value (``format.pval``'s ``eps``, machine epsilon).
P_EPS = 2.2e-16
#: lme4 prints the correlation of the fixed effects for at most this many of them.
MAX_CORRELATION = 12


def format_column(values: Sequence[float], digits: int = DIGITS) -> list[str]:
    """Numbers printed as R's ``format`` prints a column: every value with at least
    ``digits`` significant digits, all with the same decimals (NaN: empty)."""
    finite = [abs(float(v)) for v in values if math.isfinite(float(v))]
    top = max(finite, default=0.0)
    finite = [v for v in finite if v > 1e-8 * top]  # rounding noise of an exact 0
    decimals = max((digits - 1 - math.floor(math.log10(v)) for v in finite), default=0)
    decimals = min(max(decimals, 0), 10)
    return [f"{float(v):.{decimals}f}" if math.isfinite(float(v)) else "" for v in values]


def format_p(p: float) -> str:
    """A p-value as lmerTest prints it: 3 significant digits, ``< 2e-16`` below that."""
    if not math.isfinite(p):
        return ""
    return "< 2e-16" if p < P_EPS else f"{p:.3g}"


def stars(p: float) -> str:
    """R's significance codes."""
    if not math.isfinite(p):
        return ""
    return next(s for cut, s in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, "."),
                                 (math.inf, " ")) if p < cut)  # fmt: skip


def _table(columns: dict[str, list[str]], index: list[str] | None = None) -> list[str]:
    """Right-aligned text columns (left-aligned row names), as R prints a matrix."""
    names = list(columns)
    width = {n: max([len(n), *(len(v) for v in columns[n])]) for n in names}
    rows = len(next(iter(columns.values()))) if columns else 0
    pad = max((len(i) for i in index), default=0) if index is not None else -1
    lines = [(" " * pad + " " if index is not None else "")
             + " ".join(n.rjust(width[n]) for n in names)]  # fmt: skip
    for r in range(rows):
        head = index[r].ljust(pad) + " " if index is not None else ""
        lines.append(head + " ".join(columns[n][r].rjust(width[n]) for n in names))
    return lines


def format_lmer_summary(result, table: pd.DataFrame) -> str:
    """The printed form of :meth:`LmerResult.summary`, as lmerTest's ``summary()``."""
    design = result.design
    method = "REML" if result.reml else "maximum likelihood"
    known = getattr(result, "known_se", None)
    tests = ("t-tests use Satterthwaite's method" if known is None else
             f"known standard errors ({result.se_column}"
             + (" and an extra residual SD" if result.extra_sigma else "")
             + "), Wald z-tests")  # fmt: skip
    formula = design.spec.formula
    if known is not None and result.extra_sigma:  # less its observation-level term
        formula = formula.rsplit(" + (1 | ", 1)[0]
    lines = [f"Linear mixed model fit by {method}. {tests}",
             f"Formula: {formula}",
             f"   Data: {design.n_obs} observations"
             + (f" ({design.n_dropped} dropped for missing values)" if design.n_dropped
                else ""), ""]  # fmt: skip
    df_resid = design.n_obs - result.n_params
    if result.reml:
        lines.append(f"REML criterion at convergence: {result.criterion:.1f}")
        info = {"AIC": result.aic, "BIC": result.bic, "logLik": result.loglik}
    else:
        info = {"AIC": result.aic, "BIC": result.bic, "logLik": result.loglik,
                "deviance": result.criterion}  # fmt: skip
    cols = {k: [f"{v:.1f}"] for k, v in info.items()} | {"df.resid": [f"{df_resid}"]}
    cols = {k: [v[0].rjust(8)] for k, v in cols.items()}
    lines += [*_table({k.rjust(8): v for k, v in cols.items()}), ""]
    if design.rows_in_memory:
        scale = result.sigma if known is None else known
        if known is not None and result.extra_sigma:
            scale = np.sqrt(known**2 + result.extra_sd**2)
        resid = np.asarray(result.residuals(), dtype=float) / scale
        q = np.quantile(resid, [0, 0.25, 0.5, 0.75, 1])
        lines += ["Scaled residuals:",
                  *_table(dict(zip(["Min", "1Q", "Median", "3Q", "Max"],
                                   [[v] for v in format_column(q)], strict=True))), ""]  # fmt: skip
    lines += ["Random effects:", *_random_lines(result)]
    if result.phi is not None:
        res = design.residual
        lines.append(f"Residual correlation: {res.describe()}; {res.parameter} = "
                     f"{result.phi:.{DIGITS}g}")  # fmt: skip
    shown = {design.blocks[k].group for k in result._shown()} if known is not None else None
    groups = "; ".join(f"{g}, {len(lv)}" for g, lv in design.groups().items()
                       if shown is None or g in shown)  # fmt: skip
    lines.append(f"Number of obs: {design.n_obs}" + (f", groups:  {groups}" if groups else ""))
    fixed = table.loc[table["component"] == "fixed"]
    if len(fixed):
        p = fixed["p"].to_numpy(dtype=float)
        cols = {"Estimate": format_column(fixed["estimate"]),
                "Std. Error": format_column(fixed["se"]),
                "df": format_column(fixed["df"]), "t value": format_column(fixed["t"]),
                "Pr(>|t|)": [format_p(v) for v in p],
                "": [stars(v).ljust(3) for v in p]}  # fmt: skip
        if known is not None:  # Wald z-tests: no degrees of freedom
            cols = {"z value" if k == "t value" else "Pr(>|z|)" if k == "Pr(>|t|)" else k: v
                    for k, v in cols.items() if k != "df"}  # fmt: skip
        lines += ["", "Fixed effects:", *_table(cols, list(fixed.index)), "---",
                  "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]  # fmt: skip
        if 1 < len(fixed) <= MAX_CORRELATION:
            vcov = result.vcov.to_numpy()
            sd = np.sqrt(np.diag(vcov))
            cor = vcov / np.outer(sd, sd)
            names = list(fixed.index)
            cols = {n: [f"{cor[i, j]:.3f}" if j < i else "" for i in range(1, len(names))]
                    for j, n in enumerate(names[:-1])}  # fmt: skip
            lines += ["", "Correlation of Fixed Effects:", *_table(cols, names[1:])]
    if result.singular:
        lines += ["", "boundary (singular) fit: a random-effect variance is ~0 or a "
                  "correlation ~ +/-1 (lme4's isSingular)"]  # fmt: skip
    if not result.converged:
        lines += ["", "The optimizer did not converge: the estimates may not be the optimum"]
    return "\n".join(lines)


def _random_lines(result) -> list[str]:
    """lme4's random-effects table: Groups, Name, Variance, Std.Dev. and the lower
    triangle of each block's correlation matrix (Corr)."""
    groups, names, variances, sds, corrs = [], [], [], [], []
    known = getattr(result, "known_se", None) is not None
    for k, (block, cov) in enumerate(zip(result.design.blocks, result.covariances(),
                                         strict=True)):  # fmt: skip
        if known and k not in result._shown():
            continue
        sd = np.sqrt(np.diag(cov))
        for i, col in enumerate(block.columns):
            groups.append(block.label if i == 0 else "")
            names.append(col)
            variances.append(cov[i, i])
            sds.append(sd[i])
            with np.errstate(invalid="ignore", divide="ignore"):
                cor = [cov[i, j] / (sd[i] * sd[j]) for j in range(i)] if block.correlated else []
            corrs.append(["NaN" if not np.isfinite(c) else f"{c:.2f}" for c in cor])
    if not known or result.extra_sigma:
        sigma = result.extra_sd if known else result.sigma
        groups.append("Residual")
        names.append("(beyond se)" if known else "")
        variances.append(sigma**2)
        sds.append(sigma)
        corrs.append([])
    width = max((len(c) for row in corrs for c in row), default=0)
    cols = {"Groups": groups, "Name": names, "Variance": format_column(variances),
            "Std.Dev.": format_column(sds)}  # fmt: skip
    if any(corrs):
        cols["Corr"] = [" ".join(c.rjust(width) for c in row) for row in corrs]
    out = [[head, *values] for head, values in cols.items()]
    out = [[v.ljust(max(map(len, column))) for v in column] for column in out]
    return [" " + " ".join(column[r] for column in out).rstrip() for r in range(len(groups) + 1)]


def block_varcorr_rows(blocks, covariances) -> list[tuple]:
    """lme4's ``as.data.frame(VarCorr())`` rows of the random blocks: a variance and SD
    per term, then a covariance and correlation per pair of a correlated block's terms
    (``grp, var1, var2, vcov, sdcor``)."""
    rows = []
    for block, cov in zip(blocks, covariances, strict=True):
        sd = np.sqrt(np.diag(cov))
        for j, col in enumerate(block.columns):
            rows.append((block.label, col, None, cov[j, j], sd[j]))
        if block.correlated:
            for i in range(block.n_terms):
                for j in range(i):
                    denom = sd[i] * sd[j]
                    cor = cov[i, j] / denom if denom > 0 else np.nan
                    rows.append((block.label, block.columns[j], block.columns[i], cov[i, j], cor))
    return rows


def frames_by_group(blocks, per_block: list[np.ndarray]) -> dict[str, pd.DataFrame]:
    """(levels x terms) arrays per random block -> one frame per grouping factor, lme4's
    ``ranef`` layout (two blocks of one factor side by side, a repeated term suffixed with
    its block's label)."""
    out: dict[str, pd.DataFrame] = {}
    for block, values in zip(blocks, per_block, strict=True):
        frame = pd.DataFrame(values, index=block.level_values, columns=block.columns)
        frame.index.name = block.group
        if block.group in out:  # same levels, same order: side by side
            taken = set(out[block.group].columns)
            frame.columns = [f"{c}_{block.label}" if c in taken else c for c in frame.columns]
            out[block.group] = pd.concat([out[block.group], frame], axis=1)
        else:
            out[block.group] = frame
    return out


#: :meth:`LmerResult.summary`'s table: lmerTest's summary block when printed
LmerSummary = SummaryTable


class FormerTextSummary(SummaryTable):
    """:meth:`GlmerResult.summary`'s table, which was its printed text before: used as
    that text through ``in``, ``+``, ``replace`` (``html.escape``) and the methods of str
    that a DataFrame lacks (``splitlines()``, ``strip()``, ``encode()``) it still gives the
    text's answer for one release, with a :class:`FutureWarning` naming
    ``str(fit.summary())``. Where a DataFrame has an answer of its own (``len``, slicing,
    ``==``, ``count``, ``index``) and where a str is required (``"".join``, ``json``) it is
    the table's."""

    _metadata = ["text"]

    def _as_text(self) -> str:
        deprecated("GlmerResult.summary() used as a string", "str(GlmerResult.summary())")
        return self.text

    def __contains__(self, key) -> bool:
        if isinstance(key, str) and key not in self.columns:
            return key in self._as_text()
        return super().__contains__(key)

    def __getattr__(self, name: str):
        if (not name.startswith("_") and hasattr(str, name)
                and not hasattr(pd.DataFrame, name) and name not in self.columns):  # fmt: skip
            return getattr(self._as_text(), name)
        return super().__getattr__(name)

    def __add__(self, other):
        if isinstance(other, str):
            return self._as_text() + other
        return super().__add__(other)

    def __radd__(self, other):
        if isinstance(other, str):
            return other + self._as_text()
        return super().__radd__(other)

    def replace(self, *args, **kwargs):  # str.replace(old, new): html.escape(summary)
        if (len(args) in (2, 3) and not kwargs and all(isinstance(a, str) for a in args[:2])
                and not self.isin([args[0]]).to_numpy().any()):  # fmt: skip
            return self._as_text().replace(*args)
        return super().replace(*args, **kwargs)


def random_parameter_rows(design, covariances: Sequence[np.ndarray],
                          shown: Sequence[int] | None = None) -> list[tuple[str, str, float]]:
    """``(name, "random", value)`` of every random-effect SD and correlation (lme4's
    lower triangle), block by block as ``LMM.summary()`` names them; ``shown``: the
    blocks to include (all by default)."""
    names = ParameterNames.from_design(design)
    rows: list[tuple[str, str, float]] = []
    for k, (block, cov, sd_names, pairs) in enumerate(zip(
            design.blocks, covariances, names.sd, names.cor_pairs, strict=True)):  # fmt: skip
        if shown is not None and k not in shown:
            continue
        sd = np.sqrt(np.diag(cov))
        rows += [(n, "random", v) for n, v in zip(sd_names, sd, strict=True)]
        if block.correlated:
            lower = zip(*np.tril_indices(block.n_terms, k=-1), strict=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                rows += [(n, "random", cov[i, j] / (sd[i] * sd[j]))
                         for (i, j), n in zip(lower, pairs, strict=True)]  # fmt: skip
    return rows


def wald_table(estimates: pd.Series, se: pd.Series, level: float) -> pd.DataFrame:
    """``estimate``, ``se`` and the Wald interval ``lower``, ``upper`` at ``level`` (lme4's
    ``confint(method="Wald")``): the table of ``fixef()`` of lmer and glmer results."""
    z = float(scipy.special.ndtri(0.5 + level / 2))
    return pd.DataFrame({"estimate": estimates, "se": se, "lower": estimates - z * se,
                         "upper": estimates + z * se})  # fmt: skip


def effects_by_block(blocks, b: np.ndarray) -> list[np.ndarray]:
    """The stacked random effects ``b`` (block by block, level-major) as one (levels,
    terms) array per block."""
    sizes = [block.n_levels * block.n_terms for block in blocks]
    pieces = np.split(b, np.cumsum(sizes)[:-1])
    return [piece.reshape(block.n_levels, block.n_terms)
            for piece, block in zip(pieces, blocks, strict=True)]  # fmt: skip


def coefficient_frames(blocks, groups, beta: pd.Series,
                       effects: Sequence[np.ndarray]) -> dict[str, pd.DataFrame]:
    """lme4's ``coef``: per grouping factor in ``groups``, levels x coefficients, the fixed
    effects ``beta`` plus the level's random ``effects`` (per block, levels x terms):
    every fixed effect a column, then random terms absent from the fixed part."""
    out: dict[str, pd.DataFrame] = {}
    for group in groups:
        chosen = [(b, e) for b, e in zip(blocks, effects, strict=True) if b.group == group]
        columns = list(beta.index)
        columns += [c for b, _ in chosen for c in b.columns if c not in columns]
        values = np.zeros((chosen[0][0].n_levels, len(columns)))
        values[:, : len(beta)] = beta.to_numpy()
        for block, level_effects in chosen:
            index = [columns.index(c) for c in block.columns]
            values[:, index] += level_effects
        frame = pd.DataFrame(values, index=chosen[0][0].level_values, columns=columns)
        frame.index.name = group
        out[group] = frame
    return out


#: Series methods and operators that use the values of a :class:`RenamedSeries`.
_VALUE_USES = ("__getitem__", "__iter__", "__len__", "__array__", "__format__", "__contains__",
               "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
               "__truediv__", "__rtruediv__", "__neg__", "__abs__", "__eq__", "__ne__",
               "__lt__", "__le__", "__gt__", "__ge__", "__float__")  # fmt: skip


class RenamedSeries(pd.Series):
    """A Series attribute that became a method, kept one release: calling it is the new
    method (``fit.fixef()``); using it as the old Series (``fit.fixef["Days"]``,
    ``np.asarray(fit.fixef)``, ...) gives the old values and warns once with a
    :class:`FutureWarning` naming the new spelling. Results of operations on it are
    plain Series."""

    _metadata = ["_call", "_old", "_new", "_armed"]

    @property
    def _constructor(self):
        return pd.Series

    @classmethod
    def of(cls, values: pd.Series, call: Callable, old: str, new: str) -> RenamedSeries:
        out = cls(values)
        out._call, out._old, out._new, out._armed = call, old, new, True
        return out

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def _warn(self) -> None:
        if self.__dict__.get("_armed"):
            self.__dict__["_armed"] = False
            deprecated(self._old, self._new)

    def __getattribute__(self, name: str):
        if not name.startswith("_"):
            object.__getattribute__(self, "_warn")()
        return super().__getattribute__(name)


def _value_use(name: str):
    method = getattr(pd.Series, name)

    def use(self, *args, **kwargs):
        self._warn()
        return method(self, *args, **kwargs)

    use.__name__ = name
    return use


for _name in _VALUE_USES:
    if hasattr(pd.Series, _name):
        setattr(RenamedSeries, _name, _value_use(_name))
