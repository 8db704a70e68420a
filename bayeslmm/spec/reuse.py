"""Build once, pass along: a model's entry point takes a built :class:`Design` or a formula
with data (built here, once), and the comparison models derive what they can from a
design already built instead of re-parsing formula text.

As lme4's ``lFormula`` -> ``mkLmerDevfun`` -> ``optimizeLmer`` -> ``mkMerMod``: the design
(:func:`~bayeslmm.spec.design.build_design`) is one stage, built once per distinct model
and data, and every fit of that model (``bl.lmer``, ``bl.LMM``, the OLS comparison models)
takes it as it is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ArgumentError, IdentificationWarning
from . import design as _design
from .design import Design
from .formula import ModelSpec, quote
from .neighbours import expression_terms
from .residual import ResidualStructure


def design_from(
    formula: str | ModelSpec | Design,
    data: pd.DataFrame | None,
    residual: ResidualStructure | None = None,
    summaries: Mapping[str, Callable[[Design], Any]] | None = None,
    caller: str = "the model",
) -> Design:
    """``formula`` itself where it is a built :class:`Design` (then ``data`` and
    ``residual`` must be None: the design carries its rows and residual structure), else
    :func:`~bayeslmm.spec.design.build_design` of ``formula`` and ``data``."""
    if isinstance(formula, Design):
        if data is not None:
            raise ArgumentError(f"{caller}: give a built Design alone, or a formula with data; "
                                "a Design carries its own rows")  # fmt: skip
        if residual is not None:
            raise ArgumentError(f"{caller}: a built Design carries its residual structure; "
                                "build it with bl.build_design(formula, data, residual)")
        return formula
    if data is None:
        raise ArgumentError(f"{caller}: data is missing (give a formula with data, or a "
                            "Design from bl.build_design(formula, data))")  # fmt: skip
    return _design.build_design(formula, data, residual, summaries=summaries)


def model_key(spec: ModelSpec) -> tuple:
    """What identifies a model's formula: response, fixed part and random terms, a term's
    expression by its intercept and terms (``(Days | g)`` and ``(1 + Days | g)`` are one
    model). Two designs of one key built from the same rows are the same design."""
    random = tuple((t.factors, t.correlated, *_expression(t.expr)) for t in spec.random)
    return spec.response, spec.fixed.replace(" ", ""), random


def _expression(expr: str) -> tuple[bool, tuple[str, ...]]:
    intercept, terms = expression_terms(expr)
    return intercept, tuple(terms)


def same_rows(a: Design, b: Design) -> bool:
    """Do two designs hold the same rows: the same response and grouping of every row?"""
    if a.n_obs != b.n_obs or not (a.rows_in_memory and b.rows_in_memory):
        return False
    if not np.array_equal(a.y, b.y):
        return False
    groups_a = {blk.group: blk.codes for blk in a.blocks}
    return all(np.array_equal(groups_a[blk.group], blk.codes)
               for blk in b.blocks if blk.group in groups_a)  # fmt: skip


def group_dummies(
    design: Design, group: str, slopes: tuple[str, ...] = ()
) -> tuple[np.ndarray, list[str]] | None:
    """The fixed-effects matrix of ``design`` with treatment dummies of ``group``'s levels
    (every level but the first), and each of ``slopes`` times them, appended: the columns
    and lme4-style names of ``fixed + C(group) + slope:C(group)`` on the design's rows,
    from its level codes (no formula is parsed). None where the design has no intercept
    (the coding of the dummies then depends on the fixed part's factors: build the
    formula instead)."""
    names = list(design.fixed_names)
    if "(Intercept)" not in names:
        return None
    block = next(b for b in design.blocks if b.group == group)
    n, levels = design.n_obs, block.levels
    dummies = np.zeros((n, len(levels)))
    dummies[np.arange(n), block.codes] = 1.0
    dummies = dummies[:, 1:]
    label = f"C({quote(group)})"
    columns, out = [design.X, dummies], names + [f"{label}{lv}" for lv in levels[1:]]
    for term in slopes:
        columns.append(design.X[:, [names.index(term)]] * dummies)
        out += [f"{term}:{label}{lv}" for lv in levels[1:]]
    X = np.hstack(columns)
    _design.check_rank(_design.qr_r(X), n, out)
    return X, out


class Designs:
    """The designs of several formulas on one data set, each distinct model built once
    (two formulas of one :func:`model_key` share a design; a build that failed raises
    its error again without building anew). The designs built here are the models an
    analysis derives from the caller's (given in ``built``, which warned as they were
    built): their unidentified terms (:class:`~bayeslmm.errors.IdentificationWarning`)
    are not the caller's to fix, and do not warn.

    Parameters
    ----------
    data
        The rows every formula is built from.
    built
        Designs already built from ``data`` (the user's, say): reused as they are.
    """

    def __init__(self, data: pd.DataFrame, *built: Design):
        self.data = data
        self._built: dict[tuple, Design | Exception] = {model_key(d.spec): d for d in built}

    def get(self, formula: str | ModelSpec) -> Design:
        """The design of ``formula`` (built on first use)."""
        spec = _design.parse_spec(formula)
        key = model_key(spec)
        if key not in self._built:
            try:
                with warnings.catch_warnings():  # a model the caller did not write
                    warnings.simplefilter("ignore", IdentificationWarning)
                    self._built[key] = _design.build_design(spec, self.data)
            except (ValueError, TypeError) as err:  # bayeslmm's errors: raised again
                self._built[key] = err
        found = self._built[key]
        if isinstance(found, Exception):
            raise found
        return found
