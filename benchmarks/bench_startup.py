"""Start-up: what a user waits for before and during a first fit.

    python3 benchmarks/bench_startup.py [--repeats 5] [--cold-repeats N] [--no-install]
    bash ci/stack-py313 --run python3 benchmarks/bench_startup.py --no-install
    V/bin/python benchmarks/bench_startup.py --no-install   # another environment, e.g. a
                                     # user's: python3 -m venv V && V/bin/pip install .

Every row is a fresh process of the Python running this script, importing this checkout's
bayeslmm (``PYTHONPATH``; checked; its bytecode written first, as pip writes an installed
package's), except the installed wheel's row. Seconds, medians of
``--repeats`` runs; ``cpu_s`` is the process's user + system time (less sensitive than the
wall time to other work on the machine), ``load`` the machine's 1-minute load average when
the run started:

- ``import bayeslmm``;
- what bayeslmm itself imports for every fit: pandas, scipy (special, sparse, optimize;
  not scipy.stats), xarray, numba;
- ``import nutpie + arviz`` alone, and the same after bayeslmm's own imports (those of a
  REML fit: pandas, scipy, xarray, numba and the kernels): what they cost a program that
  imports both;
- nutpie imported as a fit imports it (:func:`bayeslmm.bayes.stack.import_nutpie`: nutpie
  imports ArviZ at module level, which a fit needs only for its statistics and plots) and
  one result container built, after bayeslmm's own imports: what a fit pays for them (on
  ArviZ 0.x its ``arviz.data`` alone, which holds the container and the
  ``arviz.InferenceData`` nutpie 0.16.8 reads as it loads: ``stack.import_partially``; on
  ArviZ 1.x arviz-base alone);
- xarray's first array: xarray imports the duck-array libraries that are installed (dask,
  sparse) the first time it makes an array, to ask whether the array is theirs; and the
  same as a fit makes it, which answers without importing a library that is not imported
  (:func:`bayeslmm.bayes.stack.array_libraries_unimported`);
- a sleepstudy fit (``Reaction ~ Days + (Days | Subject)``, nutpie, 4 chains x 1,000
  draws) with the kernels' cache warm: the whole process, and its parts (import, build:
  imports and the model; fit; exit: from the script's last line to the process's end, the
  interpreter's teardown);
- the same fit with Python's last garbage collection at exit kept
  (``BAYESLMM_EXIT_COLLECTION=1``; by default bayeslmm skips it, :mod:`bayeslmm.shutdown`);
- the same fit with an empty numba cache (``NUMBA_CACHE_DIR`` pointing at an empty
  folder), ``--cold-repeats`` times: what the first fit costs when nothing was compiled at
  installation;
- unless ``--no-install``: ``pip install --no-deps`` of a wheel built from this checkout
  into a new virtual environment (``--system-site-packages``, so the dependencies are the
  machine's): the build (which compiles the kernels, ``hatch_build.py``), then the first
  fit in that environment.

Rows a run leaves out (``--cold-repeats 0``, ``--no-install``) are kept from the last run in
the same environment (their ``load`` column and the CSV say when they ran).

The environment is named by its Python and by whether the test extras are installed
(bambi pulls in arviz-plots/arviz-stats, which ArviZ 0.2x then imports when all of it
loads; sparse, which numba loads as an extension at a function's first call, not at a
bayeslmm kernel's; dask, which xarray imports outside a fit): ``py311-plain``,
``py311-test-extras``, ``py313-plain``, ``py313-test-extras``. Tables:
``benchmarks/results/startup-<environment>.{csv,md}``, and ``startup.md`` gathering them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

FIT = r"""
import json, sys, time
t0 = time.perf_counter()
import bayeslmm as bl
t1 = time.perf_counter()
df = bl.load_dataset("sleepstudy")
m = bl.LMM("Reaction ~ Days + (Days | Subject)", df)
t2 = time.perf_counter()
m.fit(draws=1000, tune=1000, chains=4, random_seed=1, progressbar=False)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "fit_s": t3 - t2,
                  "bayeslmm": bl.__file__, "end": time.time()}), flush=True)
"""

LIBS = r"""
import time
t0, c0 = time.perf_counter(), time.process_time()
import nutpie, arviz  # noqa: F401
print(time.perf_counter() - t0, time.process_time() - c0)
"""

#: nutpie and ArviZ imported after what bayeslmm itself imports for a fit (pandas, scipy,
#: xarray, numba and its kernels): after a REML fit, which imports neither of them
LIBS_AFTER = r"""
import sys, time
import bayeslmm as bl
bl.lmer("Reaction ~ Days + (Days | Subject)", bl.load_dataset("sleepstudy"))
import xarray  # noqa: F401
assert "arviz" not in sys.modules and "nutpie" not in sys.modules
t0, c0 = time.perf_counter(), time.process_time()
import nutpie, arviz  # noqa: F401
print(time.perf_counter() - t0, time.process_time() - c0)
"""

#: nutpie and a result container as a fit gets them, after bayeslmm's own imports
NUTPIE_AS_FIT = r"""
import sys, time
import numpy as np
import bayeslmm as bl
from bayeslmm.bayes import stack
bl.lmer("Reaction ~ Days + (Days | Subject)", bl.load_dataset("sleepstudy"))
import xarray  # noqa: F401
assert "arviz" not in sys.modules and "nutpie" not in sys.modules
t0, c0 = time.perf_counter(), time.process_time()
stack.import_nutpie()
with stack.array_libraries_unimported():
    stack.from_dict({"posterior": {"a": np.zeros((2, 3))}})
print(time.perf_counter() - t0, time.process_time() - c0)
"""

#: what bayeslmm itself imports for any fit (data, special functions, results, kernels)
DEPS = r"""
import time
t0, c0 = time.perf_counter(), time.process_time()
import pandas, scipy.special, scipy.sparse, scipy.optimize, xarray, numba  # noqa: F401
print(time.perf_counter() - t0, time.process_time() - c0)
"""

#: xarray's first array, after xarray, numpy and numba (what a fit has imported by then)
XARRAY = r"""
import time
import numba, numpy as np, xarray as xr  # noqa: F401
t0, c0 = time.perf_counter(), time.process_time()
xr.Variable(("draw",), np.zeros(3))
print(time.perf_counter() - t0, time.process_time() - c0)
"""

#: the same inside a fit, where xarray does not import dask, sparse... to ask about them
XARRAY_IN_FIT = r"""
import time
import numba, numpy as np, xarray as xr  # noqa: F401
from bayeslmm.bayes import stack
t0, c0 = time.perf_counter(), time.process_time()
with stack.array_libraries_unimported():
    xr.Variable(("draw",), np.zeros(3))
print(time.perf_counter() - t0, time.process_time() - c0)
"""

#: optional packages that change what a fit imports (see the module's docstring)
EXTRAS = ("bambi", "arviz_plots", "arviz_stats", "dask", "sparse")


def environment() -> str:
    """``py311-plain`` or ``py311-test-extras`` (bambi installed), for this Python."""
    extras = "test-extras" if importlib.util.find_spec("bambi") else "plain"
    return f"py{sys.version_info.major}{sys.version_info.minor}-{extras}"


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _checkout_env(env: dict | None = None) -> dict:
    """The environment in which a fresh process imports this checkout's bayeslmm."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(python: str, code: str, env: dict | None = None, cwd: Path | None = None) -> tuple:
    """``(wall seconds, last line of stdout, stderr, cpu seconds, load)`` of one process."""
    load = _load()
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run([python, "-c", code], capture_output=True, text=True,
                          env=env, cwd=cwd or tempfile.gettempdir())  # fmt: skip
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    lines = done.stdout.strip().splitlines()
    return wall, lines[-1] if lines else "", done.stderr, cpu, load


def _fit_row(label: str, python: str, env: dict, checkout: bool = True) -> dict:
    wall, out, err, cpu, load = _run(python, FIT, env)
    parts = json.loads(out)
    parts["exit_s"] = time.time() - parts["end"]  # from its last line to its exit, as seen here
    if checkout and not parts["bayeslmm"].startswith(str(ROOT)):
        raise RuntimeError(f"the fit imported {parts['bayeslmm']}, not this checkout's bayeslmm")
    notice = "compiling its numeric kernels" in err
    return {"row": label, "wall_s": wall, "cpu_s": cpu, "load": load,
            **{k: parts[k] for k in ("import_s", "build_s", "fit_s", "exit_s")},
            "notice_printed": notice, "bayeslmm": parts["bayeslmm"]}  # fmt: skip


def _time_row(label: str, python: str, code: str, env: dict, inner: bool = False) -> dict:
    """A row timing ``code``'s process (``inner``: the wall and CPU seconds it prints)."""
    wall, out, _, cpu, load = _run(python, code, env)
    if inner:
        wall, cpu = map(float, out.split())
    return {"row": label, "wall_s": wall, "cpu_s": cpu, "load": load}


def gather() -> str:
    """``startup.md``: every environment's table, newest first."""
    parts = [INTRO]
    tables = sorted(RESULTS.glob("startup-*.md"), key=lambda p: p.stat().st_mtime, reverse=True)
    parts += [f"## {p.stem.removeprefix('startup-')}\n\n{p.read_text()}" for p in tables]
    text = "\n".join(parts)
    (RESULTS / "startup.md").write_text(text)
    return text


INTRO = """# Start-up

A fresh process's wait before and during a first fit, per environment
(`benchmarks/bench_startup.py`, which says what each row measures). Medians of `runs`
processes; `cpu_s` is the process's CPU time, `load` the machine's 1-minute load average
(2 cores, shared with other work: the wall times rise with it, the CPU times much less).

Where a warm fit's time goes: importing pandas, scipy (not scipy.stats), xarray and
numba, which bayeslmm needs itself; nutpie, and ArviZ's result container (nutpie imports
ArviZ at module level; a fit imports nutpie with a stand-in for ArviZ, so that on ArviZ
1.x only arviz-base loads, not ArviZ's statistics, plots, scipy.stats and matplotlib; on
0.2x, where nutpie 0.16.8 reads `arviz.InferenceData` as it loads, `arviz` is its
`arviz.data` alone until a summary or plot asks for more, so that ArviZ's statistics
(which compile a numba ufunc as they load), its plots with matplotlib.pyplot and
arviz-stats do not load: 0.73 s -> 0.24 s, and the 3.11 fit 3.18 s -> 2.22 s); the model,
loading the cached kernels and sampling. Of the test extras, bambi makes ArviZ 0.2x
import arviz-plots/arviz-stats (`arviz.preview`) when all of ArviZ loads, and dask makes
xarray's first array import it (0.27 s of the 3.11 fit: `py311-plain` against
`py311-test-extras`).

The interpreter's exit (`exit_s`, from the script's last line to the process's end) tore
down pandas, SciPy, xarray, numba and nutpie with a full garbage collection: 0.66-0.76 s
of each fit's process in the 2026-12-07 15:52-16:01 UTC runs. bayeslmm now skips that collection
(`bayeslmm.shutdown`: `gc.freeze()` at exit): 0.12-0.17 s, and the whole process 2.82 s
against 3.40 s (3.13), 3.28 s against 3.89 s (3.11 plain) and 3.81 s against 4.76 s
(3.11, test extras), same runs, medians of 7 alternating processes. Those runs' machine
was about twice as slow as the earlier runs' (pandas, SciPy, xarray and numba took
1.26-1.55 s to import against 0.57-0.72 s): compare rows within one run.

The 2026-12-07 18:52-18:55 UTC runs (a quiet machine, about as fast as the earliest runs')
came after two more changes. First, bayeslmm loads its kernels from numba's cache without
numba's refresh of every typing and lowering registry, which compiling needs and loading
machine code does not (`bayeslmm.jit._load_overload`; 0.15-0.25 s, at the first kernel
loaded): the plain 3.11 fit 1.549 s -> 1.495 s, medians of 11 alternating processes in one
run (part of what the refresh imported, scipy.linalg for BLAS among it, now loads with the
kernels that need it). Second, matplotlib (which ArviZ 0.x's `arviz.data` imports, for one
function that shows a figure) and SciPy's sparse solvers (which formulaic imports, for one
contrast function) load at their first use, if any (`bayeslmm.lazy`): 1.735 s -> 1.665 s,
medians of 9 alternating processes. The plain 3.11 row (a virtual environment holding
bayeslmm's dependencies alone, the checkout on `PYTHONPATH`) was 1.55 s at 18:42 with the
second change alone, 1.56 s in a run between 18:42 and 18:52 and 1.44 s at 18:52 with
both: between runs on one machine it moves by about 0.1 s; only rows and A/B medians from
one run compare. The 19:43-19:45 UTC runs, at the reviewed code (635a7be), on the same
machine, quieter still, gave 1.35 s (plain 3.11), 1.59 s (3.11, test extras), 1.47 s
(3.13, test extras).

Two more changes came before the 21:36-21:41 UTC runs (the tables below; 1adb6f0,
6f7c8ff, reviewed in d8d64f4). First, a fit imports no array library to ask about its
arrays: xarray imports dask, sparse, pint, cupy and cubed, where installed, at the first
array it makes, to ask whether the array is theirs (0.25-0.26 s with the test extras:
the row "xarray's first array"), and numba loads every installed numba extension
(sparse registers one) at a function's first call. While a fit runs, xarray's records of
those libraries answer without importing a library not imported yet, since no array of
it can exist (`bayeslmm.bayes.stack.array_libraries_unimported`), and bayeslmm's kernels
skip numba's extension hook (numba's refresh before any compile loads the extensions):
3.11 with the test extras, 1.53-1.55 s -> 1.28-1.31 s a process, 6 alternating
processes. Second, a Gaussian model's log density has a C entry point of its own, from
which numba prunes the GLMM likelihoods: 1.5 MB of machine code against 2.4 MB, loaded
in 0.11 s against 0.14 s (medians of 5 alternating processes). Runs of 21:36-21:41 UTC,
load 1.2-1.6: 1.28 s (plain 3.11), 1.29 s (3.11, test extras), 1.24 s (3.13, test
extras), 1.29 s (plain 3.13: a virtual environment in the 3.13 root holding bayeslmm's
dependencies alone).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--cold-repeats",
        type=int,
        default=None,
        help="fits with an empty numba cache (default: --repeats)",
    )
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument(
        "--install-only",
        action="store_true",
        help="only the install rows, replacing them in the existing table",
    )
    args = parser.parse_args()
    py = sys.executable
    stem = f"startup-{environment()}"
    env = _checkout_env()
    rows = []
    repeats = 0 if args.install_only else args.repeats
    cold = repeats if args.cold_repeats is None or args.install_only else args.cold_repeats
    # the checkout's bytecode written, as pip writes an installed package's
    compiling = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([py, "-m", "compileall", "-q", str(ROOT / "bayeslmm")], check=True,
                   env=compiling, capture_output=True)  # fmt: skip
    if repeats:
        _run(py, FIT, env)  # the kernels' cache filled for this checkout
    for _ in range(repeats):
        rows.append(_time_row("import bayeslmm", py, "import bayeslmm", env))
        rows.append(_time_row("import pandas + scipy + xarray + numba (in-process s)", py,
                              DEPS, env, inner=True))  # fmt: skip
        rows.append(_time_row("import nutpie + arviz, alone (in-process s)", py, LIBS, env,
                              inner=True))  # fmt: skip
        rows.append(_time_row("import nutpie + arviz after bayeslmm's own imports (in-process s)",
                              py, LIBS_AFTER, env, inner=True))  # fmt: skip
        rows.append(_time_row("nutpie and a result container, as a fit imports them, after "
                              "bayeslmm's own imports (in-process s)", py, NUTPIE_AS_FIT, env,
                              inner=True))  # fmt: skip
        rows.append(_time_row("xarray's first array (in-process s)", py, XARRAY, env,
                              inner=True))  # fmt: skip
        rows.append(_time_row("xarray's first array in a fit, which imports no array library "
                              "to ask about it (in-process s)", py, XARRAY_IN_FIT, env,
                              inner=True))  # fmt: skip
        rows.append(_fit_row("sleepstudy fit, warm cache (fresh process)", py, env))
        rows.append(_fit_row("the same, Python's collection at exit kept "
                             "(BAYESLMM_EXIT_COLLECTION=1)", py,
                             {**env, "BAYESLMM_EXIT_COLLECTION": "1"}))  # fmt: skip
    for _ in range(cold):
        with tempfile.TemporaryDirectory() as cache:
            cold_env = {**env, "NUMBA_CACHE_DIR": cache}
            rows.append(_fit_row("sleepstudy fit, empty numba cache", py, cold_env))
    if not args.no_install:
        work = Path(tempfile.mkdtemp(prefix="bayeslmm-install-"))
        try:
            clone = work / "clone"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
            start = time.perf_counter()
            subprocess.run([py, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"),
                            str(clone)], check=True, capture_output=True)  # fmt: skip
            build = time.perf_counter() - start
            subprocess.run([py, "-m", "venv", "--system-site-packages", str(work / "venv")],
                           check=True)  # fmt: skip
            vpy = str(work / "venv" / "bin" / "python")
            wheel = next((work / "dist").glob("bayeslmm-*.whl"))
            start = time.perf_counter()
            subprocess.run([vpy, "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                           check=True, capture_output=True)  # fmt: skip
            install = time.perf_counter() - start
            rows.append({"row": "build the wheel (compiles the kernels)", "wall_s": build})
            rows.append({"row": "pip install the wheel", "wall_s": install})
            plain = {
                k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")
            }
            first = _fit_row("first sleepstudy fit after the install", vpy, plain, False)
            if "bayeslmm-install-" not in first["bayeslmm"]:
                raise RuntimeError("the new environment did not import the installed wheel")
            rows.append(first)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    table = pd.DataFrame(rows).drop(columns="bayeslmm", errors="ignore")
    if (RESULTS / f"{stem}.csv").is_file():  # rows not rerun: kept from the last run
        kept = pd.read_csv(RESULTS / f"{stem}.csv")
        rerun = set(table["row"]) | set(RETIRED)
        if args.install_only or not args.no_install:
            rerun |= {r for r in kept["row"] if "install" in r}
        table = pd.concat([kept[~kept["row"].isin(rerun)], table], ignore_index=True)
    numeric = [c for c in ("wall_s", "cpu_s", "load", "import_s", "build_s", "fit_s", "exit_s")
               if c in table]  # fmt: skip
    summary = table.groupby("row", sort=False).agg(
        {
            **{c: "median" for c in numeric},
            **({"notice_printed": "max"} if "notice_printed" in table else {}),
        }
    )
    summary.insert(0, "runs", table.groupby("row", sort=False).size())
    summary = summary.sort_index(key=lambda idx: idx.map(_position))
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / f"{stem}.csv", index=False)
    installed = [m for m in EXTRAS if importlib.util.find_spec(m)]
    versions = ", ".join(f"{m} {_version(m)}" for m in ("arviz", "nutpie", "numba", "xarray"))
    header = (f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} cores, "
              f"Python {sys.version.split()[0]}, {versions}; installed extras that a fit "
              f"imports: {', '.join(installed) or 'none'}. Seconds; build_s: the imports and "
              f"the model inside the fitting process; exit_s: the interpreter's teardown. "
              f"`{' '.join(sys.argv[1:]) or 'defaults'}`"
              "\n\n")  # fmt: skip
    (RESULTS / f"{stem}.md").write_text(header + markdown(summary.round(2).reset_index()))
    print(header + summary.round(2).to_string())
    print("median of medians:", statistics.median(summary["wall_s"]))
    gather()


#: rows that no longer measure what bayeslmm does (not kept from an earlier run)
RETIRED = ("import pandas + scipy.stats + xarray + numba (in-process s)",)

#: the table's rows in order, by the start of their labels
ORDER = ("import bayeslmm", "import pandas", "import nutpie + arviz, alone",
         "import nutpie + arviz after", "nutpie and a result", "xarray's",
         "sleepstudy fit, warm", "the same, Python's collection",
         "sleepstudy fit, empty", "build the wheel", "pip install", "first sleepstudy")  # fmt: skip


def _position(row: str) -> int:
    return next((i for i, start in enumerate(ORDER) if row.startswith(start)), len(ORDER))


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
