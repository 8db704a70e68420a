"""The :class:`LMM` facade: formula + data -> PyMC model -> posterior and lme4-like output."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import (
    ArgumentError,
    FormulaError,
    NotFittedError,
    PriorError,
    RowsNotInMemoryError,
    check_seed,
    deprecated,
    interval_level,
    warn,
)
from ..gaussian.blocked import BlockedSystem, choose_explicit
from ..gaussian.partition import icc_kinds
from ..gaussian.residual import ResidualModel, ResidualSystem
from ..gaussian.statistics import (
    SUMMARIES,
    BlockedStats,
    GroupStats,
    LevelSpread,
    NestedStats,
    nested_grouping_factors,
    single_grouping_factor,
)
from ..spec.design import Design, Rows, is_dask_frame
from ..spec.family import Family, get_family
from ..spec.known_se import known_se_design, refuse_gaussian_weights
from ..spec.naming import PARAMETRIZATIONS
from ..spec.residual import ResidualStructure, non_nested_factors
from ..spec.response import check_gaussian, warn_gaussian_misuse
from ..spec.reuse import design_from
from . import stack
from .centring import SIGNED_ABOVE as SIGNED_ABOVE  # moved there: old names kept
from .centring import SIGNED_DEPTH as SIGNED_DEPTH
from .centring import _zero_depth as _zero_depth
from .centring import centring, sd_start, signing
from .density import MarginalDensity
from .diagnostics import Convergence, check_convergence, warn_convergence
from .effects import draw_random_effects
from .glm_model import GlmMixin
from .laplace import LAPLACE_LOG_DENSITY
from .partition import draws_table, icc_draws, r2_draws
from .predict import log_likelihood, predict_draws, prediction_arguments, prediction_table
from .priors import Prior, resolve_priors
from .results import (
    HDI_PROB,
    coef_table,
    group_coefficient_draws,
    ranef_table,
    summary_table,
    varcorr_table,
)
from .sampling import (
    check_sampler,
    check_settings,
    choose_sampler,
    mass_matrix_name,
    quiet_pymc,
    sample_compiled,
    sample_nuts,
)
from .settings import METHODS, FitInfo, FitSettings
from .stack import Results

if TYPE_CHECKING:  # PyMC is imported where a PyMC model is built (0.6 s a fit need not pay)
    import pymc as pm

    from .conditional import ConditionalEffects
    from .evidence import MarginalLikelihood

LOG_LIKELIHOOD_MAX = 50_000_000  # rows x draws kept in the pointwise log-likelihood
#: a grouping factor with at most this many levels (or no more levels than its covariance
#: has parameters) makes fit's default target_accept 0.99
FEW_LEVELS = 5
class LMM:
    """A Bayesian linear mixed model from an lme4 formula.

    Parameters
    ----------
    formula
        lme4 syntax, e.g. ``"Reaction ~ Days + (Days | Subject)"``; or a built
        :class:`~bayeslmm.Design` (``bl.build_design(formula, data, residual)``), taken as
        it is, with ``data`` and ``residual`` left out: ``bl.LMM(design)`` (what
        :func:`bayeslmm.compare` does to fit each distinct design once).
    data
        The data (never modified): a pandas DataFrame, or a Dask DataFrame (e.g.
        ``dd.read_parquet(...)``), whose sufficient statistics are computed partition by
        partition on the active Dask scheduler or ``Client``; its rows are never gathered
        (results that need them are computed lazily on Dask or refused, saying so).
    priors
        Overrides of the autoscaled defaults, by class (``"fixed"``, ``"intercept"``,
        ``"sd"``, ``"cor"``, ``"sigma"``) or by parameter name (``"Days"``,
        ``"sd(Days|Subject)"``, ``"cor(Subject)"``).
    parametrization
        ``"noncentered"`` (default) or ``"centered"`` random effects.
    residual
        A residual correlation structure, :class:`~bayeslmm.AR1` or
        :class:`~bayeslmm.CompoundSymmetry` (nlme's ``correlation=``): its parameter
        (``"phi"`` or ``"rho"``) gets a uniform prior on its interval by default. The
        marginal sampler keeps integrating the random effects out where every residual
        group lies within one level of each grouping factor; otherwise the model is
        sampled with explicit random effects (``method="full"``).
    family, link
        ``"gaussian"`` (default; a 0/1 or count response fitted as Gaussian warns), or
        ``"bernoulli"``, ``"binomial"``, ``"poisson"`` with their links: then ``bl.LMM``
        returns a :class:`~bayeslmm.bayes.model.GLMM` (explicit random effects,
        ``method="full"``; ``weights=`` and ``offset=`` as :func:`bayeslmm.glmer`).
    se
        The column of known standard errors (meta-analysis; brms ``y | se(se)``): row
        ``i``'s residual is ``N(0, se_i^2)`` and there is no ``sigma`` parameter. The
        compiled marginal sampler divides the rows by their standard errors, integrates
        the random effects out with the residual SD fixed at 1 and draws them exactly
        afterwards (eight schools: ``bl.LMM("y ~ 1 + (1 | school)", schools,
        se="sigma")``); fitted values are on the data's scale. Needs the compiled
        density (nutpie; priors of the families it covers); results that need an
        estimated residual variance (ICC, R2, predictive draws, pointwise
        log-likelihood, bridge sampling) are refused.
    extra_sigma
        With ``se``: an extra residual SD ``sigma`` beside the known standard errors (row
        ``i``'s residual variance ``se_i^2 + sigma^2``, brms ``y | se(se, sigma =
        TRUE)``, metafor's ``rma``'s tau^2 for ``y ~ 1``), with its usual prior
        (``"sigma"``); sampled with explicit random effects on the PyMC graph
        (``method=None`` or ``"full"``, any graph sampler), a formula without random
        terms allowed.
    weights
        Taken by the non-Gaussian families only (trials of a proportion). For a Gaussian
        model it is refused: lme4's ``lmer(weights=)`` means residual variance ``sigma^2 /
        w_i`` with sigma estimated, a different model from known standard errors (``se=``).

    Examples
    --------
    >>> import bayeslmm as bl
    >>> model = bl.LMM("Reaction ~ Days + (Days | Subject)", bl.load_dataset("sleepstudy"))
    >>> idata = model.fit(draws=500, chains=2, random_seed=1)  # doctest: +SKIP
    >>> model.summary()  # doctest: +SKIP
    """

    def __new__(cls, *args, **kwargs):
        """A non-Gaussian ``family`` makes a :class:`~bayeslmm.bayes.model.GLMM`."""
        family = kwargs.get("family", args[5] if len(args) > 5 else None)
        if cls is LMM and family is not None and get_family(family).name != "gaussian":
            if kwargs.get("se") is not None:
                raise ArgumentError("se= (known standard errors) is for the Gaussian family; "
                                    f"family {family!r} has no residual SD")  # fmt: skip
            return super().__new__(GLMM)
        return super().__new__(cls)

    def __init__(
        self,
        formula: str | Design,
        data: pd.DataFrame | None = None,
        priors: Mapping[str, Prior] | None = None,
        parametrization: str = "noncentered",
        residual: ResidualStructure | None = None,
        family: str = "gaussian",
        link: str | None = None,
        se: str | None = None,
        weights: str | None = None,
        extra_sigma: bool = False,
    ):
        check_gaussian(get_family(family, link), "bl.LMM")
        refuse_gaussian_weights(weights, "bl.LMM")
        if not isinstance(extra_sigma, bool):
            raise ArgumentError(f"extra_sigma must be True or False, got {extra_sigma!r}")
        if extra_sigma and se is None:
            raise ArgumentError("extra_sigma=True is a residual SD beyond known standard "
                                "errors: give se='column' too")  # fmt: skip
        self.extra_sigma = extra_sigma
        if not isinstance(parametrization, str) or parametrization not in PARAMETRIZATIONS:
            raise ArgumentError(
                f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}"
            )
        if se is not None:
            self._known_se_design(formula, data, residual, se, priors)
        else:
            self.design: Design = design_from(formula, data, residual, SUMMARIES, "bl.LMM()")
        warn_gaussian_misuse(self.design)
        self.formula = self.design.spec.formula
        self.priors: dict[str, Prior] = resolve_priors(self.design, priors)
        if se is not None and not extra_sigma:
            del self.priors["sigma"]
        self.parametrization = parametrization
        self.idata: Results | None = None
        self.convergence: Convergence | None = None
        #: what the last fit was asked and did (None before a fit)
        self.fit_info: FitInfo | None = None

    #: known standard errors of the rows and their column (None: sigma estimated)
    known_se: np.ndarray | None = None
    se_column: str | None = None
    #: with known standard errors: also an extra residual SD sigma (residual variance
    #: se_i^2 + sigma^2, brms se(se, sigma = TRUE)), sampled on the PyMC graph
    extra_sigma: bool = False

    @property
    def _fit_design(self) -> Design:
        """The design the likelihood is computed on: with known standard errors, its rows
        divided by them (:func:`~bayeslmm.spec.known_se.scale_rows`)."""
        return self.__dict__.get("_scaled_design", self.design)

    def _known_se_design(self, formula, data, residual, se: str, priors) -> None:
        """The designs of a model with known standard errors (see the ``se`` parameter)."""
        if residual is not None:
            raise ArgumentError("bl.LMM(): se= (known standard errors) and residual= cannot "
                                "be combined")  # fmt: skip
        if priors is not None and "sigma" in priors and not self.extra_sigma:
            raise ArgumentError(f"bl.LMM(..., se={se!r}): the residual SDs are the known "
                                "standard errors, so there is no 'sigma' to give a prior")
        self.design, self._scaled_design, self.known_se = known_se_design(formula, data, se,
                                                                          "bl.LMM()")
        self.se_column = se
        if not self.design.blocks and not self.extra_sigma:
            raise FormulaError(f"{self.design.spec.formula!r} has no random term such as "
                               "(1 | study): known standard errors need one here")

    def _refuse_known_se(self, what: str) -> None:
        """An :class:`ArgumentError` for what needs an estimated residual SD."""
        if self.known_se is not None:
            raise ArgumentError(
                f"{what} is not available for a model with known standard errors "
                f"(se={self.se_column!r}): it has no residual SD parameter, and the rows' "
                "scaling by the standard errors is not carried through this yet"
            )

    @property
    def family(self) -> Family:
        """The response family: Gaussian with the identity link."""
        return get_family("gaussian")

    @property
    def _fit_info(self) -> dict:
        """:attr:`fit_info` as the dict of earlier versions (``{}`` before a fit)."""
        return {} if self.fit_info is None else self.fit_info.as_dict()

    @_fit_info.setter
    def _fit_info(self, value: dict) -> None:
        self.fit_info = FitInfo.from_dict(value) if value else None

    def __repr__(self) -> str:
        """The lme4-like summary block of a fitted model (:meth:`summary`); one line
        before the fit."""
        if self.idata is None:
            return f"LMM({self.formula!r}, n={self.design.n_obs}, not fitted)"
        return repr(self.summary(print_it=False))

    def _needs_rows(self, what: str, instead: str) -> None:
        """Refuse ``what`` for a design whose rows stay in a Dask DataFrame."""
        if not self.design.rows_in_memory:
            raise RowsNotInMemoryError(
                f"{what} needs the {self.design.n_obs} rows in memory, and {self.formula!r} "
                f"was fitted from a Dask DataFrame; {instead}"
            )

    @cached_property
    def pymc_model(self) -> pm.Model:
        """The PyMC model with explicit random effects (built on first use)."""
        self._needs_rows("the explicit model (method='full')",
                         "the marginal model (method='marginal', the default) needs only the "
                         "data's sums")  # fmt: skip
        from .explicit_graph import build_full_model

        return build_full_model(self.design, self.priors, self.parametrization,
                                known_se=self.known_se if self.extra_sigma else None)

    @property
    def default_target_accept(self) -> float:
        """0.9, or 0.99 when some grouping factor has at most :data:`FEW_LEVELS` levels or
        no more levels than its random-effect covariance has parameters."""
        parameters: dict[str, int] = {}
        for b in self.design.blocks:
            q = b.n_terms
            parameters[b.group] = parameters.get(b.group, 0) + (
                q * (q + 1) // 2 if b.correlated else q
            )
        few = any(b.n_levels <= max(FEW_LEVELS, parameters[b.group]) for b in self.design.blocks)
        return 0.99 if few else 0.9

    def _route_target_accept(self, density: MarginalDensity | None) -> float:
        """The default ``target_accept`` of a fit sampling ``density`` (None: a PyMC
        graph): :attr:`default_target_accept` (a GLMM's depends on the route)."""
        return self.default_target_accept

    @property
    def residual_structure(self) -> ResidualStructure | None:
        """The residual correlation structure given (None: independent residuals); in words
        by ``model.design.residual.describe()``."""
        return self.design.residual.structure if self.design.residual is not None else None

    @cached_property
    def residual_model(self) -> ResidualModel | None:
        """The residual structure's weights and weighted statistics (built on first use)."""
        return ResidualModel(self.design) if self.design.residual is not None else None

    @cached_property
    def residual_system(self) -> ResidualSystem | None:
        """:attr:`blocked_system` weighted by ``R(phi)^-1`` at any phi (residual structures)."""
        if self.residual_model is None:
            return None
        return ResidualSystem(self.residual_model, self.explicit_factors, self.blocked_system)

    def _crossing_residual(self) -> list[str]:
        """Grouping factors some residual group spans several levels of."""
        if self.design.residual is None:
            return []
        return non_nested_factors(self.design.residual, self.design.blocks)

    @property
    def marginal_supported(self) -> bool:
        """Can ``method="marginal"`` integrate the random effects out? Yes for every model
        with random effects (one grouping factor, nested or crossed factors), unless a
        residual structure's groups span several levels of a grouping factor."""
        return bool(self.design.blocks) and not self._crossing_residual()

    @property
    def explicit_factors(self) -> tuple[str, ...]:
        """Grouping factors whose random effects the marginal sampler samples (non-centred)
        instead of integrating them out: those that would make the factorised system's
        dense block too large (:func:`bayeslmm.gaussian.blocked.choose_explicit`). None
        with a residual correlation structure: its models run on PyMC's graph, whose
        blocked Op integrates every factor out."""
        return self._explicit

    @cached_property
    def _explicit(self) -> tuple[str, ...]:
        return () if self.design.residual is not None else choose_explicit(self.design)

    @property
    def centred_terms(self) -> dict[str, tuple[str, ...]]:
        """Per sampled grouping factor, the terms whose effects are parameters themselves
        (centred); its other terms are non-centred (``u = chol(D) z``).

        A term is centred where the data pin its levels' effects down better than their
        spread does: the effects' variance, estimated by a two-stage fit
        (:meth:`~bayeslmm.gaussian.statistics.BlockedStats.level_spread`), exceeds the
        median sampling variance of a level's own estimate. That is the rule for which
        parametrisation of a Gaussian hierarchy mixes faster (Papaspiliopoulos, Roberts &
        Skold 2007). Subjects x items with slopes on both factors: items' intercepts
        (56 rows per item) centred, their slopes not; bulk ESS of the item intercepts' SD
        657 -> 4346 (all centred: the slopes' SDs fall to ~40). InstEval's instructors
        (~65 ratings each) are centred (docs/marginal.md).
        """
        names = {f.group: [n for k in f.blocks for n in self.design.blocks[k].columns]
                 for f in self.blocked_system.stats.factors}  # fmt: skip
        return {group: tuple(n for n, c in zip(names[group], flags, strict=True) if c)
                for group, flags in self._centring().items()}  # fmt: skip

    def _centring(self) -> dict[str, tuple[bool, ...]]:
        """:attr:`centred_terms` as flags per sampled factor and term (node order)."""
        return self._centred

    @cached_property
    def _centred(self) -> dict[str, tuple[bool, ...]]:
        return centring(self.blocked_system.stats, self._level_spread)

    @property
    def signed_terms(self) -> dict[str, tuple[str, ...]]:
        """Per grouping factor, the terms whose SD the compiled sampler draws as a signed
        value ``x`` with ``sd = |x|`` (the others as ``log sd``).

        The density is even in ``x``, so the posterior of the SD is the same either way;
        what differs is its shape. Where the data leave an SD of zero plausible, ``log sd``
        has a long tail towards minus infinity and mixes slowly, while ``x`` has a smooth
        bump around zero; where the SD is clearly positive, ``log sd`` is the rounder. A
        term is signed where the two-stage estimate leaves a spread of zero more than
        :data:`~bayeslmm.bayes.centring.SIGNED_ABOVE` likely
        (:attr:`~bayeslmm.gaussian.statistics.LevelSpread.zero_probability`), its
        likelihood at zero is within :data:`~bayeslmm.bayes.centring.SIGNED_DEPTH` nats of
        its best (few levels far apart: a wall at ``x = 0`` otherwise), and its
        effects are not centred (a centred effect's prior density has no limit at
        ``sd = 0``). Only SD priors with a finite, smooth density at zero qualify
        (half-normal, half-t, half-Cauchy, half-flat). Subjects x items with independent
        slopes: smallest bulk ESS 514-1210 -> about 2000 (docs/marginal.md).
        """
        names = {f.group: [n for k in f.blocks for n in self.design.blocks[k].columns]
                 for f in self.blocked_system.stats.factors}  # fmt: skip
        return {group: tuple(n for n, c in zip(names[group], flags, strict=True) if c)
                for group, flags in self._signing().items()}  # fmt: skip

    def _signing(self) -> dict[str, tuple[bool, ...]]:
        """:attr:`signed_terms` as flags per factor and term (node order)."""
        return self._signed

    @cached_property
    def _signed(self) -> dict[str, tuple[bool, ...]]:
        return signing(self.blocked_system.stats, self._level_spread, self._centring(),
                       self.design, self.priors)  # fmt: skip

    def _sd_start(self) -> dict[str, tuple[float, ...]]:
        """Where the sampler's SDs start (:func:`~bayeslmm.bayes.centring.sd_start`)."""
        return sd_start(self.blocked_system.stats, self._level_spread)

    def _level_spread(self, index: int) -> LevelSpread | None:
        return self._spreads[index]

    @cached_property
    def _spreads(self) -> list[LevelSpread | None]:
        """The two-stage spread of every grouping factor's levels, in node order."""
        stats = self.blocked_system.stats
        return [stats.level_spread(index) for index in range(len(stats.factors))]

    @cached_property
    def blocked_system(self) -> BlockedSystem:
        """Statistics and symbolic factorisation of the penalised system (built on first use)."""
        return BlockedSystem(BlockedStats.from_design(self._fit_design, self.explicit_factors))

    @cached_property
    def marginal_model(self) -> pm.Model:
        """The PyMC model with the random effects integrated out (built on first use).

        A pure PyTensor graph with one grouping factor or two nested ones (any PyMC
        sampler runs it); otherwise the blocked Cholesky enters as one Op, which only
        PyMC's own sampler runs.
        """
        if not self.marginal_supported:
            raise ArgumentError(f"{self.formula!r} has no random effects to integrate out")
        from .marginal_graph import build_marginal_model

        design = self.design
        if single_grouping_factor(design):
            stats = GroupStats.from_design(design)
        elif nested_grouping_factors(design) is not None:
            stats = NestedStats.from_design(design)
        else:
            stats = None
        return build_marginal_model(
            design, self.priors, stats, self.blocked_system, self.residual_model,
            self.residual_system if stats is None else None,
        )  # fmt: skip

    @property
    def graph_samplers(self) -> tuple[str, ...]:
        """The samplers that can run :attr:`marginal_model` (JAX cannot trace the blocked Op)."""
        pure = single_grouping_factor(self.design) or nested_grouping_factors(self.design)
        return ("pymc", "nutpie", "numpyro") if pure else ("pymc",)

    @property
    def compiled_density(self) -> MarginalDensity | None:
        """The marginal model's hand-compiled log density (:mod:`bayeslmm.bayes.density`), or
        None where it does not cover the model (a prior family it lacks, a residual
        correlation structure); the PyMC graph serves then."""
        if not self.marginal_supported or self.design.residual is not None:
            return None
        if self.known_se is not None:
            return MarginalDensity.from_known_se(self._fit_design, self.known_se, self.priors,
                                                 self.blocked_system, self._centring(),
                                                 self._signing(), self._sd_start())
        return MarginalDensity.from_model(self.design, self.priors, self.blocked_system,
                                          self._centring(), self._signing(),
                                          self._sd_start())  # fmt: skip

    def _density_for(self, method: str, chosen: str | None, sampler: str
                     ) -> MarginalDensity | None:  # fmt: skip
        """The compiled density a fit may run: the marginal model's."""
        return self.compiled_density if method == "marginal" else None

    def _choose_sampler(self, sampler: str, method: str, chosen: str | None,
                        density: MarginalDensity | None, n_effects: int
                        ) -> tuple[str, str, bool]:  # fmt: skip
        """:func:`~bayeslmm.bayes.sampling.choose_sampler` for this model."""
        return choose_sampler(sampler, method, chosen, density is not None,
                              self.graph_samplers, n_effects, self.formula)  # fmt: skip

    def _resolve_method(self, method: str | None) -> str:
        if method is not None and (not isinstance(method, str) or method not in METHODS):
            raise ArgumentError(f"method must be one of {METHODS} or None, got {method!r}")
        if not self.marginal_supported and not self.design.rows_in_memory:
            raise RowsNotInMemoryError(
                f"{self.formula!r} has no random effects to integrate out, so it would be "
                "sampled row by row, and its data are a Dask DataFrame whose rows stay on the "
                "cluster; add a random term, or fit a pandas DataFrame"
            )
        if method == "full":
            self._needs_rows("method='full'", "use method='marginal' (the default)")
        if method is None:
            return "marginal" if self.marginal_supported else "full"
        crossing = self._crossing_residual() if self.design.blocks else []
        if method == "marginal" and crossing:
            raise ArgumentError(
                f"method='marginal' integrates the random effects out with correlated "
                f"residuals only where each residual group of {self.design.residual.group!r} "
                f"lies within one level of every grouping factor; it spans several levels of "
                f"{crossing}: use method='full' (explicit random effects) or None"
            )
        if method == "marginal" and not self.marginal_supported:
            warn(
                f"method='marginal' integrates random effects out, and {self.formula!r} has "
                "none: the model is sampled as it is (method='full')"
            )
            return "full"
        return method

    def population_variables(self) -> list[str]:
        """Posterior variables of population parameters (for diagnostics and trace plots)."""
        names = ["beta"] if self.design.X.shape[1] else []
        for block in self.design.blocks:
            names.append(f"sd_{block.label}")
            if block.correlated:
                names.append(f"cor_{block.label}")
        if self.known_se is None or self.extra_sigma:
            names.append("sigma")
        if self.design.residual is not None:
            names.append(self.design.residual.parameter)
        return names

    def fit(
        self,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        cores: int | None = None,
        random_seed: int | None = None,
        target_accept: float | None = None,
        progressbar: bool = True,
        sampler: str = "auto",
        method: str | None = None,
        store_log_likelihood: bool | None = None,
    ) -> Results:
        """Sample the posterior with NUTS.

        Parameters
        ----------
        draws, tune, chains
            Kept draws, tuning steps and chains.
        cores
            Parallel chains (default: ``min(chains, CPU count)``).
        random_seed
            Same seed, same draws.
        target_accept
            NUTS step-size adaptation target. ``None`` (default): 0.9, or 0.99 when a
            grouping factor has at most :data:`FEW_LEVELS` levels, or no more levels than
            its covariance has parameters (its SDs are then barely identified, and smaller
            steps avoid divergent transitions: on the rat pups' 3 treatments, 0.9 gave
            divergences in 4 of 5 seeds, 0.99 in none; on nlme's Machines, 6 workers with
            ``(Machine | Worker)``'s 6 covariance parameters, 5 of 5 and none).
        progressbar
            Show the sampler's progress bar.
        sampler
            ``"pymc"``, ``"nutpie"`` or ``"numpyro"``. ``"auto"`` (default): nutpie on
            the compiled marginal density (:mod:`bayeslmm.bayes.density`) where it covers the
            model, else numpyro for models with up to 10,000 random effects when it is
            installed, else PyMC's NUTS (see :func:`bayeslmm.bayes.sampling.default_sampler`).
            ``"nutpie"`` uses the compiled density where it can, PyMC's graph otherwise.
        method
            ``"marginal"``: sample the population parameters with the random effects
            integrated out, then draw the random effects exactly (every design: one
            grouping factor, nested or crossed; a factor that would make the factored
            system's dense block large is sampled instead, see :attr:`explicit_factors`
            and :attr:`centred_terms`). ``"full"``: the explicit model. ``None``
            (default): ``"marginal"``, unless the requested sampler cannot run it
            (numpyro on crossed factors), then ``"full"``. A GLMM (``family=``) takes
            ``None`` (the exact default: every random effect sampled on the compiled
            density), ``"full"`` (the PyMC graph) or ``"laplace"``: APPROXIMATE, nutpie on
            the Laplace marginal posterior (canonical links), random effects drawn from the
            Laplace Gaussian afterwards; its tables and summary say so.
        store_log_likelihood
            Add the pointwise ``log_likelihood`` group (for ``az.loo``); by default only
            while rows x draws stays under 50 million values (it is stored in memory), and
            never for a Dask DataFrame (``True`` is refused there: leave-one-group-out,
            ``bl.loo_compare(..., by="group")``, needs only sums).

        Returns
        -------
        arviz.InferenceData
            With posterior, sample_stats, observed_data and log_likelihood groups (a Dask
            DataFrame's fit: posterior and sample_stats).
            Warns (:class:`ConvergenceWarning`) on R-hat > 1.01, bulk or tail ESS < 400
            or divergences, over the population parameters (and, with
            ``method="full"``, the random effects, which NUTS then samples too).
        """
        asked = FitSettings(draws=draws, tune=tune, chains=chains, cores=cores,
                            random_seed=random_seed, target_accept=target_accept,
                            progressbar=progressbar, sampler=sampler, method=method,
                            store_log_likelihood=store_log_likelihood)  # fmt: skip
        if target_accept is None:
            target_accept = self.default_target_accept
        check_settings(draws=draws, tune=tune, chains=chains, cores=cores,
                       random_seed=random_seed, target_accept=target_accept,
                       progressbar=progressbar)  # fmt: skip
        if sampler != "auto":
            check_sampler(sampler)
        if store_log_likelihood is not None and not isinstance(store_log_likelihood, bool):
            raise ArgumentError(
                f"store_log_likelihood must be True, False or None, got {store_log_likelihood!r}"
            )
        if store_log_likelihood:
            self._needs_rows("store_log_likelihood=True (a value per row and draw)",
                             "leave it off; leave-one-group-out (bl.loo_compare(..., "
                             "by='group')) needs only sums")  # fmt: skip
        if cores is None:
            cores = min(chains, os.cpu_count() or 1)
        chosen = method
        if self.extra_sigma:  # the PyMC graph only: the compiled density lacks sigma here
            if method not in (None, "full"):
                raise ArgumentError(f"extra_sigma=True is sampled with explicit random effects "
                                    f"on the PyMC graph (method None or 'full'), not "
                                    f"method={method!r}")  # fmt: skip
            method = "full"
        method = self._resolve_method(method)
        density = self._density_for(method, chosen, sampler)
        n_effects = sum(b.n_levels * b.n_terms for b in self.design.blocks)
        sampler, method, compiled = self._choose_sampler(sampler, method, chosen, density,
                                                         n_effects)  # fmt: skip
        if asked.target_accept is None:  # the route's own default
            target_accept = self._route_target_accept(density if compiled else None)
        if self.known_se is not None:
            if not compiled and not self.extra_sigma:
                raise ArgumentError(
                    f"known standard errors (se={self.se_column!r}) are sampled on the "
                    f"compiled marginal density only (sampler 'auto' or 'nutpie', method "
                    f"None or 'marginal', priors of the families it covers); got sampler "
                    f"{sampler!r}, method {method!r}"
                )
            if store_log_likelihood:
                self._refuse_known_se("store_log_likelihood=True")
            store_log_likelihood = False
        settings = {"draws": draws, "tune": tune, "chains": chains, "cores": cores,
                    "random_seed": random_seed, "target_accept": target_accept,
                    "progressbar": progressbar}  # fmt: skip
        # xarray asks of each array whether it is dask's, sparse's...: not by importing them
        with stack.array_libraries_unimported():
            start = time.perf_counter()
            if compiled:
                check_sampler(sampler)
                idata = sample_compiled(density, self.design, **settings)
            else:
                density = None
                model = self.marginal_model if method == "marginal" else self.pymc_model
                idata = sample_nuts(model, sampler=sampler, **settings)
            if method == "marginal":
                effects = draw_random_effects(idata, self.design, self.blocked_system, random_seed,
                                              self.residual_system)  # fmt: skip
                stack.set_group(idata, "posterior", stack.posterior(idata).assign(effects))
                stack.drop_group(idata, "observed_data")
                if self.design.rows_in_memory:
                    obs = {"obs": np.arange(self.design.n_obs)}
                    y = xr.DataArray(self.design.y, dims="obs", coords=obs)
                    stack.set_group(idata, "observed_data", xr.Dataset({self.design.response: y}))
            elif compiled:  # every effect sampled on the compiled density (a GLMM)
                if method == "laplace":  # APPROXIMATE draws of the effects integrated out
                    idata = self._laplace_effects(idata, random_seed)
                stack.set_group(idata, "observed_data", self._observed_data())
            seconds = time.perf_counter() - start
            if store_log_likelihood is None:
                size = self.design.n_obs * draws * chains
                store_log_likelihood = self.design.rows_in_memory and size <= LOG_LIKELIHOOD_MAX
            if store_log_likelihood:
                stack.set_group(idata, "log_likelihood", self._log_likelihood(idata))
            self.idata = idata
            self.fit_info = FitInfo(
                settings=asked, sampler=sampler, method=method, target_accept=target_accept,
                log_density=("PyMC graph" if density is None else "bayeslmm (numba)"
                             if method != "laplace" else LAPLACE_LOG_DENSITY),
                mass_matrix=mass_matrix_name(density, tune),
                seconds=seconds,
            )  # fmt: skip
            self.convergence = self._check_convergence()
            self.fit_info = dataclasses.replace(self.fit_info,
                                                divergences=int(self.convergence.divergences))
        warn_convergence(self.convergence, self.formula)
        return idata

    def _log_likelihood(self, idata: Results) -> xr.Dataset:
        """The pointwise log-likelihood group of a fit (:func:`~bayeslmm.bayes.predict.
        log_likelihood`)."""
        return log_likelihood(idata, self.design)

    def _check_convergence(self) -> Convergence:
        """R-hat, ESS and divergences of the fit in ``self.idata`` (as :attr:`fit_info` says
        it was sampled). NUTS moved the population parameters only in the marginal model; its
        random effects are exact draws given each of them, so their mixing is the
        parameters'."""
        info = self.fit_info
        check_vars = self.population_variables()
        if info is not None and info.method == "full":
            check_vars += [f"u_{b.label}" for b in self.design.blocks]
        return check_convergence(self.idata, check_vars,
                                 target_accept=info.target_accept if info else None)

    def _posterior(self) -> Results:
        if self.idata is None:
            raise NotFittedError("the model is not fitted yet: call model.fit() first")
        return self.idata

    def summary(self, print_it: bool | None = None, level: float | None = None, *,
                hdi_prob: float | None = None) -> pd.DataFrame:  # fmt: skip
        """lme4-like summary of the posterior, returned as a DataFrame whose printed form
        (``repr``: what a REPL or notebook shows) is the lme4-like block.

        Rows: random-effect SDs and correlations, residual SD (``sigma``), fixed
        effects; columns: mean, sd, HDI (``level``, 94% by default as in ArviZ),
        MCSE, bulk/tail ESS and R-hat. ``print_it``: also print the block (default: in a
        script, not at an interactive prompt, which shows the returned value once).
        ``hdi_prob`` is the deprecated old name of ``level``.
        """
        from ..tables import summary_object
        from .text import format_summary, interactive

        if print_it is not None and not isinstance(print_it, bool | np.bool_):
            raise ArgumentError(f"print_it must be True, False or None, got {print_it!r}")
        level = interval_level(level, hdi_prob, HDI_PROB)
        table = summary_table(self._posterior(), self.design, level)
        text = format_summary(self, table)
        if print_it or (print_it is None and not interactive()):
            print(text)
        return summary_object(table, text)

    def fixef(self, level: float | None = None, *, hdi_prob: float | None = None
              ) -> pd.DataFrame:  # fmt: skip
        """Posterior summary of the fixed effects (rows named as lme4 does): mean, sd, HDI
        (``level``, default 0.94), MCSE, ESS, R-hat. ``bl.lmer(...).fixef()`` has the same
        rows with estimate, SE and a confidence interval."""
        table = summary_table(self._posterior(), self.design,
                              interval_level(level, hdi_prob, HDI_PROB))  # fmt: skip
        return table.loc[table["component"] == "fixed"].drop(columns="component")

    def ranef(self, level: float | None = None, *, hdi_prob: float | None = None
              ) -> dict[str, pd.DataFrame]:  # fmt: skip
        """Random effects per grouping factor: rows (level, term); mean, sd, HDI
        (``level``, default 0.94). ``bl.lmer(...).ranef(condvar=True)`` has the same
        layout (estimate, SE, interval)."""
        return ranef_table(self._posterior(), self.design,
                           interval_level(level, hdi_prob, HDI_PROB))  # fmt: skip

    def coef(self) -> dict[str, pd.DataFrame]:
        """Fixed + random coefficients per level (posterior means), as lme4's ``coef``:
        per grouping factor, levels x coefficients (as ``bl.lmer(...).coef()``)."""
        return coef_table(self._posterior(), self.design)

    def group_coefficients(self, group: str | None = None) -> xr.DataArray:
        """Draws of fixed + random coefficients per level: (chain, draw, level, coef)."""
        if not self.design.blocks:
            raise ArgumentError("the model has no random terms, so no group coefficients")
        group = group or next(iter(self.design.groups()))
        return group_coefficient_draws(self._posterior(), self.design, group)

    def _mean_effects(self) -> tuple[np.ndarray, list[np.ndarray]]:
        post = stack.posterior(self._posterior())
        beta = (post["beta"].mean(("chain", "draw")).values if "beta" in post
                else np.zeros(self.design.n_fixed))  # fmt: skip
        effects = [post[f"u_{b.label}"].mean(("chain", "draw")).values for b in self.design.blocks]
        return beta, effects

    def fitted(self):
        """Posterior mean of the conditional mean ``X beta + Z u`` of every fitted row
        (lme4's ``fitted``; as ``bl.lmer(...).fitted()``).

        For a Dask DataFrame's fit: a lazy Dask Series (one value per row kept, indexed by
        the rows' labels), to ``.compute()`` or write out on the cluster.
        """
        beta, effects = self._mean_effects()
        if not self.design.rows_in_memory:
            return self.design.map_rows(partial(_mean_rows, beta, effects), "fitted")
        return _mean_rows(beta, effects, self.design.rows())

    def fitted_mean(self):
        """Deprecated old name of :meth:`fitted` (warns; same result)."""
        deprecated("LMM.fitted_mean()", "LMM.fitted()")
        return self.fitted()

    def residuals(self):
        """Response minus :meth:`fitted`, for every fitted row (lazy for a Dask
        DataFrame's fit, as :meth:`fitted`)."""
        beta, effects = self._mean_effects()
        if not self.design.rows_in_memory:
            return self.design.map_rows(partial(_residual_rows, beta, effects), "residual")
        return _residual_rows(beta, effects, self.design.rows())

    def varcorr(self, level: float | None = None, *, hdi_prob: float | None = None
                ) -> pd.DataFrame:  # fmt: skip
        """Variance components (SDs, correlations, residual SD) in lme4's layout: ``grp``,
        ``var1``, ``var2`` (as ``bl.lmer(...).varcorr()``), the parameter's name, posterior
        mean, sd and HDI (``level``, default 0.94)."""
        table = summary_table(self._posterior(), self.design,
                              interval_level(level, hdi_prob, HDI_PROB))  # fmt: skip
        return varcorr_table(table, self.design)

    def icc(self, level: float | None = None, *, hdi_prob: float | None = None
            ) -> pd.DataFrame:  # fmt: skip
        """Intraclass correlations, computed for every posterior draw.

        Nakagawa & Schielzeth's ICC, as R's ``performance::icc`` (variances as
        ``insight::get_variance``: :mod:`bayeslmm.gaussian.partition`). Rows: every
        grouping factor (its variance over random + residual variance; with random slopes
        its mean variance over the fitted rows), ``adjusted`` (random / (random +
        residual)) and ``conditional`` (random / (fixed + random + residual)); columns
        ``component`` (``group`` or ``total``), posterior mean, sd and HDI (``level``,
        default 0.94; ``hdi_prob``: its deprecated old name). With AR(1) or
        compound-symmetric residuals the residual variance is ``sigma^2``, each residual's
        variance. Raises :class:`ArgumentError` for a model without random effects.
        """
        self._refuse_known_se("icc()")
        draws = icc_draws(self._posterior(), self.design)
        return draws_table(draws, interval_level(level, hdi_prob, HDI_PROB),
                           icc_kinds(self.design))  # fmt: skip

    def r2(self, level: float | None = None, *, hdi_prob: float | None = None
           ) -> pd.DataFrame:  # fmt: skip
        """Bayesian R2 (Gelman, Goodrich, Gabry & Vehtari 2019), as brms' ``bayes_R2``.

        Per draw ``var(mu) / (var(mu) + var(y - mu))`` over the fitted rows; row
        ``conditional``: ``mu = X beta + Z u``, row ``marginal``: ``mu = X beta`` (brms'
        ``re_formula = NA``). Columns: posterior mean, sd and HDI (``level``, default
        0.94; ``hdi_prob``: its deprecated old name). Needs the rows in memory (not a
        Dask DataFrame's fit).
        """
        self._refuse_known_se("r2()")
        self._needs_rows("r2() (the fitted mean of every row, per draw)",
                         "icc() needs only sums; or fit a pandas sample of the rows")  # fmt: skip
        return draws_table(r2_draws(self._posterior(), self.design),
                           interval_level(level, hdi_prob, HDI_PROB))  # fmt: skip

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
    ) -> xr.DataArray | pd.DataFrame:
        """Posterior draws of predictions for ``data`` (default: the fitted rows).

        See :func:`bayeslmm.bayes.predict.predict_draws`: ``kind="mean"`` for the mean,
        ``"response"`` for new responses (the mean plus residual noise: a prediction
        interval). ``include_random=False`` predicts ``X beta`` and needs no grouping
        columns in ``data``. ``summary=True`` returns a DataFrame instead of the draws:
        one row per row of ``data`` (its index), columns ``mean``, ``sd`` and the HDI
        (``level``, default 0.94; ``hdi_prob``: its deprecated old name). ``newdata`` is
        another name of ``data``. A Dask DataFrame's fit predicts pandas ``data`` (draws
        for every row of a Dask DataFrame would not fit in memory: :meth:`fitted` is its
        lazy posterior-mean prediction).
        """
        self._refuse_known_se("predict()")
        newdata, level = prediction_arguments(data, newdata, summary, level, hdi_prob)
        if newdata is None:
            self._needs_rows("predict() without newdata (draws for every fitted row)",
                             "pass newdata as a pandas DataFrame, or use fitted() (lazy, "
                             "on Dask)")  # fmt: skip
        elif is_dask_frame(newdata):
            raise RowsNotInMemoryError(
                "predict() returns draws for every row of newdata, which for a Dask DataFrame "
                "would not fit in memory; predict pandas pieces of it (e.g. "
                "newdata.get_partition(0).compute())"
            )
        data = self.design.frame if newdata is None else newdata
        draws = predict_draws(
            self._posterior(),
            self.design,
            data,
            include_random=include_random,
            allow_new_levels=allow_new_levels,
            kind=kind,
            random_seed=random_seed,
        )
        return prediction_table(draws, level, data.index) if summary else draws

    def log_marginal_likelihood(self, random_seed: int | None = None) -> MarginalLikelihood:
        """``log p(y)`` by bridge sampling on the marginal posterior, with its Monte Carlo
        error (:mod:`bayeslmm.bayes.evidence`); computed once per fit and kept (a call
        without a seed reuses any earlier result).
        """
        self._refuse_known_se("log_marginal_likelihood() (bridge sampling)")
        from .evidence import log_marginal_likelihood

        idata = self._posterior()
        cached = getattr(self, "_evidence", None)
        if cached and cached[0] is idata and random_seed in (None, cached[1]):
            return cached[2]
        result = log_marginal_likelihood(self, random_seed=random_seed)
        self._evidence = (idata, random_seed, result)
        return result

    def posterior_predictive(self, random_seed: int | None = None) -> Results:
        """Add a ``posterior_predictive`` group (for ``az.plot_ppc``) and return the data."""
        self._refuse_known_se("posterior_predictive()")
        check_seed("random_seed", random_seed)
        self._needs_rows("posterior_predictive() (replicated data sets, one value per row and "
                         "draw)", "check the model on a pandas sample of the rows")  # fmt: skip
        import pymc as pm

        idata = self._posterior()
        with quiet_pymc():
            pm.sample_posterior_predictive(
                idata,
                model=self.pymc_model,
                var_names=[self.design.response],
                extend_inferencedata=True,
                random_seed=random_seed,
                progressbar=False,
            )
        return idata

    def conditional_effects(
        self, effect: str, by: str | None = None, level: float | None = None, *,
        hdi_prob: float | None = None,
    ) -> ConditionalEffects:
        """The posterior of the fixed-effects prediction along ``effect`` (brms'
        ``conditional_effects``), optionally by a second variable.

        Random effects are left out (brms' default ``re_formula = NA``). ``effect`` runs
        over 100 points of its fitted range, or over the levels of a factor; ``by`` takes
        each of its levels, or a covariate's mean - sd, mean and mean + sd (brms' default
        for a numeric variable in an interaction). Every other variable is held at its
        mean (covariates) or reference, i.e. first, level (factors), as brms' default
        ``conditions`` do; the table's ``conditions`` say which values. brms summarises
        by the median and a 95% quantile interval; here, as in :meth:`summary`, by the
        posterior mean, sd and HDI (``level``, default 0.94; ``hdi_prob``: its deprecated
        old name).

        Returns
        -------
        ConditionalEffects
            ``.table`` (grid values, posterior ``mean``, ``sd``, HDI) and ``.plot()``.
        """
        from .conditional import conditional_effects

        return conditional_effects(self, effect, by, interval_level(level, hdi_prob, HDI_PROB))

    def marginal_means(self, specs: str | list[str], level: float | None = None, *,
                       hdi_prob: float | None = None) -> pd.DataFrame:  # fmt: skip
        """Posterior of the marginal means of the factor(s) ``specs`` (emmeans' reference
        grid): every factor of the fixed part at each level, numeric covariates at their
        means, averaged with equal weights over the factors not in ``specs``; random
        effects left out. One row per cell (the first spec varying fastest, as emmeans):
        the levels, then the posterior ``mean``, ``sd`` and HDI (``level``, default 0.94;
        ``hdi_prob``: its deprecated old name).
        ``bl.lmer(...).marginal_means`` gives emmeans' estimates, SE and df."""
        from .conditional import marginal_means

        return marginal_means(self, specs, interval_level(level, hdi_prob, HDI_PROB))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to one netCDF file: every group of the posterior, the
        rows it was fitted to, the formula, priors, residual structure, sampler settings,
        data digests and the versions that wrote it (:mod:`bayeslmm.bayes.persist`).
        ``bl.load(path)`` gives it back, fitted, in any process. Returns the path."""
        self._refuse_known_se("save()")
        from .records import save

        return save(self, path)

    def prior_predictive(self, draws: int = 500, random_seed: int | None = None):
        """Draws of every parameter and of the response from the priors alone.

        Built by PyMC from the explicit model (:attr:`pymc_model`), as
        :meth:`posterior_predictive` builds its group, so the result is the container
        the fit returns (an ArviZ ``InferenceData`` today) with groups ``prior``
        (parameters), ``prior_predictive`` (the response, dims ``(chain, draw, obs)``)
        and ``observed_data``. Needs no fit; the fit (``model.idata``) is not changed.
        Figure: :func:`bayeslmm.plots.prior_predictive`.

        Parameters
        ----------
        draws
            Prior draws (one chain).
        random_seed
            Same seed, same draws.
        """
        self._refuse_known_se("prior_predictive()")
        check_settings(draws=draws, tune=0, chains=1, cores=None, random_seed=random_seed,
                       target_accept=None, progressbar=False)  # fmt: skip
        self._needs_rows("prior_predictive() (simulated data sets, one value per row and "
                         "draw)", "check the priors on a pandas sample of the rows")  # fmt: skip
        flat = [name for name, prior in self.priors.items() if prior.dist in ("Flat", "HalfFlat")]
        if flat:
            raise PriorError(
                f"prior_predictive() draws from the priors, and {flat} have improper "
                f"({', '.join(sorted({self.priors[n].dist for n in flat}))}) priors that "
                "cannot be drawn from; give them proper priors"
            )
        import pymc as pm

        with quiet_pymc():
            return pm.sample_prior_predictive(
                draws=draws, model=self.pymc_model, random_seed=random_seed
            )


class GLMM(GlmMixin, LMM):
    __doc__ = GlmMixin.__doc__


def _mean_rows(beta: np.ndarray, effects: list[np.ndarray], rows: Rows) -> np.ndarray:
    """``X beta + sum_k rowwise(Z_k u_k[codes_k])`` of some rows."""
    mu = rows.X @ beta
    for Z, codes, u in zip(rows.Z, rows.codes, effects, strict=True):
        mu = mu + np.einsum("nq,nq->n", Z, u[codes])
    return np.broadcast_to(mu, (rows.n,)).astype(float)


def _residual_rows(beta: np.ndarray, effects: list[np.ndarray], rows: Rows) -> np.ndarray:
    return rows.y - _mean_rows(beta, effects, rows)
