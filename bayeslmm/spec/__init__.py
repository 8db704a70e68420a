"""Formula text to a model specification to a design: ``parse_formula`` -> ``ModelSpec`` ->
``build_design`` -> ``Design`` (validation, missing-value rules, lme4's names)."""

import scipy.sparse  # noqa: F401 - formulaic's, and the Gaussian core's sparse LU

from ..lazy import stand_ins

# formulaic imports SciPy's sparse solvers at its top for one contrast function
# (``scipy.sparse.linalg.inv`` of a custom coding matrix): they load at its first use
# (SciPy >= 1.16; before, ``import scipy.sparse`` imports them through scipy.sparse.csgraph)
with stand_ins("scipy.sparse.linalg"):
    import formulaic  # noqa: F401

from .design import Design, RandomBlock, build_design  # noqa: E402
from .formula import ModelSpec, RandomTerm, parse_formula

__all__ = ["parse_formula", "ModelSpec", "RandomTerm", "build_design", "Design", "RandomBlock"]
