"""Design builds and wall time of ``bl.compare`` and ``bayeslmm fit`` on sleepstudy.

    python3 benchmarks/bench_build_once.py            # this checkout
    PYTHONPATH=/path/to/other/checkout python3 benchmarks/bench_build_once.py

Counts :func:`~bayeslmm.spec.design.build_design` calls (wrapped wherever a module of
bayeslmm holds it) and times, in one process after import: ``bl.compare`` of
``Reaction ~ Days + (Days | Subject)`` (default fit settings, seed 1), the CLI's ``fit``
(default settings), and the best of 7 calls of ``bl.compare(bayes=False)`` and
``bl.compare_random_effects(model, bayes=False)`` (after a warm-up call). Run it once
before timing (numba compiles its kernels on first use). Results:
``benchmarks/results/build_once.md``.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
import warnings

import bayeslmm as bl
import bayeslmm.spec.design as design_module

FORMULA = "Reaction ~ Days + (Days | Subject)"


def main() -> None:
    warnings.simplefilter("ignore")
    original, count = design_module.build_design, [0]

    def counting(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("bayeslmm") and getattr(module, "build_design", None) is original:
            module.build_design = counting
    data = bl.load_dataset("sleepstudy")
    from bayeslmm.present.cli import main as cli

    def fit_cli() -> None:
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):  # fmt: skip
            assert cli(["fit", "sleepstudy", FORMULA, "--out", out, "--no-progress"]) == 0

    for name, run in [("bl.compare", lambda: bl.compare(FORMULA, data, random_seed=1,
                                                        progressbar=False)),
                      ("bayeslmm fit", fit_cli)]:  # fmt: skip
        count[0] = 0
        start = time.perf_counter()
        run()
        print(f"{name}: {count[0]} designs built, {time.perf_counter() - start:.2f} s")
    model = bl.LMM(FORMULA, data)
    for name, run in [("bl.compare(bayes=False)", lambda: bl.compare(FORMULA, data, bayes=False)),
                      ("compare_random_effects(bayes=False)",
                       lambda: bl.compare_random_effects(model, bayes=False))]:  # fmt: skip
        run()
        count[0], times = 0, []
        for _ in range(7):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        print(f"{name}: {count[0] // 7} designs built, best of 7 {1000 * min(times):.0f} ms")


if __name__ == "__main__":
    main()
