"""t3s: continual reasoning distillation with Training-Trajectory-Aware Token Selection (T3S)."""

from __future__ import annotations

from t3s.lazy import lazy_exports

__version__ = "0.1.0"

__all__ = ["ARStudent", "DiffusionStudent", "__version__"]

# ``t3s.ARStudent`` / ``t3s.DiffusionStudent`` without importing transformers for ``import t3s.selection``
__getattr__ = lazy_exports(__name__, {"ARStudent": "t3s.students", "DiffusionStudent": "t3s.students"})
