"""Package exports imported on first use, so light commands (``t3s grade``, ``t3s report``) load no torch.

A package's ``__init__`` maps each exported name to the module that defines it and sets
``__getattr__ = lazy_exports(__name__, EXPORTS)`` (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``homes[name]`` the first time ``name`` is read."""

    def __getattr__(name: str) -> Any:
        if name in homes:
            return getattr(importlib.import_module(homes[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
