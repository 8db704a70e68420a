"""bayeslmm: Bayesian linear mixed models from lme4 formulas, with PyMC and ArviZ."""

from .comparison import Comparison, compare
from .datasets import list_datasets, load_dataset
from .design import Design, RandomBlock, build_design
from .errors import (
    BayesLMMError,
    ColumnTypeError,
    ConvergenceWarning,
    DataError,
    FormulaError,
    NotFittedError,
    PriorError,
    RankDeficiencyError,
)
from .formula import ModelSpec, RandomTerm, parse_formula
from .frequentist import LmerResult, SingularFitWarning, lmer, satterthwaite
from .model import LMM
from .priors import Prior, default_priors
from .report import ReportFiles, report

__version__ = "0.1.0"

__all__ = [
    "LMM",
    "lmer",
    "satterthwaite",
    "LmerResult",
    "compare",
    "Comparison",
    "report",
    "ReportFiles",
    "SingularFitWarning",
    "Prior",
    "default_priors",
    "parse_formula",
    "build_design",
    "ModelSpec",
    "RandomTerm",
    "Design",
    "RandomBlock",
    "load_dataset",
    "list_datasets",
    "BayesLMMError",
    "FormulaError",
    "DataError",
    "ColumnTypeError",
    "RankDeficiencyError",
    "PriorError",
    "NotFittedError",
    "ConvergenceWarning",
]
