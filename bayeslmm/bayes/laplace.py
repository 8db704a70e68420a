"""The Laplace-approximate marginal likelihood of a GLMM for the compiled density
(``bl.LMM(..., family=...).fit(method="laplace")``; Margossian et al. 2020, Stan's
embedded Laplace).

APPROXIMATE. The random effects are integrated out by Laplace's method: at each
(theta, beta) a penalised IRLS finds the conditional mode ``u_hat`` of the spherical
effects (``b = Lambda u``, ``u ~ N(0, I)``) on the package's blocked Cholesky
(:func:`bayeslmm.glmm.kernels.pirls_run`), and

``log p(y | theta, beta) ~= log p(y | u_hat) - |u_hat|^2 / 2 - log|A| / 2``,
``A = Lambda'Z'WZ Lambda + I``,

which is minus half lme4's Laplace deviance, with every constant of the log-pmf (the
same constants as PyMC's graph and the exact density). Its exact gradient over the
relative covariance factors and beta (canonical links only: logit binomial/Bernoulli,
log Poisson) is :func:`bayeslmm.glmm.kernels.laplace_gradient`; the density
(:func:`bayeslmm.bayes.density.logp_and_grad`, likelihood code :data:`LAPLACE`) maps it
to the SDs and correlations with the same chain rule as its other likelihoods. The random
effects drawn afterwards (:func:`draw_laplace_effects`) come from the Laplace Gaussian
``N(u_hat, A^-1)`` at every posterior draw: approximate draws too.

Thread safety: nutpie runs chains in parallel threads on one buffer. Every evaluation
starts PIRLS at ``u = 0`` and writes ``Z'WZ`` into a ``pair_val`` of its own; nothing in
the buffer is written.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ArgumentError
from ..gaussian.blocked import BlockedSystem, Factored, solve_upper
from ..glmm import kernels as K
from ..glmm.pirls import GlmmProblem
from ..jit import kernel
from ..spec.design import Design
from ..spec.naming import term_dim
from ..spec.response import GlmResponse
from .buffer import read_f1 as _f1
from .buffer import read_f2 as _f2
from .buffer import read_i1 as _i1
from .buffer import read_i2 as _i2

if TYPE_CHECKING:  # xarray and the result stack load with the first fit, not the kernels
    import xarray as xr

    from .stack import Results

#: the density's likelihood code of the Laplace marginal (row_likelihood's are 0-5)
LAPLACE = 20
#: the density buffer's Laplace sections (:data:`bayeslmm.bayes.density.FIELDS`, after the
#: rows'): ``lap_codes`` = (family code, link code, saturated log-likelihood, PIRLS
#: tolerance, step tolerance, iterations); per row ``y`` (a proportion for a binomial),
#: prior weights (trials), offset, ``X`` and ``Z`` by grouping factor
#: (:class:`~bayeslmm.glmm.pirls.GlmmProblem`'s ``Zr``), its nodes and node-pair blocks;
#: and per grouping factor of the problem its factor in the density's order (``lap_fperm``).
#: The PIRLS problem's blocked pattern (:class:`~bayeslmm.gaussian.blocked.Factored`)
#: takes the buffer's ``Factored`` fields, which the GLM likelihoods do not otherwise read.
LAPLACE_FIELDS = (
    ("lap_codes", "float64", 1), ("lap_y", "float64", 1), ("lap_wt", "float64", 1),
    ("lap_off", "float64", 1), ("lap_X", "float64", 2), ("lap_Z", "float64", 2),
    ("lap_colstart", "int64", 1), ("lap_node", "int64", 2), ("lap_row_ptr", "int64", 2),
    ("lap_row_pair", "int64", 2), ("lap_pair_fa", "int64", 1), ("lap_pair_fb", "int64", 1),
    ("lap_fperm", "int64", 1),
)  # fmt: skip
#: FitInfo.log_density of a ``method="laplace"`` fit
LAPLACE_LOG_DENSITY = "bayeslmm Laplace marginal (numba; APPROXIMATE)"
#: what every table and printed summary of a ``method="laplace"`` fit says
APPROXIMATION = ("APPROXIMATE: Laplace marginal posterior (method='laplace'); random "
                 "effects drawn from the Laplace Gaussian")
#: PIRLS's tolerances (as glmer's: the gradient is exact at the mode)
PIRLS_TOL, STEP_TOL, MAXIT = 1e-12, 1e-11, 200


def empty_fields(p: int) -> dict[str, np.ndarray]:
    """:data:`LAPLACE_FIELDS` of every other density: no rows."""
    z1, z2 = np.zeros(0), np.zeros((0, 0), np.int64)
    return {"lap_codes": np.zeros(6), "lap_y": z1, "lap_wt": z1, "lap_off": z1,
            "lap_X": np.zeros((0, p)), "lap_Z": np.zeros((0, 0)),
            "lap_colstart": np.zeros(1, np.int64), "lap_node": z2, "lap_row_ptr": z2,
            "lap_row_pair": z2, "lap_pair_fa": np.zeros(0, np.int64),
            "lap_pair_fb": np.zeros(0, np.int64), "lap_fperm": np.zeros(0, np.int64)}  # fmt: skip


def check_canonical(response: GlmResponse) -> None:
    """Refuse a link whose Laplace marginal has no exact gradient here."""
    fam = response.family
    if (fam.binomial and fam.link.name == "logit") or (fam.name == "poisson"
                                                       and fam.link.name == "log"):  # fmt: skip
        return
    raise ArgumentError(
        f"method='laplace' needs a canonical link (logit for bernoulli/binomial, log for "
        f"poisson), whose Laplace marginal has an exact gradient; the {fam.name} family's "
        f"{fam.link.name} link is sampled exactly with method=None (the default) or "
        "method='full'"
    )


def glmm_problem(design: Design, response: GlmResponse) -> GlmmProblem:
    """The PIRLS problem of a design; its theta is every block's covariance factor
    ``chol(D_k)`` (a GLMM has no sigma), lower triangle row by row (diagonal only for an
    uncorrelated block)."""
    sizes = [b.n_terms for b in design.blocks]
    correlated = [bool(b.correlated) for b in design.blocks]

    def factors(theta: np.ndarray) -> list[np.ndarray]:
        out, at = [], 0
        for k, corr in zip(sizes, correlated, strict=True):
            T = np.zeros((k, k))
            if corr:
                rows, cols = np.tril_indices(k)
                T[rows, cols] = theta[at : at + len(rows)]
                at += len(rows)
            else:
                T[np.diag_indices(k)] = theta[at : at + k]
                at += k
            out.append(T)
        return out

    return GlmmProblem(design.X, [(b.Z, b.codes, b.n_levels) for b in design.blocks],
                       factors, response.family, response.y, response.weights,
                       response.offset)  # fmt: skip


def laplace_rows(problem: GlmmProblem, system: BlockedSystem, rows: dict) -> dict:
    """The density's values for the Laplace likelihood: ``rows`` (the row likelihood's
    fields, without rows, :func:`~bayeslmm.bayes.row_likelihood.gaussian_rows`) with the
    family code :data:`LAPLACE`, the PIRLS problem's blocked pattern in the ``Factored``
    fields and :data:`LAPLACE_FIELDS`. ``system`` integrates every factor out (the
    density's layout: no sampled effects)."""
    stats = system.stats
    if stats.n_marginal != sum(f.n_levels for f in stats.factors):
        raise ValueError("the Laplace density integrates every grouping factor out")
    fperm = []
    for g in problem.groups:
        f = next((f for f, factor in enumerate(stats.factors) if list(factor.blocks) == g), None)
        if f is None:  # the same blocks in another order within a factor: not expected
            raise ValueError("the PIRLS problem's grouping factors differ from the density's")
        fperm.append(f)
    family, link, nb_theta = problem._codes()
    saturated = problem._saturated_loglik(family, nb_theta)
    out = dict(rows)
    out["glm"] = np.array([float(LAPLACE), 0.0])
    out.update(problem.fs._asdict())
    out.update({"lap_codes": np.array([family, link, saturated, PIRLS_TOL, STEP_TOL, MAXIT],
                                      float),
                "lap_y": problem.y, "lap_wt": problem.weights, "lap_off": problem.offset,
                "lap_X": problem.X, "lap_Z": problem.Zr, "lap_colstart": problem.colstart,
                "lap_node": problem.node_of, "lap_row_ptr": problem.row_ptr,
                "lap_row_pair": problem.row_pair, "lap_pair_fa": problem.pair_fa,
                "lap_pair_fb": problem.pair_fb,
                "lap_fperm": np.asarray(fperm, np.int64)})  # fmt: skip
    return out


@kernel
def laplace_loglik(data, h, fs, T, beta, dT, dbeta):
    """The Laplace log marginal likelihood at the covariance factors ``T`` (F, qmax,
    qmax; the density's factor order) and ``beta``; writes its exact gradient into
    ``dT`` and ``dbeta``. ``h``: the header rows of :data:`LAPLACE_FIELDS`; ``fs``: the
    PIRLS problem's blocked pattern. ``-inf`` where PIRLS fails."""
    codes = _f1(data, h[0])
    family, link, saturated = int(codes[0]), int(codes[1]), codes[2]
    y, wt, off = _f1(data, h[1]), _f1(data, h[2]), _f1(data, h[3])
    X, Zr = _f2(data, h[4]), _f2(data, h[5])
    colstart, node_of = _i1(data, h[6]), _i2(data, h[7])
    row_ptr, row_pair = _i2(data, h[8]), _i2(data, h[9])
    pair_fa, pair_fb, fperm = _i1(data, h[10]), _i1(data, h[11]), _i1(data, h[12])
    G = fperm.shape[0]
    Tp = np.zeros_like(T)
    for g in range(G):
        Tp[g] = T[fperm[g]]
    # this call's own Z'WZ: the buffer is shared by nutpie's chains
    local = Factored(fs.size, fs.offset, fs.node_factor, fs.pair_i, fs.pair_j, fs.pair_ptr,
                     np.zeros(fs.pair_val.shape[0]), fs.pair_pos, fs.colptr, fs.rowidx,
                     fs.blockptr, fs.first, fs.t, fs.base, fs.m, fs.ZtX, fs.Zty, fs.XtX,
                     fs.Xty, fs.yty, fs.n)  # fmt: skip
    u0 = np.zeros(int(fs.offset[-1]))
    b0 = np.empty(beta.shape[0])
    b0[:] = beta
    status, u, _, _, mu, w, ldL2, Lval, LD, _, dev = K.pirls_run(
        family, link, 1.0, y, wt, off, X, b0, u0, False, Zr, colstart, node_of, row_ptr,
        pair_fa, pair_fb, Tp, local, codes[3], codes[4], int(codes[5]))  # fmt: skip
    if status != K.OK or not math.isfinite(dev + ldL2):
        return -np.inf
    uu = 0.0
    for j in range(u.shape[0]):
        uu += u[j] * u[j]
    value = -0.5 * (dev + uu + ldL2) + saturated
    Gr, gb = K.laplace_gradient(family, y, wt, X, Zr, colstart, node_of, row_pair, row_ptr,
                                pair_fa, pair_fb, Tp, local, u, mu, w, Lval, LD, False)  # fmt: skip
    for g in range(G):
        dT[fperm[g]] = -0.5 * Gr[g]
    for a in range(beta.shape[0]):
        dbeta[a] = -0.5 * gb[a]
    return value


def _block_factors(post, design: Design, S: int) -> list[np.ndarray]:
    """Every draw's covariance factor ``chol(D_k)`` per block: (S, k, k)."""
    out = []
    for block in design.blocks:
        k, label = block.n_terms, block.label
        sd = post[f"sd_{label}"].values.reshape(S, k)
        if block.correlated:
            packed = post[f"chol_{label}"].values.reshape(S, -1)
            L = np.zeros((S, k, k))
            L[:, *np.tril_indices(k)] = packed
        else:
            L = sd[:, :, None] * np.eye(k)
        out.append(L)
    return out


def draw_laplace_effects(idata: Results, design: Design, response: GlmResponse,
                         random_seed: int | None = None) -> xr.Dataset:  # fmt: skip
    """APPROXIMATE draws of every ``u_L`` (and ``z_L``) given each posterior draw of a
    ``method="laplace"`` fit: from the Laplace Gaussian ``N(u_hat, A^-1)`` of the spherical
    effects at that draw's (theta, beta) (PIRLS on the blocked Cholesky, warm-started at
    the previous draw's mode), mapped to ``b = Lambda u``. The exact conditional of the
    effects is not Gaussian; this is the approximation the fit's marginal made."""
    import xarray as xr

    from . import stack

    rng = np.random.default_rng(random_seed)
    post = stack.posterior(idata)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    S = n_chain * n_draw
    problem = glmm_problem(design, response)
    factors = _block_factors(post, design, S)
    p = design.X.shape[1]
    beta = post["beta"].values.reshape(S, p) if p else np.zeros((S, 0))
    tril = [np.tril_indices(b.n_terms) if b.correlated else np.diag_indices(b.n_terms)
            for b in design.blocks]  # fmt: skip
    starts = np.cumsum([0] + [b.n_terms * b.n_levels for b in design.blocks])
    U = np.empty((S, int(starts[-1])))
    perm = problem.perm
    fs = problem.fs
    for s in range(S):
        theta = np.concatenate([L[s][idx] for L, idx in zip(factors, tril, strict=True)])
        state = problem.pirls(theta, beta[s])
        z = np.ascontiguousarray(rng.standard_normal((problem.q, 1)))
        solve_upper(state.factor.Lval, state.factor.LD, z, fs)  # L'^-1 z ~ N(0, A^-1)
        u = state.u.copy()
        u[perm] += z[:, 0]
        U[s] = u
    out = {}
    for k, block in enumerate(design.blocks):
        m, q = block.n_levels, block.n_terms
        us = U[:, starts[k] : starts[k + 1]].reshape(S, m, q)
        b = np.einsum("sab,smb->sma", factors[k], us, optimize=True)
        dims = ("chain", "draw", block.group, term_dim(block.label))
        coords = {block.group: list(block.levels), term_dim(block.label): list(block.columns)}
        shape = (n_chain, n_draw, m, q)
        out[f"u_{block.label}"] = xr.DataArray(b.reshape(shape), dims=dims, coords=coords)
        out[f"z_{block.label}"] = xr.DataArray(us.reshape(shape), dims=dims, coords=coords)
    return xr.Dataset(out, coords={"chain": post.chain, "draw": post.draw})
