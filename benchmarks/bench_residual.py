"""Residual correlation structures: speed of ``bl.lmer`` against nlme, and the cost of the
marginal model's gradient against rows per group.

    python3 benchmarks/bench_residual.py [--repeats 3]

Needs R with nlme (``Rscript``). Writes ``benchmarks/results/residual_lmer.{csv,md}``
(REML fits of the reference cases of tests/data/nlme_residual.R and of simulated AR(1)
data, 1 + x | g, phi = 0.5, up to 50,000 rows: median wall time of bayeslmm and of nlme
measured in the same run, and their ratio) and ``residual_gradient.{csv,md}`` (one
evaluation of the log density and its gradient, PyMC's compiled function: the marginal
model on weighted statistics against the explicit model, 200 groups, 10 to 200 rows
each).
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayeslmm as bl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write  # noqa: E402

REFERENCE = json.loads((ROOT / "tests" / "data" / "nlme_residual.json").read_text())


def simulated(groups: int, per_group: int, seed: int = 1) -> pd.DataFrame:
    """y ~ x + (1 + x | g) with AR(1) residuals (phi = 0.5) at times 0 .. per_group - 1."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    t = np.tile(np.arange(per_group), groups)
    x = rng.normal(size=len(g))
    e = np.empty(len(g))
    z = rng.normal(size=len(g))
    for k in range(per_group):
        rows = t == k
        e[rows] = z[rows] if k == 0 else 0.5 * e[t == k - 1] + np.sqrt(0.75) * z[rows]
    u = rng.normal(size=(groups, 2)) * [1.0, 0.5]
    y = 1 + 0.5 * x + u[g, 0] + u[g, 1] * x + e
    return pd.DataFrame({"g": [f"g{j}" for j in g], "t": t, "x": x, "y": y})


def _data(name: str) -> pd.DataFrame:
    if name == "sleepstudy_gaps":
        d = bl.load_dataset("sleepstudy")
        return d[~(d.Days.isin([3, 4]) & (d.Subject.astype(int) % 2 == 0))]
    if name.startswith("residual_sim"):
        return pd.read_csv(ROOT / "tests" / "data" / f"{name}.csv")
    return bl.load_dataset(name)


def _structure(case: dict):
    if case["structure"] == "AR1":
        return bl.AR1(time=case["time"], group=case["group"])
    return bl.CompoundSymmetry(group=case["group"])


def _r_call(case: dict) -> str:
    """nlme's call for a case (lme with optim, which converges on every case; gls)."""
    random = re.findall(r"\(([^()]*\|[^()]*)\)", case["formula"])
    fixed = re.sub(r"\s*\+\s*\([^()]*\|[^()]*\)", "", case["formula"])
    group = case["group"] if isinstance(case["group"], str) else "/".join(case["group"])
    if case["structure"] == "AR1":
        time = case["time"] or "1"
        cor = f"corAR1(form = ~ {time} | {group})"
    else:
        cor = f"corCompSymm(form = ~ 1 | {group})"
    formula = fixed
    if not random:
        return f"gls({formula}, data = d, correlation = {cor}, method = 'REML')"
    lhs, grp = (s.strip() for s in random[0].split("|"))
    lhs = lhs.replace("0 +", "-1 +").replace("0+", "-1+")
    if lhs.startswith("-1 + "):
        lhs = lhs[5:] + " - 1"
    return (f"lme({formula}, random = ~ {lhs} | {grp}, data = d, correlation = {cor}, "
            "method = 'REML', control = lmeControl(opt = 'optim'))")  # fmt: skip


def time_nlme(frame: pd.DataFrame, call: str, repeats: int, chars: list[str]) -> float:
    """Median seconds of ``call`` in R on ``frame`` (written to a temporary CSV)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.csv"
        frame.to_csv(path, index=False)
        classes = ", ".join(f"{c} = 'character'" for c in chars)
        read = f"read.csv('{path}', colClasses = c({classes}))" if chars else f"read.csv('{path}')"
        script = (
            "suppressMessages(library(nlme))\n"
            f"d <- {read}\n"
            f"invisible({call})\n"
            f"t <- replicate({repeats}, system.time({call})[['elapsed']])\n"
            "cat(median(t))\n"
        )
        out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True,
                             timeout=3600)  # fmt: skip
        if out.returncode:
            return float("nan")
        return float(out.stdout.strip().split()[-1])


def time_python(fn, repeats: int) -> float:
    fn()  # numba and caches warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def lmer_table(repeats: int) -> pd.DataFrame:
    rows = []
    cases = [(cid, c, _data(c["data"])) for cid, c in REFERENCE.items()]
    for groups, per_group in [(200, 10), (200, 50), (1000, 10), (1000, 50)]:
        case = {"formula": "y ~ x + (x | g)", "structure": "AR1", "time": "t", "group": "g"}
        cases.append((f"sim {groups} x {per_group}", case, simulated(groups, per_group)))
    for cid, case, frame in cases:
        structure = _structure(case)

        def fit(case=case, frame=frame, structure=structure):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return bl.lmer(case["formula"], frame, residual=structure)

        ours = time_python(fit, repeats)
        chars = [c for c in frame.columns
                 if not pd.api.types.is_numeric_dtype(frame[c]) or c == "Subject"]  # fmt: skip
        theirs = time_nlme(frame, _r_call(case), repeats, chars)
        rows.append({"case": cid, "rows": len(frame), "formula": case["formula"],
                     "structure": repr(structure), "bayeslmm_s": ours, "nlme_s": theirs,
                     "nlme / bayeslmm": theirs / ours})  # fmt: skip
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def gradient_table(repeats: int) -> pd.DataFrame:
    rows = []
    for per_group in (10, 50, 200):
        frame = simulated(200, per_group)
        for method in ("marginal", "full"):
            model = bl.LMM("y ~ x + (x | g)", frame, residual=bl.AR1(time="t", group="g"))
            pm_model = model.marginal_model if method == "marginal" else model.pymc_model
            f = pm_model.logp_dlogp_function(ravel_inputs=True)
            f.set_extra_values({})
            x = np.concatenate([np.ravel(v) for v in pm_model.initial_point().values()])
            seconds = time_python(lambda f=f, x=x: [f(x) for _ in range(100)], repeats) / 100
            rows.append({"groups": 200, "rows per group": per_group, "rows": len(frame),
                         "model": method, "logp + gradient (ms)": 1e3 * seconds})  # fmt: skip
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    grad = gradient_table(args.repeats)
    write(grad, "residual_gradient",
          "One log density + gradient evaluation (PyMC's compiled function, C backend), "
          "y ~ x + (x | g) with AR(1) residuals, 200 groups: the marginal model on "
          "R(phi)^-1-weighted per-level statistics against the explicit model "
          f"(method='full'); median of {args.repeats} x 100 calls.")  # fmt: skip
    table = lmer_table(args.repeats)
    write(table, "residual_lmer",
          f"REML fits with a residual structure: median wall time of {args.repeats} fits "
          "(after one warm-up), bayeslmm's bl.lmer and nlme 3.1-162 (lme with "
          "opt = 'optim', gls) on the same data in the same run; 'sim G x m': simulated "
          "AR(1) data, G groups of m rows.")  # fmt: skip
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
