"""A fitted :class:`~bayeslmm.LMM` as one netCDF file: writing it (:func:`save`, called by
:meth:`LMM.save <bayeslmm.LMM.save>`) and reading its record and rows back; the file's
layout is described in :mod:`bayeslmm.bayes.persist`, whose :func:`~bayeslmm.bayes.persist.load`
rebuilds the model from them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ArgumentError, DataError, RowsNotInMemoryError
from ..spec.design import Design
from ..spec.residual import AR1, CompoundSymmetry, ResidualStructure
from . import stack

if TYPE_CHECKING:
    from .fitted import FittedLMM as LMM  # a protocol: this module is below bayes.model

#: Layout of the file; a reader refuses any other (see :func:`check_format`).
FORMAT = 1
CONTAINER_GROUP = "inference"
MODEL_GROUP = "bayeslmm"
DEPENDENCIES = ("numpy", "pandas", "scipy", "xarray", "arviz", "pymc", "pytensor", "formulaic",
                "h5netcdf")  # fmt: skip
_RESIDUALS = {"AR1": AR1, "CompoundSymmetry": CompoundSymmetry}


# ---------------------------------------------------------------------------------------
# the specification


def _plain(value: Any) -> Any:
    """NumPy scalars (a seed or draw count given as ``np.int64``) as JSON's numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def package_version() -> str:
    """The installed bayeslmm's version (its distribution's metadata: the version in
    ``pyproject.toml``, which ``bayeslmm.__version__`` repeats)."""
    try:
        return importlib.metadata.version("bayeslmm")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a clone
        return "unknown (not installed)"


def versions() -> dict[str, str]:
    """Versions of Python, bayeslmm and its dependencies (``"absent"`` if not installed)."""
    out = {"python": platform.python_version(), "bayeslmm": package_version()}
    for name in DEPENDENCIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def design_digest(design: Design) -> str:
    """SHA-256 of what the model is fitted to: response, fixed-effects matrix and names,
    and every random block's columns, codes and levels."""
    digest = hashlib.sha256()
    arrays = [design.y, design.X]
    for block in design.blocks:
        arrays += [block.Z, block.codes]
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    names = [design.fixed_names] + [[b.label, b.columns, b.levels] for b in design.blocks]
    digest.update(json.dumps(names, default=str).encode())
    return digest.hexdigest()


def data_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a data frame's values, column names and types."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _residual_record(structure: ResidualStructure | None) -> dict | None:
    if structure is None:
        return None
    kind = type(structure).__name__
    if kind not in _RESIDUALS:
        raise ArgumentError(f"cannot save a model with residual structure {structure!r}")
    group = list(structure.group) if structure.group is not None else None
    return {"kind": kind, "time": structure.time, "group": group}


def _residual_from(record: dict | None) -> ResidualStructure | None:
    if record is None:
        return None
    cls = _RESIDUALS[record["kind"]]
    group = record["group"]
    if cls is AR1:
        return AR1(time=record["time"], group=group)
    return cls(group=group)


def _columns(frame: pd.DataFrame) -> tuple[xr.Dataset, list[dict]]:
    """The frame as netCDF variables ``c0, c1, ...`` on dim ``row`` (exact values; a
    categorical column as its codes) and a record per column of its name and type."""
    data, records = {}, []
    for k, (name, values) in enumerate(frame.items()):
        record: dict[str, Any] = {"name": str(name), "dtype": str(values.dtype)}
        if isinstance(values.dtype, pd.CategoricalDtype):
            record["categories"] = values.cat.categories.tolist()
            record["categories_dtype"] = str(values.cat.categories.dtype)
            record["ordered"] = bool(values.cat.ordered)
            array = values.cat.codes.to_numpy()
        elif pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(
            values.dtype
        ) or pd.api.types.is_datetime64_any_dtype(values.dtype):
            array = values.to_numpy()
        else:
            array = values.to_numpy(dtype=object)
            odd = {type(v).__name__ for v in array if not isinstance(v, str)}
            if odd:
                raise ArgumentError(f"cannot save column {name!r}: it holds {sorted(odd)} "
                                    "values, and only numbers, booleans and text are "
                                    "written")  # fmt: skip
        data[f"c{k}"] = xr.DataArray(array, dims="row")
        records.append(record)
    return xr.Dataset(data), records


def _frame(dataset: xr.Dataset, records: list[dict]) -> pd.DataFrame:
    """The frame :func:`_columns` stored."""
    columns = {}
    for k, record in enumerate(records):
        values = dataset[f"c{k}"].values
        if "categories" in record:
            categories = pd.Index(record["categories"], dtype=record["categories_dtype"])
            columns[record["name"]] = pd.Categorical.from_codes(
                values, categories=categories, ordered=record["ordered"]
            )
        else:
            columns[record["name"]] = pd.Series(values).astype(record["dtype"])
    return pd.DataFrame(columns)


def model_record(model: LMM) -> dict:
    """The JSON record of a fitted model's specification (see the module text)."""
    design = model.design
    return {
        "format": FORMAT,
        "versions": versions(),
        "formula": model.formula,
        "parametrization": model.parametrization,
        "residual": _residual_record(model.residual_structure),
        "priors": {name: {"dist": p.dist, "params": p.params} for name, p in model.priors.items()},
        "fit": model.fit_info.as_dict() if model.fit_info is not None else {},
        "n_dropped": int(design.n_dropped),
        "data_sha256": data_digest(design.frame),
        "design_sha256": design_digest(design),
    }


# ---------------------------------------------------------------------------------------
# save, and read back


def save(model: LMM, path: str | os.PathLike) -> Path:
    """Write a fitted model to ``path`` (one netCDF file; replaced if it exists)."""
    if not isinstance(path, str | os.PathLike):
        raise ArgumentError(f"path must be a file name, got {type(path).__name__}")
    idata = model._posterior()
    if not model.design.rows_in_memory:
        raise RowsNotInMemoryError(
            f"save() writes the rows the model was fitted to, and {model.formula!r} was "
            "fitted from a Dask DataFrame whose rows stay on the cluster; keep its "
            "posterior with model.idata.to_netcdf(path) and the data where they are"
        )
    path = Path(path)
    columns, records = _columns(model.design.frame)
    record = model_record(model)
    record["columns"] = records
    columns.attrs["model"] = json.dumps(record, default=_plain)
    stack.to_netcdf(idata, path, CONTAINER_GROUP)
    columns.to_netcdf(path, mode="a", group=MODEL_GROUP, engine="h5netcdf")
    return path


def check_format(record: dict, path: object) -> None:
    """Refuse a file whose format this version does not read, naming both versions."""
    written = record.get("format")
    if written != FORMAT:
        by = record.get("versions", {}).get("bayeslmm", "an unknown version")
        raise DataError(
            f"{str(path)!r} was written by bayeslmm {by} (file format {written}); this is "
            f"bayeslmm {package_version()}, which reads file format {FORMAT} only. Load it with "
            f"bayeslmm {by}, or refit the model with this version"
        )


def read_record(path: str | os.PathLike) -> tuple[dict, pd.DataFrame]:
    """The specification record and the stored rows of a saved model."""
    if not isinstance(path, str | os.PathLike):
        raise ArgumentError(f"path must be a file name, got {type(path).__name__}")
    if not Path(path).is_file():
        raise DataError(f"no file {str(path)!r}")
    try:
        with xr.open_dataset(path, group=MODEL_GROUP, engine="h5netcdf") as stored:
            stored = stored.load()
    except (OSError, ValueError) as exc:
        raise DataError(f"{str(path)!r} is not a model written by LMM.save() (no "
                        f"{MODEL_GROUP!r} group: {exc})") from exc  # fmt: skip
    if "model" not in stored.attrs:
        raise DataError(f"{str(path)!r} is not a model written by LMM.save() (its "
                        f"{MODEL_GROUP!r} group has no specification)")  # fmt: skip
    record = json.loads(stored.attrs["model"])
    check_format(record, path)
    return record, _frame(stored, record["columns"])
