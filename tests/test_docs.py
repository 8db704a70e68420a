"""The documentation site builds with warnings as errors (MkDocs strict mode)."""

import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

import bayeslmm as bl

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
                 "residual-structures", "first-hour"):  # fmt: skip
        assert (tmp_path / page / "index.html").is_file(), page


def _regenerate():
    """docs/regenerate.py, the script that makes the pages' numbers, as a module."""
    spec = importlib.util.spec_from_file_location("regenerate", ROOT / "docs" / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("regenerate", module)  # its dataclasses look their module up
    spec.loader.exec_module(sys.modules["regenerate"])
    module = sys.modules["regenerate"]
    return module


def _row(page: str, name: str) -> list[str]:
    """Cells of the markdown table row of ``name``."""
    line = next(x for x in page.splitlines() if x.startswith(f"| {name} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_every_page_number_has_its_anchor():
    """Each number docs/regenerate.py makes is found, once, where the pages print it."""
    regenerate = _regenerate()
    shown = regenerate.read(regenerate.ANCHORS)
    assert len(shown) > 80
    assert "Convergence: OK" in shown["sleep_summary"]


def test_mcse_rounding():
    """The last digit printed is the first whose unit is at least 2 MCSE, at most four
    significant digits; the disagreement rule allows half that digit more."""
    from bayeslmm.bayes.text import mcse_format

    cases = [(27.24, 0.10, "27"), (10.46, 0.031, "10.5"), (251.4, 0.125, "251"),
             (0.0899, 0.004, "0.09"), (-0.04, 0.03, "0.0"), (123456.0, 3.0, "123500"),
             (1234.5, 40.0, "1200"), (0.3087, 0.0, "0.3087"),
             (0.45, 0.06, "0.5"), (3e-5, 0.004, "0.00"),
             (7.03, float("nan"), "7.030")]  # fmt: skip
    for value, mcse, text in cases:
        assert mcse_format(value, mcse) == text, (value, mcse)
    # Monte Carlo SEs of a mean and of an HDI bound, on independent normal draws
    from bayeslmm.bayes.text import batch_mcse, bound_mcse

    draws = np.random.default_rng(0).normal(size=(4, 4000))
    assert 0.8 < batch_mcse(draws) * np.sqrt(draws.size) < 1.2
    low = np.quantile(draws, 0.03)
    expected = np.sqrt(0.03 * 0.97 / draws.size) / (np.exp(-(low**2) / 2) / np.sqrt(2 * np.pi))
    assert 0.6 < bound_mcse(draws, low) / expected < 1.6
    regenerate = _regenerate()
    assert regenerate.SciNum(3912.0, 150.0).text == "4e3"
    assert regenerate.SciNum(1.3e8, 1.3e6).text == "1.3e8"
    num = regenerate.Num(10.46, 0.031)
    assert regenerate.disagreements({"x": "10.5"}, {"x": num}) == []
    assert regenerate.disagreements({"x": "11.5"}, {"x": num})


def test_printed_summary_rounds_by_mcse_and_the_table_keeps_every_digit(capsys):
    """summary() prints mean, sd and HDI to the digits their Monte Carlo error supports;
    the DataFrame it returns is not rounded."""
    data = bl.load_dataset("sleepstudy")
    model = bl.LMM("Reaction ~ Days + (1 | Subject)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(draws=200, tune=200, chains=2, random_seed=3)
    table = model.summary()
    printed = capsys.readouterr().out
    row = next(x for x in printed.splitlines() if x.startswith("Days"))
    mean = row.split()[1]
    mcse = table.loc["Days", "mcse_mean"]
    decimals = len(mean.partition(".")[2])
    assert 10.0**-decimals >= 2 * mcse > 10.0 ** (-decimals - 1)
    assert float(mean) == round(table.loc["Days", "mean"], decimals)
    assert table.loc["Days", "mean"] != float(mean)  # full precision kept


def test_tutorial_code_runs_and_reproduces_its_numbers(capsys):
    """The tutorial's code, block by block, and the calls its prose names give the numbers
    the page prints, with the default sampler: classical ones to every printed digit;
    posterior ones within Monte Carlo error (4 sqrt(2) MCSE plus half the last printed
    digit: another CPU's floating point sends the chains elsewhere). This is the
    tutorial's part of ``python3 docs/regenerate.py --check``, which also checks the
    other pages."""
    regenerate = _regenerate()
    page_text = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
    page = regenerate.read(regenerate.TUTORIAL_ANCHORS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values, fits = regenerate.tutorial_values()
    printed = capsys.readouterr().out
    assert regenerate.disagreements(page, values) == []
    # the classical rows of the comparison table and REML of the rat pups, to every digit
    table = fits["classroom"].table.set_index("model")
    for name in ("LM-Global", "ANCOVA-Inter", "Hierarchical", "LMM-Inter", "LMM-Full"):
        assert round(table.loc[name, "estimate"], 4) == float(_row(page_text, name)[1]), name
    reml = fits["ratpup_reml"]
    for name in ("(Intercept)", "treatmentHigh", "treatmentLow", "sexMale", "litsize"):
        assert f"{reml.fixef[name]:.3f} ({reml.se[name]:.3f})" == _row(page_text, name)[1], name
    # what summary() printed is the page's block, up to Monte Carlo error
    ours = printed.split("Formula: Reaction ~ Days + (Days | Subject)")[-1]
    assert "Convergence: OK" in ours
    shown = regenerate.read([regenerate.Anchor(regenerate.TUTORIAL, "```text\n{b:block}```")])
    assert shown["b"].splitlines()[0] in ours


def test_random_effects_comparison_of_a_seeded_fit_is_reproducible():
    """compare_random_effects(model) fits the neighbours and bridge-samples with the
    model's own seed, so the numbers the pages quote from it come out the same again."""
    data = bl.load_dataset("sleepstudy")
    tables = []
    for _ in range(2):
        model = bl.LMM("Reaction ~ Days + (Days | Subject)", data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(draws=200, tune=200, chains=2, random_seed=5)
            tables.append(bl.compare_random_effects(model).table)
    for column in ("log_BF", "log_BF_error", "elpd_diff", "elpd_diff_se"):
        assert list(tables[0][column]) == list(tables[1][column]), column


def test_binary_and_count_page_prints_what_glmer_prints():
    """docs/binary-and-count.md's maximum-likelihood blocks (those naming no Bayesian
    model), run in order from the repository's root, print the page's text blocks to the
    last character; every other block that prints has its text block (the Bayesian ones
    are re-made by ``python3 docs/regenerate.py``, within Monte Carlo error)."""
    import contextlib
    import io

    regenerate = _regenerate()
    page = "docs/binary-and-count.md"
    assert page in regenerate.OUTPUT_PAGES
    text = (ROOT / page).read_text(encoding="utf-8")
    blocks = [(m["code"], m["out"]) for m in regenerate.CODE_AND_OUTPUT.finditer(text)]
    assert len(blocks) >= 10
    ml_blocks = [(code, out) for code, out in blocks if regenerate.deterministic(code)]
    assert len(ml_blocks) >= 3 and all("bl.glmer(" in code for code, _ in ml_blocks[:3])
    # every Bayesian block prints (a summary, a table) and shows it
    bayes = [(code, out) for code, out in blocks if not regenerate.deterministic(code)]
    assert bayes and all(out for code, out in bayes if "print(" in code or "summary()" in code)
    namespace: dict = {}
    with contextlib.chdir(ROOT), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for code, shown in ml_blocks:
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                exec(compile(code, page, "exec"), namespace)  # noqa: S102
            assert buffer.getvalue() == shown, code
