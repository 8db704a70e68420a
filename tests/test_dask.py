"""Fitting a Dask DataFrame (issue 16): the same statistics, estimates, draws, names and
errors as the pandas path, on a dask.distributed cluster, without gathering the rows."""

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.bayes import stack
from bayeslmm.errors import RowsNotInMemoryError
from bayeslmm.gaussian.statistics import BlockedStats
from bayeslmm.gaussian.summation import KeyedSums, PowerSums

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("dask.distributed")
import dask  # noqa: E402

FIT = {"draws": 100, "tune": 100, "chains": 2, "random_seed": 11, "progressbar": False}


@pytest.fixture(scope="module")
def client():
    """Two single-threaded workers in this process: tasks go through the distributed
    scheduler (one test below uses worker processes, where everything is pickled)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:  # fmt: skip
        with distributed.Client(cluster) as c:
            yield c


@pytest.fixture(scope="module")
def crossed() -> pd.DataFrame:
    """Users crossed with items (text, categorical), users nested in schools."""
    rng = np.random.default_rng(3)
    n = 900
    user, item = rng.integers(0, 60, n), rng.integers(0, 12, n)
    frame = pd.DataFrame({"user": user, "item": pd.Categorical([f"i{k:02d}" for k in item]),
                          "x": rng.normal(size=n), "school": user // 6})  # fmt: skip
    slope = 0.7 * rng.normal(size=12)[item] * (1 + frame["x"])
    frame["y"] = 1.0 + 0.5 * frame["x"] + rng.normal(size=60)[user] + slope + rng.normal(size=n)
    return frame


def _parquet(frame: pd.DataFrame, folder, parts: int):
    """``frame`` written as ``parts`` Parquet files, read back lazily with Dask."""
    folder.mkdir(exist_ok=True)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].to_parquet(folder / f"part{i}.parquet")
    return dd.read_parquet(str(folder / "*.parquet"))


def test_sums_are_the_same_in_any_order_and_split():
    """The order-independent sums: correctly rounded whatever the order and the pieces."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 3)) * np.exp(3 * rng.normal(size=(5000, 1)))
    keys = rng.integers(0, 40, 5000)
    whole = KeyedSums.products(keys, x, x, 40)
    pieces = None
    for rows in np.array_split(rng.permutation(5000), 6):
        part = KeyedSums.products(keys[rows], x[rows], x[rows], 40)
        pieces = part if pieces is None else part.combine(pieces)
    np.testing.assert_array_equal(whole.values, pieces.values)
    np.testing.assert_array_equal(whole.counts, np.bincount(keys))
    import math

    rows = keys == 7
    exact = [math.fsum(x[rows, i] * x[rows, j]) for i in range(3) for j in range(3)]
    np.testing.assert_array_equal(whole.values[7], exact)
    far = 1e8 + rng.normal(size=(5000, 1))  # variance of a column far from 0 kept
    m2 = PowerSums.of(far).m2[0]
    assert m2 == pytest.approx(np.sum((far - far.mean()) ** 2), rel=1e-9)


def test_importing_bayeslmm_does_not_import_dask():
    code = ("import sys, bayeslmm, bayeslmm.present.cli; "
            "print(any(m.startswith('dask') for m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("formula", [
    "Reaction ~ Days + (Days | Subject)",
    "Reaction ~ Days + (Days || Subject)",
])  # fmt: skip
def test_reml_from_parquet_on_a_cluster_equals_pandas(client, sleepstudy, tmp_path, formula):
    ddf = _parquet(sleepstudy, tmp_path / "sleep", 4)
    assert ddf.npartitions == 4
    a, b = bl.lmer(formula, sleepstudy), bl.lmer(formula, ddf)
    for x, y in [(a.theta, b.theta), (a.fit.beta, b.fit.beta), (a.sigma, b.sigma),
                 (a.loglik, b.loglik), (a.se, b.se)]:  # fmt: skip
        np.testing.assert_allclose(y, x, rtol=1e-10, atol=1e-10)
    pd.testing.assert_frame_equal(a.varcorr(), b.varcorr(), rtol=1e-10)
    pd.testing.assert_frame_equal(a.ranef()["Subject"], b.ranef()["Subject"], rtol=1e-10)
    assert b.design.n_obs == 180 and b.design.blocks[0].levels == a.design.blocks[0].levels
    fitted = b.fitted()  # lazy: one value per row, indexed as the rows
    assert isinstance(fitted, dd.Series)
    np.testing.assert_allclose(fitted.compute().to_numpy(), a.fitted(), rtol=1e-10)
    assert b.rmse == pytest.approx(a.rmse, rel=1e-10)


@pytest.mark.parametrize("formula", [
    "y ~ x + (1 | user) + (1 + x | item)",  # crossed: cross tables are pair group-bys
    "y ~ x + (1 | school/user)",  # nested
])  # fmt: skip
def test_crossed_and_nested_statistics_are_identical(client, crossed, tmp_path, formula):
    ddf = _parquet(crossed, tmp_path / "crossed", 5)
    a, b = bl.lmer(formula, crossed), bl.lmer(formula, ddf)
    np.testing.assert_allclose(b.theta, a.theta, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b.fit.beta, a.fit.beta, rtol=1e-10)
    sa = BlockedStats.from_design(a.design)
    sb = BlockedStats.from_design(b.design)
    for name in ("pair_i", "pair_j", "pair_val", "ZtX", "Zty", "XtX", "Xty", "yty", "n"):
        np.testing.assert_array_equal(getattr(sb, name), getattr(sa, name), err_msg=name)


def test_same_seed_same_draws(client, crossed, tmp_path):
    """The compiled density reads only statistics, identical to the pandas path's: the same
    seed gives the very same draws (also with a sampled, non-integrated factor)."""
    ddf = _parquet(crossed, tmp_path / "draws", 3)
    formula = "y ~ x + (1 | user) + (1 + x | item)"
    a, b = bl.LMM(formula, crossed), bl.LMM(formula, ddf)
    assert a.priors == b.priors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.ConvergenceWarning)
        ia, ib = a.fit(**FIT), b.fit(**FIT)
    for name in ia.posterior.data_vars:
        np.testing.assert_array_equal(ib.posterior[name].values, ia.posterior[name].values)
    assert not stack.has_group(ib, "observed_data") and not stack.has_group(ib, "log_likelihood")
    np.testing.assert_allclose(b.fitted_mean().compute().to_numpy(), a.fitted_mean(), rtol=1e-10)
    new = crossed.head(4)
    np.testing.assert_array_equal(b.predict(new).values, a.predict(new).values)


def test_a_sampled_factor_from_sums(client, tmp_path):
    """A factor too large for the dense block is sampled (centred: intercepts with many rows
    per level), chosen from the sums alone, with the pandas path's very draws."""
    rng = np.random.default_rng(11)
    n = 1500
    user, item = rng.integers(0, 100, n), rng.integers(0, 70, n)
    frame = pd.DataFrame({"user": user, "item": item, "x": rng.normal(size=n)})
    frame["y"] = (0.5 * frame["x"] + rng.normal(size=100)[user] + 0.7 * rng.normal(size=70)[item]
                  + rng.normal(size=n))  # fmt: skip
    formula = "y ~ x + (1 | user) + (1 | item)"
    a, b = bl.LMM(formula, frame), bl.LMM(formula, _parquet(frame, tmp_path / "sampled", 3))
    assert a.explicit_factors == b.explicit_factors == ("item",)
    assert a.centred_terms == b.centred_terms == {"item": ("(Intercept)",)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.ConvergenceWarning)
        ia, ib = a.fit(**FIT), b.fit(**FIT)
    for name in ia.posterior.data_vars:
        np.testing.assert_array_equal(ib.posterior[name].values, ia.posterior[name].values)


def test_what_needs_the_rows_is_refused_with_a_way_out(client, sleepstudy):
    ddf = dd.from_pandas(sleepstudy, npartitions=2)
    model = bl.LMM("Reaction ~ Days + (Days | Subject)", ddf)
    calls = {
        "store_log_likelihood": lambda: model.fit(store_log_likelihood=True, **FIT),
        "method='full'": lambda: model.fit(method="full", **FIT),
        "compare()": lambda: bl.compare("Reaction ~ Days + (Days | Subject)", ddf),
        "bayeslmm.LMM": lambda: bl.LMM("Reaction ~ Days", ddf).fit(**FIT),
        "residual=": lambda: bl.LMM(
            "Reaction ~ Days + (1 | Subject)", ddf, residual=bl.AR1(time="Days", group="Subject")
        ),
        "lmer residual=": lambda: bl.lmer(
            "Reaction ~ Days", ddf, residual=bl.CompoundSymmetry(group="Subject")
        ),
        "in memory": lambda: np.mean(model.design.y),
    }
    for what, call in calls.items():
        with pytest.raises(RowsNotInMemoryError) as err:
            call()
        assert "Dask DataFrame" in str(err.value), what
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.ConvergenceWarning)
        model.fit(**FIT)
    for call in (model.predict, model.posterior_predictive,
                 lambda: bl.loo_compare({"a": model, "b": model}, by="observation")):  # fmt: skip
        with pytest.raises(RowsNotInMemoryError, match="Dask DataFrame"):
            call()
    table = bl.loo_compare({"a": model, "b": model}, by="group").table  # from sums
    assert table["elpd_loo"].nunique() == 1


def _outcome(formula, data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            design = bl.build_design(formula, data)
            result = ("ok", design.fixed_names, [b.levels for b in design.blocks], design.n_obs,
                      design.column_kinds)  # fmt: skip
        except bl.BayesLMMError as err:
            result = (type(err).__name__, str(err))
    return result, [str(w.message) for w in caught if issubclass(w.category, bl.BayesLMMWarning)]


def _bad(base: pd.DataFrame) -> dict:
    n = len(base)
    out = {}
    out["missing column"] = (base, "y ~ xx + (1 | g)")
    out["bad formula"] = (base, "y ~ x + (1 | g")
    out["missing values"] = (base.assign(x=base["x"].where(base.index % 7 != 3)), "y ~ x + (1 | g)")
    out["empty column"] = (base.assign(x=np.nan), "y ~ x + (1 | g)")
    out["infinite"] = (base.assign(x=base["x"].where(base.index != 5, np.inf)), "y ~ x + (1 | g)")
    text = base["x"].astype(str).where(base.index % 20 != 5, "oops").astype(object)
    out["mostly numbers"] = (base.assign(x=text), "y ~ x + (1 | g)")
    mixed = base["x"].astype(object).where(base.index % 20 != 5, "oops")
    out["mixed types"] = (base.assign(x=mixed), "y ~ x + (1 | g)")
    out["constant response"] = (base.assign(y=1.0), "y ~ x + (1 | g)")
    out["text response"] = (base.assign(y=base["f"]), "y ~ x + (1 | g)")
    out["rank"] = (base.assign(x2=2 * base["x"]), "y ~ x + x2 + (1 | g)")
    out["one level"] = (base.assign(g="a"), "y ~ x + (1 | g)")
    out["levels >= rows"] = (base.assign(g=np.arange(n)), "y ~ x + (1 | g)")
    out["log of negatives"] = (base, "y ~ np.log(x) + (1 | g)")
    out["ok: interactions"] = (base, "y ~ x * f + (1 | g:h) + (1 | g)")
    out["ok: categorical order"] = (base.assign(g=pd.Categorical(base["g"], list("fedcbaz"))),
                                    "y ~ x + f + (1 | g)")  # fmt: skip
    out["ok: odd name"] = (base.rename(columns={"x": "my x"}), "y ~ `my x` + (1 | g)")
    return out


def test_names_levels_warnings_and_errors_are_pandas_own(sleepstudy):
    rng = np.random.default_rng(0)
    n = 60
    base = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "g": np.repeat(list("abcdef"), 10), "h": np.tile(list("uvw"), 20),
                         "f": rng.choice(["p", "q"], n)})  # fmt: skip
    # Dask would turn object columns to Arrow strings: keep the user's values as they are
    with dask.config.set({"dataframe.convert-string": False, "scheduler": "sync"}):
        for name, (data, formula) in _bad(base).items():
            expected = _outcome(formula, data)
            got = _outcome(formula, dd.from_pandas(data, npartitions=3))
            assert got == expected, name


def test_stateful_transforms_are_refused_on_dask(sleepstudy):
    ddf = dd.from_pandas(sleepstudy, npartitions=2)
    with dask.config.set(scheduler="sync"), pytest.raises(bl.FormulaError, match="scale"):
        bl.build_design("Reaction ~ scale(Days) + (1 | Subject)", ddf)


def test_cli_fits_a_parquet_glob_on_worker_processes(sleepstudy, tmp_path, capsys):
    """``bayeslmm fit data/*.parquet`` on a cluster of worker processes (everything the
    tasks need is pickled): the report says what it left out."""
    from bayeslmm.present.cli import main

    _parquet(sleepstudy, tmp_path / "data", 3)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:  # fmt: skip
        status = main(["fit", str(tmp_path / "data" / "*.parquet"),
                       "Reaction ~ Days + (Days | Subject)", "--out", str(tmp_path / "rep"),
                       "--draws", "100", "--tune", "100", "--chains", "2", "--no-progress",
                       "--no-random-comparison",
                       "--scheduler", cluster.scheduler_address])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 0, err
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "rows were never gathered" in page and "they are left out" in page
    assert "No comparison with the classical models" in page
    summary = pd.read_csv(tmp_path / "rep" / "data_summary.csv")
    assert summary.loc[0, "mean"] == pytest.approx(sleepstudy["Reaction"].mean(), rel=1e-12)
    assert main(["fit", str(tmp_path / "none*.parquet"), "y ~ x + (1 | g)"]) == 1
    assert "no file matches" in capsys.readouterr().err
