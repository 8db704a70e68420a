"""Random terms the data cannot identify are named when the design is built."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.errors import IdentificationWarning
from bayeslmm.spec.design import build_design


def _messages(formula: str, data: pd.DataFrame) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_design(formula, data, level_per_row=True)
    return [str(w.message) for w in caught if issubclass(w.category, IdentificationWarning)]


@pytest.fixture(scope="module")
def rats() -> pd.DataFrame:
    return bl.load_dataset("rat_pup")


@pytest.fixture(scope="module")
def ticks() -> pd.DataFrame:
    data = bl.load_dataset("grouseticks")
    return data.assign(YEAR=data["YEAR"].astype("category"))


def test_a_slope_given_per_level_is_named(rats):
    """treatment and litsize are given per litter: beside the litter intercept, their
    slopes by litter add to it (rat pups; the same with || and a separate intercept)."""
    before = rats.copy()
    messages = _messages("weight ~ treatment + sex + (1 + treatment | litter)", rats)
    assert len(messages) == 1
    assert "(1 + treatment | litter)" in messages[0]
    assert "treatmentHigh, treatmentLow do not vary within any level of litter" in messages[0]
    pd.testing.assert_frame_equal(rats, before)
    split = _messages("weight ~ litsize + (1 | litter) + (0 + litsize | litter)", rats)
    assert len(split) == 1 and "(0 + litsize | litter)" in split[0] and "litsize" in split[0]
    independent = _messages("weight ~ litsize + (litsize || litter)", rats)
    assert len(independent) == 1 and "litsize" in independent[0]


def test_a_term_the_fixed_effects_hold_is_named(ticks):
    """(1 | YEAR) beside a fixed YEAR; a cell-means term inside the fixed interaction."""
    messages = _messages("TICKS ~ YEAR + (1 | YEAR) + (1 | BROOD)", ticks)
    assert len(messages) == 1
    assert "(1 | YEAR)" in messages[0] and "only its prior sets its SD" in messages[0]
    rng = np.random.default_rng(1)
    cells = pd.DataFrame({"a": np.repeat(["p", "q"], 40), "b": np.tile(["u", "v"], 40),
                          "y": rng.normal(size=80)})  # fmt: skip
    assert len(_messages("y ~ a * b + (1 | a:b)", cells)) == 1
    assert _messages("y ~ a + b + (1 | a:b)", cells) == []  # the interaction is not fixed


def test_identified_designs_pass_quietly(rats, ticks):
    """Ordinary designs warn nothing: slopes varying within levels, predictors given per
    level as fixed effects beside an intercept, nested and crossed factors, a slope with
    no intercept for its factor, an observation-level effect."""
    sleep = bl.load_dataset("sleepstudy")
    assert _messages("Reaction ~ Days + (Days | Subject)", sleep) == []
    assert _messages("Reaction ~ Days + (Days || Subject)", sleep) == []
    assert _messages("weight ~ treatment + litsize + sex + (1 + sex | litter)", rats) == []
    assert _messages("weight ~ treatment + (0 + litsize | litter)", rats) == []
    grouse = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"
    assert _messages(grouse, ticks) == []
    assert _messages("TICKS ~ YEAR + (1 | LOCATION/BROOD)", ticks) == []


def test_models_an_analysis_derives_do_not_warn(rats):
    """bl.compare fits the tutorial's models beside the user's: the random slope of
    litsize by litter is one of them, not the user's to fix; the user's own unidentified
    term warns once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bl.compare("weight ~ litsize + sex + (1 | litter)", rats, bayes=False)
    assert not [w for w in caught if issubclass(w.category, IdentificationWarning)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bl.compare("weight ~ litsize + sex + (1 + litsize | litter)", rats, bayes=False)
    named = [w for w in caught if issubclass(w.category, IdentificationWarning)]
    assert len(named) == 1 and "(1 + litsize | litter)" in str(named[0].message)
    assert issubclass(bl.IdentificationWarning, bl.BayesLMMWarning)
