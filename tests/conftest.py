import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

import bayeslmm as bl

#: Reference figures computed outside bayeslmm (R's lme4/lmerTest, brms, the tutorial's
#: table), kept in the repository so that the tests pass from a clone alone.
REFERENCE = Path(__file__).resolve().parent / "data" / "reference"


def reference_file(name: str) -> Path:
    path = REFERENCE / name
    if not path.is_file():
        pytest.fail(f"reference file {path} is missing (tests/data/reference in the repository)")
    return path


@pytest.fixture(scope="session")
def reference():
    """Path of a file in tests/data/reference (fails loudly if it is missing)."""
    return reference_file


@pytest.fixture(scope="session")
def lme4_reference() -> dict:
    return json.loads(reference_file("lme4_reference.json").read_text())


CASE_DATA = {
    "sleepstudy.csv": "sleepstudy",
    "rat_pup.csv": "rat_pup",
    "score_parentedu_byclass.csv": "score_parentedu_byclass",
    "dyestuff.csv": "dyestuff",
}


@pytest.fixture(scope="session")
def case_data():
    """The shipped DataFrame of an lme4_reference.json case."""
    return lambda case: bl.load_dataset(CASE_DATA[case["file"]])


@pytest.fixture(scope="session")
def sleepstudy() -> pd.DataFrame:
    return bl.load_dataset("sleepstudy")


@pytest.fixture(scope="session")
def ratpup() -> pd.DataFrame:
    return bl.load_dataset("rat_pup")


@pytest.fixture(scope="session")
def classroom() -> pd.DataFrame:
    return bl.load_dataset("score_parentedu_byclass")


@pytest.fixture(scope="session")
def quiet_fit():
    """Fit a model with its convergence warnings silenced (short test runs); returns it."""

    def fit(model: bl.LMM, **settings) -> bl.LMM:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bl.ConvergenceWarning)
            model.fit(progressbar=False, **settings)
        return model

    return fit
