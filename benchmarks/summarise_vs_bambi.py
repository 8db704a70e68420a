"""Per case, stack and seed: bayeslmm against the best bambi sampler of the same run.

    python3 benchmarks/summarise_vs_bambi.py samplers_glmm_v2 [more stems] --out NAME

Reads ``results/<stem>.csv`` written by ``bench_samplers.py`` (one row per run; a
configuration starting with ``py313:`` ran on the Python 3.13 stack, against bambi 0.21;
the others on Python 3.11, against bambi 0.17) and writes ``results/<NAME>.{csv,md}``: one
row per (case, stack, seed) with bayeslmm's min bulk ESS per second, min ESS, largest
R-hat, divergences and wall time, the bambi sampler with the highest ESS per second in the
same stack and seed (divergences or not) with its own figures, and the ratio; then the
median ratio per case and stack. Runs that failed or timed out (no ESS) are left out; a
run of a later stem replaces one of an earlier stem with the same case, configuration and
seed (a re-run after a change).
"""

from __future__ import annotations

import argparse

import pandas as pd
from _report import RESULTS, markdown, write

PY313 = "py313:"


def by_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, stack, seed) where bayeslmm and at least one bambi ran."""
    runs = runs[runs["ess_bulk_per_s"].notna()].copy()
    runs["stack"] = runs["config"].str.startswith(PY313).map({True: "3.13", False: "3.11"})
    runs["library"] = runs["config"].str.removeprefix(PY313)
    rows = []
    for (case, stack, seed), group in runs.groupby(["case", "stack", "seed"], sort=False):
        ours = group[group["library"].str.startswith("bayeslmm")]
        peers = group[group["library"].str.startswith("bambi")]
        if ours.empty or peers.empty:
            continue
        ours, best = ours.iloc[0], peers.loc[peers["ess_bulk_per_s"].idxmax()]
        rows.append({
            "case": case, "stack": stack, "seed": seed,
            "bayeslmm_ess_per_s": ours["ess_bulk_per_s"], "bayeslmm_min_ess": ours["min_ess_bulk"],
            "bayeslmm_rhat": ours["max_rhat"], "bayeslmm_div": ours["divergences"],
            "bayeslmm_wall_s": ours["wall_s"], "best_bambi": best["library"],
            "bambi_ess_per_s": best["ess_bulk_per_s"], "bambi_rhat": best["max_rhat"],
            "bambi_div": best["divergences"], "bambi_wall_s": best["wall_s"],
            "ratio": ours["ess_bulk_per_s"] / best["ess_bulk_per_s"],
        })  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stems", nargs="+")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runs = pd.concat([pd.read_csv(RESULTS / f"{stem}.csv") for stem in args.stems])
    runs = runs.drop_duplicates(["case", "config", "seed"], keep="last")
    table = by_seed(runs)
    medians = table.groupby(["case", "stack"], sort=False)["ratio"].median().reset_index()
    medians = medians.rename(columns={"ratio": "median_ratio"})
    preamble = (
        "bayeslmm against the best bambi sampler (highest min bulk ESS per second over every "
        "population parameter, divergences or not) of the same stack and seed: Python 3.11 "
        "against bambi 0.17, 3.13 against bambi 0.21. From "
        + ", ".join(f"`{s}.csv`" for s in args.stems)
        + f" by `python3 benchmarks/summarise_vs_bambi.py {' '.join(args.stems)} --out "
        f"{args.out}` (a later file's run replaces an earlier one's of the same case, "
        "configuration and seed)."
    )
    path = write(table, args.out, preamble)
    path.write_text(path.read_text() + "\nMedian ratio per case and stack:\n\n" + markdown(medians))
    print(path.read_text())


if __name__ == "__main__":
    main()
