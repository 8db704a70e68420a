"""``bayeslmm fit`` through the whole analysis: a binary or count model's random-effects
choice (glmer's likelihood-ratio tests) in its report and CSV files, and known standard
errors (``--se COLUMN``, meta-analysis).

References: lme4's anova(glmer, glm) on cbpp (tests/data/lme4_glmer_ranova.R + .json) and
bl.compare_random_effects itself; metafor's rma(yi, sei, method = "REML") on eight schools
and the BCG trials (tests/data/metafor_known_se.R + .json).
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.present.cli import main

DATA = Path(__file__).resolve().parent / "data"
FAST = ["--draws", "200", "--tune", "200", "--chains", "2", "--seed", "3", "--no-progress"]
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
RANOVA = {c["id"]: c for c in json.loads((DATA / "lme4_glmer_ranova.json").read_text())["cases"]}
METAFOR = {(c["id"], c["method"]): c
           for c in json.loads((DATA / "metafor_known_se.json").read_text())["cases"]}  # fmt: skip
TITLE = "Which random effects does the data support?"


def _section(page: str, key: str) -> str:
    return page.split(f"<section id='{key}'>", 1)[1].split("</section>", 1)[0]


def test_fit_binomial_writes_the_random_effects_choice(tmp_path, capsys):
    """cbpp (one random intercept: dropping it leaves a GLM): the table printed, written as
    random_effects_comparison.csv and shown in the report equals bl.compare_random_effects
    and lme4's anova(glmer, glm); with the Bayesian model, the Bayesian GLM neighbour gives
    the Bayes factor and leave-one-out columns."""
    out = tmp_path / "cbpp"
    assert main(["fit", "cbpp", CBPP, "--family", "binomial", "--out", str(out), *FAST]) == 0
    captured = capsys.readouterr()
    assert TITLE in captured.out and "bayeslmm: The data support the random term (1 | herd)." \
        in captured.err  # fmt: skip
    assert "Traceback" not in captured.err
    table = pd.read_csv(out / "random_effects_comparison.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = bl.compare_random_effects(CBPP, bl.load_dataset("cbpp"), family="binomial")
    for column in ("Df", "LRT", "p", "p_boundary", "AIC_diff", "BIC_diff"):
        np.testing.assert_allclose(table[column], ref.table[column], rtol=1e-8, err_msg=column)
    assert table["verdict"].tolist() == ref.table["verdict"].tolist() == ["needed"]
    lme4 = RANOVA["cbpp"]["neighbours"][0]
    assert table["LRT"].iloc[0] == pytest.approx(lme4["LRT"], rel=1e-5)
    assert table["p_boundary"].iloc[0] == pytest.approx(lme4["p_boundary"], rel=1e-4)
    page = (out / "report.html").read_text(encoding="utf-8")
    section = _section(page, "random_effects_choice")
    assert TITLE in section and "random term (1 | herd)" in section
    assert f"{table['LRT'].iloc[0]:.4g}" in section
    assert "<th>log BF</th>" in section and np.isfinite(table["log_BF"]).all()
    assert page.index("<section id='random_effects_choice'>") < page.index(
        "<section id='not_yet'>")  # fmt: skip
    assert "not computed for this report" not in page
    text = (out / "summary.txt").read_text(encoding="utf-8")
    assert TITLE in text and "LRT = 14.01 on 1 df" in text
    # skipped: the section says so and no CSV is written
    out2 = tmp_path / "skipped"
    assert main(["fit", "cbpp", CBPP, "--family", "binomial", "--out", str(out2), "--no-compare",
                 "--no-random-comparison", *FAST]) == 0  # fmt: skip
    page = (out2 / "report.html").read_text(encoding="utf-8")
    assert "(--no-random-comparison)" in _section(page, "random_effects_choice")
    assert not (out2 / "random_effects_comparison.csv").exists()


@pytest.mark.parametrize(
    ("case", "csv", "formula", "column"),
    [("schools", "eight_schools.csv", "y ~ 1 + (1 | school)", "sigma"),
     ("bcg_ablat", "dat_bcg.csv", "yi ~ ablat + (1 | trial)", "sei")],
)  # fmt: skip
def test_fit_with_known_standard_errors(case, csv, formula, column, tmp_path, capsys):
    """--se COLUMN: REML with the known standard errors equals metafor's rma (estimates,
    SEs, tau^2), the posterior is written beside it, the report says the residual SDs are
    known and why the comparisons are left out."""
    out = tmp_path / case
    assert main(["fit", str(DATA / csv), formula, "--se", column, "--out", str(out),
                 *FAST]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert f"fit by REML. known standard errors ({column})" in captured.out  # bl.lmer's
    assert "Traceback" not in captured.err
    ref = METAFOR[(case, "REML")]
    fixed = pd.read_csv(out / "reml_fixed_effects.csv")
    np.testing.assert_allclose(fixed["estimate"], np.atleast_1d(ref["beta"]), rtol=1e-5)
    np.testing.assert_allclose(fixed["se"], np.atleast_1d(ref["se"]), rtol=1e-4)
    variance = pd.read_csv(out / "reml_variance_components.csv")
    assert len(variance) == 1  # no residual row: the residual SDs are known
    assert variance["vcov"].iloc[0] == pytest.approx(ref["tau2"], rel=1e-4, abs=1e-8)
    posterior = pd.read_csv(out / "fixed_effects.csv")
    assert posterior["term"].tolist() == fixed["term"].tolist()
    # the posterior of the mean effect sits near REML's estimate (within its posterior sd)
    assert np.all(np.abs(posterior["mean"] - fixed["estimate"]) < posterior["sd"])
    components = pd.read_csv(out / "variance_components.csv")
    assert "sigma" not in components["parameter"].tolist()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"The residual SDs are known: the column <code>{column}</code>" in page
    assert "No ICC or R2" in page and f"residual SDs are known (--se {column})" in page
    resid = pd.read_csv(out / "standardized_residuals.csv")
    data = pd.read_csv(DATA / csv)
    np.testing.assert_allclose(resid[column], data[column])
    response = formula.split("~")[0].strip()
    np.testing.assert_allclose(resid["residual"], data[response] - resid["fitted"])
    np.testing.assert_allclose(resid["standardized"], resid["residual"] / data[column])


@pytest.mark.parametrize(
    ("change", "message"),
    [(lambda d: d.drop(columns="sigma"), "the standard-error column se='sigma' is not in the data"),
     (lambda d: d.assign(sigma=d["sigma"].where(d["school"] != "C", 0)), "has zeros in 1 row"),
     (lambda d: d.assign(sigma=-d["sigma"]), "has negative values in 8 row"),
     (lambda d: d.assign(sigma=d["sigma"].where(d["school"] != "B")), "missing (NaN) values"),
     (lambda d: d.assign(sigma="x"), "must be numeric")],
)  # fmt: skip
def test_bad_se_column_fails_before_fitting(change, message, tmp_path, capsys):
    csv = tmp_path / "schools.csv"
    change(pd.read_csv(DATA / "eight_schools.csv")).to_csv(csv, index=False)
    code = main(["fit", str(csv), "y ~ 1 + (1 | school)", "--se", "sigma", "--out",
                 str(tmp_path / "out"), *FAST])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert message in err and err.count("bayeslmm: error:") == 1
    assert "Fitting" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--family", "poisson"], "--se (known standard errors) is for Gaussian models"),
     (["--residual", "ar1(1 | school)"], "--se (known standard errors) and --residual")],
)  # fmt: skip
def test_se_with_options_it_cannot_take(args, message, tmp_path, capsys):
    code = main(["fit", str(tmp_path / "missing.csv"), "y ~ 1 + (1 | school)", "--se", "sigma",
                 *args])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert message in err and "does not exist" not in err


def test_comparisons_refuse_a_model_with_known_standard_errors():
    """bl.compare and bl.compare_random_effects would fit an estimated residual variance
    and ignore the standard errors: refused, before any fit."""
    model = bl.LMM("yi ~ ablat + (1 | trial)", pd.read_csv(DATA / "dat_bcg.csv"), se="sei")
    for call in (bl.compare, bl.compare_random_effects):
        with pytest.raises(bl.ComparisonError, match="known standard errors \\(se='sei'\\)"):
            call(model)
    assert model.idata is None
