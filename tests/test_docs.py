"""The documentation site builds with warnings as errors (MkDocs strict mode)."""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def test_docs_build_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    api = (tmp_path / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("LMM", "lmer", "compare", "report", "group_fits", "store_log_likelihood",
                 "anova", "ranova", "bayes_factor", "loo_compare", "compare_random_effects",
                 "log_marginal_likelihood", "AR1", "CompoundSymmetry"):  # fmt: skip
        assert name in api, name  # the reference is generated from the docstrings
    for page in ("installation", "getting-started", "tutorial", "cli", "priors", "marginal",
                 "syntax", "choosing-random-effects", "large-data",
                 "residual-structures"):  # fmt: skip
        assert (tmp_path / page / "index.html").is_file(), page


#: Agreement within this many Monte Carlo standard errors of the difference of two runs
#: (each run's MCSE, times sqrt(2)).
MC = 4 * np.sqrt(2)

SLEEP_VARIABLES = {
    "sd((Intercept)|Subject)": "sd_Subject[(Intercept)]", "sd(Days|Subject)": "sd_Subject[Days]",
    "cor((Intercept),Days|Subject)": "cor_Subject[(Intercept),Days]", "sigma": "sigma",
    "(Intercept)": "beta[(Intercept)]", "Days": "beta[Days]",
}  # fmt: skip


def _mcse(model) -> pd.DataFrame:
    """Monte Carlo standard errors of the posterior mean and sd of every population
    parameter of a fitted model, by ArviZ's labels."""
    table = az.summary(model.idata, var_names=model.population_variables(), kind="diagnostics",
                       round_to="none")  # fmt: skip
    return table.rename(columns={"mcse_mean": "mean", "mcse_sd": "sd"})


def _tutorial_blocks() -> list[str]:
    text = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]


def _row(page: str, name: str) -> list[str]:
    """Cells of the markdown table row of ``name``."""
    line = next(x for x in page.splitlines() if x.startswith(f"| {name} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_tutorial_code_runs_and_reproduces_its_numbers(capsys):
    """The tutorial's code, block by block, gives the numbers the page shows, with the
    default sampler: REML to every printed digit; posterior summaries within Monte Carlo
    error (another CPU's floating point sends the chains elsewhere, and the three
    classrooms' random slope has a heavy-tailed posterior whose mean and sd move by a
    tenth of an sd from seed to seed)."""
    page = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
    namespace: dict = {}
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in _tutorial_blocks():
            exec(compile(block, "docs/tutorial.md", "exec"), namespace)  # noqa: S102
            if "classroom" in block and "compare" in block:
                results["classroom"] = namespace["comparison"].table.set_index("model")
                results["classroom_fits"] = namespace["comparison"].fits
            if "ratpup" in block:
                results["ratpup"] = namespace["model"].summary(print_it=False)
                results["ratpup_mcse"] = _mcse(namespace["model"])
                results["ratpup_reml"] = namespace["fit"]
    printed = capsys.readouterr().out
    # section 1: the comparison table
    table = results["classroom"]
    for name in ("LM-Global", "ANCOVA-Inter", "Hierarchical", "LMM-Inter", "LMM-Full"):
        assert round(table.loc[name, "estimate"], 4) == float(_row(page, name)[1]), name
    fits = results["classroom_fits"]
    for name in ("Bayes-Inter", "Bayes-Full"):
        cells = _row(page, name)
        mcse = _mcse(fits[name]).loc["beta[edu]"]
        assert abs(table.loc[name, "estimate"] - float(cells[1])) < MC * mcse["mean"] + 1e-4, name
        assert abs(table.loc[name, "se"] - float(cells[2])) < MC * mcse["sd"] + 1e-4, name
    # section 2: REML and posterior of the rat pups
    summary, reml = results["ratpup"], results["ratpup_reml"]
    for name in ("(Intercept)", "treatmentHigh", "treatmentLow", "sexMale", "litsize"):
        cells = _row(page, name)
        assert f"{reml.fixef[name]:.3f} ({reml.se[name]:.3f})" == cells[1], name
        mean, sd = _numbers(cells[3])
        mcse = results["ratpup_mcse"].loc[f"beta[{name}]"]
        assert abs(summary.loc[name, "mean"] - mean) < MC * mcse["mean"] + 1e-3, name
        assert abs(summary.loc[name, "sd"] - sd) < MC * mcse["sd"] + 1e-3, name
    # section 3: the printed sleepstudy summary
    shown = re.search(r"```text\n(.*?)```", page, flags=re.S).group(1)
    ours = printed.split("Formula: Reaction ~ Days + (Days | Subject)")[-1]
    assert "Convergence: OK" in ours
    summary = namespace["model"].summary(print_it=False)
    sleep_mcse = _mcse(namespace["model"])
    labels = {"sd((Intercept)|Subject)": "sd((Intercept))", "sd(Days|Subject)": "sd(Days)",
              "cor((Intercept),Days|Subject)": "cor((Intercept),Days)", "sigma": " sigma ",
              "(Intercept)": "(Intercept)  ", "Days": "Days  "}  # fmt: skip
    for param, label in labels.items():
        line = next(x for x in shown.splitlines() if label in x and "Name" not in x)
        mean, sd, lo, hi = _numbers(line.split(label.strip(), 1)[1])[:4]
        row, error = summary.loc[param], sleep_mcse.loc[SLEEP_VARIABLES[param]]
        tol_mean, tol_sd = MC * error["mean"] + 1e-3, MC * error["sd"] + 1e-3
        assert abs(row["mean"] - mean) < tol_mean and abs(row["sd"] - sd) < tol_sd, param
        assert abs(row["hdi_3%"] - lo) < 3 * tol_mean, param
        assert abs(row["hdi_97%"] - hi) < 3 * tol_mean, param
