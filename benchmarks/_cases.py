"""Data sets of the crossed-design benchmarks (shared by bench_lmer.py and bench_samplers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

#: Formulas on the subjects x items data: intercepts only, independent slopes, correlated
#: slopes (4 terms per factor), and the maximal model (8 terms per factor).
SUBJECTS_ITEMS = {
    "si_intercepts": "rt ~ S + P + C + (1 | subj) + (1 | item)",
    "si_independent": "rt ~ S + P + C + (1 + S + P + C || subj) + (1 + S + P + C || item)",
    "si_correlated": "rt ~ S * P * C + (1 + S + P + C | subj) + (1 + S + P + C | item)",
    "si_maximal": "rt ~ S * P * C + (1 + S * P * C | subj) + (1 + S * P * C | item)",
}
INSTEVAL = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"


def subjects_items(seed: int = 0, n_subj: int = 56, n_item: int = 32, dropped: int = 2,
                   sigma: float = 80.0) -> pd.DataFrame:  # fmt: skip
    """A psycholinguistic experiment: every subject reads every item once, in one of the
    eight cells of a 2 x 2 x 2 within design (S, P, C coded -0.5/0.5, Latin-square
    counterbalanced), with correlated by-subject and by-item intercepts and slopes."""
    rng = np.random.default_rng(seed)
    subj, item = np.meshgrid(np.arange(n_subj), np.arange(n_item), indexing="ij")
    subj, item = subj.ravel(), item.ravel()
    cell = (subj + item) % 8
    S = ((cell >> 0) & 1) - 0.5
    P = ((cell >> 1) & 1) - 0.5
    C = ((cell >> 2) & 1) - 0.5
    beta = np.array([600.0, 30.0, 15.0, 10.0, 8.0, 0.0, 5.0, 0.0])  # S*P*C in formulaic order
    X = np.column_stack([np.ones_like(S), S, P, C, S * P, S * C, P * C, S * P * C])

    def effects(n: int, sds: list[float], cor: float) -> np.ndarray:
        R = np.full((4, 4), cor) + (1 - cor) * np.eye(4)
        return rng.multivariate_normal(np.zeros(4), np.outer(sds, sds) * R, size=n)

    us = effects(n_subj, [60.0, 20.0, 15.0, 10.0], 0.3)
    ui = effects(n_item, [40.0, 15.0, 10.0, 10.0], 0.2)
    Z = np.column_stack([np.ones_like(S), S, P, C])
    rt = X @ beta + np.sum(Z * us[subj], axis=1) + np.sum(Z * ui[item], axis=1)
    rt = rt + rng.normal(0.0, sigma, len(rt))
    frame = pd.DataFrame({"rt": rt, "S": S, "P": P, "C": C,
                          "subj": [f"s{k:02d}" for k in subj],
                          "item": [f"i{k:02d}" for k in item]})  # fmt: skip
    keep = np.ones(len(frame), bool)
    keep[rng.choice(len(frame), dropped, replace=False)] = False
    return frame[keep].reset_index(drop=True)


def insteval() -> pd.DataFrame:
    """lme4's InstEval (exported by data/export_insteval.R); grouping columns as text."""
    frame = pd.read_csv(HERE / "data" / "insteval.csv.gz")
    for col in ("s", "d", "dept"):
        frame[col] = frame[col].astype(str)
    frame["service"] = frame["service"].astype(float)
    return frame


DATA = HERE.parent / "tests" / "data"

#: GLMM cases: bayeslmm formula, bambi formula, family (issue 26's benchmark)
GLMM_CASES = {
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)",
             "p(incidence, size) ~ period + (1 | herd)", "binomial"),
    "grouseticks": ("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                    None, "poisson"),
    "verbagg": ("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", None, "bernoulli"),
    "sim50k_bernoulli": ("y ~ x + (1 + x | g)", "y ~ x + (1 + x | g)", "bernoulli"),
}  # fmt: skip


def _factor(values) -> pd.Categorical:
    """Values as a factor (levels sorted as text)."""
    return pd.Categorical(pd.Series(values).astype(str))


def glmm_case(case: str) -> tuple[pd.DataFrame, list[str]]:
    """Data (grouping and factor columns as text, a 0/1 integer response where Bernoulli)
    and grouping columns of a GLMM case: lme4's cbpp, grouseticks and VerbAgg as exported
    by ``tests/data/lme4_glmer.R``, or 50,000 simulated Bernoulli rows in 1,000 groups with
    a correlated random intercept and slope (seed 42)."""
    if case == "cbpp":
        d = pd.read_csv(DATA / "cbpp.csv")
        return d.assign(herd=_factor(d.herd), period=_factor(d.period)), ["herd"]
    if case == "grouseticks":
        g = pd.read_csv(DATA / "grouseticks.csv")
        for col in ("YEAR", "BROOD", "INDEX", "LOCATION"):
            g[col] = _factor(g[col])
        return g, ["BROOD", "INDEX", "LOCATION"]
    if case == "verbagg":
        v = pd.read_csv(DATA / "verbagg.csv")
        return v.assign(r2=(v.r2 == "Y").astype(int), id=_factor(v.id)), ["id", "item"]
    if case == "sim50k_bernoulli":
        rng = np.random.default_rng(42)
        rows, groups = 50_000, 1_000
        g = rng.integers(0, groups, rows)
        x = rng.normal(size=rows)
        u = rng.multivariate_normal([0.0, 0.0], [[0.5, 0.1], [0.1, 0.25]], size=groups)
        eta = -0.5 + 0.8 * x + u[g, 0] + u[g, 1] * x
        y = (rng.uniform(size=rows) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
        return pd.DataFrame({"y": y, "x": x, "g": _factor([f"g{k}" for k in g])}), ["g"]
    raise KeyError(case)
