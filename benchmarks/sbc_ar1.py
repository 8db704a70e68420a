"""Full simulation-based calibration of the AR(1) model's marginal sampler.

    python3 benchmarks/sbc_ar1.py [--replications 200] [--seed 0]

``y ~ x + (1 | g)`` with ``bl.AR1(time="t", group="g")`` residuals (8 groups of 6 rows at
whole-number times with gaps; phi from its default Uniform(-1, 1) prior), sampled on the
marginal PyMC graph (:func:`bayeslmm.bayes.sbc.run_sbc_ar1`); writes rank uniformity tests
to ``benchmarks/results/sbc_ar1.{csv,md}``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bayeslmm.bayes.sbc import run_sbc_ar1

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stem", default="sbc_ar1", help="name of the results files")
    args = parser.parse_args()
    start = time.perf_counter()
    result = run_sbc_ar1(args.replications, groups=8, per_group=6, draws=99, seed=args.seed)
    seconds = time.perf_counter() - start
    table = result.uniformity(bins=10).reset_index(names="parameter")
    table.insert(0, "model", "y ~ x + (1 | g), AR1(time='t', group='g')")
    note = (f"SBC, {args.replications} replications, 99 thinned draws each (396 after 500 "
            "tuning steps, one chain), 8 groups x 6 rows at times with gaps; PyMC's NUTS on "
            "the marginal graph (PyTensor's numba backend); chi-square test of 10-bin rank "
            f"histograms; seed {args.seed}; {seconds:.0f} s in all.")  # fmt: skip
    write(table, args.stem, note)
    print(table.to_string(index=False))
    bins = {name: np.bincount(np.minimum(r.to_numpy() * 10 // 100, 9), minlength=10)
            for name, r in result.ranks.items()}  # fmt: skip
    hist = pd.DataFrame(bins, index=[f"{10 * k}-{10 * k + 9}" for k in range(10)])
    hist = hist.rename_axis("rank").reset_index()
    write(hist, f"{args.stem}_histogram", f"Rank histograms of {args.stem} (ranks 0-99 in "
                                          "10 bins; uniform: 20 per bin).")  # fmt: skip
    print(hist.to_string(index=False))


if __name__ == "__main__":
    main()
