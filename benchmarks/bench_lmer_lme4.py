"""REML/ML speed on crossed designs: bl.lmer against lme4::lmer, same data, same run.

    python3 benchmarks/bench_lmer_lme4.py [--seeds 1 2 3] [--cases si_intercepts ...]
                                          [--repeats 3] [--stem lmer_vs_lme4]

Cases (``benchmarks/_cases.py``): a simulated psycholinguistic experiment, 56 subjects x
32 items in a 2 x 2 x 2 within design (1,790 rows), with random intercepts
(``si_intercepts``), 4 correlated terms per factor (``si_correlated``) and the maximal
model, 8 correlated terms per factor (``si_maximal``), one data set per seed; and lme4's
InstEval (73,421 rows; 2,972 students, 1,128 instructors, 14 departments) by ML. lme4 is
timed inside R (``benchmarks/lmer_lme4.R``: ``system.time`` around ``lmer``, best of the
repeats, R's start-up and reading the CSV excluded); bl.lmer likewise in this process
(import and reading excluded). Reports both times, their ratio and the difference of the
criteria (REML criterion or deviance; negative: bayeslmm's optimum is better). Writes
``benchmarks/results/{stem}.{csv,md}``. Needs R with lme4 (Debian's r-cran-lme4).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

import bayeslmm as bl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _cases import INSTEVAL, SUBJECTS_ITEMS, insteval, subjects_items  # noqa: E402
from _report import write  # noqa: E402

CASES = ["si_intercepts", "si_correlated", "si_maximal", "insteval"]


def cases(names: list[str], seeds: list[int], folder: Path, repeats: int) -> list[dict]:
    out = []
    for name in names:
        if name == "insteval":
            csv = folder / "insteval.csv"
            insteval().to_csv(csv, index=False)
            out.append({"id": "insteval", "case": name, "seed": None, "csv": str(csv),
                        "formula": INSTEVAL, "reml": False, "repeats": 1,
                        "classes": {"s": "character", "d": "character",
                                    "dept": "character"}})  # fmt: skip
            continue
        for seed in seeds:
            csv = folder / f"si_{seed}.csv"
            if not csv.exists():
                subjects_items(seed).to_csv(csv, index=False)
            reps = 1 if name == "si_maximal" else repeats
            out.append({"id": f"{name}_{seed}", "case": name, "seed": seed, "csv": str(csv),
                        "formula": SUBJECTS_ITEMS[name], "reml": True, "repeats": reps,
                        "classes": {"subj": "character", "item": "character"}})  # fmt: skip
    return out


def ours(case: dict) -> tuple[float, float]:
    data = pd.read_csv(case["csv"], dtype=dict.fromkeys(case["classes"], str))
    best, fit = float("inf"), None
    for _ in range(case["repeats"]):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bl.SingularFitWarning)
            fit = bl.lmer(case["formula"], data, reml=case["reml"])
        best = min(best, time.perf_counter() - start)
    return best, fit.criterion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=CASES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stem", default="lmer_vs_lme4", help="name of the results files")
    args = parser.parse_args()
    bl.lmer("y ~ 1 + (1 | g)", pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 7], "g": list("aabbcc")}))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        todo = cases(args.cases, args.seeds, folder, args.repeats)
        (folder / "cases.json").write_text(json.dumps(todo))
        subprocess.run(["Rscript", str(HERE / "lmer_lme4.R"), str(folder / "cases.json"),
                        str(folder / "lme4.json")], check=True)  # fmt: skip
        theirs = json.loads((folder / "lme4.json").read_text())
        for case in todo:
            seconds, criterion = ours(case)
            ref = theirs[case["id"]]
            rows.append({
                "case": case["case"], "seed": case["seed"], "criterion": "REML" if case["reml"]
                else "ML deviance", "bayeslmm_s": seconds, "lme4_s": ref["seconds"],
                "lme4_over_bayeslmm": ref["seconds"] / seconds,
                "criterion_difference": criterion - ref["criterion"],
                "relative_difference": (criterion - ref["criterion"]) / abs(ref["criterion"]),
                "lme4_evaluations": ref["evaluations"], "singular": ref["singular"],
            })  # fmt: skip
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    note = (f"bl.lmer vs lme4 {theirs['meta']['lme4']} ({theirs['meta']['R']}), same machine "
            "and run, fitting call only (best of the repeats); criterion_difference < 0: "
            "bayeslmm's optimum is lower (better).")  # fmt: skip
    write(table, args.stem, note)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
