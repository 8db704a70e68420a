"""Re-make every number the documentation prints from a fit, by running the pages' code.

    python3 docs/regenerate.py            # rewrite the pages in place
    python3 docs/regenerate.py --check    # rewrite nothing; list what would change

Pages covered: ``docs/tutorial.md``, ``docs/choosing-random-effects.md``,
``docs/residual-structures.md`` and ``docs/binary-and-count.md`` (the other pages print
no fitted numbers; README.md's tables are benchmarks, made by ``benchmarks/``). The
tutorial's code blocks are run as they stand on the page; the other pages' numbers come
from the calls their text names, except ``docs/binary-and-count.md``'s (an
:data:`OUTPUT_PAGES` page): its code blocks are run in order, from the repository's
root, and what each prints is written into the ``text`` block below it.

Posterior summaries are printed to the digits their Monte Carlo error supports
(:func:`bayeslmm.bayes.text.mcse_format`: the last digit is the first whose unit is at
least 2 MCSE). A seeded fit is bit-reproducible on one machine, but another CPU's BLAS
kernels or math library round differently in the last bit and NUTS carries that to
other draws, so another machine's numbers differ by Monte Carlo error: each number
printed this way shows another last digit (by one) with probability about
``1.13 MCSE / unit``, between 6% and 56% (two runs of sleepstudy and the rat pups with
different seeds: 24% of the printed means, sds and HDI bounds differ, 1% by more than
one unit). REML and other classical numbers are deterministic and keep their digits.
Models with a residual structure are sampled by numpyro where it is installed, else by
PyMC (``docs/residual-structures.md``): another sampler, other draws. A change to the
sampler's parametrisation moves a seeded fit's draws too (the signed SDs of 3de76c7
moved the tutorial's, which were not re-made): run this after such a change.

Each number sits in a page behind an anchor, the literal text around it
(:class:`Anchor`); an anchor that no longer matches exactly once stops the script, so
prose and numbers cannot drift apart silently.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import bayeslmm as bl
from bayeslmm.bayes.results import hdi_of, varcorr_table
from bayeslmm.bayes.text import (
    batch_mcse,
    format_summary,
    mcse_decimals,
    mcse_format,
    population_values,
    stat_mcse,
)

ROOT = Path(__file__).resolve().parent.parent
SEED = 1


@dataclass(frozen=True)
class Num:
    """A printed posterior number: its value, Monte Carlo standard error and text."""

    value: float
    mcse: float

    @property
    def text(self) -> str:
        return mcse_format(self.value, self.mcse)


@dataclass(frozen=True)
class SciNum(Num):
    """A posterior number printed as ``3.9e3`` from 1000 on."""

    @property
    def text(self) -> str:
        if abs(self.value) < 1000:
            return mcse_format(self.value, self.mcse)
        exponent = math.floor(math.log10(abs(self.value)))
        scale = 10.0**exponent
        return f"{mcse_format(self.value / scale, self.mcse / scale)}e{exponent}"


@dataclass(frozen=True)
class Prob(Num):
    """A posterior probability with its relation: ``= 0.91``, or ``> 0.999`` where
    rounding would print 1 (``< 0.001`` where it would print 0) for one that is not."""

    @property
    def text(self) -> str:
        decimals = max(1, mcse_decimals(self.value, self.mcse))
        unit = 10.0**-decimals
        if 0 < self.value < 1 and round(self.value, decimals) in (0.0, 1.0):
            return f"< {unit:.{decimals}f}" if self.value < 0.5 else f"> {1 - unit:.{decimals}f}"
        return f"= {round(self.value, decimals):.{decimals}f}"


@dataclass(frozen=True)
class Loose:
    """Text that varies from run to run and has no MCSE here (diagnostics, PSIS-LOO): put
    in the page, not compared with it."""

    text: str


@dataclass(frozen=True)
class Printed:
    """A printed summary: its text and the mean, sd and HDI bounds of each row, in order."""

    text: str
    nums: tuple[Num, ...]


Value = Num | Loose | Printed | str

#: Agreement within this many Monte Carlo standard errors of the difference of two runs
#: (each run's MCSE, times sqrt(2)), plus half the printed number's last digit.
MC = 4 * math.sqrt(2)
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def text_of(value: Value) -> str:
    return value if isinstance(value, str) else value.text


def _half_unit(printed: str) -> float:
    """Half the unit of the last digit of a printed number (``3.9e3``: 50)."""
    mantissa, _, exponent = printed.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def disagreements(page: dict[str, str], values: dict[str, Value]) -> list[str]:
    """The page's numbers that a fresh run does not reproduce: exact text for
    deterministic values, within ``MC`` MCSE plus half the last printed digit for
    posterior numbers, row by row for printed summaries."""
    out = []
    for name, value in values.items():
        if name not in page or isinstance(value, Loose):
            continue
        shown = page[name]
        if isinstance(value, str):
            if shown != value:
                out.append(f"{name}: page {shown!r}, run {value!r}")
            continue
        if isinstance(value, Printed):
            rows = [re.findall(NUMBER, line) for line in shown.splitlines()]
            cells = [x for r in rows if len(r) >= 7 for x in r[-7:-3]]
            pairs = list(zip(cells, value.nums, strict=False))
            if len(cells) != len(value.nums):
                out.append(f"{name}: the page shows {len(cells)} numbers, the run "
                           f"{len(value.nums)}")  # fmt: skip
        else:
            pairs = [(shown, value)]
        for text, num in pairs:
            text = text.removeprefix("= ")  # a probability
            if text[:2] in ("> ", "< "):  # a probability beyond the printed digits
                bound, sign = float(text[2:]), 1 if text[0] == ">" else -1
                if sign * (num.value - bound) < -MC * num.mcse:
                    out.append(f"{name}: page {text}, run {num.value:.6g} (MCSE {num.mcse:.2g})")
                continue
            gap = abs(float(text) - num.value)
            if not gap <= MC * num.mcse + _half_unit(text) + 1e-12:
                out.append(f"{name}: page {text}, run {num.value:.6g} (MCSE {num.mcse:.2g})")
    return out


@dataclass(frozen=True)
class Anchor:
    """Literal page text with ``{name}`` slots (a number), ``{name:cell}`` (text within one
    line and one table cell), ``{name:block}`` (several lines) and ``{_}`` (a table cell's
    text, kept as it is)."""

    page: str
    template: str

    def pattern(self) -> re.Pattern:
        out, pos = [], 0
        for m in re.finditer(r"\{(\w+)(?::(block|cell))?\}", self.template):
            out.append(re.escape(self.template[pos : m.start()]))
            name, kind = m.group(1), m.group(2)
            if name == "_":
                out.append(r"[^|\n]*?")
            elif kind == "block":
                out.append(rf"(?P<{name}>.*?)")
            elif kind == "cell":
                out.append(rf"(?P<{name}>[^|\n]*?)")
            else:
                out.append(rf"(?P<{name}>-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)")
            pos = m.end()
        out.append(re.escape(self.template[pos:]))
        return re.compile("".join(out), flags=re.S)


def summary_nums(model, name: str, hdi_prob: float = 0.94) -> dict[str, Num]:
    """mean, sd and HDI bounds of one population parameter of a fitted LMM."""
    table = model.summary(print_it=False, level=hdi_prob)
    mcse = stat_mcse(table, population_values(model))
    lo, hi = [c for c in table.columns if str(c).startswith("hdi_")]
    row, err = table.loc[name], mcse.loc[name]
    return {"mean": Num(row["mean"], err["mean"]), "sd": Num(row["sd"], err["sd"]),
            "lo": Num(row[lo], err[lo]), "hi": Num(row[hi], err[hi])}  # fmt: skip


def printed_summary(model) -> Printed:
    """What ``model.summary()`` prints, from its random-effects table on, and the numbers
    in it (rows in the printed order: variance components, then fixed effects)."""
    table = model.summary(print_it=False)
    text = format_summary(model, table)
    text = text[text.index("Residuals:") if "Residuals:" in text else text.index("Random") :]
    order = list(varcorr_table(table, model.design)["parameter"])
    order += list(table.index[table["component"] == "fixed"])
    mcse = stat_mcse(table, population_values(model))
    columns = ["mean", "sd", *hdi_of(table)]
    nums = tuple(Num(table.loc[n, c], mcse.loc[n, c]) for n in order for c in columns)
    return Printed(text + "\n", nums)


def bf_num(log_bf: float, error: float) -> Num:
    """A Bayes factor ``exp(log_bf)`` with the MC error of its log as relative error."""
    bf = math.exp(log_bf)
    return SciNum(bf, bf * error)


def fmt_p(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.2g}"


def fmt_diff(x: float) -> str:
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def elpd_text(diff: float, se: float) -> str:
    """An elpd difference and its SE to the first significant digit of the SE."""
    decimals = max(0, -math.floor(math.log10(se))) if se > 0 else 1
    return f"{diff:.{decimals}f} ± {se:.{decimals}f}"


def random_effects_rows(result, labels: dict[str, str]) -> dict[str, Value]:
    """The cells of a compare_random_effects table, one row per neighbour kind."""
    out: dict[str, Value] = {}
    for row in result.table.itertuples():
        key = labels[row.kind]
        out |= {f"{key}_df": f"{row.Df}", f"{key}_lrt": fmt_diff(row.LRT),
                f"{key}_p": fmt_p(row.p_boundary if np.isfinite(row.p_boundary) else row.p),
                f"{key}_aic": f"{row.AIC_diff:.1f}", f"{key}_bic": f"{row.BIC_diff:.1f}",
                f"{key}_logbf": Num(row.log_BF, row.log_BF_error),
                f"{key}_bferr": Loose(f"{row.log_BF_error:.2f}"),
                f"{key}_elpd": Loose(elpd_text(row.elpd_diff, row.elpd_diff_se)),
                f"{key}_verdict": row.verdict + (" (moot)" if row.moot else ""),
                f"{key}_bf": bf_num(row.log_BF, row.log_BF_error),
                f"{key}_bfinv": bf_num(-row.log_BF, row.log_BF_error)}  # fmt: skip
    return out


def _code_blocks(page: str) -> list[str]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


# ---------------------------------------------------------------- tutorial.md
TUTORIAL = "docs/tutorial.md"
RATPUP_ROWS = {"(Intercept)": "(Intercept)", "treatmentHigh": "treatmentHigh",
               "treatmentLow": "treatmentLow", "sexMale": "sexMale", "litsize": "litsize",
               "sd(litter)": "sd((Intercept)|litter)", "sigma": "sigma"}  # fmt: skip


def _ratpup_keys() -> dict[str, str]:
    return {name: f"rat{k}" for k, name in enumerate(RATPUP_ROWS)}


TUTORIAL_ANCHORS = [
    Anchor(TUTORIAL, "| Bayes-Inter | {inter_est} | {inter_sd} | | | | "
                     "P(edu > 0) {inter_p:cell} |"),
    Anchor(TUTORIAL, "| Bayes-Full | {full_est} | {full_sd} | | | | P(edu > 0) {full_p:cell} |"),
    Anchor(TUTORIAL, "removing the slope, the REML likelihood-ratio test gives LRT = "
                     "{class_slope_lrt} on {class_slope_df} df\n(boundary-corrected p = "
                     "{class_slope_p}),"),
    Anchor(TUTORIAL, "finds LRT = {sleep_slope_lrt} on\n{sleep_slope_df} df for removing it"),
    Anchor(TUTORIAL, "is not (LRT = {sleep_cor_lrt}, p = {sleep_cor_p}, a Bayes"),
    Anchor(TUTORIAL, "the 95% HDI of `edu` in Bayes-Full is ({edu_lo}, {edu_hi})"),
    Anchor(TUTORIAL, "(`sd(edu|classroom)`: mean {sdedu_mean}, 94% HDI {sdedu_lo} to {sdedu_hi})"),
    Anchor(TUTORIAL, "factor favours it {class_slope_bfinv} to 1."),
    Anchor(TUTORIAL, "posterior moves classroom c1 ({c1_own} on its own) {c1_pct}% of the way"
                     " toward the population\nmean {c1_pop},"),
    *[Anchor(TUTORIAL, f"| {row} |{{_}}|{{_}}| {{{key}_mean}} ({{{key}_sd}}) | "
                       f"{{{key}_lo}} to {{{key}_hi}} |")
      for row, key in _ratpup_keys().items()],
    Anchor(TUTORIAL, "`summary()` reads `OK (max R-hat {rat_rhat},\nmin bulk ESS {rat_ess}, ...)`"),
    Anchor(TUTORIAL, "model.summary()\n```\n\n```text\n{sleep_summary:block}```"),
    Anchor(TUTORIAL, "a Bayes\nfactor of {sleep_cor_bf}, inconclusive)"),
    Anchor(TUTORIAL, "gets a posterior mean of\n{s330_post} ({s330_pct}% of the way to the "
                     "population's {s330_pop}); subject 337, with a clear {s337_own}, stays\n"
                     "at {s337_post}."),
]  # fmt: skip


def tutorial_values() -> tuple[dict[str, Value], dict]:
    """Run the tutorial's code blocks and the calls its prose names; the printed values
    and the fitted objects (``classroom``, ``ratpup``, ``ratpup_reml``, ``sleep``)."""
    ns: dict = {}
    fits: dict = {}
    for block in _code_blocks(TUTORIAL):
        exec(compile(block, TUTORIAL, "exec"), ns)  # noqa: S102
        if "classroom" in block and "compare" in block:
            fits["classroom"] = ns["comparison"]
        elif "ratpup" in block:
            fits["ratpup"], fits["ratpup_reml"] = ns["model"], ns["fit"]
        elif "sleepstudy" in block:
            fits["sleep"] = ns["model"]
        elif "shrinkage" in block:
            fits["sleep_comparison"] = ns["comparison"]
    out: dict[str, Value] = {}
    classroom = fits["classroom"]
    for key, name in (("inter", "Bayes-Inter"), ("full", "Bayes-Full")):
        model = classroom.fits[name]
        edu = summary_nums(model, "edu")
        draws = model.idata.posterior["beta"].sel(fixed="edu").values
        p = float((draws > 0).mean())
        out |= {f"{key}_est": edu["mean"], f"{key}_sd": edu["sd"],
                f"{key}_p": Prob(p, batch_mcse((draws > 0).astype(float)))}  # fmt: skip
    full = classroom.fits["Bayes-Full"]
    edu95 = summary_nums(full, "edu", hdi_prob=0.95)
    sd_edu = summary_nums(full, "sd(edu|classroom)")
    out |= {"edu_lo": edu95["lo"], "edu_hi": edu95["hi"], "sdedu_mean": sd_edu["mean"],
            "sdedu_lo": sd_edu["lo"], "sdedu_hi": sd_edu["hi"]}  # fmt: skip
    # the demo's comparison of random-effects structures (bayeslmm demo's settings)
    result = bl.compare_random_effects(full, draws=3000, tune=3000, target_accept=0.99,
                                       random_seed=SEED)  # fmt: skip
    fits["classroom_random_effects"] = result
    out |= random_effects_rows(result, {"slope": "class_slope", "correlation": "class_cor"})
    shrink = classroom.shrinkage().set_index(["level", "term"]).loc[("c1", "(Intercept)")]
    coef = full.group_coefficients("classroom").sel(level="c1", coef="(Intercept)").values
    gap = shrink["no_pooling"] - shrink["population"]
    out |= {"c1_own": f"{shrink['no_pooling']:.2f}", "c1_pop": f"{shrink['population']:.2f}",
            "c1_pct": Num(100 * shrink["shrinkage_posterior"],
                          100 * batch_mcse(coef) / abs(gap))}  # fmt: skip
    # section 2
    rat = fits["ratpup"]
    keys = _ratpup_keys()
    for row, name in RATPUP_ROWS.items():
        nums = summary_nums(rat, name)
        out |= {f"{keys[row]}_{k}": v for k, v in nums.items()}
    conv = rat.convergence
    out |= {"rat_rhat": Loose(f"{conv.max_rhat:.3f}"), "rat_ess": Loose(f"{conv.min_ess_bulk:.0f}")}
    # section 3
    sleep = fits["sleep"]
    out["sleep_summary"] = printed_summary(sleep)
    result = bl.compare_random_effects(sleep)
    fits["sleep_random_effects"] = result
    rows = random_effects_rows(result, {"slope": "sleep_slope", "correlation": "sleep_cor"})
    if rows["sleep_slope_bf"].value < 1e6:  # the prose says "above a million to 1"
        raise RuntimeError(f"sleepstudy's slope Bayes factor is {rows['sleep_slope_bf'].text}")
    out |= rows
    shrink = fits["sleep_comparison"].shrinkage().set_index(["level", "term"])
    coefs = sleep.group_coefficients("Subject")
    for subject in ("330", "337"):
        row = shrink.loc[(int(subject), "Days")]  # tables keep the factor's integer levels
        draws = coefs.sel(level=subject, coef="Days").values
        err = batch_mcse(draws)
        gap = row["no_pooling"] - row["population"]
        out |= {f"s{subject}_own": f"{row['no_pooling']:.1f}",
                f"s{subject}_pop": f"{row['population']:.1f}",
                f"s{subject}_post": Num(row["posterior_mean"], err),
                f"s{subject}_pct": Num(100 * row["shrinkage_posterior"],
                                       100 * err / abs(gap))}  # fmt: skip
    return out, fits


# ------------------------------------------------------ choosing-random-effects.md
CHOOSING = "docs/choosing-random-effects.md"


def _re_row(label: str, key: str) -> str:
    return (f"| {label} | {{{key}_df}} | {{{key}_lrt}} | {{{key}_p}} | {{{key}_aic}} | "
            f"{{{key}_bic}} | {{{key}_logbf}} ± {{{key}_bferr}} | {{{key}_elpd:cell}} | "
            f"{{{key}_verdict:cell}} |\n")  # fmt: skip


CHOOSING_ANCHORS = [
    Anchor(CHOOSING, _re_row("random slope of edu", "class_slope")),
    Anchor(CHOOSING, _re_row("correlations", "class_cor") + "\nThe tutorial's"),
    Anchor(CHOOSING, _re_row("random slope of Days", "sleep_slope")),
    Anchor(CHOOSING, _re_row("correlations", "sleep_cor") + "\nSubjects differ"),
    Anchor(CHOOSING, "AIC and BIC prefer\n`(1 | classroom)` and the Bayes factor favours it "
                     "{class_slope_bfinv} to 1."),
    Anchor(CHOOSING, "(the\n  correlation on the classroom data below: {class_cor_bf} to 1)"),
    Anchor(CHOOSING, "(sleepstudy\n  below: {sleep_slope_elpd_short:cell} for the slope,"),
]  # fmt: skip


def choosing_values(tutorial_fits: dict) -> dict[str, Value]:
    """The page's code (``model.fit(random_seed=1)`` with the default draws: the
    tutorial's sleepstudy fit) and the demo's classroom comparison."""
    out: dict[str, Value] = {}
    out |= random_effects_rows(tutorial_fits["classroom_random_effects"],
                               {"slope": "class_slope", "correlation": "class_cor"})  # fmt: skip
    sleep = bl.LMM("Reaction ~ Days + (Days | Subject)", bl.load_dataset("sleepstudy"))
    sleep.fit(random_seed=SEED)
    result = bl.compare_random_effects(sleep)
    out |= random_effects_rows(result, {"slope": "sleep_slope", "correlation": "sleep_cor"})
    row = result.table.set_index("kind").loc["slope"]
    out["sleep_slope_elpd_short"] = Loose(f"{row.elpd_diff:.0f} ± {row.elpd_diff_se:.0f}")
    return out


# ------------------------------------------------------------ residual-structures.md
RESIDUAL = "docs/residual-structures.md"
RESIDUAL_ANCHORS = [
    Anchor(RESIDUAL, "model.summary()\n```\n\n```text\n{ar1_summary:block}```"),
    Anchor(RESIDUAL, "REML's 0.49 (94% HDI {phi_lo} to {phi_hi})"),
    Anchor(RESIDUAL, "its posterior spans {cor_lo} to {cor_hi}."),
    Anchor(RESIDUAL, "prefers AR(1) by {loo_diff} elpd (SE {loo_se}), and\nthe Bayes factor is "
                     "{ar1_bf} to 1"),
]  # fmt: skip


def residual_values() -> dict[str, Value]:
    """The page's Bayesian AR(1) fit, and the comparison its prose quotes."""
    sleep = bl.load_dataset("sleepstudy")
    ar1 = bl.AR1(time="Days", group="Subject")
    model = bl.LMM("Reaction ~ Days + (Days | Subject)", sleep, residual=ar1)
    model.fit(draws=1000, chains=4, random_seed=SEED)
    plain = bl.LMM("Reaction ~ Days + (Days | Subject)", sleep)
    plain.fit(draws=1000, chains=4, random_seed=SEED)
    phi = summary_nums(model, "phi")
    cor = summary_nums(model, "cor((Intercept),Days|Subject)")
    loo = bl.loo_compare({"ar1": model, "independent": plain}, by="group").table
    if loo.index[0] != "ar1":
        raise RuntimeError("leave-one-subject-out no longer prefers the AR(1) model")
    bf = bl.bayes_factor(model, plain, random_seed=SEED)
    return {"ar1_summary": printed_summary(model), "phi_lo": phi["lo"],
            "phi_hi": phi["hi"], "cor_lo": cor["lo"], "cor_hi": cor["hi"],
            "loo_diff": Loose(f"{loo.loc['independent', 'elpd_diff']:.1f}"),
            "loo_se": Loose(f"{loo.loc['independent', 'dse']:.1f}"),
            "ar1_bf": SciNum(bf.bf, bf.bf * bf.error)}  # fmt: skip


# ------------------------------------------------------------ binary-and-count.md
#: Pages whose code blocks are run in order, each one's printed output written into the
#: ``text`` block right after it (added where the page has none, dropped where the code
#: prints nothing).
OUTPUT_PAGES = ["docs/binary-and-count.md"]
CODE_AND_OUTPUT = re.compile(r"```python\n(?P<code>.*?)```\n(?:\n```text\n(?P<out>.*?)```\n)?",
                             flags=re.S)  # fmt: skip


def deterministic(code: str) -> bool:
    """Does a block of an output page print only maximum-likelihood results? (Its code
    names no Bayesian model: the pages name those ``model...``.) Its output must then
    be reproduced to the last character; the others' vary by Monte Carlo error."""
    return re.search(r"\bmodel", code) is None


def run_output_page(page: str) -> tuple[str, list[tuple[str, str | None, str]]]:
    """Run ``page``'s code blocks in one namespace from the repository's root: the page
    with every block's printed output in the ``text`` block after it, and per block its
    code, the output the page shows now (None: no block) and the fresh output."""
    text = (ROOT / page).read_text(encoding="utf-8")
    namespace: dict = {}
    pieces, blocks, pos = [], [], 0
    with contextlib.chdir(ROOT):
        for m in CODE_AND_OUTPUT.finditer(text):
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(compile(m["code"], page, "exec"), namespace)  # noqa: S102
            out = buffer.getvalue()
            if out and not out.endswith("\n"):
                out += "\n"
            blocks.append((m["code"], m["out"], out))
            fresh = f"```python\n{m['code']}```\n" + (f"\n```text\n{out}```\n" if out else "")
            pieces += [text[pos : m.start()], fresh]
            pos = m.end()
    return "".join(pieces) + text[pos:], blocks


def output_page_changes(page: str, blocks) -> tuple[list[str], list[str]]:
    """The blocks whose output changed, and those of them that print only
    maximum-likelihood results (which must not change)."""
    changed, beyond = [], []
    for k, (code, shown, out) in enumerate(blocks, start=1):
        if (shown or "") != out:
            changed.append(f"{page}: output of code block {k} changed")
            if deterministic(code):
                beyond.append(f"{page}: code block {k} (maximum likelihood) prints other text")
    return changed, beyond


# ------------------------------------------------------------------- rewriting
def read(anchors: list[Anchor]) -> dict[str, str]:
    """The values the pages print now, by slot name."""
    out: dict[str, str] = {}
    for anchor in anchors:
        text = (ROOT / anchor.page).read_text(encoding="utf-8")
        found = list(anchor.pattern().finditer(text))
        if len(found) != 1:
            raise RuntimeError(f"{anchor.page}: {len(found)} matches of {anchor.template!r}")
        out |= found[0].groupdict()
    return out


def rewrite(anchors: list[Anchor], values: dict[str, Value]) -> list[str]:
    """Put ``values`` into the pages; the slots whose text changed."""
    changed = []
    pages: dict[str, str] = {}
    for anchor in anchors:
        text = pages.get(anchor.page) or (ROOT / anchor.page).read_text(encoding="utf-8")
        found = list(anchor.pattern().finditer(text))
        if len(found) != 1:
            raise RuntimeError(f"{anchor.page}: {len(found)} matches of {anchor.template!r}")
        m = found[0]
        pieces, pos = [], m.start()
        for name, old in m.groupdict().items():
            new = text_of(values[name])
            start, end = m.span(name)
            pieces += [text[pos:start], new]
            pos = end
            if new != old:
                changed.append(f"{anchor.page}: {name}: {old!r} -> {new!r}")
        pages[anchor.page] = text[: m.start()] + "".join(pieces) + text[pos:]
    for page, text in pages.items():
        (ROOT / page).write_text(text, encoding="utf-8")
    return changed


ANCHORS = TUTORIAL_ANCHORS + CHOOSING_ANCHORS + RESIDUAL_ANCHORS


def all_values() -> dict[str, Value]:
    """Every slot's value, from fresh fits (a few minutes on 2 cores)."""
    tutorial, fits = tutorial_values()
    return tutorial | choosing_values(fits) | residual_values()


def _output_pages_only(pages: list[str], check: bool) -> int:
    """``--pages``: run (and rewrite, or check) these output pages only."""
    unknown = [p for p in pages if p not in OUTPUT_PAGES]
    if unknown:
        raise SystemExit(f"--pages takes {OUTPUT_PAGES}, not {unknown}")
    changed, beyond = [], []
    for page in pages:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text, blocks = run_output_page(page)
        more, wrong = output_page_changes(page, blocks)
        changed += more
        beyond += wrong
        if not check:
            (ROOT / page).write_text(text, encoding="utf-8")
    print("\n".join(changed) or "no change")
    if check and beyond:
        print("\n".join(beyond))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list changes, rewrite nothing")
    parser.add_argument("--pages", nargs="+", metavar="PAGE",
                        help="only these output pages (e.g. docs/binary-and-count.md): "
                             "run their code, nothing else")  # fmt: skip
    args = parser.parse_args(argv)
    if args.pages:
        return _output_pages_only(args.pages, args.check)
    read(ANCHORS)  # every anchor matches before any fit is run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = all_values()
        pages = {page: run_output_page(page) for page in OUTPUT_PAGES}
    if args.check:
        now = read(ANCHORS)
        changed = [f"{k}: {now[k]!r} -> {text_of(v)!r}"
                   for k, v in values.items() if k in now and now[k] != text_of(v)]  # fmt: skip
        beyond = disagreements(now, values)
        for page, (_, blocks) in pages.items():
            more, wrong = output_page_changes(page, blocks)
            changed += more
            beyond += wrong
        print("\n".join(changed) or "no change")
        print("beyond Monte Carlo error:\n" + "\n".join(beyond) if beyond else
              "every printed number agrees within Monte Carlo error")  # fmt: skip
        return 1 if beyond else 0
    changed = rewrite(ANCHORS, values)
    for page, (text, blocks) in pages.items():
        changed += output_page_changes(page, blocks)[0]
        (ROOT / page).write_text(text, encoding="utf-8")
    print("\n".join(changed) or "no change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
