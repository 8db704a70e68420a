"""The report of binary and count mixed models (bayeslmm/present/glmm_report.py) and the
randomized quantile residuals it draws (bayeslmm/glmm/residuals.py).

References: the residuals against N(0, 1) by the Kolmogorov-Smirnov test on data simulated
from the model (Dunn & Smyth 1996: exactly N(0, 1) at the true mean), and their failure
for a Poisson GLM fitted to overdispersed counts; the report's numbers against the fits
they come from (bl.glmer, whose estimates tests/test_glmer.py checks against lme4, and the
posterior) and against the data summed here with pandas.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.special as sc
import scipy.stats
import statsmodels.api as sm

import bayeslmm as bl
from bayeslmm.bayes.diagnostics import verdict
from bayeslmm.errors import ArgumentError
from bayeslmm.glmm.residuals import quantile_residuals
from bayeslmm.present.cli import main
from bayeslmm.present.glmm_report import _Fit, level_table
from bayeslmm.spec.family import get_family

matplotlib.use("Agg")

SMALL = {"draws": 200, "tune": 200, "chains": 2, "random_seed": 5, "progressbar": False}
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
GROUSE = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"
VERBAGG = "r2 ~ Anger + Gender + btype + (1 | id) + (1 | item)"
PNG = b"\x89PNG\r\n\x1a\n"


# -- randomized quantile residuals -----------------------------------------------------------
def _ks(resid: np.ndarray) -> float:
    return scipy.stats.kstest(resid.ravel(), "norm").pvalue


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson", "negative_binomial"])
def test_quantile_residuals_are_standard_normal_under_the_model(family):
    """Data drawn from the family at known means: the residuals at those means pass the
    KS test against N(0, 1), with mean ~0 and sd ~1 (n = 5000)."""
    rng = np.random.default_rng(20)
    n = 5000
    eta = rng.normal(0.0, 1.0, n)
    trials = None
    if family == "bernoulli":
        mu = sc.expit(eta)
        y = rng.binomial(1, mu).astype(float)
    elif family == "binomial":
        mu = sc.expit(eta - 1)
        trials = rng.integers(1, 30, n).astype(float)
        y = rng.binomial(trials.astype(int), mu) / trials  # the proportion, as GlmResponse
    elif family == "poisson":
        mu = np.exp(eta)
        y = rng.poisson(mu).astype(float)
    else:
        mu, theta = np.exp(eta + 1), 2.5
        y = rng.negative_binomial(theta, theta / (theta + mu)).astype(float)
    fam = get_family(family)
    if family == "negative_binomial":
        fam = fam.with_theta(2.5)
    resid = quantile_residuals(fam, y, trials, mu, np.random.default_rng(1))
    assert resid.shape == (n,) and np.all(np.isfinite(resid))
    assert _ks(resid) > 0.01
    assert abs(resid.mean()) < 0.05 and abs(resid.std() - 1) < 0.05


def test_quantile_residuals_reject_poisson_fitted_to_overdispersed_counts():
    """Negative binomial counts (theta = 1) with a Poisson GLM fitted to them by maximum
    likelihood: the residuals are far too spread out and the KS test rejects N(0, 1);
    at the same counts the negative binomial fitted by MASS-style ML passes."""
    rng = np.random.default_rng(21)
    n = 2000
    x = rng.normal(size=n)
    mu = np.exp(0.5 + 0.4 * x)
    y = rng.negative_binomial(1.0, 1.0 / (1.0 + mu)).astype(float)
    X = sm.add_constant(x)
    poisson = sm.GLM(y, X, family=sm.families.Poisson()).fit()
    resid = quantile_residuals(get_family("poisson"), y, None, poisson.fittedvalues,
                               np.random.default_rng(2))  # fmt: skip
    assert _ks(resid) < 1e-8 and resid.std() > 1.3
    nb = sm.NegativeBinomial(y, X).fit(disp=0)
    alpha = nb.params[-1]  # variance mu + alpha mu^2: theta = 1 / alpha
    fam = get_family("negative_binomial").with_theta(1.0 / alpha)
    fitted = np.exp(X @ nb.params[:-1])
    assert _ks(quantile_residuals(fam, y, None, fitted, np.random.default_rng(2))) > 0.01


def test_quantile_residuals_draws_by_rows_and_bounds():
    """Means of shape (draws, rows) give a residual per draw and row; u lies between
    F(y - 1) and F(y): for a Bernoulli 1 at p, u > 1 - p, so the residual > Phi^-1(1 - p)."""
    y = np.array([1.0, 0.0, 1.0])
    mu = np.array([[0.2, 0.5, 0.9], [0.3, 0.6, 0.7]])
    r = quantile_residuals(get_family("bernoulli"), y, None, mu, np.random.default_rng(0))
    assert r.shape == (2, 3)
    ones = y == 1
    assert np.all(r[:, ones] >= scipy.stats.norm.ppf(1 - mu[:, ones]))
    assert np.all(r[:, ~ones] <= scipy.stats.norm.ppf(1 - mu[:, ~ones]))
    with pytest.raises(ArgumentError, match="discrete families"):
        quantile_residuals(get_family("gaussian"), y, None, mu, np.random.default_rng(0))
    with pytest.raises(ArgumentError, match="theta"):
        quantile_residuals(get_family("negative_binomial"), y, None, mu[0],
                           np.random.default_rng(0))  # fmt: skip
    with pytest.raises(ArgumentError, match="non-negative"):
        quantile_residuals(get_family("poisson"), -y, None, mu[0], np.random.default_rng(0))


# -- the report ----------------------------------------------------------------------------------
def _quiet(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kwargs)


def _page(files) -> str:
    page = files.html.read_text(encoding="utf-8")
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(images) == len(files.figures) > 0
    for src in images:  # embedded: the page needs no other file
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert "http://" not in page and "https://" not in page
    assert not files.failed, files.failed
    return page


def _sections(page: str) -> list[str]:
    return re.findall(r"<section id='([^']+)'>", page)


def _csv(files, name: str) -> pd.DataFrame:
    return pd.read_csv(files.tables[name])


def _check_fixed_effects(files, model, glmer_fit) -> None:
    """The fixed-effects table: glmer's numbers are bl.glmer's, the posterior's the
    model's, and the ratios exp() of them."""
    fixed = _csv(files, "fixed_effects_glmer_posterior").set_index("term")
    ref = glmer_fit.coefficients()
    np.testing.assert_allclose(fixed["glmer_estimate"], ref["Estimate"], rtol=1e-10)
    np.testing.assert_allclose(fixed["glmer_se"], ref["Std. Error"], rtol=1e-10)
    np.testing.assert_allclose(fixed["glmer_exp_estimate"], np.exp(ref["Estimate"]))
    post = model.fixef(level=0.95)
    np.testing.assert_allclose(fixed["posterior_mean"], post["mean"], rtol=1e-10)
    np.testing.assert_allclose(fixed["exp_hdi_lower"], np.exp(post["hdi_2.5%"]), rtol=1e-10)


@pytest.fixture(scope="module")
def cbpp_report(tmp_path_factory):
    data = bl.load_dataset("cbpp")
    model = bl.LMM(CBPP, data, family="binomial")
    _quiet(model.fit, **SMALL)
    comparison = _quiet(bl.compare, CBPP, data, family="binomial", model=model)
    out = tmp_path_factory.mktemp("cbpp")
    return data, model, comparison, _quiet(bl.report, model, comparison, out)


def test_cbpp_report_sections_and_numbers(cbpp_report):
    data, model, comparison, files = cbpp_report
    page = _page(files)
    assert _sections(page) == ["data", "fit", "convergence", "checks", "comparison",
                               "shrinkage", "not_yet"]  # fmt: skip
    glmer_fit = bl.glmer(CBPP, data, family="binomial")
    assert html.escape(str(glmer_fit.summary())) in page  # lme4's summary, as bl.glmer prints it
    assert html.escape(str(model.summary(print_it=False, level=0.95))) in page
    _check_fixed_effects(files, model, glmer_fit)
    assert "odds ratio" in page
    # the convergence verdict is the Gaussian report's sentence
    assert html.escape(verdict(model.convergence)) in page
    # data overview: each herd's proportion, summed here with pandas
    herds = data.groupby("herd", observed=True)[["incidence", "size"]].sum()
    table = _csv(files, "data_herd").set_index("level")
    np.testing.assert_allclose(table["proportion"].to_numpy(),
                               (herds["incidence"] / herds["size"]).to_numpy())  # fmt: skip
    # posterior predictive check per herd: observed as above, inside a [0, 1] interval
    ppc = _csv(files, "ppc_herd")
    np.testing.assert_allclose(ppc["observed"], table["proportion"].to_numpy())
    assert np.all((ppc["pp_lower"] <= ppc["pp_mean"]) & (ppc["pp_mean"] <= ppc["pp_upper"]))
    assert ppc["pp_lower"].min() >= 0 and ppc["pp_upper"].max() <= 1
    assert ppc["outside"].sum() <= 3  # the model fits herds (95% intervals, 15 herds)
    stats = _csv(files, "ppc_statistics").set_index("statistic")
    observed = data["incidence"].sum() / data["size"].sum()
    assert stats.loc["proportion of successes", "observed"] == pytest.approx(observed)
    assert 0.01 < stats.loc["proportion of successes", "p_greater_equal"] < 0.99
    # randomized quantile residuals, one per row, and their QQ plot
    resid = _csv(files, "residuals")
    assert len(resid) == len(data) and "residuals" in files.figures
    assert "Randomized quantile residuals (Dunn &amp; Smyth 1996)" in page
    # the comparison: its glmer row is bl.glmer's
    cmp = _csv(files, "comparison").set_index("model")
    assert cmp.loc["GLMM", "estimate"] == pytest.approx(
        glmer_fit.fixef()["estimate"]["period2"], rel=1e-10)  # fmt: skip
    assert {"shrinkage_arrows_herd", "caterpillar_herd", "comparison_forest"} <= set(
        files.figures)  # fmt: skip
    assert len(_csv(files, "shrinkage")) == 15
    assert "Not yet for the binomial family" in page and "Bayes factors" in page
    # without random_effects= the section is absent and the page says how to add it
    assert "random_effects_choice" not in _sections(page)
    assert "<b>Which random effects does the data support?</b>: not computed" in page


DATA = Path(__file__).resolve().parent / "data"
RANOVA = {c["id"]: c for c in json.loads((DATA / "lme4_glmer_ranova.json").read_text())["cases"]}
VERBAGG_RANOVA = json.loads((DATA / "lme4_glmer_ranova_verbagg.json").read_text())


def _check_lrt(table: pd.DataFrame, neighbours: list[dict]) -> None:
    """The random-effects table against lme4's anova(full, reduced) (tests/data/*.R)."""
    assert len(table) == len(neighbours)
    for row, ref in zip(table.itertuples(), neighbours, strict=True):
        assert row.component == f"random term {ref['component']}"
        assert row.Df == ref["Df"]
        assert row.LRT == pytest.approx(ref["LRT"], rel=1e-5)
        assert row.p_boundary == pytest.approx(ref["p_boundary"], rel=1e-4)
        assert row.AIC_diff == pytest.approx(ref["AIC_diff"], rel=1e-5)
        assert row.BIC_diff == pytest.approx(ref["BIC_diff"], rel=1e-5)


def test_cbpp_report_with_the_random_effects_choice(cbpp_report, tmp_path):
    """One random intercept (dropping it leaves a GLM): the section shows glmer's LRT as
    lme4's anova(glmer, glm) (tests/data/lme4_glmer_ranova.R), says that Bayes factors and
    leave-one-group-out are not computed without bayes=True, and leaves the not-yet
    list."""
    data, model, comparison, _ = cbpp_report
    choice = _quiet(bl.compare_random_effects, CBPP, data, family="binomial",
                    fits=comparison.fits.values())  # fmt: skip
    files = _quiet(bl.report, model, comparison, tmp_path / "re", random_effects=choice)
    page = _page(files)
    assert _sections(page) == ["data", "fit", "convergence", "checks", "comparison",
                               "shrinkage", "random_effects_choice", "not_yet"]  # fmt: skip
    table = _csv(files, "random_effects_comparison")
    _check_lrt(table, RANOVA["cbpp"]["neighbours"])
    assert table["neighbour"].tolist() == ["cbind(incidence, size - incidence) ~ period"]
    assert table["log_BF"].isna().all() and table["elpd_diff"].isna().all()
    section = page.split("<section id='random_effects_choice'>", 1)[1].split("</section>")[0]
    assert html.escape(choice.summary) in section and "needed" in section
    assert ("Bayes factors and leave-one-group-out cross-validation are not available for "
            "the binomial family by default: bayes=True") in section  # fmt: skip
    assert ("no Bayes factors or leave-one-group-out cross-validation column: see the "
            "notes") in section  # fmt: skip
    assert "<th>log BF</th>" not in section and "lme4&#x27;s anova(full, reduced)" in section
    assert "not computed" not in page
    with pytest.raises(ArgumentError, match="comparison of a gaussian model"):
        bl.report(model, comparison, tmp_path / "x",
                  random_effects=dataclasses.replace(choice, family="gaussian"))
    with pytest.raises(ArgumentError, match="random_effects is of"):
        bl.report(model, comparison, tmp_path / "y",
                  random_effects=dataclasses.replace(choice, formula="y ~ 1 + (1 | herd)"))
    gaussian = _quiet(bl.LMM, "incidence ~ size + (1 | herd)", data)
    _quiet(gaussian.fit, draws=50, tune=50, chains=1, random_seed=1, progressbar=False)
    with pytest.raises(ArgumentError, match="comparison of a binomial model"):
        bl.report(gaussian, random_effects=choice, path=tmp_path / "z")


def test_cbpp_report_with_bayes_factors_and_leave_one_out(cbpp_report, tmp_path):
    """The fitted Bayesian model given: the section shows the log Bayes factor of
    (1 | herd) against the Bayesian GLM and both leave-one-out differences, as the
    comparison holds them, the two leave-one-out tables and the notes saying how the
    effects were integrated out; the not-yet list no longer names Bayes factors or
    leave-one-group-out (one grouping factor)."""
    data, model, comparison, _ = cbpp_report
    choice = _quiet(bl.compare_random_effects, model, data, fits=comparison.fits.values())
    files = _quiet(bl.report, model, comparison, tmp_path / "bf", random_effects=choice)
    page = _page(files)
    table = _csv(files, "random_effects_comparison")
    _check_lrt(table, RANOVA["cbpp"]["neighbours"])
    row = choice.table.iloc[0]
    assert table["log_BF"].iloc[0] == pytest.approx(row["log_BF"])
    assert np.isfinite(table[["log_BF", "elpd_diff", "elpd_obs_diff"]].to_numpy()).all()
    section = page.split("<section id='random_effects_choice'>", 1)[1].split("</section>")[0]
    assert "<th>log BF</th>" in section
    assert f"{row['log_BF']:.2f} ± {row['log_BF_error']:.2f}" in section
    assert "<th>Δelpd (leave one herd out)</th>" in section
    assert "<th>Δelpd (leave one observation out)</th>" in section
    assert {"loo_by_group", "loo_by_observation"} <= set(files.tables)
    assert "adaptive Gauss-Hermite quadrature" in section and "Bayesian: the log Bayes" in section
    assert "not available" not in section and "see the notes" not in section
    not_yet = page.split("<section id='not_yet'>", 1)[1].split("</section>")[0]
    assert "Bayes factors" not in not_yet and "LOO by group" not in not_yet
    assert "ICC and R2" in not_yet


def test_report_of_a_glmm_refuses_what_it_cannot_show(cbpp_report, tmp_path):
    data, model, comparison, _ = cbpp_report
    gaussian = _quiet(bl.compare, "incidence ~ size + (1 | herd)", data, bayes=False)
    with pytest.raises(ArgumentError, match="family=..."):
        bl.report(model, gaussian, tmp_path / "a")
    with pytest.raises(ArgumentError, match="must come from bl.compare_random_effects"):
        bl.report(model, random_effects=object(), path=tmp_path / "b")
    with pytest.raises(ArgumentError, match="Bayesian fit"):
        bl.report(comparison.glmer, path=tmp_path / "c")
    unfitted = bl.LMM(CBPP, data, family="binomial")
    with pytest.raises(bl.NotFittedError):
        bl.report(unfitted, path=tmp_path / "d")


def test_report_without_a_comparison_says_why(cbpp_report, tmp_path):
    data, model, comparison, _ = cbpp_report
    files = bl.report(model, path=tmp_path / "r", glmer=comparison.glmer,
                      comparison_note="skipped (--no-compare)")  # fmt: skip
    page = _page(files)
    assert "comparison" not in _sections(page) and "skipped (--no-compare)" in page
    assert "Generalized linear mixed model fit by maximum likelihood" in page


def test_grouseticks_poisson_report(tmp_path):
    """Two crossed factors, counts: rates per level, the counts' histogram check."""
    data = bl.load_dataset("grouseticks")
    model = bl.LMM(GROUSE, data, family="poisson")
    _quiet(model.fit, **SMALL)
    comparison = _quiet(bl.compare, GROUSE, data, family="poisson", model=model)
    files = _quiet(bl.report, model, comparison, tmp_path / "g")
    page = _page(files)
    _check_fixed_effects(files, model, bl.glmer(GROUSE, data, family="poisson"))
    assert "rate ratio" in page
    for group in ("BROOD", "LOCATION"):
        counts = data.groupby(group, observed=True)["TICKS"].sum()
        table = _csv(files, f"data_{group}")
        np.testing.assert_allclose(table["count"].to_numpy(), counts.to_numpy())
        np.testing.assert_allclose(table["rate"], table["count"] / table["rows"])  # no offset
        assert f"ppc_{group}" in files.figures and f"shrinkage_arrows_{group}" in files.figures
    hist = _csv(files, "ppc_counts")
    assert hist["observed"].sum() == len(data)
    assert hist.loc[0, "observed"] == (data["TICKS"] == 0).sum()
    stats = _csv(files, "ppc_statistics").set_index("statistic")
    assert stats.loc["share of zeros", "observed"] == pytest.approx((data["TICKS"] == 0).mean())
    assert "ppc_counts" in files.figures


def test_verbagg_bernoulli_report(tmp_path):
    """A 0/1 factor response (Y/N) with crossed subjects and items (a subset of VerbAgg)."""
    data = bl.load_dataset("verbagg")
    data = data[data["id"].isin(pd.unique(data["id"])[:30])]
    model = bl.LMM(VERBAGG, data, family="bernoulli")
    _quiet(model.fit, **SMALL)
    comparison = _quiet(bl.compare, VERBAGG, data, family="bernoulli", model=model)
    files = _quiet(bl.report, model, comparison, tmp_path / "v")
    page = _page(files)
    _check_fixed_effects(files, model, bl.glmer(VERBAGG, data, family="bernoulli"))
    yes = (data["r2"] == "Y").astype(float)
    stats = _csv(files, "ppc_statistics").set_index("statistic")
    assert list(stats.index) == ["proportion of successes"]
    assert stats.loc["proportion of successes", "observed"] == pytest.approx(yes.mean())
    overview = _csv(files, "data_summary").set_index("statistic")["value"]
    assert overview["proportion of 1s"] == pytest.approx(yes.mean())
    assert overview["rows with 0"] == (data["r2"] == "N").sum()
    items = _csv(files, "data_item")
    np.testing.assert_allclose(items["proportion"].to_numpy(),
                               yes.groupby(data["item"], observed=True).mean().to_numpy())
    assert {"ppc_id", "ppc_item", "residuals"} <= set(files.figures)
    assert "Not yet for the bernoulli family" in page
    assert "Bayes factors of crossed or nested factors" in page  # two crossed factors
    # crossed random intercepts: each dropped in turn, lme4's LRT
    # (tests/data/lme4_glmer_ranova_verbagg.R, the same 30 people)
    choice = _quiet(bl.compare_random_effects, VERBAGG, data, family="bernoulli",
                    fits=comparison.fits.values())  # fmt: skip
    files = _quiet(bl.report, model, comparison, tmp_path / "v2", random_effects=choice)
    assert "random_effects_choice" in _sections(_page(files))
    assert VERBAGG_RANOVA["rows"] == len(data)
    _check_lrt(_csv(files, "random_effects_comparison"), VERBAGG_RANOVA["neighbours"])
    assert choice.summary == ("The data support the random term (1 | id) and the random term "
                              "(1 | item).")  # fmt: skip


def test_negative_binomial_report_is_glmer_nb_without_posterior(tmp_path):
    """The negative binomial: glmer.nb's fit, residuals at its fitted means (its theta),
    the comparison without a Bayes row; the posterior parts named as missing."""
    data = bl.load_dataset("grouseticks")
    formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)"
    fit = _quiet(bl.glmer, formula, data, family="negative_binomial")
    comparison = _quiet(bl.compare, formula, data, family="negative_binomial", bayes=False)
    files = _quiet(bl.report, fit, comparison, tmp_path / "nb")
    page = _page(files)
    assert _sections(page) == ["data", "fit", "checks", "comparison", "shrinkage", "not_yet"]
    fixed = _csv(files, "fixed_effects_glmer_posterior").set_index("term")
    np.testing.assert_allclose(fixed["glmer_estimate"], fit.fixef()["estimate"], rtol=1e-10)
    assert "posterior_mean" not in fixed and "Negative Binomial(" in page
    assert "the report was given the glmer fit alone" in page
    resid = _csv(files, "residuals")
    np.testing.assert_allclose(resid["fitted_mean"], fit.fitted("response"))
    family = fit.family.with_theta(fit.nb_theta) if fit.family.theta is None else fit.family
    # at glmer.nb's fit (theta estimated) the residuals look N(0, 1)
    assert _ks(resid["residual"].to_numpy()) > 0.001, family


def test_cli_fit_family_writes_the_report(tmp_path, capsys):
    """bayeslmm fit cbpp ... --family binomial writes report.html beside the tables;
    --no-compare leaves the comparison out and says so in the page."""
    out = tmp_path / "rep"
    fast = ["--draws", "100", "--tune", "150", "--chains", "2", "--no-progress"]
    code = main(["fit", "cbpp", CBPP, "--family", "binomial", "--out", str(out), *fast])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == \
        f"Report written to {(out / 'report.html').resolve()}"  # fmt: skip
    assert "no HTML report" not in captured.err
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<section id='comparison'>" in page and "<section id='checks'>" in page
    fixed = pd.read_csv(out / "fixed_effects_glmer_posterior.csv").set_index("term")
    glmer_fixed = pd.read_csv(out / "glmer_fixed_effects.csv").set_index("term")
    np.testing.assert_allclose(fixed["glmer_estimate"], glmer_fixed["Estimate"], rtol=1e-12)
    # the Bayesian neighbour (the GLM) fitted as the model was: Bayes factor and leave-one-out
    choice = pd.read_csv(out / "random_effects_comparison.csv")
    assert np.isfinite(choice[["log_BF", "elpd_diff", "elpd_obs_diff"]].to_numpy()).all()
    assert "<th>log BF</th>" in page
    out2 = tmp_path / "rep2"
    code = main(["fit", "cbpp", CBPP, "--family", "binomial", "--out", str(out2), "--no-compare",
                 *fast])  # fmt: skip
    assert code == 0
    page = (out2 / "report.html").read_text(encoding="utf-8")
    assert "<section id='comparison'>" not in page and "(--no-compare)" in page
    assert not (out2 / "comparison.csv").exists()


def test_rates_per_level_divide_by_the_exposure_of_the_offset():
    """A Poisson offset log(exposure): each level's rate is its total count over its summed
    exposure (computed here with pandas), as the comparison's aggregation uses it."""
    data = bl.load_dataset("grouseticks")
    fit = _quiet(bl.glmer, "TICKS ~ YEAR + offset(log(HEIGHT / 100)) + (1 | LOCATION)", data,
                 family="poisson")  # fmt: skip
    block = fit.design.blocks[0]
    table = level_table(_Fit(None, fit), "LOCATION", block.codes, pd.Index(block.level_values))
    sums = data.assign(exposure=data["HEIGHT"] / 100).groupby("LOCATION", observed=True)[
        ["TICKS", "exposure"]].sum()  # fmt: skip
    np.testing.assert_allclose(table["exposure"].to_numpy(), sums["exposure"].to_numpy())
    np.testing.assert_allclose(table["rate"].to_numpy(),
                               (sums["TICKS"] / sums["exposure"]).to_numpy())  # fmt: skip
    assert list(table["level"]) == [str(v) for v in sums.index]
