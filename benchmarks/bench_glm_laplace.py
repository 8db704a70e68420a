"""``method="laplace"`` (APPROXIMATE: nutpie on the Laplace marginal posterior, random
effects drawn afterwards from the Laplace Gaussian) against the exact default
(``method=None``: nutpie on the compiled density with every random effect sampled), same
run, same seed, case by case: wall time of the fit, min bulk ESS over the population
parameters (fixed effects, SDs, correlations), ESS/s, divergences, max R-hat, and the
difference of every population parameter's posterior mean and SD between the two, in
units of the exact posterior SD and of the Monte Carlo error of the difference.

    python benchmarks/bench_glm_laplace.py [--draws 1000] [--chains 4] [--seed 1]
        [--cases cbpp grouseticks verbagg sim50k_bernoulli] [--stem glm_laplace]

Cases from ``benchmarks/_cases.py`` (``glmm_case``: lme4's cbpp, grouseticks, VerbAgg;
50,000 simulated Bernoulli rows ``y ~ x + (1 + x | g)``, seed 42). Writes
``benchmarks/results/{stem}.csv`` and ``.md`` (one row per case and method, then one per
case and parameter). The compiled kernels are loaded, not compiled, in the timed fits:
a warm-up fit of cbpp with each method runs first.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this tree's bayeslmm
sys.path.insert(0, str(HERE))

from _cases import GLMM_CASES, glmm_case  # noqa: E402
from _report import markdown, write  # noqa: E402

import bayeslmm as bl  # noqa: E402
from bayeslmm.bayes import stack  # noqa: E402


def fit(case: str, method: str | None, draws: int, chains: int, seed: int):
    formula, _, family = GLMM_CASES[case]
    data, _ = glmm_case(case)
    start = time.perf_counter()
    model = bl.LMM(formula, data, family=family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(draws=draws, tune=draws, chains=chains, random_seed=seed,
                  progressbar=False, method=method)  # fmt: skip
    wall = time.perf_counter() - start
    post = stack.posterior(model.idata)[model.population_variables()]
    return model, post, wall


def _flat(post) -> dict[str, np.ndarray]:
    """(chain, draw) draws of every population parameter, by name."""
    out = {}
    for name, da in post.data_vars.items():
        values = da.transpose("chain", "draw", ...).values
        values = values.reshape(values.shape[0], values.shape[1], -1)
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        named = len(extra) == 1 and extra[0] in da.coords
        names = list(map(str, da.coords[extra[0]].values)) if named else range(values.shape[2])
        for j, coord in enumerate(names):
            label = name if values.shape[2] == 1 else f"{name}[{coord}]"
            out[label] = values[:, :, j]
    return out


def run(case: str, draws: int, chains: int, seed: int) -> tuple[list[dict], list[dict]]:
    rows, params, results = [], [], {}
    for label, method in (("exact (default)", None), ("laplace (APPROXIMATE)", "laplace")):
        model, post, wall = fit(case, method, draws, chains, seed)
        summary = stack.summary(post, 0.94)
        ess = float(np.min(summary["ess_bulk"]))
        results[label] = (_flat(post), summary)
        rows.append({"case": case, "method": label, "wall_s": round(wall, 1),
                     "sampling_s": round(model.fit_info.seconds, 1),
                     "min_bulk_ess": round(ess), "ess_per_s": round(ess / wall, 1),
                     "divergences": model.convergence.divergences,
                     "max_rhat": round(float(np.max(summary["r_hat"])), 4)})  # fmt: skip
        print(rows[-1], flush=True)
    (exact, _), (approx, _) = results["exact (default)"], results["laplace (APPROXIMATE)"]
    for name in exact:
        a, b = exact[name], approx[name]
        sd = float(a.std())
        mcse = float(np.hypot(_mcse(a), _mcse(b)))
        diff = float(b.mean() - a.mean())
        params.append({"case": case, "parameter": name, "exact_mean": round(float(a.mean()), 4),
                       "laplace_mean": round(float(b.mean()), 4), "exact_sd": round(sd, 4),
                       "laplace_sd": round(float(b.std()), 4),
                       "mean_diff_in_sd": round(diff / sd, 3),
                       "mean_diff_in_mcse": round(diff / mcse, 2),
                       "sd_ratio": round(float(b.std()) / sd, 3)})  # fmt: skip
    return rows, params


def _mcse(x: np.ndarray) -> float:
    """Monte Carlo SE of the mean of (chain, draw) draws (ESS from the batch means of 20
    batches per chain, pooled)."""
    chains, n = x.shape
    batches = 20
    size = n // batches
    means = x[:, : size * batches].reshape(chains, batches, size).mean(axis=2)
    return float(means.std(ddof=1) / np.sqrt(chains * batches))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", nargs="+", default=list(GLMM_CASES))
    parser.add_argument("--stem", default="glm_laplace")
    args = parser.parse_args()
    with warnings.catch_warnings():  # load the compiled kernels outside the timings
        warnings.simplefilter("ignore")
        for method in (None, "laplace"):
            fit("cbpp", method, 100, 1, 0)
    rows, params = [], []
    for case in args.cases:  # the tables are rewritten after every case
        r, p = run(case, args.draws, args.chains, args.seed)
        rows += r
        params += p
        report(args, rows, params)


def report(args, rows: list[dict], params: list[dict]) -> None:
    """Write the tables of the cases run so far."""
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    preamble = (
        "# method='laplace' (APPROXIMATE Laplace marginal) vs the exact default\n\n"
        f"`python benchmarks/bench_glm_laplace.py --draws {args.draws} --chains {args.chains} "
        f"--seed {args.seed} --cases {' '.join(args.cases)}` (cases so far: "
        f"{', '.join(dict.fromkeys(r['case'] for r in rows))}) at commit {commit} "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load "
        f"average {load:.1f} at the end). Both fits in the same run; wall time includes "
        "building the model and, for laplace, the APPROXIMATE draws of the random effects "
        "from the Laplace Gaussian at every posterior draw. min bulk ESS over the population "
        "parameters. Differences of posterior means in units of the exact posterior SD and of "
        "the Monte Carlo SE of the difference (batch means, both fits)."
    )
    table = pd.DataFrame(rows)
    path = write(table, args.stem, preamble)
    details = pd.DataFrame(params)
    details.to_csv(HERE / "results" / f"{args.stem}_parameters.csv", index=False)
    with path.open("a") as fh:
        fh.write("\n## Population parameters, laplace against exact\n\n" + markdown(details))
    print(path.read_text(), flush=True)


if __name__ == "__main__":
    main()
