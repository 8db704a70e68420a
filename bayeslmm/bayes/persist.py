"""Saving a fitted :class:`~bayeslmm.LMM` to one netCDF file and loading it back.

The file holds two netCDF groups:

- ``/inference``: the ArviZ container of the fit, every group of it (posterior,
  sample_stats, observed_data, log_likelihood, posterior_predictive, ...), written and
  read by :func:`bayeslmm.bayes.stack.to_netcdf` and :func:`~bayeslmm.bayes.stack.from_netcdf`
  (ArviZ 0.2x ``InferenceData`` or ArviZ 1.x ``xarray.DataTree``);
- ``/bayeslmm``: the rows the model was fitted to (the columns its formula uses, one
  variable each, exact values) and, in the attribute ``model``, a JSON record of the
  specification: formula, parametrisation, residual structure, every prior, sampler
  settings, the file format and the versions of bayeslmm and its dependencies, and
  SHA-256 digests of the data and of the design they give.

:func:`load` rebuilds the design from the stored rows and refuses the file if its
digest differs (e.g. a formulaic release that encodes a factor differently), so a
loaded model summarises, predicts, reports and compares exactly as the saved one,
without refitting.
"""

from __future__ import annotations

import os
import warnings

from ..errors import DataError
from . import stack
from .model import LMM
from .priors import Prior
from .records import (
    CONTAINER_GROUP,
    DEPENDENCIES,
    FORMAT,
    MODEL_GROUP,
    _columns,
    _frame,
    _residual_from,
    check_format,
    data_digest,
    design_digest,
    model_record,
    package_version,
    read_record,
    save,
    versions,
)
from .settings import FitInfo

__all__ = [
    "CONTAINER_GROUP", "DEPENDENCIES", "FORMAT", "MODEL_GROUP", "check_format", "data_digest",
    "design_digest", "load", "model_record", "package_version", "read_record", "save", "versions",
    "_columns", "_frame",  # read by tests
]  # fmt: skip


def load(path: str | os.PathLike) -> LMM:
    """A model written by :meth:`LMM.save <bayeslmm.LMM.save>`, fitted, without refitting.

    Raises
    ------
    DataError
        If the file was written in another file format (naming the bayeslmm version that
        wrote it and this one), is not such a file, or its rows no longer give the design
        the model was fitted to.
    """
    record, frame = read_record(path)
    priors = {name: Prior(p["dist"], **p["params"]) for name, p in record["priors"].items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit's warnings were given when it ran
        model = LMM(record["formula"], frame, priors=priors,
                    parametrization=record["parametrization"],
                    residual=_residual_from(record["residual"]))  # fmt: skip
    model.design.n_dropped = record["n_dropped"]
    if design_digest(model.design) != record["design_sha256"]:
        written = record["versions"]
        now = versions()
        changed = {k: (written.get(k), now[k]) for k in now if written.get(k) != now[k]}
        raise DataError(
            f"the rows stored in {str(path)!r} no longer give the design {record['formula']!r} "
            f"was fitted to (versions written -> now: {changed}); refit the model"
        )
    model.idata = stack.from_netcdf(path, CONTAINER_GROUP)
    model.fit_info = FitInfo.from_dict(record["fit"])  # files of every version: one key
    model.convergence = model._check_convergence()
    return model
