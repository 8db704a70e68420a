"""One exception hierarchy for everything bayeslmm rejects."""

from __future__ import annotations


class BayesLMMError(Exception):
    """Base class of every error raised by bayeslmm on bad input."""


class FormulaError(BayesLMMError, ValueError):
    """The formula text cannot be parsed or names something impossible."""

    def __init__(self, message: str, formula: str | None = None, position: int | None = None):
        if formula is not None and position is not None:
            message = f"{message}\n  {formula}\n  {' ' * position}^"
        super().__init__(message)
        self.formula = formula
        self.position = position


class DataError(BayesLMMError, ValueError):
    """The data cannot support the model (missing column, empty, infinite values...)."""


class ColumnTypeError(BayesLMMError, TypeError):
    """A column has a type the model cannot use (for example a text response)."""


class RankDeficiencyError(DataError):
    """The fixed-effects design matrix is rank deficient."""

    def __init__(self, message: str, columns: list[str]):
        super().__init__(message)
        self.columns = columns


class PriorError(BayesLMMError, ValueError):
    """A prior specification is unknown or invalid."""


class SamplerError(BayesLMMError, ValueError):
    """The requested sampler cannot run this model (or is not installed)."""


class NotFittedError(BayesLMMError, ValueError):
    """A result was requested from a model that has not been fitted."""


class ComparisonError(BayesLMMError, ValueError):
    """Models cannot be compared: different rows or responses, not nested, not fitted."""


class ConvergenceWarning(UserWarning):
    """MCMC diagnostics suggest the posterior draws cannot be trusted yet."""


class SingularFitWarning(UserWarning):
    """A variance component is estimated on its boundary (zero variance or |cor| = 1)."""
