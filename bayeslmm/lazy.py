"""Modules that a library imports at its top and uses later, imported at their first use.

A fit in a fresh process pays for every module its libraries import as they load, used or
not: ArviZ 0.x's ``arviz.data`` imports matplotlib.pyplot for one function that shows a
figure, formulaic imports SciPy's sparse solvers for one contrast function. While such a
library loads, :func:`stand_ins` puts a :class:`Deferred` module in ``sys.modules`` for
each of those modules (and for its packages that are not imported yet), which imports
the real module at its first attribute access; :func:`import_partially` loads one
subpackage of a package without running the package's ``__init__``. Neither changes what
the library's code sees once it uses the module: only when it is imported.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator, Mapping
from importlib.machinery import ModuleSpec
from typing import Any


class Deferred(types.ModuleType):
    """A module imported at its first attribute access. ``spec``: the real module's, for
    the import system while the stand-in is in ``sys.modules`` (:func:`stand_ins`);
    ``answers``: attributes it gives without importing the module while it is there."""

    def __init__(self, name: str, spec: ModuleSpec | None = None,
                 answers: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__(name)
        self.__spec__ = spec
        self.__answers__ = dict(answers or {})  # a dunder: no module's own name

    def __getattr__(self, attr: str) -> Any:
        name = self.__dict__.get("__name__")
        if name is None:  # a copy made without __init__ (copy, pickle): not the module
            raise AttributeError(attr)
        spec = self.__dict__.get("__spec__")
        if attr == "__path__" and spec is not None and spec.submodule_search_locations is None:
            raise AttributeError(attr)  # not a package (``from m import x`` asks): none
        answers = self.__dict__.get("__answers__", {})
        if attr in answers and sys.modules.get(name) is self:
            return answers[attr]
        return getattr(real_module(self), attr)


def real_module(stand_in: Deferred) -> types.ModuleType:
    """The module ``stand_in`` stands for, imported (the stand-in leaving
    ``sys.modules`` first, where it is there)."""
    name = stand_in.__dict__["__name__"]
    if sys.modules.get(name) is stand_in:
        sys.modules.pop(name, None)
    return importlib.import_module(name)


def find_spec_unimported(name: str) -> ModuleSpec | None:
    """:func:`importlib.util.find_spec` without importing ``name``'s parent packages
    (``find_spec("matplotlib.pyplot")`` imports matplotlib): each package's spec from the
    import system's finders, its submodules searched in its ``submodule_search_locations``."""
    spec, path = None, None
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        module = sys.modules.get(prefix)
        spec = getattr(module, "__spec__", None) if module is not None else None
        if spec is None:
            spec = next((found for finder in sys.meta_path
                         if (found := _finder_spec(finder, prefix, path)) is not None),
                        None)  # fmt: skip
        if spec is None:
            return None
        path = spec.submodule_search_locations
    return spec


def _finder_spec(finder: Any, name: str, path: Any) -> ModuleSpec | None:
    find = getattr(finder, "find_spec", None)
    return find(name, path) if find is not None else None


@contextlib.contextmanager
def stand_ins(*names: str, answers: Mapping[str, Mapping[str, Any]] | None = None
              ) -> Iterator[dict[str, Deferred]]:  # fmt: skip
    """While the block runs, ``import`` of each module in ``names`` not imported yet (and
    installed) finds a :class:`Deferred` stand-in; so does that of its packages not
    imported yet, each holding the stand-in of its submodule as an attribute (``import
    a.b as c`` reads ``b`` from ``a``), and a real package not holding that attribute
    gets it (the import system sets the real module there at its first real import).
    ``answers``: per module named, attributes its stand-in gives while it stands in (read
    without importing the module; each must answer as the module's own would). Afterwards
    the stand-ins leave ``sys.modules``; modules that imported one keep it, and it imports
    the real module at their first use of it."""
    placed: dict[str, Deferred] = {}
    answers = answers or {}
    try:
        for name in names:
            spec = None if name in sys.modules else find_spec_unimported(name)
            if spec is None:  # imported already, or not installed
                continue
            parts = name.split(".")
            child: Deferred | None = None
            for depth in range(len(parts), 0, -1):
                prefix = ".".join(parts[:depth])
                module = sys.modules.get(prefix)
                attr = parts[depth] if depth < len(parts) else None
                if module is None:
                    found = spec if prefix == name else find_spec_unimported(prefix)
                    module = Deferred(prefix, found, answers.get(prefix))
                    placed[prefix] = sys.modules[prefix] = module
                if child is not None and attr is not None and attr not in vars(module):
                    vars(module)[attr] = child
                if not isinstance(module, Deferred):
                    break
                child = module
        yield placed
    finally:
        for prefix, stand_in in placed.items():
            if sys.modules.get(prefix) is stand_in:
                del sys.modules[prefix]


class _PartialPackage(types.ModuleType):
    """A package with one subpackage loaded and its own ``__init__`` not yet run: that
    runs, in this module, at the first access to a name the subpackage did not provide;
    the module is then the package as ``import`` makes it (:func:`import_partially`)."""

    def __getattr__(self, attr: str) -> Any:
        if (attr.startswith("__") and attr != "__all__") or importlib.util.find_spec(
                f"{self.__name__}.{attr}"):  # fmt: skip
            raise AttributeError(attr)  # a submodule: the import system loads it
        if self.__dict__.get("_partial_loading"):
            raise ImportError(f"{self.__name__}'s subpackage reads {attr} from it")
        self.__class__ = types.ModuleType
        del self.__dict__["_partial_loading"]
        self.__spec__.loader.exec_module(self)
        return getattr(self, attr)


def import_partially(package: str, subpackage: str, attrs: Mapping[str, Any],
                     deferred: tuple[str, ...] = ()) -> types.ModuleType:  # fmt: skip
    """``package`` holding ``package.subpackage``'s public names and ``attrs`` (what the
    subpackage reads from its package), without running the package's ``__init__`` until
    something else is asked of it; the modules ``deferred`` are stand-ins while the
    subpackage loads (:func:`stand_ins`). Where the subpackage reads anything else of its
    package, or fails to load, the package is imported whole. A package imported already
    is returned as it is."""
    if package in sys.modules:
        return sys.modules[package]
    spec = importlib.util.find_spec(package)
    module = _PartialPackage(package)
    module.__dict__.update(
        __spec__=spec, __loader__=spec.loader, __file__=spec.origin, __package__=package,
        __path__=list(spec.submodule_search_locations), _partial_loading=True, **attrs)  # fmt: skip
    sys.modules[package] = module
    try:
        with stand_ins(*deferred):
            loaded = importlib.import_module(f"{package}.{subpackage}")
    except Exception:
        for name in [n for n in sys.modules if n.split(".")[0] == package]:
            del sys.modules[name]
        return importlib.import_module(package)
    module.__dict__.update({name: getattr(loaded, name) for name in dir(loaded)
                            if not name.startswith("_")})  # fmt: skip
    module.__dict__["_partial_loading"] = False
    return module
