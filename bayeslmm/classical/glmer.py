"""Maximum-likelihood GLMMs as lme4's ``glmer``: ``bl.glmer``.

The deviance of :mod:`bayeslmm.glmm.pirls` (Laplace for ``nAGQ = 1``, adaptive
Gauss-Hermite for ``nAGQ > 1`` with one scalar random effect) is minimised in lme4's two
stages: over theta alone with beta from PIRLS (lme4's ``nAGQ = 0`` step), then over theta
and beta together, from the first stage's optimum. Both stages use bounded quasi-Newton
steps (L-BFGS-B) on the exact gradient of the Laplace deviance where the link is canonical
(logit binomial, log Poisson: :meth:`~bayeslmm.glmm.pirls.GlmmProblem.laplace_gradient`),
else on central-difference gradients of a PIRLS converged to 1e-11 (adaptive quadrature,
probit and cloglog links, the negative binomial), then a Nelder-Mead polish where the
quasi-Newton steps stop without converging. The fixed effects' covariance is, as lme4's
default, twice the inverse of the Hessian of the deviance over (theta, beta) (central
differences of the exact gradient, or lme4's ``deriv12``, step 1e-4), or the PIRLS-based
one where that Hessian is not positive definite.

The negative binomial family (lme4's ``glmer.nb``) estimates its dispersion ``theta`` by
maximum likelihood: from MASS's ``theta.ml`` at a Poisson fit's means, the second stage
optimises the deviance over ``log(theta)`` too (the joint optimum is the optimum of
lme4's profile over ``theta``, which ``glmer.nb`` finds by ``optimize``); the covariance
of beta is then taken at the estimated ``theta``, as lme4's refit there does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.stats

from ..errors import (
    ArgumentError,
    ConvergenceWarning,
    SingularFitWarning,
    check_probability,
    interval_level,
    warn,
)
from ..gaussian.profiled import ThetaLayout
from ..glmm.negbin import theta_ml
from ..glmm.pirls import GlmmProblem, PirlsState
from ..glmm.stage_one import (
    minimise,
    one_blas_thread,
    stage_one_deviance,
    stage_one_gradient,
)
from ..spec.design import Design
from ..spec.family import Family, FamilyError, get_family
from ..spec.response import GlmResponse, glm_design
from .summary import (
    FormerTextSummary,
    RenamedSeries,
    block_varcorr_rows,
    coefficient_frames,
    effects_by_block,
    frames_by_group,
    random_parameter_rows,
    wald_table,
)

SINGULAR_TOL = 1e-4
HESSIAN_STEP = 1e-4  # lme4's deriv12 delta
#: the negative binomial's largest theta: the variance's mu^2 / theta is then below 1e-6
#: of mu for means below 1 (the Poisson limit; underdispersed counts reach it)
NB_THETA_MAX = 1e6


def deriv12(f, x: np.ndarray, lower: np.ndarray, delta: float = HESSIAN_STEP) -> np.ndarray:
    """lme4's ``deriv12`` Hessian: central differences of step ``delta``, shortened at a
    lower bound."""
    nx = len(x)
    fx = f(x)
    xadd = x + delta
    xsub = np.maximum(x - delta, lower)
    ld = x - xsub
    H = np.empty((nx, nx))

    def at(changes):
        z = x.copy()
        for i, v in changes:
            z[i] = v
        return f(z)

    for j in range(nx):
        fadd, fsub = at([(j, xadd[j])]), at([(j, xsub[j])])
        H[j, j] = fadd / delta**2 - 2 * fx / (delta * ld[j]) + fsub / ld[j] ** 2
        for i in range(j):
            H[i, j] = H[j, i] = (
                at([(i, xadd[i]), (j, xadd[j])]) / (delta + delta) ** 2
                - at([(i, xadd[i]), (j, xsub[j])]) / (delta + ld[j]) ** 2
                - at([(i, xsub[i]), (j, xadd[j])]) / (ld[i] + delta) ** 2
                + at([(i, xsub[i]), (j, xsub[j])]) / (ld[i] + ld[j]) ** 2
            )
    return H


@dataclass
class GlmerResult:
    """A maximum-likelihood GLMM fit (``bl.glmer``)."""

    design: Design
    response: GlmResponse
    nagq: int
    theta: np.ndarray
    beta: np.ndarray
    deviance: float  # -2 logLik (Laplace or AGQ, lme4's definition)
    state: PirlsState = field(repr=False)
    layout: ThetaLayout = field(repr=False)
    vcov_beta: np.ndarray = field(repr=False)
    vcov_method: str = "hessian"
    converged: bool = True
    data_name: str | None = None
    _problem: GlmmProblem | None = field(default=None, repr=False)
    #: was the negative binomial's theta estimated (lme4's glmer.nb), not given?
    nb_estimated: bool = False

    @property
    def family(self) -> Family:
        return self.response.family

    @property
    def nb_theta(self) -> float | None:
        """The negative binomial's dispersion (variance ``mu + mu^2 / theta``; lme4's
        ``getME(fit, "glmer.nb.theta")``), None for other families. (``theta`` is the
        random effects' relative covariance parameters, as ``bl.lmer``'s.)"""
        return self.family.theta

    @property
    def formula(self) -> str:
        """The formula as written."""
        return self.response.formula

    @property
    def reml(self) -> bool:
        """Always False: GLMMs are fitted by maximum likelihood."""
        return False

    def _estimates(self) -> pd.Series:
        return pd.Series(self.beta, index=self.design.fixed_names, name="estimate")

    def _fixef(self, level: float = 0.95) -> pd.DataFrame:
        """Fixed effects: ``estimate``, ``se`` and the Wald interval ``lower``, ``upper``
        at ``level`` (lme4's ``fixef`` with ``confint(method="Wald")``); the rows and
        columns of ``bl.lmer(...).fixef()`` and ``LMM.fixef()``."""
        return wald_table(self._estimates(), self.se, interval_level(level))

    @property
    def fixef(self) -> RenamedSeries:
        """Fixed effects, called as a method: ``fit.fixef(level=0.95)`` gives a DataFrame
        (``estimate``, ``se``, Wald ``lower``, ``upper``), as ``bl.lmer``'s.

        Used without the call (``fit.fixef["period2"]``), the old Series of estimates
        (deprecated: it warns once; use ``fit.fixef()["estimate"]``)."""
        return RenamedSeries.of(self._estimates(), self._fixef,
                                "GlmerResult.fixef used as a Series",
                                "GlmerResult.fixef()['estimate']")  # fmt: skip

    def confint(self, level: float = 0.95, method: str = "wald") -> pd.DataFrame:
        """Wald confidence intervals of the fixed effects (lme4's
        ``confint(method="Wald")``): ``lower``, ``upper``."""
        check_probability("level", level)
        if method != "wald":
            raise ArgumentError(f"method must be 'wald' (a glmer fit's intervals), got "
                                f"{method!r}")  # fmt: skip
        return self._fixef(level)[["lower", "upper"]]

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance of the fixed effects (lme4's default: from the Hessian of the
        deviance over theta and beta; ``vcov_method`` says which)."""
        names = self.design.fixed_names
        return pd.DataFrame(self.vcov_beta, index=names, columns=names)

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov_beta)), index=self.design.fixed_names,
                         name="se")  # fmt: skip

    @property
    def vcov_pirls(self) -> pd.DataFrame:
        """Covariance of the fixed effects given theta, from PIRLS's weighted system at
        the modes (lme4's ``vcov(fit, use.hessian = FALSE)``)."""
        names = self.design.fixed_names
        return pd.DataFrame(self._problem.unscaled_vcov(self.state), index=names,
                            columns=names)  # fmt: skip

    def coefficients(self) -> pd.DataFrame:
        """Wald z table: ``Estimate``, ``Std. Error``, ``z value``, ``Pr(>|z|)``."""
        est, se = self.beta, np.sqrt(np.diag(self.vcov_beta))
        z = est / se
        return pd.DataFrame({"Estimate": est, "Std. Error": se, "z value": z,
                             "Pr(>|z|)": 2 * scipy.stats.norm.sf(np.abs(z))},
                            index=self.design.fixed_names)  # fmt: skip

    @property
    def n_params(self) -> int:
        """Fixed effects, covariance parameters, and the negative binomial's theta where
        it was estimated (lme4 counts it for a given theta too)."""
        return len(self.beta) + len(self.theta) + int(self.nb_estimated)

    @property
    def loglik(self) -> float:
        return -0.5 * self.deviance

    @property
    def aic(self) -> float:
        return self.deviance + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return self.deviance + np.log(self.design.n_obs) * self.n_params

    @property
    def df_resid(self) -> int:
        return self.design.n_obs - self.n_params

    @property
    def deviance_residuals_sum(self) -> float:
        """Sum of squared deviance residuals at the conditional modes (what lme4's
        ``deviance()`` returns for a GLMM; not -2 logLik)."""
        fam, r = self.family, self.response
        return float(np.sum(fam.dev_resid(r.y, self.state.mu, r.weights)))

    @property
    def singular(self) -> bool:
        """As lme4's ``isSingular``: a bounded theta component within 1e-4 of 0."""
        bounded = np.isfinite(self.layout.lower_bounds())
        return bool(np.any(self.theta[bounded] < SINGULAR_TOL))

    def covariances(self) -> list[np.ndarray]:
        """Per random block, the covariance matrix T T' (no residual scale)."""
        return [T @ T.T for T in self.layout.factors(self.theta)]

    def varcorr(self) -> pd.DataFrame:
        """Variance components in lme4's ``as.data.frame(VarCorr())`` layout."""
        rows = block_varcorr_rows(self.design.blocks, self.covariances())
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    def _b(self) -> np.ndarray:
        return self.layout.relative_factor(self.theta) @ self.state.u

    def _effects(self) -> list[np.ndarray]:
        """Per block, the conditional modes as (levels, terms)."""
        return effects_by_block(self.design.blocks, self._b())

    def coef(self) -> dict[str, pd.DataFrame]:
        """lme4's ``coef``: per grouping factor, levels x coefficients on the link scale,
        the fixed effects plus the level's conditional modes, as ``bl.lmer``'s."""
        return coefficient_frames(self.design.blocks, self.design.groups(),
                                  self._estimates(), self._effects())  # fmt: skip

    def ranef(self, condvar: bool = False, level: float = 0.95) -> dict[str, pd.DataFrame]:
        """Conditional modes of the random effects: per grouping factor, levels x terms.
        ``condvar=True`` (lme4's ``condVar``): per grouping factor one row per (level,
        term) with ``estimate``, conditional SD ``se`` (:meth:`ranef_sd`) and the normal
        interval ``lower``, ``upper`` at ``level``, as ``bl.lmer``'s."""
        if not isinstance(condvar, bool | np.bool_):
            raise ArgumentError(f"condvar must be True or False, got {condvar!r}")
        modes = frames_by_group(self.design.blocks, self._effects())
        if not condvar:
            return modes
        check_probability("level", level)
        z = scipy.stats.norm.ppf(0.5 + level / 2)
        sds, out = self.ranef_sd(), {}
        for group, est in modes.items():
            table = est.stack().rename("estimate").to_frame()
            table["se"] = sds[group].stack()
            table.index.names = ["level", "term"]
            table["lower"] = table["estimate"] - z * table["se"]
            table["upper"] = table["estimate"] + z * table["se"]
            out[group] = table
        return out

    def ranef_sd(self) -> dict[str, pd.DataFrame]:
        """Conditional SDs of the random effects at the modes (lme4's ``condVar``: the
        square roots of the "postVar" diagonals, from PIRLS's blocked factor), laid out as
        :meth:`ranef`."""
        covs = self._problem.conditional_covariances(self.state)
        return frames_by_group(self.design.blocks,
                               [np.sqrt(np.diagonal(c, axis1=1, axis2=2)) for c in covs])

    def fitted(self, scale: str = "response") -> np.ndarray:
        """Conditional fitted values: ``scale="response"`` (probabilities, rates; lme4's
        ``fitted``) or ``"link"`` (the linear predictor with the offset, lme4's
        ``predict``)."""
        if scale == "response":
            return self.state.mu.copy()
        if scale == "link":
            return self.state.eta.copy()
        raise ArgumentError(f"scale must be 'response' or 'link', got {scale!r}")

    def residuals(self, kind: str = "deviance") -> np.ndarray:
        """``"deviance"`` (lme4's default), ``"pearson"`` or ``"response"`` residuals."""
        fam, r, mu = self.family, self.response, self.state.mu
        if kind == "response":
            return r.y - mu
        if kind == "pearson":
            return (r.y - mu) * np.sqrt(r.weights / fam.variance(mu))
        if kind == "deviance":
            return np.sign(r.y - mu) * np.sqrt(np.maximum(fam.dev_resid(r.y, mu, r.weights), 0))
        raise ArgumentError(f"kind must be 'deviance', 'pearson' or 'response', got {kind!r}")

    # -- printing ----------------------------------------------------------------------
    def summary(self, level: float = 0.95) -> FormerTextSummary:
        """lme4's ``summary()`` of a glmerMod: a DataFrame whose printed form (``repr``,
        ``str``, what ``print(fit)`` also shows) is lme4's block.

        Rows as ``bl.lmer(...).summary()`` and ``LMM.summary()``: random-effect SDs and
        correlations, the negative binomial's ``theta`` where there is one, the fixed
        effects; columns ``component``, ``estimate``, ``se``, Wald ``z`` and ``p`` and
        the Wald interval ``lower``, ``upper`` at ``level`` (fixed effects only)."""
        level = interval_level(level)
        rows = random_parameter_rows(self.design, self.covariances())
        if self.family.negative_binomial:
            rows.append(("theta", "residual", float(self.nb_theta)))  # as LMM.summary()
        variance = pd.DataFrame({"component": [r[1] for r in rows],
                                 "estimate": [r[2] for r in rows]},
                                index=[r[0] for r in rows])  # fmt: skip
        fixed = self._fixef(level)
        fixed[["z", "p"]] = self.coefficients()[["z value", "Pr(>|z|)"]].to_numpy()
        fixed.insert(0, "component", "fixed")
        table = (pd.concat([variance, fixed]) if len(fixed) else variance).reindex(
            columns=["component", "estimate", "se", "z", "p", "lower", "upper"])
        out = FormerTextSummary(table)
        out.text = self._summary_text()
        return out

    def _summary_text(self) -> str:
        """The fit as lme4's ``summary()`` of a glmerMod prints it."""
        method = ("Laplace Approximation" if self.nagq == 1
                  else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {self.nagq}")  # fmt: skip
        lines = ["Generalized linear mixed model fit by maximum likelihood "
                 f"({method}) ['glmerMod']", f" Family: {self.family}",
                 f"Formula: {self.response.formula}"]  # fmt: skip
        if self.data_name:
            lines.append(f"   Data: {self.data_name}")
        lines.append("")
        stats = {"AIC": self.aic, "BIC": self.bic, "logLik": self.loglik,
                 "-2*log(L)": self.deviance, "df.resid": self.df_resid}  # fmt: skip
        cells = [f"{v:.1f}" if k != "df.resid" else str(v) for k, v in stats.items()]
        width = max(max(map(len, stats)), max(map(len, cells))) + 1
        lines.append("".join(k.rjust(width) for k in stats))
        lines.append("".join(c.rjust(width) for c in cells))
        lines += ["", "Random effects:"]
        vc = self.varcorr()
        table = [("Groups", "Name", "Variance", "Std.Dev.", "Corr")]
        last = None
        for row in vc.itertuples(index=False):
            if not pd.isna(row.var2):
                continue
            group = row.grp if row.grp != last else ""
            last = row.grp
            table.append((group, row.var1, f"{row.vcov:.4g}", f"{row.sdcor:.4g}", ""))
        cors = vc[vc["var2"].notna()]
        for row in cors.itertuples(index=False):
            for k, t in enumerate(table):
                if t[1] == row.var2 and k > 0:
                    table[k] = (*t[:4], (t[4] + f" {row.sdcor:.2f}").strip())
        show_cor = len(cors) > 0
        widths = [max(len(t[i]) for t in table) for i in range(5)]
        for t in table:
            cols = t if show_cor else t[:4]
            lines.append(" " + " ".join(c.ljust(w) for c, w in zip(cols, widths, strict=False)))
        groups = ", ".join(f"{g}, {len(levels)}" for g, levels in self.design.groups().items())
        lines += [f"Number of obs: {self.design.n_obs}, groups:  {groups}", ""]
        coef = self.coefficients()
        if coef.empty:  # as lme4 prints a model without fixed effects
            lines.append("No fixed effect coefficients")
        else:
            lines.append("Fixed effects:")
            text = coef.to_string(formatters={
                "Estimate": "{:.5f}".format, "Std. Error": "{:.5f}".format,
                "z value": "{:.3f}".format, "Pr(>|z|)": lambda p: f"{p:.3g}"})  # fmt: skip
            stars = [" ***" if p < 0.001 else " **" if p < 0.01 else " *" if p < 0.05
                     else " ." if p < 0.1 else "" for p in coef["Pr(>|z|)"]]  # fmt: skip
            body = text.splitlines()
            lines.append(body[0])
            lines += [line + s for line, s in zip(body[1:], stars, strict=True)]
            lines.append("---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
        if self.singular:
            lines.append("boundary (singular) fit: see help('isSingular')")
        if not self.converged:
            lines.append("optimizer did not report convergence")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._summary_text()

    __repr__ = __str__


class _Objective:
    """The deviance of (theta, beta), with PIRLS warm-started at the last mode."""

    def __init__(self, problem: GlmmProblem, n_theta: int, nagq: int, design: Design,
                 nb: bool = False):  # fmt: skip
        self.problem, self.n_theta, self.nagq = problem, n_theta, nagq
        self.codes = design.blocks[0].codes if nagq > 1 else None
        self.n_levels = design.blocks[0].n_levels if nagq > 1 else 0
        self.nb = nb  # x ends with log(theta) of the negative binomial
        #: PIRLS starts every evaluation from this mode (node numbering) where set: the
        #: finite-difference Hessian is then of one smooth function
        self.anchor: np.ndarray | None = None

    def state(self, x: np.ndarray) -> PirlsState:
        if self.nb:
            self.problem.family = self.problem.family.with_theta(float(np.exp(x[-1])))
            x = x[:-1]
        return self.problem.pirls(x[: self.n_theta], x[self.n_theta :])

    def value(self, state: PirlsState) -> float:
        if self.nagq > 1:
            return self.problem.agq(state, self.codes, self.n_levels, self.nagq)
        return self.problem.laplace(state)

    def __call__(self, x: np.ndarray) -> float:
        if self.anchor is not None:
            self.problem.pirls_start(self.anchor)
        try:
            return self.value(self.state(np.asarray(x, float)))
        except (ArithmeticError, np.linalg.LinAlgError, RuntimeError, FamilyError):
            return np.inf

    @property
    def exact(self) -> bool:
        """Has the deviance an exact gradient (Laplace, canonical link, theta of the
        negative binomial not searched)?"""
        return self.nagq == 1 and not self.nb and self.problem.canonical

    def gradient(self, x: np.ndarray) -> tuple[float, np.ndarray] | None:
        """The deviance and its exact gradient over (theta, beta) (:attr:`exact` only);
        None where PIRLS fails."""
        if self.anchor is not None:
            self.problem.pirls_start(self.anchor)
        try:
            state = self.state(np.asarray(x, float))
            g_theta, g_beta = self.problem.laplace_gradient(state, self.n_theta, joint=False)
        except (ArithmeticError, np.linalg.LinAlgError, RuntimeError, FamilyError):
            return None
        return self.value(state), np.concatenate([g_theta, g_beta])


def glmer(
    formula: str,
    data: pd.DataFrame,
    family: str | Family | tuple,
    nAGQ: int = 1,  # noqa: N803 (lme4's name)
    weights: str | np.ndarray | None = None,
    offset: str | np.ndarray | None = None,
    theta: float | None = None,
) -> GlmerResult:
    """Fit a generalised linear mixed model by maximum likelihood, as ``lme4::glmer``.

    Parameters
    ----------
    formula
        lme4 formula: the response may be ``cbind(successes, failures)`` (binomial), and
        ``offset(expr)`` terms may be added (``offset(log(exposure))``).
    data
        A pandas DataFrame (never modified).
    family
        ``"binomial"`` (logit link, or ``binomial(link = "probit")``/``"cloglog"``),
        ``"bernoulli"``, ``"poisson"`` (log link) or ``"negative_binomial"`` (``"nb"``; log
        link; its theta estimated by ML as ``lme4::glmer.nb``, or fixed by
        ``("negative_binomial", theta)``/``theta=``); or a
        :class:`~bayeslmm.spec.family.Family`.
    nAGQ
        1: Laplace approximation; > 1: adaptive Gauss-Hermite quadrature with this many
        nodes (one scalar random effect only, as lme4).
    weights
        Trials of a proportion response (binomial), a column name or array.
    offset
        An offset on the linear predictor, a column name or array.
    theta
        The negative binomial's dispersion (> 0; variance ``mu + mu^2 / theta``), fixed
        at this value (MASS's ``negative.binomial(theta)``); None estimates it.

    Returns
    -------
    GlmerResult
        The negative binomial's theta is ``result.nb_theta`` (and printed as the family,
        ``Negative Binomial(theta)``). Warns :class:`~bayeslmm.SingularFitWarning` when the
        fit is singular.
    """
    if isinstance(nAGQ, bool) or not isinstance(nAGQ, int | np.integer) or not 1 <= nAGQ <= 100:
        raise ArgumentError(f"nAGQ must be an integer from 1 to 100, got {nAGQ!r}")
    nagq = int(nAGQ)
    family = get_family(family, theta=theta)
    with one_blas_thread():
        return _glmer(formula, data, family, nagq, weights, offset)


def _glmer(formula, data, family, nagq: int, weights, offset) -> GlmerResult:
    design, response = glm_design(formula, data, family, weights=weights, offset=offset)
    fam = response.family
    estimate_nb = fam.negative_binomial and fam.theta is None
    if fam.name == "gaussian":
        raise ArgumentError("glmer with the gaussian family is a linear mixed model: use "
                            "bl.lmer (REML/ML), as lme4's glmer does")  # fmt: skip
    if not design.blocks:
        raise ArgumentError(f"{formula!r} has no random term such as (1 | g): glmer fits mixed "
                            "models")  # fmt: skip
    if nagq > 1 and (len(design.blocks) != 1 or design.blocks[0].n_terms != 1):
        raise ArgumentError(f"nAGQ = {nagq} (adaptive Gauss-Hermite quadrature) needs a single "
                            "scalar random effect such as (1 | g), as lme4; use nAGQ = 1 "
                            "(Laplace)")  # fmt: skip
    if estimate_nb and nagq > 1:
        raise ArgumentError(
            f"nAGQ = {nagq} with the negative binomial's theta estimated: lme4's adaptive "
            "Gauss-Hermite deviance leaves out the saturated likelihood, which depends on "
            "theta, so it cannot estimate theta (lme4's glmer.nb drifts to nonsense there); "
            "use nAGQ = 1 (Laplace), or give theta= to fit at a fixed theta"
        )
    layout = ThetaLayout.from_design(design)
    problem = GlmmProblem(design.X, [(b.Z, b.codes, b.n_levels) for b in design.blocks],
                          layout.factors, fam, response.y, response.weights,
                          response.offset)  # fmt: skip
    lower_theta = layout.lower_bounds()
    n_theta = len(lower_theta)
    if estimate_nb:  # glmer.nb's start: MASS's theta.ml at a Poisson fit's means
        problem.family = get_family("poisson", link=fam.link.name)
        poisson_theta, _ = minimise(lambda t: stage_one_deviance(problem, t), layout.start(),
                                    lower_theta, fg=stage_one_gradient(problem, n_theta))
        mu = problem.pirls(poisson_theta).mu
        problem.family = fam.with_theta(theta_ml(response.y, mu, response.weights))

    theta0, ok1 = minimise(lambda t: stage_one_deviance(problem, t), layout.start(), lower_theta,
                           fg=stage_one_gradient(problem, n_theta))  # fmt: skip
    beta0 = problem.pirls(theta0).beta
    p = len(beta0)
    lower = np.concatenate([lower_theta, np.full(p + estimate_nb, -np.inf)])
    # beta in units of its standard errors at the start: beta = beta0 + C z (C C' = the
    # PIRLS covariance), so that quasi-Newton steps are on one scale
    C = np.linalg.cholesky(problem.unscaled_vcov(problem.pirls(theta0, beta0)))
    # the negative binomial's log(theta) last, when it is estimated
    nb0 = [np.log(problem.family.theta)] if estimate_nb else []
    search = _Objective(problem, n_theta, nagq, design, nb=estimate_nb)

    def unscale(xz: np.ndarray) -> np.ndarray:
        return np.concatenate([xz[:n_theta], beta0 + C @ xz[n_theta : n_theta + p],
                               xz[n_theta + p :]])  # fmt: skip

    upper = np.full(len(lower), np.inf)
    if estimate_nb:
        upper[-1] = np.log(NB_THETA_MAX)
        nb0 = [min(nb0[0], upper[-1])]
    fg2 = None
    if nagq == 1 and not estimate_nb and problem.canonical:  # the exact gradient

        def fg2(xz):
            g = search.gradient(unscale(xz))
            if g is None:
                return np.inf, np.zeros(len(xz))
            value, grad = g
            return value, np.concatenate([grad[:n_theta], C.T @ grad[n_theta:]])

    xz, ok2 = minimise(lambda xz: search(unscale(xz)),
                       np.concatenate([theta0, np.zeros(p), nb0]), lower, upper,
                       fg=fg2)  # fmt: skip
    if estimate_nb:  # the deviance flattens toward the Poisson limit: is the limit lower?
        limit = xz.copy()
        limit[-1] = upper[-1]
        if search(unscale(limit)) < search(unscale(xz)):
            xz, ok2 = minimise(lambda xz: search(unscale(xz)), limit, lower, upper)
    x = unscale(xz)
    if estimate_nb:  # from here on at the estimated theta
        problem.family = fam.with_theta(float(np.exp(x[-1])))
        if x[-1] >= upper[-1] - 1e-3:
            warn(f"the negative binomial's theta of {formula!r} reached its limit "
                 f"{NB_THETA_MAX:g}: the counts show no overdispersion, the Poisson family "
                 "fits them (bl.glmer(..., family='poisson'))", ConvergenceWarning)  # fmt: skip
        response = replace(response, family=problem.family)
        x, lower = x[:-1], lower[:-1]
    objective = _Objective(problem, n_theta, nagq, design)
    state = objective.state(x)
    deviance = objective.value(state)
    theta, beta = x[:n_theta], x[n_theta:]
    vcov_beta, method = _vcov(objective, x, lower, n_theta, problem, state)
    problem.pirls(theta, beta)  # leave the warm start at the optimum
    result = GlmerResult(design, response, nagq, theta, beta, deviance, state, layout,
                         vcov_beta, method, ok1 and ok2, _problem=problem,
                         nb_estimated=estimate_nb)  # fmt: skip
    if not np.isfinite(deviance):
        raise ArithmeticError(f"the deviance of {formula!r} is not finite at the optimum")
    if not result.converged:
        warn(f"the optimiser did not report convergence for {formula!r}", ConvergenceWarning)
    if result.singular:
        warn(f"boundary (singular) fit of {formula!r}: a random-effect variance is ~0 or a "
             "correlation ~ +/-1; consider a simpler random-effects structure",
             SingularFitWarning)  # fmt: skip
    return result


def gradient_hessian(gradient, x: np.ndarray, lower: np.ndarray,
                     delta: float = HESSIAN_STEP) -> np.ndarray:  # fmt: skip
    """The Hessian as central differences of an exact gradient (step ``delta``, one-sided
    at a lower bound), symmetrised: ``2 len(x)`` gradients instead of deriv12's
    ``2 len(x)^2 + 1`` deviances."""
    H = np.empty((len(x), len(x)))
    for j in range(len(x)):
        up, down = x.copy(), x.copy()
        up[j] += delta
        down[j] = max(x[j] - delta, lower[j])
        g_up, g_down = gradient(up), gradient(down) if down[j] < x[j] else gradient(x)
        H[:, j] = (g_up - g_down) / (up[j] - down[j])
    return (H + H.T) / 2.0


def _vcov(objective, x, lower, n_theta, problem, state) -> tuple[np.ndarray, str]:
    """lme4's default covariance of beta: 2 H^-1 of the deviance's Hessian over (theta,
    beta), beta block (central differences of the exact gradient where there is one,
    else lme4's ``deriv12``, PIRLS started at the optimum's mode at every evaluation);
    PIRLS's ``unsc`` where H is not usable."""
    objective.anchor = problem.pirls_start()
    try:
        if objective.exact:

            def gradient(z):
                out = objective.gradient(z)
                return np.full(len(z), np.nan) if out is None else out[1]

            H = gradient_hessian(gradient, x, lower)
        else:
            H = deriv12(objective, x, lower)
    finally:
        problem.pirls_start(objective.anchor)
        objective.anchor = None
    try:
        inv = np.linalg.inv(H)
        V = inv[n_theta:, n_theta:]
        V = V + V.T
        if V.size == 0 or (np.all(np.isfinite(V)) and np.linalg.eigvalsh(V).min() > 0):
            return V, "hessian"
    except np.linalg.LinAlgError:
        pass
    return problem.unscaled_vcov(state), "pirls"
