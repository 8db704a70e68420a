"""The package's layout: folders that follow the pipeline, layers checked by import-linter."""

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bayeslmm"


def test_import_layers_hold():
    """``lint-imports`` (contracts in pyproject.toml): no layer imports a higher one."""
    cmd = [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=PACKAGE.parent, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_top_level_holds_only_the_package_entry_points():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "__main__", "datasets", "errors"]
    layers = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert layers == ["bayes", "classical", "comparison", "gaussian", "present", "spec"]
