"""Data larger than memory: a Parquet data set fitted through Dask against pandas in memory.

    python3 benchmarks/bench_dask.py [--rows 50000000] [--groups 100000] [--file-rows 2000000]
        [--small-rows 5000000] [--pandas-rows 5000000 ... 50000000] [--workers 1 2] [--repeat 2]

1. Writes ``--rows`` rows of ``y ~ x + arm + (1 + x | g)`` data (``g``: ``--groups`` levels,
   ``arm``: text) as Parquet files of ``--file-rows`` rows each, chunk by chunk, under
   ``benchmarks/data/generated/`` (git-ignored; reused when already there).
2. For the first ``--small-rows`` rows and for all of them, with 1 and 2 Dask workers
   (``LocalCluster`` of single-threaded worker processes): time to statistics
   (``bl.LMM(formula, dd.read_parquet(...))``: both passes, the checks, the sums and the
   priors), rows per second, peak resident memory of the driver (sampled every 20 ms,
   above its level before the fit) and of each worker (its peak RSS).
3. Sampling time of the largest fit (nutpie on the compiled marginal density, then the
   exact draws of the 2 x ``--groups`` random effects): it reads only statistics.
4. The in-memory path beside it: ``pd.read_parquet`` then ``bl.LMM(formula, frame)`` for
   each of ``--pandas-rows``: read time, time to statistics and peak memory of the process,
   and whether its statistics equal the Dask path's bit for bit.

Every measurement runs in a fresh process. Writes ``benchmarks/results/dask_*.{csv,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "generated"
FORMULA = "y ~ x + arm + (1 + x | g)"
sys.path.insert(0, str(HERE))


# --- data ----------------------------------------------------------------------------------


def generate(rows: int, groups: int, file_rows: int, seed: int = 1) -> Path:
    """Parquet files of simulated rows, written one chunk at a time (memory: one chunk)."""
    folder = DATA / f"rows{rows}_groups{groups}_file{file_rows}_seed{seed}"
    manifest = folder / "manifest.json"
    if manifest.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    effects = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.3], [0.3, 0.5]], size=groups)
    start = time.perf_counter()
    for i, lo in enumerate(range(0, rows, file_rows)):
        n = min(file_rows, rows - lo)
        r = np.random.default_rng([seed, i])
        g = r.integers(0, groups, n)
        x = r.normal(size=n)
        treated = r.random(n) < 0.5
        y = 1.0 + 0.5 * x + 0.3 * treated + effects[g, 0] + effects[g, 1] * x + r.normal(size=n)
        frame = pd.DataFrame({"y": y, "x": x, "arm": np.where(treated, "treated", "control"),
                              "g": g})  # fmt: skip
        frame.to_parquet(folder / f"part-{i:05d}.parquet", index=False, row_group_size=n)
    manifest.write_text(json.dumps({"rows": rows, "groups": groups, "file_rows": file_rows,
                                    "seed": seed,
                                    "seconds": time.perf_counter() - start}))  # fmt: skip
    return folder


def files(folder: Path, rows: int) -> list[str]:
    info = json.loads((folder / "manifest.json").read_text())
    k = -(-rows // info["file_rows"])
    return [str(p) for p in sorted(folder.glob("part-*.parquet"))[:k]]


# --- one measurement per process -----------------------------------------------------------


class PeakMemory:
    """This process's resident memory, sampled every ``every`` seconds in a thread."""

    def __init__(self, every: float = 0.02):
        import psutil

        self.process, self.every = psutil.Process(), every
        self.peak = self.base = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.every)

    def __enter__(self) -> PeakMemory:
        self.base = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def _worker_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _cpu_seconds() -> float:
    """CPU time (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stats_digest(model) -> str:
    """A hash of the fit's statistics (equal digests: equal to the last bit)."""
    import hashlib

    s = model.blocked_system.stats
    h = hashlib.sha256()
    for name in ("pair_i", "pair_j", "pair_val", "ZtX", "Zty", "XtX", "Xty"):
        h.update(np.ascontiguousarray(getattr(s, name)).tobytes())
    h.update(np.float64(s.yty).tobytes())
    return h.hexdigest()[:16]


def one_dask(paths: list[str], workers: int, fit: dict | None) -> dict:
    import warnings

    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    import bayeslmm as bl

    warnings.simplefilter("ignore")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0", memory_limit=None) as cluster, \
            Client(cluster) as client:  # fmt: skip
        ddf = dd.read_parquet(paths)
        client.run(lambda: __import__("bayeslmm.spec.partitioned"))  # imports not timed
        cpu_before = client.run(_cpu_seconds)
        with PeakMemory() as mem:
            start = time.perf_counter()
            model = bl.LMM(FORMULA, ddf)
            seconds = time.perf_counter() - start
        cpu = sum(client.run(_cpu_seconds).values()) - sum(cpu_before.values())
        peaks = client.run(_worker_peak)
    n = model.design.n_obs
    out = {"path": "dask", "workers": workers, "rows": n, "partitions": ddf.npartitions,
           "stats_s": seconds, "rows_per_s": n / seconds, "workers_cpu_s": cpu,
           "rows_per_cpu_s": n / cpu, "driver_peak_mb": mem.peak / 2**20,
           "driver_above_start_mb": (mem.peak - mem.base) / 2**20,
           "worker_peak_mb": max(peaks.values()) / 2**20,
           "digest": _stats_digest(model)}  # fmt: skip
    if fit:
        with PeakMemory() as mem:
            start = time.perf_counter()
            model.fit(**fit)
            out["fit_s"] = time.perf_counter() - start
        out["fit_peak_mb"] = mem.peak / 2**20
        out["ess_bulk_min"] = float(model.convergence.min_ess_bulk)
        out["fixef_x"] = float(model.fixef().loc["x", "mean"])
    return out


def one_pandas(paths: list[str]) -> dict:
    import warnings

    import bayeslmm as bl

    warnings.simplefilter("ignore")
    start = time.perf_counter()
    frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    read = time.perf_counter() - start
    start, cpu = time.perf_counter(), _cpu_seconds()
    model = bl.LMM(FORMULA, frame)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    return {"path": "pandas", "workers": 0, "rows": model.design.n_obs, "partitions": 1,
            "read_s": read, "stats_s": seconds, "rows_per_s": model.design.n_obs / seconds,
            "workers_cpu_s": cpu, "rows_per_cpu_s": model.design.n_obs / cpu,
            "driver_peak_mb": _worker_peak() / 2**20, "digest": _stats_digest(model)}  # fmt: skip


def measure(kind: str, paths: list[str], workers: int = 0, fit: dict | None = None,
            repeat: int = 1) -> dict:  # fmt: skip
    """The fastest of ``repeat`` measurements, each in a fresh Python process, with the
    machine's load average when it ran."""
    runs = [_measure(kind, paths, workers, fit if i == 0 else None) for i in range(repeat)]
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    best = min(ok, key=lambda r: r["stats_s"])
    best.update({k: runs[0][k] for k in ("fit_s", "fit_peak_mb", "ess_bulk_min", "fixef_x")
                 if k in runs[0]})  # fmt: skip
    best["runs"] = len(ok)
    best["stats_s_all"] = " ".join(f"{r['stats_s']:.1f}" for r in ok)
    return best


def _measure(kind: str, paths: list[str], workers: int, fit: dict | None) -> dict:
    load = os.getloadavg()[0]
    spec = json.dumps({"kind": kind, "paths": paths, "workers": workers, "fit": fit})
    path = os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    done = subprocess.run([sys.executable, __file__, "--one", spec], capture_output=True,
                          text=True, env=env)  # fmt: skip
    if done.returncode:
        return {"path": kind, "workers": workers, "error": done.stderr.strip().splitlines()[-1]}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["load_before"] = load
    out["load_after"] = os.getloadavg()[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--file-rows", type=int, default=2_000_000)
    parser.add_argument("--small-rows", type=int, default=5_000_000)
    parser.add_argument("--pandas-rows", type=int, nargs="*",
                        default=[5_000_000, 10_000_000, 20_000_000, 50_000_000])  # fmt: skip
    parser.add_argument("--repeat", type=int, default=2, help="Dask runs per row (best kept)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--draws", type=int, default=250)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        spec = json.loads(args.one)
        if spec["kind"] == "dask":
            result = one_dask(spec["paths"], spec["workers"], spec["fit"])
        else:
            result = one_pandas(spec["paths"])
        print(json.dumps(result))
        return

    from _report import write

    start = time.perf_counter()
    folder = generate(args.rows, args.groups, args.file_rows)
    print(f"data: {folder} ({time.perf_counter() - start:.0f} s)", flush=True)
    fit = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "random_seed": 1,
           "progressbar": False}  # fmt: skip
    rows = []
    for n in sorted({args.small_rows, args.rows}):
        for w in args.workers:
            last = n == args.rows and w == max(args.workers)
            rows.append(measure("dask", files(folder, n), w, fit if last else None,
                                args.repeat))  # fmt: skip
            print(rows[-1], flush=True)
    for n in args.pandas_rows:
        rows.append(measure("pandas", files(folder, n)))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    digests = table.dropna(subset=["digest"]).groupby("rows")["digest"].nunique()
    table["same_statistics_as_other_paths"] = table["rows"].map(digests == 1)
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    note = (
        f"`{FORMULA}`, {args.groups:,} groups, Parquet files of {args.file_rows:,} rows "
        f"(one partition each), generated by this script. Dask: LocalCluster of "
        "single-threaded worker processes (imports done before timing); `stats_s` is "
        "`bl.LMM(formula, "
        "dd.read_parquet(...))` (two passes over the files: checks and levels, then "
        "encodings, checks and the sums; the priors), `driver_above_start_mb` the driver's "
        "resident memory above its level before the fit, `worker_peak_mb` the largest "
        "worker's peak resident memory, `workers_cpu_s` the CPU time the workers spent "
        "(`rows_per_cpu_s`: throughput per busy core, which the machine's other load does "
        "not change much). pandas: `pd.read_parquet` (`read_s`) then "
        "`bl.LMM(formula, frame)`; `driver_peak_mb` the process's peak. `fit_s`: "
        f"{args.chains} chains x {args.draws} draws after {args.tune} tuning steps (nutpie, "
        "compiled marginal density) plus the exact draws of every random effect. "
        "`same_statistics_as_other_paths`: the statistics hash the same as every other "
        f"path's at that size. Machine: {cpu}, shared with other work: `load_before`/"
        "`load_after` are its 1-minute load averages around each run (2 = both cores "
        f"busy); Dask rows keep the fastest of {args.repeat} runs (`stats_s_all`)."
    )
    path = write(table, "dask_large_data", note)
    print(path.read_text())


if __name__ == "__main__":
    main()
