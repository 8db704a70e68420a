"""Convergence checks on posterior draws: R-hat, bulk/tail ESS, divergences."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import ConvergenceWarning, warn
from . import stack
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


def _worst(ds, fn) -> tuple[float, str]:
    values, names = [], []
    for name, da in ds.data_vars.items():
        arr = np.asarray(da)
        finite = arr[np.isfinite(arr)]
        if finite.size:
            values.append(fn(finite))
            names.append(name)
    if not values:
        return float("nan"), ""
    i = int(np.argmax(values) if fn is np.max else np.argmin(values))
    return float(values[i]), names[i]


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
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if n_chains > 1:
            rhat, rhat_var = _worst(stack.rhat(post), np.max)
        else:
            rhat, rhat_var = float("nan"), ""
        ess_bulk, bulk_var = _worst(stack.ess(post, method="bulk"), np.min)
        ess_tail, tail_var = _worst(stack.ess(post, method="tail"), np.min)
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
    if ess_bulk < ESS_MIN:
        problems.append(
            f"bulk ESS down to {ess_bulk:.0f} ({bulk_var}) < {ESS_MIN}: posterior means are "
            "imprecise; draw more samples"
        )
    if ess_tail < ESS_MIN:
        problems.append(
            f"tail ESS down to {ess_tail:.0f} ({tail_var}) < {ESS_MIN}: intervals are "
            "imprecise; draw more samples"
        )
    if div:
        problems.append(
            f"{div} divergent transition(s): the sampler missed part of the posterior; "
            f"{divergence_advice(target_accept)}"
        )
    return Convergence(rhat, ess_bulk, ess_tail, div, n_chains * n_draws, problems)


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
