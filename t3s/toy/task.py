"""The toy task: procedural multi-digit addition with verifiable answers.

A :class:`Problem` is a pair of non-negative integers; its prompt writes the operands digit by digit
(``add 4 8 2 7 + 9 6 5 6 .``) and its gold answer is the plain integer string of the sum (``"14483"``).
:func:`sample_problems` draws distinct problems from a seed; :func:`split_problems` draws several
mutually disjoint splits (e.g. train and held-out) from one seed.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

PROMPT_WORD = "add"


def spell_digits(value: int) -> str:
    """Write a non-negative integer as space-separated digits: ``1407 -> "1 4 0 7"``."""
    if value < 0:
        raise ValueError(f"only non-negative integers are spelled, got {value}")
    return " ".join(str(value))


@dataclass(frozen=True, order=True)
class Problem:
    """One addition problem ``a + b`` over non-negative integers."""

    a: int
    b: int

    def __post_init__(self) -> None:
        if self.a < 0 or self.b < 0:
            raise ValueError(f"operands must be non-negative, got {self.a} and {self.b}")

    @property
    def total(self) -> int:
        """The sum ``a + b``."""
        return self.a + self.b

    @property
    def answer(self) -> str:
        """The gold answer: the sum as a plain integer string (what the exact-match grader compares)."""
        return str(self.total)

    @property
    def prompt(self) -> str:
        """The user prompt, e.g. ``add 4 8 2 7 + 9 6 5 6 .``."""
        return f"{PROMPT_WORD} {spell_digits(self.a)} + {spell_digits(self.b)} ."


def _operand_range(digits: int) -> tuple[int, int]:
    """Inclusive value range of ``digits``-digit numbers (1-digit numbers include 0)."""
    if digits < 1:
        raise ValueError(f"operands have at least one digit, got {digits}")
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return low, 10**digits - 1


def _check_digits(digits: tuple[int, int]) -> tuple[int, int]:
    low, high = int(digits[0]), int(digits[1])
    if not 1 <= low <= high:
        raise ValueError(f"digits must be (min, max) with 1 <= min <= max, got {digits}")
    return low, high


def count_problems(digits: tuple[int, int]) -> int:
    """Number of distinct ordered problems whose operands both have a digit count in ``digits``."""
    low, high = _check_digits(digits)
    numbers = 10**high - (0 if low == 1 else 10 ** (low - 1))
    return numbers * numbers


def _draw(rng: random.Random, digits: tuple[int, int]) -> Problem:
    # The digit count of each operand is drawn uniformly first, so short and long operands are equally
    # common (drawing values uniformly would make almost every operand as long as possible).
    operands = []
    for _ in range(2):
        low, high = _operand_range(rng.randint(digits[0], digits[1]))
        operands.append(rng.randint(low, high))
    return Problem(operands[0], operands[1])


def sample_problems(
    n: int,
    digits: tuple[int, int] = (3, 4),
    seed: int | str = 0,
    exclude: Collection[Problem] = (),
) -> list[Problem]:
    """Draw ``n`` distinct problems, deterministically for ``seed``.

    Args:
        n: number of problems.
        digits: inclusive (min, max) digit count of each operand, drawn independently per operand.
        seed: seed of a private :class:`random.Random` (ints and strings give stable streams).
        exclude: problems that must not be drawn (e.g. another split).

    Returns:
        The problems in draw order. ``(a, b)`` and ``(b, a)`` count as different problems.

    Raises:
        ValueError: if fewer than ``n`` problems remain once ``exclude`` is removed.
    """
    digits = _check_digits(digits)
    excluded = set(exclude)
    available = count_problems(digits) - sum(1 for p in excluded if _within(p, digits))
    if n > available:
        raise ValueError(f"only {available} distinct problems with {digits} digits remain, asked for {n}")
    rng = random.Random(seed)
    seen = set(excluded)
    problems: list[Problem] = []
    while len(problems) < n:
        problem = _draw(rng, digits)
        if problem not in seen:
            seen.add(problem)
            problems.append(problem)
    return problems


def split_problems(
    sizes: Sequence[int],
    digits: tuple[int, int] = (3, 4),
    seed: int | str = 0,
) -> list[list[Problem]]:
    """Draw mutually disjoint splits of the given ``sizes`` (e.g. ``[n_train, n_heldout]``) from one seed."""
    pool = sample_problems(sum(sizes), digits=digits, seed=seed)
    splits: list[list[Problem]] = []
    start = 0
    for size in sizes:
        splits.append(pool[start : start + size])
        start += size
    return splits


def _within(problem: Problem, digits: tuple[int, int]) -> bool:
    """Whether both operands of ``problem`` have a digit count in ``digits``."""
    return all(digits[0] <= len(str(x)) <= digits[1] for x in (problem.a, problem.b))
