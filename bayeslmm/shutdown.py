"""The end of a process that used bayeslmm: Python's last garbage collection skipped.

When the interpreter exits it tears down every module and runs a full garbage
collection over what the imports left behind. After pandas, SciPy, xarray and numba
(whose typing registries hold hundreds of thousands of objects) that takes 0.3-0.7 s
of a 2-4 s fit on 2 cores (``benchmarks/results/startup.md``), time in which the
script has finished and the shell waits. :func:`skip_exit_collection` runs at exit,
after every handler registered later than ``import bayeslmm`` and before Python's
teardown, and moves every tracked object to the collector's permanent generation
(:func:`gc.freeze`), as Spack and Synapse do: the collection then has nothing to
visit and the operating system frees the memory. Handlers registered with
:mod:`atexit`, ``weakref.finalize`` callbacks and the flushing of ``sys.stdout`` and
``sys.stderr`` still run; objects freed by reference counting (a file held only by a
module's global) are still freed. What is skipped are finalisers of objects in
reference cycles, which Python does not promise to run at exit
(https://docs.python.org/3/reference/datamodel.html#object.__del__).
Set ``BAYESLMM_EXIT_COLLECTION=1`` to keep Python's collection at exit.
"""

from __future__ import annotations

import atexit
import gc
import os

#: Environment variable that keeps Python's full collection at exit when set to 1.
KEEP_VARIABLE = "BAYESLMM_EXIT_COLLECTION"


def skip_exit_collection() -> None:
    """Freeze every tracked object so that the interpreter's exit does not collect them
    (unless ``BAYESLMM_EXIT_COLLECTION=1``)."""
    if os.environ.get(KEEP_VARIABLE, "").strip() not in ("1", "true", "yes"):
        gc.freeze()


def register() -> None:
    """Run :func:`skip_exit_collection` at exit (``import bayeslmm`` calls it once)."""
    atexit.register(skip_exit_collection)
