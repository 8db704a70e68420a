"""How the compiled sampler parametrises each grouping factor, read from a two-stage fit
of its levels (:meth:`~bayeslmm.gaussian.statistics.BlockedStats.level_spread`): which
sampled effects are centred (:attr:`LMM.centred_terms <bayeslmm.LMM.centred_terms>`),
which SDs are drawn signed (:attr:`LMM.signed_terms <bayeslmm.LMM.signed_terms>`), and
where the SDs start."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..gaussian.statistics import BlockedStats, FactorNodes, LevelSpread
from ..glmm.stage_one import StageOne
from ..spec.design import Design
from ..spec.naming import ParameterNames
from .density import EVEN_AT_ZERO, intercept_index, lies_within, nested_in
from .priors import Prior

#: The two-stage spread of factor ``index``'s levels (None: too few estimable levels).
Spreads = Callable[[int], LevelSpread | None]

#: an SD is sampled signed where its two-stage spread is zero with more than this chance
#: (:attr:`LMM.signed_terms`): subjects x items' slopes score 0.004-0.5 (signed: their
#: SDs' bulk ESS up 2-4x), sleepstudy's SDs 0.0014 and 1e-4, InstEval's 1e-8 and less
#: (log SD mixes better there: sleepstudy's intercept SD 3287-3723 signed against
#: 4213-4591, InstEval's departments' 979 against 2201)
SIGNED_ABOVE = 0.002
#: ... and where the two-stage likelihood at a spread of zero is at most this many nats
#: below its best (:func:`_zero_depth`): with few levels the chance above stays large
#: however far the spread exceeds the noise (three classrooms: 0.0054 at 182 times the
#: noise), and there the signed density has a wall of ~180 nats between sd ~ 1 and 0 that
#: trajectories run into (|energy error| up to 3.4 against 0.6 on the log scale, 4 x 5000
#: draws, seeds 1-3; a divergence on some machines)
SIGNED_DEPTH = 10.0
#: a first-stage variance below this fraction of one level's noise is a spread of zero
#: (:func:`fitted_spreads`; lme4's singular-fit tolerance on theta is 1e-4)
ZERO_SPREAD = 1e-8


def _zero_depth(spread: LevelSpread) -> np.ndarray:
    """How far (nats) the two-stage likelihood of the levels' spread falls from its best to
    a spread of zero: ``(L - 1) / 2 (q - 1 - log q)``, ``q = (spread + noise) / noise``
    (the estimates' variance as a scaled chi-square with ``L - 1`` degrees of freedom)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (np.maximum(spread.spread, 0.0) + spread.noise) / spread.noise
        depth = 0.5 * (spread.levels - 1) * (q - 1.0 - np.log(q))
    return np.where(np.isfinite(depth), depth, np.inf)


def centring(stats: BlockedStats, spread_of: Spreads) -> dict[str, tuple[bool, ...]]:
    """Per sampled grouping factor, whether each term's effects are centred (node order):
    where the levels' spread exceeds one level's own sampling variance (the rule is
    :attr:`LMM.centred_terms <bayeslmm.LMM.centred_terms>`)."""
    out = {}
    for index, factor in enumerate(stats.factors):
        if factor.first < stats.n_marginal:
            continue
        spread = spread_of(index)
        centred = np.zeros(factor.q, bool) if spread is None else spread[0] > spread[1]
        out[factor.group] = tuple(bool(c) for c in centred)
    return out


def centred_on_parents(
    centred: Mapping[str, tuple[bool, ...]],
    stats: BlockedStats,
    design: Design,
    spreads: Sequence[LevelSpread | None],
    weights: np.ndarray,
) -> dict[str, tuple[bool, ...]]:
    """``centred`` with the intercept of every grouping factor nested in a coarser one
    (grouseticks' broods in locations, observations in broods) also centred where its
    levels' spread exceeds the noise their own rows leave with the parent's effect known
    (:func:`noise_given_parent`, median over levels).

    Such an intercept is sampled around its parent level's value or effect
    (:func:`~bayeslmm.bayes.density.nested_parents`), so what pins a level down is its
    rows, not what the first-stage fit cannot tell apart from the parent's effect
    (:func:`fitted_spreads`' noise). Grouseticks, 4 x 1000 draws, seeds 1-3: broods
    (spread 0.54; noise 0.34 given their location, 0.57 without) centred on their
    locations' effects took 35-42 leapfrog steps a draw against 67-79 all non-centred,
    with a smallest bulk ESS of 252-456 against 95-217
    (``benchmarks/results/samplers_glmm_v6_grouseticks.md``, ``samplers_glmm_v7.md``)."""
    intercept = intercept_index(design, stats)
    within = nested_in(design, stats)
    out = dict(centred)
    for f, a in intercept.items():
        group = stats.factors[f].group
        # a parent as nested_parents takes one: coarser (later), sampled, with an intercept
        if spreads[f] is None or centred[group][a] or not _has_parent(f, intercept, within):
            continue
        noise = noise_given_parent(f, stats, design, spreads, weights, within)
        with np.errstate(divide="ignore"):
            if spreads[f].spread[a] > np.median(noise):
                out[group] = tuple(c or b == a for b, c in enumerate(centred[group]))
    return out


def _has_parent(f: int, intercept: Mapping[int, int],
                within: Mapping[int, Sequence[int]]) -> bool:  # fmt: skip
    """Does factor ``f`` lie within a coarser sampled factor with an intercept, the parent
    :func:`~bayeslmm.bayes.density.nested_parents` takes (coarser: later in node order)?"""
    return any(g in intercept and g > f for g in within[f])


def noise_given_parent(
    factor: int,
    stats: BlockedStats,
    design: Design,
    spreads: Sequence[LevelSpread | None],
    weights: np.ndarray,
    within: Mapping[int, Sequence[int]] | None = None,
) -> np.ndarray:
    """Per level of grouping factor ``factor`` (node order), the variance its rows leave of
    its intercept with every coarser effect known: ``1 / I``, ``I`` the sum over its rows
    of the working ``weights``, passed up through the levels of the finer factors nested
    in it (finest first), each level adding its factor's intercept variance (``I -> 1 /
    (1 / I + s)``): the Schur complement of the nested tree's precision with the finer
    effects integrated out, exact where the finer factors nest in one another and
    ``factor``. A finer factor whose levels do not each hold whole levels of the one
    below is left out (its effects read as known); so are crossed factors. ``within``:
    :func:`~bayeslmm.bayes.density.nested_in` of the design, if already at hand."""
    intercept = intercept_index(design, stats)
    within = nested_in(design, stats) if within is None else within
    codes = [design.blocks[f.blocks[0]].codes for f in stats.factors]
    finer = sorted((d for d in intercept if factor in within[d] and spreads[d] is not None),
                   key=lambda d: -stats.factors[d].n_levels)  # fmt: skip
    unit, info = np.arange(weights.size), np.asarray(weights, float)
    for d in finer:
        if not lies_within(unit, codes[d]):
            continue
        level = np.zeros(info.size, np.int64)
        level[unit] = codes[d]
        total = np.bincount(level, info, minlength=stats.factors[d].n_levels)
        with np.errstate(divide="ignore"):
            info = np.where(total > 0, 1.0 / (1.0 / total + spreads[d].spread[intercept[d]]),
                            0.0)  # fmt: skip
        unit = codes[d]
    level = np.zeros(info.size, np.int64)
    level[unit] = codes[factor]
    total = np.bincount(level, info, minlength=stats.factors[factor].n_levels)
    with np.errstate(divide="ignore"):
        return 1.0 / total


def signing(
    stats: BlockedStats,
    spread_of: Spreads,
    centred: Mapping[str, tuple[bool, ...]],
    design: Design,
    priors: Mapping[str, Prior],
) -> dict[str, tuple[bool, ...]]:
    """Per grouping factor, whether each term's SD is drawn signed (node order; the rule is
    :attr:`LMM.signed_terms <bayeslmm.LMM.signed_terms>`)."""
    out = {}
    sd_names = ParameterNames.from_design(design).sd
    for index, factor in enumerate(stats.factors):
        spread = spread_of(index)
        weak = (np.ones(factor.q, bool) if spread is None
                else ~(spread.zero_probability <= SIGNED_ABOVE)
                & (_zero_depth(spread) <= SIGNED_DEPTH))  # fmt: skip
        even = [priors[name].dist in EVEN_AT_ZERO
                for k in factor.blocks for name in sd_names[k]]  # fmt: skip
        flags = centred.get(factor.group, (False,) * factor.q)
        out[factor.group] = tuple(
            bool(w and e and not c) for w, e, c in zip(weak, even, flags, strict=True)
        )
    return out


def sd_start(stats: BlockedStats, spread_of: Spreads) -> dict[str, tuple[float, ...]]:
    """Where the sampler's SDs start, per factor and term: the two-stage spread's
    square root, at least a third of one level's own standard error (a spread
    estimated at zero still starts positive); NaN (the prior's scale) where that is not
    finite (a spread of zero whose levels' noise is unbounded: a slope that no level's
    rows inform)."""
    start = {}
    for index, factor in enumerate(stats.factors):
        spread = spread_of(index)
        if spread is not None:
            with np.errstate(invalid="ignore"):
                tau = np.sqrt(np.maximum(spread.spread, 0.1 * spread.noise))
            tau = np.where(np.isfinite(tau) & (tau > 0), tau, np.nan)
            start[factor.group] = tuple(float(v) for v in tau)
    return start


def fitted_spreads(
    stats: BlockedStats, fit: StageOne, fallback: Callable[[], Sequence[LevelSpread | None]]
) -> list[LevelSpread | None]:
    """Every grouping factor's :class:`LevelSpread` (node order) from a GLMM's first-stage
    fit (:func:`~bayeslmm.glmm.stage_one.fit_stage_one`): the spread is the fit's variance
    of each term, one level's noise the variance its own data leave, read from its
    conditional variance ``c`` at the fit as ``1 / c = 1 / spread + 1 / noise`` (median
    over levels). The fit weighs every factor against the others, so a level's noise
    counts what the rows cannot tell apart from its parent's or a crossed factor's
    effects. Terms the fit puts at a spread of zero keep the noise of ``fallback()`` (the
    pooled two-stage spreads, computed only then; where it has one) with a spread of
    zero."""
    factors = fit.layout.factors(fit.theta)
    conditional = fit.problem.conditional_covariances(fit.state)
    out: list[LevelSpread | None] = []
    for index, factor in enumerate(stats.factors):
        spread = np.concatenate([np.diag(factors[k] @ factors[k].T) for k in factor.blocks])
        c = np.concatenate([np.diagonal(conditional[k], axis1=1, axis2=2)
                            for k in factor.blocks], axis=1)  # fmt: skip
        with np.errstate(divide="ignore", invalid="ignore"):
            own = 1.0 / (1.0 / c - 1.0 / spread)
        own = np.where(np.isfinite(own) & (own > 0), own, np.inf)
        noise = np.median(own, axis=0)
        zero = spread <= ZERO_SPREAD * np.where(np.isfinite(noise), noise, 1.0)
        pooled = fallback()[index] if zero.any() else None
        if pooled is not None:
            noise = np.where(zero, pooled.noise, noise)
        spread = np.where(zero, 0.0, spread)
        out.append(LevelSpread(spread, noise, factor.n_levels))
    return out


def level_centring(
    stats: BlockedStats,
    design: Design,
    fit: StageOne,
    spreads: Sequence[LevelSpread | None],
    centred: Mapping[str, tuple[bool, ...]],
) -> dict[str, np.ndarray]:
    """Per sampled factor of one centred term nested in a coarser sampled factor, which
    of its levels are centred (node order) where they differ: those whose rows leave a
    variance below the term's spread with the parent's effect known
    (:func:`noise_given_parent`), the rest sampled as ``z`` (a partially non-centred
    parametrisation, Papaspiliopoulos, Roberts & Skold 2003; :func:`centred_on_parents`
    reads the median level). Grouseticks' broods (76 of 118 centred), 4 x 1000 draws,
    seeds 1-12: smallest bulk ESS 393-608 (median 510) against 259-468 (347) with every
    brood centred, no divergences, R-hat above 1.01 in 4 runs against 5. Not for factors
    without a parent: cbpp's herds (14 of 15 centred by the first stage's conditional
    variances) diverged in 5 of 21 runs against 1 of 21."""
    within = nested_in(design, stats)
    intercept = intercept_index(design, stats)
    out = {}
    for f, factor in enumerate(stats.factors):
        spread = spreads[f]
        if (factor.q != 1 or spread is None or not centred.get(factor.group, (False,))[0]
                or not spread.spread[0] > 0.0 or f not in intercept
                or not _has_parent(f, intercept, within)):  # fmt: skip
            continue
        noise = noise_given_parent(f, stats, design, spreads, fit.state.w, within)
        flags = spread.spread[0] > noise
        if flags.any() and not flags.all():
            out[factor.group] = flags
    return out


#: a first-stage SD below this is a spread of zero: no whitening (its constants divide by it)
WHITEN_ABOVE = 1e-4


def whitening(stats: BlockedStats, design: Design, fit: StageOne
              ) -> dict[str, tuple[np.ndarray, str | None]]:  # fmt: skip
    """Per sampled factor whose effects are whitened (:attr:`~bayeslmm.bayes.density.
    Layout.whitened`), its levels' ``(d, e, parent level, b_1 .. b_p)`` (node order) and
    its parent's group: where every grouping factor has one term and each lies within
    the next coarser (cbpp's herds; grouseticks' observations in broods in locations),
    from the Gaussian approximation of the likelihood at the first glmer stage's mode:
    working responses ``y~ = eta - offset + (y - mu) / mu'(eta)`` with working weights
    ``w``, the finest factor's levels read from their rows (``d = sum w z^2``, ``e = sum w
    z y~``, ``b = sum w z x``), each coarser one's from the finer levels within it,
    weighted ``1 / (1/d + sd_hat^2)`` (the finer effects integrated out at the first
    stage's SD). ``N(m, s^2)`` of the whitened map is then that approximation's exact
    conditional posterior, so that ``x = 0`` at the first stage's estimates is its mode.
    Exact whatever the approximation's quality (a change of variables with its
    Jacobian); the draws mix as well as it fits. 4 x 1000 draws, seeds 1-6 (sampled at
    ``WHITENED_TARGET_ACCEPT``): cbpp's smallest bulk ESS 5409-5804 against 1992-2307
    centred; grouseticks' 987-1459 with 15 leapfrog steps a draw, against 393-608 with
    40-46 with its broods centred level by level. A model's one factor of several terms
    in one block: :func:`_whitening_vector`. Not for crossed factors (a level's estimate
    then depends on the other factor's effects), nor several terms beside other
    factors."""
    factors = stats.factors
    if len(factors) == 1 and factors[0].q > 1:
        return _whitening_vector(design, factors[0], fit)
    if any(f.q != 1 or len(f.blocks) != 1 for f in factors) or not fit.converged:
        return {}
    blocks = [design.blocks[f.blocks[0]] for f in factors]
    if len(factors) > 1 and not all(np.all(b.Z[:, 0] == 1.0) for b in blocks):
        return {}  # nested slopes: not here
    for f in range(len(factors) - 1):  # node order: decreasing levels
        if not (factors[f].n_levels > factors[f + 1].n_levels
                and lies_within(blocks[f].codes, blocks[f + 1].codes)):  # fmt: skip
            return {}
    state, X = fit.state, np.asarray(design.X, float)
    sd_hat = state.T[:, 0, 0]
    if len(sd_hat) != len(factors) or not np.all(sd_hat > WHITEN_ABOVE):
        return {}
    working, _ = _working(design, fit)
    z = blocks[0].Z[:, 0]  # per row, as a unit of the finest factor
    scale = np.where(z != 0, z, 1.0)
    weight = np.where(z != 0, state.w * z * z, 0.0)
    response, x = working / scale, X / scale[:, None]
    unit_codes = blocks[0].codes
    out = {}
    for f, (factor, block) in enumerate(zip(factors, blocks, strict=True)):
        n = factor.n_levels
        d = np.bincount(unit_codes, weight, n)
        e = np.bincount(unit_codes, weight * response, n)
        b = np.zeros((n, X.shape[1]))  # no columns where the model has no fixed effects
        for k in range(X.shape[1]):
            b[:, k] = np.bincount(unit_codes, weight * x[:, k], n)
        parent = np.full(n, -1.0)
        if f + 1 < len(factors):
            parent[block.codes] = blocks[f + 1].codes
        if not (np.all(np.isfinite(e)) and np.all(np.isfinite(b)) and np.all(d >= 0)):
            return {}
        out[factor.group] = (np.column_stack([d, e, parent, b]),
                             factors[f + 1].group if f + 1 < len(factors) else None)
        # this factor's levels as the next one's units: its effects integrated out
        shrink = 1.0 / (1.0 + d * sd_hat[f] ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = d * shrink
            response = np.where(d > 0, e / d, 0.0)
            x = np.where(d[:, None] > 0, b / d[:, None], 0.0)
        unit_codes = parent.astype(np.int64) if f + 1 < len(factors) else unit_codes
    return out


def _working(design: Design, fit: StageOne) -> tuple[np.ndarray, np.ndarray]:
    """The first glmer stage's working responses ``eta - offset + (y - mu) / mu'(eta)``
    and weights, per row."""
    state, family = fit.state, fit.problem.family
    offset = np.zeros(len(state.eta)) if fit.problem.offset is None else fit.problem.offset
    with np.errstate(divide="ignore", invalid="ignore"):
        working = state.eta - offset + (fit.problem.y - state.mu) / family.mu_eta(state.eta)
    return working, state.w


def _whitening_vector(design: Design, factor: FactorNodes, fit: StageOne
                      ) -> dict[str, tuple[np.ndarray, str | None]]:  # fmt: skip
    """:func:`whitening` of a model's one grouping factor with ``q > 1`` terms in one
    block (``(1 + x | g)``): per effect (level by level, term by term) ``(H_aa, e_a, -1,
    B_a1 .. B_ap, H_a1 .. H_aq)``, the level's ``H = sum w z z'``, ``e = sum w z y~`` and
    ``B = sum w z x'`` over its rows. The kernel's ``u = L z``, ``z = K^-T (K^-1 L'(e -
    B beta) + x)`` with ``K K' = I + L' H L`` (``L`` the factor's covariance factor) is
    then the approximation's conditional posterior of ``u`` at ``x ~ N(0, I)``. Not for
    independent terms (several blocks)."""
    if len(factor.blocks) != 1 or not fit.converged:
        return {}
    block = design.blocks[factor.blocks[0]]
    working, w = _working(design, fit)
    Z, codes, n, q = np.asarray(block.Z, float), block.codes, factor.n_levels, factor.q
    X = np.asarray(design.X, float)
    if not (np.all(np.isfinite(working)) and np.all(np.isfinite(w)) and np.all(w >= 0)):
        return {}
    wz = w[:, None] * Z  # (rows, q)
    H = np.zeros((n, q, q))
    for a in range(q):
        for c in range(q):
            H[:, a, c] = np.bincount(codes, wz[:, a] * Z[:, c], n)
    e = np.column_stack([np.bincount(codes, wz[:, a] * working, n) for a in range(q)])
    B = np.zeros((n, q, X.shape[1]))
    for a in range(q):
        for k in range(X.shape[1]):
            B[:, a, k] = np.bincount(codes, wz[:, a] * X[:, k], n)
    table = np.concatenate([np.diagonal(H, axis1=1, axis2=2)[..., None], e[..., None],
                            np.full((n, q, 1), -1.0), B, H], axis=2)  # fmt: skip
    return {factor.group: (table.reshape(n * q, -1), None)}
