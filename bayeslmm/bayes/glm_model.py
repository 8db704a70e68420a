"""Bayesian generalised linear mixed models: ``bl.LMM(formula, data, family="binomial")``.

:class:`~bayeslmm.bayes.model.GLMM` (``class GLMM(GlmMixin, LMM)``, in
:mod:`bayeslmm.bayes.model`, which imports this module: no cycle) is the
:class:`~bayeslmm.bayes.model.LMM` that ``bl.LMM`` returns for a Bernoulli, binomial or
Poisson family; :class:`GlmMixin` holds what differs from a Gaussian model. Every random
effect is sampled (integrating them out, the marginal route of Gaussian models, has no
closed form here). By default (``method=None``, sampler ``"auto"`` or ``"nutpie"``) nutpie
runs the compiled density (:mod:`bayeslmm.bayes.density` with the rows' likelihood of
:mod:`bayeslmm.bayes.row_likelihood`): each term centred or not by the two-stage rule on the
pooled GLM's IRLS-weighted working response (:attr:`GlmMixin._spreads`), centred intercepts
carrying the fixed effects constant within their levels, chains starting at the pooled
GLM fit. ``method="full"``, or a PyMC-graph sampler (``"pymc"``, ``"numpyro"``), samples
the PyMC model (:mod:`bayeslmm.bayes.glm_graph`), the reference the compiled density is
tested against; :attr:`~bayeslmm.LMM.fit_info` says which (``log_density``: ``"bayeslmm
(numba)"`` or ``"PyMC graph"``; ``method`` is ``"full"`` either way). The posterior has the
Gaussian explicit model's variables,
dims and coords (``beta``, ``sd_L``, ``cor_L``, ``u_L``) on the link scale, no ``sigma``,
and a pointwise ``log_likelihood`` group (binomial / Bernoulli / Poisson / negative binomial
log-pmf per row) for PSIS-LOO by observation. A negative binomial model (NB2, variance ``mu
+ mu^2 / theta``) also samples its dispersion ``theta`` (lme4/MASS's ``theta``, brms's
``shape``; prior :data:`~bayeslmm.bayes.priors.THETA_PRIOR`), a scalar in the posterior.

``fit(method="laplace")`` is APPROXIMATE (logit and log links): nutpie on the population
parameters' posterior with the random effects integrated out by Laplace's method
(:mod:`bayeslmm.bayes.laplace`), then approximate draws of the random effects from the
Laplace Gaussian at every draw; ``fit_info``, the printed summary and every table's
``attrs["approximation"]`` say so.

The comparison layer (``bl.compare``, ``bl.report``, ``compare_random_effects``, ICC, R2,
Bayes factors, leave-one-group-out) is Gaussian only for now and refuses these models
(:func:`gaussian_only`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import (
    ArgumentError,
    BayesLMMError,
    ComparisonError,
    RowsNotInMemoryError,
)
from ..gaussian.blocked import BlockedSystem
from ..gaussian.statistics import BlockedStats, LevelSpread
from ..glmm.negbin import ThetaError, theta_ml
from ..glmm.stage_one import StageOne, fit_stage_one, one_blas_thread
from ..spec.design import Design, is_dask_frame
from ..spec.family import Family, get_family
from ..spec.naming import PARAMETRIZATIONS
from ..spec.response import (
    OFFSET,
    RESPONSE,
    WEIGHTS,
    GlmResponse,
    glm_design,
    new_rows_offset,
    new_rows_trials,
)
from . import stack
from .centring import (
    centred_on_parents,
    centring,
    fitted_spreads,
    level_centring,
    whitening,
)
from .density import MarginalDensity
from .laplace import APPROXIMATION, check_canonical, draw_laplace_effects
from .predict import linear_predictor, predict_draws, prediction_arguments, prediction_table
from .priors import THETA, Prior, resolve_priors
from .row_likelihood import pointwise_loglik
from .sampling import available_samplers, default_sampler, whole_number
from .stack import Results

#: the non-Gaussian families the Bayesian model has a likelihood for
BAYES_FAMILIES = ("bernoulli", "binomial", "poisson", "negative_binomial")

if TYPE_CHECKING:
    import pymc as pm

KINDS = ("mean", "link", "response")


def is_gaussian(model: Any) -> bool:
    """Is ``model`` Gaussian (every model but a :class:`~bayeslmm.bayes.model.GLMM`)?"""
    family = getattr(model, "family", None)
    return not isinstance(family, Family) or family.name == "gaussian"


def gaussian_only(model: Any, what: str) -> None:
    """Refuse a non-Gaussian model in ``what`` (a part written for Gaussian models only),
    with a :class:`~bayeslmm.errors.ComparisonError` naming the family."""
    if not is_gaussian(model):
        raise ComparisonError(
            f"{what} is not for non-Gaussian families yet: {model.formula!r} is a "
            f"{model.family} model; use its summary(), fixef(), ranef(), varcorr(), "
            "predict() and PSIS-LOO by observation (bl.loo_compare(..., by='observation'))"
        )


#: nutpie's target acceptance where a GLMM's effects are whitened (``whitened_terms``), or
#: every term is centred (``centred_terms``: each level's data outweigh its term's spread):
#: the posterior is then nearly normal in the sampled coordinates, and larger steps carry
#: further. 4 x 1000 draws, seeds 1-6: cbpp's smallest bulk ESS 5409-5804 against
#: 3752-4224 at 0.9 (6.8 against 7.0 leapfrog steps); grouseticks' three nested factors
#: 987-1459 against 326-539 (15 steps either way). Centred, seeds 1-3: VerbAgg's crossed
#: intercepts 2753-3694 against 1918-2094 (15 steps either way); simulated crossed
#: intercepts (60 x 30), seeds 1-2: Poisson 1187-1374 against 892-1077 (15 steps),
#: Bernoulli 1444-1535 with 7.3 steps against 2849-2870 with 14.9 (the same per step). No
#: divergences
WHITENED_TARGET_ACCEPT = 0.8


def _informed(whitened: bool, centred: Sequence[Sequence[bool]], by_level: bool) -> bool:
    """Does a compiled fit sample in coordinates its data inform: its effects whitened, or
    every term of every sampled factor (``centred``: flags per factor) centred, none level
    by level (:data:`WHITENED_TARGET_ACCEPT`)."""
    return whitened or (bool(centred) and all(all(flags) for flags in centred)
                        and not by_level)  # fmt: skip


class GlmMixin:
    """What a Bayesian generalised linear mixed model (``bl.LMM(..., family=...)``, a
    :class:`~bayeslmm.bayes.model.GLMM`) does differently from a Gaussian one.

    Parameters
    ----------
    formula
        lme4 syntax; the response may be ``cbind(successes, failures)``, a 0/1, bool or
        two-level factor column, a proportion with ``weights=`` (the trials) or counts,
        and the right-hand side may hold ``offset(expr)`` terms.
    data
        A pandas DataFrame (never modified).
    priors
        Overrides of the defaults by class (``"fixed"``, ``"intercept"``, ``"sd"``,
        ``"cor"``) or parameter name. Defaults (link scale, bambi's and rstanarm's
        autoscaling with response SD 1): slopes ``Normal(0, 2.5 / sd(x))``, the intercept
        ``Normal(0, sqrt(2.5^2 + sum_j (mean(x_j) s_j)^2))``, SDs ``HalfNormal(2.5 /
        sd(z))``, ``LKJ(1)`` (:mod:`bayeslmm.bayes.priors`). There is no ``sigma``. The
        negative binomial's ``"theta"`` (variance ``mu + mu^2 / theta``): by default
        ``InverseGamma(alpha=0.5, beta=0.5)``, i.e. ``1 / sqrt(theta) ~ HalfNormal(1)``.
    parametrization
        ``"noncentered"`` (default) or ``"centered"`` random effects of the PyMC graph
        (``method="full"``); the compiled density chooses per term
        (:attr:`~bayeslmm.LMM.centred_terms`).
    residual
        Must be None: residual correlation structures are Gaussian only.
    family, link
        ``"bernoulli"``, ``"binomial"`` (links ``"logit"``, default, ``"probit"``,
        ``"cloglog"``), ``"poisson"`` or ``"negative_binomial"`` (``"log"``, default, or
        ``"identity"``; its theta is sampled, so the family takes none).
    weights
        Binomial trials of a proportion response (a column name or an array).
    offset
        An offset added to the formula's ``offset()`` terms (column name or array).
    """

    def __init__(
        self,
        formula: str | Design,
        data: pd.DataFrame | None = None,
        priors: Mapping[str, Prior] | None = None,
        parametrization: str = "noncentered",
        residual: Any = None,
        family: str | Family = "binomial",
        link: str | None = None,
        weights: str | np.ndarray | None = None,
        offset: str | np.ndarray | None = None,
    ):
        fam = get_family(family, link)
        if fam.name not in BAYES_FAMILIES:
            raise ArgumentError(
                f"bl.LMM samples the {', '.join(BAYES_FAMILIES)} families (and gaussian); "
                f"the {fam.name} family is fitted by bl.glmer(..., family={fam.name!r}) for now"
            )
        if not isinstance(formula, str):
            raise ArgumentError(
                f"bl.LMM(..., family={fam.name!r}) takes the formula as a string and the data "
                f"(the trials and offsets are read from them), not a {type(formula).__name__}"
            )
        if data is None:
            raise ArgumentError("bl.LMM(formula, data, family=...): data is missing")
        if residual is not None:
            raise ArgumentError(f"residual correlation structures are for Gaussian models; the "
                                f"{fam.name} family takes residual=None")  # fmt: skip
        if not isinstance(parametrization, str) or parametrization not in PARAMETRIZATIONS:
            raise ArgumentError(
                f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}"
            )
        if fam.negative_binomial and fam.theta is not None:
            raise ArgumentError(
                f"bl.LMM samples the negative binomial's theta; the family was given theta="
                f"{fam.theta:g}: pass family='negative_binomial' without it (a prior on theta "
                "goes in priors={'theta': bl.Prior(...)})"
            )
        if is_dask_frame(data):
            raise RowsNotInMemoryError(
                f"the {fam.name} family samples every row's likelihood, and the data are a "
                "Dask DataFrame whose rows stay in its partitions; fit a pandas DataFrame "
                "(ddf.compute(), or a sample of the groups)"
            )
        design, response = glm_design(formula, data, fam, weights=weights, offset=offset)
        self.design: Design = design
        #: the checked response: family, 0/1 or proportion or counts, trials, offset
        self.response: GlmResponse = response
        self.formula = response.formula
        if fam.negative_binomial and THETA in design.fixed_names:
            raise ArgumentError(f"a fixed effect is named {THETA!r}, the negative binomial's "
                                "dispersion; rename its column")  # fmt: skip
        self.priors: dict[str, Prior] = resolve_priors(design, priors, gaussian=False,
                                                       theta=fam.negative_binomial)  # fmt: skip
        self.parametrization = parametrization
        self._offset_given = offset
        self.idata: Results | None = None
        self.convergence = None
        self.fit_info = None

    def __repr__(self) -> str:
        if self.idata is None:
            return (f"LMM({self.formula!r}, family={self.family.name!r}, "
                    f"n={self.design.n_obs}, not fitted)")  # fmt: skip
        return repr(self.summary(print_it=False))

    @property
    def family(self) -> Family:
        """The response family and its link."""
        return self.response.family

    @property
    def scale(self) -> str:
        """The scale of the parameters: ``"logit (link)"`` and so on."""
        return f"{self.family.link.name} (link)"

    # -- the model and the fit ------------------------------------------------------------
    @cached_property
    def pymc_model(self) -> pm.Model:
        """The PyMC model with explicit random effects (built on first use)."""
        from .glm_graph import build_glm_model

        return build_glm_model(self.design, self.response, self.priors, self.parametrization)

    @property
    def marginal_supported(self) -> bool:
        """False: a non-Gaussian likelihood does not integrate the random effects out."""
        return False

    @cached_property
    def _explicit(self) -> tuple[str, ...]:
        """Every grouping factor is sampled (:attr:`~bayeslmm.LMM.explicit_factors`)."""
        return tuple(dict.fromkeys(block.group for block in self.design.blocks))

    @property
    def compiled_density(self) -> MarginalDensity | None:
        """The compiled log density (:mod:`bayeslmm.bayes.density` with the rows'
        likelihood, :mod:`bayeslmm.bayes.row_likelihood`) that the default fit runs with
        nutpie: every random effect sampled, centred or not term by term
        (:attr:`~bayeslmm.LMM.centred_terms`), chains starting at a pooled GLM fit.
        None where the kernel lacks the family, link or a prior (the PyMC graph serves)."""
        if not self.design.blocks:
            return None
        return MarginalDensity.from_glm(self.design, self.response, self.priors,
                                        self.blocked_system, self._centring(), self._signing(),
                                        self._sd_start(), self._pooled[0],
                                        self._pooled_theta, self._level_centred,
                                        self._whitening)  # fmt: skip

    @property
    def default_target_accept(self) -> float:
        """:attr:`LMM.default_target_accept <bayeslmm.LMM.default_target_accept>`, at least
        0.95 where every sampled term is non-centred: each level's effect is then weakly
        informed, the SDs are read from the spread of many poorly determined effects and
        the posterior's curvature changes along them. grouseticks (observations in broods
        in locations), 4 x 1000 draws, seeds 1-3: smallest bulk ESS 136-216 and R-hat 1.02
        at 0.95 against 75-100 and 1.04-1.07 at 0.9, no divergences either way. Where the
        default fit samples whitened effects (:attr:`whitened_terms`) or centres every term
        (:attr:`centred_terms`, no level sampled otherwise) and no factor has few levels,
        :data:`WHITENED_TARGET_ACCEPT`; a fit on another route (``method="full"``,
        ``"laplace"``, another sampler) keeps the rest of the rule."""
        flags = [self._centred.get(f.group, (False,)) for f in self.blocked_system.stats.factors]
        return self._target_accept(_informed(bool(self._whitening), flags,
                                             bool(self._level_centred)))  # fmt: skip

    def _route_target_accept(self, density: MarginalDensity | None) -> float:
        """The default ``target_accept`` of a fit sampling ``density`` (None: the PyMC
        graph): :data:`WHITENED_TARGET_ACCEPT`'s rule only where it whitens effects or
        centres every term."""
        if density is None:
            return self._target_accept(False)
        lay = density.layout
        flags = [e.centred for e in lay.explicit if e is not None]
        return self._target_accept(_informed(bool(lay.whitened), flags,
                                             bool(lay.level_centred)))  # fmt: skip

    def _target_accept(self, informed: bool) -> float:
        """The base rule, :data:`WHITENED_TARGET_ACCEPT` where ``informed`` (:func:`_informed`)
        and no factor has few levels."""
        base = super().default_target_accept
        if informed:
            return WHITENED_TARGET_ACCEPT if base == 0.9 else base
        if self.design.blocks and not any(any(c) for c in self._centred.values()):
            return max(base, 0.95)
        return base

    def _signing(self) -> dict[str, tuple[bool, ...]]:
        """:attr:`signed_terms` as flags per factor and term: a whitened term's SD is
        drawn as ``log sd`` (its map reads ``sd`` and ``sd^2`` alike)."""
        return {**self._signed, **self._not_whitened()}

    @cached_property
    def _pooled(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A GLM fit without the random effects: ``(beta, IRLS weights per row)``; for the
        negative binomial at the pooled fit's theta (:func:`pooled_negbin`: weights
        ``mu / (1 + mu / theta)`` with the log link)."""
        if self.family.negative_binomial:
            return self._pooled_nb[:2]
        return pooled_glm(self.design.X, self.response)

    @cached_property
    def _pooled_nb(self) -> tuple[np.ndarray | None, np.ndarray | None, float | None]:
        """:func:`pooled_negbin` of the fixed effects: ``(beta, weights, theta)``."""
        return pooled_negbin(self.design.X, self.response)

    @property
    def _pooled_theta(self) -> float | None:
        """Where a negative binomial's chains start theta (the pooled fit's; None for the
        other families, or where it failed)."""
        return self._pooled_nb[2] if self.family.negative_binomial else None

    @cached_property
    def _pooled_spreads(self) -> list[LevelSpread | None]:
        """The two-stage spread of every grouping factor's levels (node order), on the
        working response of the pooled GLM fit weighted by its IRLS weights, with the
        family's dispersion (1) rather than an estimate: one level's sampling variance is
        then its inverse Fisher information, and the Gaussian rule
        (:attr:`~bayeslmm.LMM.centred_terms`: centred where the spread exceeds it) applies
        as it is, levels of one row included. None per factor where the fit failed.

        Measured (4 chains x 1000 draws, seed 1, 2 shared CPU cores; smallest bulk ESS
        over beta and SDs, and per second of the whole fit): cbpp's herds centred 2080
        (867/s) against 1146 (305/s) non-centred; VerbAgg's subjects and items centred
        3673 (17.7/s) against 721 (5.9/s). An estimated dispersion (overdispersion read
        as noise) chose cbpp's herds non-centred.
        The centring reads the first-stage fit instead (:attr:`_spreads`)."""
        stats = self.blocked_system.stats
        beta, weights = self._pooled
        if beta is None:
            return [None] * len(stats.factors)
        design, r = self.design, self.response
        eta = design.X @ beta + r.offset
        mu = r.family.linkinv(eta)
        working = eta - r.offset + (r.y - mu) / r.family.mu_eta(eta)
        root = np.sqrt(weights)
        weighted = dataclasses.replace(
            design, X=design.X * root[:, None], y=working * root,
            blocks=[dataclasses.replace(b, Z=b.Z * root[:, None]) for b in design.blocks])
        fisher = BlockedStats.from_design(weighted, self.explicit_factors)
        return [fisher.level_spread(index, dispersion=1.0)
                for index in range(len(fisher.factors))]  # fmt: skip

    @cached_property
    def _spreads(self) -> list[LevelSpread | None]:
        """Every grouping factor's spread and one level's noise (node order) from the
        first-stage GLMM fit (:func:`~bayeslmm.bayes.centring.fitted_spreads`; lme4's
        ``nAGQ = 0`` step, :func:`~bayeslmm.glmm.stage_one.fit_stage_one`), which the
        centring rule (:attr:`~bayeslmm.LMM.centred_terms`: centred where the spread
        exceeds the noise), the signed SDs and the SDs' starts read; the pooled two-stage
        spreads (:attr:`_pooled_spreads`) where that fit fails.

        The fit weighs each factor against the others: grouseticks' locations (1.9 broods
        and 6.4 rows each) have a two-stage spread 26 times their rows' noise, yet their
        conditional variances at the fit leave a noise 1.8 times their spread, as for
        broods and observations. All three non-centred with a diagonal mass matrix, 4 x
        1000 draws, seed 1: smallest bulk ESS 90, R-hat 1.03, 1 divergence; the two-stage
        choice (broods and locations centred, diagonal plus low rank): 11, R-hat 1.29, 62
        divergences."""
        fit = self._stage_one
        if fit is None:
            return self._pooled_spreads
        return fitted_spreads(self.blocked_system.stats, fit, lambda: self._pooled_spreads)

    @cached_property
    def _stage_one(self) -> StageOne | None:
        """lme4's first glmer stage (:func:`~bayeslmm.glmm.stage_one.fit_stage_one`), or
        None where it fails."""
        try:
            with one_blas_thread():
                return fit_stage_one(self.design, self.response)
        except (ArithmeticError, np.linalg.LinAlgError, RuntimeError, ValueError):
            return None

    @cached_property
    def _centred(self) -> dict[str, tuple[bool, ...]]:
        """The centring rule on :attr:`_spreads`, with nested factors' intercepts read
        with their parents' effects known
        (:func:`~bayeslmm.bayes.centring.centred_on_parents`) where the first stage ran."""
        stats = self.blocked_system.stats
        flags = centring(stats, lambda index: self._spreads[index])
        if self._stage_one is None:
            return flags
        return centred_on_parents(flags, stats, self.design, self._spreads,
                                  self._stage_one.state.w)  # fmt: skip

    def _centring(self) -> dict[str, tuple[bool, ...]]:
        """:attr:`centred_terms` as flags per sampled factor and term (node order): a
        whitened factor's term is not centred (:attr:`whitened_terms`)."""
        return {**self._centred, **self._not_whitened()}

    def _not_whitened(self) -> dict[str, tuple[bool, ...]]:
        """A False flag for each term of every whitened factor."""
        q = {f.group: f.q for f in self.blocked_system.stats.factors}
        return {group: (False,) * q[group] for group in self._whitening}

    @property
    def whitened_terms(self) -> dict[str, tuple[str, ...]]:
        """Per grouping factor, the terms whose effects the compiled sampler whitens: in a
        model whose grouping factors have one term each and are nested in one another
        (cbpp's herds; grouseticks' observations in broods in locations), or whose one
        grouping factor has correlated terms (``(1 + x | g)``), each level's
        effect is ``u = m + s x`` with ``N(m, s^2)`` a Gaussian approximation of its
        conditional posterior given the fixed effects, the SD and its ancestors' effects,
        made from lme4's first glmer stage, and ``x`` sampled
        (:attr:`~bayeslmm.bayes.density.Layout.whitened`,
        :func:`~bayeslmm.bayes.centring.whitening`): exact, with the map's Jacobian, and
        neither centred nor non-centred but in between as the SD moves. 4 x 1000 draws,
        seeds 1-6: cbpp's smallest bulk ESS 5409-5804 against 1992-2307 centred,
        grouseticks' 987-1459 against 393-608."""
        return {group: tuple(c for k in f.blocks for c in self.design.blocks[k].columns)
                for f in self.blocked_system.stats.factors
                if (group := f.group) in self._whitening}  # fmt: skip

    @cached_property
    def _whitening(self) -> dict[str, tuple[np.ndarray, str | None]]:
        """Per sampled factor whose effects are whitened, its levels' constants
        (:func:`~bayeslmm.bayes.centring.whitening`; none without the first stage)."""
        if self._stage_one is None:
            return {}
        return whitening(self.blocked_system.stats, self.design, self._stage_one)

    @cached_property
    def _level_centred(self) -> dict[str, np.ndarray]:
        """Per sampled factor of one centred term, which levels are centred where they
        differ (:func:`~bayeslmm.bayes.centring.level_centring`; none without the first
        stage)."""
        if self._stage_one is None or self._whitening:  # whitened: no centring
            return {}
        return level_centring(self.blocked_system.stats, self.design, self._stage_one,
                              self._spreads, self._centred)  # fmt: skip

    @property
    def laplace_density(self) -> MarginalDensity | None:
        """APPROXIMATE: the compiled density of ``method="laplace"``: the population
        parameters' posterior with every random effect integrated out by Laplace's method
        (:mod:`bayeslmm.bayes.laplace`; canonical links), chains starting at the pooled GLM
        fit. None where the kernel lacks a prior."""
        system = BlockedSystem(BlockedStats.from_design(self.design, ()))
        return MarginalDensity.from_laplace(self.design, self.response, self.priors, system,
                                            self._sd_start(), self._pooled[0])  # fmt: skip

    def _density_for(self, method: str, chosen: str | None, sampler: str):
        """The compiled density where the fit runs it: ``method=None`` with nutpie, and
        ``method="laplace"`` (nutpie only)."""
        if method == "laplace":
            if sampler not in ("auto", "nutpie") or "nutpie" not in available_samplers():
                raise ArgumentError(
                    f"method='laplace' runs nutpie on the compiled Laplace density; got "
                    f"sampler={sampler!r}" + ("" if "nutpie" in available_samplers()
                                              else " and nutpie is not installed")
                    + ": use sampler='nutpie' (or 'auto'), or the exact method=None"
                )  # fmt: skip
            density = self.laplace_density
            if density is None:
                raise ArgumentError("method='laplace' needs priors the compiled density has "
                                    "(see bayeslmm.bayes.density); use method=None")  # fmt: skip
            return density
        if chosen is not None or sampler not in ("auto", "nutpie"):
            return None
        if "nutpie" not in available_samplers():
            return None
        return self.compiled_density

    def _choose_sampler(self, sampler, method, chosen, density, n_effects):
        """nutpie on the compiled density where :meth:`_density_for` gave one, else the
        PyMC graph with the requested sampler (``"auto"``: the graph's default)."""
        if density is not None:
            return "nutpie", method, True
        if sampler == "auto":
            sampler = default_sampler(n_effects)
        return sampler, method, False

    def _laplace_effects(self, idata: Results, random_seed: int | None) -> Results:
        """A ``method="laplace"`` fit's posterior with APPROXIMATE draws of every ``u_L``
        and ``z_L`` from the Laplace Gaussian at each draw
        (:func:`~bayeslmm.bayes.laplace.draw_laplace_effects`)."""
        effects = draw_laplace_effects(idata, self.design, self.response, random_seed)
        stack.set_group(idata, "posterior", stack.posterior(idata).assign(effects))
        return idata

    @property
    def approximate(self) -> bool:
        """Was the fit approximate (``method="laplace"``)?"""
        return self.fit_info is not None and self.fit_info.method == "laplace"

    def _mark(self, table: pd.DataFrame) -> pd.DataFrame:
        """The link scale, and for a ``method="laplace"`` fit that it is approximate, in
        ``table.attrs``."""
        table.attrs["scale"] = self.scale
        if self.approximate:
            table.attrs["approximation"] = APPROXIMATION
        return table

    def _observed_data(self) -> xr.Dataset:
        """The observed response as the PyMC graph holds it (successes or counts)."""
        r = self.response
        values = np.round(r.y * r.weights).astype(np.int64) if r.family.binomial else r.y
        obs = {"obs": np.arange(self.design.n_obs)}
        return xr.Dataset({self.design.response: xr.DataArray(values, dims="obs", coords=obs)})

    @cached_property
    def marginal_model(self) -> pm.Model:
        raise ArgumentError(f"the {self.family.name} family has no marginal model: the random "
                            "effects are sampled (method='full')")  # fmt: skip

    def _resolve_method(self, method: str | None) -> str:
        """``"full"``: every random effect sampled, on the compiled density with nutpie
        for ``method=None`` (:meth:`_density_for`), on the PyMC graph (the reference) for
        ``method="full"`` or a PyMC-graph sampler; ``"laplace"``: APPROXIMATE, the random
        effects integrated out by Laplace's method (canonical links only)."""
        if method is None or method == "full":
            return "full"
        if method == "laplace":
            if not self.design.blocks:
                raise ArgumentError(f"method='laplace' integrates random effects out, and "
                                    f"{self.formula!r} has none: use method=None")  # fmt: skip
            check_canonical(self.response)
            return "laplace"
        if method == "marginal":
            raise ArgumentError(
                f"method='marginal' integrates the random effects out in closed form, which "
                f"only a Gaussian response allows; the {self.family.name} family is sampled "
                "with explicit random effects: use method='full' (or None)"
            )
        raise ArgumentError(f"method must be None, 'full' or 'laplace' (approximate) for the "
                            f"{self.family.name} family, got {method!r}")  # fmt: skip

    def population_variables(self) -> list[str]:
        """Posterior variables of population parameters (no ``sigma``; the negative
        binomial's ``theta``)."""
        names = ["beta"] if self.design.X.shape[1] else []
        for block in self.design.blocks:
            names.append(f"sd_{block.label}")
            if block.correlated:
                names.append(f"cor_{block.label}")
        if self.family.negative_binomial:
            names.append(THETA)
        return names

    def _theta_draws(self, idata: Results) -> np.ndarray:
        """A negative binomial's theta draws, shaped (chain, draw, 1) to broadcast over
        rows."""
        return stack.posterior(idata)[THETA].values[..., None]

    def _linear_predictor(self, idata: Results) -> np.ndarray:
        """Draws of ``eta = X beta + Z u + offset`` on the fitted rows: (chain, draw, n)."""
        post = stack.posterior(idata)
        design = self.design
        effects = [post[f"u_{b.label}"].values for b in design.blocks]
        eta = linear_predictor(post, design.X, [b.Z for b in design.blocks],
                               [b.codes for b in design.blocks], effects)  # fmt: skip
        return eta + self.response.offset

    def _log_likelihood(self, idata: Results) -> xr.Dataset:
        """Pointwise log-likelihood of the fitted rows (binomial, Bernoulli, Poisson or
        negative binomial log-pmf with all constants, as ``dbinom`` / ``dpois`` /
        ``dnbinom(mu=, size=theta)``), dims (chain, draw, obs)."""
        post = stack.posterior(idata)
        r, design = self.response, self.design
        chains, draws = post.sizes["chain"], post.sizes["draw"]
        beta = (post["beta"].values.reshape(chains * draws, -1) if "beta" in post
                else np.zeros((chains * draws, 0)))  # a model without fixed effects
        values = pointwise_loglik(
            design, r, beta,
            [post[f"u_{b.label}"].values.reshape(chains * draws, b.n_levels, b.n_terms)
             for b in design.blocks],
            self._theta_draws(idata).reshape(-1) if r.family.negative_binomial else None,
        )  # fmt: skip
        if values is not None:  # compiled, on the link scale
            values = values.reshape(chains, draws, -1)
        else:  # a family or link the kernel lacks: scipy's pmf at mu
            mu = r.family.linkinv(self._linear_predictor(idata))
            if r.family.negative_binomial:
                import scipy.stats

                theta = self._theta_draws(idata)
                values = scipy.stats.nbinom.logpmf(r.y, theta, theta / (theta + mu))
            else:
                values = r.family.loglik(r.y, mu, r.weights)
        da = xr.DataArray(values, dims=("chain", "draw", "obs"),
                          coords={"chain": post.chain, "draw": post.draw,
                                  "obs": np.arange(self.design.n_obs)})  # fmt: skip
        return xr.Dataset({self.design.response: da})

    # -- tables on the link scale -----------------------------------------------------------
    def summary(self, print_it: bool | None = None, level: float | None = None, *,
                hdi_prob: float | None = None) -> pd.DataFrame:  # fmt: skip
        """As :meth:`~bayeslmm.LMM.summary`, on the link scale (the printed block and the
        table's ``attrs["scale"]`` say which); no ``sigma`` row."""
        return self._mark(super().summary(print_it, level, hdi_prob=hdi_prob))

    def fixef(self, level: float | None = None, *, hdi_prob: float | None = None
              ) -> pd.DataFrame:  # fmt: skip
        """Fixed effects on the link scale (``attrs["scale"]``), as :meth:`~bayeslmm.LMM.fixef`."""
        return self._mark(super().fixef(level, hdi_prob=hdi_prob))

    def ranef(self, level: float | None = None, *, hdi_prob: float | None = None
              ) -> dict[str, pd.DataFrame]:  # fmt: skip
        """Random effects on the link scale (``attrs["scale"]``), as :meth:`~bayeslmm.LMM.ranef`."""
        tables = super().ranef(level, hdi_prob=hdi_prob)
        for table in tables.values():
            self._mark(table)
        return tables

    def varcorr(self, level: float | None = None, *, hdi_prob: float | None = None
                ) -> pd.DataFrame:  # fmt: skip
        """SDs and correlations of the random effects on the link scale (no residual
        row), as :meth:`~bayeslmm.LMM.varcorr`."""
        return self._mark(super().varcorr(level, hdi_prob=hdi_prob))

    # -- predictions --------------------------------------------------------------------------
    def predict(
        self,
        data: pd.DataFrame | None = None,
        *,
        kind: str = "mean",
        include_random: bool = True,
        summary: bool = False,
        level: float | None = None,
        allow_new_levels: bool = True,
        random_seed: int | None = None,
        newdata: pd.DataFrame | None = None,
        hdi_prob: float | None = None,
        trials: str | np.ndarray | None = None,
        offset: str | np.ndarray | None = None,
    ) -> xr.DataArray | pd.DataFrame:
        """Posterior draws of predictions for ``data`` (default: the fitted rows).

        ``kind="mean"``: the mean on the response scale (a probability for Bernoulli and
        binomial, a rate for Poisson and negative binomial); ``"link"``: the linear
        predictor ``eta`` (offset included); ``"response"``: posterior predictive draws
        (0/1, counts, or successes out of the trials; a negative binomial's at each draw's
        theta). New levels, ``include_random``, ``summary`` and ``level`` as
        :meth:`LMM.predict`. ``trials`` (binomial ``kind="response"`` on new rows; a
        column name or one value per row) defaults to ``cbind``'s successes + failures
        evaluated on ``data``, or 1 for a Bernoulli model; ``offset`` (new rows) to the
        formula's ``offset()`` terms evaluated on ``data`` plus the fit's ``offset=``
        column, if one was named.
        """
        if not isinstance(kind, str) or kind not in KINDS:
            raise ArgumentError(f"kind must be one of {KINDS}, got {kind!r}")
        data, level = prediction_arguments(data, newdata, summary, level, hdi_prob)
        if random_seed is not None:
            whole_number("random_seed", random_seed, minimum=0)
        idata = self._posterior()
        family = self.family
        if data is None:
            if trials is not None or offset is not None:
                raise ArgumentError("trials= and offset= are for new rows (data=...); the "
                                    "fitted rows have theirs")  # fmt: skip
            frame, off, n_trials = self.design.frame, self.response.offset, self.response.weights
        else:
            if not isinstance(data, pd.DataFrame):
                raise ArgumentError(f"newdata must be a pandas DataFrame, got "
                                    f"{type(data).__name__}")  # fmt: skip
            frame = data.assign(**{c: v for c, v in ((RESPONSE, 0.0), (WEIGHTS, 1.0),
                                                     (OFFSET, 0.0))
                                   if c not in data.columns})  # fmt: skip
            off = self._new_offset(data, offset)
            n_trials = (self._new_trials(data, trials)
                        if kind == "response" and family.binomial else None)  # fmt: skip
        eta = predict_draws(idata, self.design, frame, include_random=include_random,
                            allow_new_levels=allow_new_levels, kind="mean",
                            random_seed=random_seed).values + off  # fmt: skip
        if kind == "link":
            values = eta
        else:
            values = family.linkinv(eta)
            if kind == "response":
                rng = np.random.default_rng(None if random_seed is None else [random_seed, 1])
                if family.binomial:
                    values = rng.binomial(np.round(n_trials).astype(np.int64), values)
                elif family.negative_binomial:
                    theta = self._theta_draws(idata)
                    values = rng.negative_binomial(theta, theta / (theta + values))
                else:
                    values = rng.poisson(values)
        post = stack.posterior(idata)
        draws = xr.DataArray(values, dims=("chain", "draw", "obs"),
                             coords={"chain": post.chain, "draw": post.draw,
                                     "obs": np.arange(values.shape[-1])},
                             name=f"{self.design.response}_{kind}")  # fmt: skip
        if self.approximate:
            draws.attrs["approximation"] = APPROXIMATION
        if not summary:
            return draws
        table = prediction_table(draws, level, (self.design.frame if data is None else data).index)
        table.attrs.update({k: v for k, v in draws.attrs.items() if k == "approximation"})
        return table

    def _new_offset(self, data: pd.DataFrame, offset) -> np.ndarray:
        given = self._offset_given
        if offset is None and given is not None and not isinstance(given, str):
            raise ArgumentError("the model was fitted with offset= values (not a column); "
                                "pass offset= for the new rows")  # fmt: skip
        return new_rows_offset(self.formula, data, offset if offset is not None else given)

    def _new_trials(self, data: pd.DataFrame, trials) -> np.ndarray:
        if trials is not None:
            if isinstance(trials, str):
                if trials not in data.columns:
                    raise ArgumentError(f"trials column {trials!r} is not in the new rows")
                values = data[trials].to_numpy(dtype=float)
            else:
                values = np.asarray(trials, dtype=float).ravel()
                if values.shape[0] != len(data):
                    raise ArgumentError(f"trials has {values.shape[0]} values for "
                                        f"{len(data)} new rows")  # fmt: skip
            if (not np.all(np.isfinite(values)) or np.any(values < 1)
                    or np.any(values != np.round(values))):  # fmt: skip
                raise ArgumentError("trials must be whole numbers >= 1 in every new row")
            return values
        try:
            found = new_rows_trials(self.formula, data)
        except BayesLMMError as err:
            raise ArgumentError(
                f"kind='response' of a binomial model on new rows needs their "
                f"trials, from cbind()'s columns or trials= ({err})"
            ) from err
        if found is not None:
            return found
        if np.all(self.response.weights == 1):
            return np.ones(len(data))
        raise ArgumentError(
            "kind='response' of a binomial model on new rows needs their "
            "trials: pass trials= (a column name or one value per row)"
        )

    def fitted(self) -> np.ndarray:
        """Posterior mean of the mean on the response scale (probability, rate) of every
        fitted row (lme4's ``fitted`` of a GLMM)."""
        return self.predict(kind="mean").mean(("chain", "draw")).values

    def residuals(self) -> np.ndarray:
        """Response residuals: the response (0/1, proportion of successes, count) minus
        :meth:`fitted` (R's ``residuals(type = "response")``)."""
        return self.response.y - self.fitted()

    # -- what is Gaussian only, for now ---------------------------------------------------------
    def icc(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        """Not for non-Gaussian families yet (raises :class:`ComparisonError`)."""
        gaussian_only(self, "icc()")

    def r2(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        """Not for non-Gaussian families yet (raises :class:`ComparisonError`)."""
        gaussian_only(self, "r2()")

    def conditional_effects(self, *args: Any, **kwargs: Any):
        """Not for non-Gaussian families yet (raises :class:`ComparisonError`)."""
        gaussian_only(self, "conditional_effects()")

    def marginal_means(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        """Not for non-Gaussian families yet (raises :class:`ComparisonError`)."""
        gaussian_only(self, "marginal_means()")

    def save(self, path):
        """Not for non-Gaussian families yet (raises :class:`ComparisonError`)."""
        gaussian_only(self, "save()")


def pooled_negbin(X: np.ndarray, response: GlmResponse, rounds: int = 25
                  ) -> tuple[np.ndarray | None, np.ndarray | None, float | None]:  # fmt: skip
    """A negative binomial GLM of the fixed effects alone, as MASS's ``glm.nb``: from the
    Poisson fit's means, ``theta`` by maximum likelihood at the means
    (:func:`~bayeslmm.glmm.negbin.theta_ml`) and the IRLS fit at that ``theta`` in turn,
    until ``theta`` changes by less than 1e-6 of itself: ``(beta, IRLS weights per row
    (mu / (1 + mu / theta) with the log link), theta)``. Each IRLS fit starts at the
    previous means; where one fails (the identity link stepping to a mean <= 0) the
    previous ``beta`` is kept, with the weights at ``theta``. ``theta`` is kept within
    [1e-3, 1e4] (1e4 where the counts show no overdispersion); ``(None, None, None)``
    where the Poisson fit fails."""
    fam = response.family
    poisson = get_family("poisson", fam.link.name)
    beta, _ = pooled_glm(X, dataclasses.replace(response, family=poisson))
    if beta is None:
        return None, None, None
    theta = None
    for _ in range(rounds):
        mu = fam.linkinv(X @ beta + response.offset)
        try:
            with np.errstate(all="ignore"):
                new = theta_ml(response.y, mu, limit=100)
        except (ThetaError, ZeroDivisionError, FloatingPointError):
            new = THETA_RANGE[1]
        new = float(np.clip(new, *THETA_RANGE)) if np.isfinite(new) else THETA_RANGE[1]
        at = fam.with_theta(new)
        refit, _ = pooled_glm(X, dataclasses.replace(response, family=at), start=mu)
        done = theta is not None and abs(new - theta) <= 1e-6 * theta
        theta = new
        if refit is None:
            break
        beta = refit
        if done:
            break
    eta = X @ beta + response.offset
    d, mu = fam.mu_eta(eta), fam.linkinv(eta)
    weights = response.weights * d * d / fam.with_theta(theta).variance(mu)
    if not np.all(np.isfinite(weights)):
        return None, None, None
    return beta, weights, theta


#: where :func:`pooled_negbin` keeps theta
THETA_RANGE = (1e-3, 1e4)


def pooled_glm(X: np.ndarray, response: GlmResponse, iterations: int = 50,
               start: np.ndarray | None = None
               ) -> tuple[np.ndarray | None, np.ndarray | None]:  # fmt: skip
    """A GLM fit of the fixed effects alone by IRLS: ``(beta, the IRLS weights per row)``,
    ``(None, None)`` where it does not converge to finite values. ``start``: the means
    it starts at (default: from the response)."""
    r = response
    fam, y, w, off = r.family, np.asarray(r.y, float), np.asarray(r.weights, float), r.offset
    if X.shape[1] == 0:
        return None, None
    mu = (w * y + 0.5) / (w + 1.0) if fam.binomial else y + 0.1
    if start is not None:
        mu = np.asarray(start, float)
    eta = fam.linkfun(mu)
    beta, previous = None, np.inf
    with np.errstate(all="ignore"):
        for _ in range(iterations):
            d = fam.mu_eta(eta)
            weights = w * d * d / fam.variance(mu)
            if not np.all(np.isfinite(weights)):
                return None, None
            root = np.sqrt(weights)
            z = eta - off + (y - mu) / d
            beta = np.linalg.lstsq(X * root[:, None], z * root, rcond=None)[0]
            eta = X @ beta + off
            mu = fam.linkinv(eta)
            deviance = float(np.sum(fam.dev_resid(y, mu, w)))
            if not np.isfinite(deviance):
                return None, None
            if abs(previous - deviance) < 1e-10 * (abs(deviance) + 0.1):
                break
            previous = deviance
        d = fam.mu_eta(eta)
        weights = w * d * d / fam.variance(mu)
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(weights))):
        return None, None
    return beta, weights
