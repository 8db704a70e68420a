"""lme4 formula syntax to a :class:`ModelSpec`.

The fixed part is kept as text for formulaic (which handles ``a*b``, ``I(...)``,
``np.log(x)``, ``0 +``); this module only splits off the random terms, expands
``||`` and ``/`` and checks the syntax, pointing at the position of any error.

Any column name can be written in backticks, as in R: ```my score` ~ `parents' edu` +
(1 | `class-room`)``. Backticked text is never read as syntax (a ``+``, ``|``, ``:`` or
parenthesis inside it belongs to the name).
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from ..errors import FormulaError

#: A name usable without backticks: letters (any script), digits, ``_`` and ``.``, not
#: starting with a digit (R's rule; a leading dot must not be followed by a digit).
_NAME = re.compile(r"^(?:[^\W\d]|\.(?!\d))[\w.]*$")


def quote(name: str) -> str:
    """``name`` as it must be written in a formula: backticked unless it is a plain name.

    Examples
    --------
    >>> quote("Days"), quote("my score"), quote("1")
    ('Days', '`my score`', '`1`')
    """
    if "`" in name:
        raise FormulaError(f"column name {name!r} contains a backtick and cannot be written "
                           "in a formula; rename the column")  # fmt: skip
    if _NAME.match(name) and not keyword.iskeyword(name):
        return name
    return f"`{name}`"


def mask_backticks(text: str, formula: str | None = None, offset: int = 0) -> str:
    """``text`` with every backticked name (backticks included) replaced by ``x``s of the
    same length, so that scanning for syntax never looks inside a name."""
    out, inside, start = [], False, 0
    for i, ch in enumerate(text):
        if ch == "`":
            if not inside:
                start = i
            inside = not inside
            out.append("x")
        else:
            out.append("x" if inside else ch)
    if inside:
        raise FormulaError("unmatched '`' (a backticked name is not closed)", formula or text,
                           offset + start)  # fmt: skip
    return "".join(out)


def _squash_spaces(text: str) -> str:
    """Runs of white space outside backticked names become one space."""
    masked = mask_backticks(text)
    out, last_space = [], False
    for ch, m in zip(text, masked, strict=True):
        if m.isspace():
            if not last_space:
                out.append(" ")
            last_space = True
        else:
            out.append(ch)
            last_space = False
    return "".join(out).strip()



# ---------------------------------------------------------------------------------------
# R's spellings inside formula terms

#: R functions read as their Python (formulaic) spelling: ``factor(x)`` is ``C(x)``.
R_FACTOR = {"factor": "C({})", "as.factor": "C({})", "as.character": "C({})",
            "ordered": "C({}, contr.poly)", "as.ordered": "C({}, contr.poly)"}  # fmt: skip
#: R functions with no translation, and what to write instead.
R_REFUSED = {
    "as.numeric": "a numeric column is used as it is: write {x} (convert a text column in "
                  "pandas first, e.g. pd.to_numeric(data[...]))",
    "as.integer": "a numeric column is used as it is: write {x} (convert a text column in "
                  "pandas first, e.g. pd.to_numeric(data[...]))",
    "offset": "a Gaussian model (bl.lmer, bl.LMM without family=) has no offset terms "
              "(binary and count models do: bl.glmer, bl.LMM(..., family=...)): subtract "
              "it from the response, e.g. I(y - {x}) ~ ... (predictions are then of y - {x})",
    "interaction": "write the interaction as a:b, or a factor of the combinations as "
                   "C(a):C(b)",
    "ns": "natural splines have no formulaic spelling; use poly({x}, {k}) (orthogonal "
          "polynomials, as R's poly) or bs({x}, df={k}) (B-splines, not R's ns)",
}  # fmt: skip
_WRAPPED_FACTOR = re.compile(r"^(factor|as\.factor|as\.character)\s*\((.*)\)$", re.S)
_CALL = re.compile(r"(?<![\w.])([A-Za-z][\w.]*)\s*\(")


def _mask_code(text: str, formula: str | None = None, offset: int = 0) -> str:
    """:func:`mask_backticks`, and the insides of string literals masked too (a level
    ``"a^b"`` or ``"factor(x)"`` is not code)."""
    masked = list(mask_backticks(text, formula, offset))
    quote_char = None
    for i, ch in enumerate(masked):
        if quote_char is None:
            if ch in "'\"":
                quote_char = ch
        elif ch == quote_char and (i == 0 or text[i - 1] != "\\"):
            quote_char = None
        else:
            masked[i] = "x"
    return "".join(masked)


def _closing(masked: str, start: int) -> int:
    """Index of the ``)`` closing the ``(`` at ``start``."""
    depth = 0
    for i in range(start, len(masked)):
        depth += masked[i] == "("
        depth -= masked[i] == ")"
        if depth == 0:
            return i
    return len(masked) - 1  # unmatched: _check_parentheses has refused it already


def _top_commas(masked: str) -> list[int]:
    depth, out = 0, []
    for i, ch in enumerate(masked):
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            out.append(i)
    return out


def _python_expression(text: str, masked: str) -> str:
    """Inside a call R's ``^`` is a power and ``TRUE``/``FALSE`` are booleans: ``**``,
    ``True``, ``False`` (``I(x^2)`` would otherwise be Python's bitwise XOR)."""
    out, i = [], 0
    while i < len(text):
        if masked[i] == "^":
            out.append("**")
        elif masked[i].isalpha() and (i == 0 or not (masked[i - 1].isalnum()
                                                     or masked[i - 1] in "._")):  # fmt: skip
            j = i
            while j < len(text) and (masked[j].isalnum() or masked[j] in "._"):
                j += 1
            word = text[i:j]
            out.append({"TRUE": "True", "FALSE": "False"}.get(word, word))
            i = j
            continue
        else:
            out.append(text[i])
        i += 1
    return "".join(out)


def r_spellings(text: str, formula: str, offset: int) -> tuple[str, dict[str, str]]:
    """``text`` (a term, the response or a random term's expression) with R's spellings
    written as formulaic reads them, and a map from each rewritten call to the call as
    written (for names: ``C(cond)b`` is shown as ``factor(cond)b``).

    ``factor(x)``, ``as.factor(x)``, ``as.character(x)`` -> ``C(x)``; ``ordered(x)`` ->
    ``C(x, contr.poly)`` (R's polynomial contrasts for ordered factors);
    ``relevel(x, "b")`` / ``relevel(x, ref = "b")`` -> ``C(x, contr.treatment("b"))``;
    inside any call ``^`` -> ``**`` and ``TRUE``/``FALSE`` -> ``True``/``False``. Calls
    without a translation (``as.numeric``, ``offset``, ...) raise a :class:`FormulaError`
    saying what to write.
    """
    masked = _mask_code(text, formula, offset)
    out, spellings, last = [], {}, 0
    pos = 0
    while True:
        m = _CALL.search(masked, pos)
        if m is None:
            break
        name, open_at = m.group(1), m.end() - 1
        close = _closing(masked, open_at)
        inner, inner_masked = text[open_at + 1 : close], masked[open_at + 1 : close]
        where = offset + m.start()
        args = [a.strip() for a in _split_at(inner, _top_commas(inner_masked))]
        if name in R_REFUSED:
            x = inner.strip() if name == "offset" else args[0]
            k = args[1] if len(args) > 1 and "=" not in args[1] else "k"
            raise FormulaError(f"{name}() is R's: {R_REFUSED[name].format(x=x, k=k)}", formula,
                               where)  # fmt: skip
        if name in R_FACTOR or name == "relevel":
            wrapped = _WRAPPED_FACTOR.match(args[0]) if args else None
            if wrapped:  # relevel(factor(x), ...), factor(factor(x)): x is made a factor anyway
                args[0] = wrapped.group(2).strip()
            if name == "relevel":
                ref = args[1] if len(args) == 2 else ""
                ref = re.sub(r"^ref\s*=\s*", "", ref)
                if len(args) != 2 or not ref:
                    raise FormulaError("relevel() takes a column and its reference level: "
                                       "relevel(x, \"b\") (in Python: C(x, "
                                       "contr.treatment(\"b\")))", formula, where)  # fmt: skip
                python = f"C({args[0]}, contr.treatment({ref}))"
            else:
                if len(args) != 1 or not args[0]:
                    raise FormulaError(
                        f"{name}() with arguments beyond the column: write the Python "
                        f"spelling, e.g. C(x, levels=['b', 'a']) for factor(x, levels = "
                        f"c('b', 'a'))", formula, where)  # fmt: skip
                python = R_FACTOR[name].format(args[0])
            written = text[m.start() : close + 1]
            out += [text[last : m.start()], python]
            spellings[python] = written
        else:
            inner, nested = r_spellings(inner, formula, offset + open_at + 1)
            spellings.update(nested)
            translated = _python_expression(inner, _mask_code(inner))
            out += [text[last : open_at + 1], translated, ")"]
            if translated != text[open_at + 1 : close]:
                spellings[f"{name}({translated})"] = text[m.start() : close + 1]
        last = pos = close + 1
    out.append(text[last:])
    return "".join(out), spellings


def python_spelling(text: str) -> str:
    """Formula text as formulaic reads it (:func:`r_spellings`); the parsed
    :class:`ModelSpec` keeps the text as written."""
    return r_spellings(text, text, 0)[0]


def _split_at(text: str, cuts: list[int]) -> list[str]:
    bounds = [-1, *cuts, len(text)]
    return [text[a + 1 : b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

@dataclass(frozen=True)
class RandomTerm:
    """One random-effects block ``(expr | group)``.

    Attributes
    ----------
    expr
        Right-hand side of the term for formulaic, e.g. ``"1 + Days"`` or ``"0 + f"``.
    factors
        Column names whose interaction defines the grouping factor, e.g. ``("a", "b")``
        for ``a:b``.
    correlated
        ``False`` for ``||`` terms (diagonal covariance).
    """

    expr: str
    factors: tuple[str, ...]
    correlated: bool = True

    @property
    def group(self) -> str:
        """Grouping factor as lme4 prints it (``"a:b"``; in an interaction, a name holding
        ``:`` in backticks)."""
        if len(self.factors) == 1:
            return self.factors[0]
        return ":".join(f"`{f}`" if ":" in f else f for f in self.factors)

    def __str__(self) -> str:
        bar = "|" if self.correlated else "||"
        return f"({self.expr} {bar} {self.group})"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed lme4 formula: response, fixed part and random terms."""

    formula: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...] = field(default_factory=tuple)
    #: calls in R's spelling (the parts above keep them as written; formulaic reads them as
    #: :func:`python_spelling` rewrites them): Python text -> as written (``C(x)`` ->
    #: ``factor(x)``)
    spellings: tuple[tuple[str, str], ...] = ()

    @property
    def group_factors(self) -> list[str]:
        """Distinct grouping factors in order of appearance."""
        seen: dict[str, None] = {}
        for term in self.random:
            seen.setdefault(term.group, None)
        return list(seen)


def _check_parentheses(text: str, offset: int, formula: str) -> None:
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError("unmatched ')'", formula, offset + i)
    if depth:
        pos = offset + text.rfind("(") if "(" in text else offset + len(text)
        raise FormulaError("unmatched '('", formula, pos)


def _split_top(text: str, sep: str) -> list[tuple[int, str]]:
    """Split at ``sep`` where not inside parentheses; return (start, piece) pairs."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            pieces.append((start, text[start:i]))
            start = i + 1
    pieces.append((start, text[start:]))
    return pieces


def _find_bar(inner: str) -> tuple[int, int] | None:
    """Position and width of a top-level ``|`` or ``||`` inside a term."""
    depth = 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return i, 2 if inner[i : i + 2] == "||" else 1
    return None


def _parse_group(text: str, offset: int, formula: str) -> list[tuple[str, ...]]:
    """``a/b`` -> [(a,), (a, b)]; ``a:b`` -> [(a, b)]; backticked names taken verbatim."""
    masked = mask_backticks(text, formula, offset)
    factors_so_far: tuple[str, ...] = ()
    groups = []
    for start, part in _split_masked(text, masked, "/"):
        names = []
        for pos, raw in _split_masked(part, mask_backticks(part), ":"):
            where = start + pos + len(raw) - len(raw.lstrip())
            name = raw.strip()
            if len(name) >= 2 and name[0] == name[-1] == "`":
                name = name[1:-1]
                if not name:
                    raise FormulaError("empty backticked name", formula, offset + where)
            elif not _NAME.match(name):
                shown = name or text.strip()
                raise FormulaError(
                    f"grouping factor {text.strip()!r}: {shown!r} is not a column name "
                    "(write g, a:b or a/b; put other names in backticks, e.g. `my group`)",
                    formula,
                    offset + where,
                )
            names.append(name)
        factors_so_far = factors_so_far + tuple(names)
        groups.append(factors_so_far)
    return groups


def _split_masked(text: str, masked: str, sep: str) -> list[tuple[int, str]]:
    """Split ``text`` at ``sep`` where ``masked`` (the same text, names masked) has it."""
    pieces, start = [], 0
    for i, ch in enumerate(masked):
        if ch == sep:
            pieces.append((start, text[start:i]))
            start = i + 1
    pieces.append((start, text[start:]))
    return pieces


def _parse_random(piece: str, offset: int, formula: str,
                  spellings: dict[str, str]) -> list[RandomTerm]:  # fmt: skip
    inner = piece.strip()[1:-1]
    inner_offset = offset + len(piece) - len(piece.lstrip()) + 1
    bar = _find_bar(mask_backticks(inner))
    assert bar is not None
    pos, width = bar
    expr = inner[:pos].strip()
    group = inner[pos + width :]
    if not expr:
        raise FormulaError(
            "random term needs an expression before '|', e.g. (1 | g)",
            formula,
            inner_offset + pos,
        )
    if not group.strip():
        raise FormulaError(
            "random term needs a grouping factor after '|'", formula, inner_offset + pos
        )
    if "|" in mask_backticks(group):
        raise FormulaError("more than one '|' in a random term", formula, inner_offset + pos)
    lead = len(inner[:pos]) - len(inner[:pos].lstrip())
    spellings.update(r_spellings(expr, formula, inner_offset + lead)[1])
    expr = _squash_spaces(expr)
    groups = _parse_group(group, inner_offset + pos + width, formula)
    return [RandomTerm(expr, factors, correlated=(width == 1)) for factors in groups]


def _is_wrapped(text: str) -> bool:
    """True if ``text`` is one parenthesised group ``( ... )``."""
    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(text) - 1:
            return False
    return True


def parse_formula(formula: str) -> ModelSpec:
    """Parse an lme4 formula.

    Parameters
    ----------
    formula
        For example ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ModelSpec

    Raises
    ------
    FormulaError
        With the position of the problem marked under the formula.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, got {type(formula).__name__}")
    text = formula.strip()
    if not text:
        raise FormulaError("formula is empty")
    masked = mask_backticks(text, text)
    _check_parentheses(masked, 0, text)
    tildes = [i for i, ch in enumerate(masked) if ch == "~"]
    if not tildes:
        raise FormulaError("formula needs a response: 'y ~ ...'", text, 0)
    if len(tildes) > 1:
        raise FormulaError("formula has more than one '~'", text, tildes[1])
    lhs, rhs = text[: tildes[0]].strip(), text[tildes[0] + 1 :]
    if not lhs:
        raise FormulaError("formula needs a response before '~'", text, 0)
    if not rhs.strip():
        raise FormulaError("formula has nothing after '~'", text, tildes[0] + 1)
    rhs_offset = tildes[0] + 1
    masked_rhs = masked[rhs_offset:]

    spellings: dict[str, str] = {}
    spellings.update(r_spellings(lhs, text, 0)[1])
    fixed_parts: list[str] = []
    random: list[RandomTerm] = []
    for start, masked_piece in _split_top(masked_rhs, "+"):
        offset = rhs_offset + start
        piece = rhs[start : start + len(masked_piece)]
        if not masked_piece.strip():
            raise FormulaError("empty term (doubled or dangling '+')", text, offset)
        if _is_wrapped(masked_piece) and _find_bar(masked_piece.strip()[1:-1]) is not None:
            random.extend(_parse_random(piece, offset, text, spellings))
            continue
        bar_at = masked_piece.find("|")
        if bar_at >= 0:
            raise FormulaError(
                "random terms must be written in parentheses and added with '+', "
                "e.g. y ~ x + (1 | g)",
                text,
                offset + bar_at,
            )
        spellings.update(r_spellings(piece, text, offset)[1])
        fixed_parts.append(_squash_spaces(piece))

    fixed = " + ".join(fixed_parts) if fixed_parts else "1"
    if fixed.replace(" ", "") in {"0", "-1"}:  # y ~ 0 + (1|g): no fixed effects
        fixed = "0"
    return ModelSpec(formula=text, response=lhs, fixed=fixed, random=tuple(random),
                     spellings=tuple(spellings.items()))  # fmt: skip
