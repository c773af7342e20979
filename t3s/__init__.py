"""t3s: continual reasoning distillation with Training-Trajectory-Aware Token Selection (T3S)."""

from __future__ import annotations

from t3s.lazy import lazy_package

__version__ = "0.1.0"

# ``t3s.ARStudent`` / ``t3s.DiffusionStudent`` without importing transformers for ``import t3s.selection``
_STUDENTS, __getattr__, __dir__ = lazy_package(__name__, {".students": ("ARStudent", "DiffusionStudent")})
__all__ = [*_STUDENTS, "__version__"]
