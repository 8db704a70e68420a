"""Which random effects does the data support? The fitted model against its simpler
neighbours, frequentist and Bayesian side by side.

The neighbours (:func:`bayeslmm.spec.neighbours.simpler_neighbours`) are the fitted
formula with one random slope removed, or with one term's correlations removed. Each
is compared with the fitted model by

- the REML likelihood-ratio test (the fixed effects are the same, so REML likelihoods
  compare, as in lmerTest's ``ranova``), with its boundary-corrected p-value
  (:func:`bayeslmm.classical.anova.chibar_pvalue`), and the REML AIC and BIC;
- the Bayes factor from bridge-sampled marginal likelihoods
  (:mod:`bayeslmm.bayes.evidence`) and the difference in expected log predictive
  density by leave-one-group-out cross-validation (:mod:`bayeslmm.bayes.loo`).

Every difference is "fitted model minus neighbour": positive values speak for the
random slope or correlation that the neighbour lacks. The verdict on each component:

- **needed** when the test rejects its removal (boundary-corrected p < ``alpha``) and
  the Bayes factor does not favour the neighbour by more than 3 to 1;
- **not needed** when the test does not reject it and the Bayes factor does not
  favour the fitted model by more than 3 to 1;
- **unclear** otherwise (the two disagree). Without Bayesian fits the test decides.

AIC, BIC and cross-validation are reported beside the verdict, in words, not voted.

Binary and count models (``family=`` binomial, Bernoulli, Poisson or negative binomial)
are compared by maximum likelihood instead: GLMMs have no REML, so each model is fitted
by :func:`~bayeslmm.glmer` (Laplace; the negative binomial's theta estimated in each, as
``glmer.nb``) and the likelihood-ratio test is lme4's ``anova(full, reduced)`` with the
same boundary correction. Their neighbours are the Gaussian ones plus each random
intercept term dropped whole (whether the groups differ at all is the first question of
a binary or count model), the last one leaving a GLM. With ``bayes=True`` (or a fitted
Bayesian GLMM given as ``model``) every model is also fitted by :class:`~bayeslmm.LMM`
with the family (the GLM neighbour too, a Bayesian GLM) and compared by

- the Bayes factor, from bridge sampling on ``(beta, log SDs, correlations)`` with each
  level's effects integrated out per draw by adaptive Gauss-Hermite quadrature
  (:mod:`bayeslmm.bayes.glmm_marginal`); its error is the bridge's Monte Carlo error plus
  the largest quadrature error of one draw. The GLM's evidence is bridge-sampled on
  ``beta`` alone. One grouping factor only: a model with crossed or nested factors has no
  Bayes factor here (the notes say so, the columns stay empty);
- leave-one-group-out, leaving out the levels of the fitted model's factor with most levels
  in which no other factor is nested (:func:`~bayeslmm.bayes.loo.glmm_loo_group`), each
  scored with its effects integrated out where the model has that factor, given the other
  factors' effects at each draw (a neighbour without the factor: its rows' log-pmf);
- leave-one-observation-out (``elpd_obs_diff``, ``elpd_obs_diff_se``, ``k_high_obs``),
  each row scored given its group's effects.

Negative binomial models have no Bayesian fit (``bl.LMM`` does not sample the family): the
notes say so. The notes also say how each model's effects were integrated out and with
what error.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..bayes import stack
from ..bayes.evidence import bayes_factor
from ..bayes.glm_model import BAYES_FAMILIES, gaussian_only, is_gaussian
from ..bayes.loo import LooComparison, compare_results, glmm_loo_by, glmm_loo_group, loo_compare
from ..bayes.loo import loo as psis_loo
from ..bayes.model import LMM
from ..bayes.priors import resolve_priors
from ..bayes.settings import FitSettings
from ..classical.anova import chibar_pvalue, random_dimensions
from ..classical.glmer import GlmerResult, glmer
from ..classical.lmer import LmerResult, lmer
from ..errors import ArgumentError, BayesLMMError, ComparisonError, SingularFitWarning
from ..spec.design import Design, build_design
from ..spec.family import get_family
from ..spec.naming import ParameterNames
from ..spec.neighbours import Reduction, simpler_neighbours, single_term_deletions
from ..spec.response import _split_formula, glm_design
from ..spec.reuse import Designs, model_key, same_rows
from .glm import GlmResponse, check_family, fit_glm
from .rows import refuse_known_se

#: Bayes factor beyond which the evidence counts (Jeffreys' "substantial", 3 to 1).
BF_THRESHOLD = 3.0
TABLE_COLUMNS = [
    "component", "neighbour", "kind", "Df", "LRT", "p", "p_boundary", "null", "AIC_diff",
    "BIC_diff", "log_BF", "log_BF_error", "BF", "elpd_diff", "elpd_diff_se", "k_high",
    "verdict", "moot",
]  # fmt: skip
#: the columns a binary or count model's table adds: leave-one-observation-out
GLMM_COLUMNS = ["elpd_obs_diff", "elpd_obs_diff_se", "k_high_obs"]


@dataclass
class GlmNeighbourFit:
    """A GLMM's neighbour without random effects: the GLM (statsmodels' IRLS) of the same
    rows and fixed effects, with what the likelihood-ratio test needs."""

    formula: str
    loglik: float
    n_params: int
    n_obs: int
    n_separated: int = 0
    glm: Any = field(default=None, repr=False)

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + math.log(self.n_obs) * self.n_params


@dataclass
class NeighbourComparison:
    """One simpler neighbour and its fits (``reml``: its REML fit, or for a binary or
    count model its ML fit by :func:`~bayeslmm.glmer`, or the GLM when it has no random
    term left)."""

    reduction: Reduction
    reml: LmerResult | GlmerResult | GlmNeighbourFit = field(repr=False)
    bayes: LMM | None = field(repr=False, default=None)
    #: a binary or count model's Bayesian evidence (bridge sampling), where computed
    evidence: Any = field(repr=False, default=None)


@dataclass
class RandomEffectsComparison:
    """The fitted model against each simpler neighbour (see the module text).

    Attributes
    ----------
    formula
        The fitted model's formula.
    table
        One row per neighbour: ``component`` (what it lacks), ``neighbour`` (its
        formula), ``Df``, ``LRT``, ``p`` and ``p_boundary`` (REML likelihood-ratio test,
        ``null`` its null distribution), ``AIC_diff`` and ``BIC_diff`` (neighbour minus
        fitted: positive favours the fitted model), ``log_BF`` (fitted against
        neighbour) with ``log_BF_error`` and ``BF``, ``elpd_diff`` and ``elpd_diff_se``
        (leave-one-group-out, fitted minus neighbour), ``k_high`` (groups with high
        Pareto k in either model), ``verdict`` (``needed``, ``not needed``,
        ``unclear``) and ``moot`` (correlations of a term none of whose random slopes
        is needed); a binary or count model's table adds ``elpd_obs_diff``,
        ``elpd_obs_diff_se`` and ``k_high_obs`` (leave-one-observation-out).
    conclusions
        One plain-words paragraph per neighbour.
    reml
        The fitted formula by REML (a binary or count model: by ML, its
        :func:`~bayeslmm.glmer` fit); ``model`` the Bayesian fit (None without one).
    neighbours
        The neighbours' fits.
    loo
        Leave-one-group-out comparison of all the models (None without Bayesian fits);
        ``loo_observation`` leave-one-observation-out (binary and count models).
    notes
        What could not be computed, and why.
    """

    formula: str
    table: pd.DataFrame
    conclusions: list[str]
    reml: LmerResult | GlmerResult = field(repr=False)
    model: LMM | None = field(repr=False)
    neighbours: list[NeighbourComparison] = field(repr=False)
    loo: LooComparison | None = field(repr=False)
    notes: list[str]
    group: str | None = None
    alpha: float = 0.05
    #: how the likelihood-ratio tests were fitted: "REML" (Gaussian) or "ML (Laplace)"
    method: str = "REML"
    #: the response family
    family: str = "gaussian"
    #: a binary or count model's leave-one-observation-out comparison (None otherwise)
    loo_observation: LooComparison | None = field(repr=False, default=None)

    @property
    def summary(self) -> str:
        """What the data support, in a few plain sentences (moot correlations left out)."""
        if not len(self.table):
            return " ".join(self.notes)
        rows = self.table.loc[~self.table["moot"]]
        out = []
        for verdict, words in (("needed", "The data support"),
                               ("not needed", "The data do not support"),
                               ("unclear", "The evidence is mixed on")):  # fmt: skip
            chosen = rows.loc[rows["verdict"] == verdict]
            if len(chosen):
                out.append(f"{words} the {' and the '.join(chosen['component'])}.")
        simpler = rows.loc[rows["verdict"] == "not needed", "neighbour"]
        if len(simpler) == 1 and not (rows["verdict"] == "unclear").any():
            out.append(f"The simpler model {simpler.iloc[0]} is enough.")
        return " ".join(out)

    def __str__(self) -> str:
        lines = [f"Which random effects does the data support? ({self.formula})", self.summary]
        if len(self.table):
            shown = self.table.drop(columns=["neighbour", "kind", "null", "moot"])
            if self.method != "REML":  # a GLMM's Bayesian columns only where computed
                shown = shown.dropna(axis=1, how="all")
            lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        lines += self.conclusions + self.notes
        return "\n".join(lines)

    def __repr__(self) -> str:  # a REPL shows the comparison, not the fields
        return str(self)


def _component(reduction: Reduction) -> str:
    if reduction.kind == "correlation":
        return f"correlations in {reduction.term}"
    if reduction.kind == "term":  # a GLMM's random term dropped whole
        return f"random term {reduction.term}"
    return f"random slope of {reduction.removed} in {reduction.term}"


def _fit_neighbour(model: LMM, design: Design, fit_kwargs: dict[str, Any]) -> LMM:
    """The neighbour (its design, built once from the rows the model used), with the fitted
    model's priors of the parameters they share."""
    neighbour = LMM(design, parametrization=model.parametrization)
    names = set(ParameterNames.from_design(neighbour.design).all())
    shared = {k: v for k, v in model.priors.items() if k in names}
    neighbour.priors = resolve_priors(neighbour.design, shared)
    neighbour.fit(**fit_kwargs)
    return neighbour


def _fmt_p(p: float) -> str:
    """``= 0.61`` or ``< 0.0001``."""
    if not np.isfinite(p):
        return "not available"
    return f"= {p:.2g}" if p >= 1e-4 else "< 0.0001"


def _bf_words(log_bf: float, error: float) -> tuple[str, str]:
    """Words for a Bayes factor of the fitted model against a neighbour, and its side."""
    detail = f"log BF = {log_bf:.2f} ± {error:.2f}"
    if log_bf > math.log(BF_THRESHOLD):
        ratio = "more than a million" if log_bf > math.log(1e6) else f"{math.exp(log_bf):.3g}"
        return f"the Bayes factor favours the fitted model {ratio} to 1 ({detail})", "needed"
    if log_bf < -math.log(BF_THRESHOLD):
        ratio = "more than a million" if -log_bf > math.log(1e6) else f"{math.exp(-log_bf):.3g}"
        return f"the Bayes factor favours the simpler model {ratio} to 1 ({detail})", "not needed"
    return (f"the Bayes factor is inconclusive ({math.exp(log_bf):.2g} to 1 for the fitted "
            f"model, {detail})", "unclear")  # fmt: skip


def _verdict(test_rejects: bool, bayes_side: str | None) -> str:
    if bayes_side is None:
        return "needed" if test_rejects else "not needed"
    if test_rejects:
        return "unclear" if bayes_side == "not needed" else "needed"
    return "unclear" if bayes_side == "needed" else "not needed"


def _ic_words(aic: float, bic: float) -> str:
    def side(diff: float) -> str:
        return "the fitted model" if diff > 0 else "the simpler model"

    if (aic > 0) == (bic > 0):
        return f"AIC and BIC prefer {side(aic)} (by {abs(aic):.1f} and {abs(bic):.1f})"
    return (f"AIC prefers {side(aic)} (by {abs(aic):.1f}) and BIC {side(bic)} "
            f"(by {abs(bic):.1f})")  # fmt: skip


def _loo_words(diff: float, se: float, k_high: int, group: str, n_groups: int) -> str:
    where = f"leave-one-{group}-out cross-validation"
    if not np.isfinite(diff):
        return ""
    detail = f"elpd difference {diff:.1f} ± {se:.1f}"
    if abs(diff) > 2 * se:
        side = "the fitted model" if diff > 0 else "the simpler model"
        words = f"{where} predicts a new {group} better with {side} ({detail})"
    else:
        words = f"{where} cannot tell them apart ({detail}, within two standard errors)"
    if k_high:
        words += (f"; Pareto k is high for {k_high} of {n_groups} {group} levels, so this "
                  "estimate is rough")  # fmt: skip
    return words


def _pairwise_loo(full, small) -> tuple[float, float, int]:
    """elpd difference (full - small), its SE and the count of high Pareto k."""
    diff = stack.pointwise_elpd(full) - stack.pointwise_elpd(small)
    se = float(np.sqrt(len(diff) * np.var(diff)))
    k_high = max(int(np.sum(np.asarray(r.pareto_k) > r.good_k)) for r in (full, small))
    return float(diff.sum()), se, k_high


def compare_random_effects(
    model: LMM | str,
    data: pd.DataFrame | None = None,
    *,
    family: str | None = None,
    link: str | None = None,
    weights: str | np.ndarray | None = None,
    offset: str | np.ndarray | None = None,
    terms: str | Sequence[str] | None = None,
    bayes: bool | None = None,
    alpha: float = 0.05,
    priors: dict | None = None,
    fits: Iterable[Any] = (),
    **fit_kwargs: Any,
) -> RandomEffectsComparison:
    """Which random effects does the data support? The model against its neighbours.

    Parameters
    ----------
    model
        A fitted (or unfitted) :class:`~bayeslmm.LMM`, or an lme4 formula with ``data``.
    data
        The data, when ``model`` is a formula.
    family, link
        The response family of a formula (default Gaussian): ``"binomial"``,
        ``"bernoulli"``, ``"poisson"`` or ``"negative_binomial"`` compare ML fits by
        :func:`~bayeslmm.glmer` (see the module text), with ``weights=`` (binomial trials)
        and ``offset=`` as there, and with ``bayes=True`` Bayesian fits by
        :class:`~bayeslmm.LMM` (not the negative binomial). A fitted Bayesian GLMM may be
        given as ``model`` with the ``data`` it was fitted to (its fit reused).
    weights, offset
        As :func:`~bayeslmm.glmer`'s (binary and count models only).
    terms
        Compare only the neighbours that reduce these random terms (each as written in the
        formula, ``"(1 + x | g)"``, or by its grouping factor, ``"g"``); default all.
    bayes
        Also fit the Bayesian neighbours: Bayes factors and leave-one-group-out
        cross-validation (needs one grouping factor or two nested ones). Default: True for
        a Gaussian model; for a binary or count model True when ``model`` is a fitted
        Bayesian GLMM, else False (each neighbour is then one more sampling run with
        explicit random effects: ask with ``bayes=True``).
    alpha
        Level of the likelihood-ratio test.
    priors
        Priors of a model given as a formula (the neighbours share the fitted
        model's priors of their common parameters).
    fits
        Fits already made (e.g. ``bl.compare(model).fits.values()``): a
        :func:`~bayeslmm.lmer` REML fit of the model's formula or of a neighbour's, to the
        model's rows, is reused instead of refitted, and its design serves the Bayesian
        neighbour; other fits are ignored. Otherwise each neighbour's design is built
        once, for its REML and its Bayesian fit, and the model's REML fit uses the
        model's design.
    **fit_kwargs
        Passed to :meth:`LMM.fit` for every Bayesian fit (default: the fitted model's
        draws, tune, chains and random seed, else :class:`~bayeslmm.bayes.settings.
        FitSettings`' defaults; the seed also seeds bridge sampling and the importance
        draws of leave-one-group-out).

    Returns
    -------
    RandomEffectsComparison
        ``.table``, ``.conclusions`` (plain words) and the fits.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ArgumentError(f"alpha must be a number between 0 and 1, got {alpha!r}")
    if bayes is not None and not isinstance(bayes, bool):
        raise ArgumentError(f"bayes must be True or False, got {bayes!r}")
    fam = None if family is None and link is None else get_family(family or "gaussian", link)
    if isinstance(model, LMM) and not is_gaussian(model):
        if fam is not None and (fam.name, fam.link.name) != (model.family.name,
                                                           model.family.link.name):
            raise ComparisonError(f"family: {model.formula!r} is a {model.family} model, "
                                  f"not {fam}")  # fmt: skip
        if data is None:
            raise ComparisonError(
                f"compare_random_effects(model) without data is not for non-Gaussian families "
                f"yet: {model.formula!r} is a {model.family} model; pass the data it was "
                "fitted to, compare_random_effects(model, data) (bl.glmer refits the formula "
                "and its neighbours)"
            )
        if priors is not None:
            raise ArgumentError("priors: the fitted model has its priors already")
        if model.idata is None:
            raise ComparisonError(f"{model.formula!r} is not fitted: fit it, or pass its "
                                  "formula")  # fmt: skip
        return _compare_glmm(model.formula, data, model.family, weights, offset, terms, alpha,
                             True if bayes is None else bayes, None,
                             [model, *_fit_list(fits)], fit_kwargs, given=model)  # fmt: skip
    if fam is not None and fam.name != "gaussian":
        return _compare_glmm(model, data, fam, weights, offset, terms, alpha, bayes, priors,
                             fits, fit_kwargs)  # fmt: skip
    if weights is not None or offset is not None:
        raise ArgumentError("weights= and offset= are for binary and count models (family="
                            "'binomial', 'bernoulli', 'poisson', 'negative_binomial')")  # fmt: skip
    bayes = True if bayes is None else bayes
    if isinstance(model, str):
        if data is None:
            raise ComparisonError("compare_random_effects(formula, data): data is missing")
        model = LMM(model, data, priors=priors)
    elif not isinstance(model, LMM):
        raise ComparisonError(f"compare_random_effects() takes a bl.LMM or a formula, got "
                              f"{type(model).__name__}")  # fmt: skip
    elif data is not None:
        raise ComparisonError("pass data only with a formula: a model carries its own data")
    gaussian_only(model, "compare_random_effects()")
    refuse_known_se(model, "compare_random_effects()")
    frame = model.design.frame
    notes: list[str] = []
    chosen = _selected(simpler_neighbours(model.design), model.design, terms)
    known = _reml_fits(fits, model.design)
    designs = Designs(frame, model.design)  # a Dask DataFrame's lazily cleaned rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        reml = known.get(model_key(model.design.spec))
        if reml is None:
            reml = lmer(model.design)
        neighbours = []
        for r in chosen:
            fit = known.get(model_key(r.spec))
            if fit is None:
                design = (designs.get(r.spec) if model.design.residual is None
                          else build_design(r.spec, frame, model.residual_structure))
                fit = lmer(design)
            neighbours.append(NeighbourComparison(r, fit))
    if not neighbours:
        notes.append("The random part has no slope or correlation to remove, so there is no "
                      "simpler neighbour to compare with.")  # fmt: skip
    group = None
    use_bayes = bayes and bool(neighbours)
    if use_bayes and not model.marginal_supported:
        use_bayes = False
        notes.append("Bayes factors and leave-one-group-out need random effects to "
                     "integrate out; the comparison is frequentist only.")  # fmt: skip
    comparison = None
    if use_bayes:
        # the fit's settings and seed too: the same call gives the same neighbours and
        # bridge sampling
        asked = (model.fit_info.settings if model.fit_info is not None else FitSettings())
        base = {k: getattr(asked, k) for k in ("draws", "tune", "chains", "random_seed")}
        settings = FitSettings.from_kwargs({**base, "progressbar": False, **fit_kwargs},
                                           "compare_random_effects()").check().kwargs()
        if model.idata is None:
            model.fit(**settings)
        seed = settings["random_seed"]
        for n in neighbours:
            n.bayes = _fit_neighbour(model, n.reml.design, settings)
        try:
            fitted = f"{model.formula} (fitted)"
            models = {fitted: model} | {n.reduction.formula: n.bayes for n in neighbours}
            comparison = loo_compare(models, by="group")
            group = comparison.unit
        except BayesLMMError as err:
            notes.append(f"Leave-one-group-out was not computed: {err}")
        for m in [model] + [n.bayes for n in neighbours]:
            m.log_marginal_likelihood(random_seed=seed)
    rows, conclusions = [], []
    n_groups = len(model.design.groups()[group]) if group else 0
    for n in neighbours:
        r = n.reduction
        small = n.reml
        lrt = 2.0 * max(0.0, reml.loglik - small.loglik)
        df = reml.n_params - small.n_params
        extra = random_dimensions(reml.design) - random_dimensions(small.design)
        p = float(chibar_pvalue(lrt, df, 0)[0])
        p_boundary, null = chibar_pvalue(lrt, df, extra)
        row = {"component": _component(r), "neighbour": r.formula, "kind": r.kind, "Df": df,
               "LRT": lrt, "p": p, "p_boundary": p_boundary, "null": null,
               "AIC_diff": small.aic - reml.aic, "BIC_diff": small.bic - reml.bic}  # fmt: skip
        test_p = p_boundary if np.isfinite(p_boundary) else p
        rejects = test_p < alpha
        finding = ("rejects the simpler model" if rejects
                   else "finds no evidence against the simpler model")  # fmt: skip
        words = [f"the REML likelihood-ratio test {finding} (LRT = {lrt:.2f} on {df} df, "
                 f"{'boundary-corrected ' if extra else ''}p {_fmt_p(test_p)})"]  # fmt: skip
        words.append(_ic_words(row["AIC_diff"], row["BIC_diff"]))
        side = None
        if n.bayes is not None:
            bf = bayes_factor(model, n.bayes)
            bf_text, side = _bf_words(bf.log_bf, bf.error)
            row.update({"log_BF": bf.log_bf, "log_BF_error": bf.error, "BF": bf.bf})
            words.append(bf_text)
            if comparison is not None:
                diff, se, k_high = _pairwise_loo(comparison.loo[fitted],
                                                 comparison.loo[r.formula])  # fmt: skip
                row.update({"elpd_diff": diff, "elpd_diff_se": se, "k_high": k_high})
                words.append(_loo_words(diff, se, k_high, group, n_groups))
        verdict = _verdict(rejects, side)
        row["verdict"] = verdict
        rows.append(row)
        conclusions.append(_conclusion(r, verdict, rejects, side, words))
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    table["moot"] = _moot(neighbours, table)
    for i in np.flatnonzero(table["moot"].to_numpy()):
        conclusions[i] += (" This matters only if the term keeps a random slope, which the "
                           "data do not support.")  # fmt: skip
    return RandomEffectsComparison(
        formula=model.formula, table=table, conclusions=conclusions, reml=reml,
        model=model if use_bayes else None, neighbours=neighbours, loo=comparison,
        notes=notes, group=group, alpha=alpha,
    )  # fmt: skip


def _reml_fits(fits: Iterable[Any], design: Design) -> dict[tuple, LmerResult]:
    """The REML fits among ``fits`` to the rows of ``design`` (with its residual
    structure), by :func:`~bayeslmm.spec.reuse.model_key`."""
    if isinstance(fits, Mapping):
        fits = fits.values()
    structure = design.residual.structure if design.residual is not None else None
    out: dict[tuple, LmerResult] = {}
    for fit in fits:
        if not isinstance(fit, LmerResult) or not fit.reml:
            continue
        other = fit.design.residual.structure if fit.design.residual is not None else None
        if other == structure and same_rows(fit.design, design):
            out.setdefault(model_key(fit.design.spec), fit)
    return out


def _moot(neighbours: list[NeighbourComparison], table: pd.DataFrame) -> list[bool]:
    """Correlations of a term whose every random slope is not needed."""
    out = []
    for n in neighbours:
        term = n.reduction.term
        slopes = [v for m, v in zip(neighbours, table["verdict"], strict=True)
                  if m.reduction.kind == "slope" and m.reduction.term == term]  # fmt: skip
        out.append(n.reduction.kind == "correlation" and bool(slopes)
                   and all(v == "not needed" for v in slopes))  # fmt: skip
    return out


def _conclusion(r: Reduction, verdict: str, rejects: bool, side: str | None,
                words: list[str]) -> str:  # fmt: skip
    plural = r.kind == "correlation"
    what = (f"the correlations of {r.term}" if plural
            else f"the random term {r.term}" if r.kind == "term"
            else f"the random slope of {r.removed} in {r.term}")  # fmt: skip
    be, it = ("are", "them") if plural else ("is", "it")
    What = what[0].upper() + what[1:]
    if verdict == "needed":
        head = f"{What} {be} needed: the data support {it}"
    elif verdict == "not needed":
        head = f"{What} {be} not needed: {r.formula} fits as well"
    else:
        bayes = "favours the simpler model" if side == "not needed" else "favours the fitted model"
        head = (f"Whether {what} {be} needed is unclear: the test "
                f"{'rejects' if rejects else 'does not reject'} the simpler model but the Bayes "
                f"factor {bayes}")  # fmt: skip
    detail = "; ".join(w for w in words if w)
    return f"{head}. {detail[0].upper()}{detail[1:]}."


def _selected(reductions: list[Reduction], design: Design,
              terms: str | Sequence[str] | None) -> list[Reduction]:  # fmt: skip
    """The reductions of the random terms named in ``terms`` (all without it)."""
    if terms is None:
        return reductions
    given = [terms] if isinstance(terms, str) else list(terms)
    random = design.spec.random
    written = ", ".join(str(t) for t in random) or "none"

    def key(text: str) -> str:
        return "".join(text.split()).removeprefix("(").removesuffix(")")

    chosen = []
    for text in given:
        if not isinstance(text, str):
            raise ArgumentError(f"terms must be random terms as strings, got {text!r}")
        hits = [t for t in random
                if key(str(t)) == key(text) or "".join(text.split()) == t.group]  # fmt: skip
        if not hits:
            raise ComparisonError(f"terms: {text!r} is not a random term of "
                                  f"{design.spec.formula!r} (its random terms: {written})")
        for term in hits:
            if not any(r.term == term for r in reductions):
                raise ComparisonError(f"terms: the random term {term} has no simpler neighbour "
                                      "to compare with (random intercepts of a Gaussian model "
                                      "are tested by bl.ranova)")  # fmt: skip
        chosen += hits
    return [r for r in reductions if r.term in chosen]


def _glmm_formula(formula: str, reduction: Reduction) -> str:
    """The user's text of a GLMM neighbour: its response and offsets as in ``formula``."""
    lhs, _, offsets = _split_formula(formula)
    rhs = reduction.formula.split("~", 1)[1].strip()
    return " + ".join([f"{lhs} ~ {rhs}", *[f"offset({o})" for o in offsets]])


def _glmer_fits(fits: Iterable[Any], design: Design, response,
                family) -> dict[tuple, GlmerResult]:  # fmt: skip
    """The Laplace :func:`~bayeslmm.glmer` fits among ``fits`` to the rows of ``design``
    and ``response`` (its values, trials and offsets) with ``family`` (by name and link;
    a negative binomial's theta estimated, as here)."""
    if isinstance(fits, Mapping):
        fits = fits.values()
    out: dict[tuple, GlmerResult] = {}
    for fit in fits:
        if not (isinstance(fit, GlmerResult) and fit.nagq == 1
                and same_rows(fit.design, design)):  # fmt: skip
            continue
        theirs = fit.response
        if (fit.family.name == family.name and fit.family.link.name == family.link.name
                and fit.nb_estimated == (family.negative_binomial and family.theta is None)
                and (not family.negative_binomial or family.theta is None
                     or fit.family.theta == family.theta)
                and all(np.array_equal(getattr(theirs, a), getattr(response, a))
                        for a in ("y", "weights", "offset"))):  # fmt: skip
            out.setdefault(model_key(fit.design.spec), fit)
    return out


def _fit_list(fits: Iterable[Any]) -> list[Any]:
    return list(fits.values() if isinstance(fits, Mapping) else fits)


def _bayes_fit(fits: Iterable[Any], design: Design, response, family) -> LMM | None:
    """A fitted Bayesian GLMM among ``fits`` of ``design``'s formula (its spec), rows and
    response (values, trials, offsets), with ``family`` (name and link)."""
    for fit in _fit_list(fits):
        if not (isinstance(fit, LMM) and not is_gaussian(fit) and fit.idata is not None
                and model_key(fit.design.spec) == model_key(design.spec)
                and same_rows(fit.design, design)):  # fmt: skip
            continue
        theirs = fit.response
        if ((fit.family.name, fit.family.link.name) == (family.name, family.link.name)
                and all(np.array_equal(np.broadcast_to(getattr(theirs, a), np.shape(theirs.y)),
                                       np.broadcast_to(getattr(response, a),
                                                       np.shape(response.y)))
                        for a in ("y", "weights", "offset"))):  # fmt: skip
            return fit
    return None


def _compare_glmm(model, data, fam, weights, offset, terms, alpha: float, bayes: bool | None,
                  priors, fits, fit_kwargs: dict[str, Any],
                  given: LMM | None = None) -> RandomEffectsComparison:  # fmt: skip
    """:func:`compare_random_effects` of a binary or count model: ML fits by glmer, and with
    ``bayes`` the Bayesian fits (module text)."""
    check_family(fam, "compare_random_effects()")
    if not isinstance(model, str):
        raise ComparisonError(
            f"compare_random_effects(formula, data, family={fam.name!r}) takes the formula as "
            f"a string with the data (bl.glmer fits them), not a {type(model).__name__}"
        )
    if data is None:
        raise ComparisonError("compare_random_effects(formula, data): data is missing")
    samples = fam.name in BAYES_FAMILIES
    if (priors is not None or fit_kwargs) and not (bayes and samples):
        given_ = ", ".join(["priors"] * (priors is not None) + sorted(fit_kwargs))
        why = (f"which compare_random_effects() makes for the {fam.name} family only with "
               "bayes=True" if samples else
               f"and bl.LMM does not sample the {fam.name} family")  # fmt: skip
        raise ArgumentError(f"{given_}: settings of the Bayesian fits, {why}")
    design, response = glm_design(model, data, fam, weights=weights, offset=offset)
    if not design.blocks:
        raise ComparisonError(f"{model!r} has no random term such as (1 | g) to compare")
    reductions = {r.formula: r for r in single_term_deletions(design.spec) if r.kind == "term"}
    reductions |= {r.formula: r for r in simpler_neighbours(design)}
    chosen = _selected(list(reductions.values()), design, terms)
    known = _glmer_fits(fits, design, response, fam)
    notes = ["Fitted by maximum likelihood (Laplace approximation, bl.glmer): GLMMs have no "
             "REML, so the likelihood-ratio tests are lme4's anova(full, reduced)."]  # fmt: skip
    reused = _bayes_fit(fits, design, response, fam) if samples else None
    if given is not None and reused is None:
        raise ComparisonError(f"the fitted model {given.formula!r} was not fitted to these "
                              "data (rows, response, trials and offsets differ)")  # fmt: skip
    use_bayes = bool(bayes) and samples
    if bayes is not False and not samples:
        notes.append(f"Bayes factors and leave-one-group-out cross-validation are not "
                     f"available for the {fam.name} family: bl.LMM does not sample it, so "
                     "the comparison is frequentist only.")  # fmt: skip
    elif bayes is None:
        notes.append(f"Bayes factors and leave-one-group-out cross-validation are not "
                     f"available for the {fam.name} family by default: bayes=True fits "
                     "every neighbour by NUTS too (one sampling run each).")  # fmt: skip

    def fit(formula: str, spec) -> GlmerResult:
        return known.get(model_key(spec)) or glmer(formula, data, fam, weights=weights,
                                                    offset=offset)  # fmt: skip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        full = fit(model, design.spec)
        neighbours = []
        for r in chosen:
            text = _glmm_formula(model, r)
            if r.spec.random:
                small = fit(text, r.spec)
                if small.design.n_obs != full.design.n_obs:
                    raise ComparisonError(
                        f"{text!r} uses {small.design.n_obs} rows and {model!r} "
                        f"{full.design.n_obs}: drop the rows with missing values first"
                    )
            else:
                small = _glm_neighbour(text, design, fam, response)
                if small.n_separated:
                    notes.append(f"The GLM {text} separates {small.n_separated} rows (their "
                                 "fitted probabilities or means reach 0 or 1): its "
                                 "log-likelihood is the limit.")  # fmt: skip
            neighbours.append(NeighbourComparison(r, small))
    if not neighbours:
        notes.append("The random part has nothing to remove, so there is no simpler "
                     "neighbour to compare with.")  # fmt: skip
    bayesian = None
    if use_bayes and neighbours:
        bayesian = _glmm_bayes(model, data, fam, weights, offset, priors, reused, neighbours,
                               fit_kwargs, notes)  # fmt: skip
    rows, conclusions = [], []
    for n in neighbours:
        r, small = n.reduction, n.reml
        text = _glmm_formula(model, r)
        lrt = 2.0 * max(0.0, full.loglik - small.loglik)
        df = full.n_params - small.n_params
        smaller = random_dimensions(small.design) if isinstance(small, GlmerResult) else 0
        extra = random_dimensions(full.design) - smaller
        p = float(chibar_pvalue(lrt, df, 0)[0])
        p_boundary, null = chibar_pvalue(lrt, df, extra)
        row = {"component": _component(r), "neighbour": text, "kind": r.kind, "Df": df,
               "LRT": lrt, "p": p, "p_boundary": p_boundary, "null": null,
               "AIC_diff": small.aic - full.aic, "BIC_diff": small.bic - full.bic}  # fmt: skip
        test_p = p_boundary if np.isfinite(p_boundary) else p
        rejects = test_p < alpha
        finding = ("rejects the simpler model" if rejects
                   else "finds no evidence against the simpler model")  # fmt: skip
        words = [f"the ML (Laplace) likelihood-ratio test {finding} (LRT = {lrt:.2f} on {df} "
                 f"df, {'boundary-corrected ' if extra else ''}p {_fmt_p(test_p)})",
                 _ic_words(row["AIC_diff"], row["BIC_diff"])]  # fmt: skip
        side = None
        if bayesian is not None:
            side = bayesian.add(n, row, words)
        row["verdict"] = _verdict(rejects, side)
        rows.append(row)
        conclusions.append(_conclusion(r, row["verdict"], rejects, side,
                                       words).replace(r.formula, text))  # fmt: skip
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS + GLMM_COLUMNS)
    table["moot"] = _moot(neighbours, table)
    for i in np.flatnonzero(table["moot"].to_numpy()):
        conclusions[i] += (" This matters only if the term keeps a random slope, which the "
                           "data do not support.")  # fmt: skip
    return RandomEffectsComparison(
        formula=model, table=table, conclusions=conclusions, reml=full,
        model=bayesian.model if bayesian is not None else None, neighbours=neighbours,
        loo=bayesian.by_group if bayesian is not None else None, notes=notes,
        group=bayesian.group if bayesian is not None else None, alpha=alpha,
        method="ML (Laplace)", family=fam.name,
        loo_observation=bayesian.by_observation if bayesian is not None else None,
    )  # fmt: skip


@dataclass
class _GlmmBayes:
    """The Bayesian side of a GLMM's comparison: the fitted model, its evidence (or None),
    and the leave-one-out results by group and by observation (None where refused)."""

    model: LMM
    evidence: Any
    group: str | None
    by_group: LooComparison | None
    by_observation: LooComparison | None
    seed: int | None
    fitted: str
    n_groups: int = 0

    def add(self, n: NeighbourComparison, row: dict[str, Any], words: list[str]) -> str | None:
        """Fill ``row``'s Bayesian columns for neighbour ``n``; return the Bayes factor's
        side (None without one)."""
        side = None
        name = n.bayes.formula if n.bayes is not None else n.reduction.formula
        small_ev = n.evidence
        if self.evidence is not None and small_ev is not None:
            log_bf = self.evidence.logml - small_ev.logml
            error = math.hypot(self.evidence.error, small_ev.error)
            bf_text, side = _bf_words(log_bf, error)
            row.update({"log_BF": log_bf, "log_BF_error": error,
                        "BF": math.exp(log_bf) if log_bf < 709 else math.inf})  # fmt: skip
            words.append(bf_text)
        if self.by_group is not None and name in self.by_group.loo:
            diff, se, k_high = _pairwise_loo(self.by_group.loo[self.fitted],
                                             self.by_group.loo[name])  # fmt: skip
            row.update({"elpd_diff": diff, "elpd_diff_se": se, "k_high": k_high})
            words.append(_loo_words(diff, se, k_high, self.group, self.n_groups))
        if self.by_observation is not None and name in self.by_observation.loo:
            diff, se, k_high = _pairwise_loo(self.by_observation.loo[self.fitted],
                                             self.by_observation.loo[name])  # fmt: skip
            row.update({"elpd_obs_diff": diff, "elpd_obs_diff_se": se, "k_high_obs": k_high})
        return side


def _sentence(err: Exception) -> str:
    text = str(err).rstrip()
    return text if text.endswith(".") else text + "."


def _glmm_bayes(formula: str, data, fam, weights, offset, priors, reused: LMM | None,
                neighbours: list[NeighbourComparison], fit_kwargs: dict[str, Any],
                notes: list[str]) -> _GlmmBayes:  # fmt: skip
    """Fit the model (unless ``reused``) and its neighbours by :class:`~bayeslmm.LMM`
    with the family; their evidence and leave-one-out (module text); what could not be
    computed goes to ``notes``."""
    asked = (reused.fit_info.settings if reused is not None and reused.fit_info is not None
             else FitSettings())  # fmt: skip
    base = {k: getattr(asked, k) for k in ("draws", "tune", "chains", "random_seed")}
    settings = FitSettings.from_kwargs({**base, "progressbar": False, **fit_kwargs},
                                       "compare_random_effects()").check().kwargs()  # fmt: skip
    seed = settings["random_seed"]
    model = reused
    if model is None:
        model = LMM(formula, data, priors=priors, family=fam, weights=weights, offset=offset)
        model.fit(**settings)
    for n in neighbours:
        text = _glmm_formula(formula, n.reduction)
        small = LMM(text, data, family=fam, weights=weights, offset=offset)
        nb = fam.negative_binomial  # its dispersion's prior is shared too
        names = set(ParameterNames.from_design(small.design).all()) | ({"theta"} if nb else set())
        shared = {k: v for k, v in model.priors.items() if k in names}
        small.priors = resolve_priors(small.design, shared, gaussian=False, theta=nb)
        small.fit(**settings)
        n.bayes = small
    # Bayes factors: one grouping factor per model
    evidence = None
    try:
        evidence = model.log_marginal_likelihood(random_seed=seed)
    except BayesLMMError as err:
        notes.append(f"Bayes factors were not computed: {_sentence(err)}")
    if evidence is not None:
        notes.append(f"Bayes factors: bridge sampling; {formula}: {evidence.notes}.")
        for n in neighbours:
            text = _glmm_formula(formula, n.reduction)
            try:
                n.evidence = n.bayes.log_marginal_likelihood(random_seed=seed)
            except BayesLMMError as err:
                notes.append(f"No Bayes factor against {text}: {_sentence(err)}")
                continue
            notes.append(f"{text}: {n.evidence.notes}.")
    fitted = f"{formula} (fitted)"
    models = {fitted: model} | {n.bayes.formula: n.bayes for n in neighbours}
    # leave-one-group-out, by the fitted model's factor
    by_group, group, n_groups = None, None, 0
    try:
        group = glmm_loo_group(model)
        block = next(b for b in model.design.blocks if b.group == group)
        levels, n_groups = list(block.levels), block.n_levels
        results, how = {}, {}
        for name, m in models.items():
            results[name], how[name] = glmm_loo_by(m, group, block.codes, levels,
                                                   random_seed=seed)  # fmt: skip
        by_group = compare_results(results, "group", group, how)
        notes.append(f"Leave-one-{group}-out: " + "; ".join(
            f"{name}: {how[name]}" for name in models) + ".")  # fmt: skip
    except BayesLMMError as err:
        group = None
        notes.append(f"Leave-one-group-out was not computed: {_sentence(err)}")
    by_observation = None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
            results = {name: psis_loo(m, "observation") for name, m in models.items()}
        by_observation = compare_results(results, "observation", "observation")
    except BayesLMMError as err:
        notes.append(f"Leave-one-observation-out was not computed: {_sentence(err)}")
    return _GlmmBayes(model, evidence, group, by_group, by_observation, seed, fitted,
                      n_groups)  # fmt: skip


def _glm_neighbour(formula: str, design: Design, family, response) -> GlmNeighbourFit:
    """The GLM of a GLMM's fixed effects (its last random term dropped; a negative
    binomial's theta estimated again, as ``MASS::glm.nb``)."""
    resp = GlmResponse(family, response.y, response.weights, response.offset)
    glm = fit_glm(design.X, list(design.fixed_names), resp)
    loglik = float(glm.result.llf) if glm.result is not None else 0.0
    n_params = len(glm.kept) + len(glm.infinite) + int(family.negative_binomial)
    return GlmNeighbourFit(formula, loglik, n_params, design.n_obs, glm.n_separated, glm)
