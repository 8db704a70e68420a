"""bayeslmm: Bayesian linear mixed models from lme4 formulas, with PyMC and ArviZ.

The package follows the pipeline: :mod:`~bayeslmm.spec` (formula -> design),
:mod:`~bayeslmm.gaussian` (statistics, factorisations, profiled likelihood, exact draws),
:mod:`~bayeslmm.bayes` and :mod:`~bayeslmm.classical` (posterior and REML/ML fits),
:mod:`~bayeslmm.comparison` (the classical models beside the Bayesian ones) and
:mod:`~bayeslmm.present` (figures, report, command line).
"""

from __future__ import annotations

import importlib
from typing import Any

from .bayes.evidence import BayesFactor, MarginalLikelihood, bayes_factor
from .bayes.loo import LooComparison, loo_compare
from .bayes.model import LMM
from .bayes.persist import load
from .bayes.priors import Prior, default_priors
from .bayes.settings import FitInfo, FitSettings
from .classical.anova import LikelihoodRatioTable, anova, ranova
from .classical.lmer import LmerResult, lmer, satterthwaite
from .comparison.factors import MultiFactorComparison
from .comparison.models import Comparison, compare
from .comparison.partition import icc, r2
from .comparison.random_effects import RandomEffectsComparison, compare_random_effects
from .datasets import list_datasets, load_dataset
from .errors import (
    ArgumentError,
    BayesLMMError,
    BayesLMMWarning,
    ColumnTypeError,
    ComparisonError,
    ConvergenceWarning,
    DataError,
    FormulaError,
    MissingDependencyError,
    NotFittedError,
    PriorError,
    RankDeficiencyError,
    RowsNotInMemoryError,
    SingularFitWarning,
    UnknownNameError,
)
from .present.report import ReportFiles, report
from .spec.design import Design, RandomBlock, build_design
from .spec.formula import ModelSpec, RandomTerm, parse_formula
from .spec.residual import AR1, CompoundSymmetry

__version__ = "0.1.0"

__all__ = [
    "LMM",
    "FitSettings",
    "FitInfo",
    "load",
    "lmer",
    "AR1",
    "CompoundSymmetry",
    "satterthwaite",
    "LmerResult",
    "icc",
    "r2",
    "anova",
    "ranova",
    "LikelihoodRatioTable",
    "compare",
    "Comparison",
    "MultiFactorComparison",
    "compare_random_effects",
    "RandomEffectsComparison",
    "bayes_factor",
    "BayesFactor",
    "MarginalLikelihood",
    "loo_compare",
    "LooComparison",
    "report",
    "ReportFiles",
    "plots",
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
    "ArgumentError",
    "UnknownNameError",
    "MissingDependencyError",
    "BayesLMMWarning",
    "FormulaError",
    "DataError",
    "ColumnTypeError",
    "ComparisonError",
    "RankDeficiencyError",
    "RowsNotInMemoryError",
    "PriorError",
    "NotFittedError",
    "ConvergenceWarning",
]


def __getattr__(name: str) -> Any:
    """``bayeslmm.plots`` is :mod:`bayeslmm.present.plots`."""
    if name == "plots":
        return importlib.import_module(".present.plots", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
