"""The package's layout: folders that follow the pipeline, layers checked by import-linter."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bayeslmm"


def test_import_layers_hold():
    """``lint-imports`` (contracts in pyproject.toml): no layer imports a higher one."""
    cmd = [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=PACKAGE.parent, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_top_level_holds_only_the_package_entry_points():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "__main__", "datasets", "errors", "jit", "lazy", "plots",
                   "shutdown", "tables", "warmup"]
    layers = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert layers == ["bayes", "classical", "comparison", "gaussian", "glmm", "present", "spec"]


def test_no_import_cycles_between_siblings():
    """No module imports (through any chain, imports inside functions and under
    TYPE_CHECKING included) a sibling that imports it back; import-linter's
    ``acyclic_siblings`` contract says the same in ``lint-imports``."""
    pytest.importorskip("grimp")
    code = (
        "import grimp, json\n"
        "g = grimp.build_graph('bayeslmm')\n"
        "pkgs = ['bayeslmm'] + sorted(m for m in g.find_descendants('bayeslmm')\n"
        "                             if g.find_children(m))\n"
        "print(json.dumps({p: sorted(map(sorted, g.nominate_cycle_breakers(p))) for p in pkgs}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PACKAGE.parent, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    breakers = json.loads(result.stdout)
    assert {"bayeslmm.spec", "bayeslmm.bayes", "bayeslmm.present"} <= set(breakers)
    assert all(not b for b in breakers.values()), breakers
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert 'type = "acyclic_siblings"' in pyproject
