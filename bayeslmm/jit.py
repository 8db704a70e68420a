"""Compiled kernels: one decorator, a cache that survives installation, and a notice.

Every numba kernel of the package is declared with :func:`kernel` (a cached ``njit``
with NumPy's error model). numba keeps compiled kernels in ``__pycache__`` beside the
source and normally checks them against the source file's modification time, which pip
resets when it installs a wheel; here they are checked against the file's *content*
(:class:`ContentStampLocator`), so kernels compiled while the package was built
(``hatch_build.py`` runs :mod:`bayeslmm.warmup`) are used by the installed package.
Where no such cache fits (another numba version, another CPU, a read-only install), the
kernels compile on first use and :func:`compile_notice` prints one line if that takes
longer than :data:`NOTICE_AFTER` seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
from numba.core import caching, event

#: The package's folder: only its own source files get content-stamped caches.
PACKAGE_DIR = str(Path(__file__).resolve().parent)
#: Seconds of compiling before the one-line notice is printed.
NOTICE_AFTER = 2.0

_InTree = getattr(caching, "InTreeCacheLocator", None) or caching._InTreeCacheLocator
_CacheImpl = getattr(caching, "CacheImpl", None) or caching._CacheImpl


class ContentStampLocator(_InTree):
    """numba's in-tree cache (``__pycache__`` beside the source) for the package's own
    files, stamped by the SHA-256 of the source instead of its mtime and size: an
    installed copy of a file finds the kernels compiled from the same text.

    The stamp covers the text of every package module the file imports, directly or
    through others (:func:`import_closure`), not the file alone: a kernel inlines the
    kernels and freezes the constants it calls from other modules, and numba's own stamp
    (that file's mtime) would keep serving the old machine code after one of them
    changed."""

    def get_source_stamp(self) -> tuple[str, str]:
        return ("sha256", _closure_digest(self._py_file))

    @classmethod
    def from_function(cls, py_func: Callable, py_file: str) -> ContentStampLocator | None:
        if not os.path.abspath(py_file).startswith(PACKAGE_DIR + os.sep):
            return None
        return super().from_function(py_func, py_file)


_DIGESTS: dict[tuple, str] = {}


def _stat_key(path: Path | str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def _digest(path: str) -> str:
    """SHA-256 of a file's bytes (remembered while its mtime and size stay)."""
    key = (path, *_stat_key(path))
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return _DIGESTS[key]


#: ``from .a.b import c, d`` / ``from bayeslmm.a import (c, d)``, and ``import bayeslmm.a``
_FROM = re.compile(r"^[ \t]*from[ \t]+(\.+|bayeslmm\b\.?)([\w.]*)[ \t]+import[ \t]+"
                   r"(\([^)]*\)|[^\n]*)", re.M)  # fmt: skip
_IMPORT = re.compile(r"^[ \t]*import[ \t]+bayeslmm((?:\.\w+)*)", re.M)


def _module_file(folder: Path, parts: list[str]) -> Path | None:
    """The source of module ``parts`` under ``folder`` (a file or a package's
    ``__init__.py``), None where there is none."""
    path = folder.joinpath(*parts) if parts else folder
    if parts and path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return path / "__init__.py" if (path / "__init__.py").is_file() else None


_IMPORTED: dict[Path, tuple[tuple[int, int], frozenset[Path]]] = {}


def _imported_files(path: Path) -> frozenset[Path]:
    """The package modules a source file imports (anywhere in it, functions included):
    relative imports from its folder, absolute ones from :data:`PACKAGE_DIR`; a name
    imported from a package that is itself a module counts as that module. Remembered
    while the file's mtime and size stay."""
    key = _stat_key(path)
    cached = _IMPORTED.get(path)
    if cached is None or cached[0] != key:
        cached = _IMPORTED[path] = (key, frozenset(_scan_imports(path)))
    return cached[1]


def _scan_imports(path: Path) -> set[Path]:
    text = path.read_text(encoding="utf-8")
    found = set()
    for dots, module, names in _FROM.findall(text):
        if dots.startswith("."):
            folder = path.parent.joinpath(*[".."] * (len(dots) - 1)).resolve()
        else:
            folder = Path(PACKAGE_DIR)
        parts = [p for p in module.split(".") if p]
        base = _module_file(folder, parts)
        if base is not None:
            found.add(base)
        for name in names.strip("()").replace("\\", " ").split(","):
            words = name.split()
            if words and words[0].isidentifier():
                sub = _module_file(folder, [*parts, words[0]])
                if sub is not None:
                    found.add(sub)
    for module in _IMPORT.findall(text):
        sub = _module_file(Path(PACKAGE_DIR), [p for p in module.split(".") if p])
        if sub is not None:
            found.add(sub)
    return {f.resolve() for f in found}


def import_closure(path: str | Path) -> list[Path]:
    """``path`` and every package module it imports, directly or through others, sorted:
    the sources a kernel defined in ``path`` can have inlined or read constants from."""
    start = Path(path).resolve()
    seen, todo = {start}, [start]
    while todo:
        for nxt in _imported_files(todo.pop()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return sorted(seen)


def _closure_digest(path: str) -> str:
    """SHA-256 over the file digests of :func:`import_closure` of ``path``."""
    digest = hashlib.sha256()
    for source in import_closure(path):
        digest.update(f"{source.name}:{_digest(str(source))}\n".encode())
    return digest.hexdigest()


def _register_locator() -> None:
    """Put :class:`ContentStampLocator` first, after a user's ``NUMBA_CACHE_DIR``."""
    classes = _CacheImpl._locator_classes
    if ContentStampLocator not in classes:
        user = [i for i, c in enumerate(classes) if c.__name__.endswith("UserProvidedCacheLocator")]
        classes.insert(user[0] + 1 if user else 0, ContentStampLocator)


class _CompileNotice(event.Listener):
    """Prints one line to stderr when the package's kernels have been compiling for
    :data:`NOTICE_AFTER` seconds (once per process); nested compiles count as one."""

    def __init__(self) -> None:
        self.depth = 0
        self.timer: threading.Timer | None = None
        self.printed = False

    @staticmethod
    def _ours(ev: event.Event) -> bool:
        dispatcher = (ev.data or {}).get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        return module.startswith("bayeslmm.")

    def on_start(self, ev: event.Event) -> None:
        if not self._ours(ev):
            return
        self.depth += 1
        if self.depth == 1 and not self.printed:
            self.timer = threading.Timer(NOTICE_AFTER, self._print)
            self.timer.daemon = True
            self.timer.start()

    def on_end(self, ev: event.Event) -> None:
        if not self._ours(ev):
            return
        self.depth = max(self.depth - 1, 0)
        if self.depth == 0 and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _print(self) -> None:
        self.printed = True
        print(
            "bayeslmm: compiling its numeric kernels for this machine (once, about a minute; "
            "cached for every later fit)...",
            file=sys.stderr,
            flush=True,
        )


_NUMBA_LOAD_OVERLOAD = caching.Cache.load_overload


def _load_overload(self: Any, sig: Any, target_context: Any) -> Any:
    """numba's ``Cache.load_overload``, for the package's own kernels without its
    ``target_context.refresh()``. That refresh imports and installs every typing and
    lowering registry of numba (0.15-0.25 s of a 1.5 s sleepstudy fit in a fresh process,
    paid at the first kernel loaded), which compiling needs and loading machine code does
    not: loaded code needs numba's runtime (NRT), initialised here. numba's compiler
    refreshes the context itself before any compile, so a kernel compiled later in the
    process finds the registries installed; where a load fails, numba's own load runs.
    Only for functions made by :func:`kernel`, :func:`vector_kernel` and :func:`cfunc`
    (:data:`KERNEL_MARK`), whose code calls numba's runtime, its C helpers and the Python
    C API alone; numba's vectorize builds its wrappers outside its compiler, after a load.
    A kernel whose code needs a symbol only a refresh registers (a string's hash:
    ``numba.cpython.hashing``) would stop the process at its load: every kernel is loaded
    this way, in a fresh process, by a test (``test_startup``)."""
    ours = getattr(getattr(self, "_py_func", None), KERNEL_MARK, False)
    if not ours or not isinstance(getattr(self._impl, "locator", None), ContentStampLocator):
        return _NUMBA_LOAD_OVERLOAD(self, sig, target_context)
    try:
        from numba.core.runtime import nrt

        nrt.rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
    except Exception:  # noqa: BLE001 - numba's load, with its refresh, decides
        return _NUMBA_LOAD_OVERLOAD(self, sig, target_context)


_register_locator()
caching.Cache.load_overload = _load_overload
_NOTICE = _CompileNotice()
event.register("numba:compile", _NOTICE)


#: the attribute that marks the package's compiled functions (:func:`_load_overload`)
KERNEL_MARK = "__bayeslmm_kernel__"


def _marked(func: Callable[..., Any]) -> Callable[..., Any]:
    setattr(func, KERNEL_MARK, True)
    return func


def _without_extensions_hook(dispatcher: Any) -> Any:
    """``dispatcher`` without numba's first-call hook, which loads every installed numba
    extension (the ``numba_extensions`` entry points: it reads every package's metadata,
    and imports sparse where sparse is installed) so that arguments of their types can be
    typed. A kernel takes NumPy arrays and numbers alone, and loading its machine code
    needs no extension; numba's refresh before any compile loads them all (``CPUContext.
    refresh``), so that what a kernel's compile and any other function's first call type
    afterwards finds them (only arguments of an extension's types, which no kernel takes,
    are typed before that refresh)."""
    dispatcher._compilation_chain_init_hook = _no_hook
    return dispatcher


def _no_hook() -> None:
    return None


def kernel(func: Callable[..., Any]) -> Callable[..., Any]:
    """A compiled kernel: ``numba.njit(cache=True, error_model="numpy")``."""
    return _without_extensions_hook(numba.njit(cache=True, error_model="numpy")(_marked(func)))


#: the floating-point freedoms of :func:`vector_kernel`: reassociated sums (so that
#: reductions vectorise) and fused multiply-adds; no assumption that values are finite
VECTOR_FASTMATH = frozenset({"reassoc", "contract"})


def vector_kernel(func: Callable[..., Any]) -> Callable[..., Any]:
    """A compiled kernel whose loops over rows may be vectorised: :func:`kernel` with
    :data:`VECTOR_FASTMATH` (sums reassociated: the same result to rounding, not to the
    last bit, as the loop written in order)."""
    return _without_extensions_hook(
        numba.njit(cache=True, error_model="numpy", fastmath=set(VECTOR_FASTMATH))(_marked(func)))


def cfunc(signature: Any) -> Callable[[Callable[..., Any]], Any]:
    """A cached C entry point (``numba.cfunc``) with the package's cache."""
    return lambda func: numba.cfunc(signature, cache=True)(_marked(func))
