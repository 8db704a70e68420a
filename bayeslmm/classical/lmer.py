"""REML and ML fits of the same formulas, as lme4 does them: ``bl.lmer``.

The profiled criterion (:mod:`bayeslmm.gaussian.profiled`) is minimised over theta with
bounded quasi-Newton steps; fixed effects, sigma and the conditional modes follow from
the penalised least-squares solution at the optimum. With a residual correlation
structure (``residual=bl.AR1(...)`` or ``bl.CompoundSymmetry(...)``, as nlme's ``lme`` and
``gls``) the criterion of :mod:`bayeslmm.gaussian.residual` is minimised jointly over
theta and the correlation parameter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.stats

from ..errors import (
    ArgumentError,
    DataError,
    FormulaError,
    SingularFitWarning,
    check_probability,
    deprecated,
    interval_level,
    warn,
)
from ..gaussian.partition import VarianceParts, icc_kinds, variance_parts
from ..gaussian.profiled import (
    BlockedProfile,
    ProfiledFit,
    ThetaLayout,
    blocked_system,
    covariance_deviance,
    profiled,
)
from ..gaussian.residual import ResidualModel, ResidualProfile
from ..gaussian.statistics import SUMMARIES, BlockedStats, CrossProducts, random_effects_matrix
from ..spec.design import Design, Rows
from ..spec.grid import reference_grid
from ..spec.known_se import known_se_design, refuse_gaussian_weights
from ..spec.naming import ParameterNames
from ..spec.residual import ResidualStructure, non_nested_factors
from ..spec.reuse import design_from
from .summary import (
    LmerSummary,
    RenamedSeries,
    block_varcorr_rows,
    coefficient_frames,
    effects_by_block,
    format_lmer_summary,
    frames_by_group,
    random_parameter_rows,
    wald_table,
)

SINGULAR_TOL = 1e-4


@dataclass(init=False, repr=False)
class LmerResult:
    """A REML or ML fit: estimates, their uncertainty and the conditional modes.

    Accessors as lme4's (and :class:`~bayeslmm.LMM`'s): :meth:`fixef`, :meth:`ranef`,
    :meth:`varcorr`, :meth:`coef`, :meth:`fitted`, :meth:`residuals`, :meth:`summary`;
    ``print(fit)`` shows lmerTest's summary. ``solution`` is the penalised least-squares
    solution at the optimum (beta, b, sigma, criterion). With a residual correlation
    structure, ``residual`` holds its weights and ``phi`` the estimate of its parameter
    (AR(1)'s ``phi`` or compound symmetry's ``rho``); ``cross_products`` are then the
    ``R(phi)^-1``-weighted ones. With known standard errors (``bl.lmer(..., se="col")``),
    ``known_se`` holds them row by row and ``se_column`` names their column: the residual
    SD is not estimated, ``cross_products`` are those of the rows divided by their
    standard errors, and ``theta`` is the random effects' own covariance factor.
    """

    design: Design
    reml: bool
    theta: np.ndarray
    solution: ProfiledFit
    layout: ThetaLayout
    cross_products: CrossProducts
    converged: bool = True
    residual: ResidualModel | None = None
    phi: float | None = None
    known_se: np.ndarray | None = None
    se_column: str | None = None
    extra_sigma: bool = False

    def __init__(
        self,
        design: Design,
        reml: bool,
        theta: np.ndarray,
        solution: ProfiledFit | None = None,
        layout: ThetaLayout | None = None,
        cross_products: CrossProducts | None = None,
        converged: bool = True,
        residual: ResidualModel | None = None,
        phi: float | None = None,
        *,
        fit: ProfiledFit | None = None,
        known_se: np.ndarray | None = None,
        se_column: str | None = None,
        extra_sigma: bool = False,
    ):
        if fit is not None:  # the field's old name (also what dataclasses.replace(r, fit=) gives)
            deprecated("LmerResult(fit=...)", "LmerResult(solution=...)")
            solution = fit
        if solution is None or layout is None or cross_products is None:
            raise ArgumentError("LmerResult needs the solution, layout and cross_products")
        self.design, self.reml, self.theta = design, reml, theta
        self.solution, self.layout, self.cross_products = solution, layout, cross_products
        self.converged, self.residual, self.phi = converged, residual, phi
        self.known_se, self.se_column, self.extra_sigma = known_se, se_column, extra_sigma

    def _shown(self) -> list[int]:
        """The random blocks shown as groups: all but the observation-level block of an
        extra residual SD (the design's last; reported as ``sigma``)."""
        return list(range(len(self.design.blocks) - int(self.extra_sigma)))

    @property
    def extra_sd(self) -> float | None:
        """The extra residual SD beyond the known standard errors (``extra_sigma=True``),
        else None."""
        return float(np.sqrt(self.covariances()[-1][0, 0])) if self.extra_sigma else None

    def _drop_extra(self, frames: dict) -> dict:
        """Per-group frames without the extra residual SD's observation-level factor."""
        if self.extra_sigma:
            frames.pop(self.design.blocks[-1].group, None)
        return frames

    def _refuse_known_se(self, what: str) -> None:
        """An :class:`ArgumentError` for what needs an estimated residual variance."""
        if self.known_se is not None:
            raise ArgumentError(
                f"{what} is not available for a fit with known standard errors "
                f"(se={self.se_column!r}): the residual variance is given row by row, not "
                "estimated, so fixed-effect tests are Wald z-tests (summary(), "
                "coefficients(), confint()) and there is no single residual variance"
            )

    def __repr__(self) -> str:
        """lmerTest's ``summary()`` block (:meth:`summary`)."""
        return repr(self.summary())

    __str__ = __repr__

    @property
    def fit(self) -> ProfiledFit:
        """Deprecated old name of :attr:`solution` (warns)."""
        deprecated("LmerResult.fit", "LmerResult.solution")
        return self.solution

    @property
    def residual_structure(self) -> ResidualStructure | None:
        """The residual correlation structure given (None: independent residuals); in words
        by ``fit.design.residual.describe()``."""
        return self.design.residual.structure if self.design.residual is not None else None

    @property
    def sigma(self) -> float:
        return self.solution.sigma

    def _estimates(self) -> pd.Series:
        return pd.Series(self.solution.beta, index=self.design.fixed_names, name="estimate")

    def _fixef(self, level: float = 0.95) -> pd.DataFrame:
        """Fixed effects: ``estimate``, ``se`` and the Wald interval ``lower``, ``upper``
        at ``level`` (lme4's ``fixef`` with ``confint(method="Wald")``); the rows of
        ``LMM.fixef()``. Satterthwaite df, t and p: :meth:`summary`."""
        return wald_table(self._estimates(), self.se, interval_level(level))

    @property
    def fixef(self) -> RenamedSeries:
        """Fixed effects, called as a method: ``fit.fixef(level=0.95)`` gives a DataFrame
        (``estimate``, ``se``, Wald ``lower``, ``upper``), rows as ``LMM.fixef()``.

        Used without the call (``fit.fixef["Days"]``), the old Series of estimates (this
        spelling is deprecated: it warns once; use ``fit.fixef()["estimate"]``)."""
        return RenamedSeries.of(self._estimates(), self._fixef,
                                "LmerResult.fixef used as a Series",
                                "LmerResult.fixef()['estimate']")  # fmt: skip

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance of the fixed effects: sigma^2 (R_X' R_X)^-1."""
        rx_inv = np.linalg.inv(self.solution.RX)
        names = self.design.fixed_names
        return pd.DataFrame(self.sigma**2 * rx_inv @ rx_inv.T, index=names, columns=names)

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov)), index=self.design.fixed_names, name="se")

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """lmerTest's ``summary()``: a DataFrame whose printed form (``repr``, what
        ``print(fit)`` also shows) is lmerTest's block (criterion, AIC, BIC, logLik,
        scaled residuals, random effects, numbers of observations and levels, fixed
        effects with Satterthwaite df, t and p, their correlation).

        Rows as ``LMM.summary()``: random-effect SDs and correlations, ``sigma``, the
        residual correlation parameter if any, fixed effects; columns ``component``,
        ``estimate``, ``se``, ``df``, ``t``, ``p`` and the Satterthwaite t interval
        ``lower``, ``upper`` at ``level`` (fixed effects only; NaN for the variance
        parameters).
        """
        level = interval_level(level)
        names = ParameterNames.from_design(self.design)
        rows = random_parameter_rows(self.design, self.covariances(), self._shown())
        if self.known_se is None:
            rows.append(("sigma", "residual", self.sigma))
        elif self.extra_sigma:  # the residual SD beyond the known standard errors
            rows.append(("sigma", "residual", self.extra_sd))
        if names.residual:
            rows.append((names.residual, "residual", float(self.phi)))
        variance = pd.DataFrame({"component": [r[1] for r in rows],
                                 "estimate": [r[2] for r in rows]},
                                index=[r[0] for r in rows])  # fmt: skip
        fixed = satterthwaite(self) if self.known_se is None else _wald_z(self)
        crit = scipy.stats.t.ppf(0.5 + level / 2, fixed["df"].to_numpy())
        fixed["lower"] = fixed["estimate"] - crit * fixed["se"]
        fixed["upper"] = fixed["estimate"] + crit * fixed["se"]
        fixed.insert(0, "component", "fixed")
        table = pd.concat([variance, fixed]) if len(fixed) else variance
        table = table.reindex(columns=["component", "estimate", "se", "df", "t", "p",
                                       "lower", "upper"])  # fmt: skip
        out = LmerSummary(table)
        out.text = format_lmer_summary(self, table)
        return out

    @property
    def n_params(self) -> int:
        sigma = self.known_se is None
        return len(self.solution.beta) + len(self.theta) + sigma + (self.phi is not None)

    @property
    def loglik(self) -> float:
        """Log-likelihood (the REML log-likelihood for REML fits, as lme4's ``logLik``)."""
        return -0.5 * self.solution.deviance

    @property
    def criterion(self) -> float:
        """REML criterion (REML) or deviance (ML), -2 log-likelihood."""
        return self.solution.deviance

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + np.log(self.design.n_obs) * self.n_params

    @property
    def singular(self) -> bool:
        """As lme4's ``isSingular``: a bounded theta component within 1e-4 of 0."""
        bounded = np.isfinite(self.layout.lower_bounds())
        return bool(np.any(self.theta[bounded] < SINGULAR_TOL))

    def covariances(self) -> list[np.ndarray]:
        """Per random block, the covariance matrix sigma^2 T T'."""
        return [self.sigma**2 * T @ T.T for T in self.layout.factors(self.theta)]

    def varcorr(self) -> pd.DataFrame:
        """Variance components in lme4's ``as.data.frame(VarCorr())`` layout; a residual
        correlation structure adds the row ``("Residual", "phi")`` (or ``"rho"``) whose
        ``sdcor`` is the correlation parameter."""
        shown, covs = self._shown(), self.covariances()
        rows = block_varcorr_rows([self.design.blocks[k] for k in shown],
                                  [covs[k] for k in shown])  # fmt: skip
        if self.known_se is None:
            rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        elif self.extra_sigma:
            rows.append(("Residual", None, None, self.extra_sd**2, self.extra_sd))
        if self.phi is not None:
            rows.append(("Residual", self.design.residual.parameter, None, np.nan, self.phi))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    def variance_parts(self) -> VarianceParts:
        """Fixed, random (per grouping factor) and residual variance at the estimates, as
        ``insight::get_variance`` (:mod:`bayeslmm.gaussian.partition`)."""
        self._refuse_known_se("variance_parts() (and icc(), r2())")
        return variance_parts(self.design, self.solution.beta, self.covariances(), self.sigma)

    def icc(self) -> pd.DataFrame:
        """Intraclass correlations of Nakagawa & Schielzeth, as ``performance::icc``.

        Rows: every grouping factor (its variance over random + residual variance; with
        random slopes its mean variance over the rows, so the rows add up to the adjusted
        ICC), ``adjusted`` (random / (random + residual)) and ``conditional`` (random / (fixed
        + random + residual)); columns ``component`` (``group`` or ``total``) and
        ``estimate``. A singular fit gets its values too (performance gives NA there).
        """
        if not self.design.blocks:
            raise ArgumentError(f"{self.design.spec.formula!r} has no random effects, so no "
                                "intraclass correlation")  # fmt: skip
        values = self.variance_parts().icc()
        return pd.DataFrame({"component": icc_kinds(self.design),
                             "estimate": [float(v) for v in values.values()]},
                            index=list(values))  # fmt: skip

    def r2(self) -> pd.DataFrame:
        """Marginal (fixed effects) and conditional (fixed + random) R2 of Nakagawa &
        Schielzeth, as ``performance::r2_nakagawa``: column ``estimate``."""
        values = self.variance_parts().r2()
        return pd.DataFrame({"estimate": [float(v) for v in values.values()]},
                            index=list(values))  # fmt: skip

    def ranef(self, condvar: bool = False, level: float = 0.95) -> dict[str, pd.DataFrame]:
        """Conditional modes (BLUPs), lme4's ``ranef``: per grouping factor, levels x
        terms. ``condvar=True`` (lme4's ``condVar``): per grouping factor one row per
        (level, term) with ``estimate``, conditional SD ``se`` and the normal interval
        ``lower``, ``upper`` at ``level``, the layout of ``LMM.ranef()``."""
        if not isinstance(condvar, bool | np.bool_):
            raise ArgumentError(f"condvar must be True or False, got {condvar!r}")
        if condvar:
            table = self.ranef_table(level).rename(columns={"cond_sd": "se"})
            out = {}
            for group in self._drop_extra(self.design.groups()):
                part = table.loc[table["group"] == group].drop(columns="group")
                out[group] = part.set_index(["level", "term"])
            return out
        return self._drop_extra(frames_by_group(self.design.blocks, self._effects()))

    def coef(self) -> dict[str, pd.DataFrame]:
        """lme4's ``coef``: per grouping factor, levels x coefficients, the fixed effects
        plus the level's conditional modes (every fixed effect a column, then random
        terms absent from the fixed part), as ``LMM.coef()``."""
        return coefficient_frames(self.design.blocks, self._drop_extra(self.design.groups()),
                                  self._estimates(), self._effects())  # fmt: skip

    def ranef_sd(self) -> dict[str, pd.DataFrame]:
        """Conditional SDs of the BLUPs (lme4's ``condVar``), laid out as :meth:`ranef`."""
        covs = self.solution.conditional_covariance_blocks(self.layout.sizes, self.layout.levels)
        return self._drop_extra(frames_by_group(
            self.design.blocks, [np.sqrt(np.diagonal(c, axis1=1, axis2=2)) for c in covs]))

    def ranef_table(self, level: float = 0.95) -> pd.DataFrame:
        """Long table of BLUPs: group, level, term, estimate, cond_sd and a normal interval."""
        check_probability("level", level)
        z = scipy.stats.norm.ppf(0.5 + level / 2)
        sds = self.ranef_sd()
        frames = []
        for group, est in self.ranef().items():
            long = est.stack().rename("estimate").to_frame()
            long["cond_sd"] = sds[group].stack()
            long.index.names = ["level", "term"]
            long = long.reset_index()
            long.insert(0, "group", group)
            frames.append(long)
        table = pd.concat(frames, ignore_index=True)
        table["lower"] = table["estimate"] - z * table["cond_sd"]
        table["upper"] = table["estimate"] + z * table["cond_sd"]
        return table

    def _effects(self) -> list[np.ndarray]:
        """Per block, the conditional modes as (levels, terms)."""
        return effects_by_block(self.design.blocks, self.solution.b)

    def fitted(self):
        """Conditional fitted values X beta + Z b (one per row used in the fit).

        For a fit of a Dask DataFrame: a lazy Dask Series (one value per row kept, indexed
        by the rows' labels); ``.compute()`` it, or write it out, on the cluster.
        """
        if not self.design.rows_in_memory:
            return self.design.map_rows(
                partial(_fitted_rows, self.solution.beta, self._effects()), "fitted"
            )
        b = self.solution.b
        if self.extra_sigma:  # the extra residual is no part of the fitted values
            b = b.copy()
            b[len(b) - self.design.n_obs :] = 0.0
        z_b = random_effects_matrix(self.design) @ b
        return self.design.X @ self.solution.beta + z_b

    def residuals(self):
        """Conditional residuals y - X beta - Z b (a lazy Dask Series for a Dask DataFrame's
        fit, as :meth:`fitted`)."""
        if not self.design.rows_in_memory:
            return self.design.map_rows(
                partial(_residual_rows, self.solution.beta, self._effects()), "residual"
            )
        return self.design.y - self.fitted()

    @property
    def df_resid(self) -> int:
        """n - p, the residual degrees of freedom statsmodels reports for MixedLM."""
        return self.design.n_obs - len(self.solution.beta)

    @property
    def rmse(self) -> float:
        """sqrt(SSR / df_resid) of the conditional residuals (for a Dask DataFrame's fit, one
        pass over its rows, kept)."""
        if not self.design.rows_in_memory:
            if getattr(self, "_ssr", None) is None:
                self._ssr = float((self.residuals() ** 2).sum().compute())
            ssr = self._ssr
        else:
            ssr = float(np.sum(self.residuals() ** 2))
        return float(np.sqrt(ssr / self.df_resid))

    def confint(self, level: float = 0.95, method: str = "wald") -> pd.DataFrame:
        """Confidence intervals of the fixed effects.

        ``method="wald"`` uses the normal quantile (lme4's ``confint(method="Wald")``);
        ``"satterthwaite"`` uses t quantiles with Satterthwaite df (lmerTest).
        """
        check_probability("level", level)
        if method == "wald":
            crit = np.full(len(self.solution.beta), scipy.stats.norm.ppf(0.5 + level / 2))
        elif method == "satterthwaite":
            self._refuse_known_se("confint(method='satterthwaite')")
            crit = scipy.stats.t.ppf(0.5 + level / 2, satterthwaite(self)["df"].to_numpy())
        else:
            raise ArgumentError(f"method must be 'wald' or 'satterthwaite', got {method!r}")
        est, se = self._estimates(), self.se
        return pd.DataFrame({"lower": est - crit * se, "upper": est + crit * se})

    def marginal_means(self, specs: str | list[str], level: float = 0.95) -> pd.DataFrame:
        """Marginal means of the factor(s) ``specs`` as emmeans computes them on an lmer
        fit with ``lmer.df = "satterthwaite"``: the reference grid (every factor of the
        fixed part at each level, numeric covariates at their means, averaged with equal
        weights over the factors not in ``specs``), one row per cell (the first spec
        varying fastest) with ``estimate``, ``se``, Satterthwaite ``df`` and the t
        interval ``lower``, ``upper`` at ``level``."""
        if (isinstance(level, bool) or not isinstance(level, int | float)
                or not 0 < level < 1):  # fmt: skip
            raise ArgumentError(f"level must be a number between 0 and 1, got {level!r}")
        grid = reference_grid(self.design, specs)
        estimate = grid.L @ self.solution.beta
        if self.known_se is None:
            se, df = contrast_satterthwaite(self, grid.L)
        else:  # Wald: the residual variance is known
            se = np.sqrt(np.einsum("ij,jk,ik->i", grid.L, self.vcov.to_numpy(), grid.L))
            df = np.full(len(se), np.inf)
        crit = scipy.stats.t.ppf(0.5 + level / 2, df)
        stats = pd.DataFrame({"estimate": estimate, "se": se, "df": df,
                              "lower": estimate - crit * se, "upper": estimate + crit * se})
        return pd.concat([grid.cells, stats], axis=1)

    def coefficients(self, information: str = "expected") -> pd.DataFrame:
        """Fixed effects with SE, Wald z and its two-sided p-value.

        ``information="expected"`` uses lme4's ``vcov`` (given theta);
        ``"observed"`` the full observed information of :func:`observed_vcov`
        (statsmodels' ``MixedLM`` SEs, the tutorial's table).
        """
        est = self._estimates()
        if information == "expected":
            se = self.se
        elif information == "observed":
            self._refuse_known_se("coefficients(information='observed')")
            with np.errstate(invalid="ignore"):  # not positive at a singular optimum: NaN
                se = pd.Series(np.sqrt(np.diag(observed_vcov(self))), index=est.index, name="se")
        else:
            raise ArgumentError(
                f"information must be 'expected' or 'observed', got {information!r}"
            )
        z = est / se
        return pd.DataFrame(
            {"estimate": est, "se": se, "z": z, "p_z": 2 * scipy.stats.norm.sf(np.abs(z))}
        )


def _fitted_rows(beta: np.ndarray, effects: list[np.ndarray], rows: Rows) -> np.ndarray:
    mu = rows.X @ beta
    for Z, codes, b in zip(rows.Z, rows.codes, effects, strict=True):
        mu = mu + np.einsum("nq,nq->n", Z, b[codes])
    return mu


def _residual_rows(beta: np.ndarray, effects: list[np.ndarray], rows: Rows) -> np.ndarray:
    return rows.y - _fitted_rows(beta, effects, rows)


def _varpar_deviance(varpar: np.ndarray, cp: CrossProducts, layout: ThetaLayout, reml: bool):
    """-2 log-likelihood at (theta, sigma) with beta profiled, and sigma^2 (R_X'R_X)^-1."""
    theta, sigma = varpar[:-1], varpar[-1]
    fit = profiled(theta, cp, layout, reml, conditional=False)
    dof = cp.n - cp.p if reml else cp.n
    dev = fit.logdet_L + dof * np.log(2 * np.pi * sigma**2) + fit.r2 / sigma**2
    if reml:
        dev += fit.logdet_RX
    rx_inv = np.linalg.inv(fit.RX)
    return dev, sigma**2 * rx_inv @ rx_inv.T


def _varpar_function(result: LmerResult):
    """``x -> (deviance, vcov of beta)`` over the variance parameters ``x = (theta, [phi],
    sigma)`` (phi: the residual correlation parameter, if any)."""
    cp, layout, reml, k = result.cross_products, result.layout, result.reml, len(result.theta)
    if result.residual is None:
        return lambda x: _varpar_deviance(x, cp, layout, reml)
    model = result.residual

    def deviance(x: np.ndarray) -> tuple[float, np.ndarray]:
        phi = float(x[k])
        if not model.weights.in_bounds(phi):
            return np.inf, np.full((cp.p, cp.p), np.nan)
        dev, vcov = _varpar_deviance(np.delete(x, k), model.cross_products(phi), layout, reml)
        return dev + float(model.logdet(phi)), vcov

    return deviance


def _variance_parameters(result: LmerResult) -> np.ndarray:
    """``(theta, [phi], sigma)`` of a fit."""
    phi = [] if result.phi is None else [result.phi]
    return np.concatenate([result.theta, phi, [result.sigma]])


def _steps(x: np.ndarray) -> np.ndarray:
    """Finite-difference steps in (theta, sigma): large enough that the deviance's rounding
    (about 1e-13 of thousands) does not swamp second differences, refined by Richardson."""
    return 1e-3 * np.maximum(np.abs(x), 1e-2)


def _richardson(estimate, h: np.ndarray):
    """One Richardson step, ``(4 D(h/2) - D(h)) / 3``, for a central-difference estimate
    ``D`` (error O(h^4) instead of O(h^2)), as numDeriv, which lmerTest uses, does."""
    return (4.0 * estimate(h / 2.0) - estimate(h)) / 3.0


def _hessian(f, x0: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Central finite-difference Hessian of a scalar function."""
    k = len(x0)
    steps = np.eye(k) * h
    hess = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ei, ej = steps[i], steps[j]
            val = f(x0 + ei + ej) - f(x0 + ei - ej) - f(x0 - ei + ej) + f(x0 - ei - ej)
            hess[i, j] = hess[j, i] = val / (4 * h[i] * h[j])
    return hess


def observed_vcov(result: LmerResult) -> pd.DataFrame:
    """Fixed-effects covariance from the full observed information, as statsmodels reports.

    Inverts the Hessian of -log-likelihood (REML criterion for REML fits) jointly in
    (beta, the packed relative covariances Psi_k = T_k T_k', sigma^2 and, with a residual
    structure, its correlation parameter), so the
    uncertainty of the variance parameters feeds back into the SEs. This is the
    covariance behind ``statsmodels`` ``MixedLM`` Wald tests; it equals
    :attr:`LmerResult.vcov` asymptotically but differs in small samples and at
    singular fits. lme4's ``vcov`` (conditional on theta) is :attr:`LmerResult.vcov`.
    """
    result._refuse_known_se("observed_vcov()")
    cp, layout, p = result.cross_products, result.layout, len(result.solution.beta)
    tril = [np.tril_indices(q) for q in layout.sizes]
    psi0 = [T @ T.T for T in layout.factors(result.theta)]

    def unpack(x: np.ndarray) -> list[np.ndarray]:
        out, k = [], p
        for (rows, cols), q, corr in zip(tril, layout.sizes, layout.correlated, strict=True):
            P = np.zeros((q, q))
            if corr:
                P[rows, cols] = x[k : k + len(rows)]
                P[cols, rows] = x[k : k + len(rows)]
                k += len(rows)
            else:
                P[np.arange(q), np.arange(q)] = x[k : k + q]
                k += q
            out.append(P)
        return out

    packed = [P[r, c] if corr else np.diag(P)
              for P, (r, c), corr in zip(psi0, tril, layout.correlated, strict=True)]  # fmt: skip
    x0 = np.concatenate([result.solution.beta, *packed, [result.sigma**2]])
    model = result.residual
    if model is not None:
        x0 = np.append(x0, result.phi)

    def dev(x: np.ndarray) -> float:
        if model is None:
            return covariance_deviance(x[:p], unpack(x), x[-1], cp, layout, result.reml)
        phi = float(x[-1])
        if not model.weights.in_bounds(phi):
            return np.inf
        return covariance_deviance(x[:p], unpack(x), x[-2], model.cross_products(phi), layout,
                                   result.reml) + float(model.logdet(phi))  # fmt: skip

    # steps large enough that rounding in the criterion does not swamp small curvatures
    h = 1e-3 * np.maximum(np.abs(x0), 1e-2)
    if model is not None:  # stay inside the correlation's interval
        lo, hi = model.bounds
        h[-1] = min(h[-1], 0.25 * (result.phi - lo), 0.25 * (hi - result.phi))
    cov = 2.0 * np.linalg.pinv(_hessian(dev, x0, h))
    names = result.design.fixed_names
    return pd.DataFrame(cov[:p, :p], index=names, columns=names)


def satterthwaite(result: LmerResult) -> pd.DataFrame:
    """Satterthwaite degrees of freedom, t and p-values of each fixed effect (lmerTest).

    ``df_j = 2 V_jj^2 / (g_j' A g_j)``, with ``V`` the covariance of the fixed effects
    as a function of the variance parameters (theta, sigma; and the residual correlation
    parameter where the model has one), ``g_j`` the gradient of ``V_jj`` and ``A = 2
    H^-1`` from the Hessian ``H`` of the deviance in those parameters. Derivatives are
    central finite differences.
    """
    if not isinstance(result, LmerResult):
        raise ArgumentError(f"satterthwaite() needs a bl.lmer() fit, got {type(result).__name__}")
    se, df = contrast_satterthwaite(result, np.eye(len(result.solution.beta)))
    t = result.solution.beta / se
    return pd.DataFrame(
        {"estimate": result.solution.beta, "se": se, "df": df, "t": t,
         "p": 2 * scipy.stats.t.sf(np.abs(t), df)},
        index=result.design.fixed_names,
    )  # fmt: skip


def _wald_z(result: LmerResult) -> pd.DataFrame:
    """Wald z-tests of the fixed effects (df infinite), as metafor's ``rma`` with known
    standard errors: the rows of :func:`satterthwaite`."""
    beta, se = result.solution.beta, result.se.to_numpy()
    z = beta / se
    return pd.DataFrame({"estimate": beta, "se": se, "df": np.inf, "t": z,
                         "p": 2 * scipy.stats.norm.sf(np.abs(z))},
                        index=result.design.fixed_names)  # fmt: skip


def contrast_satterthwaite(result: LmerResult, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standard error and Satterthwaite df of each linear combination ``L @ beta`` (rows of
    ``L``, (m, p)): ``df = 2 (l' V l)^2 / (g' A g)`` with ``g`` the gradient of ``l' V l``
    in the variance parameters (as lmerTest's ``contest1D`` and emmeans' ``lmer.df =
    "satterthwaite"``); see :func:`satterthwaite`."""
    result._refuse_known_se("Satterthwaite's degrees of freedom")
    varpar = _varpar_function(result)
    x0 = _variance_parameters(result)
    h = _steps(x0)
    if result.phi is not None:  # stay inside (lower, upper)
        lo, hi = result.residual.bounds
        k_phi = len(result.theta)
        h[k_phi] = min(h[k_phi], 0.25 * (result.phi - lo), 0.25 * (hi - result.phi))
    k = len(x0)

    def dev(x: np.ndarray) -> float:
        return varpar(x)[0]

    def vcov_at(x: np.ndarray) -> np.ndarray:
        return varpar(x)[1]

    def jacobian(step: np.ndarray) -> np.ndarray:  # d vcov / d varpar, (k, p, p)
        eye = np.eye(k)
        return np.stack([(vcov_at(x0 + eye[i] * step[i]) - vcov_at(x0 - eye[i] * step[i]))
                         / (2 * step[i]) for i in range(k)])  # fmt: skip

    cov_varpar = 2.0 * np.linalg.pinv(_richardson(lambda s: _hessian(dev, x0, s), h))
    grads = _richardson(jacobian, h)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    var = np.einsum("mp,pq,mq->m", L, result.vcov.to_numpy(), L)
    g = np.einsum("mp,kpq,mq->mk", L, grads, L)  # (m, k)
    denom = np.einsum("mk,kl,ml->m", g, cov_varpar, g)
    return np.sqrt(var), 2.0 * var**2 / denom


#: Below this many theta components a derivative-free polish follows an unsettled fit.
POLISH_MAX = 12
NEWTON_STEPS = 10  # Newton steps that finish the quasi-Newton search
AT_BOUND = 1e-6  # a bounded theta component this close to 0 stays there


def _newton_polish(profile: BlockedProfile, layout: ThetaLayout, reml: bool,
                   theta: np.ndarray) -> np.ndarray:  # fmt: skip
    """Newton steps on the exact gradient (its Hessian by central differences of it) over the
    components off their bound, while they lower the criterion and the gradient.

    L-BFGS-B stops when the criterion's relative change falls under its tolerance, so
    theta is found to ~1e-7 along flat directions; Newton's quadratic convergence takes it
    to where the gradient vanishes to rounding, so that statistics equal to rounding (a
    Dask DataFrame's, added up in another order) give the same estimates to ~1e-10.
    """
    lower = layout.lower_bounds()
    dev, grad = profile(theta, reml)
    for _ in range(NEWTON_STEPS):
        free = ~(np.isfinite(lower) & (theta - lower < AT_BOUND))
        k = np.flatnonzero(free)
        if not k.size or not np.all(np.isfinite(grad)):
            break
        h = 1e-5 * np.maximum(np.abs(theta[k]), 1e-2)
        H = np.empty((k.size, k.size))
        for col, (j, hj) in enumerate(zip(k, h, strict=True)):
            step = np.zeros_like(theta)
            step[j] = hj
            H[:, col] = (profile(theta + step, reml)[1][k] - profile(theta - step, reml)[1][k]) / (
                2 * hj
            )
        H = 0.5 * (H + H.T)
        try:
            np.linalg.cholesky(H)
            move = np.linalg.solve(H, -grad[k])
        except np.linalg.LinAlgError:
            break
        trial = theta.copy()
        trial[k] += move
        if np.any(trial < lower):
            break
        new_dev, new_grad = profile(trial, reml)
        if not (np.isfinite(new_dev) and new_dev <= dev + 1e-13 * abs(dev)):
            break
        if np.linalg.norm(new_grad[k]) >= np.linalg.norm(grad[k]):
            break
        theta, dev, grad = trial, new_dev, new_grad
        if np.max(np.abs(move) / np.maximum(np.abs(theta[k]), 1.0)) < 1e-13:
            break
    return theta


#: Multiples of lme4's start probed for a (near-)exact fit, whose criterion falls without
#: bound as theta grows (the residual variance shrinks towards 0).
LARGE_THETA = (1e2, 1e4, 1e6)


def _large_theta(layout: ThetaLayout, theta: np.ndarray) -> list[np.ndarray]:
    """Points far out along every bounded (SD-like) direction, from lme4's start and from
    ``theta``: where the fixed and random effects fit the response (almost) exactly, the
    criterion's minimum lies there while a search from the start can stop at theta = 0."""
    start = layout.start()
    return [point for f in LARGE_THETA for point in (f * start, theta + f * start)]


def _probe_restart(objective, search, best, points: list[np.ndarray], rounds: int = 3):
    """Escape a stationary point that is not the minimum: evaluate ``objective`` at
    ``points`` (probes off a bound, across a parameter's interval, far out) and restart
    ``search`` from the lowest while that lowers the criterion beyond rounding. A
    criterion flat to first order at a bound or a symmetric point (the profile even in an
    SD or in an AR(1) phi observed at even gaps only) stops gradient searches there."""
    for _ in range(rounds):
        with np.errstate(all="ignore"):
            values = [objective(x) for x in points]
        tol = 1e-10 * max(1.0, abs(best.fun))
        finite = [(v, x) for v, x in zip(values, points, strict=True) if np.isfinite(v)]
        if not finite:
            break
        value, x = min(finite, key=lambda pair: pair[0])
        if not value < best.fun - tol:
            break
        with np.errstate(all="ignore"):
            restart = search(x)
        if not restart.fun < best.fun - tol:
            break
        best = restart
    return best


def _optimise(profile: BlockedProfile, layout: ThetaLayout, reml: bool) -> tuple[np.ndarray, bool]:
    """Minimise the profiled criterion over theta: L-BFGS-B with its exact gradient (every
    design: the blocked Cholesky of :mod:`bayeslmm.gaussian.blocked`).

    The criterion is even in each SD-like component, so its gradient vanishes where one
    sits on its bound 0, whether or not that is a minimum in it: such components are
    probed away from the bound and the search restarted where that helps (lme4's BOBYQA,
    without derivatives, does not stop there). A singular optimum is often one of several
    local ones (subjects x items with 4 correlated terms per factor, seed 3: 20964.96 from
    lme4's start, 20964.59 from half of it, lme4 20964.82), so the search restarts from half
    the start and from halfway between the start and the optimum, keeping the lowest. A fit
    that still does not settle gets a derivative-free polish when theta is small; last, a
    few Newton steps on the exact gradient (:func:`_newton_polish`).
    """

    def with_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        dev, grad = profile(theta, reml)
        return (dev, grad) if np.isfinite(dev) else (np.inf, np.zeros_like(theta))

    def objective(theta: np.ndarray) -> float:
        return profile(theta, reml)[0]

    lower = layout.lower_bounds()
    bounded = np.flatnonzero(np.isfinite(lower))
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    options = {"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000}

    def search(start: np.ndarray):
        return scipy.optimize.minimize(with_gradient, start, jac=True, method="L-BFGS-B",
                                       bounds=bounds, options=options)  # fmt: skip

    best = search(layout.start())
    for _ in range(len(bounded)):  # escape stationary points on the bounds
        probes = []
        for k in bounded[best.x[bounded] < 1e-4]:
            for step in (0.01, 0.1, 0.5):
                theta = best.x.copy()
                theta[k] = step
                probes.append((objective(theta), theta))
        better = [(value, theta) for value, theta in probes if value < best.fun - 1e-10]
        if not better:
            break
        restart = search(min(better, key=lambda pair: pair[0])[1])
        if restart.fun >= best.fun:
            break
        best = restart
    if np.any(best.x[bounded] < 1e-4):  # singular: other basins, from two more starts
        start = layout.start()
        for point in (0.5 * start, 0.5 * (start + best.x)):
            restart = search(point)
            if restart.fun < best.fun - 1e-10:
                best = restart
    best = _probe_restart(objective, search, best, _large_theta(layout, best.x))

    def stationary(theta: np.ndarray) -> bool:
        value, grad = with_gradient(theta)
        at_bound = np.zeros_like(grad, dtype=bool)
        at_bound[bounded] = theta[bounded] <= lower[bounded] + 1e-10
        projected = np.where(at_bound, np.minimum(grad, 0.0), grad)
        return bool(np.isfinite(value) and np.max(np.abs(projected), initial=0.0) < 1e-3)

    # L-BFGS-B stops on rounding at many optima: judge the gradient before polishing
    converged = bool(best.success) or stationary(best.x)
    if not converged and layout.n_theta <= POLISH_MAX:
        polished = scipy.optimize.minimize(
            objective, best.x, method="Powell", bounds=bounds,
            options={"xtol": 1e-10, "ftol": 1e-14, "maxiter": 20000},
        )  # fmt: skip
        if polished.fun <= best.fun:
            best = polished
            converged = bool(polished.success) or stationary(best.x)
    theta = _newton_polish(profile, layout, reml, np.asarray(best.x, dtype=float))
    return theta, converged


#: Where in its interval the correlation parameter is probed (fractions of the width).
PHI_GRID = np.array([0.05, 0.2, 0.35, 0.45, 0.55, 0.65, 0.8, 0.95])


def _optimise_residual(
    profile: ResidualProfile, layout: ThetaLayout, reml: bool
) -> tuple[np.ndarray, float, bool]:
    """Minimise the criterion jointly over theta and the correlation parameter: L-BFGS-B
    with the exact gradient in theta and a central difference in ``eta``, the parameter
    mapped onto the real line (``phi = lower + (upper - lower) (1 + tanh(eta)) / 2``);
    then, near a bound or where it did not converge, a derivative-free polish. Starts at
    lme4's theta and independent residuals (phi = 0). Without random effects, Brent's
    bounded search over the parameter alone."""
    lo, hi = profile.bounds
    k = layout.n_theta
    if k == 0:  # no random effects (nlme's gls): a bounded search in the one parameter
        width = hi - lo

        def criterion(phi: float) -> float:
            return profile(np.zeros(0), phi, reml, grad=False)[0]

        # a grid first: the criterion can have two minima (even in phi at even gaps)
        grid = lo + width * np.concatenate([[1e-9], PHI_GRID, [1 - 1e-9]])
        i = int(np.argmin([criterion(phi) for phi in grid]))
        bracket = (grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)])
        found = scipy.optimize.minimize_scalar(criterion, method="bounded", bounds=bracket,
                                               options={"xatol": 1e-11})  # fmt: skip
        return np.zeros(0), float(found.x), bool(found.success)

    def to_phi(eta: float) -> float:
        return lo + (hi - lo) * 0.5 * (1.0 + np.tanh(eta))

    def value(x: np.ndarray) -> float:
        dev = profile(x[:k], to_phi(x[k]), reml, grad=False)[0]
        return dev if np.isfinite(dev) else np.inf

    def with_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        dev, grad = profile(x[:k], to_phi(x[k]), reml)
        if not np.isfinite(dev):
            return np.inf, np.zeros_like(x)
        h = 1e-6 * max(1.0, abs(x[k]))
        up, down = value(x + h * np.eye(k + 1)[k]), value(x - h * np.eye(k + 1)[k])
        d_eta = (up - down) / (2 * h) if np.isfinite(up) and np.isfinite(down) else 0.0
        return dev, np.append(grad, d_eta)

    def to_eta(phi: float) -> float:
        return float(np.arctanh(2.0 * (phi - lo) / (hi - lo) - 1.0))

    x0 = np.append(layout.start(), to_eta(0.0))
    lower = layout.lower_bounds()
    bounds = [(b if np.isfinite(b) else None, None) for b in lower]
    bounds.append((None, None))

    def search(start: np.ndarray):
        return scipy.optimize.minimize(with_gradient, start, jac=True, method="L-BFGS-B",
                                       bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-8,
                                                               "maxiter": 5000})  # fmt: skip

    def probes(x: np.ndarray) -> list[np.ndarray]:
        """Off the start's phi = 0 (AR(1) at even gaps only is even in phi: flat there),
        across the parameter's interval, off theta's bounds, and far out in theta."""
        out = []
        for q in PHI_GRID:
            point = x.copy()
            point[k] = to_eta(lo + q * (hi - lo))
            out.append(point)
        for j in np.flatnonzero(np.isfinite(lower) & (x[:k] < 1e-4)):
            for step in (0.01, 0.1, 0.5):
                point = x.copy()
                point[j] = step
                out.append(point)
        out += [np.append(t, x[k]) for t in _large_theta(layout, x[:k])]
        return out

    result = _probe_restart(value, search, search(x0), probes(x0))
    result = _probe_restart(value, search, result, probes(result.x))
    near_bound = np.any(result.x[:k][np.isfinite(layout.lower_bounds())] < 1e-2)
    best, converged = result, bool(result.success)
    if not result.success or near_bound or abs(result.x[k]) > 5:
        polished = scipy.optimize.minimize(value, result.x, method="Powell", bounds=bounds,
                                           options={"xtol": 1e-10, "ftol": 1e-15,
                                                    "maxiter": 20000})  # fmt: skip
        if polished.fun <= result.fun:
            best = polished
        converged = bool(result.success or polished.success)
    x = np.asarray(best.x, dtype=float)
    return x[:k], float(to_phi(x[k])), converged


#: A residual SD below this fraction of the residual SD without random effects, at random
#: effects ``FAR`` times the response's scale, is an (almost) exact fit of the response.
EXACT_FIT = 1e-4
FAR = 1e5
#: Residual SDs below this fraction of the response's root mean square are below what sums
#: of squares in float64 resolve (their rounding is ~1.5e-8 of it): an exact fit.
PRECISION = 1e-7


def _far_theta(layout: ThetaLayout, cp: CrossProducts) -> np.ndarray:
    """Diagonal factors making every random term's column ``FAR`` times the residual SD:
    ``FAR / rms(column)``, off-diagonals 0."""
    diag = np.asarray(cp.ZtZ.diagonal(), dtype=float)
    out, start = [], 0
    for q, c, m in zip(layout.sizes, layout.correlated, layout.levels, strict=True):
        rms = np.sqrt(diag[start:start + m * q].reshape(m, q).sum(axis=0) / max(cp.n, 1))
        start += m * q
        T = np.diag(FAR / np.where(rms > 0, rms, 1.0))
        rows, cols = layout._block_indices(q, c)
        out.append(T[rows, cols])
    return np.concatenate(out) if out else np.zeros(0)


def _check_exact_fit(design: Design, cp: CrossProducts, layout: ThetaLayout, reml: bool) -> None:
    """Raise :class:`DataError` where the fixed and random effects fit the response (almost)
    exactly (a noise-free response, or one constant within every group): the criterion
    then falls (almost) without bound as sigma -> 0 and theta -> infinity, so a search stops
    at a wrong optimum or at rounding, and no variance is estimable (lme4 stops near sigma
    = 0 with a convergence warning). Judged from two evaluations: the residual SD with no
    random effects, and with random effects ``FAR`` times larger than the residual."""
    if not layout.n_theta:
        return
    dof = max(cp.n - (cp.p if reml else 0), 1)
    with np.errstate(all="ignore"):
        try:
            without = profiled(np.zeros(layout.n_theta), cp, layout, reml, False).r2
            far = profiled(_far_theta(layout, cp), cp, layout, reml, False).r2
        except np.linalg.LinAlgError:
            return  # judged by the caller's own checks
    scale, sd = np.sqrt(max(without, 0.0) / dof), np.sqrt(max(far, 0.0) / dof)
    rms = float(np.sqrt(max(cp.yty, 0.0) / max(cp.n, 1)))
    if not (np.isfinite(scale) and np.isfinite(sd)) or sd > max(EXACT_FIT * scale,
                                                                PRECISION * rms):  # fmt: skip
        return
    groups = " / ".join(sorted({b.group for b in design.blocks}))
    if scale <= PRECISION * rms:
        raise DataError(
            f"the fixed effects of {design.spec.formula!r} alone fit the response exactly or "
            f"almost (residual SD {scale:.3g}, the response's root mean square {rms:.3g}): "
            "no residual or random-effect variance can be estimated. Check that the response "
            "is not computed from the predictors"
        )
    raise DataError(
        f"the fixed and random effects of {design.spec.formula!r} fit the response exactly or "
        f"almost (residual SD under {sd:.3g} against {scale:.3g} without the random "
        f"effects): the likelihood has no maximum at a positive residual variance, so the "
        f"variances cannot be estimated. Check that the response is not computed from the "
        f"predictors and the grouping factor ({groups}), e.g. constant within every level"
    )


#: Largest ratio of two columns' root mean squares that the cross-products (squares of
#: the columns, solved in float64) keep enough digits for.
MAX_SCALE_RATIO = 1e6


def _check_scales(design: Design, cp: CrossProducts) -> None:
    """Raise :class:`DataError` naming the columns when the fixed-effect and random-effect
    columns differ so much in scale (root mean square) that the cross-products, which square
    them, lose the precision that the Cholesky factorisations need."""
    names = list(design.fixed_names)
    ms = list(np.diag(cp.XtX) / max(cp.n, 1))
    diag, start = np.asarray(cp.ZtZ.diagonal(), dtype=float), 0
    for block in design.blocks:
        m, q = block.n_levels, block.n_terms
        ms += list(diag[start:start + m * q].reshape(m, q).sum(axis=0) / max(cp.n, 1))
        names += [f"{col} | {block.group}" for col in block.columns]
        start += m * q
    rms = np.sqrt(np.maximum(np.asarray(ms, dtype=float), 0.0))
    used = np.flatnonzero(np.isfinite(rms) & (rms > 0))
    if used.size < 2:
        return
    hi, lo = used[np.argmax(rms[used])], used[np.argmin(rms[used])]
    ratio = rms[hi] / rms[lo]
    if ratio <= MAX_SCALE_RATIO:
        return
    raise DataError(
        f"columns on very different scales in {design.spec.formula!r}: {names[hi]!r} (root "
        f"mean square {rms[hi]:.3g}) against {names[lo]!r} ({rms[lo]:.3g}), a ratio of "
        f"{ratio:.2g}; the cross-products lose the digits the fit needs. Rescale the data "
        f"(e.g. divide the column behind {names[hi]!r} by "
        f"{10.0 ** np.floor(np.log10(rms[hi])):.0e}, or standardise it) and refit"
    )


def lmer(
    formula: str | Design,
    data: pd.DataFrame | None = None,
    reml: bool = True,
    residual: ResidualStructure | None = None,
    se: str | None = None,
    weights: str | None = None,
    extra_sigma: bool = False,
) -> LmerResult:
    """Fit a linear mixed model by REML (default) or ML, as ``lme4::lmer``.

    Parameters
    ----------
    formula
        lme4 formula, parsed by the same code as :class:`bayeslmm.LMM`; or a built
        :class:`~bayeslmm.Design` (``bl.build_design(formula, data, residual)``), fitted as
        it is with ``data`` and ``residual`` left out: ``bl.lmer(design)``.
    data
        The data (never modified): a pandas DataFrame, or a Dask DataFrame (e.g.
        ``dd.read_parquet(...)``), whose sufficient statistics are computed partition by
        partition on the active Dask scheduler; the rows are never gathered.
    reml
        ``True`` for REML, ``False`` for maximum likelihood.
    residual
        A residual correlation structure, :class:`~bayeslmm.AR1` or
        :class:`~bayeslmm.CompoundSymmetry`, as nlme's ``correlation=`` argument: ``lme``
        with random terms, ``gls`` without (the formula may then have none). Its groups
        must lie within the levels of every grouping factor, as ``lme`` requires.
    se
        The column of known standard errors (meta-analysis; brms ``y | se(se)``, metafor's
        ``rma(yi, sei = se)``): row ``i``'s residual is ``N(0, se_i^2)`` and no residual SD
        is estimated. The fit divides every row of ``y``, ``X`` and ``Z`` by its standard
        error and maximises the likelihood with the residual SD fixed at 1; fitted values
        and residuals are on the data's scale, fixed effects are tested by Wald z-tests,
        and one row per level of a grouping factor is allowed. lme4's ``weights=`` is a
        different model (residual variance ``sigma^2 / w_i``, sigma estimated) and is
        refused (``weights=`` raises an :class:`ArgumentError` saying so). A bad column
        (missing, not numeric, NaN, infinite, zero, negative) is an error naming it and
        its first offending rows, before any fit.
    weights
        Refused for this Gaussian model, with the reason (see ``se``).
    extra_sigma
        With ``se``: a residual SD beyond the known standard errors is estimated too
        (residual variance ``se_i^2 + sigma^2``; brms ``se(se, sigma = TRUE)``), as an
        observation-level random intercept, reported as ``sigma`` (summary and
        :meth:`LmerResult.varcorr`'s ``Residual`` row; :attr:`LmerResult.extra_sd`), not
        as a group. ``bl.lmer("yi ~ 1", data, se="sei", extra_sigma=True)`` is metafor's
        ``rma(yi, sei = sei)``: its ``sigma^2`` is ``tau^2``.

    Returns
    -------
    LmerResult
        Warns :class:`SingularFitWarning` when the fit is singular.
    """
    if not isinstance(reml, bool | np.bool_):
        raise ArgumentError(f"reml must be True (REML) or False (ML), got {reml!r}")
    refuse_gaussian_weights(weights, "bl.lmer()")
    if extra_sigma and se is None:
        raise ArgumentError("extra_sigma=True is a residual SD beyond known standard errors: "
                            "give se='column' too")  # fmt: skip
    if se is not None:
        return _lmer_known_se(formula, data, reml, residual, se, extra_sigma)
    design = design_from(formula, data, residual, SUMMARIES, "bl.lmer()")
    if not design.blocks and design.residual is None:
        raise FormulaError(
            f"{design.spec.formula!r} has no random term such as (1 | g): lmer fits mixed "
            "models; for fixed effects alone use ordinary least squares, or give a residual "
            "correlation structure (residual=bl.AR1(...) or bl.CompoundSymmetry(...), as "
            "nlme's gls)"
        )
    layout = ThetaLayout.from_design(design)
    if design.residual is not None:
        crossing = non_nested_factors(design.residual, design.blocks)
        if crossing:
            raise DataError(
                f"residual groups of {design.residual.group!r} span several levels of the "
                f"grouping factor(s) {crossing}: bl.lmer needs every residual group within "
                "one level of each grouping factor (as nlme's lme); the Bayesian model "
                "bl.LMM(..., residual=...) fits this with explicit random effects"
            )
        profile = ResidualProfile(design, layout)
        independent = profile.model.cross_products(0.0)
        _check_scales(design, independent)
        _check_exact_fit(design, independent, layout, reml)
        theta, phi, converged = _optimise_residual(profile, layout, reml)
        fit, cp = profile.fit(theta, phi, reml)
        result = LmerResult(design, reml, theta, fit, layout, cp, converged, profile.model, phi)
    else:
        stats = BlockedStats.from_design(design)
        cp = CrossProducts.from_stats(stats, design)
        _check_scales(design, cp)
        _check_exact_fit(design, cp, layout, reml)
        # one blocked system: the optimiser's criterion, then the fit's estimates
        profile = BlockedProfile.of(blocked_system(cp), layout)
        theta, converged = _optimise(profile, layout, reml)
        fit = profiled(theta, cp, layout, reml)
        result = LmerResult(design, reml, theta, fit, layout, cp, converged)
    if not (np.isfinite(result.solution.deviance) and result.sigma > 0):
        raise DataError(
            f"the REML/ML criterion of {design.spec.formula!r} is not finite at the optimum "
            f"(residual SD {result.sigma:.3g}): the response is fitted exactly, or columns "
            "are so badly scaled that the cross-products lost their precision"
        )
    if result.singular:
        warn(
            f"boundary (singular) fit of {'REML' if reml else 'ML'} {design.spec.formula!r}: "
            "a random-effect variance is ~0 or a correlation ~ +/-1; consider a simpler "
            "random-effects structure",
            SingularFitWarning,
        )
    return result


def _lmer_known_se(formula: str | Design, data: pd.DataFrame | None, reml: bool,
                   residual: ResidualStructure | None, column: str,
                   extra_sigma: bool = False) -> LmerResult:  # fmt: skip
    """:func:`lmer` with known standard errors: the REML/ML criterion of the row-scaled
    design with the residual SD fixed at 1 (:func:`bayeslmm.gaussian.blocked.deviance`);
    its log-likelihood is that of the data (``- sum log se_i``, the scaling's Jacobian)."""
    if residual is not None:
        raise ArgumentError("bl.lmer(): se= (known standard errors) and residual= cannot be "
                            "combined")  # fmt: skip
    design, scaled, se = known_se_design(formula, data, column, "bl.lmer()", extra_sigma)
    if not design.blocks:
        raise FormulaError(
            f"{design.spec.formula!r} has no random term such as (1 | study): with known "
            "standard errors and no random effects the model has no variance to estimate "
            "(a fixed-effect meta-analysis is weighted least squares)"
        )
    layout = ThetaLayout.from_design(scaled)
    stats = BlockedStats.from_design(scaled)
    cp = CrossProducts.from_stats(stats, scaled)
    _check_scales(scaled, cp)
    profile = BlockedProfile.of(blocked_system(cp), layout, sigma=1.0)
    theta, converged = _optimise(profile, layout, reml)
    fit = profiled(theta, cp, layout, reml, sigma=1.0)
    fit = dataclasses.replace(fit, deviance=fit.deviance + 2.0 * float(np.sum(np.log(se))))
    result = LmerResult(design, reml, theta, fit, layout, cp, converged, known_se=se,
                        se_column=column, extra_sigma=extra_sigma)  # fmt: skip
    if not np.isfinite(fit.deviance):
        raise DataError(f"the REML/ML criterion of {design.spec.formula!r} with known standard "
                        "errors is not finite at the optimum")  # fmt: skip
    if result.singular:
        warn(
            f"boundary (singular) fit of {'REML' if reml else 'ML'} {design.spec.formula!r} "
            f"with known standard errors ({column!r}): a random-effect variance is ~0 or a "
            "correlation ~ +/-1 (the between-group variance is estimated as zero)",
            SingularFitWarning,
        )
    return result
