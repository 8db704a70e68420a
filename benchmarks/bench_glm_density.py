"""Compiled GLMM density (nutpie, the default) against PyMC's graph (``method="full"``,
nutpie) on lme4's cbpp, grouseticks and VerbAgg: wall time, min bulk ESS over the
population parameters (beta, SDs, correlations), ESS/s, divergences, max R-hat.

    python benchmarks/bench_glm_density.py [--draws 1000] [--chains 4] [--seed 1]
        [--cases cbpp grouseticks verbagg] [--methods compiled full]

Writes one CSV row per (case, method) to stdout. The compiled kernel is loaded (not
compiled) in the timed fit: run once first, or after ``python -m bayeslmm.warmup``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]  # this tree's package
import bayeslmm as bl  # noqa: E402
from bayeslmm.bayes import stack  # noqa: E402

DATA = ROOT / "tests" / "data"


def _cases() -> dict[str, tuple[str, pd.DataFrame, str]]:
    cbpp = pd.read_csv(DATA / "cbpp.csv")
    cbpp = cbpp.assign(herd=cbpp.herd.astype("category"), period=cbpp.period.astype("category"))
    grouse = pd.read_csv(DATA / "grouseticks.csv")
    grouse = grouse.assign(**{c: grouse[c].astype("category")
                              for c in ("BROOD", "INDEX", "LOCATION", "YEAR")})  # fmt: skip
    verb = pd.read_csv(DATA / "verbagg.csv")
    verb = verb.assign(r2=(verb.r2 == "Y").astype(int), id=verb.id.astype("category"))
    return {
        "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial"),
        "grouseticks": ("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                        grouse, "poisson"),
        "verbagg": ("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", verb,
                    "bernoulli"),
    }  # fmt: skip


def run(case: str, method: str, draws: int, chains: int, seed: int) -> dict:
    formula, data, family = _cases()[case]
    start = time.perf_counter()
    model = bl.LMM(formula, data, family=family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(draws=draws, tune=draws, chains=chains, random_seed=seed, progressbar=False,
                  sampler="nutpie", method=None if method == "compiled" else "full")  # fmt: skip
    wall = time.perf_counter() - start
    post = stack.posterior(model.idata)[model.population_variables()]
    summary = stack.summary(post, 0.94)
    ess = float(np.min(summary["ess_bulk"]))
    compiled = method == "compiled"  # the graph has one parametrisation for all terms
    return {"case": case, "method": method, "log_density": model.fit_info.log_density,
            "centred": str(model.centred_terms) if compiled else model.parametrization,
            "signed": str(model.signed_terms) if compiled else "",
            "wall_s": round(wall, 2), "sampling_s": round(model.fit_info.seconds, 2),
            "min_bulk_ess": round(ess), "ess_per_s": round(ess / wall, 1),
            "divergences": model.convergence.divergences,
            "max_rhat": round(float(np.max(summary["r_hat"])), 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", nargs="+", default=["cbpp", "grouseticks", "verbagg"])
    parser.add_argument("--methods", nargs="+", default=["compiled", "full"])
    args = parser.parse_args()
    rows = [run(c, m, args.draws, args.chains, args.seed)
            for c in args.cases for m in args.methods]  # fmt: skip
    print(pd.DataFrame(rows).to_csv(index=False), end="")


if __name__ == "__main__":
    main()
