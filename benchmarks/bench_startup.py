"""Start-up: what a user waits for before and during a first fit.

    python3 benchmarks/bench_startup.py [--repeats 3] [--no-install]

Every row is a fresh process on this machine (wall seconds, median of ``--repeats``):

- ``import bayeslmm``;
- a sleepstudy fit (``Reaction ~ Days + (Days | Subject)``, nutpie, 4 chains x 1,000
  draws) with the kernels' cache warm: the whole process, and its parts (import, build,
  fit) and the seconds spent importing nutpie/ArviZ, which every fit needs;
- the same fit with an empty numba cache (``NUMBA_CACHE_DIR`` pointing at an empty
  folder): what the first fit costs when nothing was compiled at installation;
- unless ``--no-install``: ``pip install --no-deps`` of a wheel built from this checkout
  into a new virtual environment (``--system-site-packages``, so the dependencies are the
  machine's): the build (which compiles the kernels, ``hatch_build.py``), then the first
  fit in that environment.

Table: ``benchmarks/results/startup.{csv,md}``.
"""

from __future__ import annotations

import argparse
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
                  "bayeslmm": bl.__file__}))
"""

LIBS = r"""
import time
t0 = time.perf_counter()
import nutpie, arviz  # noqa: F401
print(time.perf_counter() - t0)
"""


def _run(python: str, code: str, env: dict | None = None, cwd: Path | None = None) -> tuple:
    start = time.perf_counter()
    done = subprocess.run([python, "-c", code], capture_output=True, text=True,
                          env=env, cwd=cwd or tempfile.gettempdir())  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    lines = done.stdout.strip().splitlines()
    return wall, lines[-1] if lines else "", done.stderr


def _fit_row(label: str, python: str, env: dict | None = None) -> dict:
    wall, out, err = _run(python, FIT, env)
    parts = json.loads(out)
    notice = "compiling its numeric kernels" in err
    return {"row": label, "wall_s": wall, **{k: parts[k] for k in ("import_s", "build_s", "fit_s")},
            "notice_printed": notice, "bayeslmm": parts["bayeslmm"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--install-only", action="store_true",
                        help="only the install rows, replacing them in the existing table")
    args = parser.parse_args()
    py = sys.executable
    rows = []
    for _ in range(0 if args.install_only else args.repeats):
        wall, _, _ = _run(py, "import bayeslmm")
        rows.append({"row": "import bayeslmm", "wall_s": wall})
        rows.append({"row": "import nutpie + arviz (each fit needs them)",
                     "wall_s": float(_run(py, LIBS)[1])})  # fmt: skip
    if not args.install_only:
        _run(py, FIT)  # the kernels' cache filled for this checkout
    for _ in range(0 if args.install_only else args.repeats):
        rows.append(_fit_row("sleepstudy fit, warm cache (fresh process)", py))
    for _ in range(0 if args.install_only else args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            rows.append(_fit_row("sleepstudy fit, empty numba cache", py, env))
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
            env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
            first = _fit_row("first sleepstudy fit after the install", vpy, env)
            if "bayeslmm-install-" not in first["bayeslmm"]:
                raise RuntimeError("the new environment did not import the installed wheel")
            rows.append(first)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    table = pd.DataFrame(rows).drop(columns="bayeslmm", errors="ignore")
    if args.install_only and (RESULTS / "startup.csv").is_file():
        kept = pd.read_csv(RESULTS / "startup.csv")
        kept = kept[~kept["row"].isin(table["row"]) & ~kept["row"].str.contains("install")]
        table = pd.concat([kept, table], ignore_index=True)
    numeric = [c for c in ("wall_s", "import_s", "build_s", "fit_s") if c in table]
    summary = table.groupby("row", sort=False).agg(
        {**{c: "median" for c in numeric},
         **({"notice_printed": "max"} if "notice_printed" in table else {})}
    )
    summary.insert(0, "runs", table.groupby("row", sort=False).size())
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / "startup.csv", index=False)
    header = (f"Start-up on {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
              "medians over `runs` fresh processes (seconds; build_s: the\n"
              "imports and model building inside the fitting process). "
              f"`python3 benchmarks/bench_startup.py`\n\n")  # fmt: skip
    (RESULTS / "startup.md").write_text(header + markdown(summary.round(2).reset_index()))
    print(header + summary.round(2).to_string())
    print("median of medians:", statistics.median(summary["wall_s"]))


if __name__ == "__main__":
    main()
