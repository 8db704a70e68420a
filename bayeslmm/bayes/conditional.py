"""Posterior conditional effects (brms' ``conditional_effects``) and marginal means
(emmeans' reference grid) of the fixed effects.

Both are posterior draws of ``L @ beta`` for rows ``L`` of a grid of the fixed part
(:mod:`bayeslmm.spec.grid`): random effects are left out, as brms' default
``re_formula = NA`` and emmeans do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ArgumentError
from ..spec.grid import effect_grid, fixed_variables, reference_grid
from . import stack
from .results import HDI_PROB, draws_summary, hdi_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .fitted import FittedLMM as LMM  # a protocol: this module is below bayes.model


def fixed_draws(model: LMM, L: np.ndarray) -> xr.DataArray:
    """Posterior draws of ``L @ beta``: (chain, draw, row)."""
    post = stack.posterior(model._posterior())
    if "beta" not in post:
        raise ArgumentError(f"{model.formula!r} has no fixed effects")
    beta = post["beta"].values  # (chain, draw, p)
    return xr.DataArray(beta @ L.T, dims=("chain", "draw", "row"),
                        coords={"chain": post.chain, "draw": post.draw})  # fmt: skip


@dataclass
class ConditionalEffects:
    """The fixed-effects prediction along one variable (optionally by a second).

    Attributes
    ----------
    effect, by
        The variable along which the prediction runs, and the one it is shown by.
    table
        One row per grid point: the ``effect`` (and ``by``) value, then the posterior
        ``mean``, ``sd`` and HDI bounds of ``X beta`` there.
    conditions
        Every other variable of the fixed part and the value it is held at (covariates
        at their means, factors at their reference level, as brms does).
    factor
        Is ``effect`` a factor (one row per level) rather than a covariate (a curve)?
    data
        The fitted rows' ``effect``, ``by`` and response values (for ``plot(points=True)``).
    """

    effect: str
    by: str | None
    table: pd.DataFrame
    conditions: dict[str, object]
    response: str
    hdi_prob: float
    factor: bool
    data: pd.DataFrame = field(repr=False)
    #: the figure function, set by :mod:`bayeslmm.present.plots.effects` when it is
    #: imported (``import bayeslmm`` does): this layer draws nothing itself
    drawer: ClassVar[Callable[..., Any] | None] = None

    @property
    def level(self) -> float:
        """The HDI's probability (``hdi_prob``), under the API's one name for it."""
        return self.hdi_prob

    @property
    def hdi(self) -> tuple[str, str]:
        """The table's HDI bound columns."""
        return hdi_columns(self.hdi_prob)

    def plot(self, points: bool = False, **kwargs: Any) -> Figure:
        """The prediction with its HDI band (bars for a factor's levels), one colour per
        ``by`` value; ``points=True`` adds the data (see
        :func:`bayeslmm.plots.conditional_effects`)."""
        if ConditionalEffects.drawer is None:  # pragma: no cover - import bayeslmm sets it
            raise ArgumentError("import bayeslmm.plots to draw conditional effects")
        return ConditionalEffects.drawer(self, points=points, **kwargs)


def conditional_effects(
    model: LMM, effect: str, by: str | None = None, hdi_prob: float = HDI_PROB
) -> ConditionalEffects:
    """See :meth:`bayeslmm.LMM.conditional_effects`."""
    model._posterior()
    grid = effect_grid(model.design, effect, by)
    stats = draws_summary(fixed_draws(model, grid.X), hdi_prob)
    table = pd.concat([grid.rows.reset_index(drop=True), stats], axis=1)
    frame = model.design.frame
    data = pd.DataFrame({name: frame[name] for name in grid.rows.columns})
    data[model.design.response] = model.design.y
    factor = effect in fixed_variables(model.design).factors
    return ConditionalEffects(effect, by, table, grid.conditions, model.design.response,
                              hdi_prob, factor, data)  # fmt: skip


def marginal_means(
    model: LMM, specs: str | list[str], hdi_prob: float = HDI_PROB
) -> pd.DataFrame:
    """See :meth:`bayeslmm.LMM.marginal_means`."""
    model._posterior()
    grid = reference_grid(model.design, specs)
    stats = draws_summary(fixed_draws(model, grid.L), hdi_prob)
    return pd.concat([grid.cells, stats], axis=1)
