"""The convergence checks' vectorised R-hat and ESS (:mod:`bayeslmm.bayes.chains`)
equal ArviZ's, element by element, on chains that mix well, slowly, disagree, are
constant, have ties, an odd number of draws, one chain or a NaN."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from bayeslmm.bayes import stack
from bayeslmm.bayes.chains import ess_bulk, ess_tail, rank_rhat


def _draws(chains: int, draws: int) -> np.ndarray:
    """(V, chains, draws): white noise, AR(1) at 0.5 and 0.95, chains with shifted
    means, a heavy tail, rounded values (ties), an indicator, a constant."""
    rng = np.random.default_rng(7)
    out = [rng.normal(size=(chains, draws))]
    for phi in (0.5, 0.95):
        x = np.zeros((chains, draws))
        e = rng.normal(size=(chains, draws))
        for t in range(1, draws):
            x[:, t] = phi * x[:, t - 1] + e[:, t]
        out.append(x)
    out.append(rng.normal(size=(chains, draws)) + np.arange(chains)[:, None] * 0.3)
    out.append(rng.standard_t(2, size=(chains, draws)))
    out.append(np.round(rng.normal(size=(chains, draws)), 1))
    out.append((rng.random((chains, draws)) < 0.1).astype(float))
    out.append(np.full((chains, draws), 2.5))
    return np.stack(out)


def _arviz(x: np.ndarray, fn: str) -> np.ndarray:
    """ArviZ's value of each variable, through a Dataset as the checks called it."""
    ds = xr.Dataset({"a": (("v", "chain", "draw"), x)}).transpose("chain", "draw", "v")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = stack.rhat(ds) if fn == "rhat" else stack.ess(ds, method=fn)
    return np.asarray(out["a"])


@pytest.mark.parametrize(("chains", "draws"), [(4, 200), (3, 151), (1, 120)])
def test_rhat_and_ess_equal_arviz(chains: int, draws: int) -> None:
    x = _draws(chains, draws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = {"bulk": ess_bulk(x), "tail": ess_tail(x, stack.tail_ess_probs())}
        if chains > 1:
            ours["rhat"] = rank_rhat(x)
    for fn, values in ours.items():
        np.testing.assert_allclose(values, _arviz(x, fn), rtol=1e-10, equal_nan=True,
                                   err_msg=fn)  # fmt: skip


def test_a_nan_draw_gives_nan_as_arviz() -> None:
    x = _draws(2, 50)
    x[0, 1, 7] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(ess_bulk(x)[0]) and np.isnan(rank_rhat(x)[0])
        assert np.isfinite(ess_bulk(x)[1])


def test_check_convergence_reports_arviz_worst_values_and_names() -> None:
    """The verdict's numbers and the variable named are ArviZ's worst over every element
    (a constant element, as a correlation matrix's diagonal, skipped)."""
    from bayeslmm.bayes.diagnostics import check_convergence

    x = _draws(4, 300)  # V = 8 elements: a scalar, a (3,) vector, a (2, 2) matrix
    post = xr.Dataset({
        "a": (("chain", "draw"), x[1]),
        "b": (("chain", "draw", "i"), np.moveaxis(x[[0, 2, 3]], 0, 2)),
        "c": (("chain", "draw", "j", "k"), np.moveaxis(x[[4, 5, 6, 7]], 0, 2).reshape(
            4, 300, 2, 2)),
    })  # fmt: skip
    result = check_convergence(stack.from_datasets(posterior=post), ["a", "b", "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat, bulk, tail = stack.rhat(post), stack.ess(post), stack.ess(post, method="tail")

    def worst(ds, largest):
        values = {k: np.nanmax(ds[k].values) if largest else np.nanmin(ds[k].values)
                  for k in ds.data_vars}  # fmt: skip
        name = (max if largest else min)(values, key=values.get)
        return values[name], name

    assert result.max_rhat == pytest.approx(worst(rhat, True)[0], rel=1e-10)
    assert result.min_ess_bulk == pytest.approx(worst(bulk, False)[0], rel=1e-10)
    assert result.min_ess_tail == pytest.approx(worst(tail, False)[0], rel=1e-10)
    assert any(f"({worst(rhat, True)[1]})" in p for p in result.problems)


def test_average_ranks_equal_scipys() -> None:
    """The ranks behind the rank normalisation equal ``scipy.stats.rankdata(...,
    method="average", axis=1)``: continuous values, heavy ties, a constant row, infinities,
    -0.0 beside 0.0, a NaN (the row all NaN), a single column."""
    from scipy.stats import rankdata

    from bayeslmm.bayes.chains import _average_ranks

    rng = np.random.default_rng(3)
    rows = np.stack([rng.normal(size=50), np.round(rng.normal(size=50)), np.full(50, 1.5),
                     np.r_[np.inf, -np.inf, -0.0, 0.0, rng.normal(size=46)],
                     np.r_[np.nan, rng.normal(size=49)]])  # fmt: skip
    for x in (rows, rows[:, :1]):
        np.testing.assert_array_equal(_average_ranks(x), rankdata(x, method="average", axis=1))
