"""The tutorial's classroom analysis end to end: seven models, shrinkage, plots.

Scores of 60 pupils in 3 classrooms against their parents' education. Run:

    python3 examples/classroom.py [OUT_DIR]

Writes the comparison table, the shrinkage table and four figures to OUT_DIR
(default ``classroom_output``).
"""

import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

import bayeslmm as bl  # noqa: E402
from bayeslmm import plots  # noqa: E402

out = Path(sys.argv[1] if len(sys.argv) > 1 else "classroom_output")
out.mkdir(parents=True, exist_ok=True)
data = bl.load_dataset("classroom")

with warnings.catch_warnings():
    # the random-slope REML fit is singular with 3 classrooms, as in the tutorial
    warnings.simplefilter("ignore", bl.SingularFitWarning)
    comparison = bl.compare(
        "score ~ edu + (1 + edu | classroom)", data, draws=1000, chains=4, random_seed=2024
    )

pd.set_option("display.width", 200)
cols = ["model", "rmse", "estimate", "se", "statistic", "df", "p_value", "ci_lower", "ci_upper"]
print(comparison.table[cols].to_string(index=False, float_format="%.4f"))
print()
print(comparison.table[["model", "t_satterthwaite", "df_satterthwaite", "p_satterthwaite", "pd"]]
      .dropna(how="all", subset=["t_satterthwaite", "pd"]).to_string(index=False))  # fmt: skip
shrinkage = comparison.shrinkage()
print()
print(shrinkage.to_string(index=False, float_format="%.3f"))

comparison.table.to_csv(out / "comparison.csv", index=False)
shrinkage.to_csv(out / "shrinkage.csv", index=False)
for name in ("comparison_forest", "shrinkage_arrows", "caterpillar", "shrinkage_2d"):
    getattr(plots, name)(comparison).savefig(out / f"{name}.png", dpi=120)
print(f"\nwrote tables and figures to {out}/")
