"""t3s: continual reasoning distillation with Training-Trajectory-Aware Token Selection (T3S)."""

__version__ = "0.1.0"

from t3s.students import ARStudent  # noqa: E402

__all__ = ["ARStudent", "__version__"]
