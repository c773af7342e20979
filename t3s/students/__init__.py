"""Student LightningModules, one per family."""

from t3s.students.ar import ARStudent

__all__ = ["ARStudent"]
