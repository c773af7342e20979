"""Package exports imported on first use, so light commands (``t3s grade``, ``t3s report``) load no torch.

A package's ``__init__`` names, per module, the names it exports, in one call (PEP 562)::

    __all__, __getattr__, __dir__ = lazy_package(__name__, {".fields": ("FieldMapping",), ...})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``homes[name]`` the first time ``name`` is read.

    A module name that starts with ``.`` is relative to ``package``.
    """

    def __getattr__(name: str) -> Any:
        if name in homes:
            return getattr(importlib.import_module(homes[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def lazy_package(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` of ``package``, whose ``exports`` map a module to the names it defines.

    A module name that starts with ``.`` is relative to ``package``; nothing is imported before a name is read.
    """
    homes = {name: module for module, names in exports.items() for name in names}
    names = sorted(homes)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return names, lazy_exports(package, homes), __dir__
