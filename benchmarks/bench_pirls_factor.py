"""PIRLS per evaluation: the blocked Cholesky against the earlier two-block factorisation.

    python3 benchmarks/bench_pirls_factor.py [--old-tree DIR] [--repeats 5]

Times one conditional-mode evaluation (``GlmmProblem.pirls(theta, beta)``, what every
deviance evaluation of ``bl.glmer`` costs) at each case of ``bench_glmer_lme4.py``,
alternating between lme4's optimum and a point 1e-3 away so that every call iterates
from the other's mode. ``--old-tree`` names a copy of the package before this change
(``git archive 4a03825 bayeslmm | tar -x -C DIR``: ``BlockedFactor``, the widest term's
blocks plus a dense Schur complement, assembled by numba, solved with scipy); each tree is
timed in its own process, one after the other. Writes
``benchmarks/results/glmer_pirls_factor.{csv,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from bayeslmm.gaussian.profiled import ThetaLayout
from bayeslmm.glmm.pirls import GlmmProblem
from bayeslmm.spec.response import glm_design
from bench_glmer_lme4 import load
cases = json.loads(open(sys.argv[3]).read())
out = {}
with threadpool_limits(1, user_api="blas"):
    for case in cases:
        design, response = glm_design(case["formula"], load(case), case["family"])
        layout = ThetaLayout.from_design(design)
        problem = GlmmProblem(design.X, [(b.Z, b.codes, b.n_levels) for b in design.blocks],
                              layout.factors, response.family, response.y, response.weights,
                              response.offset)
        theta, beta = np.array(case["theta"]), np.array(case["beta"])
        other = theta * (1 + 1e-3)
        problem.pirls(theta, beta)
        problem.pirls(other, beta)
        best, deviance = float("inf"), None
        for _ in range(case["repeats"]):
            start = time.perf_counter()
            for k in range(case["calls"]):
                state = problem.pirls(other if k % 2 else theta, beta)
            best = min(best, (time.perf_counter() - start) / case["calls"])
        state = problem.pirls(theta, beta)
        out[case["id"]] = {"seconds": best, "laplace": problem.laplace(state),
                           "iterations": int(state.iterations)}
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-tree", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    import warnings

    import pandas as pd
    from _report import write
    from bench_glmer_lme4 import CASES, DATA, load, simulate_slopes

    import bayeslmm as bl

    rows, load_avg = [], [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = []
        for name, (csv, formula, family, nagq, factors) in CASES.items():
            if nagq != 1:
                continue
            if csv is None:
                csv = folder / f"{name}.csv"
                simulate_slopes(csv)
            case = {"id": name, "csv": str(DATA / csv), "formula": formula, "family": family,
                    "factors": factors, "repeats": args.repeats}  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = bl.glmer(formula, load(case), family=family)
            n = fit.design.n_obs
            case.update(theta=fit.theta.tolist(), beta=fit.beta.tolist(), rows=n,
                        calls=int(max(4, min(200, 2e6 // n))))  # fmt: skip
            cases.append(case)
        (folder / "cases.json").write_text(json.dumps(cases))
        timed = {}
        for label, tree in [("blocked_cholesky", str(ROOT)), ("two_block", args.old_tree)]:
            if tree is None:
                continue
            done = subprocess.run([sys.executable, "-c", CHILD, tree, str(HERE),
                                   str(folder / "cases.json")], capture_output=True,
                                  text=True, check=True)  # fmt: skip
            timed[label] = json.loads(done.stdout.strip().splitlines()[-1])
            load_avg.append(os.getloadavg()[0])
    for case in cases:
        row = {"case": case["id"], "rows": case["rows"]}
        for label, result in timed.items():
            row[f"{label}_ms"] = 1e3 * result[case["id"]]["seconds"]
            row[f"{label}_laplace"] = result[case["id"]]["laplace"]
        if "two_block" in timed:
            row["speedup"] = row["two_block_ms"] / row["blocked_cholesky_ms"]
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    command = " ".join(["python3 benchmarks/bench_pirls_factor.py", *sys.argv[1:]])
    note = ("One PIRLS evaluation (conditional modes at theta and beta, the Laplace deviance's "
            "work per evaluation), warm-started from the mode 1e-3 away in theta, best of "
            f"{args.repeats}: the blocked Cholesky (this tree) against the two-block "
            "factorisation it replaced (commit 4a03825), each in its own process, one after "
            "the other. Machine shared with other users (2 cores): 1-minute load average "
            + ", ".join(f"{v:.2f}" for v in load_avg)
            + f" (start, after each). Command: {command}")  # fmt: skip
    write(table, "glmer_pirls_factor", note)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
