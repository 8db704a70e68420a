"""The GLMM row pass (:func:`bayeslmm.bayes.row_likelihood.row_loglik`) against scipy's
log-pmfs, row by row in numpy: every family and link, rows in several blocks (the last
one partial), blocks whose ``|eta|`` exceeds the vectorised ``exp``'s range, a
correlated second term; and the vectorised ``exp`` and ``log1p`` against numpy's."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sc
from scipy import stats

from bayeslmm.bayes import row_likelihood as rl


def test_vectorised_exp_and_log1p_match_numpy_to_rounding() -> None:
    x = np.concatenate([np.linspace(-708.0, 708.0, 20001), [0.0, -1e-300, 1e-17,
                        np.log(2) / 2, -np.log(2) / 2]])  # fmt: skip
    out, bits = np.empty_like(x), np.empty(x.size, np.int64)
    rl._exp_block(x, out, bits, x.size)
    assert np.max(np.abs(out / np.exp(x) - 1.0)) < 4e-15
    e = np.concatenate([np.linspace(0.0, 1.0, 20001), [rl.SQRT_2_M1, np.nextafter(
        rl.SQRT_2_M1, 1.0), 1e-300, 5e-324]])  # fmt: skip
    got = np.array([rl._log1p_unit(v) for v in e])
    want = np.log1p(e)
    assert np.all(np.abs(got - want) <= 5e-16 * want + 1e-320)  # two roundings


def _reference(code: int, eta: np.ndarray, y: np.ndarray, n: np.ndarray, theta: float
               ) -> np.ndarray:  # fmt: skip
    """Each row's log-pmf without the constant the kernel leaves out."""
    if code in (1, 2, 3):
        p = {1: sc.expit(eta), 2: stats.norm.cdf(eta), 3: -np.expm1(-np.exp(eta))}[code]
        small = eta < -20.0  # log(1 - exp(-e)) = log e - e / 2 + O(e^2), e = exp(eta)
        log_cloglog = np.where(small, eta - np.exp(eta) / 2, np.log(np.where(small, 1, p)))
        log_p = {1: -np.logaddexp(0.0, -eta), 2: stats.norm.logcdf(eta),
                 3: log_cloglog}[code]  # fmt: skip
        log_q = {1: -np.logaddexp(0.0, eta), 2: stats.norm.logcdf(-eta),
                 3: -np.exp(eta)}[code]  # fmt: skip
        return y * log_p + (n - y) * log_q
    if code == 4:
        return stats.poisson.logpmf(y, np.exp(eta)) + sc.gammaln(y + 1)
    mu = np.exp(eta)
    return stats.nbinom.logpmf(y, theta, theta / (theta + mu)) + sc.gammaln(y + 1)


@pytest.mark.parametrize("code", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("far", [False, True])
@pytest.mark.parametrize("lead", [-1, 0, 1])
def test_row_loglik_matches_scipy_by_row(code: int, far: bool, lead: int) -> None:
    """Without a leading factor, and led by the correlated two-term factor (runs shorter
    than a block, several to a block) or by the intercept factor (runs longer than a
    block), rows sorted by its level."""
    rng = np.random.default_rng(code)
    N, p, levels = 3 * rl.ROW_BLOCK + 37, 3, (40, 2)
    Xt = np.vstack([np.ones(N), rng.normal(size=(p - 1, N))])
    node = np.vstack([2 * rng.integers(0, levels[0], N),
                      2 * levels[0] + rng.integers(0, levels[1], N)])  # fmt: skip
    # the second factor's padding row (it has one term of two slots) must not be read
    Zt = np.vstack([np.ones(N), rng.normal(size=N), np.ones(N), np.full(N, 99.0)])
    if lead >= 0:
        order = np.argsort(node[lead], kind="stable")
        Xt, node, Zt = Xt[:, order], node[:, order], Zt[:, order]
        run = rl.row_runs(node[lead], N)
        bounds = zip(run[:-1], run[1:], strict=True)
        assert all(len(np.unique(node[lead, a:b])) == 1 for a, b in bounds)
        assert len(run) - 1 == levels[lead]
    else:
        run = rl.row_runs(None, N)
        assert list(run) == [0, N]
    qf = np.array([2, 1], np.int64)
    beta = np.array([0.2, -0.4, 0.3])
    uE = rng.normal(size=2 * levels[0] + levels[1]) * 0.5
    off = rng.normal(size=N) * 0.1
    if far:  # a row far beyond the vectorised exp's range in the second block
        off[rl.ROW_BLOCK + 3] = -(rl.EXP_LIMIT + 50.0) if code != 4 else -800.0
    eta = off + beta @ Xt
    eta += Zt[0] * uE[node[0]] + Zt[1] * uE[node[0] + 1] + Zt[2] * uE[node[1]]
    n = rng.integers(1, 6, N).astype(float) if code <= 3 else np.ones(N)
    if code <= 3:
        y = rng.binomial(n.astype(int), sc.expit(np.clip(eta, -30, 30))).astype(float)
    else:
        y = rng.poisson(np.exp(np.clip(eta, -30, 3))).astype(float)
    theta = 2.5
    dbeta, duE, dtheta = np.empty(p), np.empty(uE.size), np.zeros(1)
    value = rl.row_loglik(code, 0.25, beta, uE, y, n, off, Xt, node, Zt, qf, run, lead,
                          dbeta, duE, theta, dtheta)  # fmt: skip
    rows = _reference(code, eta, y, n, theta)
    assert value == pytest.approx(0.25 + rows.sum(), rel=1e-12, abs=1e-9)

    def total(b: np.ndarray, u: np.ndarray) -> float:
        e = off + b @ Xt + Zt[0] * u[node[0]] + Zt[1] * u[node[0] + 1] + Zt[2] * u[node[1]]
        return float(_reference(code, e, y, n, theta).sum())

    h = 1e-6
    for j in range(p):
        step = np.eye(p)[j] * h
        fd = (total(beta + step, uE) - total(beta - step, uE)) / (2 * h)
        assert dbeta[j] == pytest.approx(fd, rel=1e-6, abs=1e-5)
    for k in (0, 1, 2 * levels[0], uE.size - 1):
        step = np.eye(uE.size)[k] * h
        fd = (total(beta, uE + step) - total(beta, uE - step)) / (2 * h)
        assert duE[k] == pytest.approx(fd, rel=1e-6, abs=1e-5)
    if code == 6:
        lp = lambda t: float(_reference(code, eta, y, n, t).sum())  # noqa: E731
        fd = (lp(theta + h) - lp(theta - h)) / (2 * h)
        assert dtheta[0] == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize(("family", "link", "code"), [
    ("binomial", "logit", 1), ("binomial", "probit", 2), ("binomial", "cloglog", 3),
    ("poisson", "log", 4), ("negative_binomial", "log", 6),
])  # fmt: skip
def test_pointwise_loglik_matches_scipy_with_its_constants(family, link, code):
    """Every draw's and row's log-pmf (``dbinom`` / ``dpois`` / ``dnbinom`` with every
    constant) from draws of beta, a correlated two-term block and a crossed intercept,
    in more rows than one block of the pass."""
    import pandas as pd

    import bayeslmm as bl

    rng = np.random.default_rng(code)
    n = rl.ROW_BLOCK + 90
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 9, n).astype(str),
                       "h": rng.integers(0, 5, n).astype(str),
                       "size": rng.integers(1, 7, n)})  # fmt: skip
    df["k"] = rng.binomial(df["size"], 0.3)
    df["count"] = rng.poisson(2.0, n)
    lhs = "cbind(k, size - k)" if family == "binomial" else "count"
    model = bl.LMM(f"{lhs} ~ x + (1 + x | g) + (1 | h)", df, family=family, link=link)
    design, response = model.design, model.response
    draws = 7
    beta = rng.normal(size=(draws, design.X.shape[1])) * 0.3
    effects = [rng.normal(size=(draws, b.n_levels, b.n_terms)) * 0.4 for b in design.blocks]
    theta = rng.uniform(0.5, 5.0, draws)
    got = rl.pointwise_loglik(design, response, beta, effects,
                              theta if code == 6 else None)  # fmt: skip
    eta = beta @ design.X.T + response.offset
    for block, u in zip(design.blocks, effects, strict=True):
        eta = eta + np.einsum("nq,dnq->dn", block.Z, u[:, block.codes])
    if family == "binomial":
        size = df["size"].to_numpy(float)
        want = _reference(code, eta, df["k"].to_numpy(float), size, 0.0) + (
            sc.gammaln(size + 1) - sc.gammaln(df["k"] + 1) - sc.gammaln(size - df["k"] + 1)
        ).to_numpy()
    else:
        y = df["count"].to_numpy(float)
        want = np.array([_reference(code, eta[d], y, np.ones(n), theta[d])
                         for d in range(draws)]) - sc.gammaln(y + 1)  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


def test_glm_rows_led_by_the_factor_with_most_rows_per_level() -> None:
    """The density's rows are sorted by the leading factor's level (the one with the most
    rows per level, at least LEAD_MIN_ROWS), its runs bounded where the level changes; with
    fewer rows per level no factor leads and the rows keep their order."""
    import pandas as pd

    import bayeslmm as bl

    rng = np.random.default_rng(3)
    for per_level, leads in ((40, True), (3, False)):
        n = 8 * per_level
        df = pd.DataFrame({"y": rng.integers(0, 2, n), "x": rng.normal(size=n),
                           "g": rng.permutation(np.repeat(np.arange(8), per_level)).astype(str),
                           "h": rng.integers(0, 40, n).astype(str)})  # fmt: skip
        model = bl.LMM("y ~ x + (1 + x | g) + (1 | h)", df, family="bernoulli")
        rows = rl.glm_rows(model.design, model.response, model.blocked_system)
        lead = int(rows["rows_lead"])
        run = rows["rows_run"]
        if not leads:
            assert lead == -1 and list(run) == [0, n]
            assert np.array_equal(rows["rows_y"], df["y"].to_numpy(float))
            continue
        groups = [f.group for f in model.blocked_system.stats.factors]
        assert groups[lead] == "g" and len(run) == 9 and run[-1] == n
        level = rows["rows_node"][lead]
        assert np.all(np.diff(level) >= 0)
        assert all(len(np.unique(level[a:b])) == 1 for a, b in zip(run[:-1], run[1:], strict=True))
        # the same rows, reordered: each row's values travel together
        original = sorted(zip(df["y"], df["x"], strict=True))
        assert sorted(zip(rows["rows_y"], rows["rows_X"][1], strict=True)) == original
