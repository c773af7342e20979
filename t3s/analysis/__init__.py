"""Analyses on finished runs: residual transfer, reports and trajectory diagnostics.

Everything is imported on first use, so ``t3s report`` loads no torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "DiagnosticsCallback": "t3s.analysis.diagnostics_callback",
    "residual_transfer": "t3s.analysis.rrt",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 't3s.analysis' has no attribute {name!r}")
