"""Plain-text rendering of model summaries (lme4's layout, posterior statistics)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .results import hdi_of, population_draws, varcorr_table

#: The last printed digit of a posterior mean, sd or HDI bound is the first one larger
#: than this many Monte Carlo standard errors (Vehtari 2022, "How many digits to report").
MCSE_FACTOR = 2.0
#: Never more significant digits than this, however small the Monte Carlo error.
MAX_DIGITS = 4
#: A 3% / 97% quantile's Monte Carlo SE is about this many times sd / sqrt(ESS) for a
#: normal posterior (sqrt(0.03 * 0.97) / phi(1.88)): HDI bounds are rounded by it when
#: no draws are at hand (:func:`stat_mcse`).
HDI_MCSE_SCALE = 2.5
BATCHES = 20


def batch_mcse(draws: np.ndarray, batches: int = BATCHES) -> float:
    """Batch-means Monte Carlo SE of the mean of (chain, draw) draws: ``batches`` batch
    means per chain."""
    chains, n = draws.shape
    size = max(n // batches, 1)
    means = draws[:, : size * (n // size)].reshape(chains, -1, size).mean(axis=2)
    return float(means.std(ddof=1) / math.sqrt(means.size)) if means.size > 1 else math.nan


def bound_mcse(draws: np.ndarray, bound: float) -> float:
    """Monte Carlo SE of an interval bound of (chain, draw) draws, as of the quantile it
    sits at: the quantiles at ``p -/+ s``, ``p`` the share of draws below the bound and
    ``s`` that share's batch-means MCSE, half a spread apart (as ArviZ's quantile MCSE,
    whatever the tails; a normal approximation understates it for heavy tails)."""
    below = (draws <= bound).astype(float)
    p, s = float(below.mean()), batch_mcse(below)
    s = max(s, 1.0 / draws.size) if math.isfinite(s) else 1.0 / draws.size
    flat = draws.ravel()
    return float(np.quantile(flat, min(p + s, 1.0)) - np.quantile(flat, max(p - s, 0.0))) / 2


def mcse_decimals(value: float, mcse: float, factor: float = MCSE_FACTOR) -> int:
    """Decimals to print ``value`` with, given its Monte Carlo standard error.

    The last digit printed is the first one whose unit, a power of ten, is at least
    ``factor`` MCSE (negative: tens, hundreds, ...), and at most :data:`MAX_DIGITS`
    significant digits are printed; at least one where ``|value|`` is at least
    ``factor`` MCSE (0.45 with MCSE 0.06 prints ``0.5``, not ``0``). Without a finite
    positive MCSE: ``MAX_DIGITS`` significant digits.
    """
    value, mcse = float(value), float(mcse)
    finite = math.isfinite(value) and value != 0
    top = MAX_DIGITS - 1 - math.floor(math.log10(abs(value))) if finite else MAX_DIGITS - 1
    if not (math.isfinite(mcse) and mcse > 0):
        return top
    decimals = min(-math.ceil(math.log10(factor * mcse)), top)
    if finite and abs(value) >= factor * mcse:  # told from zero: one significant digit
        decimals = max(decimals, -math.floor(math.log10(abs(value))))
    return decimals


def mcse_format(value: float, mcse: float, factor: float = MCSE_FACTOR) -> str:
    """``value`` printed to the digits its Monte Carlo standard error supports
    (:func:`mcse_decimals`): e.g. 27.24 with MCSE 0.10 prints ``27``, 10.46 with MCSE
    0.03 prints ``10.5``."""
    if not math.isfinite(float(value)):
        return f"{value}"
    decimals = mcse_decimals(value, mcse, factor)
    rounded = round(float(value), decimals) + 0.0  # + 0.0: no "-0"
    return f"{rounded:.{max(decimals, 0)}f}"


def stat_mcse(table: pd.DataFrame, draws: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Monte Carlo standard error of the mean, sd and each HDI bound of every row of a
    summary table (:func:`~bayeslmm.bayes.results.summary_table`): ArviZ's ``mcse_mean``
    and ``mcse_sd``; for the HDI bounds ``HDI_MCSE_SCALE * sd / sqrt(ess_tail)`` (the
    normal approximation), or with the rows' (chain, draw) ``draws`` the larger of that
    and :func:`bound_mcse` (heavy tails; a bound at the edge of the support, where the
    draws pile up, is not taken as known better than the normal case)."""
    out = pd.DataFrame({"mean": table["mcse_mean"], "sd": table["mcse_sd"]}, index=table.index)
    tail = HDI_MCSE_SCALE * table["sd"] / np.sqrt(table["ess_tail"].astype(float))
    for col in hdi_of(table):
        if draws is None:
            out[col] = tail
        else:
            out[col] = [max(bound_mcse(np.asarray(draws[name]), table.loc[name, col]), t)
                        for name, t in zip(table.index, tail, strict=True)]  # fmt: skip
    return out


def _format_stats(table: pd.DataFrame, draws: Mapping[str, np.ndarray] | None = None
                  ) -> pd.DataFrame:  # fmt: skip
    """Mean, sd and HDI to the digits their Monte Carlo error supports; R-hat, ESS."""
    hdi = hdi_of(table)
    out = table[["mean", "sd", *hdi, "r_hat", "ess_bulk", "ess_tail"]].copy().astype(object)
    mcse = stat_mcse(table, draws)
    for col in ["mean", "sd", *hdi]:
        out[col] = [mcse_format(v, e) for v, e in zip(table[col], mcse[col], strict=True)]
    out["r_hat"] = [f"{v:.3f}" for v in table["r_hat"]]
    for col in ["ess_bulk", "ess_tail"]:
        out[col] = [f"{v:.0f}" for v in table[col]]
    return out


def population_values(model) -> dict[str, np.ndarray]:
    """(chain, draw) draws of every population parameter of a fitted model, by name."""
    drawn = population_draws(model._posterior(), model.design)
    return {name: da.transpose("chain", "draw").values for name, da in drawn.items()}


def format_summary(model, table: pd.DataFrame) -> str:
    """The printed form of :meth:`LMM.summary`."""
    design, info = model.design, model.fit_info
    family = getattr(model, "family", None)
    glm = family is not None and family.name != "gaussian"
    what = "generalised linear mixed model" if glm else "linear mixed model"
    lines = [
        f"Bayesian {what} fit by NUTS ({info.sampler}; {info.settings.chains} "
        f"chains x {info.settings.draws} draws)" if info is not None
        else f"Bayesian {what} (not fitted)",
        f"Formula: {model.formula if glm else design.spec.formula}",
    ]
    approximate = info is not None and info.method == "laplace"
    if approximate:
        lines[0] += " -- APPROXIMATE (Laplace marginal, method='laplace')"
    if glm:
        lines.append(f" Family: {family}; estimates on the {family.link.name} (link) scale")
    lines += [
        f"   Data: {design.n_obs} observations"
        + (f" ({design.n_dropped} dropped for missing values)" if design.n_dropped else ""),
    ]
    groups = ", ".join(f"{g} ({len(lv)} levels)" for g, lv in design.groups().items())
    if groups:
        lines.append(f" Groups: {groups}")
    if design.residual is not None:
        lines.append(f"Residuals: {design.residual.describe()}")
    if getattr(model, "known_se", None) is not None:
        lines.append(f"Residuals: known standard errors (column {model.se_column!r})"
                     + (" and an extra residual SD, sigma" if getattr(model, "extra_sigma", False)
                        else ", no sigma"))  # fmt: skip
    varcorr = varcorr_table(table, design)
    draws = population_values(model)
    stats = _format_stats(table.loc[varcorr["parameter"]], draws).reset_index(drop=True)
    names = [
        r.parameter
        if r.grp == "Residual"
        else (f"cor({r.var1},{r.var2})" if pd.notna(r.var2) else f"sd({r.var1})")
        for r in varcorr.itertuples()
    ]
    groups_col = varcorr["grp"].where(varcorr["grp"].ne(varcorr["grp"].shift()), "")
    random = pd.concat([pd.DataFrame({"Groups": groups_col, "Name": names}), stats], axis=1)
    heading = "Random effects (posterior of SDs and correlations)"
    if design.residual is not None:
        heading += f"; residual correlation {design.residual.parameter}"
    lines += ["", heading + ":"]
    lines.append(random.to_string(index=False))
    if glm and family.negative_binomial and "theta" in table.index:
        lines += ["", "Dispersion (negative binomial: variance mu + mu^2 / theta):",
                  _format_stats(table.loc[["theta"]], draws).to_string()]
    fixed = table.loc[table["component"] == "fixed"]
    if len(fixed):
        lines += ["", "Fixed effects:", _format_stats(fixed, draws).to_string()]
    conv = model.convergence
    if conv is not None:
        verdict = "OK" if conv.ok else "PROBLEMS"
        lines += [
            "",
            f"Convergence: {verdict} (max R-hat {conv.max_rhat:.3f}, min bulk ESS "
            f"{conv.min_ess_bulk:.0f}, min tail ESS {conv.min_ess_tail:.0f}, "
            f"{conv.divergences} divergences)"
            + (" of the APPROXIMATE Laplace marginal posterior" if approximate else ""),
        ]
        lines += [f"  - {p}" for p in conv.problems]
    return "\n".join(lines)


def interactive() -> bool:
    """Whether Python runs at an interactive prompt (the REPL, IPython, Jupyter), which
    shows a returned value itself."""
    import sys

    if hasattr(sys, "ps1") or bool(getattr(sys.flags, "interactive", 0)):
        return True
    get_ipython = getattr(sys.modules.get("IPython"), "get_ipython", None)
    return get_ipython is not None and get_ipython() is not None
