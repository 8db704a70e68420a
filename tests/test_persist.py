"""LMM.save / bl.load: a saved model gives the same answers in a new process."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayeslmm as bl
from bayeslmm.bayes import persist, stack

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, ratpup, quiet_fit):
    data = ratpup.copy()
    data["treatment"] = pd.Categorical(data["treatment"], ["Control", "Low", "High"])
    data.loc[3, "litsize"] = np.nan  # a dropped row: n_dropped travels with the file
    with pytest.warns(bl.BayesLMMWarning, match="1 of 322 rows dropped"):
        model = bl.LMM("weight ~ treatment + sex + litsize + (1 | litter)", data,
                       priors={"sigma": bl.Prior("HalfStudentT", nu=4, sigma=1)})  # fmt: skip
    # NumPy integers as settings (as a loop over np.arange gives them) are saved as numbers
    quiet_fit(model, draws=np.int64(200), tune=200, chains=2, random_seed=np.int64(3))
    model.posterior_predictive(random_seed=1)
    path = model.save(tmp_path_factory.mktemp("saved") / "ratpup.nc")
    return model, path


def _in_new_process(path: Path, out: Path) -> None:
    script = textwrap.dedent(f"""
        import pandas as pd, numpy as np, bayeslmm as bl
        newdata = pd.DataFrame({{"treatment": ["High", "Control"], "sex": ["Female", "Male"],
                                "litsize": [10, 14], "litter": [5, 999]}})
        m = bl.load({str(path)!r})
        m.summary(print_it=False).to_pickle({str(out / "summary.pkl")!r})
        pd.concat(m.ranef()).to_pickle({str(out / "ranef.pkl")!r})
        np.save({str(out / "predict.npy")!r}, m.predict(newdata, random_seed=7).values)
        np.save({str(out / "ppc.npy")!r}, m.idata.posterior_predictive["weight"].values)
        np.save({str(out / "fitted.npy")!r}, m.fitted_mean())
        print(m.design.n_dropped, m.priors["sigma"], m._fit_info["sampler"])
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_loaded_in_new_process_gives_identical_results(saved, tmp_path):
    model, path = saved
    out = _in_new_process(path, tmp_path)
    assert out.split() == ["1", "HalfStudentT(nu=4,", "sigma=1)", model._fit_info["sampler"]]
    pd.testing.assert_frame_equal(pd.read_pickle(tmp_path / "summary.pkl"),
                                  model.summary(print_it=False))  # fmt: skip
    pd.testing.assert_frame_equal(pd.read_pickle(tmp_path / "ranef.pkl"), pd.concat(model.ranef()))
    newdata = pd.DataFrame({"treatment": ["High", "Control"], "sex": ["Female", "Male"],
                            "litsize": [10, 14], "litter": [5, 999]})  # fmt: skip
    assert np.array_equal(np.load(tmp_path / "predict.npy"),
                          model.predict(newdata, random_seed=7).values)  # fmt: skip
    assert np.array_equal(np.load(tmp_path / "ppc.npy"),
                          model.idata.posterior_predictive["weight"].values)  # fmt: skip
    assert np.array_equal(np.load(tmp_path / "fitted.npy"), model.fitted_mean())


def test_loaded_model_keeps_data_types_and_compares(saved):
    model, path = saved
    loaded = bl.load(path)
    pd.testing.assert_frame_equal(loaded.design.frame, model.design.frame)
    assert list(loaded.design.frame["treatment"].cat.categories) == ["Control", "Low", "High"]
    assert loaded.convergence == model.convergence
    assert bl.loo_compare({"saved": model, "loaded": loaded}).table.shape[0] == 2
    # the comparison takes the loaded posterior as its Bayesian model (no refit)
    with pytest.warns(bl.SingularFitWarning):  # the REML random-slope model, not ours
        comparison = bl.compare(loaded.formula, loaded.design.frame, term="litsize",
                                model=loaded)  # fmt: skip
    table = comparison.table.set_index("model")
    assert table.loc["Bayes-Inter", "estimate"] == pytest.approx(
        loaded.fixef().loc["litsize", "mean"], rel=1e-12)
    assert loaded.idata.posterior.equals(model.idata.posterior)


def _doctor(path: Path, change) -> None:
    with h5py.File(path, "r+") as f:
        record = json.loads(f[persist.MODEL_GROUP].attrs["model"])
        change(record)
        f[persist.MODEL_GROUP].attrs["model"] = json.dumps(record)


def test_other_file_format_is_refused_naming_both_versions(saved, tmp_path):
    _, path = saved
    copy = tmp_path / "doctored.nc"
    copy.write_bytes(path.read_bytes())

    def change(record):
        record["format"] = persist.FORMAT + 1
        record["versions"]["bayeslmm"] = "9.3.0"

    _doctor(copy, change)
    expected = (r"written by bayeslmm 9\.3\.0 \(file format 2\); "
                rf"this is bayeslmm {persist.package_version()}, which reads file format 1")
    with pytest.raises(bl.DataError, match=expected):
        bl.load(copy)


def test_changed_rows_are_refused(saved, tmp_path):
    _, path = saved
    copy = tmp_path / "rows.nc"
    copy.write_bytes(path.read_bytes())
    _doctor(copy, lambda record: record.update(design_sha256="0" * 64))
    with pytest.raises(bl.DataError, match="no longer give the design"):
        bl.load(copy)


def test_bad_files_and_unfitted_models(tmp_path, sleepstudy):
    with pytest.raises(bl.DataError, match="no file"):
        bl.load(tmp_path / "absent.nc")
    other = tmp_path / "other.nc"
    pd.DataFrame({"x": [1.0]}).to_xarray().to_netcdf(other, engine="h5netcdf")
    with pytest.raises(bl.DataError, match="not a model written by LMM.save"):
        bl.load(other)
    with pytest.raises(bl.NotFittedError):
        bl.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy).save(tmp_path / "x.nc")
    with pytest.raises(bl.ArgumentError, match="path must be a file name"):
        bl.load(3)


def test_container_functions_handle_a_datatree(saved, tmp_path, monkeypatch):
    """ArviZ 1.x's container (xarray.DataTree) goes through the same two functions."""
    model, _ = saved
    posterior = stack.posterior(model.idata)
    tree = xr.DataTree.from_dict({"posterior": posterior,
                                  "sample_stats": stack.group(model.idata, "sample_stats")})
    path = tmp_path / "tree.nc"
    stack.to_netcdf(tree, path, persist.CONTAINER_GROUP)
    monkeypatch.setattr(stack, "ARVIZ_1", True)  # read as ArviZ 1.x reads
    back = stack.from_netcdf(path, persist.CONTAINER_GROUP)
    assert isinstance(back, xr.DataTree)
    xr.testing.assert_identical(back["posterior"].to_dataset(), posterior)
    assert set(back.children) == {"posterior", "sample_stats"}


def test_columns_round_trip_exactly(tmp_path):
    frame = pd.DataFrame({
        "x": np.array([0.1, 1 / 3, np.pi, -2.5e-300]),
        "n": np.array([1, 2, 3, 2**40], dtype=np.int64),
        "b": [True, False, True, True],
        "s": pd.Series(["a", "b b", "é", "a/b"], dtype="str"),
        "o": pd.Series(["u", "v", "u", "v"], dtype=object),
        "c": pd.Categorical([3, 1, 2, 3], categories=[3, 2, 1], ordered=True),
        "my col/2": [1.0, 2.0, 3.0, 4.0],
    })  # fmt: skip
    stored, records = persist._columns(frame)
    stored.to_netcdf(tmp_path / "c.nc", engine="h5netcdf")
    with xr.open_dataset(tmp_path / "c.nc", engine="h5netcdf") as back:
        restored = persist._frame(back.load(), json.loads(json.dumps(records)))
    pd.testing.assert_frame_equal(restored, frame)
    assert persist.data_digest(restored) == persist.data_digest(frame)


def test_version_written_is_the_package_version():
    assert persist.package_version() == bl.__version__
    assert persist.versions()["bayeslmm"] == bl.__version__
