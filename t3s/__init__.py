"""t3s: continual reasoning distillation with Training-Trajectory-Aware Token Selection (T3S)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["ARStudent", "DiffusionStudent", "__version__"]


def __getattr__(name: str) -> Any:
    """``t3s.ARStudent`` / ``t3s.DiffusionStudent`` without importing transformers for ``import t3s.selection``."""
    if name in ("ARStudent", "DiffusionStudent"):
        import t3s.students

        return getattr(t3s.students, name)
    raise AttributeError(f"module 't3s' has no attribute {name!r}")
