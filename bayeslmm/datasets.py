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

#: What each data set is and a formula to try on it.
_ABOUT = {
    "dyestuff": ("Yield of dyestuff from 6 batches (lme4's Dyestuff)", "Yield ~ 1 + (1 | Batch)"),
    "rat_pup": ("Birth weights of rat pups in 27 litters, by sex, litter size and treatment",
                "weight ~ treatment + sex + litsize + (1 | litter)"),
    "score_parentedu_byclass": ("Scores of 60 pupils in 3 classrooms against their parents' "
                                "education (the tutorial's data)",
                                "score ~ edu + (1 + edu | classroom)"),
    "sleepstudy": ("Reaction times of 18 subjects over 10 days of sleep deprivation "
                   "(lme4's sleepstudy)", "Reaction ~ Days + (Days | Subject)"),
}  # fmt: skip


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


def describe_datasets() -> pd.DataFrame:
    """One row per shipped data set: name, alias, rows, columns, description, formula."""
    alias = {v: k for k, v in _ALIASES.items() if k in ("classroom", "ratpup")}
    rows = []
    for name in list_datasets():
        frame = load_dataset(name)
        about, formula = _ABOUT.get(name, ("", ""))
        rows.append({"name": name, "alias": alias.get(name, ""), "rows": len(frame),
                     "columns": ", ".join(frame.columns), "description": about,
                     "example formula": formula})  # fmt: skip
    return pd.DataFrame(rows)
