"""Which student family a saved checkpoint belongs to (``t3s evaluate`` samples it with that family's backend).

Each family answers for itself (:meth:`~t3s.students.base.StudentModule.saved_by`); the autoregressive
student is the default (any causal HF folder).
"""

from __future__ import annotations

import json
from pathlib import Path

from t3s.students.ar import ARStudent
from t3s.students.base import StudentModule
from t3s.students.diffusion import DiffusionStudent

__all__ = ["FAMILIES", "saved_family"]

#: The student families, asked in this order (the default, ``ARStudent``, last).
FAMILIES: tuple[type[StudentModule], ...] = (DiffusionStudent, ARStudent)


def saved_family(class_path: str | None, folder: str | Path) -> type[StudentModule]:
    """The family of a checkpoint ``folder``: the one the run's ``model.class_path`` names (None for a bare HF
    folder: the one its ``config.json`` describes), else ``ARStudent``."""
    config_file = Path(folder) / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    return next((family for family in FAMILIES if family.saved_by(class_path, config)), ARStudent)
