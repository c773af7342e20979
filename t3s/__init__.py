"""t3s: continual reasoning distillation with Training-Trajectory-Aware Token Selection (T3S)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # ``t3s.ARStudent`` (what configs name) is imported on first use, so ``import t3s.cli`` for ``t3s grade``
    # or ``t3s --help`` does not pay for torch and Lightning.
    if name == "ARStudent":
        from t3s.students import ARStudent

        return ARStudent
    raise AttributeError(f"module 't3s' has no attribute {name!r}")


__all__ = ["ARStudent", "__version__"]
