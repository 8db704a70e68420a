"""A :class:`ModelSpec` evaluated on a DataFrame: the :class:`Design`.

The design stays small: the fixed-effects matrix ``X`` (n x p), and for every random
term an n x q matrix ``Z`` of its columns plus an integer code per row for its group
level. A dense rows x levels matrix is never built.
"""

from __future__ import annotations

import ast
import difflib
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix
from formulaic.errors import FormulaicError

from ..errors import ColumnTypeError, DataError, FormulaError, RankDeficiencyError
from .formula import ModelSpec, RandomTerm, parse_formula

_CONTEXT = {"np": np, "numpy": np, "log": np.log, "exp": np.exp, "sqrt": np.sqrt}


def lme4_name(name: str) -> str:
    """Turn a formulaic column name into the name lme4 prints.

    ``Intercept`` -> ``(Intercept)``, ``sex[T.Male]`` -> ``sexMale``,
    ``f[a]`` -> ``fa``; other names are kept.
    """
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"\[(?:T\.)?([^\]]*)\]", r"\1", name)


@dataclass
class RandomBlock:
    """A random term evaluated on data.

    Attributes
    ----------
    term
        The parsed term.
    label
        Unique name of the block (the group name, with ``.1``, ``.2`` appended when a
        group has several blocks, as lme4's ``VarCorr`` does).
    columns
        lme4-style names of the columns of ``Z``.
    Z
        n x q matrix of the term's columns.
    codes
        Group level index of every row (``-1`` for a level not seen in fitting).
    levels
        Level labels, in lme4's order.
    """

    term: RandomTerm
    label: str
    columns: list[str]
    Z: np.ndarray
    codes: np.ndarray
    levels: list[str]
    matrix_spec: object = field(repr=False, default=None)

    @property
    def group(self) -> str:
        return self.term.group

    @property
    def correlated(self) -> bool:
        return self.term.correlated and len(self.columns) > 1

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_terms(self) -> int:
        return len(self.columns)


@dataclass
class Design:
    """Everything the model builders need, as plain arrays.

    Attributes
    ----------
    spec
        The parsed formula.
    y
        Response vector (n,).
    X
        Fixed-effects matrix (n, p) with lme4-style ``fixed_names``.
    blocks
        One :class:`RandomBlock` per random term.
    frame
        The used columns of the rows kept (a copy; the user's DataFrame is untouched).
    n_dropped
        Rows dropped for missing values.
    """

    spec: ModelSpec
    y: np.ndarray
    X: np.ndarray
    fixed_names: list[str]
    blocks: list[RandomBlock]
    frame: pd.DataFrame
    n_dropped: int
    fixed_spec: object = field(repr=False, default=None)

    @property
    def n_obs(self) -> int:
        return len(self.y)

    @property
    def response(self) -> str:
        return self.spec.response

    def groups(self) -> dict[str, list[str]]:
        """Levels of every grouping factor, in order of appearance."""
        out: dict[str, list[str]] = {}
        for block in self.blocks:
            out.setdefault(block.group, block.levels)
        return out


def _suggest(name: str, columns: list[str]) -> str:
    close = difflib.get_close_matches(name, columns, n=3)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def _expression_names(expr: str) -> set[str]:
    """Variable names read by one factor expression (function names excluded)."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return set()
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    modules = {
        node.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return names - called - modules


def _required(rhs: str, where: str) -> set[str]:
    """Columns read by a right-hand side (formulaic misses arguments of scale())."""
    try:
        formula = Formula(rhs)
        needed = set(formula.required_variables)
        for term in formula:
            for factor in term.factors:
                needed |= _expression_names(str(factor.expr))
    except (FormulaicError, SyntaxError, ValueError) as exc:
        raise FormulaError(f"cannot parse {where} {rhs!r}: {exc}") from exc
    return needed


def _used_columns(spec: ModelSpec, data: pd.DataFrame) -> list[str]:
    """Columns the formula reads, checked to exist in ``data``."""
    columns = [str(c) for c in data.columns]
    needs: dict[str, str] = {}
    for var in _required(spec.response, "response"):
        needs.setdefault(var, "the response")
    for var in _required(spec.fixed, "fixed part"):
        needs.setdefault(var, "the fixed part")
    for term in spec.random:
        for var in _required(term.expr, f"random term {term}"):
            needs.setdefault(var, f"random term {term}")
        for var in term.factors:
            needs.setdefault(var, f"random term {term}")
    used = []
    for var, where in needs.items():
        if var in _CONTEXT:
            continue
        if var not in columns:
            raise DataError(
                f"column {var!r} used in {where} is not in the data{_suggest(var, columns)}"
            )
        used.append(var)
    return [c for c in columns if c in used]


def _clean_frame(data: pd.DataFrame, used: list[str]) -> tuple[pd.DataFrame, int]:
    """Copy the used columns, drop incomplete rows (warning) and reject infinities."""
    frame = data.loc[:, used].copy()
    if len(frame) == 0:
        raise DataError("the data have no rows")
    missing = frame.isna().any(axis=1).to_numpy()
    n_dropped = int(missing.sum())
    if n_dropped:
        counts = frame.isna().sum()
        detail = ", ".join(f"{c}: {int(k)}" for c, k in counts.items() if k)
        warnings.warn(
            f"{n_dropped} of {len(frame)} rows dropped for missing values ({detail})",
            UserWarning,
            stacklevel=4,
        )
        frame = frame.loc[~missing]
    if len(frame) == 0:
        raise DataError("no rows left after dropping rows with missing values")
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            n_inf = int(np.isinf(values.to_numpy(dtype=float)).sum())
            if n_inf:
                raise DataError(f"column {col!r} has {n_inf} infinite value(s)")
    return frame.reset_index(drop=True), n_dropped


def _response(spec: ModelSpec, frame: pd.DataFrame) -> np.ndarray:
    if spec.response in frame.columns:
        col = frame[spec.response]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            raise ColumnTypeError(
                f"response {spec.response!r} must be numeric, but its type is {col.dtype}"
            )
        return col.to_numpy(dtype=float)
    try:
        lhs = model_matrix(f"0 + {spec.response}", frame, context=_CONTEXT)
    except Exception as exc:  # formulaic raises many kinds
        raise FormulaError(f"cannot evaluate response {spec.response!r}: {exc}") from exc
    if lhs.shape[1] != 1:
        raise ColumnTypeError(
            f"response {spec.response!r} must be one numeric column, got {lhs.shape[1]}"
        )
    y = np.asarray(lhs, dtype=float)[:, 0]
    if not np.all(np.isfinite(y)):
        raise DataError(f"response {spec.response!r} has non-finite values")
    return y


def _matrix(rhs: str, frame: pd.DataFrame, where: str):
    try:
        return model_matrix(rhs, frame, context=_CONTEXT)
    except Exception as exc:  # formulaic raises many kinds
        raise FormulaError(f"cannot build {where} from {rhs!r}: {exc}") from exc


def _check_rank(X: np.ndarray, names: list[str]) -> None:
    if X.shape[1] == 0:
        return
    if X.shape[0] < X.shape[1]:
        raise RankDeficiencyError(
            f"{X.shape[1]} fixed-effect columns but only {X.shape[0]} rows", names
        )
    if np.linalg.matrix_rank(X) == X.shape[1]:
        return
    # as lme4: a column is at fault when it adds nothing to the columns before it
    kept: list[int] = []
    bad: list[int] = []
    for j in range(X.shape[1]):
        if np.linalg.matrix_rank(X[:, kept + [j]]) > len(kept):
            kept.append(j)
        else:
            bad.append(j)
    raise RankDeficiencyError(
        f"fixed-effect design is rank deficient: column(s) {[names[j] for j in bad]} "
        f"are constant zero or linear combinations of the columns before them; "
        "remove or recode them",
        [names[j] for j in bad],
    )


def _level_order(values: pd.Series) -> list:
    """Levels in lme4's order: factor levels if categorical, else sorted values."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.unique())
        return [c for c in values.cat.categories if c in present]
    uniques = pd.unique(values)
    try:
        return sorted(uniques)
    except TypeError:
        return sorted(uniques, key=str)


def group_codes(frame: pd.DataFrame, factors: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Integer code per row and level labels of the interaction of ``factors``."""
    per_factor = []
    for name in factors:
        order = _level_order(frame[name])
        lookup = {v: i for i, v in enumerate(order)}
        per_factor.append((frame[name].map(lookup).to_numpy(dtype=np.int64), order))
    if len(per_factor) == 1:
        codes, order = per_factor[0]
        return codes, [str(v) for v in order]
    # interaction: levels ordered by the first factor, then the second, ...
    stacked = np.column_stack([c for c, _ in per_factor])
    combos, codes = np.unique(stacked, axis=0, return_inverse=True)
    labels = [
        ":".join(str(o[i]) for (_, o), i in zip(per_factor, row, strict=True)) for row in combos
    ]
    return codes.reshape(-1).astype(np.int64), labels


def _block_labels(terms: tuple[RandomTerm, ...]) -> list[str]:
    seen: dict[str, int] = {}
    labels = []
    for term in terms:
        k = seen.get(term.group, 0)
        labels.append(term.group if k == 0 else f"{term.group}.{k}")
        seen[term.group] = k + 1
    return labels


def build_design(formula: str | ModelSpec, data: pd.DataFrame) -> Design:
    """Evaluate a formula on data.

    Parameters
    ----------
    formula
        lme4 formula text or a parsed :class:`ModelSpec`.
    data
        The data; never modified.

    Returns
    -------
    Design
    """
    spec = parse_formula(formula) if isinstance(formula, str) else formula
    if not isinstance(data, pd.DataFrame):
        raise ColumnTypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    used = _used_columns(spec, data)
    frame, n_dropped = _clean_frame(data, used)
    y = _response(spec, frame)

    fixed_mm = _matrix(spec.fixed, frame, "fixed effects")
    X = np.asarray(fixed_mm, dtype=float)
    fixed_names = [lme4_name(c) for c in fixed_mm.columns]
    _check_rank(X, fixed_names)

    blocks = []
    for term, label in zip(spec.random, _block_labels(spec.random), strict=True):
        for name in term.factors:
            if frame[name].nunique() < 2:
                raise DataError(
                    f"grouping factor {name!r} of {term} has only "
                    f"{frame[name].nunique()} level; it needs at least 2"
                )
        codes, levels = group_codes(frame, term.factors)
        if len(levels) < 2:
            raise DataError(f"grouping factor {term.group!r} of {term} has only 1 level")
        if len(levels) >= len(frame):
            raise DataError(
                f"grouping factor {term.group!r} has {len(levels)} levels for "
                f"{len(frame)} observations; each level needs several observations"
            )
        z_mm = _matrix(term.expr, frame, f"random term {term}")
        if z_mm.shape[1] == 0:
            raise FormulaError(f"random term {term} has no columns")
        blocks.append(
            RandomBlock(
                term=term,
                label=label,
                columns=[lme4_name(c) for c in z_mm.columns],
                Z=np.asarray(z_mm, dtype=float),
                codes=codes,
                levels=levels,
                matrix_spec=z_mm.model_spec,
            )
        )
    return Design(
        spec=spec,
        y=y,
        X=X,
        fixed_names=fixed_names,
        blocks=blocks,
        frame=frame,
        n_dropped=n_dropped,
        fixed_spec=fixed_mm.model_spec,
    )


@dataclass
class NewDesign:
    """Design arrays for new rows (prediction)."""

    X: np.ndarray
    Z: list[np.ndarray]
    codes: list[np.ndarray]
    new_levels: list[list[str]]


def new_design(design: Design, newdata: pd.DataFrame) -> NewDesign:
    """Evaluate the fitted encodings on new rows; unseen group levels get code -1.

    New levels are coded per block: ``codes[k] >= n_levels`` indexes
    ``new_levels[k]``.
    """
    if not isinstance(newdata, pd.DataFrame):
        raise ColumnTypeError(f"newdata must be a DataFrame, got {type(newdata).__name__}")
    needed = set(design.frame.columns) - {design.response}
    missing = sorted(c for c in needed if c not in newdata.columns)
    if missing:
        raise DataError(f"newdata lacks column(s) {missing} used by the model")
    frame = newdata.loc[:, [c for c in design.frame.columns if c in newdata.columns]].copy()
    frame = frame.reset_index(drop=True)
    if frame.drop(columns=[design.response], errors="ignore").isna().any().any():
        raise DataError("newdata has missing values in columns the model uses")
    try:
        X = np.asarray(design.fixed_spec.get_model_matrix(frame), dtype=float)
    except Exception as exc:
        raise DataError(f"cannot encode newdata for the fixed effects: {exc}") from exc
    Zs, codes_all, new_all = [], [], []
    for block in design.blocks:
        Zs.append(np.asarray(block.matrix_spec.get_model_matrix(frame), dtype=float))
        labels = frame[list(block.term.factors)].astype(str).agg(":".join, axis=1)
        lookup = {lvl: i for i, lvl in enumerate(block.levels)}
        unseen = [lvl for lvl in pd.unique(labels) if lvl not in lookup]
        for i, lvl in enumerate(unseen):
            lookup[lvl] = block.n_levels + i
        codes_all.append(labels.map(lookup).to_numpy(dtype=np.int64))
        new_all.append(unseen)
    return NewDesign(X=X, Z=Zs, codes=codes_all, new_levels=new_all)
