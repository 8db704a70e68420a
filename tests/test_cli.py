"""The ``bayeslmm`` command end to end: exit codes, files written, error messages."""

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import bayeslmm as bl
from bayeslmm.present.cli import main, parse_prior

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST = ["--draws", "100", "--tune", "150", "--chains", "2", "--no-progress"]
TABLES = ["data_summary", "priors", "convergence", "fixed_effects", "variance_components",
          "icc", "r2", "random_effects"]  # fmt: skip
MODEL_FIGURES = ["trace", "rank", "data_overview", "ppc", "ppc_by_group", "residuals"]
COMPARISON_FIGURES = ["comparison_forest", "group_fits", "shrinkage_arrows", "caterpillar",
                      "shrinkage_2d"]  # fmt: skip


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bayeslmm", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)  # fmt: skip


def check_png(path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), path
    with Image.open(path) as im:
        im.verify()
        assert im.size[0] > 100 and im.size[1] > 100


def check_report(out, figures: list[str], tables: list[str]) -> str:
    for name in tables:
        assert (out / f"{name}.csv").stat().st_size > 0, name
    for name in figures:
        check_png(out / "figures" / f"{name}.png")
    page = (out / "report.html").read_text(encoding="utf-8")
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(images) == len(figures)
    for src in images:  # embedded, not linked: the page needs no other file or network
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "http://" not in page and "https://" not in page
    return page


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", str(out), *FAST)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"Report written to {(out / 'report.html').resolve()}"
    page = check_report(out, MODEL_FIGURES + COMPARISON_FIGURES,
                        TABLES + ["comparison", "shrinkage", "random_effects_comparison",
                                  "loo_by_group"])  # fmt: skip
    assert "score ~ edu + (1 + edu | classroom)" in page
    assert "LMM-Inter" in page and "Can the draws be trusted?" in page
    assert "Traceback" not in result.stderr
    # the tutorial's conclusion: three classrooms give no reason for a random slope
    assert "Which random effects does the data support?" in page
    verdict = ("The data do not support the random slope of edu in (1 + edu | classroom). "
               "The simpler model score ~ edu + (1 | classroom) is enough.")  # fmt: skip
    assert verdict in page and verdict in result.stderr
    # the binary example (VerbAgg's first 60 people) in OUT/binary: glmer, the posterior,
    # the comparison, shrinkage and the random-effects choice; glmer's likelihood-ratio
    # test of the random slope as lme4's anova (tests/data/lme4_glmer_ranova_verbagg.R)
    binary = out / "binary"
    assert result.stdout.strip().splitlines()[-2] == \
        f"The binary example's report written to {(binary / 'report.html').resolve()}"  # fmt: skip
    assert "The binary example: r2 ~ mode + btype + (1 + mode | id)" in result.stderr
    page = (binary / "report.html").read_text(encoding="utf-8")
    for section in ("fit", "checks", "comparison", "shrinkage", "random_effects_choice"):
        assert f"<section id='{section}'>" in page, section
    ref = json.loads((DATA / "lme4_glmer_ranova_verbagg.json").read_text())["demo"]
    assert len(pd.read_csv(binary / "residuals.csv")) == ref["rows"]
    glmer_fit = pd.read_csv(binary / "glmer_fit.csv").iloc[0]
    assert glmer_fit["logLik"] == pytest.approx(ref["logLik"], abs=1e-4)
    table = pd.read_csv(binary / "random_effects_comparison.csv").set_index("neighbour")
    slope = table.loc[ref["slope"]["formula"]]
    assert slope["Df"] == ref["slope"]["Df"]
    assert slope["LRT"] == pytest.approx(ref["slope"]["LRT"], abs=1e-3)
    assert len(pd.read_csv(binary / "shrinkage.csv")) == 2 * 60  # intercept and slope
    assert {"GLM-Global", "GLMM", "Bayes"} <= set(pd.read_csv(binary / "comparison.csv")["model"])


def test_fit_report_says_sleepstudy_needs_random_slopes(tmp_path, capsys):
    out = tmp_path / "sleep"
    args = ["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--out", str(out),
            "--no-compare", *FAST]  # fmt: skip
    assert main(args) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "The data support the random slope of Days in (Days | Subject)." in page
    table = (out / "random_effects_comparison.csv").read_text()
    assert "random slope of Days in (Days | Subject)" in table and "needed" in table


def test_fit_report_of_a_crossed_formula_has_the_whole_comparison(tmp_path, capsys):
    rng = np.random.default_rng(4)
    subj, item = np.repeat(np.arange(12), 8), np.tile(np.arange(8), 12)
    x = rng.normal(size=subj.size)
    y = 1 + 0.5 * x + rng.normal(0, 1, 12)[subj] + rng.normal(0, 0.7, 8)[item] + rng.normal(
        size=subj.size)  # fmt: skip
    csv = tmp_path / "crossed.csv"
    pd.DataFrame({"subj": subj, "item": [f"w{i}" for i in item], "x": x, "y": y}).to_csv(
        csv, index=False)  # fmt: skip
    out = tmp_path / "crossed"
    assert main(["fit", str(csv), "y ~ x + (1 | subj) + (1 | item)", "--out", str(out),
                 *FAST]) == 0  # fmt: skip
    assert "No comparison" not in capsys.readouterr().err
    factor_figures = [f"{kind}_{g}" for g in ("subj", "item")
                      for kind in ("shrinkage_arrows", "caterpillar")]  # fmt: skip
    page = check_report(
        out,
        MODEL_FIGURES + ["reml_posterior_forest", "comparison_forest", *factor_figures],
        TABLES + ["factors", "reml_vs_posterior_fixed", "reml_vs_posterior_variance",
                  "comparison", "shrinkage"],
    )  # fmt: skip
    assert "Bayesian, REML and the classical models" in page
    assert "crossed: subj (12 levels); item (8 levels)" in page
    assert "<h3>subj: 12 levels</h3>" in page and "<h3>item: 8 levels</h3>" in page
    shrinkage = pd.read_csv(out / "shrinkage.csv")
    assert shrinkage.groupby("group").size().to_dict() == {"item": 8, "subj": 12}
    fixed = pd.read_csv(out / "reml_vs_posterior_fixed.csv")
    assert list(fixed["term"]) == ["(Intercept)", "x"]


def test_fit_console_script_with_priors(tmp_path):
    csv = tmp_path / "sleep.csv"
    bl.load_dataset("sleepstudy").to_csv(csv, index=False)
    out = tmp_path / "report"
    entry = "import sys; from bayeslmm.present.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", entry,
           "fit", str(csv), "Reaction ~ Days + (Days | Subject)", "--out", str(out),
           "--prior", "sd=HalfNormal(sigma=30)", "--prior", "Days=Normal(mu=0, sigma=20)",
           "--no-compare", "--no-random-comparison", *FAST]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    check_report(out, MODEL_FIGURES, TABLES)
    priors = (out / "priors.csv").read_text()
    assert 'Days,"Normal(mu=0, sigma=20)"' in priors
    assert "sd(Days|Subject),HalfNormal(sigma=30)" in priors
    assert "skipped (--no-compare)" in (out / "report.html").read_text()
    assert "skipped (--no-random-comparison)" in (out / "report.html").read_text()


def test_fit_without_a_comparison_says_why(tmp_path, capsys):
    out = tmp_path / "dye"
    code = main(["fit", "dyestuff", "Yield ~ 1 + (1 | Batch)", "--out", str(out), *FAST])
    assert code == 0
    captured = capsys.readouterr()
    assert "no numeric fixed term to compare" in captured.err
    page = check_report(out, ["trace", "rank", "ppc", "ppc_by_group", "residuals"], TABLES)
    assert "No comparison with the classical models" in page
    assert "no slope or correlation to remove" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "no_such_file.csv", "y ~ x + (1|g)"],
         "data file 'no_such_file.csv' does not exist"),
        (["fit", "sleepstudy", "Reaction ~ Dayz + (1 | Subject)"], "Dayz"),
        (["fit", "sleepstudy", "Reaction ~ Days + (1 | Subject"], "unmatched '('"),
        (["fit", "sleepstudy", "Reaction ~ Days + (1 | Subject)", "--prior", "sd=Normal(0, 1)"],
         "Family(name=value"),
        (["fit", "sleepstudy", "Reaction ~ Days + (1 | Subject)", "--prior",
          "tau=HalfNormal(sigma=1)"], "matches no parameter"),
        (["fit", "sleepstudy", "Reaction ~ Days + (1 | Subject)", "--term", "Subject"],
         "not a fixed effect"),
    ],
)  # fmt: skip
def test_bad_input_exits_non_zero_with_one_message(args, message, tmp_path, capsys):
    code = main([*args, "--out", str(tmp_path / "out"), *FAST])
    assert code == 1
    err = capsys.readouterr().err
    assert message in err
    assert err.count("bayeslmm: error:") == 1 and "Traceback" not in err


def test_bad_csv_and_debug(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["fit", str(bad), "y ~ x + (1|g)"]) == 1
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(bl.DataError):
        main(["fit", "missing.csv", "y ~ x + (1|g)", "--debug"])


def test_process_exit_codes_and_help(tmp_path):
    bad = run_cli("fit", "sleepstudy", "Reaction ~ Days + (1 | Nobody)", "--out", str(tmp_path))
    assert bad.returncode == 1
    assert "Nobody" in bad.stderr and "Traceback" not in bad.stderr
    usage = run_cli("fit")
    assert usage.returncode == 2
    assert usage.stderr.strip().splitlines() == [
        "bayeslmm: error: the following arguments are required: data, formula "
        "(see: bayeslmm fit --help)"
    ]
    for sub in ([], ["fit"], ["demo"], ["datasets"]):
        shown = run_cli(*sub, "--help")
        assert shown.returncode == 0 and "usage: bayeslmm" in shown.stdout


def test_datasets_command(capsys):
    assert main(["datasets"]) == 0
    text = capsys.readouterr().out
    for name in bl.list_datasets():
        assert name in text
    assert 'bayeslmm fit classroom "score ~ edu + (1 + edu | classroom)"' in text


def test_parse_prior():
    key, prior = parse_prior("sd(Days|Subject) = HalfNormal(sigma=2.5)")
    assert key == "sd(Days|Subject)" and prior == bl.Prior("HalfNormal", sigma=2.5)
    assert parse_prior("fixed=Normal(mu=-1, sigma=1e3)")[1] == bl.Prior("Normal", mu=-1,
                                                                         sigma=1000.0)  # fmt: skip
    for bad in ("sd", "=Normal(mu=0)", "sd=Normal", "sd=Normal(mu=x)", "sd=Nope(sigma=1)"):
        with pytest.raises(bl.PriorError):
            parse_prior(bad)


# --- binary and count outcomes: --family ------------------------------------------------
DATA = Path(__file__).resolve().parent / "data"
GLMER_REF = {c["id"]: c["tight"]
             for c in json.loads((DATA / "lme4_glmer.json").read_text())["cases"]}  # fmt: skip
GLMM_CHOICE = "Which random effects does the data support?"


def test_fit_binomial_cbind_prints_glmer_and_bayes_and_writes_tables(tmp_path, capsys):
    """cbpp's cbind() response: glmer's fixed effects and deviance are lme4's
    (tests/data/lme4_glmer.R), the Bayesian fit is printed with its convergence verdict,
    the tables and the report are written with glmer's random-effects comparison (its
    verdict one line on stderr), exit code 0."""
    out = tmp_path / "cbpp"
    code = main(["fit", str(DATA / "cbpp.csv"),
                 "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)",
                 "--family", "binomial", "--out", str(out), *FAST])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "Generalized linear mixed model fit by maximum likelihood (Laplace" in captured.out
    assert "Bayesian generalised linear mixed model fit by NUTS" in captured.out
    assert "Convergence: " in captured.out
    verdicts = [line for line in captured.err.splitlines() if "random term (1 | herd)" in line]
    assert verdicts == ["bayeslmm: The data support the random term (1 | herd)."]
    assert GLMM_CHOICE in captured.out
    assert "Traceback" not in captured.err and (out / "report.html").exists()
    ref = GLMER_REF["cbpp"]
    fit = pd.read_csv(out / "glmer_fit.csv").iloc[0]
    assert fit["deviance"] == pytest.approx(ref["deviance"], rel=1e-6)
    fixed = pd.read_csv(out / "glmer_fixed_effects.csv")
    np.testing.assert_allclose(fixed["Estimate"], list(ref["fixef"].values()), rtol=1e-4)
    np.testing.assert_allclose(fixed["Std. Error"], list(ref["se"].values()), rtol=1e-3)
    bayes = pd.read_csv(out / "fixed_effects.csv")
    assert list(bayes["term"]) == list(fixed["term"])
    # the posterior means sit near the ML estimates (flat-ish priors, 56 rows)
    assert np.all(np.abs(bayes["mean"] - fixed["Estimate"]) < 2 * fixed["Std. Error"])
    for name in ("summary", "variance_components", "convergence", "random_effects",
                 "glmer_variance_components", "glmer_random_effects"):  # fmt: skip
        assert len(pd.read_csv(out / f"{name}.csv")) > 0, name
    assert len(pd.read_csv(out / "random_effects.csv")) == 15  # herds
    text = (out / "summary.txt").read_text()
    assert "['glmerMod']" in text and "Convergence: " in text
    # the comparison's glmer row is the glmer fit above; its odds ratio is exp(estimate)
    comparison = pd.read_csv(out / "comparison.csv").set_index("model")
    row = fixed.set_index("term").iloc[1]
    assert comparison.loc["GLMM", "estimate"] == pytest.approx(row["Estimate"], rel=1e-10)
    assert comparison.loc["GLMM", "exp_estimate"] == pytest.approx(np.exp(row["Estimate"]))
    assert {"GLM-Global", "GLM-Groups", "Bayes"} <= set(comparison.index)
    assert "Comparison for" in text and "odds ratio" in text
    assert len(pd.read_csv(out / "shrinkage.csv")) == 15


def test_fit_a_proportion_with_weights_and_a_probit_link(tmp_path, capsys):
    """cbpp as proportions with --weights (the trials): lme4's probit fit of the cbind()
    response (tests/data/lme4_glmer.R)."""
    cbpp = pd.read_csv(DATA / "cbpp.csv")
    csv = tmp_path / "prop.csv"
    cbpp.assign(p=cbpp["incidence"] / cbpp["size"]).to_csv(csv, index=False)
    out = tmp_path / "prop"
    code = main(["fit", str(csv), "p ~ factor(period) + (1 | herd)", "--family", "binomial",
                 "--link", "probit", "--weights", "size", "--out", str(out), "--draws", "50",
                 "--tune", "50", "--chains", "1", "--sampler", "pymc",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    assert "Family: binomial  ( probit )" in capsys.readouterr().out
    ref = GLMER_REF["cbpp_probit"]
    assert pd.read_csv(out / "glmer_fit.csv").iloc[0]["deviance"] == pytest.approx(
        ref["deviance"], rel=1e-6)  # fmt: skip
    fixed = pd.read_csv(out / "glmer_fixed_effects.csv")
    np.testing.assert_allclose(fixed["Estimate"], list(ref["fixef"].values()), rtol=1e-4)


def test_fit_poisson_with_an_offset_column(tmp_path, capsys):
    """grouseticks with offset(log(HEIGHT / 100)) given as --offset COLUMN: glmer equals
    lme4's fit of the formula's offset() (tests/data/lme4_glmer.R), and the Bayesian
    Poisson fit runs."""
    data = pd.read_csv(DATA / "grouseticks.csv")
    csv = tmp_path / "ticks.csv"
    data.assign(logh=np.log(data["HEIGHT"] / 100)).to_csv(csv, index=False)
    out = tmp_path / "ticks"
    code = main(["fit", str(csv), "TICKS ~ factor(YEAR) + (1 | BROOD) + (1 | LOCATION)",
                 "--family", "poisson", "--offset", "logh", "--out", str(out),
                 *FAST])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "Family: poisson  ( log )" in captured.out
    # nested factors: the likelihood-ratio tests and leave-one-group-out, and a note that
    # the Bayes factors need one grouping factor
    assert GLMM_CHOICE in captured.out and "Bayes factors were not computed" in captured.out
    ref = GLMER_REF["grouseticks_offset"]
    fit = pd.read_csv(out / "glmer_fit.csv").iloc[0]
    assert fit["deviance"] == pytest.approx(ref["deviance"], rel=1e-6)
    fixed = pd.read_csv(out / "glmer_fixed_effects.csv")
    np.testing.assert_allclose(fixed["Estimate"], list(ref["fixef"].values()), rtol=1e-4)
    vc = pd.read_csv(out / "variance_components.csv")
    assert set(vc["grp"]) == {"BROOD", "LOCATION"}
    assert (pd.read_csv(out / "convergence.csv")["divergences"] >= 0).all()


def test_fit_negative_binomial_is_glmer_nb_and_the_posterior(tmp_path, capsys):
    """glmer.nb's fit, then the Bayesian negative binomial (theta sampled, a row of
    summary.csv)."""
    ref = json.loads((DATA / "lme4_glmer_nb.json").read_text())["cases"][0]
    out = tmp_path / "nb"
    code = main(["fit", str(DATA / "grouseticks.csv"),
                 "TICKS ~ factor(YEAR) + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
                 "--family", "negative_binomial", "--out", str(out), *FAST])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "Family: Negative Binomial(" in captured.out
    assert "Bayesian generalised linear mixed model" in captured.out
    assert "Dispersion (negative binomial" in captured.out
    assert "Bayesian fit of the negative_binomial family" not in captured.err
    fit = pd.read_csv(out / "glmer_fit.csv").iloc[0]
    assert fit["theta"] == pytest.approx(ref["tight"]["nb_theta"], rel=1e-3)
    assert fit["deviance"] == pytest.approx(ref["tight"]["deviance"], rel=1e-6)
    summary = pd.read_csv(out / "summary.csv").set_index("parameter")
    assert summary.loc["theta", "component"] == "residual"
    assert 1.5 < summary.loc["theta", "mean"] < 6.0  # glmer.nb: 3.30
    assert "theta" not in set(pd.read_csv(out / "fixed_effects.csv")["term"])


def test_gaussian_fit_of_a_binary_response_warns_on_the_command_line(tmp_path, capsys):
    """The warning comes when the model is built, before anything is fitted."""
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(10), 8)
    x = rng.normal(size=g.size)
    y = rng.binomial(1, 1 / (1 + np.exp(-(x + rng.normal(size=10)[g]))))
    csv = tmp_path / "binary.csv"
    pd.DataFrame({"y": y, "x": x, "g": g}).to_csv(csv, index=False)
    taken = tmp_path / "taken"  # the output directory is a file: stops before any fit
    taken.write_text("")
    code = main(["fit", str(csv), "y ~ x + (1 | g)", "--out", str(taken), *FAST])
    assert code == 1
    err = capsys.readouterr().err
    assert "is an existing file" in err and "Fitting" not in err
    warning = [line for line in err.splitlines() if "is all 0/1" in line]
    assert len(warning) == 1 and "bayeslmm: warning (the model" in warning[0]
    assert "the bernoulli family fits it" in warning[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "binomial", "--link", "log"],
         "the binomial family takes the links 'logit', 'probit', 'cloglog', not 'log'"),
        (["--family", "poisson", "--link", "logit"], "takes the links 'log', 'identity'"),
        (["--weights", "size"], "--weights are for the non-Gaussian families"),
        (["--family", "poisson", "--method", "marginal"], "--method marginal"),
        (["--family", "poisson", "--residual", "ar1(1 | g)"], "--residual is for Gaussian"),
    ],
)  # fmt: skip
def test_bad_family_options_fail_before_the_data_are_read(args, message, tmp_path, capsys):
    code = main(["fit", str(tmp_path / "missing.csv"), "y ~ x + (1 | g)", *args, *FAST])
    assert code == 1
    err = capsys.readouterr().err
    assert message in err and "does not exist" not in err
    assert err.count("bayeslmm: error:") == 1


def test_unknown_family_or_link_is_a_usage_error_listing_the_choices(capsys):
    for option, value in (("--family", "binomal"), ("--link", "logistic")):
        with pytest.raises(SystemExit) as stop:
            main(["fit", "cbpp.csv", "y ~ 1", option, value])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert f"invalid choice: '{value}'" in err
        expected = (["gaussian", "bernoulli", "binomial", "poisson", "negative_binomial"]
                    if option == "--family" else ["identity", "logit", "probit", "cloglog"])
        # argparse quotes the choices up to Python 3.11 ('a', 'b') and not from 3.12 (a, b)
        listed = err.split("choose from", 1)[1].split(")", 1)[0]
        assert [c.strip(" '") for c in listed.split(",")][: len(expected)] == expected
