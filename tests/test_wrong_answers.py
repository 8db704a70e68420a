"""Silent wrong answers and noise (issue #28): perfect fits, badly scaled columns, argument
checks, level types in tables, printed forms. References: lme4 (tests/data/
lme4_near_exact.R + .json) where a number is compared."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl

DATA = Path(__file__).resolve().parent / "data"
NEAR = json.loads((DATA / "lme4_near_exact.json").read_text())


@pytest.fixture(scope="module")
def near() -> pd.DataFrame:
    return pd.read_csv(DATA / "near_exact.csv")


@pytest.mark.parametrize("reml", [True, False])
def test_near_exact_fit_reaches_lme4(near, reml):
    """Noise of SD 1e-3 beside group shifts of SD 2 (theta ~ 3000): the optimum lme4
    finds, not theta = 0."""
    ref = NEAR[f"y_near_{'REML' if reml else 'ML'}"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", bl.SingularFitWarning)
        fit = bl.lmer("y_near ~ x + (1 | g)", near, reml=reml)
    assert fit.loglik == pytest.approx(ref["logLik"], abs=1e-4)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    assert np.sqrt(fit.covariances()[0][0, 0]) == pytest.approx(ref["sd_g"], rel=1e-3)
    for name, value in ref["fixef"].items():
        assert fit.fixef[name] == pytest.approx(value, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("response", ["y_exact", "y_const"])
@pytest.mark.parametrize("reml", [True, False])
def test_exact_fit_is_refused(near, response, reml):
    """lme4 stops near sigma = 0 with convergence warnings (tests/data/lme4_near_exact.json);
    bayeslmm used to report theta = 0 and a large sigma (a confident wrong optimum)."""
    assert NEAR[f"{response}_{'REML' if reml else 'ML'}"]["warnings"]
    with pytest.raises(bl.DataError, match="fit the response exactly") as err:
        bl.lmer(f"{response} ~ x + (1 | g)", near, reml=reml)
    assert f"{response} ~ x + (1 | g)" in str(err.value) and "g" in str(err.value)


def test_exact_fit_within_every_group_is_refused():
    """Every group on its own exact line (random intercepts and slopes), several shapes."""
    rng = np.random.default_rng(3)
    for n_groups, size in [(6, 4), (25, 3), (8, 10)]:
        g = np.repeat(np.arange(n_groups), size)
        x = rng.uniform(0, 5, g.size)
        a, b = rng.normal(0, 2, n_groups), rng.normal(1, 0.5, n_groups)
        data = pd.DataFrame({"g": g.astype(str), "x": x, "y": a[g] + b[g] * x})
        with pytest.raises(bl.DataError, match="exactly"):
            bl.lmer("y ~ x + (x | g)", data)
        with pytest.raises(bl.DataError, match="exactly"):  # an AR(1) residual as well
            bl.lmer("y ~ x + (x | g)", data.assign(t=np.tile(np.arange(size), n_groups)),
                    residual=bl.AR1("t", "g"))  # fmt: skip


def test_badly_scaled_column_is_named():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(10), 6)
    data = pd.DataFrame({"g": g.astype(str), "x": np.linspace(0, 1e12, 60),
                         "y": rng.normal(size=60) + rng.normal(size=10)[g]})  # fmt: skip
    for formula in ["y ~ x + (x | g)", "y ~ x + (1 | g)"]:
        with pytest.raises(bl.DataError, match="'x'.*[Rr]escale"):
            bl.lmer(formula, data)
    # rescaled, the same model fits, and its slope is the original's times the scale
    fit = bl.lmer("y ~ x + (1 | g)", data.assign(x=data.x / 1e12))
    assert np.isfinite(fit.loglik)


@pytest.fixture(scope="module")
def small_fit():
    data = bl.load_dataset("sleepstudy")
    model = bl.LMM("Reaction ~ Days + (1 | Subject)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(draws=100, tune=100, chains=1, progressbar=False, random_seed=1)
    return model, bl.lmer("Reaction ~ Days + (1 | Subject)", data), data


BAD_ARGUMENTS = {  # (call, the argument the error must name)
    "lmer reml": (lambda m, f, d: bl.lmer("Reaction ~ Days + (1|Subject)", d, reml="yes"),
                  "reml"),
    "anova refit": (lambda m, f, d: bl.anova(f, f, refit="no"), "refit"),
    "anova names": (lambda m, f, d: bl.anova(f, f, names=3), "names"),
    "anova check_nested": (lambda m, f, d: bl.anova(f, f, check_nested="x"), "check_nested"),
    "ranova reduce_terms": (lambda m, f, d: bl.ranova(f, reduce_terms="x"), "reduce_terms"),
    "compare level": (lambda m, f, d: bl.compare("Reaction ~ Days + (1|Subject)", d, level=2),
                      "level"),
    "compare_random_effects alpha": (lambda m, f, d: bl.compare_random_effects(m, alpha=2),
                                     "alpha"),
    "compare_random_effects bayes": (lambda m, f, d: bl.compare_random_effects(m, bayes="x"),
                                     "bayes"),
    "bayes_factor random_seed": (lambda m, f, d: bl.bayes_factor(m, m, random_seed="x"),
                                 "random_seed"),
    "loo_compare by": (lambda m, f, d: bl.loo_compare({"a": m, "b": m}, by="bogus"), "by"),
    "report hdi_prob": (lambda m, f, d: bl.report(m, hdi_prob=2), "hdi_prob"),
    "report path": (lambda m, f, d: bl.report(m, path=3), "path"),
    "default_priors design": (lambda m, f, d: bl.default_priors(3), "design"),
    "fit draws": (lambda m, f, d: m.fit(draws=0), "draws"),
    "fit target_accept": (lambda m, f, d: m.fit(target_accept=1.5), "target_accept"),
    "fit sampler": (lambda m, f, d: m.fit(sampler="x"), "sampler"),
    "summary hdi_prob": (lambda m, f, d: m.summary(hdi_prob=2, print_it=False), "hdi_prob"),
    "summary print_it": (lambda m, f, d: m.summary(print_it="x"), "print_it"),
    "log_marginal_likelihood random_seed": (
        lambda m, f, d: m.log_marginal_likelihood(random_seed="x"), "random_seed"),
    "posterior_predictive random_seed": (
        lambda m, f, d: m.posterior_predictive(random_seed="x"), "random_seed"),
    "predict kind": (lambda m, f, d: m.predict(kind="x"), "kind"),
    "confint level": (lambda m, f, d: f.confint(level=2), "level"),
    "confint method": (lambda m, f, d: f.confint(method="x"), "method"),
    "coefficients information": (lambda m, f, d: f.coefficients(information="x"),
                                 "information"),
    "ranef_table level": (lambda m, f, d: f.ranef_table(level="x"), "level"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_raise_bayeslmm_errors(small_fit, case):
    call, argument = BAD_ARGUMENTS[case]
    with pytest.raises(bl.BayesLMMError, match=argument):
        call(*small_fit)


def test_summary_shows_once_at_a_prompt(small_fit, capsys, monkeypatch):
    model = small_fit[0]
    table = model.summary()  # a script: printed
    printed = capsys.readouterr().out
    assert "Fixed effects:" in printed and repr(table) == printed.rstrip("\n")
    monkeypatch.setattr("sys.ps1", ">>> ", raising=False)  # at a prompt: shown by its repr
    again = model.summary()
    assert capsys.readouterr().out == ""
    assert repr(again) == repr(table) and str(again) == repr(table)
    assert isinstance(again, pd.DataFrame)  # still the table
    assert list(again.columns) == list(model.summary(print_it=False).table.columns)
    assert type(again.loc[["sigma"]]) is pd.DataFrame and "Fixed" not in repr(again.loc[["sigma"]])


def test_random_effects_comparison_repr(small_fit):
    data = small_fit[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.SingularFitWarning)
        comparison = bl.compare_random_effects("Reaction ~ Days + (Days | Subject)", data,
                                               bayes=False)  # fmt: skip
    text = repr(comparison)
    assert text.startswith("Which random effects does the data support?")
    assert "RandomEffectsComparison(" not in text and "random slope of Days" in text


def test_levels_keep_the_factor_type(small_fit):
    """An integer factor's levels are integers in every table, so a query by value works."""
    data = small_fit[2]
    assert data["Subject"].dtype.kind == "i"
    fit = bl.lmer("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' deprecation of join(lsuffix=, rsuffix=)
        ranef = fit.ranef()["Subject"]
    assert ranef.index.dtype.kind == "i" and list(ranef.columns) == ["(Intercept)", "Days"]
    assert len(fit.ranef_table().query("level in [308, 309]")) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comparison = bl.compare("Reaction ~ Days + (Days | Subject)", data, bayes=False)
    assert len(comparison.shrinkage().query("level in [330, 337]")) == 4
    assert small_fit[0].ranef()["Subject"].loc[308].shape[0] == 1
    text = data.assign(Subject="s" + data.Subject.astype(str))  # text stays text
    assert bl.lmer("Reaction ~ Days + (1 | Subject)", text).ranef_table()["level"].iloc[0] == "s308"


def test_cli_refuses_a_directory_of_parquet_and_csv(small_fit, tmp_path, capsys):
    from bayeslmm.present.cli import main

    data = small_fit[2]
    folder = tmp_path / "mixed"
    folder.mkdir()
    data.iloc[:90].to_parquet(folder / "a.parquet")
    data.iloc[90:].to_csv(folder / "b.csv", index=False)
    (folder / "_SUCCESS").write_text("")  # a marker Parquet writers leave: not data
    code = main(["fit", str(folder), "Reaction ~ Days + (1 | Subject)", "--out",
                 str(tmp_path / "out"), "--draws", "50", "--tune", "50", "--chains", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "b.csv" in err and "not Parquet" in err and "Traceback" not in err


def test_cli_names_the_parquet_file_lacking_a_column(small_fit, tmp_path, capsys):
    from bayeslmm.present.cli import main

    data = small_fit[2].assign(f=1.0)
    folder = tmp_path / "parts"
    folder.mkdir()
    data.iloc[:90].to_parquet(folder / "a.parquet")
    data.iloc[90:].drop(columns="f").to_parquet(folder / "b.parquet")
    code = main(["fit", str(folder / "*.parquet"), "Reaction ~ Days + f + (1 | Subject)",
                 "--out", str(tmp_path / "out"), "--draws", "50", "--tune", "50",
                 "--chains", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "b.parquet" in err and "'f'" in err and "did not expect" not in err


def _outcome(formula: str, data) -> tuple:
    try:
        design = bl.build_design(formula, data)
    except bl.BayesLMMError as err:
        return type(err).__name__, str(err)
    return "fitted", list(design.fixed_names)


@pytest.mark.parametrize("convert_string", [False, True])
def test_column_types_follow_one_rule_on_pandas_nullable_and_dask(convert_string):
    """Numbers as text (a pandas ``string`` column, an object column of str, or one Dask
    partition of them) and a stray word in one partition: the same outcome, naming column
    and value, on pandas and Dask, never a silent many-level factor."""
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"y": rng.normal(size=80), "x": rng.integers(0, 10, 80),
                         "g": np.repeat(list("abcdefgh"), 10)})  # fmt: skip
    for text in (base.x.astype(str).astype("string"), base.x.astype(str)):
        kind, message = _outcome("y ~ x + (1 | g)", base.assign(x=text))
        assert kind == "ColumnTypeError" and "'x'" in message and "'4' (row 0)" in message
    numbers = _outcome("y ~ x + (1 | g)", base.assign(x=base.x.astype(object)))
    assert numbers == ("fitted", ["(Intercept)", "x"])  # object numbers: numeric
    pieces = [base.iloc[i * 20:(i + 1) * 20].copy() for i in range(4)]
    as_text = [*pieces[:3], pieces[3].assign(x=pieces[3].x.astype(str))]
    stray = [p.copy() for p in pieces]
    stray[2]["x"] = stray[2]["x"].astype(object)
    stray[2].iloc[3, 1] = "oops"
    with dask.config.set({"dataframe.convert-string": convert_string, "scheduler": "sync"}):
        for parts, value in ((as_text, "'9' (row 60)"), (stray, "'oops' (row 43)")):
            expected = _outcome("y ~ x + (1 | g)", pd.concat(parts))
            ddf = dd.concat([dd.from_pandas(p, npartitions=1) for p in parts])
            got = _outcome("y ~ x + (1 | g)", ddf)
            # Dask's convert-string turns an object partition into text: the same refusal
            assert got == expected or convert_string
            assert got[0] == "ColumnTypeError" and "'x'" in got[1] and value in got[1]


def test_bayes_factor_bridges_crossed_designs_as_documented():
    """docs/choosing-random-effects.md: crossed designs are bridged (the sampled factor's
    standardised effects enter the bridge) and the error is reported."""
    data = pd.read_csv(DATA / "crossed_small.csv")
    crossed = bl.LMM("rt ~ S + (1 | subj) + (1 | item)", data)
    simpler = bl.LMM("rt ~ S + (1 | subj)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in (crossed, simpler):
            model.fit(draws=300, tune=300, chains=2, progressbar=False, random_seed=3)
        bf = bl.bayes_factor(crossed, simpler, random_seed=1)
    assert np.isfinite(bf.log_bf) and np.isfinite(bf.error) and bf.error > 0
    again = bl.bayes_factor(crossed, simpler, random_seed=2)
    assert abs(again.log_bf - bf.log_bf) < 5 * max(bf.error, again.error, 0.05)
    text = (Path(__file__).resolve().parents[1] / "docs" / "choosing-random-effects.md").read_text()
    assert "Crossed designs are bridged too" in text and "crossed designs, whose" not in text


def test_exact_fit_by_the_fixed_effects_alone_is_refused():
    rng = np.random.default_rng(0)
    g, x = np.repeat(np.arange(6), 5), rng.normal(size=30)
    for noise in (0.0, 1e-9):  # 1e-9: below what float64 sums of squares resolve
        y = 2 + 3 * x + noise * rng.normal(size=30)
        data = pd.DataFrame({"g": g.astype(str), "x": x, "y": y})
        with pytest.raises(bl.DataError, match="fixed effects .* alone fit the response"):
            bl.lmer("y ~ x + (1 | g)", data)
    data = pd.DataFrame({"g": g.astype(str), "x": x, "y": 2 + 3 * x + 1e-3 * rng.normal(size=30)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bl.SingularFitWarning)
        fit = bl.lmer("y ~ x + (1 | g)", data)  # small noise, resolved: fitted
    assert 3e-4 < fit.sigma < 3e-3


def test_few_levels_clearly_apart_sample_the_log_sd():
    """Three classrooms whose spread is 182 times its noise: the chance of a zero spread
    that the signing rule reads (0.0054) stays above its threshold with so few levels, but
    the likelihood at zero is ~180 nats below its best, a wall the signed SD's trajectories
    ran into (4 x 5000 draws, seeds 1-5: max |energy error| 2.1-3.4 signed, 0.5-0.7 on the
    log scale, bulk ESS 3941-4213 against 7595-8255 for seeds 1-3)."""
    from bayeslmm.bayes.model import SIGNED_DEPTH, _zero_depth

    data = bl.load_dataset("classroom")
    model = bl.LMM("score ~ edu + (1 | classroom)", data)
    spread = model._level_spread(0)
    assert spread.zero_probability[0] > 0.002 and _zero_depth(spread)[0] > 10 * SIGNED_DEPTH
    assert model.signed_terms == {"classroom": ()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(draws=1000, tune=1000, chains=4, random_seed=1, progressbar=False)
    stats = model.idata.sample_stats
    assert int(stats["diverging"].sum()) == 0
    assert float(np.abs(stats["energy_error"]).max()) < 2.0
    # a weak spread with many levels is still signed (subjects x items' slopes)
    crossed = bl.LMM("rt ~ S + P + C + (1 + S + P | subj) + (1 + S | item)",
                     pd.read_csv(DATA / "crossed_small.csv"))  # fmt: skip
    assert crossed.signed_terms == {"subj": ("S", "P"), "item": ("S",)}
