"""Student LightningModules, one per family."""

from t3s.students.ar import ARStudent
from t3s.students.diffusion import DiffusionStudent

__all__ = ["ARStudent", "DiffusionStudent"]
