"""REML speed: bl.lmer against statsmodels MixedLM, in one process, same data.

    python3 benchmarks/bench_lmer.py [--rows 100000] [--groups 1000]

Cases: sleepstudy ``Reaction ~ Days + (Days|Subject)`` and a simulated data set with a
correlated random intercept and slope. Reports wall time (best of the repeats),
REML estimates of the slope from both and their ratio; writes
``benchmarks/results/lmer_vs_statsmodels.{csv,md}``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

import bayeslmm as bl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write  # noqa: E402


def simulate(rows: int, groups: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, rows)
    x = rng.normal(size=rows)
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    u = rng.multivariate_normal([0, 0], cov, size=groups)
    y = 1.0 + 0.5 * x + u[g, 0] + u[g, 1] * x + rng.normal(scale=1.0, size=rows)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def run_case(name: str, data: pd.DataFrame, y: str, x: str, g: str, repeats: int) -> dict:
    formula = f"{y} ~ {x} + ({x} | {g})"
    t_bl, fit = best_time(lambda: bl.lmer(formula, data), repeats)

    def statsmodels_fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = smf.mixedlm(f"{y} ~ {x}", data, groups=data[g], re_formula=f"~{x}")
            return model.fit(reml=True)

    t_sm, sm = best_time(statsmodels_fit, repeats)
    return {
        "case": name, "rows": len(data), "groups": data[g].nunique(), "formula": formula,
        "bayeslmm_s": t_bl, "statsmodels_s": t_sm, "speedup": t_sm / t_bl,
        "slope_bayeslmm": float(fit.fixef()["estimate"][x]),
        "slope_statsmodels": float(sm.fe_params[x]),
        "reml_loglik_bayeslmm": fit.loglik, "reml_loglik_statsmodels": float(sm.llf),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    args = parser.parse_args()
    rows = [
        run_case("sleepstudy", bl.load_dataset("sleepstudy"), "Reaction", "Days", "Subject", 5),
        run_case(
            f"simulated {args.rows:,} rows", simulate(args.rows, args.groups), "y", "x", "g", 1
        ),
    ]
    table = pd.DataFrame(rows)
    note = (f"REML fits, wall time in seconds (best of 5 on sleepstudy, 1 on the simulated "
            f"set); {platform.processor() or platform.machine()}, Python "
            f"{platform.python_version()}.")  # fmt: skip
    write(table, "lmer_vs_statsmodels", note)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
