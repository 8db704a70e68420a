"""Comparison-layer figures: they draw what the tables say."""

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import bayeslmm as bl  # noqa: E402
from bayeslmm import plots  # noqa: E402
from bayeslmm.bayes import stack
from bayeslmm.comparison import compare  # noqa: E402


@pytest.fixture(scope="module")
def slope_comparison():
    data = bl.load_dataset("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compare(
            "Reaction ~ Days + (Days | Subject)", data, draws=200, tune=300, chains=2,
            random_seed=3,
        )  # fmt: skip


def test_shrinkage_arrows_draw_every_level(slope_comparison):
    fig = plots.shrinkage_arrows(slope_comparison)
    axes = fig.get_axes()
    assert [ax.get_xlabel() for ax in axes] == ["(Intercept)", "Days"]
    sh = slope_comparison.shrinkage()
    days = sh[sh["term"] == "Days"]
    offsets = axes[1].collections[0].get_offsets()  # the no-pooling points
    np.testing.assert_allclose(np.asarray(offsets)[:, 0], days["no_pooling"])
    assert len([t for t in axes[1].texts]) == 2 * len(days)  # two arrows per level


def test_caterpillar_and_2d_and_forest(slope_comparison, tmp_path):
    for name in ("caterpillar", "shrinkage_2d", "comparison_forest"):
        fig = getattr(plots, name)(slope_comparison)
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = plots.shrinkage_2d(slope_comparison)
    line = fig.get_axes()[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xydata(), slope_comparison.population_ellipse())


def test_plots_refuse_what_they_cannot_show(classroom):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comp = compare("score ~ edu + (1 | classroom)", classroom, bayes=False)
    with pytest.raises(ValueError, match="random slope"):
        plots.shrinkage_2d(comp)
    with pytest.raises(ValueError, match="bayes=True"):
        plots.caterpillar(comp)
    assert plots.shrinkage_arrows(comp).get_axes()[0].get_xlabel() == "(Intercept)"


# --- figures of one fit and the group fits -------------------------------------------


def test_group_lines_come_from_the_fits(slope_comparison):
    lines = slope_comparison.group_lines().set_index(["source", "level"])
    bayes = slope_comparison.fits["Bayes-Full"]
    coef = bayes.group_coefficients("Subject").mean(("chain", "draw"))
    post = lines.loc["posterior"]
    np.testing.assert_allclose(post["intercept"], coef.sel(coef="(Intercept)").values)
    np.testing.assert_allclose(post["slope"], coef.sel(coef="Days").values)
    reml = slope_comparison.fits["LMM-Full"]
    pop = lines.loc["population"].iloc[0]
    assert pop["intercept"] == pytest.approx(reml.fixef["(Intercept)"])
    assert pop["slope"] == pytest.approx(reml.fixef["Days"])
    # ANCOVA with group slopes = per-group OLS lines when Days is the only predictor
    own = slope_comparison.fits["Hierarchical"].coefficients
    anc = lines.loc["ancova"].loc[own.index]
    np.testing.assert_allclose(anc["intercept"], own["(Intercept)"], rtol=1e-8)
    np.testing.assert_allclose(anc["slope"], own["Days"], rtol=1e-8)


def test_group_lines_hold_other_predictors_at_their_means():
    data = bl.load_dataset("ratpup")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comp = compare("weight ~ litsize + sex + (1 | litter)", data, bayes=False)
    lines = comp.group_lines().set_index(["source", "level"])
    reml = comp.fits["LMM-Inter"]
    male = (data["sex"] == "Male").mean()
    pop = lines.loc["population"].iloc[0]
    expected = reml.fixef["(Intercept)"] + reml.fixef["sexMale"] * male
    assert pop["intercept"] == pytest.approx(expected)
    assert (lines.loc["reml"]["slope"] == reml.fixef["litsize"]).all()


def test_group_fits_panel_per_level(slope_comparison, classroom):
    fig = plots.group_fits(slope_comparison)
    axes = [ax for ax in fig.get_axes() if ax.get_visible()]
    assert len(axes) == 18
    assert axes[0].get_title() == "Subject = 308"
    # data points, the level's line, the ANCOVA line and the population line
    assert len(axes[0].collections) == 1 and len(axes[0].lines) == 3
    # every subject's 10 days drawn, whatever the type of the level (Subject is an integer)
    assert all(len(ax.collections[0].get_offsets()) == 10 for ax in axes)
    assert all(np.isfinite(line.get_xdata()).all() for line in axes[0].lines)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comp = compare("score ~ edu + (1 | classroom)", classroom, bayes=False)
    fig = plots.group_fits(comp)
    (ax,) = fig.get_axes()
    assert len(ax.collections) == 3 and len(ax.lines) == 3 * 2 + 1
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(classroom)
    assert "REML" in fig._suptitle.get_text()


def test_model_figures(slope_comparison):
    model = slope_comparison.fits["Bayes-Full"]
    fig = plots.data_overview(model.design.frame, "Reaction", "Days", "Subject")
    assert len(fig.get_axes()[0].collections) == 18
    with pytest.raises(KeyError, match="Dayz"):
        plots.data_overview(model.design.frame, "Reaction", "Dayz", "Subject")

    def labels(fig) -> str:  # ArviZ 0.x names panels in titles, 1.x in axis labels
        return " ".join(f"{ax.get_title()} {ax.get_xlabel()} {ax.get_ylabel()}"
                        for ax in fig.get_axes())  # fmt: skip

    titles = labels(plots.trace(model))
    for name in ("fixed", "sd | Subject", "cor | Subject", "sigma (residual)"):
        assert name in titles
    assert "sd | Subject" in labels(plots.rank(model))

    assert plots.ppc(model).get_axes()[0].get_xlabel() == "Reaction"
    assert stack.has_group(model.idata, "posterior_predictive")
    shown = [ax for ax in plots.ppc_by_group(model).get_axes() if ax.get_visible()]
    assert len(shown) == 12 and shown[0].get_title() == "Subject = 308"

    fig = plots.residuals(model)
    scatter, density, boxes = fig.get_axes()
    points = np.concatenate([c.get_offsets() for c in scatter.collections])
    assert len(points) == model.design.n_obs
    np.testing.assert_allclose(np.sort(points[:, 1]), np.sort(model.residuals()))
    np.testing.assert_allclose(model.residuals(), model.design.y - model.fitted_mean())
    assert len(boxes.get_xticklabels()) == 18
    with pytest.raises(KeyError, match="nope"):
        plots.residuals(model, group="nope")
