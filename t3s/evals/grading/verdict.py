"""What a grader returns (:class:`Verdict`) and raises (:class:`UngradableGold`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UngradableGold", "Verdict"]


class UngradableGold(ValueError):
    """The gold answer itself cannot be parsed by the grader; callers exclude the item and report it."""

    def __init__(self, gold: str, grader: str, reason: str = "") -> None:
        self.gold = gold
        self.grader = grader
        msg = f"{grader} grader cannot parse gold answer {gold[:200]!r}"
        super().__init__(f"{msg}: {reason}" if reason else msg)


@dataclass(frozen=True)
class Verdict:
    """Outcome of grading one response.

    ``extracted`` is the (normalised) answer the grader read from the final text, or None.
    ``truncated`` responses (unclosed reasoning block or token limit hit) are always wrong.
    ``extraction_failed`` means a complete response contained no answer the grader could read.
    ``timed_out`` means the comparison exceeded the grader's wall-clock limit (graded wrong).
    ``grader_error`` means the grader itself failed on this response (graded wrong, logged).
    """

    extracted: str | None
    correct: bool
    truncated: bool
    extraction_failed: bool
    timed_out: bool = False
    grader_error: bool = False
