"""Simpler random-effects structures of a formula: the models a comparison needs.

A random term ``(1 + x | g)`` is reduced by removing one formula term from its
expression (``x`` -> ``(1 | g)``), as lmerTest's ``ranova`` does; a term left with
nothing is dropped; a correlated term with several columns loses its correlations
as ``(1 + x || g)``. Every reduction is a new :class:`ModelSpec` (the parsed formula
edited, never re-parsed from guessed text), rendered back to lme4 text with
:func:`render_formula`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from formulaic import Formula

from ..errors import FormulaError
from .design import Design
from .formula import ModelSpec, RandomTerm

#: Kinds of :class:`Reduction`.
KINDS = ("term", "slope", "intercept", "correlation")


def render_formula(spec: ModelSpec, random: Sequence[RandomTerm] | None = None) -> str:
    """lme4 text of ``spec`` (with ``random`` in place of its random terms, if given)."""
    terms = spec.random if random is None else tuple(random)
    rhs = " + ".join([spec.fixed, *[str(term) for term in terms]])
    return f"{spec.response} ~ {rhs}"


def expression_terms(expr: str) -> tuple[bool, list[str]]:
    """Whether a random term's expression has an intercept, and its other formula terms.

    ``"Days"`` -> ``(True, ["Days"])``; ``"0 + f"`` -> ``(False, ["f"])``; terms are
    named as formulaic prints them (``x:z``, ``I(x ** 2)``).
    """
    try:
        terms = [str(term) for term in Formula(expr)]
    except Exception as exc:  # formulaic raises many kinds
        raise FormulaError(f"cannot parse the random-term expression {expr!r}: {exc}") from exc
    return "1" in terms, [t for t in terms if t != "1"]


def term_expression(intercept: bool, terms: Sequence[str]) -> str | None:
    """The expression of an intercept and terms (``None`` when nothing is left)."""
    if not terms:
        return "1" if intercept else None
    return " + ".join(["1" if intercept else "0", *terms])


@dataclass(frozen=True)
class Reduction:
    """A simpler model: ``spec`` with one random term reduced.

    Attributes
    ----------
    label
        Row name as lmerTest's ``ranova`` prints it (``"Days in (Days | Subject)"``,
        ``"(1 | Subject)"``), or ``"correlations in (...)"`` for a correlation removed.
    kind
        ``"term"`` (a whole random term dropped), ``"slope"`` (one term of an expression
        removed, the rest kept), ``"intercept"`` (the intercept of a ``||`` term removed)
        or ``"correlation"`` (``|`` turned into ``||``).
    removed
        The formula term removed (``"Days"``, ``"1"``), or ``"correlation"``.
    term
        The random term of the full model that was reduced.
    spec
        The reduced model.
    """

    label: str
    kind: str
    removed: str
    term: RandomTerm
    spec: ModelSpec

    @property
    def formula(self) -> str:
        return self.spec.formula


def _replace_term(spec: ModelSpec, index: int, new: RandomTerm | None) -> ModelSpec:
    random = list(spec.random)
    if new is None:
        del random[index]
    else:
        random[index] = new
    return replace(spec, formula=render_formula(spec, random), random=tuple(random))


def _removals(spec: ModelSpec, index: int) -> list[Reduction]:
    """One :class:`Reduction` per formula term of random term ``index`` (ranova's rows).

    A correlated term keeps its intercept: ``(1 + x | g)`` gives only ``x`` removed, and
    ``(1 | g)`` the whole term. An uncorrelated term is several lme4 terms (``(1 + x ||
    g)`` is ``(1 | g) + (0 + x | g)``), so each of its terms, the intercept included,
    is removed on its own.
    """
    term = spec.random[index]
    intercept, others = expression_terms(term.expr)
    out = []
    if not term.correlated:
        pieces = (["1"] if intercept else []) + others
        for piece in pieces:
            rest = [p for p in others if p != piece]
            expr = term_expression(intercept and piece != "1", rest)
            label = (f"(1 | {term.group})" if piece == "1"
                     else f"{piece} in (0 + {piece} | {term.group})")  # fmt: skip
            # (1 || g) is (1 | g): print it as lme4 users write it
            new = None if expr is None else replace(term, expr=expr, correlated=expr == "1")
            kind = "term" if new is None else "intercept" if piece == "1" else "slope"
            out.append(Reduction(label, kind, piece, term, _replace_term(spec, index, new)))
        return out
    if not others:
        return [Reduction(str(term), "term", "1", term, _replace_term(spec, index, None))]
    for piece in others:
        expr = term_expression(intercept, [p for p in others if p != piece])
        new = None if expr is None else replace(term, expr=expr)
        kind = "term" if new is None else "slope"
        out.append(Reduction(f"{piece} in {term}", kind, piece, term,
                             _replace_term(spec, index, new)))  # fmt: skip
    return out


def single_term_deletions(spec: ModelSpec, reduce_terms: bool = True) -> list[Reduction]:
    """The reduced models of lmerTest's ``ranova``, one per row.

    With ``reduce_terms=True`` (lmerTest's default) each formula term of a random term is
    removed in turn (``(1 + x | g)`` -> ``(1 | g)``; ``(1 | g)`` removed); with
    ``False`` each random term is dropped whole.
    """
    out = []
    for index, term in enumerate(spec.random):
        if reduce_terms:
            out.extend(_removals(spec, index))
        else:
            out.append(Reduction(str(term), "term", term.expr, term,
                                 _replace_term(spec, index, None)))  # fmt: skip
    return out


def simpler_neighbours(design: Design) -> list[Reduction]:
    """The fitted model's simpler neighbours within its random part.

    Each random slope removed (each non-intercept formula term of a random term, as in
    :func:`single_term_deletions`, where something random is left), then each
    correlation removed (a correlated term with several columns turned into ``||``).
    Random intercepts are not removed: every neighbour keeps a random term.
    """
    spec = design.spec
    out = []
    for index in range(len(spec.random)):
        for reduction in _removals(spec, index):
            if reduction.removed != "1" and reduction.spec.random:
                out.append(reduction)
    for index, (term, block) in enumerate(zip(spec.random, design.blocks, strict=True)):
        if block.correlated:
            new = replace(term, correlated=False)
            out.append(Reduction(f"correlations in {term}", "correlation", "correlation", term,
                                 _replace_term(spec, index, new)))  # fmt: skip
    return out
