"""Grading a response against a gold answer.

- :mod:`~t3s.evals.grading.graders`: the graders by name (:data:`GRADERS`: ``exact``, ``aime``, ``math``,
  ``mc``), :func:`grade` and :func:`validate_gold`.
- :mod:`~t3s.evals.grading.answer_text`: where a long reasoning response states its answer (or was cut off).
- :mod:`~t3s.evals.grading.mathverify`: math-verify under a hard time limit, in a killable worker process
  (:mod:`~t3s.evals.grading._mathverify_worker`, which imports no t3s package).
- :mod:`~t3s.evals.grading.verdict`: what a grader returns (:class:`Verdict`) and raises (:class:`UngradableGold`).

Nothing here imports torch, tasks or generation backends.
"""

from __future__ import annotations

from t3s.evals.grading.graders import GRADERS, MC_LETTERS, grade, validate_gold
from t3s.evals.grading.verdict import UngradableGold, Verdict

__all__ = ["GRADERS", "MC_LETTERS", "UngradableGold", "Verdict", "grade", "validate_gold"]
