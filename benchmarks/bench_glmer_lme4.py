"""GLMM speed and optimum: bl.glmer against lme4::glmer, same data, same run.

    python3 benchmarks/bench_glmer_lme4.py [--cases cbpp cbpp_agq10 grouseticks verbagg
                                            slopes50k] [--repeats 3] [--stem glmer_vs_lme4]

Cases: lme4's own data sets as exported by ``tests/data/lme4_glmer.R`` (cbpp, binomial
``cbind(incidence, size - incidence) ~ period + (1 | herd)`` by Laplace and nAGQ = 10;
grouseticks, Poisson ``TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 |
LOCATION)``; VerbAgg, Bernoulli ``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 |
item)``, 7,584 rows) and a simulated Bernoulli ``y ~ x + (1 + x | g)``, 50,000 rows in
1,000 groups (:func:`simulate_slopes`, seed 2026, written to a CSV that both sides read).
lme4 is timed inside R with its default settings
(``benchmarks/glmer_lme4.R``: ``system.time`` around ``glmer``, best of the repeats, R's
start-up and reading the CSV excluded); bl.glmer likewise in this process (import and
reading excluded; its time includes the finite-difference Hessian for the SEs, as lme4's
does). ``deviance_difference`` < 0: bayeslmm's optimum is lower (better). Writes
``benchmarks/results/{stem}.{csv,md}``. Needs R with lme4.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # this tree's bayeslmm, not an installed one
from _report import write  # noqa: E402

import bayeslmm as bl  # noqa: E402

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
CASES = {
    "cbpp": ("cbpp.csv", CBPP, "binomial", 1, ["herd", "period"]),
    "cbpp_agq10": ("cbpp.csv", CBPP, "binomial", 10, ["herd", "period"]),
    "grouseticks": ("grouseticks.csv",
                    "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                    "poisson", 1, ["YEAR", "BROOD", "INDEX", "LOCATION"]),
    "verbagg": ("verbagg.csv", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                "binomial", 1, ["Gender", "item", "id", "btype", "situ", "r2"]),
    "slopes50k": (None, "y ~ x + (1 + x | g)", "binomial", 1, ["g"]),
}  # fmt: skip


def simulate_slopes(path: Path, n_groups: int = 1000, per_group: int = 50,
                    seed: int = 2026) -> None:  # fmt: skip
    """A Bernoulli ``y ~ x + (1 + x | g)``: ``eta = -0.5 + 0.8 x + b0_g + b1_g x`` with
    SDs 1 and 0.5 and correlation 0.3 between ``b0`` and ``b1``, ``x ~ N(0, 1)``."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    sd = np.array([1.0, 0.5])
    cov = np.outer(sd, sd) * np.array([[1.0, 0.3], [0.3, 1.0]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=n_groups)
    eta = -0.5 + 0.8 * x + b[g, 0] + b[g, 1] * x
    y = (rng.random(g.size) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
    pd.DataFrame({"y": y, "x": x, "g": [f"g{k:04d}" for k in g]}).to_csv(path, index=False)


def load(case: dict) -> pd.DataFrame:
    data = pd.read_csv(case["csv"], dtype=dict.fromkeys(case["factors"], str))
    return data.astype(dict.fromkeys(case["factors"], "category"))


def ours(case: dict) -> tuple[float, float]:
    data = load(case)
    best, fit = float("inf"), None
    for _ in range(case["repeats"]):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bl.SingularFitWarning)
            fit = bl.glmer(case["formula"], data, family=case["family"], nAGQ=case["nAGQ"])
        best = min(best, time.perf_counter() - start)
    return best, fit.deviance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stem", default="glmer_vs_lme4", help="name of the results files")
    args = parser.parse_args()
    rows, load = [], [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        todo = []
        for name in args.cases:
            csv, formula, family, nagq, factors = CASES[name]
            if csv is None:  # simulated
                csv = folder / f"{name}.csv"
                simulate_slopes(csv)
            todo.append({"id": name, "csv": str(DATA / csv), "formula": formula,
                         "family": family, "nAGQ": nagq, "factors": factors,
                         "repeats": args.repeats,
                         "classes": dict.fromkeys(factors, "factor")})  # fmt: skip
        (folder / "cases.json").write_text(json.dumps(todo))
        subprocess.run(["Rscript", str(HERE / "glmer_lme4.R"), str(folder / "cases.json"),
                        str(folder / "lme4.json")], check=True)  # fmt: skip
        theirs = json.loads((folder / "lme4.json").read_text())
        load.append(os.getloadavg()[0])
        results = {case["id"]: ours(case) for case in todo}  # the CSVs still there
    for case in todo:
        seconds, deviance = results[case["id"]]
        ref = theirs[case["id"]]
        rows.append({
            "case": case["id"], "family": case["family"], "nAGQ": case["nAGQ"],
            "bayeslmm_s": seconds, "lme4_s": ref["seconds"],
            "lme4_over_bayeslmm": ref["seconds"] / seconds,
            "deviance": deviance, "deviance_difference": deviance - ref["deviance"],
            "relative_difference": (deviance - ref["deviance"]) / abs(ref["deviance"]),
            "lme4_evaluations": ref["evaluations"],
        })  # fmt: skip
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    load.append(os.getloadavg()[0])
    command = " ".join(["python3 benchmarks/bench_glmer_lme4.py", *sys.argv[1:]])
    commit = subprocess.run(["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    note = (f"bl.glmer vs lme4 {theirs['meta']['lme4']} glmer with its defaults "
            f"({theirs['meta']['R']}), same machine and run, fitting call only (best of "
            f"{args.repeats}); deviance = -2 logLik; deviance_difference < 0: bayeslmm's "
            "optimum is lower (better). Machine shared with other users (2 cores): 1-minute "
            f"load average {load[0]:.2f} at the start, {load[1]:.2f} after lme4's runs, "
            f"{load[2]:.2f} after bayeslmm's. bayeslmm at commit {commit} of its tree. "
            f"Command: {command}")  # fmt: skip
    write(table, args.stem, note)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
