"""Convergence checks on posterior draws: R-hat, bulk/tail ESS, divergences.

The checks compute ArviZ's rank-normalised split R-hat and bulk and tail ESS for every
element at once (:mod:`bayeslmm.bayes.chains`), with the installed ArviZ's default tail
quantiles (:func:`~bayeslmm.bayes.stack.tail_ess_probs`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import ConvergenceWarning, warn
from . import stack
from .chains import diagnose
from .stack import Results

RHAT_MAX = 1.01
ESS_MIN = 400


@dataclass
class Convergence:
    """Worst diagnostics over the checked variables, and plain-language problems."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    n_draws: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


#: variables whose diagnostics are computed together (bounds the FFT's memory)
CHUNK = 256


def _elements(post, var_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every element of the variables as ``(V, chains, draws)`` and each row's variable
    name."""
    arrays, names = [], []
    for name in var_names:
        values = np.asarray(post[name].values, float)
        values = values.reshape(values.shape[0], values.shape[1], -1)
        arrays.append(np.moveaxis(values, 2, 0))
        names += [name] * arrays[-1].shape[0]
    return np.concatenate(arrays, axis=0), np.array(names, dtype=object)


def _by_chunks(x: np.ndarray, rhat: bool) -> tuple[np.ndarray | None, ...]:
    """:func:`~bayeslmm.bayes.chains.diagnose` of :data:`CHUNK` variables at a time, joined."""
    probs = stack.tail_ess_probs()
    parts = [diagnose(x[i : i + CHUNK], rhat, ess=True, probs=probs)
             for i in range(0, x.shape[0], CHUNK)]  # fmt: skip
    return tuple(None if not parts or parts[0][k] is None
                 else np.concatenate([part[k] for part in parts]) for k in range(3))  # fmt: skip


def _worst(values: np.ndarray, names: np.ndarray, largest: bool) -> tuple[float, str]:
    """The largest (or smallest) finite value and its variable's name (NaN: constant
    elements such as a correlation matrix's diagonal, skipped)."""
    finite = np.isfinite(values)
    if not finite.any():
        return float("nan"), ""
    values, names = values[finite], names[finite]
    i = int(np.argmax(values) if largest else np.argmin(values))
    return float(values[i]), str(names[i])


def divergence_advice(target_accept: float | None) -> str:
    """What to try against divergences, given the ``target_accept`` that produced them."""
    if target_accept is None or target_accept < 0.95:
        return "raise target_accept (e.g. 0.95) or change the parametrization"
    if target_accept < 0.99:
        return f"raise target_accept from {target_accept:g} to 0.99"
    return (
        f"target_accept is already {target_accept:g}, so smaller steps will not help much: "
        "try more informative priors on the random-effect SDs or a simpler random-effects "
        "structure (with method='full', also the other parametrization: "
        "LMM(..., parametrization='centered'))"
    )


def check_convergence(
    idata: Results, var_names: list[str], target_accept: float | None = None
) -> Convergence:
    """R-hat, ESS and divergences of ``var_names`` in ``idata.posterior``; the advice for
    divergences takes the ``target_accept`` they were sampled with into account."""
    post = stack.posterior(idata)[var_names]
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    problems = []
    div = 0
    if stack.has_group(idata, "sample_stats"):
        stats = stack.group(idata, "sample_stats")
        if "diverging" in stats:
            div = int(stats["diverging"].sum())
    # constant elements (a correlation matrix's diagonal) give NaN, which _worst skips
    x, names = _elements(post, var_names)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        rhats, bulks, tails = _by_chunks(x, rhat=n_chains > 1)
        rhat, rhat_var = (_worst(rhats, names, largest=True) if rhats is not None
                          else (float("nan"), ""))  # fmt: skip
        bulk, bulk_var = _worst(bulks, names, largest=False)
        tail, tail_var = _worst(tails, names, largest=False)
    if n_chains < 2:
        problems.append(
            "one chain: R-hat, which compares chains, cannot tell whether the sampler "
            "converged; run two or more (chains=4)"
        )
    if rhat > RHAT_MAX:
        problems.append(
            f"R-hat up to {rhat:.3f} ({rhat_var}) > {RHAT_MAX}: chains disagree; "
            "run longer (more tune and draws) or check the model"
        )
    if bulk < ESS_MIN:
        problems.append(
            f"bulk ESS down to {bulk:.0f} ({bulk_var}) < {ESS_MIN}: posterior means are "
            "imprecise; draw more samples"
        )
    if tail < ESS_MIN:
        problems.append(
            f"tail ESS down to {tail:.0f} ({tail_var}) < {ESS_MIN}: intervals are "
            "imprecise; draw more samples"
        )
    if div:
        problems.append(
            f"{div} divergent transition(s): the sampler missed part of the posterior; "
            f"{divergence_advice(target_accept)}"
        )
    return Convergence(rhat, bulk, tail, div, n_chains * n_draws, problems)


def warn_convergence(result: Convergence, formula: str | None = None) -> None:
    """Emit one :class:`ConvergenceWarning` listing every problem (of ``formula``'s fit)."""
    if result.problems:
        of = f" of {formula!r}" if formula else ""
        warn(f"MCMC diagnostics{of}:\n  - " + "\n  - ".join(result.problems), ConvergenceWarning)


def verdict(result: Convergence) -> str:
    """A plain-language verdict on whether the draws can be trusted.

    When a check failed, the sentence ends with a colon: list ``result.problems`` after it.
    """
    rhat = (f"largest R-hat {result.max_rhat:.3f}" if np.isfinite(result.max_rhat)
            else "no R-hat (it needs two or more chains)")  # fmt: skip
    summary = (
        f"{rhat}, smallest bulk ESS {result.min_ess_bulk:.0f}, "
        f"smallest tail ESS {result.min_ess_tail:.0f}, {result.divergences} divergent "
        f"transitions in {result.n_draws} draws"
    )
    if result.ok:
        return (
            f"The sampler converged: the chains agree (R-hat <= {RHAT_MAX}), every parameter "
            f"has at least {ESS_MIN} effective draws and there were no divergences ({summary}). "
            "The posterior summaries below can be trusted."
        )
    return (
        f"Do not trust these results yet: {len(result.problems)} check(s) failed ({summary}). "
        "Means may still be roughly right, but intervals and tail probabilities are "
        "unreliable until this is fixed:"
    )
