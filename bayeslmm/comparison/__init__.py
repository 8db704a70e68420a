"""The same question answered by every model: the tutorial's seven classical models beside
the Bayesian fits for one grouping factor, REML beside the posterior for any design, and how
far each group effect shrinks."""

from .factors import FactorsSetup, MultiFactorComparison
from .glmm import GlmmComparison, GlmmSetup
from .models import Comparison, ComparisonSetup, compare

__all__ = ["compare", "Comparison", "ComparisonSetup", "MultiFactorComparison", "FactorsSetup",
           "GlmmComparison", "GlmmSetup"]
