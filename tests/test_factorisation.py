"""One factorisation of the penalised system (the blocked Cholesky) for the REML/ML result:
conditional modes and conditional SDs against lme4's ``ranef(condVar = TRUE)``, the
profiled solution against dense linear algebra, and the kernels' typed inputs (one field
list for the blocked kernels and the density's flat buffer)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayeslmm as bl
from bayeslmm.bayes.density import FIELDS, MarginalDensity, pack, unpack
from bayeslmm.gaussian.blocked import (
    FACTORED_FIELDS,
    SAMPLED_FIELDS,
    BlockedSystem,
    Factored,
    Sampled,
)
from bayeslmm.gaussian.profiled import ThetaLayout, profiled
from bayeslmm.gaussian.statistics import BlockedStats, CrossProducts, random_effects_matrix
from bayeslmm.spec.design import build_design

DATA = Path(__file__).parent / "data"
CONDVAR = json.loads((DATA / "lme4_condvar.json").read_text())["cases"]
TEXT = dict.fromkeys(["subj", "item", "site", "plate", "sample", "batch", "cask"], str)


def _data(name: str) -> pd.DataFrame:
    if name == "sleepstudy":
        return bl.load_dataset("sleepstudy")
    return pd.read_csv(DATA / name, dtype=TEXT)


def _ours(group: str) -> str:
    """lme4 names the inner factor of ``a/b`` ``b:a`` (levels ``b_i:a_j``); we say ``a:b``."""
    return ":".join(reversed(group.split(":")))


@pytest.mark.parametrize("case_id", sorted(CONDVAR))
def test_conditional_modes_and_sds_match_lme4(case_id):
    """lme4 1.1-31 (tests/data/lme4_condvar.R): one factor with correlated terms, crossed,
    nested, crossed with correlated terms; modes and condVar SDs from the blocked factor."""
    case = CONDVAR[case_id]
    fit = bl.lmer(case["formula"], _data(case["data"]))
    assert fit.criterion == pytest.approx(case["reml_criterion"], rel=1e-7)
    modes, sds = fit.ranef(), fit.ranef_sd()
    for group, ref in case["groups"].items():
        ours = _ours(group)
        levels = [_ours(level) for level in ref["levels"]]
        terms = list(np.atleast_1d(ref["terms"]))  # one term: unboxed by R's JSON
        mode, sd = (frame[ours].set_axis(frame[ours].index.astype(str)).loc[levels, terms]
                    .to_numpy() for frame in (modes, sds))  # fmt: skip
        shape = (len(levels), len(terms))
        expected_mode = np.asarray(ref["mode"]).reshape(shape)
        expected_sd = np.asarray(ref["cond_sd"]).reshape(shape)
        scale = np.abs(expected_mode).max(axis=0)
        np.testing.assert_allclose(mode, expected_mode, atol=1e-4 * scale.max(), rtol=1e-4)
        np.testing.assert_allclose(sd, expected_sd, rtol=1e-4)


@pytest.mark.parametrize("formula", [
    "rt ~ S + P + (1 + S | subj) + (1 + S | item)",
    "rt ~ S + (1 + S + P || subj) + (1 + S | item) + (1 | site)",
    "rt ~ 0 + S + (1 | site/subj)",
])  # fmt: skip
@pytest.mark.parametrize("reml", [True, False])
def test_profiled_solution_equals_dense_algebra(formula, reml):
    """At a random theta: the criterion, beta, u, b = Lambda u, sigma and the conditional
    covariances of b equal the penalised least-squares system solved densely."""
    design = build_design(formula, _data("crossed_small.csv"))
    cp, layout = CrossProducts.from_design(design), ThetaLayout.from_design(design)
    theta = layout.start() + np.random.default_rng(2).uniform(0, 0.6, layout.n_theta)
    fit = profiled(theta, cp, layout, reml)
    Lam = layout.relative_factor(theta).toarray()
    ZL = random_effects_matrix(design).toarray() @ Lam
    X, y = design.X, design.y
    q, p, n = ZL.shape[1], X.shape[1], len(y)
    A = ZL.T @ ZL + np.eye(q)
    full = np.block([[A, ZL.T @ X], [X.T @ ZL, X.T @ X]])
    sol = np.linalg.solve(full, np.concatenate([ZL.T @ y, X.T @ y]))
    u, beta = sol[:q], sol[q:]
    r2 = np.sum((y - X @ beta - ZL @ u) ** 2) + u @ u
    dof = n - p if reml else n
    schur = X.T @ X - X.T @ ZL @ np.linalg.solve(A, ZL.T @ X)
    dev = np.linalg.slogdet(A)[1] + dof * (1 + np.log(2 * np.pi * r2 / dof))
    if reml:
        dev += np.linalg.slogdet(schur)[1] if p else 0.0
    assert fit.deviance == pytest.approx(dev, rel=1e-10)
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(fit.u, u, atol=1e-8 * np.abs(u).max())
    np.testing.assert_allclose(fit.b, Lam @ u, atol=1e-8 * np.abs(Lam @ u).max())
    assert fit.sigma == pytest.approx(np.sqrt(r2 / dof), rel=1e-10)
    np.testing.assert_allclose(fit.RX.T @ fit.RX, schur, rtol=1e-8)
    cov = fit.sigma**2 * Lam @ np.linalg.solve(A, Lam.T)
    start = 0
    for block, blocks in zip(design.blocks, fit.conditional_covariance_blocks(
            layout.sizes, layout.levels), strict=True):  # fmt: skip
        k, m = block.n_terms, block.n_levels
        for level in range(m):
            at = start + level * k
            np.testing.assert_allclose(blocks[level], cov[at : at + k, at : at + k],
                                       rtol=1e-8, atol=1e-10 * np.abs(cov).max())  # fmt: skip
        start += k * m


@pytest.mark.parametrize(("formula", "explicit"), [
    ("rt ~ S + P + (1 + S | subj) + (1 + S | item)", ()),
    ("rt ~ S + (1 | subj) + (1 + S | item) + (1 | site)", ("item", "site")),
])  # fmt: skip
def test_kernel_inputs_from_one_field_list(formula, explicit):
    """The density's flat buffer holds every kernel field by name, as the blocked system
    gives it (packing and reading both follow FIELDS); the named tuples follow the lists."""
    assert Factored._fields == tuple(name for name, _, _ in FACTORED_FIELDS)
    assert Sampled._fields == tuple(name for name, _, _ in SAMPLED_FIELDS)
    design = build_design(formula, _data("crossed_small.csv"))
    system = BlockedSystem(BlockedStats.from_design(design, explicit))
    model = bl.LMM(formula, _data("crossed_small.csv"))
    density = MarginalDensity.from_model(design, model.priors, system)
    read = unpack(density.data)
    assert list(read) == [name for name, _, _ in FIELDS]
    for name, value in {**system.factored()._asdict(), **system.sampled()._asdict()}.items():
        np.testing.assert_array_equal(read[name], value, err_msg=name)
        assert read[name].dtype == np.asarray(value).dtype, name
    np.testing.assert_array_equal(pack(read), density.data)
    with pytest.raises(ValueError, match="pair_val"):
        pack({**read, "pair_val": np.zeros((2, 2))})
