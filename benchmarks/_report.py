"""Write a benchmark table as CSV and Markdown (no tabulate dependency)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join([header, rule, *body]) + "\n"


def write(table: pd.DataFrame, stem: str, preamble: str = "") -> Path:
    """``results/{stem}.csv`` and ``results/{stem}.md``; returns the Markdown path."""
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / f"{stem}.csv", index=False)
    path = RESULTS / f"{stem}.md"
    path.write_text((preamble + "\n\n" if preamble else "") + markdown(table))
    return path
