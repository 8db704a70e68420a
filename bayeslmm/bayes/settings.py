"""What a fit was asked (:class:`FitSettings`) and what it did (:class:`FitInfo`).

:meth:`bayeslmm.LMM.fit` takes its settings as keywords, and every function that fits
LMMs for the user (:func:`bayeslmm.compare`, :func:`bayeslmm.compare_random_effects`, the
command line) passes them on as one :class:`FitSettings`, checked once, instead of
copying the list of keywords. A fitted model's :attr:`~bayeslmm.LMM.fit_info` says what
ran: the settings, the sampler and method chosen, the target acceptance used, the
log density, the mass matrix, the sampling time and the divergences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ArgumentError
from .sampling import check_sampler, check_settings

#: ``method=`` values of :meth:`~bayeslmm.LMM.fit` (None: chosen per model).
METHODS = ("marginal", "full")


@dataclass(frozen=True)
class FitSettings:
    """The settings of :meth:`bayeslmm.LMM.fit`, with its defaults (see there)."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    cores: int | None = None
    random_seed: int | None = None
    target_accept: float | None = None
    progressbar: bool = True
    sampler: str = "auto"
    method: str | None = None
    store_log_likelihood: bool | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names: the keywords :meth:`~bayeslmm.LMM.fit` takes."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], caller: str = "fit()") -> FitSettings:
        """Settings from keywords; an unknown keyword is an :class:`ArgumentError`
        naming it (nothing is checked else: see :meth:`check`)."""
        unknown = sorted(set(kwargs) - set(cls.names()))
        if unknown:
            raise ArgumentError(f"{caller} got unknown argument(s) {unknown}; it passes "
                                f"{list(cls.names())} on to LMM.fit()")  # fmt: skip
        return cls(**kwargs)

    def check(self) -> FitSettings:
        """The settings, checked before anything is compiled or sampled (an
        :class:`ArgumentError` names the one at fault)."""
        check_settings(draws=self.draws, tune=self.tune, chains=self.chains, cores=self.cores,
                       random_seed=self.random_seed, target_accept=self.target_accept,
                       progressbar=self.progressbar)  # fmt: skip
        if self.sampler != "auto":
            check_sampler(self.sampler)
        if self.method is not None and (not isinstance(self.method, str)
                                        or self.method not in METHODS):  # fmt: skip
            raise ArgumentError(f"method must be one of {METHODS} or None, got {self.method!r}")
        if self.store_log_likelihood not in (None, True, False):
            raise ArgumentError(f"store_log_likelihood must be True, False or None, got "
                                f"{self.store_log_likelihood!r}")  # fmt: skip
        return self

    def kwargs(self) -> dict[str, Any]:
        """The settings as keywords of :meth:`~bayeslmm.LMM.fit`."""
        return {name: getattr(self, name) for name in self.names()}

    def replace(self, **changes: Any) -> FitSettings:
        """These settings with ``changes``."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FitInfo:
    """What a fit did.

    Attributes
    ----------
    settings
        What :meth:`~bayeslmm.LMM.fit` was asked (``target_accept=None``: the default).
    sampler
        The NUTS implementation that ran (``"nutpie"``, ``"pymc"``, ``"numpyro"``).
    method
        ``"marginal"`` (random effects integrated out, then drawn exactly), ``"full"``, or,
        for a GLMM, ``"laplace"``: APPROXIMATE, the random effects integrated out by
        Laplace's method and drawn afterwards from the Laplace Gaussian
        (:mod:`bayeslmm.bayes.laplace`).
    target_accept
        The step-size target used.
    log_density
        ``"bayeslmm (numba)"`` (the compiled density), ``"PyMC graph"``, or
        :data:`~bayeslmm.bayes.laplace.LAPLACE_LOG_DENSITY` (``method="laplace"``).
    mass_matrix
        ``"diagonal"``, ``"diagonal + low rank"`` or ``"diagonal (draws' variances)"``
        (a GLMM's, tuned for 1000 steps or more:
        :func:`~bayeslmm.bayes.sampling.draws_mass_matrix`).
    seconds
        Wall time of sampling and of the exact draws of the random effects (None: not
        recorded, a model saved before it was).
    divergences
        Divergent transitions after tuning (None: not recorded).
    """

    settings: FitSettings
    sampler: str
    method: str
    target_accept: float | None
    log_density: str | None = None
    mass_matrix: str | None = None
    seconds: float | None = None
    divergences: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The layout of the former ``LMM._fit_info`` dict (what a saved model holds)."""
        s = self.settings
        out = {"sampler": self.sampler, "method": self.method, "draws": s.draws,
               "chains": s.chains, "tune": s.tune, "target_accept": self.target_accept,
               "random_seed": s.random_seed, "log_density": self.log_density,
               "mass_matrix": self.mass_matrix, "seconds": self.seconds,
               "divergences": self.divergences}  # fmt: skip
        return {k: v for k, v in out.items() if v is not None or k in ("random_seed",)}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> FitInfo:
        """From :meth:`as_dict`'s layout, as saved models hold it (older files lack the
        later keys: they stay None)."""
        settings = FitSettings(**{k: record[k] for k in ("draws", "chains", "tune",
                                                         "random_seed") if k in record},
                               sampler=record.get("sampler", "auto"),
                               method=record.get("method"))  # fmt: skip
        return cls(settings=settings, sampler=record.get("sampler", "?"),
                   method=record.get("method", "?"), target_accept=record.get("target_accept"),
                   log_density=record.get("log_density"), mass_matrix=record.get("mass_matrix"),
                   seconds=record.get("seconds"), divergences=record.get("divergences"))
