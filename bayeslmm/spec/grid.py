"""Grids of new rows for the fixed part of a design: emmeans' reference grid (marginal
means) and brms' conditional-effects grid.

Both evaluate the fitted encodings of the fixed part (formulaic's model spec) on made-up
rows, so a factor keeps its fitted levels and contrasts and a transformed covariate
(``np.log(x)``, ``poly(x, 2)``) is transformed as in fitting. The variables are those
the fixed part reads: a *factor* is a variable the fixed part encodes as categorical
(text, a categorical column, ``C(x)``) or a boolean column (both emmeans and brms treat
R's logicals as factors); every other variable is a *covariate*.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulaic.errors import DataMismatchWarning

from ..errors import ArgumentError, RowsNotInMemoryError, UnknownNameError
from .arrays import Design
from .columns import BOOL
from .prediction import _categories

#: Points along a covariate in :func:`effect_grid` (brms' ``resolution``).
RESOLUTION = 100


@dataclass
class FixedVariables:
    """The variables the fixed part reads: factors with their fitted levels (in the
    encoding's order; the first is the reference level) and covariates."""

    factors: dict[str, list]
    covariates: list[str]

    @property
    def names(self) -> list[str]:
        return [*self.factors, *self.covariates]


def fixed_variables(design: Design) -> FixedVariables:
    """The factors and covariates of ``design``'s fixed part."""
    if not design.rows_in_memory:
        raise RowsNotInMemoryError(
            "grids of new rows take covariates' means and factors' levels from the fitted "
            "rows, which a Dask DataFrame's design does not hold; fit a pandas DataFrame"
        )
    spec = design.fixed_spec
    inverse = design.names.inverse
    required = sorted(inverse.get(v, v) for v in getattr(spec, "required_variables", ()))
    categories = _categories(spec, design.names)
    factors, covariates = {}, []
    for name in required:
        if name not in design.frame.columns:
            continue  # np, a constant of the formula's context
        if name in categories:
            factors[name] = list(categories[name])
        elif design.column_kinds.get(name) == BOOL:
            factors[name] = [False, True]
        else:
            covariates.append(name)
    return FixedVariables(factors, covariates)


def _column(design: Design, name: str, values: list) -> pd.Series:
    """``values`` of column ``name`` typed as the fitted column (categories kept)."""
    fitted = design.frame[name]
    if isinstance(fitted.dtype, pd.CategoricalDtype):
        return pd.Series(pd.Categorical(values, categories=fitted.cat.categories,
                                        ordered=fitted.cat.ordered))  # fmt: skip
    return pd.Series(values).astype(fitted.dtype)


def fixed_matrix(design: Design, rows: pd.DataFrame, factors: dict[str, list]) -> np.ndarray:
    """The fixed-effects rows (n, p) of made-up ``rows`` holding every variable of the
    fixed part, encoded as in fitting (``factors`` typed as the fitted columns, the
    covariates as floats)."""
    frame = pd.DataFrame({name: _column(design, name, rows[name].tolist()) if name in factors
                          else rows[name].astype(float) for name in rows.columns})  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataMismatchWarning)
        X = design.fixed_spec.get_model_matrix(design.names.rename(frame), na_action="ignore")
    X = np.asarray(X, dtype=float)
    if not np.all(np.isfinite(X)):
        raise ArgumentError("the grid gives non-finite fixed effects (e.g. log of 0 at a "
                            "covariate's minimum); choose other values")  # fmt: skip
    return X


def _names(value: str | list[str] | tuple[str, ...], what: str) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if (not isinstance(names, list | tuple) or not names
            or not all(isinstance(n, str) for n in names)):  # fmt: skip
        raise ArgumentError(f"{what} must be a column name or a list of them, got {value!r}")
    if len(set(names)) < len(names):
        raise ArgumentError(f"{what} names a column twice: {list(names)}")
    return list(names)


@dataclass
class ReferenceGrid:
    """emmeans' reference grid reduced to the cells of ``specs``.

    Attributes
    ----------
    cells
        One row per combination of the specs' levels (the first spec varying fastest,
        as emmeans orders them).
    L
        (cells, p): each cell's fixed-effects row, the equally weighted mean over the
        levels of the other factors; a cell's marginal mean is ``L @ beta``.
    at
        The covariates' values (their means over the fitted rows).
    """

    cells: pd.DataFrame
    L: np.ndarray
    at: dict[str, float] = field(default_factory=dict)


def reference_grid(design: Design, specs: str | list[str]) -> ReferenceGrid:
    """The reference grid of emmeans for the factors ``specs``: every factor of the
    fixed part at each of its levels, covariates at their means; averaged with equal
    weights over the factors not in ``specs`` (emmeans' defaults)."""
    specs = _names(specs, "specs")
    variables = fixed_variables(design)
    for name in specs:
        if name in variables.covariates:
            raise ArgumentError(
                f"{name!r} is a numeric covariate: marginal means are per level of a factor "
                f"(factors of the fixed part: {list(variables.factors)}); for its effect use "
                f"conditional_effects({name!r})"
            )
        if name not in variables.factors:
            raise UnknownNameError(f"{name!r} is not a variable of the fixed part "
                                   f"{design.spec.fixed!r}; its factors are "
                                   f"{list(variables.factors)}")  # fmt: skip
    at = {name: float(design.frame[name].astype(float).mean()) for name in variables.covariates}
    factors = list(variables.factors)
    # the first factor varies fastest: product over the reversed list, then reversed back
    combos = list(itertools.product(*(variables.factors[f] for f in reversed(factors))))
    grid = pd.DataFrame([c[::-1] for c in combos], columns=factors)
    for name, value in at.items():
        grid[name] = value
    X = fixed_matrix(design, grid, variables.factors)
    index = [np.asarray([variables.factors[s].index(v) for v in grid[s]]) for s in specs]
    sizes = [len(variables.factors[s]) for s in specs]
    cell = np.ravel_multi_index(index[::-1], sizes[::-1])  # first spec fastest
    n_cells = int(np.prod(sizes))
    counts = np.bincount(cell, minlength=n_cells)
    L = np.zeros((n_cells, X.shape[1]))
    np.add.at(L, cell, X)
    L /= counts[:, None]
    levels = list(itertools.product(*(variables.factors[s] for s in reversed(specs))))
    cells = pd.DataFrame([c[::-1] for c in levels], columns=specs)
    return ReferenceGrid(cells, L, at)


@dataclass
class EffectGrid:
    """brms' conditional-effects grid.

    Attributes
    ----------
    rows
        The grid: the effect's values (``RESOLUTION`` points over its fitted range, or
        each level of a factor), crossed with the ``by`` variable's (each level, or a
        covariate's mean - sd, mean, mean + sd); every other variable at its
        ``conditions`` value.
    X
        (rows, p) fixed-effects rows of the grid.
    conditions
        The other variables' values: covariates at their means, factors at their
        reference (first) level.
    """

    rows: pd.DataFrame
    X: np.ndarray
    conditions: dict[str, object]


def effect_grid(design: Design, effect: str, by: str | None = None) -> EffectGrid:
    """The grid on which brms' ``conditional_effects`` predicts ``effect`` (by ``by``)."""
    if not isinstance(effect, str) or not (by is None or isinstance(by, str)):
        raise ArgumentError("conditional_effects takes one effect and at most one 'by' "
                            f"variable, each a column name; got effect={effect!r}, "
                            f"by={by!r}")  # fmt: skip
    variables = fixed_variables(design)
    chosen = [effect] + ([] if by is None else [by])
    if len(set(chosen)) < len(chosen):
        raise ArgumentError(f"effect and by are the same variable {chosen[0]!r}")
    for name in chosen:
        if name not in variables.names:
            raise UnknownNameError(f"{name!r} is not a variable of the fixed part "
                                   f"{design.spec.fixed!r}; its variables are "
                                   f"{variables.names}")  # fmt: skip
    frame = design.frame
    values = {}
    for k, name in enumerate(chosen):
        if name in variables.factors:
            values[name] = list(variables.factors[name])
        else:
            x = frame[name].astype(float)
            if k == 0:
                values[name] = list(np.linspace(x.min(), x.max(), RESOLUTION))
            else:
                mean, sd = float(x.mean()), float(x.std(ddof=1))
                values[name] = [mean - sd, mean, mean + sd]
    conditions: dict[str, object] = {}
    for name in variables.names:
        if name in chosen:
            continue
        if name in variables.factors:
            conditions[name] = variables.factors[name][0]
        else:
            conditions[name] = float(frame[name].astype(float).mean())
    combos = list(itertools.product(*(values[n] for n in reversed(chosen))))
    rows = pd.DataFrame([c[::-1] for c in combos], columns=chosen)
    full = rows.copy()
    for name, value in conditions.items():
        full[name] = [value] * len(full)
    return EffectGrid(rows, fixed_matrix(design, full, variables.factors), conditions)
