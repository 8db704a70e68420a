"""Formula text to a model specification to a design: ``parse_formula`` -> ``ModelSpec`` ->
``build_design`` -> ``Design`` (validation, missing-value rules, lme4's names)."""

from .design import Design, RandomBlock, build_design
from .formula import ModelSpec, RandomTerm, parse_formula

__all__ = ["parse_formula", "ModelSpec", "RandomTerm", "build_design", "Design", "RandomBlock"]
