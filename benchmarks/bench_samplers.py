"""End-to-end sampler benchmark: bayeslmm (marginal, full) against bambi.

    python3 benchmarks/bench_samplers.py [--cases sleepstudy sim50k sim1m crossed5k] [--configs ...]
                                         [--seeds 1 2 3]

Every (case, configuration) runs in its own process, one after another, and reports
wall time (importing the library, building the model, compiling and sampling), the part
of it spent importing the library (PyMC, ArviZ, ...: paid once per process) and the
rest (``fit_s``), min bulk and tail ESS and max R-hat over the population parameters, ESS/s of both,
divergences and peak resident memory. The table goes to
``benchmarks/results/samplers.{csv,md}``. 4 chains x 1,000 draws (1,000 tuning).

GLMM cases (issue 26): lme4's cbpp (binomial), grouseticks (Poisson, three factors), VerbAgg
(Bernoulli, 316 x 24 crossed) and 50,000 simulated Bernoulli rows with ``(1 + x | g)`` in
1,000 groups (``sim50k_bernoulli``; bambi's ``(1 + x | g)`` has no correlation), run
with ``bayeslmm-default`` (the GLMM's default method and sampler) or ``bayeslmm-full``.

Configurations: ``bayeslmm-default`` (``method=None``), ``bayeslmm-marginal``,
``bayeslmm-full``, ``bambi-pymc``, ``bambi-nutpie``, ``bambi-numpyro`` (this Python's stack:
bambi 0.17 on PyMC 5 under Python 3.11); ``py313:CONFIG`` runs CONFIG on the second stack,
Python 3.13 with PyMC 6 / ArviZ 1.x and bambi 0.21, inside the Debian root that
``ci/stack-py313`` makes (run it once first), on the same machine in the same run
(``py313:bambi-nutpie``, ``py313:bayeslmm-marginal``); ``bayeslmm-METHOD-SAMPLER`` (e.g.
``bayeslmm-marginal-nutpie``) picks bayeslmm's NUTS implementation, to choose its default;
without it bayeslmm runs its default, ``sampler="auto"``. ``bayeslmm-marginal-cold`` runs
the default with an empty numba cache (a new installation's first fit: the compiled density
of :mod:`bayeslmm.bayes.density` is compiled then, and loaded from numba's on-disk cache
afterwards). The other bayeslmm rows are measured after one untimed warm-up process has
filled that cache. Cases: lme4's sleepstudy, ``(Days | Subject)`` (bambi's terms carry no
correlation: it fits the easier model) and ``(Days || Subject)``
(``sleepstudy_independent``, bambi's ``(Days | Subject)``: the same model); simulated
correlated random intercept and slope with 50,000 rows / 500 groups (``sim50k``) or
1,000,000 / 10,000 (``sim1m``, bayeslmm only);
``crossed5k``: 5,000 rows with crossed factors of 100 and 50 levels; a simulated
psycholinguistic experiment, 56 subjects x 32 items in a 2x2x2 within design
(``benchmarks/_cases.py``), with random intercepts (``si_intercepts``), 4 independent terms
per factor (``si_independent``; bambi's terms are independent anyway) and 4 correlated terms
per factor (``si_correlated``: bambi has no correlations, so the comparison is bayeslmm's
explicit model, ``vs_explicit``); lme4's InstEval (``insteval``, 73,421 rows; bayeslmm).
With several ``--seeds`` every configuration runs once per seed (the ratios to bambi's best
compare runs of the same seed) and ``{stem}_median.{csv,md}`` gives the medians over seeds:
one seed's min ESS varies by about 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _cases import (  # noqa: E402
    GLMM_CASES,
    INSTEVAL,
    SUBJECTS_ITEMS,
    glmm_case,
    insteval,
    subjects_items,
)
from _report import write  # noqa: E402

CONFIGS = ["bayeslmm-marginal", "bayeslmm-marginal-cold", "bayeslmm-full",
           "bambi-pymc", "bambi-nutpie", "bambi-numpyro"]  # fmt: skip
#: Prefix of a configuration run on the second stack (Python 3.13, PyMC 6, bambi 0.21).
PY313 = "py313:"
CASES = {
    "sleepstudy": None,
    "sleepstudy_independent": None,  # (Days || Subject): bambi's (Days | Subject)
    "sim50k": (50_000, 500),
    "sim1m": (1_000_000, 10_000),
    "crossed5k": (5_000, (100, 50)),  # y ~ x + (1 | a) + (1 | b)
    # 56 subjects x 32 items, 2x2x2 within (benchmarks/_cases.py)
    "si_intercepts": None,
    "si_independent": None,
    "si_correlated": None,
    "insteval": None,  # lme4's InstEval: 73,421 rows, 2,972 x 1,128 x 14 levels
    **dict.fromkeys(GLMM_CASES),  # binomial, Poisson and Bernoulli (benchmarks/_cases.py)
}
#: bambi's group terms carry no correlations: its (1 + S + P + C | g) is our (... || g)
BAMBI_FORMULA = {
    "sleepstudy_independent": "Reaction ~ Days + (Days | Subject)",
    "si_independent": "rt ~ S + P + C + (1 + S + P + C | subj) + (1 + S + P + C | item)",
}


def load_case(case: str) -> tuple[pd.DataFrame, str, list[str]]:
    """Data, bayeslmm formula and grouping columns."""
    if case in GLMM_CASES:
        data, groups = glmm_case(case)
        return data, GLMM_CASES[case][0], groups
    if case.startswith("sleepstudy"):  # read directly: importing bayeslmm would bill bambi
        data = pd.read_csv(HERE.parent / "datasets" / "sleepstudy.csv")
        data["Subject"] = data["Subject"].astype(str)
        bars = "||" if case == "sleepstudy_independent" else "|"
        return data, f"Reaction ~ Days + (Days {bars} Subject)", ["Subject"]
    if case in SUBJECTS_ITEMS:
        return subjects_items(0), SUBJECTS_ITEMS[case], ["subj", "item"]
    if case == "insteval":
        return insteval(), INSTEVAL, ["s", "d", "dept"]
    rows, groups = CASES[case]
    rng = np.random.default_rng(42)
    if case == "crossed5k":
        a, b = rng.integers(0, groups[0], rows), rng.integers(0, groups[1], rows)
        x = rng.normal(size=rows)
        y = 1.0 + 0.5 * x + rng.normal(0, 0.8, groups[0])[a] + rng.normal(0, 0.5, groups[1])[b]
        frame = pd.DataFrame({"y": y + rng.normal(size=rows), "x": x,
                              "a": pd.Categorical([f"a{i}" for i in a]),
                              "b": pd.Categorical([f"b{i}" for i in b])})  # fmt: skip
        return frame, "y ~ x + (1 | a) + (1 | b)", ["a", "b"]
    g = rng.integers(0, groups, rows)
    x = rng.normal(size=rows)
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    u = rng.multivariate_normal([0, 0], cov, size=groups)
    y = 1.0 + 0.5 * x + u[g, 0] + u[g, 1] * x + rng.normal(size=rows)
    return (
        pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{i}" for i in g])}),
        ("y ~ x + (x | g)"),
        ["g"],
    )


def _group(idata, name: str):
    """A group as an xarray Dataset, from ArviZ 0.x's InferenceData or 1.x's DataTree."""
    group = idata[name]
    return group.to_dataset() if hasattr(group, "to_dataset") else group


def min_ess(idata, var_names: list[str]) -> tuple[float, float, float]:
    """Smallest bulk and tail ESS and largest R-hat over the population parameters."""
    import arviz as az

    post = _group(idata, "posterior")[var_names]
    bulk = az.ess(post, method="bulk")
    tail = az.ess(post, method="tail")
    rhat = az.rhat(post)
    return (
        float(min(bulk[v].min() for v in bulk.data_vars)),
        float(min(tail[v].min() for v in tail.data_vars)),
        float(max(rhat[v].max() for v in rhat.data_vars)),
    )


def run_one(case: str, config: str, draws: int, chains: int, seed: int = 1) -> dict:
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    if config.startswith("bayeslmm"):
        import bayeslmm as bl
    else:
        import bambi as bmb
    imported = time.perf_counter() - start
    data, formula, group = load_case(case)
    if config.startswith("bayeslmm"):
        parts = config.removesuffix("-cold").split("-")
        family = {"family": GLMM_CASES[case][2]} if case in GLMM_CASES else {}
        model = bl.LMM(formula, data, **family)
        idata = model.fit(draws=draws, tune=draws, chains=chains, random_seed=seed,
                          progressbar=False,
                          method=None if parts[1] == "default" else parts[1],
                          sampler=parts[2] if len(parts) > 2 else "auto")  # fmt: skip
        names = model.population_variables()
    else:
        sampler = config.split("-")[1]
        if case in GLMM_CASES:
            _, bambi_formula, family = GLMM_CASES[case]
            model = bmb.Model(bambi_formula or formula, data, family=family)
        else:
            model = bmb.Model(BAMBI_FORMULA.get(case, formula), data)
        kwargs = {"inference_method": sampler}
        idata = model.fit(draws=draws, tune=draws, chains=chains, random_seed=seed,
                          progressbar=False, **kwargs)  # fmt: skip
        names = [  # population parameters: no dimension over the group's levels
            v for v, da in _group(idata, "posterior").data_vars.items()
            if not any(d.startswith(tuple(f"{g}__" for g in group)) for d in da.dims)
        ]  # fmt: skip
    wall = time.perf_counter() - start
    bulk, tail, rhat = min_ess(idata, names)
    stats = _group(idata, "sample_stats")
    div = int(stats["diverging"].sum()) if "diverging" in stats else -1
    peak_mb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    ) / 1024  # fmt: skip
    import arviz as az

    library = bl if config.startswith("bayeslmm") else bmb
    return {
        "case": case, "config": config, "seed": seed, "rows": len(data), "wall_s": wall,
        "python": sys.version.split()[0], "library": library.__version__,
        "arviz": az.__version__,
        "import_s": imported, "fit_s": wall - imported,
        "min_ess_bulk": bulk, "min_ess_tail": tail, "ess_bulk_per_s": bulk / wall,
        "ess_bulk_per_fit_s": bulk / (wall - imported),
        "max_rhat": rhat, "divergences": div, "peak_mb": peak_mb,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["sleepstudy", "sim50k"])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    parser.add_argument("--stem", default="samplers", help="name of the results files")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(*args.one, args.draws, args.chains,
                                             args.seeds[0])))  # fmt: skip
        return
    rows = []
    # untimed: fills numba's on-disk cache of every kernel (the compiled densities, a GLMM's
    # pointwise log-likelihood, the convergence checks), as the package's build or any
    # earlier fit would
    warm = ["-m", "bayeslmm.warmup"]
    subprocess.run([sys.executable, *warm], capture_output=True, cwd=HERE.parent)
    if any(c.startswith(PY313) for c in args.configs):
        subprocess.run(_on_py313(warm), capture_output=True)
    for case in args.cases:
        for seed in args.seeds:
            for config in args.configs:
                if case == "sim1m" and not config.removeprefix(PY313).startswith(
                        "bayeslmm-marginal"):  # fmt: skip
                    continue
                rows.append(run_process(case, config, seed, args))
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    for _, runs in table.groupby(["case", "seed"]):
        if "ess_bulk_per_s" not in runs:
            continue
        peer = runs["config"].str.removeprefix(PY313).str.startswith("bambi")
        sel = peer & runs["ess_bulk_per_s"].notna()
        if sel.any():
            for rate, column in [("ess_bulk_per_s", "vs_best_bambi"),
                                 ("ess_bulk_per_fit_s", "fit_vs_best_bambi")]:  # fmt: skip
                table.loc[runs.index, column] = runs[rate] / runs.loc[sel, rate].max()
        for line, prefix in (("bambi017", "bambi"), ("bambi021", PY313 + "bambi")):
            own = runs["config"].str.startswith(prefix) & runs["ess_bulk_per_s"].notna()
            if own.any():  # against each bambi line's best on its own
                table.loc[runs.index, f"vs_{line}"] = (runs["ess_bulk_per_s"]
                                                       / runs.loc[own, "ess_bulk_per_s"].max())
        full = runs["config"] == "bayeslmm-full"
        if full.any() and runs.loc[full, "ess_bulk_per_s"].notna().all():
            rate = float(runs.loc[full, "ess_bulk_per_s"].iloc[0])
            table.loc[runs.index, "vs_explicit"] = runs["ess_bulk_per_s"] / rate
    note = (f"{args.chains} chains x {args.draws} draws ({args.draws} tuning), one process "
            "per run; wall_s includes importing the library, building and compiling, fit_s "
            "is wall_s less import_s; min ESS over population parameters; vs_best_bambi: "
            "ESS/s over the best bambi sampler's in the same seed; vs_explicit: over "
            "bayeslmm's explicit model (method='full', today's default before the crossed "
            "marginal sampler); bambi's `(x|g)` has no intercept-slope correlation.")  # fmt: skip
    write(table, args.stem, note)
    print(table.to_string(index=False))
    if len(args.seeds) > 1:
        numeric = table.drop(columns=["seed"]).select_dtypes("number").columns
        median = table.groupby(["case", "config"], sort=False)[list(numeric)].median()
        write(median.reset_index(), f"{args.stem}_median",
              f"Medians over seeds {args.seeds} of `{args.stem}.md`. " + note)  # fmt: skip
        print(median.to_string())


def run_process(case: str, config: str, seed: int, args: argparse.Namespace) -> dict:
    """One run in a fresh process; a row that says why where it gave no result."""
    one = ["--one", case, config.removeprefix(PY313), "--draws", str(args.draws),
           "--chains", str(args.chains), "--seeds", str(seed)]  # fmt: skip
    cmd = _py313(one) if config.startswith(PY313) else [sys.executable, __file__, *one]
    env = dict(os.environ)
    # this checkout's bayeslmm, as the warm-up imports it (an installed one would run
    # instead, and compile its own kernels inside the timed runs)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH"))
                                        if p)  # fmt: skip
    if config.endswith("-cold"):
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-numba-")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"case": case, "config": config, "seed": seed,
                "note": f"> {args.timeout} s, stopped"}  # fmt: skip
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if line:
        return {**json.loads(line[-1][7:]), "config": config}
    return {"case": case, "config": config, "seed": seed, "note": out.stderr.strip()[-200:]}


def _on_py313(arguments: list[str]) -> list[str]:
    """The command running ``python ARGUMENTS`` on the second stack (in the checkout)."""
    return ["bash", str(HERE.parent / "ci" / "stack-py313"), "--run", "python", *arguments]


def _py313(arguments: list[str]) -> list[str]:
    """The command running this script with ``arguments`` on the second stack."""
    return _on_py313(["benchmarks/bench_samplers.py", *arguments])


if __name__ == "__main__":
    main()
