"""One exception hierarchy for everything bayeslmm rejects, and its warnings."""

from __future__ import annotations

import numbers
import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parent)


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


class NotFittedError(BayesLMMError, ValueError):
    """A result was requested from a model that has not been fitted."""


class ComparisonError(BayesLMMError, ValueError):
    """Models cannot be compared: different rows or responses, not nested, not fitted."""


class ArgumentError(BayesLMMError, ValueError):
    """An argument of a bayeslmm function has an impossible value or type (``draws=0``,
    ``target_accept=1.5``, ``method="fast"``)."""


class SamplerError(ArgumentError):
    """The requested sampler cannot run this model."""


class UnknownNameError(DataError, KeyError):
    """A name (column, grouping factor, term) that the data or the model lacks."""

    def __str__(self) -> str:  # a message, not KeyError's repr of the key
        return str(self.args[0]) if self.args else ""


class RowsNotInMemoryError(DataError):
    """A result needs the rows in memory, and the model was fitted from a Dask DataFrame,
    whose rows stay in its partitions (the message says what to do instead)."""


class MissingDependencyError(BayesLMMError, ImportError):
    """An optional package a requested feature needs is not installed."""


class BayesLMMWarning(UserWarning):
    """Base class of bayeslmm's warnings (rows dropped for missing values, a method that
    does not apply, and the two below)."""


class ConvergenceWarning(BayesLMMWarning):
    """MCMC diagnostics suggest the posterior draws cannot be trusted yet."""


class SingularFitWarning(BayesLMMWarning):
    """A variance component is estimated on its boundary (zero variance or |cor| = 1)."""


class IdentificationWarning(BayesLMMWarning):
    """A random term the data cannot identify (:mod:`bayeslmm.spec.identification`): a
    slope constant within every level of its factor, or a term the fixed effects hold."""


def warn(message: str, category: type[Warning] = BayesLMMWarning) -> None:
    """Warn with the location of the user's line that called into bayeslmm (the first
    frame outside the package), wherever in the package the warning is raised."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


# --- argument checks shared by the public functions --------------------------------------


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is True or False, else :class:`ArgumentError` naming ``name``."""
    if type(value).__name__ not in ("bool", "bool_"):
        raise ArgumentError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_probability(name: str, value: object) -> float:
    """A number strictly between 0 and 1 (a level or probability), else
    :class:`ArgumentError` naming ``name``."""
    real = isinstance(value, numbers.Real) and type(value).__name__ not in ("bool", "bool_")
    number = value if real else None  # NumPy's floats and integers are numbers.Real too
    if number is None or not 0.0 < float(number) < 1.0:
        raise ArgumentError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(number)


# --- renamed API: the old spelling works one more release and warns ---------------------


def deprecated(old: str, new: str) -> None:
    """Warn (:class:`FutureWarning`, at the user's line) that ``old`` is the deprecated
    spelling of ``new``, which gives the same result."""
    warn(f"{old} is deprecated and will be removed in the next release; use {new} (same "
         "result)", FutureWarning)  # fmt: skip


def interval_level(level: object, hdi_prob: object = None, default: float = 0.95) -> float:
    """The interval level of a call taking ``level`` (R's name, used throughout) and its
    deprecated old name ``hdi_prob``: ``level``, else ``hdi_prob`` (with a
    :class:`FutureWarning`), else ``default``; checked to lie strictly between 0 and 1
    under the name the caller used. Both given: :class:`ArgumentError`."""
    if hdi_prob is not None:
        if level is not None:
            raise ArgumentError(f"give the interval level once, as level= (hdi_prob= is its "
                                f"old name); got level={level!r} and hdi_prob={hdi_prob!r}")
        deprecated("hdi_prob=", "level=")
        return check_probability("hdi_prob", hdi_prob)
    return check_probability("level", default if level is None else level)


def check_seed(name: str, value: object) -> object:
    """``None``, a non-negative integer or a numpy Generator/SeedSequence, else
    :class:`ArgumentError` naming ``name``."""
    if value is None or type(value).__name__ in ("Generator", "SeedSequence"):
        return value
    if isinstance(value, bool) or not hasattr(value, "__index__") or value.__index__() < 0:
        raise ArgumentError(f"{name} must be None or a non-negative integer, got {value!r}")
    return value.__index__()
