"""The report's page being written: sections of paragraphs, HTML tables and embedded
figures (:class:`_Writer`), each table also written as a CSV file and each figure as a PNG."""

from __future__ import annotations

import base64
import html
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #7570b3; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .15em; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; }
table.data { border-collapse: collapse; font-size: .82em; margin: .6em 0 1.2em; }
table.data th, table.data td { border: 1px solid #ddd; padding: .2em .45em; text-align: left;
                               vertical-align: top; }
table.data th { background: #f3f1fa; }
table.data td { overflow-wrap: break-word; }
table.data td.num { text-align: right; font-variant-numeric: tabular-nums;
                    white-space: nowrap; }
.wide table.data { width: 100%; }
.table { overflow-x: auto; }  /* a scroll bar only where the screen is narrower still */
@media (max-width: 900px) { table.data { font-size: .7em; }
                            table.data th, table.data td { padding: .15em .25em; } }
@media print { table.data { font-size: .62em; } figure img { max-width: 100%; } }
dl.models { overflow: hidden; }
dl.models dt { font-weight: bold; float: left; clear: left; width: 9em; }
dl.models dd { margin: 0 0 .2em 9.5em; }
dl.models.long dt { width: 15em; }
dl.models.long dd { margin-left: 15.5em; }
.verdict { padding: .8em 1em; border-radius: 6px; margin: 1em 0; }
.ok { background: #e6f4ea; border-left: 6px solid #1b9e77; }
.bad { background: #fdecea; border-left: 6px solid #d95f02; }
.note { color: #666; font-size: .9em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
nav a { margin-right: 1em; }
"""


@dataclass
class Section:
    """A titled part of the report: paragraphs, tables and figures in order."""

    key: str
    title: str
    parts: list[str] = field(default_factory=list)


def _cell(value: object) -> tuple[str, bool]:
    """Text of one table cell, and whether it is a number (right-aligned); missing values
    (None, NaN, NA) are empty cells."""
    if value is None or value is pd.NA or value is pd.NaT:
        return "", False
    if isinstance(value, bool | np.bool_):
        return str(value), False
    if isinstance(value, int | np.integer):
        return str(value), True
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return "", True
        if np.isinf(value):
            return "∞" if value > 0 else "-∞", True
        return (f"{value:.0f}" if abs(value) >= 1e5 else f"{value:.4g}"), True
    return html.escape(str(value)), False


WIDE = 8  # columns from which a table spans the page and its cells wrap


def _header(name: object) -> str:
    """A column name that may break after an underscore (``df_satterthwaite``)."""
    return html.escape(str(name)).replace("_", "_<wbr>")


def _table_html(frame: pd.DataFrame) -> str:
    """An HTML table: numbers right-aligned, text left; wide tables fill the page width and
    wrap their headers and text, so that no column is hidden off the page."""
    head = "".join(f"<th>{_header(c)}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = [_cell(v) for v in values]
        rows.append("<tr>" + "".join(
            f"<td class='num'>{t}</td>" if num else f"<td>{t}</td>" for t, num in cells
        ) + "</tr>")  # fmt: skip
    wide = " wide" if len(frame.columns) >= WIDE else ""
    return (f"<div class='table{wide}'><table class='data'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")  # fmt: skip


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


class _Writer:
    """Collects sections, writes CSVs and PNGs as they come."""

    def __init__(self, out: Path):
        self.out = out
        self.sections: list[Section] = []
        self.tables: dict[str, Path] = {}
        self.figures: dict[str, Path] = {}
        self.failed: dict[str, str] = {}

    def section(self, key: str, title: str) -> Section:
        self.sections.append(Section(key, title))
        return self.sections[-1]

    def csv(self, name: str, table: pd.DataFrame) -> Path:
        """Write ``table`` as ``name``.csv."""
        path = self.out / f"{name}.csv"
        table.to_csv(path, index=False)
        self.tables[name] = path
        return path

    def table(self, sec: Section, name: str, table: pd.DataFrame, caption: str,
              shown: pd.DataFrame | None = None) -> None:  # fmt: skip
        """Write ``table`` as CSV; show it (or the ``shown`` columns of it) in the page."""
        path = self.csv(name, table)
        self.show(sec, table if shown is None else shown, caption, path.name)

    def show(self, sec: Section, table: pd.DataFrame, caption: str, file: str = "") -> None:
        """Show ``table`` in the page under ``caption`` and the name of its CSV file."""
        where = f" (<code>{html.escape(file)}</code>)" if file else ""
        sec.parts.append(f"<p class='note'>{html.escape(caption)}{where}</p>" + _table_html(table))

    def heading(self, sec: Section, text: str) -> None:
        sec.parts.append(f"<h3>{html.escape(text)}</h3>")

    def figure(self, sec: Section, name: str, draw: Callable[[], Figure], caption: str) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                data = _png(draw())
        except Exception as err:  # a figure that cannot be drawn must not lose the report
            plt.close("all")
            self.failed[name] = f"{type(err).__name__}: {err}"
            sec.parts.append(f"<p class='note'>Figure {html.escape(name)} could not be drawn: "
                             f"{html.escape(self.failed[name])}</p>")  # fmt: skip
            return
        path = self.out / "figures" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        self.figures[name] = path
        b64 = base64.b64encode(data).decode("ascii")
        sec.parts.append(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{b64}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def text(self, sec: Section, paragraph: str, css: str = "") -> None:
        cls = f" class='{css}'" if css else ""
        sec.parts.append(f"<p{cls}>{paragraph}</p>")

    def render(self, title: str, subtitle: str) -> str:
        nav = " ".join(f"<a href='#{s.key}'>{html.escape(s.title)}</a>" for s in self.sections)
        body = "\n".join(
            f"<section id='{s.key}'><h2>{html.escape(s.title)}</h2>\n" + "\n".join(s.parts)
            + "</section>"
            for s in self.sections
        )  # fmt: skip
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class='note'>{subtitle}</p><nav>{nav}</nav>"
            f"{body}</body></html>\n"
        )
