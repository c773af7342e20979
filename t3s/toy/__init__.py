"""Toy world for continual reasoning distillation: multi-digit addition traces in two styles.

The student's own style and the teacher's style share the column-arithmetic content and differ only in
connectives, so T3S's imitation anchors (style words) and yet-to-learn tokens (digits) are known by
construction. See :mod:`t3s.toy.world` for the generated files.
"""

from __future__ import annotations

from t3s.lazy import lazy_package
from t3s.toy.styles import (
    COLUMN_NAMES,
    PLAIN_TEACHER_STYLE,
    STUDENT_STYLE,
    TEACHER_STYLE,
    ColumnStep,
    StyleSpec,
    boxed,
    column_steps,
    student_trace,
    teacher_trace,
)
from t3s.toy.task import Problem, sample_problems, spell_digits, split_problems
from t3s.toy.tokenizer import CHAT_TEMPLATE, build_tokenizer

# t3s.toy.world is imported lazily so that ``python -m t3s.toy.world`` does not import it twice.
_, __getattr__, __dir__ = lazy_package(__name__, {".world": ("PRESETS", "ToyWorld")})


__all__ = [
    "CHAT_TEMPLATE",
    "COLUMN_NAMES",
    "PRESETS",
    "PLAIN_TEACHER_STYLE",
    "STUDENT_STYLE",
    "TEACHER_STYLE",
    "ColumnStep",
    "Problem",
    "StyleSpec",
    "ToyWorld",
    "boxed",
    "build_tokenizer",
    "column_steps",
    "sample_problems",
    "spell_digits",
    "split_problems",
    "student_trace",
    "teacher_trace",
]
