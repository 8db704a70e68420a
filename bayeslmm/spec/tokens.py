"""Column names in formula text: which columns a formula reads (any name pandas allows,
bare or in backticks) and the plain identifiers formulaic sees in their place
(:class:`ColumnNames`)."""

from __future__ import annotations

import ast
import difflib
import keyword
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulaic import Formula
from formulaic.errors import FormulaicError

from ..errors import DataError, FormulaError, UnknownNameError
from .formula import ModelSpec, python_spelling, quote

#: numpy functions formulas may call by R's name
_R_NAMED = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "log10": np.log10, "log2": np.log2,
            "log1p": np.log1p, "expm1": np.expm1, "abs": np.abs}  # fmt: skip
_CONTEXT = {"np": np, "numpy": np, **_R_NAMED}


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


# ---------------------------------------------------------------------------------------
# column names: any name pandas allows, written bare or in backticks


@dataclass(frozen=True)
class _Token:
    """A name in formula text: ``start:end`` covers it (backticks included)."""

    start: int
    end: int
    name: str
    quoted: bool


_PY_WORDS = frozenset(keyword.kwlist)


def _name_tokens(text: str) -> list[_Token]:
    """Backticked names and bare names that may be columns (not function names, keyword
    arguments, numbers, string literals or Python keywords) in a piece of formula text."""
    tokens, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "`":
            j = text.index("`", i + 1)  # closed: parse_formula checked
            tokens.append(_Token(i, j + 1, text[i + 1 : j], True))
            i = j + 1
        elif ch in "'\"":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
        elif ch.isdigit():
            while i < n and (text[i].isalnum() or text[i] in "._"):
                i += 1
        elif ch.isalpha() or ch in "_.":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "._"):
                j += 1
            word, k = text[i:j], j
            while k < n and text[k].isspace():
                k += 1
            call = k < n and text[k] == "("
            kwarg = k < n and text[k] == "=" and text[k : k + 2] != "=="
            if not (call or kwarg or word in _PY_WORDS):
                tokens.append(_Token(i, j, word, False))
            i = j
        else:
            i += 1
    return tokens


def _needs_alias(name: str) -> bool:
    """Names formulaic cannot read as they are (dots, spaces, digits first, non-ASCII...) or
    would confuse with its own (``Intercept``)."""
    plain = name.isascii() and name.isidentifier() and not keyword.iskeyword(name)
    return not plain or name == "Intercept"


@dataclass
class ColumnNames:
    """The data's columns as the formula names them, and the identifiers formulaic sees.

    ``alias`` maps a column name that formulaic cannot read (``my x``, ``a.b``, ``1``,
    ``Größe``) to a plain identifier; formula text and the frame given to formulaic use
    the alias, and every name shown to the user is mapped back.
    """

    alias: dict[str, str] = field(default_factory=dict)
    #: calls rewritten from R's spelling (formulaic's rendering -> as written), see
    #: :func:`~bayeslmm.spec.formula.r_spellings`
    spellings: dict[str, str] = field(default_factory=dict)

    @property
    def inverse(self) -> dict[str, str]:
        return {v: k for k, v in self.alias.items()}

    def rename(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with aliased column names, for formulaic."""
        return frame.rename(columns=self.alias) if self.alias else frame

    def encode(self, text: str, columns: set[str]) -> str:
        """Formula text as formulaic reads it: R's spellings rewritten
        (:func:`~bayeslmm.spec.formula.python_spelling`) and every column name that needs
        one replaced by its alias."""
        text = python_spelling(text)
        out, last = [], 0
        for tok in _name_tokens(text):
            if tok.name in self.alias and (tok.quoted or tok.name in columns):
                out += [text[last : tok.start], self.alias[tok.name]]
                last = tok.end
        return "".join(out) + text[last:]

    def decode(self, text: str) -> str:
        """A formulaic name or message with the aliases turned back into column names:
        bare at the top level (``my x``, ``f f:g``), backticked inside a call
        (``np.log(`my x`)``)."""
        if not self.alias:
            return text
        inverse = self.inverse
        pattern = re.compile("|".join(map(re.escape, sorted(inverse, key=len, reverse=True))))
        out, last = [], 0
        for m in pattern.finditer(text):
            depth = text.count("(", 0, m.start()) - text.count(")", 0, m.start())
            name = inverse[m.group()]
            out += [text[last : m.start()], quote(name) if depth > 0 else name]
            last = m.end()
        return "".join(out) + text[last:]


def respellings(spec: ModelSpec) -> dict[str, str]:
    """The formula's calls rewritten from R's spelling, keyed by formulaic's rendering of
    the Python text (``I(x ** 2)``, single quotes) as well as the text itself."""
    out = {}
    for python, written in spec.spellings:
        out[python] = written
        try:
            out[ast.unparse(ast.parse(python, mode="eval"))] = written
        except SyntaxError:  # a backticked name: formulaic sees its alias
            pass
    return out


def _respell(name: str, names: ColumnNames) -> str:
    """A column name with calls rewritten from R's spelling shown as written
    (``C(cond)b`` -> ``factor(cond)b``, as lme4 names it)."""
    for python in sorted(names.spellings, key=len, reverse=True):
        name = name.replace(python, names.spellings[python])
    return name


def _display_columns(data: pd.DataFrame) -> dict[str, list]:
    """Column name as text -> the data's labels with that text (two if ``1`` and ``"1"``)."""
    names: dict[str, list] = {}
    for label in data.columns:
        names.setdefault(str(label), []).append(label)
    return names


def _required(text: str, where: str, names: ColumnNames) -> set[str]:
    """Variables read by a piece of aliased formula text (formulaic misses arguments of
    scale())."""
    try:
        formula = Formula(text)
        needed = set(formula.required_variables)
        for term in formula:
            for factor in term.factors:
                needed |= _expression_names(str(factor.expr))
    except (FormulaicError, SyntaxError, ValueError) as exc:
        raise FormulaError(
            f"cannot parse {where} {names.decode(text)!r}: {names.decode(str(exc))}"
        ) from exc
    return needed


def _used_columns(spec: ModelSpec, data: pd.DataFrame) -> tuple[list[str], ColumnNames]:
    """Columns the formula reads (checked to exist in ``data``), and their aliases."""
    labels = _display_columns(data)
    columns = list(labels)
    pieces = [(spec.response, "the response"), (spec.fixed, "the fixed part")]
    pieces += [(term.expr, f"random term {term}") for term in spec.random]
    needs: dict[str, str] = {}
    for text, where in pieces:
        for tok in _name_tokens(text):
            if tok.quoted and tok.name not in labels:
                raise UnknownNameError(f"column {tok.name!r} used in {where} is not in the "
                                       f"data{_suggest(tok.name, columns)}")  # fmt: skip
            if tok.name in labels:
                needs.setdefault(tok.name, where)
    for term in spec.random:
        for var in term.factors:
            needs.setdefault(var, f"random term {term}")
    names = ColumnNames(spellings=respellings(spec))
    taken = set(columns)
    for name in needs:
        if name in labels and _needs_alias(name):
            alias = f"_col{len(names.alias)}_"
            while alias in taken:
                alias = f"_{alias}"
            names.alias[name] = alias
    present = {n for n in needs if n in labels}
    for text, where in pieces:
        tokens = {t.name for t in _name_tokens(text) if not t.quoted}
        for var in _required(names.encode(text, present), where, names):
            var = names.inverse.get(var, var)
            if var in labels:  # also a name only formulaic saw (Q('x'))
                needs.setdefault(var, where)
                continue
            if var in _CONTEXT:
                continue
            if re.search(rf"(?<![\w.]){re.escape(var)}\s*\(", text):
                raise UnknownNameError(
                    f"function {var}() used in {where} is not known: formulas call numpy "
                    f"(np.{var}(x) if numpy has it), {', '.join(sorted(_R_NAMED))}, and "
                    "formulaic's C(), I(), poly(), scale(), center(), bs(); R's factor(), "
                    "as.factor(), ordered() and relevel() are read as C()"
                )
            full = next((t for t in sorted(tokens) if t.startswith(f"{var}.")), var)
            raise UnknownNameError(
                f"column {full!r} used in {where} is not in the data{_suggest(full, columns)}"
            )
    for var, where in needs.items():
        if var not in labels:
            raise UnknownNameError(
                f"column {var!r} used in {where} is not in the data{_suggest(var, columns)}"
            )
        if len(labels[var]) > 1:
            both = ", ".join(map(repr, labels[var]))
            raise DataError(f"the data have {len(labels[var])} columns named {var!r} ({both}); "
                            "rename all but one")  # fmt: skip
    return [c for c in columns if c in needs], names


def response_column(text: str) -> str | None:
    """The column name if the response is one column (``y``, ```my y```), else None."""
    text = text.strip()
    tokens = _name_tokens(text)
    if len(tokens) == 1 and tokens[0].start == 0 and tokens[0].end == len(text):
        return tokens[0].name
    return None
