"""Cost of a Bayes factor and of leave-one-group-out relative to the fit they follow.

    python3 benchmarks/bench_model_comparison.py [--seeds 1 2 3] [--rows 50000 --groups 500]

For each case and seed: the fit (nutpie on the compiled marginal density, 4 chains x
1000 draws after 1000 tuning steps), then ``model.log_marginal_likelihood()`` (bridge
sampling) and ``loo(model, by="group")`` (exact per-group marginal likelihood for every
draw, then PSIS), each timed in the same process after a warm-up fit (numba's cache
loaded), and ``bl.compare_random_effects`` end to end (the REML fits, the neighbours'
fits, their Bayes factors and LOGO). Writes
``benchmarks/results/model_comparison.{csv,md}``.
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

import bayeslmm as bl
from bayeslmm.bayes.loo import loo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write  # noqa: E402

FIT = {"draws": 1000, "tune": 1000, "chains": 4, "progressbar": False}


def simulate(rows: int, groups: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, rows)
    x = rng.normal(size=rows)
    u = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], size=groups)
    y = 1.0 + 0.5 * x + u[g, 0] + u[g, 1] * x + rng.normal(size=rows)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(name: str, formula: str, data: pd.DataFrame, seed: int, extra: dict) -> dict:
    model = bl.LMM(formula, data)
    t_fit, _ = timed(lambda: model.fit(random_seed=seed, **FIT, **extra))
    t_bf, ml = timed(lambda: model.log_marginal_likelihood(random_seed=seed))
    t_logo, logo = timed(lambda: loo(model, by="group"))
    t_all, result = timed(lambda: bl.compare_random_effects(model, random_seed=seed, **extra))
    slope = result.table.set_index("kind").loc["slope"]
    return {
        "case": name, "seed": seed, "rows": model.design.n_obs,
        "groups": model.design.blocks[0].n_levels, "fit_s": t_fit, "bridge_s": t_bf,
        "logo_s": t_logo, "bridge_per_fit": t_bf / t_fit, "logo_per_fit": t_logo / t_fit,
        "compare_random_effects_s": t_all, "compare_per_fit": t_all / t_fit,
        "log_ml": ml.logml, "log_ml_error": ml.error, "elpd_logo": logo.elpd_loo,
        "slope_log_BF": slope["log_BF"], "slope_verdict": slope["verdict"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--groups", type=int, default=500)
    args = parser.parse_args()
    cases = [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", bl.load_dataset("sleepstudy"), {}),
        ("classroom", "score ~ edu + (1 + edu | classroom)", bl.load_dataset("classroom"),
         {"target_accept": 0.99}),
        (f"simulated {args.rows:,} rows", "y ~ x + (x | g)", simulate(args.rows, args.groups),
         {}),
    ]  # fmt: skip
    warnings.simplefilter("ignore")
    bl.LMM(cases[0][1], cases[0][2]).fit(random_seed=0, **FIT)  # warm-up: numba's cache
    rows = [run(n, f, d, seed, extra) for n, f, d, extra in cases for seed in args.seeds]
    table = pd.DataFrame(rows)
    medians = table.groupby("case", sort=False)[
        ["fit_s", "bridge_s", "logo_s", "bridge_per_fit", "logo_per_fit",
         "compare_random_effects_s", "compare_per_fit", "log_ml_error"]
    ].median().reset_index()  # fmt: skip
    preamble = (
        "Cost of a Bayes factor (bridge sampling, one model) and of leave-one-group-out "
        "(one model) against the fit they follow (nutpie, 4 x 1000 draws), and "
        "`compare_random_effects` end to end (REML fits, two neighbours fitted, their Bayes "
        f"factors and LOGO); seeds {args.seeds}; {platform.machine()}, Python "
        f"{platform.python_version()}, 2 cores shared. Medians over seeds first, then "
        "every run.\n\n"
    )
    from _report import markdown

    path = write(table, "model_comparison", preamble + markdown(medians))
    print(path.read_text())


if __name__ == "__main__":
    main()
