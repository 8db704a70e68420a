"""Figures (matplotlib; every function returns its Figure).

- Of one fit (:mod:`bayeslmm.present.plots.model`): :func:`data_overview`, :func:`trace`,
  :func:`rank`, :func:`ppc`, :func:`ppc_by_group`, :func:`residuals`, :func:`prior_predictive`.
- Conditional effects (:mod:`bayeslmm.present.plots.effects`):
  :func:`conditional_effects`, also ``model.conditional_effects(...).plot()``.
- Of a comparison (:mod:`bayeslmm.present.plots.comparison`): :func:`group_fits`,
  :func:`shrinkage_arrows`, :func:`caterpillar`, :func:`shrinkage_2d`,
  :func:`comparison_forest`, :func:`reml_posterior_forest` (several grouping factors).
"""

from .comparison import (
    caterpillar,
    comparison_forest,
    group_fits,
    reml_posterior_forest,
    shrinkage_2d,
    shrinkage_arrows,
)
from .effects import conditional_effects
from .model import data_overview, ppc, ppc_by_group, prior_predictive, rank, residuals, trace

__all__ = [
    "data_overview",
    "trace",
    "rank",
    "ppc",
    "ppc_by_group",
    "residuals",
    "prior_predictive",
    "conditional_effects",
    "group_fits",
    "shrinkage_arrows",
    "caterpillar",
    "shrinkage_2d",
    "comparison_forest",
    "reml_posterior_forest",
]
