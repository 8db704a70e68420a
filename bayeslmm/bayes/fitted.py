"""What the modules a fitted :class:`~bayeslmm.LMM` delegates to read of it.

:mod:`~bayeslmm.bayes.evidence`, :mod:`~bayeslmm.bayes.conditional` and
:mod:`~bayeslmm.bayes.records` sit below :mod:`~bayeslmm.bayes.model`, whose methods call
them; they name the model by the protocol :class:`FittedLMM` rather than import its class,
so that no import goes back up (import-linter's ``acyclic_siblings`` contract).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..spec.design import Design
    from ..spec.residual import ResidualStructure
    from .density import MarginalDensity
    from .diagnostics import Convergence
    from .priors import Prior
    from .settings import FitInfo
    from .stack import Results


class FittedLMM(Protocol):
    """The attributes of an :class:`~bayeslmm.LMM` that the modules below it read."""

    formula: str
    design: Design
    priors: dict[str, Prior]
    parametrization: str
    idata: Results | None
    convergence: Convergence | None
    fit_info: FitInfo | None

    @property
    def residual_structure(self) -> ResidualStructure | None: ...

    @property
    def marginal_supported(self) -> bool: ...

    @property
    def marginal_model(self) -> Any: ...

    @property
    def compiled_density(self) -> MarginalDensity | None: ...

    def _posterior(self) -> Results: ...

    def log_marginal_likelihood(self, random_seed: int | None = None) -> Any: ...
