"""The documentation site builds with warnings as errors (MkDocs strict mode)."""

import subprocess
import sys
from pathlib import Path

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
                 "log_marginal_likelihood"):  # fmt: skip
        assert name in api, name  # the reference is generated from the docstrings
    for page in ("installation", "getting-started", "tutorial", "cli", "priors", "marginal",
                 "syntax", "choosing-random-effects"):  # fmt: skip
        assert (tmp_path / page / "index.html").is_file(), page
