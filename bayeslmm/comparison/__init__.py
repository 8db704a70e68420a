"""The same question answered by every model: the tutorial's seven classical models beside
the Bayesian fits, and how far each group effect shrinks."""

from .models import Comparison, ComparisonSetup, compare

__all__ = ["compare", "Comparison", "ComparisonSetup"]
