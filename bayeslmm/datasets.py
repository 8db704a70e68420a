"""Data sets shipped with bayeslmm (the tutorial's data)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from .errors import DataError

#: Columns read as text so that group labels keep their printed form.
_CATEGORICAL = {
    "dyestuff": {"Batch": str},
    "rat_pup": {"sex": str, "treatment": str},
    "score_parentedu_byclass": {"classroom": str},
    "sleepstudy": {},
}

_ALIASES = {"classroom": "score_parentedu_byclass", "ratpup": "rat_pup", "rat_pups": "rat_pup"}


def _data_dir() -> Path:
    """Folder holding the CSV files: inside an installed wheel, else the source tree."""
    packaged = resources.files("bayeslmm").joinpath("_datasets")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "datasets"


def list_datasets() -> list[str]:
    """Names of the shipped data sets, for :func:`load_dataset`."""
    return sorted(p.stem for p in _data_dir().glob("*.csv"))


def load_dataset(name: str) -> pd.DataFrame:
    """Load a shipped data set as a new DataFrame.

    Parameters
    ----------
    name
        One of :func:`list_datasets` (``"classroom"`` and ``"ratpup"`` are accepted
        as aliases).

    Returns
    -------
    pandas.DataFrame
    """
    key = _ALIASES.get(name, name)
    path = _data_dir() / f"{key}.csv"
    if not path.is_file():
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}")
    return pd.read_csv(path, dtype=_CATEGORICAL.get(key))
