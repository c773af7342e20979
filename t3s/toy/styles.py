"""Two trace styles over one column-arithmetic core.

Every trace walks the columns of ``a + b`` from the right. The *shared scaffolding* of a column step is
identical in all styles::

    Units : 8 + 6 + 0 = 1 4 ;

(column name, digit of ``a``, digit of ``b``, incoming carry, and the column sum spelled digit by digit).
A column left over by a final carry is written with zero operands (``Thousands : 0 + 0 + 1 = 1 ;``).
A :class:`StyleSpec` only chooses the *connectives and framing* around those steps: an opening sentence,
the comment after a column with / without overflow, a closing sentence, and the words in front of the
``\\boxed{ ... }`` answer. :data:`STUDENT_STYLE` is the student's own wording (what θ_0 is pretrained on),
:data:`TEACHER_STYLE` is the teacher's (the distillation traces), so the yet-to-learn content (digits) is
the same while the imitation anchors (style words) differ.
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass

from t3s.toy.task import Problem, spell_digits

#: Column names from the right; operands may have up to ``len(COLUMN_NAMES) - 1`` digits.
COLUMN_NAMES: tuple[str, ...] = (
    "Units",
    "Tens",
    "Hundreds",
    "Thousands",
    "TenThousands",
    "HundredThousands",
    "Millions",
    "TenMillions",
    "HundredMillions",
    "Billions",
)

BOX_OPEN = "\\boxed{"
BOX_CLOSE = "}"


@dataclass(frozen=True)
class ColumnStep:
    """One column of the addition: ``top + bottom + carry_in = total``."""

    name: str
    top: int
    bottom: int
    carry_in: int

    @property
    def total(self) -> int:
        """The column sum, ``top + bottom + carry_in`` (0..19)."""
        return self.top + self.bottom + self.carry_in

    @property
    def digit(self) -> int:
        """The digit written for this column."""
        return self.total % 10

    @property
    def carry_out(self) -> int:
        """The carry passed to the next column (0 or 1)."""
        return self.total // 10

    def scaffold(self) -> str:
        """The style-independent text of this step, e.g. ``Units : 8 + 6 + 0 = 1 4 ;``."""
        return f"{self.name} : {self.top} + {self.bottom} + {self.carry_in} = {spell_digits(self.total)} ;"


def column_steps(problem: Problem) -> list[ColumnStep]:
    """The column steps of ``problem``, units first, plus one step for a final carry if there is one."""
    top, bottom = str(problem.a), str(problem.b)
    width = max(len(top), len(bottom))
    if width >= len(COLUMN_NAMES):
        raise ValueError(f"operands have at most {len(COLUMN_NAMES) - 1} digits, got {problem}")
    top, bottom = top.zfill(width), bottom.zfill(width)
    steps: list[ColumnStep] = []
    carry = 0
    for index in range(width):
        step = ColumnStep(COLUMN_NAMES[index], int(top[-1 - index]), int(bottom[-1 - index]), carry)
        steps.append(step)
        carry = step.carry_out
    if carry:
        steps.append(ColumnStep(COLUMN_NAMES[width], 0, 0, carry))
    return steps


def boxed(answer: str) -> str:
    """Box an integer answer digit by digit: ``"1407" -> "\\boxed{ 1 4 0 7 }"``."""
    return f"{BOX_OPEN} {' '.join(answer)} {BOX_CLOSE}"


_STEP_FIELDS = frozenset({"digit", "carry"})
_CLOSING_FIELDS = frozenset({"answer"})


def _fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def _literal_words(template: str) -> list[str]:
    literal = "".join(text for text, _, _, _ in string.Formatter().parse(template))
    return literal.split()


@dataclass(frozen=True)
class StyleSpec:
    """The wording of a trace style; every phrase is space-separated words.

    ``carry`` and ``no_carry`` may use ``{digit}`` (the digit written) and ``{carry}`` (the outgoing
    carry); ``closing`` may use ``{answer}`` (the sum, spelled digit by digit). Literal braces must be
    doubled, as in :meth:`str.format`. Empty phrases are left out.

    Attributes:
        name: a label for the style (recorded in world metadata).
        opening: first sentence of the reasoning.
        carry: comment after a column whose sum overflows (``carry_out == 1``).
        no_carry: comment after a column whose sum does not overflow.
        closing: last sentence of the reasoning.
        answer_prefix: words in front of the boxed answer in the visible answer text.
    """

    name: str
    opening: str
    carry: str
    no_carry: str
    closing: str
    answer_prefix: str

    def __post_init__(self) -> None:
        for label, template, allowed in (
            ("opening", self.opening, frozenset()),
            ("carry", self.carry, _STEP_FIELDS),
            ("no_carry", self.no_carry, _STEP_FIELDS),
            ("closing", self.closing, _CLOSING_FIELDS),
            ("answer_prefix", self.answer_prefix, frozenset()),
        ):
            unknown = _fields(template) - allowed
            if unknown:
                raise ValueError(
                    f"StyleSpec.{label} uses unknown fields {sorted(unknown)}; allowed {sorted(allowed)}"
                )

    def words(self) -> list[str]:
        """The literal words of every phrase (placeholders excluded), in first-seen order."""
        seen: dict[str, None] = {}
        for template in (self.opening, self.carry, self.no_carry, self.closing, self.answer_prefix):
            seen.update(dict.fromkeys(_literal_words(template)))
        return list(seen)

    def reasoning(self, problem: Problem) -> str:
        """The reasoning text for ``problem`` in this style."""
        parts = [self.opening]
        for step in column_steps(problem):
            comment = self.carry if step.carry_out else self.no_carry
            parts.append(step.scaffold())
            parts.append(comment.format(digit=step.digit, carry=step.carry_out))
        parts.append(self.closing.format(answer=spell_digits(problem.total)))
        return " ".join(" ".join(part.split()) for part in parts if part.strip())

    def answer_text(self, problem: Problem) -> str:
        """The visible answer for ``problem``, e.g. ``So the answer is \\boxed{ 1 4 4 8 3 }``."""
        return " ".join([*self.answer_prefix.split(), boxed(problem.answer)])

    def render(self, problem: Problem) -> tuple[str, str]:
        """``(reasoning, answer_text)`` for ``problem``."""
        return self.reasoning(problem), self.answer_text(problem)


#: The student's own wording (θ_0 is pretrained on it).
STUDENT_STYLE = StyleSpec(
    name="student", opening="We sum each column from the right .",
    carry="overflow , bring a ten along .", no_carry="no overflow .",
    closing="Collecting the digits gives {answer} .", answer_prefix="Result :",
)

#: The teacher's wording (the distillation traces): same column steps, different connectives.
_TEACHER_STEP = "so we write {digit} and carry {carry} ."  # the same words with or without a carry
TEACHER_STYLE = StyleSpec(
    name="teacher", opening="Let's add the numbers column by column .", carry=_TEACHER_STEP, no_carry=_TEACHER_STEP,
    closing="Putting the written digits together , the sum is {answer} .", answer_prefix="So the answer is",
)

#: The teacher's wording without computed digits inside its connectives, so every digit of a teacher
#: trace is reasoning shared with the student and only words are style (the ``toy`` and ``small`` worlds).
PLAIN_TEACHER_STYLE = dataclasses.replace(
    TEACHER_STYLE, name="teacher-plain", carry="so we write and carry .", no_carry="so we write ."
)


#: The ``toy-skill`` teacher (issue 23): fixed connectives in which no word of the framing repeats inside a
#: phrase (``column by column`` made Δc split a phrase on ``toy``), no computed content outside the shared
#: scaffold, so the whole style is learned fast and every digit is reasoning.
SKILL_TEACHER_STYLE = StyleSpec(
    name="teacher-skill", opening="Let's handle each place starting at the right end .",
    carry="so write and carry .", no_carry="so write .",
    closing="Putting those digits together yields {answer} .", answer_prefix="So final answer is",
)


def student_trace(problem: Problem) -> tuple[str, str]:
    """``(reasoning, answer_text)`` of ``problem`` in :data:`STUDENT_STYLE`."""
    return STUDENT_STYLE.render(problem)


def teacher_trace(problem: Problem) -> tuple[str, str]:
    """``(reasoning, answer_text)`` of ``problem`` in :data:`TEACHER_STYLE`."""
    return TEACHER_STYLE.render(problem)


def scaffold_words() -> list[str]:
    """Words every style shares (column names); digits and symbols are in the base vocabulary."""
    return list(COLUMN_NAMES)
