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
    assert bl.list_datasets() == ["dyestuff", "rat_pup", "score_parentedu_byclass", "sleepstudy"]
    sleep = bl.load_dataset("sleepstudy")
    assert sleep.shape == (180, 3)
    assert list(sleep.columns) == ["Reaction", "Days", "Subject"]
    assert bl.load_dataset("classroom").shape == (60, 3)
    rats = bl.load_dataset("ratpup")
    assert rats.shape == (322, 6)
    assert rats["sex"].dtype != float
    with pytest.raises(DataError, match="unknown dataset 'iris'.*sleepstudy"):
        bl.load_dataset("iris")


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
    assert run.stdout.strip() == "[30, 60, 180, 322]"
