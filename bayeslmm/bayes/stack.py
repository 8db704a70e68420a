"""What differs between the two supported stacks, in one place.

- Python 3.11: PyMC 5, PyTensor 2, ArviZ 0.2x (results are :class:`arviz.InferenceData`),
  nutpie 0.16.8.
- Python >= 3.12: PyMC 6, PyTensor 3, ArviZ 1.x (results are :class:`xarray.DataTree`; the
  statistics live in arviz-stats, the plots in arviz-plots), nutpie >= 0.16.10.

Everything else in bayeslmm reads and writes results through these functions: the result
container and its groups, ``from_dict``, the names of summary and LOO fields, HDIs, ESS and
R-hat, model comparison, the ArviZ figures and nutpie's mass-matrix argument. What the rest
of the package sees is the same on both lines: groups as :class:`xarray.Dataset`, summary
tables with ArviZ 0.x's column names (``hdi_3%``, ``mcse_mean``, ``ess_bulk``, ``r_hat``),
LOO comparison tables with ``elpd_loo`` and ``p_loo``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import xarray as xr

from ..lazy import Deferred, import_partially, real_module, stand_ins

#: ArviZ, imported at its first use: as a whole (its statistics, plots and matplotlib; 0.3 s
#: of a 1.7 s sleepstudy fit on ArviZ 1.x) it is needed for summaries, LOO and plots, not to
#: sample and hold draws
az: Any = Deferred("arviz")


def _arviz_container() -> Any:
    """ArviZ 0.x's module as far as results need it (``InferenceData``, ``from_dict``).

    ``import arviz`` on the 0.x line loads its statistics (scipy.stats, a numba ufunc
    compiled at import), its plots with matplotlib.pyplot and arviz-stats: 0.7-1.1 s of a
    3.2 s sleepstudy fit in a fresh process, which only holds draws. Unless ArviZ is
    imported already, ``arviz`` is its ``arviz.data`` (loaded with matplotlib.pyplot
    deferred) until anything else is asked of it (:func:`import_partially`)."""
    return import_partially(
        "arviz", "data", deferred=("matplotlib.pyplot",),
        attrs={"__version__": importlib.metadata.version("arviz"),
               "_log": logging.getLogger("arviz")})  # fmt: skip


#: ArviZ 1.x (arviz-base / arviz-stats / arviz-plots, results as ``xarray.DataTree``).
ARVIZ_1 = int(importlib.metadata.version("arviz").split(".")[0]) >= 1

#: The result container of the installed ArviZ.
Results: TypeAlias = "az.InferenceData | xr.DataTree"


# --- the container ---------------------------------------------------------------------------


def from_dict(
    groups: Mapping[str, Mapping[str, Any]],
    *,
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, list[str]] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Results:
    """Results from ``{group: {variable: array}}`` (draws as ``(chain, draw, ...)``);
    ``attrs`` go on the posterior group."""
    groups = {g: dict(v) for g, v in groups.items() if v is not None}
    if ARVIZ_1:  # arviz-base's alone: what ``arviz.from_dict`` is
        from arviz_base import from_dict

        return from_dict(
            groups,
            coords=dict(coords or {}),
            dims=dict(dims or {}),
            attrs={"posterior": dict(attrs)} if attrs else None,
        )
    return _arviz_container().from_dict(**groups, coords=coords, dims=dims, attrs=attrs)


def from_datasets(**groups: xr.Dataset) -> Results:
    """Results holding the given groups (``posterior=...``, ``log_likelihood=...``)."""
    if ARVIZ_1:
        return xr.DataTree.from_dict({name: ds for name, ds in groups.items()})
    return _arviz_container().InferenceData(**groups)


def group_names(results: Results) -> list[str]:
    """The groups present (``posterior``, ``sample_stats``, ...)."""
    if ARVIZ_1:
        return list(results.children)
    return list(results.groups())


def has_group(results: Results, name: str) -> bool:
    """Whether ``results`` holds the group ``name``."""
    return name in group_names(results)


def posterior(results: Results) -> xr.Dataset:
    """The posterior group as an :class:`xarray.Dataset`."""
    return group(results, "posterior")


def group(results: Results, name: str) -> xr.Dataset:
    """The group ``name`` as an :class:`xarray.Dataset`."""
    if ARVIZ_1:
        return results[name].to_dataset()
    return results[name]


def set_group(results: Results, name: str, data: xr.Dataset) -> None:
    """Add the group ``name``, or replace it where it is present."""
    if ARVIZ_1:
        results[name] = xr.DataTree(data)
    elif name in results.groups():
        setattr(results, name, data)
    else:
        results.add_groups({name: data})


def drop_group(results: Results, name: str) -> None:
    """Remove the group ``name`` where it is present."""
    if has_group(results, name):
        del results[name]


def to_netcdf(results: Results, path: Any, group: str | None = None) -> None:
    """Write every group of ``results`` to a new netCDF file ``path`` (h5netcdf), under
    the netCDF group ``group`` where given (the file's root otherwise)."""
    if isinstance(results, xr.DataTree):
        tree = xr.DataTree(children={group: results.copy()}) if group else results
        tree.to_netcdf(path, mode="w", engine="h5netcdf")
    else:
        results.to_netcdf(str(path), base_group=f"/{group or ''}", engine="h5netcdf")


def from_netcdf(path: Any, group: str | None = None) -> Results:
    """Read back, in memory (the file is closed after), what :func:`to_netcdf` wrote, as
    the installed ArviZ's container."""
    if ARVIZ_1:
        with xr.open_datatree(path, group=group, engine="h5netcdf") as tree:
            return tree.load()
    with az.rc_context({"data.load": "eager"}):
        return az.InferenceData.from_netcdf(str(path), base_group=f"/{group or ''}",
                                            engine="h5netcdf")  # fmt: skip


#: the array libraries xarray asks about, for each array it takes
#: (``xarray.namedarray.pycompat.DuckArrayModule``)
ARRAY_LIBRARIES = ("dask", "sparse", "pint", "cupy", "cubed")


def _imported(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and not isinstance(module, Deferred)


class _UnimportedArrays:
    """xarray's record of one array library (its ``DuckArrayModule``) that answers "no
    array is of this library's type" without importing the library while it is not
    imported (no array of it can exist then); everything else, and every answer once the
    library is imported, comes from xarray's own record, made at that first need, which
    then takes this one's place in xarray's table."""

    def __init__(self, name: str, make: Any, table: dict[str, Any]) -> None:
        self._name, self._make, self._table, self._real = name, make, table, None

    def __getattr__(self, attr: str) -> Any:
        if attr == "type" and not _imported(self._name):
            return ()
        if self._real is None:
            self._real = self._make(self._name)
            if self._table.get(self._name) is self:
                self._table[self._name] = self._real
        return getattr(self._real, attr)


def _is_dask_collection(x: Any) -> bool:
    """``dask.base.is_dask_collection``, answered without importing dask for what dask's
    own function rejects first (a class, or no callable ``__dask_graph__``)."""
    if isinstance(x, type) or not callable(getattr(x, "__dask_graph__", None)):
        return False
    module = sys.modules.get("dask.base")
    if isinstance(module, Deferred):  # the stand-in
        return real_module(module).is_dask_collection(x)
    return importlib.import_module("dask.base").is_dask_collection(x)


@contextlib.contextmanager
def array_libraries_unimported() -> Iterator[None]:
    """While the block runs, xarray tells whether an array is a dask, sparse, pint, cupy
    or cubed array without importing that library where it is installed and not imported
    yet: no array of it can exist. xarray imports each one to ask (for every array made
    into a variable), and dask and sparse cost a fresh process's fit 0.1-0.3 s where they
    are installed. Its record of each library (``DuckArrayModule``) is one that does not
    import it while the library is not imported (:class:`_UnimportedArrays`; it stays in
    xarray's table afterwards, answering as xarray's own would at any time: removing it
    could meet another thread between xarray's two reads of the table), and
    ``dask.base`` a stand-in while the block runs, whose ``is_dask_collection`` answers
    dask's own first test. Where xarray keeps no such table, its records are its own."""
    try:
        from xarray.namedarray import pycompat

        table, make = pycompat._cached_duck_array_modules, pycompat.DuckArrayModule
    except (ImportError, AttributeError):
        table, make = None, None
    if isinstance(table, dict):
        for name in ARRAY_LIBRARIES:
            if name not in table and not _imported(name):
                table.setdefault(name, _UnimportedArrays(name, make, table))
    answers = {"dask.base": {"is_dask_collection": _is_dask_collection}}
    with stand_ins("dask.base", answers=answers):
        yield


# --- statistics ------------------------------------------------------------------------------

#: Columns of :func:`summary`, ArviZ 0.x's names and order (HDI bounds in between).
SUMMARY_STATS = ("mean", "sd", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat")


def hdi_columns(hdi_prob: float) -> tuple[str, str]:
    """The names of the HDI bound columns (``hdi_3%``, ``hdi_97%`` for 0.94)."""
    return f"hdi_{50 - hdi_prob * 50:g}%", f"hdi_{50 + hdi_prob * 50:g}%"


@contextlib.contextmanager
def _without_arviz_numba() -> Iterator[None]:
    """ArviZ 0.x's R-hat JIT-compiles a variance with numba in every new process (0.3 s,
    more than sampling sleepstudy takes); NumPy's is as fast on a few thousand draws.
    ArviZ 1.x has no such switch and needs none."""
    numba_switch = getattr(az, "Numba", None)
    was_on = numba_switch is not None and numba_switch.numba_flag
    if was_on:
        numba_switch.disable_numba()
    try:
        yield
    finally:
        if was_on:
            numba_switch.enable_numba()


class _DropShapeNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Shape validation failed" not in record.getMessage()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without ArviZ 0.x's "Shape validation failed" log lines for one chain (R-hat needs
    two; it is NaN then, and the convergence checks say so), and without ArviZ's numba."""
    # ArviZ logs through its own Logger instance (not one logging.getLogger returns)
    logger, notice = getattr(az, "_log", logging.getLogger("arviz")), _DropShapeNotice()
    logger.addFilter(notice)
    try:
        with _without_arviz_numba(), np.errstate(invalid="ignore", divide="ignore"):
            yield
    finally:
        logger.removeFilter(notice)


def summary(draws: xr.Dataset, hdi_prob: float) -> pd.DataFrame:
    """Mean, sd, HDI, MCSE, ESS and R-hat of every element of ``draws`` (variables with
    ``chain`` and ``draw`` dims), one row per element, ArviZ 0.x's columns and labels."""
    lo, hi = hdi_columns(hdi_prob)
    with _quiet():
        if ARVIZ_1:
            table = az.summary(draws, ci_prob=hdi_prob, ci_kind="hdi", round_to="none")
            bounds = [c for c in table.columns if c.endswith("_lb") or c.endswith("_ub")]
            table = table.rename(columns=dict(zip(bounds, (lo, hi), strict=True)))
        else:
            table = az.summary(draws, hdi_prob=hdi_prob, round_to="none")
    return table[["mean", "sd", lo, hi, *SUMMARY_STATS[2:]]]


def hdi(draws: xr.DataArray, hdi_prob: float) -> tuple[xr.DataArray, xr.DataArray]:
    """Lower and upper bounds of the highest-density interval over ``chain`` and ``draw``
    of every element of ``draws``."""
    if "chain" not in draws.dims:  # pooled draws only: one chain
        draws = draws.expand_dims("chain")
    with _quiet():
        if ARVIZ_1:
            bounds = az.hdi(draws, prob=hdi_prob)
            return (bounds.sel(ci_bound="lower", drop=True),
                    bounds.sel(ci_bound="upper", drop=True))  # fmt: skip
        out = az.hdi(draws.rename(draws.name or "x"), hdi_prob=hdi_prob)[draws.name or "x"]
    return out.sel(hdi="lower", drop=True), out.sel(hdi="higher", drop=True)


def ess(draws: xr.Dataset | np.ndarray, method: str = "bulk") -> xr.Dataset | float:
    """Effective sample size of each element (a Dataset), or of a ``(chain, draw)`` array."""
    with _quiet():
        out = az.ess(draws, method=method)
    return float(np.asarray(out)) if isinstance(draws, np.ndarray) else out


def tail_ess_probs() -> tuple[float, float]:
    """The two quantiles whose indicators give ``arviz.ess(method="tail")`` by default:
    5% and 95% in ArviZ 0.x (Vehtari et al. 2021); in 1.x the credible-interval
    probability (``rcParams["stats.ci_prob"]``, 0.89) and its complement."""
    if ARVIZ_1:
        from arviz_base import rcParams  # what ``arviz.rcParams`` is

        p = float(rcParams["stats.ci_prob"])
        return min(p, 1.0 - p), max(p, 1.0 - p)
    return 0.05, 0.95


def rhat(draws: xr.Dataset) -> xr.Dataset:
    """Rank-normalised split R-hat of each element of ``draws``."""
    with _quiet():
        return az.rhat(draws)


# --- LOO -------------------------------------------------------------------------------------


def loo(results: Results) -> Any:
    """PSIS-LOO (ArviZ's ``ELPDData`` of the installed line) of the ``log_likelihood`` group,
    pointwise."""
    return az.loo(results, pointwise=True)


def pointwise_elpd(loo_result: Any) -> np.ndarray:
    """Each point's contribution to the ELPD (0.x ``loo_i``, 1.x ``elpd_i``)."""
    return np.asarray(loo_result.elpd_i if ARVIZ_1 else loo_result.loo_i)


def elpd(loo_result: Any) -> tuple[float, float, float]:
    """``(elpd, se, p_loo)`` of an ``ELPDData`` of either line."""
    if ARVIZ_1:
        return float(loo_result.elpd), float(loo_result.se), float(loo_result.p)
    return float(loo_result.elpd_loo), float(loo_result.se), float(loo_result.p_loo)


#: ArviZ 1.x's names of ``az.compare``'s columns under 0.x's.
_COMPARE_NAMES = {"elpd": "elpd_loo", "p": "p_loo"}


def compare(loo_results: Mapping[str, Any]) -> pd.DataFrame:
    """``az.compare`` of the LOO results by name, best first: ``rank``, ``elpd_loo``,
    ``p_loo``, ``elpd_diff``, ``weight``, ``se``, ``dse``, ``warning`` and ArviZ's own extra
    columns."""
    if ARVIZ_1:
        table = az.compare(dict(loo_results)).rename(columns=_COMPARE_NAMES)
        table["elpd_diff"] = -table["elpd_diff"]  # 1.x: model - best; 0.x: best - model
        # 0.x's flag: some point's Pareto k is too high for PSIS to be reliable
        table["warning"] = [bool(loo_results[name].warning) for name in table.index]
        first = ["rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse", "warning"]
        return table[first + [c for c in table.columns if c not in first]]
    import warnings

    with warnings.catch_warnings():  # ArviZ's own pandas call, not the user's business
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")
        return az.compare(dict(loo_results), ic="loo")


# --- figures ---------------------------------------------------------------------------------


def _labeller(names: Mapping[str, str]) -> Any:
    return az.labels.MapLabeller(var_name_map=dict(names))


def figure(plotted: Any) -> Any:
    """The matplotlib Figure of what an ArviZ plot function returned (axes or a
    PlotCollection)."""
    if ARVIZ_1:  # a PlotCollection
        return plotted.viz["figure"].item()
    return np.asarray(plotted).ravel()[0].figure


def plot_trace(results: Results, var_names: list[str], names: Mapping[str, str]) -> Any:
    """ArviZ's trace plot (densities and chains) of ``var_names``; the matplotlib Figure."""
    if ARVIZ_1:
        plotted = az.plot_trace_dist(results, var_names=var_names, labeller=_labeller(names),
                                     backend="matplotlib")  # fmt: skip
    else:
        plotted = az.plot_trace(results, var_names=var_names, labeller=_labeller(names),
                                compact=False)  # fmt: skip
    return figure(plotted)


def plot_rank(results: Results, var_names: list[str], names: Mapping[str, str]) -> Any:
    """ArviZ's rank plot of ``var_names`` (flat when chains mix); the matplotlib Figure."""
    if ARVIZ_1:
        plotted = az.plot_rank(results, var_names=var_names, labeller=_labeller(names),
                               backend="matplotlib")  # fmt: skip
    else:
        plotted = az.plot_rank(results, var_names=var_names, labeller=_labeller(names),
                               kind="bars")  # fmt: skip
    return figure(plotted)


# --- samplers --------------------------------------------------------------------------------


def import_nutpie() -> Any:
    """nutpie, imported without importing ArviZ where nutpie's loading does not use it.

    nutpie's ``sample`` module imports ArviZ at its top, but uses it only to convert
    draws, which :func:`nutpie_draws` does instead; so while nutpie loads, ``arviz`` in
    ``sys.modules`` is a stand-in that imports the real ArviZ at its first attribute
    access, and it is removed once nutpie is loaded (nutpie's module alone keeps it).
    ArviZ 1.x with nutpie 0.16.11: the import 0.7 s -> 0.1 s. nutpie 0.16.8 reads
    ``arviz.InferenceData`` in its annotations: on the 0.x line nutpie loads after
    :func:`_arviz_container`, which holds it."""
    if "nutpie" in sys.modules or "arviz" in sys.modules:
        return importlib.import_module("nutpie")
    if not ARVIZ_1:
        _arviz_container()
        return importlib.import_module("nutpie")
    with stand_ins("arviz"):
        return importlib.import_module("nutpie")


def nutpie_draws(raw: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Draws and per-draw sampler statistics after tuning, as ``(chain, draw, ...)``
    arrays, from nutpie's raw trace (``nutpie.sample(..., return_raw_trace=True)``:
    per chain an Arrow record batch of draws and one of statistics, a list column per
    vector variable with its shape in the field's metadata). What nutpie's own conversion
    gives for the draws and for statistics of one value per draw (the ``chain`` and
    ``draw`` columns are the index); statistics of several values per draw (mass matrix,
    divergence points: stored only where asked) are left out."""
    import pyarrow  # nutpie's own dependency, loaded with it

    draw_batches, stat_batches = raw.get_arrow_trace()
    tuning = [int(pyarrow.array(s.column("tuning")).to_numpy(False).sum())
              for s in stat_batches]  # fmt: skip
    n_draws = max(d.num_rows - t for d, t in zip(draw_batches, tuning, strict=True))

    def gather(batches, scalars_only: bool) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for chain, (batch, start) in enumerate(zip(batches, tuning, strict=True)):
            kept = batch.slice(start, batch.num_rows - start)
            for name in kept.column_names:
                column = kept.column(name)
                values = pyarrow.array(column)
                listed = hasattr(values, "flatten")
                if (scalars_only and listed) or name in ("chain", "draw"):  # index
                    continue
                shape = (column.field.metadata or {}).get(b"shape", b"").decode()
                shape = tuple(int(n) for n in shape.split(",")) if shape else ()
                present = ~values.is_null().to_numpy(False)
                values = values.flatten() if listed else values
                if name not in out:  # nutpie's fill where a value is missing
                    dtype = np.dtype(values.type.to_pandas_dtype())
                    fill = {"f": np.nan, "O": None}.get(dtype.kind, 0)
                    out[name] = np.full((len(batches), n_draws, *shape), fill, dtype)
                values = values.to_numpy(False)
                if not listed:  # a flattened list column holds the present rows only
                    values = values[present]
                out[name][chain, : kept.num_rows][present] = values.reshape(-1, *shape)
        return out

    return gather(draw_batches, False), gather(stat_batches, True)


@cache
def nutpie_has_adaptation() -> bool:
    """Does the installed nutpie take ``adaptation=`` (0.16.9 on; its low-rank adaptation
    differs from the ``low_rank_modified_mass_matrix=`` of earlier releases)?"""
    nutpie = import_nutpie()

    return "adaptation" in inspect.signature(nutpie.sample).parameters


def nutpie_mass_matrix(low_rank: bool, draws: bool = False) -> dict[str, Any]:
    """nutpie's argument for a diagonal (plus low rank, where ``low_rank``) mass matrix:
    ``adaptation=`` from nutpie 0.16.9, ``low_rank_modified_mass_matrix=`` before. Where
    ``draws``, a diagonal one is the draws' variances (Stan's and PyMC's estimate: nutpie's
    ``adaptation="draw_diag"``, ``use_grad_based_mass_matrix=False`` before) rather than
    nutpie's default ``sqrt(var(draws) / var(gradient))``."""
    if low_rank or not draws:
        if nutpie_has_adaptation():
            return {"adaptation": "low_rank" if low_rank else "diag"}
        return {"low_rank_modified_mass_matrix": low_rank}
    if nutpie_has_draw_diag():
        return {"adaptation": "draw_diag"}
    return {"use_grad_based_mass_matrix": False}


@cache
def nutpie_has_draw_diag() -> bool:
    """Does the installed nutpie take ``adaptation="draw_diag"`` (which deprecates
    ``use_grad_based_mass_matrix=False``)?"""
    nutpie = import_nutpie()
    parameter = inspect.signature(nutpie.sample).parameters.get("adaptation")
    return parameter is not None and "draw_diag" in str(parameter.annotation)


def nutpie_compiled_model(**fields: Any) -> Any:
    """nutpie's ``CompiledPyMCModel`` around compiled C functions, with the fields the
    installed nutpie asks for beyond ``fields`` (0.16.10 added ``shared_var_keys``)."""
    import dataclasses

    import_nutpie()  # before nutpie's own modules, so that they load without ArviZ
    from nutpie.compile_pymc import CompiledPyMCModel

    names = {f.name for f in dataclasses.fields(CompiledPyMCModel)}
    if "shared_var_keys" in names:
        fields.setdefault("shared_var_keys", {})
    return CompiledPyMCModel(**fields)
