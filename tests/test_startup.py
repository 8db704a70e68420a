"""Start-up: a light import, kernels compiled ahead of the first fit, a notice otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("numpy", "pandas", "scipy", "numba", "pymc", "pytensor", "arviz", "nutpie",
         "matplotlib", "xarray", "formulaic")  # fmt: skip


def _python(code: str, env: dict | None = None, args: tuple[str, ...] = ()
            ) -> subprocess.CompletedProcess:  # fmt: skip
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=900)  # fmt: skip


def test_import_loads_no_heavy_library():
    done = _python(f"import sys, bayeslmm\nprint([m for m in {HEAVY!r} if m in sys.modules])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_public_names_resolve_on_first_use():
    import bayeslmm as bl
    import bayeslmm.plots

    for name in bl.__all__:
        assert getattr(bl, name) is not None, name
    assert bl.plots is bayeslmm.plots
    assert bl.plots.trace is bl.present.plots.trace
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        bl.nothing  # noqa: B018


COUNT = """
import json, sys, warnings
from numba.core import event
compiled = []
class Count(event.Listener):
    def on_start(self, ev):
        f = ev.data["dispatcher"].py_func
        if f.__module__.startswith("bayeslmm"):
            compiled.append(f.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Count())
warnings.simplefilter("ignore")
import bayeslmm as bl
from bayeslmm.bayes.loo import group_log_likelihood
df = bl.load_dataset("sleepstudy")
m = bl.LMM("Reaction ~ Days + (Days | Subject)", df)
m.fit(draws=50, tune=50, chains=1, random_seed=1, progressbar=False, sampler="nutpie")
group_log_likelihood(m)
bl.lmer("Reaction ~ Days + (Days | Subject)", df, reml=False)
bl.lmer("Reaction ~ Days + (1 | Subject)", df, residual=bl.AR1(time="Days"))
df["fast"] = (df["Reaction"] < 280).astype(int)
bl.glmer("fast ~ Days + (Days | Subject)", df, family="binomial")
bl.glmer("fast ~ Days + (1 | Subject)", df, family="binomial", nAGQ=7)
g = bl.LMM("fast ~ Days + (1 | Subject)", df, family="bernoulli")
g.fit(draws=50, tune=50, chains=2, random_seed=1, progressbar=False)
print(json.dumps(compiled))
"""


def _hook_dependencies() -> set[str]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = config["tool"]["hatch"]["build"]["hooks"]["custom"]["dependencies"]
    return {n.split(";")[0].split(">")[0].split("<")[0].split("=")[0].strip() for n in names}


#: refuses, in the warm-up process, every runtime dependency that the build hook does not
#: install: the build environment has only the hook's dependencies
BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in the build hook's dependencies")
sys.meta_path.insert(0, Block())
"""


@pytest.mark.slow
def test_warmup_compiles_every_kernel_a_fit_uses(tmp_path):
    """``bayeslmm.warmup`` runs with only the build hook's dependencies (what the build
    environment has); after it, a fit, its exact draws, its per-group likelihoods,
    REML/ML and glmer fits, a GLMM's fit with its pointwise log-likelihood and
    convergence checks compile nothing, and print no notice."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    runtime = {"xarray", "pymc", "arviz", "matplotlib", "nutpie", "statsmodels", "h5netcdf",
               "h5py", "threadpoolctl", "dask", "numpyro", "jax"}  # fmt: skip
    blocked = sorted(runtime - _hook_dependencies())
    warm = _python(f"BLOCKED = {blocked!r}\n{BLOCK}\nfrom bayeslmm.warmup import warm; warm()", env)
    assert warm.returncode == 0, warm.stderr[-3000:]
    done = _python(COUNT, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert "compiling its numeric kernels" not in done.stderr


def test_compiling_prints_one_notice(tmp_path):
    code = (
        "import numpy as np\n"
        "import bayeslmm.jit as jit\n"
        "jit.NOTICE_AFTER = 0.05\n"
        "from bayeslmm.gaussian.blocked import spd_inverse, lower_inverse\n"
        "spd_inverse(np.eye(2))\n"
        "lower_inverse(np.eye(2), 2, np.zeros((2, 2)))\n"
    )
    done = _python(code, {"NUMBA_CACHE_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("bayeslmm: compiling its numeric kernels") == 1
    again = _python(code, {"NUMBA_CACHE_DIR": str(tmp_path)})  # now cached
    assert "compiling" not in again.stderr


def test_cache_stamp_covers_imported_modules(tmp_path):
    """A kernel's cache is invalid once a module it imports (directly or through another)
    changes: numba inlines the kernels it calls and freezes their constants, and its own
    stamp sees only the kernel's file."""
    from bayeslmm.jit import PACKAGE_DIR, ContentStampLocator, import_closure

    def func():
        pass

    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import math\nfrom .b import f  # calls f\n")
    (pkg / "b.py").write_text("from .sub import (\n    c,\n)\nK = 1\n")
    (pkg / "sub" / "c.py").write_text("G = 2\n")
    (pkg / "unrelated.py").write_text("H = 3\n")

    def stamp():
        return ContentStampLocator(func, str(pkg / "a.py")).get_source_stamp()

    assert {p.name for p in import_closure(pkg / "a.py")} == {"a.py", "b.py", "__init__.py",
                                                               "c.py"}  # fmt: skip
    first = stamp()
    (pkg / "unrelated.py").write_text("H = 4\n")
    assert stamp() == first
    (pkg / "sub" / "c.py").write_text("G = 5\n")  # two imports away
    second = stamp()
    assert second != first
    (pkg / "b.py").write_text("from .sub import (\n    c,\n)\nK = 2\n")
    assert stamp() != second
    # the compiled density calls the rows' likelihood and the blocked Cholesky
    density = {p.name for p in import_closure(Path(PACKAGE_DIR) / "bayes" / "density.py")}
    assert {"row_likelihood.py", "blocked.py", "kernels.py", "priors.py"} <= density


def test_cache_is_stamped_by_content(tmp_path):
    """The kernels' cache files are valid for a copy of the source with another mtime
    (what pip installs), and invalid once the text changes."""
    from bayeslmm.jit import ContentStampLocator

    source = tmp_path / "mod.py"
    source.write_text("x = 1\n")

    def func():
        pass

    locator = ContentStampLocator(func, str(source))
    stamp = locator.get_source_stamp()
    os.utime(source, (1, 1))
    assert ContentStampLocator(func, str(source)).get_source_stamp() == stamp
    source.write_text("x = 2\n")
    assert ContentStampLocator(func, str(source)).get_source_stamp() != stamp
    # files outside the package keep numba's own locators
    assert ContentStampLocator.from_function(func, str(source)) is None


@pytest.mark.parametrize("case", ["sleepstudy", "cbpp"])
def test_nutpie_draws_read_as_nutpie_converts_them(case):
    """The fit reads nutpie's raw trace itself (no ArviZ on the way): the same draws and
    per-draw statistics, same dtypes, as nutpie's own conversion of the same run."""
    import warnings

    import bayeslmm as bl
    from bayeslmm.bayes import stack
    from bayeslmm.bayes.sampling import nutpie_model

    nutpie = stack.import_nutpie()
    if case == "sleepstudy":
        model = bl.LMM("Reaction ~ Days + (Days | Subject)", bl.load_dataset("sleepstudy"))
    else:
        data = pd.read_csv(ROOT / "tests" / "data" / "cbpp.csv")
        model = bl.LMM("cbind(incidence, size - incidence) ~ period + (1 | herd)", data,
                       family="binomial")  # fmt: skip
    compiled = nutpie_model(model.compiled_density)
    run = {"draws": 40, "tune": 30, "chains": 3, "seed": 5, "progress_bar": False,
           "save_warmup": False}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        drawn, stats = stack.nutpie_draws(nutpie.sample(compiled, return_raw_trace=True,
                                                        **run))  # fmt: skip
        theirs = nutpie.sample(compiled, **run)
    x = stack.posterior(theirs)["x"].values
    assert drawn["x"].shape == x.shape == (3, 40, compiled.n_dim)
    np.testing.assert_array_equal(drawn["x"], x)
    per_draw = {k: v.values for k, v in stack.group(theirs, "sample_stats").data_vars.items()
                if v.dims == ("chain", "draw")}  # fmt: skip
    assert {"diverging", "n_steps", "step_size", "energy"} <= set(per_draw)
    assert set(stats) == set(per_draw)
    for name, values in per_draw.items():
        assert stats[name].dtype == values.dtype, name
        np.testing.assert_array_equal(stats[name], values, err_msg=name)


LIGHT_FIT = """
import json, sys, warnings
warnings.simplefilter("ignore")
import bayeslmm as bl
from bayeslmm.bayes import stack
m = bl.LMM("Reaction ~ Days + (Days | Subject)", bl.load_dataset("sleepstudy"))
idata = m.fit(draws=50, tune=50, chains=2, random_seed=1, progressbar=False)
loaded = [k for k in ("arviz", "arviz_stats", "scipy.stats", "matplotlib", "matplotlib.pyplot",
                      "scipy.sparse.linalg") if k in sys.modules]
left = type(sys.modules.get("arviz")).__name__
import arviz as az
rows = len(az.summary(idata, var_names=["beta"]))
same = stack.ARVIZ_1 or (isinstance(idata, az.InferenceData) and callable(az.plot_trace))
print(json.dumps({"loaded": loaded, "left": left, "arviz": type(az).__name__, "rows": rows,
                  "arviz_1": stack.ARVIZ_1, "same_class": same}))
"""


def test_fit_imports_arviz_only_where_results_need_it():
    """A compiled-density fit on ArviZ 1.x imports neither ArviZ's statistics and plots nor
    scipy.stats nor matplotlib (0.5 s of a 1.7 s sleepstudy fit); where they load anyway
    (ArviZ 0.x: nutpie reads it as it loads), nothing of the stand-in is left behind, and
    ArviZ imported after the fit is the real one and reads the results. On either line
    neither matplotlib (which ArviZ 0.x's ``arviz.data`` imports) nor SciPy's sparse
    solvers (which formulaic imports) load: :mod:`bayeslmm.lazy`."""
    done = _python(LIGHT_FIT)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["arviz"] == "module" and out["rows"] == 2
    if out["arviz_1"]:
        assert out["loaded"] == [] and out["left"] == "NoneType"
    else:  # ArviZ 0.x: its arviz.data, which holds the results, and nothing more
        assert out["loaded"] == ["arviz"] and out["left"] == "_PartialPackage"
    assert out["same_class"]


def _package(root: Path, name: str, data_source: str) -> None:
    """A package ``name`` whose ``__init__`` counts its runs and re-exports its ``data``
    subpackage (as ArviZ 0.x's does), with ``data``'s source given, and a module
    ``{name}_heavy`` that ``data`` may import."""
    (root / name / "data").mkdir(parents=True)
    (root / name / "__init__.py").write_text(
        "import builtins\n__version__ = '1.0'\nHEAVY = True\n"
        f"builtins.{name}_runs = getattr(builtins, '{name}_runs', 0) + 1\n"
        "from .data import *\n")  # fmt: skip
    (root / name / "data" / "__init__.py").write_text(data_source)
    (root / f"{name}_heavy.py").write_text("WEIGHT = 3\n")


def _forget(name: str) -> None:
    for module in [m for m in sys.modules if m.split(".")[0] in (name, f"{name}_heavy")]:
        del sys.modules[module]


def test_a_package_loads_its_data_alone_until_more_is_asked(tmp_path, monkeypatch):
    """ArviZ 0.x's results need ``arviz.data`` only (:func:`stack._arviz_container`): the
    package holds that subpackage's names, its modules named deferred are stand-ins while
    it loads, and its ``__init__`` runs once, in the same module, when anything else is
    asked of it; the classes stay the same objects."""
    import builtins

    from bayeslmm.bayes import stack

    name = "partialpkg_a"
    _package(tmp_path, name, "from .. import __version__\nimport partialpkg_a_heavy as h\n"
                             "class Box:\n    pass\n")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        package = stack.import_partially(name, "data", {"__version__": "1.0"},
                                         deferred=(f"{name}_heavy",))  # fmt: skip
        assert sys.modules[name] is package and type(package).__name__ == "_PartialPackage"
        assert package.Box is sys.modules[f"{name}.data"].Box
        assert getattr(builtins, f"{name}_runs", 0) == 0
        assert f"{name}_heavy" not in sys.modules  # a stand-in while data loaded, then gone
        assert sys.modules[f"{name}.data"].h.WEIGHT == 3  # imported at first use
        box = package.Box
        star: dict = {}
        exec(f"from {name} import *", star)  # the whole package's names, as import gives
        assert star["HEAVY"] is True and star["Box"] is box
        assert package.HEAVY is True and getattr(builtins, f"{name}_runs") == 1
        assert type(package) is type(sys) and package.Box is box
        assert stack.import_partially(name, "data", {}) is package  # imported: as it is
    finally:
        _forget(name)


def _nested(root: Path, name: str) -> None:
    """A package ``name`` with a subpackage ``sub`` holding a module ``leaf``; each counts
    its runs in ``builtins``."""
    (root / name / "sub").mkdir(parents=True)
    count = "import builtins\nbuiltins.{0} = getattr(builtins, '{0}', 0) + 1\n"
    (root / name / "__init__.py").write_text(count.format(f"{name}_pkg"))
    (root / name / "sub" / "__init__.py").write_text(count.format(f"{name}_sub"))
    (root / name / "sub" / "leaf.py").write_text(count.format(f"{name}_leaf") + "VALUE = 3\n")


@pytest.mark.parametrize("parent_imported", [False, True])
def test_stand_ins_import_a_module_at_its_first_use(tmp_path, monkeypatch, parent_imported):
    """While a library loads, ``import a.b.c as c`` of a module in ``stand_ins`` gives a
    stand-in, its packages not imported yet too; afterwards none is in ``sys.modules``, and
    the first attribute read imports the real module, which then is the one imported."""
    import builtins
    import importlib

    from bayeslmm.lazy import Deferred, find_spec_unimported, stand_ins

    name = "standin_pkg_b" if parent_imported else "standin_pkg_a"
    _nested(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        spec = find_spec_unimported(f"{name}.sub.leaf")
        assert spec.origin == str(tmp_path / name / "sub" / "leaf.py")
        assert name not in sys.modules  # found without importing its packages
        if parent_imported:
            importlib.import_module(name)
        space: dict = {}
        with stand_ins(f"{name}.sub.leaf") as placed:
            exec(f"import {name}.sub.leaf as leaf", space)
            assert sys.modules[f"{name}.sub.leaf"] is placed[f"{name}.sub.leaf"]
            assert placed[f"{name}.sub.leaf"].__spec__.origin == spec.origin
        assert isinstance(space["leaf"], Deferred)
        assert [n for n in sys.modules if n.startswith(name)] == ([name] if parent_imported else [])
        assert getattr(builtins, f"{name}_leaf", 0) == 0
        with stand_ins(f"{name}.sub.leaf"):  # ``from`` imports the packages, not the leaf
            exec(f"from {name}.sub import leaf as same", space)
        assert isinstance(space["same"], Deferred) and f"{name}.sub.leaf" not in sys.modules
        assert getattr(builtins, f"{name}_sub") == 1 and getattr(builtins, f"{name}_leaf", 0) == 0
        assert space["leaf"].VALUE == 3 and space["same"].VALUE == 3  # imported once, at first use
        assert getattr(builtins, f"{name}_leaf") == 1
        real = importlib.import_module(f"{name}.sub.leaf")
        assert type(real) is type(sys) and real.VALUE == 3
        assert getattr(builtins, f"{name}_leaf") == 1 and getattr(builtins, f"{name}_pkg") == 1
    finally:
        _forget(name)


def test_a_stand_in_answers_what_it_is_given_without_importing(tmp_path, monkeypatch):
    """A stand-in holds the attributes given as its answers: ``from a.b import x`` reads
    one without importing the module (a module that is not a package has no ``__path__``,
    and the stand-in says so without importing it); any other attribute imports it."""
    import builtins

    from bayeslmm.lazy import stand_ins

    name = "standin_pkg_c"
    _nested(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        space: dict = {}
        with stand_ins(f"{name}.sub.leaf", answers={f"{name}.sub.leaf": {"ANSWER": 7}}):
            exec(f"from {name}.sub.leaf import ANSWER", space)
            assert space["ANSWER"] == 7 and getattr(builtins, f"{name}_leaf", 0) == 0
            assert not hasattr(sys.modules[f"{name}.sub.leaf"], "__path__")
            assert getattr(builtins, f"{name}_leaf", 0) == 0
            exec(f"from {name}.sub.leaf import VALUE", space)
        assert space["VALUE"] == 3 and getattr(builtins, f"{name}_leaf") == 1
        assert type(sys.modules[f"{name}.sub.leaf"]) is type(sys)
    finally:
        _forget(name)


#: a fit in a fresh process, then dask, sparse and numba's extensions used: which array
#: libraries the fit imported, and whether xarray and numba know them afterwards
ARRAY_LIBRARIES = """
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import bayeslmm as bl
m = bl.LMM("Reaction ~ Days + (Days | Subject)", bl.load_dataset("sleepstudy"))
m.fit(draws=100, tune=100, chains=2, random_seed=1, progressbar=False)
imported = [n for n in ("dask", "sparse") if n in sys.modules]
m.summary(print_it=False)
import dask.array as da, numba, sparse, xarray as xr
from xarray.namedarray.pycompat import array_type
chunked = xr.DataArray(da.ones(4, chunks=2)).chunks is not None
coo = sparse.COO.from_numpy(np.eye(3))
kept = isinstance(xr.DataArray(coo).data, sparse.COO)
summed = float(numba.njit(lambda s: s.data.sum())(coo))  # numba's sparse extension
from xarray.namedarray.pycompat import _cached_duck_array_modules as table
print(json.dumps({"imported": imported, "chunked": chunked, "kept": kept, "summed": summed,
                  "types": da.Array in array_type("dask"),
                  "records": sorted({type(table[n]).__name__ for n in ("dask", "sparse")})}))
"""

#: inside the block: an array made before dask's import, then a dask array made after it
DASK_IN_BLOCK = """
import json, sys
import numpy as np, xarray as xr
from bayeslmm.bayes import stack
from xarray.namedarray.utils import is_duck_dask_array
with stack.array_libraries_unimported():
    plain = xr.DataArray(np.arange(3.0)).chunks
    before = "dask" in sys.modules and type(sys.modules["dask"]) is type(sys)
    import dask.array as da
    lazy = xr.DataArray(da.ones(4, chunks=2))
    seen = lazy.chunks is not None and is_duck_dask_array(lazy.data)
import dask, dask.base
left = [n for n in ("dask", "dask.base") if type(sys.modules.get(n)) is not type(sys)]
left += [] if dask.is_dask_collection is dask.base.is_dask_collection else ["the answer"]
print(json.dumps({"plain": plain, "before": before, "seen": seen, "left": left}))
"""


def test_a_fit_imports_no_array_library_xarray_asks_about():
    """xarray imports dask, sparse, pint, cupy and cubed where installed to ask whether an
    array is theirs, and numba imports its extensions (sparse) at a function's first call:
    a fit imports neither (``stack.array_libraries_unimported``, ``jit.kernel``: 0.24 s of
    a fresh process with the test extras), and both still know these libraries after it."""
    pytest.importorskip("dask")
    pytest.importorskip("sparse")
    done = _python(ARRAY_LIBRARIES)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"imported": [], "chunked": True, "kept": True, "summed": 3.0, "types": True,
                   "records": ["DuckArrayModule"]}  # xarray's own, once the library is in


def test_dask_imported_while_arrays_are_made_without_it_is_seen():
    """While a fit runs without dask's import, dask imported meanwhile (another thread, a
    callback) is what xarray sees: its arrays stay dask arrays; nothing is left behind."""
    pytest.importorskip("dask")
    done = _python(DASK_IN_BLOCK)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"plain": None, "before": False, "seen": True, "left": []}


def test_a_package_whose_data_reads_more_is_imported_whole(tmp_path, monkeypatch):
    """Where the subpackage reads a name of its package that was not given (another
    release of ArviZ 0.x), the package is imported whole, as ``import`` does, with nothing
    of the partial load left in ``sys.modules``."""
    import builtins

    from bayeslmm.bayes import stack

    name = "partialpkg_b"
    _package(tmp_path, name, "from .. import HEAVY\nclass Box:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        package = stack.import_partially(name, "data", {"__version__": "1.0"})
        assert type(package) is type(sys) and sys.modules[name] is package
        assert package.HEAVY is True and getattr(builtins, f"{name}_runs") == 1
        assert package.Box is sys.modules[f"{name}.data"].Box
    finally:
        _forget(name)


#: counts numba's refreshes of its registries in ``calls``
REFRESHES = """
import numba.core.base
calls = []
refresh = numba.core.base.BaseContext.refresh
numba.core.base.BaseContext.refresh = lambda self: (calls.append(1), refresh(self))[1]
"""

#: a Gaussian and a Bernoulli fit with kernels loaded from the cache, numba's registries
#: refreshed or not (argv[1]), then a new numba function compiled in the same process
LOADED = (
    REFRESHES
    + """
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd
import numba.core.caching
import bayeslmm as bl
from bayeslmm import jit
if sys.argv[1] == "numba":
    numba.core.caching.Cache.load_overload = jit._NUMBA_LOAD_OVERLOAD
rng = np.random.default_rng(3)
g = np.repeat(np.arange(12), 10)
x = rng.normal(size=g.size)
yb = (rng.random(g.size) < 1 / (1 + np.exp(-(0.3 * x + rng.normal(size=12)[g])))).astype(int)
fits = [bl.LMM("Reaction ~ Days + (Days | Subject)", bl.load_dataset("sleepstudy")),
        bl.LMM("yb ~ x + (1 | g)", pd.DataFrame({"yb": yb, "x": x, "g": g}), family="bernoulli")]
means = [float(m.fit(draws=100, tune=100, chains=2, random_seed=1, progressbar=False)
               .posterior["beta"].mean()) for m in fits]
loaded = len(calls)
f = numba.njit(lambda a: np.linalg.cholesky(np.dot(a, a.T)).sum())
a = np.arange(9.0).reshape(3, 3) + np.eye(3)
print(json.dumps({"refreshed": loaded, "means": means,
                  "compiled": bool(np.isclose(f(a), np.linalg.cholesky(a @ a.T).sum()))}))
"""
)


def test_kernels_load_without_refreshing_numba():
    """A fit loads the package's kernels from numba's cache without numba's refresh of
    its typing and lowering registries (``jit._load_overload``: 0.15-0.25 s of a fresh
    process), with the draws numba's own load gives, and numba compiles afterwards in the
    same process."""
    out = {}
    for mode in ("numba", "light", "numba"):  # the first fills the cache where it is cold
        done = _python(LOADED, args=(mode,))
        assert done.returncode == 0, done.stderr
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["light"]["refreshed"] == 0 and out["numba"]["refreshed"] > 0
    assert out["light"]["means"] == out["numba"]["means"]
    assert out["light"]["compiled"] and out["numba"]["compiled"]


#: every kernel the package compiles ahead (``bayeslmm.warmup``), run with the kernels
#: loaded from the cache: how often numba refreshed its registries
WARM_LOADED = (
    REFRESHES
    + """
from bayeslmm.warmup import warm
warm()
print(len(calls))
"""
)


def test_every_kernel_loads_and_runs_without_refreshing_numba():
    """Every kernel of a warm cache loads without numba's refresh and runs: one needing a
    symbol only the refresh registers would stop the process at its load
    (``jit._load_overload``). The first process fills the cache where it is cold."""
    for _ in range(2):
        done = _python(WARM_LOADED)
        assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "0"


#: a handler registered before ``import bayeslmm`` runs after bayeslmm's (atexit is
#: last in, first out): it sees whether the collector's objects were frozen, and that a
#: file written and left to the teardown is complete.
EXIT = """
import atexit, gc, sys
atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0, flush=True))
import bayeslmm, pandas  # noqa: F401
held = open(sys.argv[1], "w")
held.write("x" * 100_000)
"""


@pytest.mark.parametrize("keep", ["", "1"])
def test_exit_skips_the_last_collection_unless_asked(tmp_path, keep):
    path = tmp_path / "held.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BAYESLMM_EXIT_COLLECTION": keep}
    done = subprocess.run([sys.executable, "-c", EXIT, str(path)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"frozen {not keep}"
    assert path.read_text() == "x" * 100_000  # freed by reference counting, so flushed
