import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm import DataError

ROOT = Path(__file__).resolve().parents[1]


def test_list_and_load():
    assert bl.list_datasets() == ["cbpp", "dyestuff", "grouseticks", "rat_pup",
                                  "score_parentedu_byclass", "sleepstudy", "verbagg"]
    sleep = bl.load_dataset("sleepstudy")
    assert sleep.shape == (180, 3)
    assert list(sleep.columns) == ["Reaction", "Days", "Subject"]
    assert bl.load_dataset("classroom").shape == (60, 3)
    rats = bl.load_dataset("ratpup")
    assert rats.shape == (322, 6)
    assert rats["sex"].dtype != float
    with pytest.raises(DataError, match="unknown dataset 'iris'.*sleepstudy"):
        bl.load_dataset("iris")


def test_lme4_glmm_data_sets_are_lme4s():
    """cbpp, grouseticks and VerbAgg as lme4 1.1-31 ships them (exported by
    tests/data/lme4_glmer.R; sums checked in R): their factors are factors."""
    cbpp = bl.load_dataset("cbpp")
    assert cbpp.shape == (56, 4) and int(cbpp["incidence"].sum()) == 99
    assert list(cbpp["herd"].cat.categories) == [str(k) for k in range(1, 16)]
    ticks = bl.load_dataset("grouseticks")
    assert ticks.shape == (403, 7) and int(ticks["TICKS"].sum()) == 2567
    assert ticks["BROOD"].nunique() == 118 and ticks["LOCATION"].nunique() == 63
    verb = bl.load_dataset("verbagg")
    assert verb.shape == (7584, 9) and list(verb["r2"].cat.categories) == ["N", "Y"]
    assert verb["id"].nunique() == 316 and verb["item"].nunique() == 24


def test_shipped_files_are_the_tutorial_data():
    for name in bl.list_datasets():
        shipped = ROOT / "datasets" / f"{name}.csv"
        assert shipped.is_file()
        assert len(pd.read_csv(shipped)) == len(bl.load_dataset(name))


def test_load_dataset_works_from_an_installed_wheel(tmp_path):
    """Build a wheel, unpack it away from the source tree and load every data set."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("bayeslmm-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "bayeslmm" / "_datasets" / "sleepstudy.csv").is_file()
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import bayeslmm as bl; "
        "assert bl.__file__.startswith(sys.argv[1]), bl.__file__; "
        "print(sorted(len(bl.load_dataset(n)) for n in bl.list_datasets()))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(site)], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[30, 56, 60, 180, 322, 403, 7584]"
