"""bayeslmm: Bayesian linear mixed models from lme4 formulas, with PyMC and ArviZ.

The package follows the pipeline: :mod:`~bayeslmm.spec` (formula -> design),
:mod:`~bayeslmm.gaussian` (statistics, factorisations, profiled likelihood, exact draws),
:mod:`~bayeslmm.bayes` and :mod:`~bayeslmm.classical` (posterior and REML/ML fits),
:mod:`~bayeslmm.comparison` (the classical models beside the Bayesian ones) and
:mod:`~bayeslmm.present` (figures, report, command line).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import shutdown

shutdown.register()

if TYPE_CHECKING:  # the real imports, for type checkers and IDEs
    from . import plots
    from .bayes.evidence import BayesFactor, MarginalLikelihood, bayes_factor
    from .bayes.loo import LooComparison, loo_compare
    from .bayes.model import LMM
    from .bayes.persist import load
    from .bayes.priors import Prior, default_priors
    from .bayes.settings import FitInfo, FitSettings
    from .classical.anova import LikelihoodRatioTable, anova, ranova
    from .classical.glmer import GlmerResult, glmer
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
        IdentificationWarning,
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
    from .spec.family import FamilyError
    from .spec.formula import ModelSpec, RandomTerm, parse_formula
    from .spec.residual import AR1, CompoundSymmetry

#: Every public name and the module it lives in (relative to the package): nothing
#: beyond the standard library is imported until a name is first used, so
#: ``import bayeslmm`` takes milliseconds and a fit pays only for what it needs.
_LAZY: dict[str, str] = {
    "BayesFactor": "bayes.evidence",
    "MarginalLikelihood": "bayes.evidence",
    "bayes_factor": "bayes.evidence",
    "LooComparison": "bayes.loo",
    "loo_compare": "bayes.loo",
    "LMM": "bayes.model",
    "glmer": "classical.glmer",
    "FamilyError": "spec.family",
    "GlmerResult": "classical.glmer",
    "load": "bayes.persist",
    "Prior": "bayes.priors",
    "default_priors": "bayes.priors",
    "FitInfo": "bayes.settings",
    "FitSettings": "bayes.settings",
    "LikelihoodRatioTable": "classical.anova",
    "anova": "classical.anova",
    "ranova": "classical.anova",
    "LmerResult": "classical.lmer",
    "lmer": "classical.lmer",
    "satterthwaite": "classical.lmer",
    "MultiFactorComparison": "comparison.factors",
    "Comparison": "comparison.models",
    "compare": "comparison.models",
    "icc": "comparison.partition",
    "r2": "comparison.partition",
    "RandomEffectsComparison": "comparison.random_effects",
    "compare_random_effects": "comparison.random_effects",
    "list_datasets": "datasets",
    "load_dataset": "datasets",
    "ArgumentError": "errors",
    "BayesLMMError": "errors",
    "BayesLMMWarning": "errors",
    "ColumnTypeError": "errors",
    "ComparisonError": "errors",
    "ConvergenceWarning": "errors",
    "DataError": "errors",
    "FormulaError": "errors",
    "MissingDependencyError": "errors",
    "NotFittedError": "errors",
    "PriorError": "errors",
    "RankDeficiencyError": "errors",
    "RowsNotInMemoryError": "errors",
    "SingularFitWarning": "errors",
    "IdentificationWarning": "errors",
    "UnknownNameError": "errors",
    "ReportFiles": "present.report",
    "report": "present.report",
    "Design": "spec.design",
    "RandomBlock": "spec.design",
    "build_design": "spec.design",
    "ModelSpec": "spec.formula",
    "RandomTerm": "spec.formula",
    "parse_formula": "spec.formula",
    "AR1": "spec.residual",
    "CompoundSymmetry": "spec.residual",
    "plots": "plots",
}

__version__ = "0.1.0"

__all__ = [
    "LMM",
    "FitSettings",
    "FitInfo",
    "load",
    "lmer",
    "glmer",
    "GlmerResult",
    "FamilyError",
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
    "IdentificationWarning",
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
    """Import a public name's module on first use (PEP 562) and keep the name."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = importlib.import_module(f".{module}", __name__)
    if name != "plots":
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
