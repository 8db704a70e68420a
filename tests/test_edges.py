"""Trust at the edges: every bad input named before any work, no silent wrong answer.

One test per class of problem; each throws several inputs of its class at the public API.
"""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import bayeslmm as bl  # noqa: E402
from bayeslmm.bayes import model as model_module  # noqa: E402
from bayeslmm.bayes import stack
from bayeslmm.bayes.diagnostics import check_convergence, divergence_advice  # noqa: E402
from bayeslmm.present import cli  # noqa: E402

QUICK = dict(draws=100, tune=150, chains=2, random_seed=1, progressbar=False)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(6), 10)
    x = rng.normal(size=60)
    return pd.DataFrame({"y": 1 + 0.5 * x + rng.normal(size=6)[g] + rng.normal(size=60),
                         "x": x, "f": np.tile(list("abc"), 20), "g": g})  # fmt: skip


@pytest.fixture(scope="module")
def rats_model(ratpup) -> bl.LMM:
    model = bl.LMM("weight ~ treatment + sex + litsize + (1 + sex | litter)", ratpup)
    quiet(model.fit, **QUICK)
    return model


# ---------------------------------------------------------------------------------------
# data entering a model: the culprit is named


def _stray(values):
    out = values.astype(object)
    out.iloc[7] = "oops"
    return out


BAD_DATA = [
    ("y ~ x + (1|g)", {"x": _stray}, bl.ColumnTypeError, r"'x' mixes types.*'oops' \(row 7\)"),
    ("y ~ x + (1|g)", {"x": lambda v: _stray(v.round(2).astype(str))}, bl.ColumnTypeError,
     r"'x' is text, but 59 of its 60 values are numbers.*'oops'"),
    ("y ~ x + (1|g)", {"g": lambda v: pd.Series([1, "1", True] * 20, dtype=object)},
     bl.ColumnTypeError, r"'g' mixes types"),
    ("y ~ x + (1|g)", {"x": lambda v: np.nan}, bl.DataError, r"\['x'\] have no values"),
    ("y ~ x + (1|g)", {"g": lambda v: np.nan}, bl.DataError, r"\['g'\] have no values"),
    ("y ~ x + (1|g)", {"y": lambda v: 2.0}, bl.DataError, r"response 'y' is constant"),
    ("y ~ np.log(x) + (1|g)", {}, bl.DataError, r"'np\.log\(x\)' is not finite"),
    ("np.log(x) ~ 1 + (1|g)", {}, bl.DataError, r"response 'np\.log\(x\)' is not finite"),
    ("y ~ x + (1|g)", {"x": lambda v: v + 1j}, bl.ColumnTypeError, r"'x' has type complex"),
    ("y ~ x + (1|g)", {"x": lambda v: pd.date_range("2020", periods=60)}, bl.ColumnTypeError,
     r"'x' has type datetime"),
    ("y ~ x + (1|g)", {"g": lambda v: [[1]] * 60}, bl.ColumnTypeError, r"'g' holds list"),
    ("y ~ `x z` + (1|g)", {}, bl.UnknownNameError, r"'x z' used in the fixed part"),
    ("y ~ my.x + (1|g)", {}, bl.UnknownNameError, r"'my\.x' used in the fixed part"),
    ("y ~ x + (1|`g`", {}, bl.FormulaError, r"unmatched '\('"),
    ("y ~ `x + (1|g)", {}, bl.FormulaError, r"unmatched '`'"),
    ("y ~ x + (1 | g h)", {}, bl.FormulaError, r"'g h' is not a column name.*backticks"),
    ("y ~ sigma + (1|g)", {"sigma": lambda v: -v}, bl.DataError, r"\['sigma'\] share"),
    ("y ~ x + (1|obs)", {"obs": lambda v: np.repeat(np.arange(6), 10)}, bl.DataError,
     r"\['obs'\] would share their name with a dimension"),
]  # fmt: skip


@pytest.mark.parametrize("formula, change, error, pattern", BAD_DATA)
def test_bad_data_names_the_culprit(frame, formula, change, error, pattern):
    data = frame.assign(
        **{k: fn(frame[k] if k in frame else frame["x"]) for k, fn in change.items()}
    )
    before = data.copy()
    with pytest.raises(error, match=pattern):
        bl.LMM(formula, data)
    pd.testing.assert_frame_equal(data, before)  # never mutated, even on the way out
    for bad in (None, 3, ["y ~ x"]):
        with pytest.raises(bl.FormulaError, match="formula must be a string"):
            bl.LMM(bad, frame)


def test_awkward_but_valid_data_give_the_plain_answer(frame):
    """Nullable types, object numbers, categories, integer and odd column names: the
    same design as the plain data, not a silently different one."""
    plain = bl.build_design("y ~ x + f + (1 + x | g)", frame)
    variants = {
        "object numbers": (frame.assign(x=frame["x"].astype(object)), "y ~ x + f + (1 + x | g)"),
        "nullable": (frame.assign(x=frame["x"].astype("Float64"), f=frame["f"].astype("string"),
                                  g=frame["g"].astype("Int64")), "y ~ x + f + (1 + x | g)"),
        "categorical group": (frame.assign(g=frame["g"].astype("category")),
                              "y ~ x + f + (1 + x | g)"),
        "integer labels": (frame.set_axis([0, 1, 2, 3], axis=1),
                           "`0` ~ `1` + `2` + (1 + `1` | `3`)"),
        "odd names": (frame.set_axis(["the y", "x.1-é", "f f", "grp/1:2"], axis=1),
                      "`the y` ~ `x.1-é` + `f f` + (1 + `x.1-é` | `grp/1:2`)"),
    }  # fmt: skip
    for label, (data, formula) in variants.items():
        design = bl.build_design(formula, data)
        np.testing.assert_array_equal(design.X, plain.X, err_msg=label)
        np.testing.assert_array_equal(design.y, plain.y, err_msg=label)
        np.testing.assert_array_equal(design.blocks[0].codes, plain.blocks[0].codes, label)
        assert len(design.fixed_names) == len(plain.fixed_names), label
    named = frame.rename(columns={"x": "Intercept"})  # not formulaic's intercept column
    design = bl.build_design("y ~ Intercept + (1 | g)", named)
    assert design.fixed_names == ["(Intercept)", "Intercept"]
    np.testing.assert_array_equal(design.X[:, 1], frame["x"])
    odd = bl.build_design(*variants["odd names"][::-1])
    assert odd.fixed_names == ["(Intercept)", "x.1-é", "f fb", "f fc"]
    assert odd.blocks[0].columns == ["(Intercept)", "x.1-é"] and odd.blocks[0].group == "grp/1:2"
    assert odd.response == "the y"


def test_any_column_name_in_every_role_end_to_end(classroom):
    """REML, the comparison and a Bayesian fit with predictions, on odd names, equal the
    plain-named answers."""
    names = {"score": "test score", "edu": "parent's edu.", "classroom": "class-room ü"}
    odd = classroom.rename(columns=names)
    formula = "`test score` ~ `parent's edu.` + (1 + `parent's edu.` | `class-room ü`)"
    plain = quiet(bl.lmer, "score ~ edu + (1 + edu | classroom)", classroom)
    fit = quiet(bl.lmer, formula, odd)
    np.testing.assert_allclose(fit.fixef.to_numpy(), plain.fixef.to_numpy())
    assert list(fit.ranef()) == ["class-room ü"]
    comparison = quiet(bl.compare, formula, odd, bayes=False)
    reference = quiet(bl.compare, "score ~ edu + (1 + edu | classroom)", classroom, bayes=False)
    assert comparison.setup.term == "parent's edu."
    np.testing.assert_allclose(comparison.table["estimate"], reference.table["estimate"])
    assert comparison.shrinkage()["term"].unique().tolist() == ["(Intercept)", "parent's edu."]
    model = bl.LMM(formula, odd)
    quiet(model.fit, **QUICK)
    assert "sd(parent's edu.|class-room ü)" in model.summary(print_it=False).index
    draws = model.predict(odd.head(3))
    assert draws.shape == (2, 100, 3) and np.isfinite(draws.values).all()


# ---------------------------------------------------------------------------------------
# predictions: nothing the fit did not see is silently mapped to something it did


def test_predict_refuses_what_the_fit_never_saw(rats_model, ratpup):
    new = ratpup.head(4).copy()
    cases = [
        (new.assign(treatment=["Hgh", "Low", "Low", "High"]), bl.DataError,
         r"column 'treatment' has level\(s\) \['Hgh'\]"),
        (new.assign(sex="M"), bl.DataError, r"column 'sex' has level\(s\) \['M'\]"),
        (new.assign(litsize=[np.inf, 1, 2, 3]), bl.DataError, r"'litsize' of newdata has 1 inf"),
        (new.assign(litsize=[np.nan, 1, 2, 3]), bl.DataError, r"'litsize': 1 row"),
        (new.assign(litsize="big"), bl.ColumnTypeError, r"'litsize' must be numeric"),
        (new.assign(litter=new["litter"].astype(str)), bl.ColumnTypeError,
         r"'litter' .* holds text values but the fitted data held number"),
        (new.drop(columns="sex"), bl.UnknownNameError, r"lacks column\(s\) \['sex'\]"),
        (new.iloc[:0], bl.DataError, "no rows"),
    ]  # fmt: skip
    for data, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            rats_model.predict(data)
    # group levels are matched by value: 1 is 1.0 is Int64's 1, and stays a fitted level
    same = rats_model.predict(new, random_seed=3).values
    for litter in (new["litter"].astype(float), new["litter"].astype("Int64")):
        np.testing.assert_array_equal(rats_model.predict(new.assign(litter=litter),
                                                         random_seed=3).values, same)  # fmt: skip
    with pytest.raises(bl.DataError, match=r"level\(s\) \['999'\] of 'litter'"):
        rats_model.predict(new.assign(litter=999), allow_new_levels=False)
    for bad in ({"kind": "median"}, {"include_random": "yes"}, {"random_seed": -1}):
        with pytest.raises(bl.ArgumentError):
            rats_model.predict(new, **bad)


# ---------------------------------------------------------------------------------------
# arguments and priors: checked before anything is compiled or sampled


@pytest.mark.parametrize(
    "argument, value",
    [("draws", 0), ("draws", 2.5), ("draws", "10"), ("draws", True), ("tune", -1),
     ("chains", 0), ("cores", 0), ("random_seed", -1), ("random_seed", 2**40),
     ("target_accept", 1.5), ("target_accept", 0.0), ("target_accept", float("nan")),
     ("target_accept", "high"), ("sampler", "stan"), ("method", "fast"),
     ("progressbar", "no"), ("store_log_likelihood", "yes")],
)  # fmt: skip
def test_fit_arguments_are_checked_before_sampling(frame, monkeypatch, argument, value):
    def never(*args, **kwargs):
        raise AssertionError("sampling started")

    monkeypatch.setattr(model_module, "sample_compiled", never)
    monkeypatch.setattr(model_module, "sample_nuts", never)
    monkeypatch.setattr("bayeslmm.comparison.models.lmer", never)
    model = bl.LMM("y ~ x + (1|g)", frame)
    with pytest.raises(bl.ArgumentError, match=argument):
        model.fit(**{**QUICK, argument: value})
    with pytest.raises(bl.ArgumentError, match=argument):  # before any of the seven fits
        bl.compare("y ~ x + (1|g)", frame, **{**QUICK, argument: value})


@pytest.mark.parametrize(
    "family, params, pattern",
    [("Normal", {"mean": 0, "sd": 1}, r"unknown parameter\(s\) \['mean', 'sd'\].*'sigma'"),
     ("HalfNormal", {"sigma": 0}, "sigma must be > 0"),
     ("HalfCauchy", {"beta": -1}, "beta must be > 0"),
     ("LKJ", {"eta": 0}, "eta must be > 0"),
     ("StudentT", {"mu": 0}, r"needs the parameter\(s\) \['nu'\]"),
     ("Gamma", {"alpha": 2}, r"\['alpha', 'beta'\] or \['mu', 'sigma'\]"),
     ("Exponential", {"lam": 1, "scale": 1}, "not both"),
     ("Uniform", {"lower": 2, "upper": 1}, "must be below upper"),
     ("Normal", {"mu": [0, 1]}, "one finite number"),
     ("Nope", {}, "unknown prior family 'Nope'")],
)  # fmt: skip
def test_priors_are_checked_when_made(family, params, pattern):
    with pytest.raises(bl.PriorError, match=pattern):
        bl.Prior(family, **params)


def test_sd_priors_need_positive_support(sleepstudy):
    formula = "Reaction ~ Days + (Days | Subject)"
    for prior in (bl.Prior("Normal", sigma=10), bl.Prior("Uniform", lower=-1, upper=10),
                  bl.Prior("TruncatedNormal", sigma=10)):  # fmt: skip
        with pytest.raises(bl.PriorError, match="positive support"):
            bl.LMM(formula, sleepstudy, priors={"sd": prior})
    priors = {"sd": bl.Prior("Uniform", lower=0, upper=100),
              "sigma": bl.Prior("Exponential", scale=20)}  # fmt: skip
    model = bl.LMM(formula, sleepstudy, priors=priors)
    assert model.compiled_density is None  # the kernel lacks these: PyMC's graph serves


# ---------------------------------------------------------------------------------------
# the first hour: trace plots, between-group terms, the report


@pytest.mark.parametrize(
    "dataset, formula, sampler",
    [("sleepstudy", "Reaction ~ Days + (Days | Subject)", "auto"),  # compiled density
     ("sleepstudy", "Reaction ~ Days + (Days || Subject)", "auto"),
     ("rat_pup", "weight ~ sex + (1 + sex | treatment/litter)", "numpyro"),  # nested graph
     ("rat_pup", "weight ~ litsize + (1 + litsize | litter) + (1 | sex)", "numpyro")],  # crossed
)  # fmt: skip
def test_arviz_trace_plot_needs_no_var_names(dataset, formula, sampler):
    model = bl.LMM(formula, bl.load_dataset(dataset))
    idata = quiet(model.fit, **{**QUICK, "draws": 60, "tune": 100, "sampler": sampler})
    # every variable: none may have a constant element (ArviZ 1.x stops at 40 panels unless told)
    with az.rc_context({"plot.max_subplots": 1000} if stack.ARVIZ_1 else {}):
        plotted = az.plot_trace(idata)
    if not stack.ARVIZ_1:  # one row of panels per variable (ArviZ 0.x's compact layout)
        assert plotted.shape[0] == len(idata.posterior.data_vars)
    assert stack.figure(plotted).axes
    plt.close("all")
    assert not [v for v in idata.posterior.data_vars if v.endswith(("_corr", "_stds"))]


def test_pymc_models_store_no_constant_variables(sleepstudy):
    model = bl.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    for graph in (model.pymc_model, model.marginal_model):
        assert not [n for n in graph.named_vars if n.endswith(("_corr", "_stds"))]


def test_between_group_term_and_one_level_report(classroom, tmp_path):
    data = classroom.assign(size=classroom["classroom"].map({"c0": 20, "c1": 25, "c2": 31}))
    data = data.rename(columns={"classroom": "class room"})
    model = bl.LMM("score ~ edu + size + (1 + size | `class room`)", data)
    quiet(model.fit, **QUICK)
    comparison = quiet(bl.compare, model.formula, data, term="size", model=model, **QUICK)
    notes = comparison.table.set_index("model")["note"]
    for name in ("ANCOVA-Inter", "Hierarchical", "ANCOVA-Full"):
        assert "'size' is constant within each class room" in notes[name], name
    assert "random size slope is not identified" in notes["LMM-Full"]
    files = quiet(bl.report, model, comparison, tmp_path / "rep", hdi_prob=0.9)
    assert not files.failed
    page = files.html.read_text(encoding="utf-8")
    levels = re.findall(r"(\d+(?:\.\d+)?)% (?:HDI|confidence|interval|throughout)", page)
    assert levels and set(levels) == {"90"} and "hdi_3%" not in page
    assert "None" not in page and "hdi_5%" in (tmp_path / "rep" / "fixed_effects.csv").read_text()
    assert "is constant within each class room" in page
    title = bl.plots.comparison_forest(comparison.at_level(0.9)).axes[0].get_title()
    shown = comparison.table.dropna(subset=["estimate"]).query("model != 'Aggregation'")
    words = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert title == f"The same effect, {words[len(shown)]} ways"
    plt.close("all")


def test_shrinkage_fractions_outside_0_1_are_explained(classroom, tmp_path):
    from bayeslmm.present.report import _shrinkage_note

    comparison = quiet(bl.compare, "score ~ edu + (1 + edu | classroom)", classroom,
                       bayes=False)  # fmt: skip
    table = comparison.shrinkage()
    outside = ((table["shrinkage"] < 0) | (table["shrinkage"] > 1)).sum()
    assert outside > 0  # correlated slopes: a coordinate moves past the mean
    assert f"{outside} fraction(s) fall outside [0, 1]" in _shrinkage_note(table)


def test_legends_cover_no_data(sleepstudy):
    fig = bl.plots.data_overview(sleepstudy.head(40), "Reaction", "Days", "Subject")
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the plotting area, not on it
    plt.close(fig)


def test_warnings_point_at_the_callers_line(sleepstudy, classroom):
    data = sleepstudy.astype({"Days": float})
    data.loc[3, "Days"] = np.nan
    with pytest.warns(bl.BayesLMMWarning, match="1 of 180 rows dropped") as caught:
        bl.LMM("Reaction ~ Days + (1 | Subject)", data)
    assert caught[0].filename == __file__
    with pytest.warns(bl.SingularFitWarning, match=r"of REML 'score ~ edu \+ \(1 \+ edu") as caught:
        bl.lmer("score ~ edu + (1 + edu | classroom)", classroom)
    assert caught[0].filename == __file__
    with pytest.warns(bl.ConvergenceWarning, match=r"diagnostics of 'score ~ edu") as caught:
        bl.LMM("score ~ edu + (1 | classroom)", classroom).fit(draws=20, tune=20, chains=2,
                                                               progressbar=False)  # fmt: skip
    assert caught[0].filename == __file__


def test_divergence_advice_follows_target_accept(sleepstudy):
    assert "e.g. 0.95" in divergence_advice(0.8)
    assert "from 0.95 to 0.99" in divergence_advice(0.95)
    advice = divergence_advice(0.99)
    assert "already 0.99" in advice and "0.95" not in advice
    idata = stack.from_dict({"posterior": {"a": np.random.default_rng(0).normal(size=(2, 500))},
                             "sample_stats": {"diverging": np.eye(2, 500, dtype=bool)}})
    conv = check_convergence(idata, ["a"], target_accept=0.99)
    assert any("already 0.99" in p for p in conv.problems)


def test_pymc_logs_and_blas_notice_stay_quiet():
    code = (
        "import warnings; warnings.simplefilter('ignore', DeprecationWarning)\n"
        "import bayeslmm as bl\n"
        "m = bl.LMM('Reaction ~ Days + (1 | Subject)', bl.load_dataset('sleepstudy'))\n"
        "m.fit(draws=30, tune=30, chains=1, sampler='pymc', progressbar=False, random_seed=1)\n"
        "m.posterior_predictive(random_seed=1)\n"
    )
    result = subprocess.run([sys.executable, "-W", "ignore::UserWarning", "-c", code],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for noise in ("Initializing NUTS", "Sampling", "NUTS:", "BLAS", "NumPy C-API"):
        assert noise not in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------
# the command line: one line, a non-zero status, nothing fitted


@pytest.mark.parametrize(
    "args, status, culprit",
    [(["--draws", "0"], 2, "--draws: must be >= 1"), (["--draws", "2.5"], 2, "'2.5'"),
     (["--tune", "-1"], 2, "--tune"), (["--chains", "0"], 2, "--chains"),
     (["--target-accept", "1.5"], 2, "--target-accept"), (["--hdi", "95"], 2, "--hdi"),
     (["--seed", "-1"], 2, "--seed"), (["--sampler", "stan"], 2, "'stan'"),
     (["--prior", "sd=Normal(mean=0, sd=1)"], 1, "unknown parameter"),
     (["--prior", "sd=HalfNormal(sigma=0)"], 1, "sigma must be > 0")],
)  # fmt: skip
def test_cli_refuses_bad_options_before_fitting(args, status, culprit, tmp_path, capsys,
                                                monkeypatch):  # fmt: skip
    monkeypatch.setattr(bl.LMM, "fit", lambda *a, **k: pytest.fail("fitted"))
    try:
        code = cli.main(["fit", "sleepstudy", "Reaction ~ Days + (1 | Subject)",
                         "--out", str(tmp_path / "out"), *args])  # fmt: skip
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == status and culprit in err
    assert err.count("bayeslmm: error:") == 1 and len(err.strip().splitlines()) == 1


def test_cli_reads_semicolons_tabs_and_latin1(frame, tmp_path):
    for sep, encoding in ((";", "utf-8"), ("\t", "utf-8-sig"), (",", "latin-1")):
        path = tmp_path / "data.csv"
        frame.rename(columns={"x": "größe"}).to_csv(path, sep=sep, encoding=encoding, index=False)
        read = cli._read_data(str(path))
        assert list(read.columns) == ["y", "größe", "f", "g"], (sep, encoding)
        np.testing.assert_allclose(read["größe"], frame["x"])
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(bl.DataError, match="cannot read"):
        cli._read_data(str(path))


def test_cli_output_directory_and_unexpected_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bl.LMM, "fit", lambda *a, **k: pytest.fail("fitted"))
    taken = tmp_path / "taken"
    taken.write_text("a file")
    code = cli.main(["fit", "sleepstudy", "Reaction ~ Days + (1 | Subject)", "--out", str(taken)])
    err = capsys.readouterr().err
    assert code == 1 and "is an existing file" in err and err.count("bayeslmm: error:") == 1

    def boom(args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "_run", boom)
    assert cli.main(["datasets"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bayeslmm: error: RuntimeError: disk on fire") and "Traceback" not in err


def test_reference_files_live_in_the_repository():
    here = Path(__file__).resolve().parent
    for name in ("lme4_reference.json", "brms_sleepstudy.csv", "brms_sleepstudy_ranef.csv",
                 "seed_results_table.csv", "README.md"):  # fmt: skip
        assert (here / "data" / "reference" / name).is_file(), name
    assert "shared" not in (here / "conftest.py").read_text()
