"""Simulation-based calibration of the GLMM sampler (Bernoulli, binomial, Poisson).

    python3 benchmarks/sbc_glmm.py [--replications 200] [--families bernoulli binomial poisson]
                                   [--method full] [--sampler pymc]

``y ~ x + (1 | g)`` (Bernoulli), ``cbind(k, n - k) ~ x + (1 | g)`` (1 to 10 trials a
row) and ``y ~ x + offset(log(exposure)) + (1 | g)`` (Poisson, exposures U(0.5, 2)), 8
groups x 8 rows, priors Normal(0, 1) and HalfNormal(1) (:func:`run_sbc_glmm`); writes
10-bin rank uniformity tests and the seconds taken to ``benchmarks/results/sbc_glmm.{csv,md}``
(``sbc_glmm_<family>`` when one family runs, so families can run side by side).
"""

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from bayeslmm.bayes.sbc import GLMM_FORMULAS, run_sbc_glmm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write  # noqa: E402

FIRST_SEED = {"bernoulli": 1000, "binomial": 2000, "poisson": 3000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--families", nargs="+", choices=list(GLMM_FORMULAS),
                        default=list(GLMM_FORMULAS))  # fmt: skip
    parser.add_argument("--method", default=None, help="as in LMM.fit (default: None)")
    parser.add_argument("--sampler", default="pymc", help="as in LMM.fit (default: pymc)")
    parser.add_argument("--draws", type=int, default=99, help="thinned draws per fit (99)")
    parser.add_argument("--stem", default=None, help="name of the results files")
    args = parser.parse_args()
    tables = []
    for family in args.families:
        start = time.perf_counter()
        result = run_sbc_glmm(args.replications, family=family, draws=args.draws,
                              method=args.method, sampler=args.sampler,
                              seed=FIRST_SEED[family])  # fmt: skip
        seconds = time.perf_counter() - start
        table = result.uniformity(bins=10).reset_index(names="parameter")
        table.insert(0, "formula", GLMM_FORMULAS[family])
        table.insert(0, "family", family)
        table["seconds"] = round(seconds, 1)
        tables.append(table)
        print(table.to_string(index=False), flush=True)
    table = pd.concat(tables, ignore_index=True)
    command = "python3 benchmarks/sbc_glmm.py " + " ".join(sys.argv[1:])
    note = (f"`{command.strip()}`\n\n"
            f"GLMM SBC, {args.replications} replications per family, {args.draws} thinned "
            f"draws each (one chain, 4x as many drawn), 8 groups x 8 rows; sampler "
            f"{args.sampler!r}, method {args.method!r}; chi-square test of 10-bin rank "
            "histograms; seconds: the whole family's run, fits included.")  # fmt: skip
    stem = args.stem or ("sbc_glmm" if len(args.families) > 1
                         else f"sbc_glmm_{args.families[0]}")  # fmt: skip
    write(table, stem, note)


if __name__ == "__main__":
    main()
