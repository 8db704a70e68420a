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
#: Columns made factors (pandas categoricals, levels in numeric order where they are
#: numbers, as R's factor() of the numbers gives them): lme4's GLMM data sets.
_FACTORS = {
    "cbpp": ("herd", "period"),
    "grouseticks": ("INDEX", "BROOD", "YEAR", "LOCATION"),
    "verbagg": ("id", "item", "Gender", "btype", "situ", "mode", "resp", "r2"),
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
    "cbpp": ("Contagious bovine pleuropneumonia: new cases among the cattle of 15 herds "
             "in 4 periods (lme4's cbpp; binomial)",
             "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
    "grouseticks": ("Ticks counted on 403 red grouse chicks in 118 broods at 63 locations "
                    "(lme4's grouseticks; counts)",
                    "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"),
    "verbagg": ("Verbal aggression: 316 people's answers to 24 items (lme4's VerbAgg; "
                "r2 is Y/N, binary)",
                "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"),
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
    factors = _FACTORS.get(key, ())
    frame = pd.read_csv(path, dtype={**_CATEGORICAL.get(key, {}),
                                     **dict.fromkeys(factors, str)})  # fmt: skip
    for column in factors:
        frame[column] = _factor(frame[column])
    return frame


def _factor(values: pd.Series) -> pd.Categorical:
    """Text as a factor; its levels in numeric order where every value is a number."""
    levels = pd.unique(values.dropna())
    numbers = pd.to_numeric(pd.Series(levels), errors="coerce")
    order = numbers.argsort() if numbers.notna().all() else pd.Series(levels).argsort()
    return pd.Categorical(values, categories=[levels[i] for i in order])


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
