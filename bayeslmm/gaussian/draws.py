"""Exact draws of the random effects from their Gaussian conditional distribution.

Given a draw of the population parameters (``beta``, the relative covariance factors
``T_f`` with ``D_f = sigma^2 T_f T_f'``, ``sigma``), the random effects of a Gaussian LMM
are Gaussian: ``b | beta, D, sigma, y ~ N(Lambda A^-1 Lambda'Z'r, sigma^2 Lambda A^-1
Lambda')`` with ``A = Lambda'Z'Z Lambda + I`` and ``r = y - X beta``, drawn from the
blocked factor of ``A`` (:func:`bayeslmm.gaussian.blocked.draw_effects`) for every design,
from the sufficient statistics alone.
"""

from __future__ import annotations

import numpy as np

from .blocked import BlockedSystem


def covariance_cholesky(sd: np.ndarray, cor: np.ndarray | None) -> np.ndarray:
    """Cholesky factors (..., q, q) of covariances from SDs and correlations.

    Parameters
    ----------
    sd
        Standard deviations, (..., q).
    cor
        Correlations of the strict lower triangle in ``np.tril_indices(q, -1)`` order,
        (..., q(q-1)/2), or None for independent terms.
    """
    q = sd.shape[-1]
    if cor is None:
        chol = np.broadcast_to(np.eye(q), sd.shape + (q,))
    else:
        full = np.broadcast_to(np.eye(q), sd.shape + (q,)).copy()
        rows, cols = np.tril_indices(q, k=-1)
        full[..., rows, cols] = cor
        full[..., cols, rows] = cor
        chol = np.linalg.cholesky(full + 1e-12 * np.eye(q))
    return sd[..., :, None] * chol


#: draws x random effects drawn at once (bounds the noise and workspace memory)
DRAW_CHUNK_ELEMENTS = 4_000_000


def draw_random_effects(
    system: BlockedSystem,
    T_draws: np.ndarray,
    beta: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator,
    uE: np.ndarray | None = None,
) -> np.ndarray:
    """Exact draws of the random effects integrated out, (draws, Q_M) in the node numbering
    of ``system``, given the sampled factors' effects ``uE`` (draws, Q_E) if any.

    Parameters
    ----------
    system
        Statistics and symbolic factorisation of the design.
    T_draws
        Relative factors per draw, (draws, F, qmax, qmax).
    beta, sigma
        Fixed effects (draws, p) and residual SDs (draws,).
    rng
        Source of the noise.
    uE
        The sampled factors' effects, node by node.
    """
    S, Q = len(sigma), system.n_marginal_effects
    uE = np.zeros((S, system.n_explicit_effects)) if uE is None else uE
    out = np.empty((S, Q))
    chunk = max(1, DRAW_CHUNK_ELEMENTS // max(1, Q))
    for lo in range(0, S, chunk):
        sl = slice(lo, min(S, lo + chunk))
        out[sl] = system.draw_effects(T_draws[sl], beta[sl], sigma[sl], rng, uE[sl])
    return out
