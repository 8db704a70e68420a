import re

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm import (
    BayesLMMError,
    ColumnTypeError,
    DataError,
    FormulaError,
    RankDeficiencyError,
    build_design,
)
from bayeslmm.spec.design import new_design


def test_fixed_columns_match_lme4_for_every_reference_case(lme4_reference, case_data):
    for case in lme4_reference.values():
        data = case_data(case)
        design = build_design(case["formula"], data)
        assert design.fixed_names == list(case["REML"]["fixef"]), case["id"]
        assert design.n_obs == case["nobs"]
        for ref in case["REML"]["ranef"]:
            block = next(b for b in design.blocks if b.group == ref["group"])
            assert block.levels == ref["levels"], case["id"]
            terms = ref["terms"] if isinstance(ref["terms"], list) else [ref["terms"]]
            assert block.columns == terms


def test_fixed_columns_mean_what_lme4_means(lme4_reference, ratpup):
    # OLS on our X reproduces R's column meaning: sexMale = Male - Female (treatment coding)
    design = build_design("weight ~ sex + (1|litter)", ratpup)
    beta = np.linalg.lstsq(design.X, design.y, rcond=None)[0]
    means = ratpup.groupby("sex")["weight"].mean()
    assert beta[0] == pytest.approx(means["Female"])
    assert beta[1] == pytest.approx(means["Male"] - means["Female"])


def test_factor_interactions_and_functions(ratpup):
    design = build_design(
        "weight ~ sex * treatment + I(litsize**2) + np.log(litsize) + center(litsize) + (1|litter)",
        ratpup,
    )
    assert design.fixed_names == [
        "(Intercept)", "sexMale", "treatmentHigh", "treatmentLow", "I(litsize ** 2)",
        "np.log(litsize)", "center(litsize)", "sexMale:treatmentHigh", "sexMale:treatmentLow",
    ]  # fmt: skip
    np.testing.assert_allclose(design.X[:, 4], ratpup["litsize"] ** 2)
    np.testing.assert_allclose(design.X[:, 5], np.log(ratpup["litsize"]))
    assert abs(design.X[:, 6].mean()) < 1e-12


def test_no_intercept_and_scaling(sleepstudy):
    design = build_design("Reaction ~ 0 + scale(Days) + (1|Subject)", sleepstudy)
    assert design.fixed_names == ["scale(Days)"]
    design = build_design("Reaction ~ -1 + Days + (1|Subject)", sleepstudy)
    assert design.fixed_names == ["Days"]
    design = build_design("Reaction ~ 0 + (1|Subject)", sleepstudy)
    assert design.X.shape == (180, 0)


def test_random_terms_become_small_blocks(sleepstudy, ratpup):
    design = build_design("Reaction ~ Days + (Days||Subject)", sleepstudy)
    (block,) = design.blocks
    assert block.columns == ["(Intercept)", "Days"]
    assert not block.correlated
    assert block.Z.shape == (180, 2)  # n x q, never n x levels
    assert block.codes.shape == (180,) and block.codes.max() == 17

    design = build_design("weight ~ sex + (0 + sex | litter)", ratpup)
    assert design.blocks[0].columns == ["sexFemale", "sexMale"]
    assert design.blocks[0].correlated

    design = build_design("weight ~ 1 + (1|treatment/litter)", ratpup)
    assert [b.group for b in design.blocks] == ["treatment", "treatment:litter"]
    assert design.blocks[1].levels[0] == "Control:1"
    # a:b levels are the observed combinations
    assert design.blocks[1].n_levels == ratpup.groupby(["treatment", "litter"]).ngroups

    design = build_design("weight ~ 1 + (1|litter) + (1|sex)", ratpup)
    assert [b.label for b in design.blocks] == ["litter", "sex"]

    design = build_design("Reaction ~ Days + (1|Subject) + (0 + Days|Subject)", sleepstudy)
    assert [b.label for b in design.blocks] == ["Subject", "Subject.1"]


def test_missing_rows_dropped_with_count(sleepstudy):
    data = sleepstudy.copy()
    data.loc[[0, 5, 7], "Reaction"] = np.nan
    data.loc[9, "Days"] = np.nan
    data["unused"] = np.nan  # columns the formula does not use do not matter
    before = data.copy()
    with pytest.warns(UserWarning, match=r"4 of 180 rows dropped.*Reaction: 3, Days: 1"):
        design = build_design("Reaction ~ Days + (Days|Subject)", data)
    assert design.n_obs == 176 and design.n_dropped == 4
    pd.testing.assert_frame_equal(data, before)


def test_user_dataframe_is_never_modified(ratpup):
    data = ratpup.copy()
    before = data.copy()
    build_design("np.log(weight) ~ sex * scale(litsize) + (1 + sex | litter)", data)
    pd.testing.assert_frame_equal(data, before)


@pytest.mark.parametrize(
    "formula, error, pattern",
    [
        ("Reaction ~ Dayz + (1|Subject)", DataError, r"'Dayz'.*did you mean 'Days'"),
        ("Reaction ~ Days + (1|Subjekt)", DataError, r"'Subjekt'.*random term"),
        ("Reaction ~ Days + (Dayz|Subject)", DataError, r"'Dayz'"),
        ("Reactio ~ Days + (1|Subject)", DataError, r"'Reactio'.*response"),
        ("Subject ~ Days + (1|Subject)", None, None),
        ("Reaction ~ Days + (1|Subject", FormulaError, r"unmatched"),
    ],
)
def test_bad_input_names_the_culprit(sleepstudy, formula, error, pattern):
    if error is None:
        build_design(formula, sleepstudy)  # an integer column is a valid response
        return
    with pytest.raises(error, match=pattern):
        build_design(formula, sleepstudy)


def test_non_numeric_response(ratpup):
    with pytest.raises(ColumnTypeError, match=r"response 'sex' must be numeric"):
        build_design("sex ~ weight + (1|litter)", ratpup)
    with pytest.raises(TypeError):  # ColumnTypeError subclasses TypeError
        build_design("treatment ~ 1 + (1|litter)", ratpup)


def test_grouping_factor_with_one_level(ratpup):
    data = ratpup.assign(site="only")
    with pytest.raises(DataError, match=r"grouping factor 'site'.*1 level"):
        build_design("weight ~ sex + (1|site)", data)


def test_grouping_factor_with_a_level_per_row(ratpup):
    with pytest.raises(DataError, match=r"'pup_id' has 322 levels for 322 observations"):
        build_design("weight ~ sex + (1|pup_id)", ratpup)


def test_rank_deficient_fixed_effects_name_columns(ratpup):
    data = ratpup.assign(litsize2=2 * ratpup["litsize"])
    with pytest.raises(RankDeficiencyError, match=r"\['litsize2'\]") as info:
        build_design("weight ~ litsize + litsize2 + (1|litter)", data)
    assert info.value.columns == ["litsize2"]
    data = ratpup.assign(zero=0.0)
    with pytest.raises(RankDeficiencyError, match=r"\['zero'\]"):
        build_design("weight ~ sex + zero + (1|litter)", data)


def test_empty_and_infinite_data(sleepstudy):
    with pytest.raises(DataError, match="no rows"):
        build_design("Reaction ~ Days + (1|Subject)", sleepstudy.iloc[:0])
    all_missing = sleepstudy.assign(Reaction=np.nan)
    with pytest.raises(DataError, match=r"\['Reaction'\] have no values"):
        build_design("Reaction ~ Days + (1|Subject)", all_missing)
    disjoint = sleepstudy.astype({"Days": float})
    disjoint.loc[::2, "Days"] = np.nan
    disjoint.loc[1::2, "Reaction"] = np.nan
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no rows left"):
        build_design("Reaction ~ Days + (1|Subject)", disjoint)
    data = sleepstudy.astype({"Days": float})
    data.loc[3, "Days"] = np.inf
    with pytest.raises(DataError, match=r"column 'Days' has 1 infinite"):
        build_design("Reaction ~ Days + (1|Subject)", data)
    with pytest.raises(ColumnTypeError, match="DataFrame"):
        build_design("Reaction ~ Days + (1|Subject)", sleepstudy.to_dict())


def test_every_error_is_one_hierarchy():
    for cls in (DataError, FormulaError, ColumnTypeError, RankDeficiencyError, bl.PriorError):
        assert issubclass(cls, BayesLMMError)
        assert issubclass(cls, ValueError | TypeError)


def test_new_design_keeps_encodings_and_codes_new_levels(ratpup):
    design = build_design("weight ~ sex + scale(litsize) + (1|litter)", ratpup)
    new = ratpup.head(3).assign(litter=[1, 99, 99], sex=["Male", "Female", "Male"])
    nd = new_design(design, new)
    np.testing.assert_allclose(nd.X[:, 2], design.X[:3, 2])  # scale() uses fitted mean/sd
    assert nd.X[:, 1].tolist() == [1.0, 0.0, 1.0]
    assert nd.codes[0].tolist() == [0, 27, 27]
    assert nd.new_levels == [["99"]]
    with pytest.raises(DataError, match=re.escape("lacks column(s) ['litter']")):
        new_design(design, new.drop(columns="litter"))
