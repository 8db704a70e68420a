"""Comparison-layer figures: they draw what the tables say."""

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import bayeslmm as bl  # noqa: E402
from bayeslmm import plots  # noqa: E402
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
