"""Answer graders for reasoning benchmarks.

Every grader has the signature ``grade_X(response, gold, **kw) -> Verdict`` and shares the same handling of
reasoning (:func:`t3s.data.text.split_reasoning`): text inside a reasoning block (``<think>``,
``<|begin_of_thought|>``, ... or the caller's ``reasoning_tags``) is never graded, a block that never closes
makes the response truncated (and wrong), and ``hit_token_limit=True`` marks it truncated as well. When the
chat template itself opened the block (the prompt ends inside ``<think>``), pass ``think_in_prompt=True`` so
that a response without a closing tag counts as unclosed.

Where a final text states its answer (the last box, else the last concluding statement), and whether it
was cut off mid-thought (then it is truncated), is decided by :func:`t3s.evals.grading.answer_text.locate_answer`
for the ``aime``, ``math`` and ``exact`` graders.

Graders: ``aime`` (an exact integer), ``math`` (LaTeX, via math-verify under a hard wall-clock limit),
``exact`` (normalised string match) and ``mc`` (option letters). All extraction is linear-time and bounded
(see :mod:`t3s.data.text`); :func:`grade` never lets a grader failure escape (the response is graded wrong,
flagged ``grader_error`` and logged).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from t3s.data.text import (
    MAX_SCAN_CHARS,
    REASONING_TAGS,
    boxed_spans,
    join_spaced_digits,
    last_boxed,
    split_reasoning,
    unwrap_text_commands,
)
from t3s.evals.grading.answer_text import AnswerSpan, locate_answer, strip_stray_tail
from t3s.evals.grading.mathverify import MathVerifier, get_math_verifier
from t3s.evals.grading.verdict import UngradableGold, Verdict

__all__ = [
    "GRADERS",
    "MC_LETTERS",
    "grade",
    "grade_aime",
    "grade_exact",
    "grade_math",
    "grade_mc",
    "integer_text",
    "mc_letter",
    "normalize_exact",
    "validate_gold",
]

log = logging.getLogger(__name__)

Grader = Callable[..., Verdict]

#: Option letters a multiple-choice answer may use (tasks letter at most 26 options).
MC_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Longest answer sent to math-verify (a longer one is graded wrong without a comparison).
MAX_ANSWER_CHARS = 5_000
#: Fractions are reduced only when both parts have at most this many digits (big-int division stays cheap).
_MAX_FRACTION_DIGITS = 1_000


@dataclass(frozen=True)
class _Final:
    """A response's final text (None: the reasoning never closed), whether it was truncated, and whether
    it had no reasoning block at all (then the final text is its whole thinking)."""

    text: str | None
    truncated: bool
    untagged: bool


def _final_text(
    response: str, hit_token_limit: bool, think_in_prompt: bool, reasoning_tags: Sequence[Sequence[str]] | None
) -> _Final:
    """The final text of a response (see :class:`_Final`).

    A stray tag or special-token fragment after a complete boxed answer (``\\boxed{5}<``, ``\\boxed{5}
    <think>``) is dropped: the answer was complete, the fragment opens nothing.
    """
    tags = [*REASONING_TAGS, *((str(o), str(c)) for o, c in reasoning_tags)] if reasoning_tags else None
    split = split_reasoning(response, opened_in_prompt=think_in_prompt, tags=tags)
    if not split.closed:
        stripped = strip_stray_tail(response)
        if stripped != response:
            retry = split_reasoning(stripped, opened_in_prompt=think_in_prompt, tags=tags)
            if retry.closed and retry.final is not None and last_boxed(retry.final) is not None:
                split = retry
    final = split.final
    if final is not None and len(final) > MAX_SCAN_CHARS:  # keep the tail, from a whole word on
        tail = final[-MAX_SCAN_CHARS:]
        space = re.search(r"\s", tail)
        final = tail[space.end() :] if space else ""
    if final is not None:  # "1 4 4 8 3" (digits spelled one by one) is the number 14483 for every grader
        final = join_spaced_digits(final)
    return _Final(final, (not split.closed) or bool(hit_token_limit), split.reasoning is None)


@dataclass(frozen=True)
class _Reading:
    """What a grader read from a final text: the answer (None: none found), whether it is right, timed out."""

    extracted: str | None
    correct: bool
    timed_out: bool = False


def _gold_reader(grader: str, parse: Callable[[str], str | None], reason: str) -> Callable[..., str]:
    """A gold reader for :func:`_grader`: ``parse(gold)``, an empty or None result making the gold ungradable."""

    def read(gold: str, **_: Any) -> str:
        value = parse(gold)
        if not value:
            raise UngradableGold(gold, grader, reason)
        return value

    return read


def _grader(read_gold: Callable[..., Any], locate: bool = True) -> Callable[[Callable[..., _Reading]], Grader]:
    """Make a grader from ``read_gold(gold, **kw)`` (the gold's value; raises :class:`UngradableGold`) and the
    decorated ``read(final_text, gold_value, located=..., **kw) -> _Reading``, adding the shared reasoning
    handling. With ``locate``, ``located`` is the :class:`~t3s.evals.grading.answer_text.AnswerSpan` of the final
    text, and a final text that was cut off mid-thought (:func:`~t3s.evals.grading.answer_text.locate_answer`) is
    truncated; without it ``located`` is None.

    The grader's keywords: ``hit_token_limit`` (generation stopped at its token limit: truncated),
    ``think_in_prompt`` (the chat template opened the reasoning block), ``reasoning_tags`` (extra
    ``(open, close)`` pairs besides :data:`~t3s.data.text.REASONING_TAGS`), plus the grader's own.
    """

    def wrap(read: Callable[..., _Reading]) -> Grader:
        @functools.wraps(read)
        def grader(
            response: str,
            gold: str | int,
            *,
            hit_token_limit: bool = False,
            think_in_prompt: bool = False,
            reasoning_tags: Sequence[Sequence[str]] | None = None,
            **kw: Any,
        ) -> Verdict:
            gold_value = read_gold(str(gold), **kw)
            final = _final_text(response, hit_token_limit, think_in_prompt, reasoning_tags)
            if final.text is None:
                return Verdict(None, False, True, False)
            located = locate_answer(final.text, untagged=final.untagged) if locate else None
            got = read(final.text, gold_value, located=located, **kw)
            truncated = final.truncated or (located is not None and located.cut_off)
            failed = got.extracted is None and not (truncated or got.timed_out)
            return Verdict(got.extracted, got.correct and not truncated, truncated, failed, got.timed_out)

        return grader

    return wrap


# ----------------------------------------------------------------------------------------------------
# AIME (integers)
# ----------------------------------------------------------------------------------------------------

_JUNK = ("$", "\\,", "\\!", "\\;", "\\:", "\\ ", "~", "{,}", "\\%", "%", "^{\\circ}", "^\\circ", "\\circ", "°",
         "\\left", "\\right")
_PLAIN_INT_RE = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.0*)?", re.ASCII)
_FRACTION_RE = re.compile(r"([+-]?)\\[dt]?frac\{(\d+)\}\{(\d+)\}|([+-]?)(\d+)/(\d+)", re.ASCII)
# a number with an ordinal suffix and/or trailing words: "5^{th} floor", "5th", "25 minutes"
_WORDY_INT_RE = re.compile(
    r"([+-]?\d+)\s*(?:\^\{?(?:st|nd|rd|th)\}?|(?:st|nd|rd|th)\b)?(?:\s+[A-Za-z]{2,}(?:\s+[A-Za-z]+)*)?\.?",
    re.ASCII,
)
#: words after a number that make it something else than that integer ("25 pi", "5 squared")
_MATH_WORDS = frozenset({"pi", "sqrt", "root", "roots", "squared", "cubed", "over", "times", "mod", "percent",
                         "plus", "minus", "divided", "power", "factorial", "and", "or"})


def _canonical(sign: str, digits: str) -> str:
    digits = digits.lstrip("0") or "0"
    return "-" + digits if sign == "-" and digits != "0" else digits


def integer_text(s: str | int | None) -> str | None:
    """The exact integer an answer states, as canonical decimal text ("025" → "25"), else None.

    Accepts "1,000", "25.0", "x = 25", ``36^\\circ``, ``\\frac{50}{2}``, "5th floor", "25 minutes"; refuses
    anything that is not exactly an integer (``25/4``, ``25\\sqrt{2}``, ``25^{2}``, ``1021_3``, "2.5"). Integers
    of any length are handled as text (no conversion limit); a unicode minus is a minus sign.
    """
    if s is None:
        return None
    s = unwrap_text_commands(str(s)).replace("\u2212", "-")
    for junk in _JUNK:
        s = s.replace(junk, "")
    if "=" in s:
        s = s.rsplit("=", 1)[1]
    s = s.strip().rstrip(".").strip()
    while len(s) > 1 and s[0] + s[-1] in ("{}", "()"):
        s = s[1:-1].strip()
    m = _PLAIN_INT_RE.fullmatch(s.replace(" ", ""))
    if m:
        return _canonical(m.group(1), m.group(2).replace(",", ""))
    m = _FRACTION_RE.fullmatch(s.replace(" ", ""))
    if m:
        sign, num, den = (m.group(1), m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5), m.group(6))
        if max(len(num), len(den)) > _MAX_FRACTION_DIGITS or int(den) == 0:
            return None
        quotient, rest = divmod(int(num), int(den))
        return _canonical(sign, str(quotient)) if rest == 0 else None
    m = _WORDY_INT_RE.fullmatch(s)
    if m and not _MATH_WORDS & set(s[m.end(1) :].casefold().replace("^", " ").replace(".", " ").split()):
        number = m.group(1)
        return _canonical("-" if number.startswith("-") else "", number.lstrip("+-"))
    return None


def _cut_off_box(final: str) -> bool:
    """The final text opens a box that never closes (the answer itself was cut off)."""
    return ("\\boxed{" in final or "\\fbox{" in final) and last_boxed(final) is None


def _leading_integer(phrase: str) -> str | None:
    """The integer a concluding phrase states: the whole phrase, or its head ("4, which is even")."""
    whole = integer_text(phrase)
    if whole is not None:
        return whole
    head = re.split(r"[,;]?\s+(?:because|since|as|which|so|for|by|from|in|of|when|where)\b", phrase, maxsplit=1)[0]
    return integer_text(head) if head != phrase else None


@_grader(_gold_reader("aime", integer_text, "not an integer"))
def grade_aime(final: str, gold: str, *, located: AnswerSpan, **_: Any) -> _Reading:
    """Grade an AIME-style answer: correct only when it states exactly the gold integer ("025" == 25).

    The answer is where :func:`~t3s.evals.grading.answer_text.locate_answer` finds it: the last ``\\boxed{}`` of
    the final text, else the value of the last concluding statement ("the answer is indeed 25", "Hence
    n = 25.", "25 is the correct answer"), else a final text that is only the answer.
    """
    if located.kind == "boxed":
        value = integer_text(located.text)
        return _Reading(value if value is not None else str(located.text)[:200], value == gold)
    if _cut_off_box(final) or located.text is None:
        return _Reading(None, False)
    value = _leading_integer(located.text)
    if value is None:
        return _Reading(located.text[:200], False)
    return _Reading(value, value == gold)


# ----------------------------------------------------------------------------------------------------
# MATH (LaTeX, math-verify with a wall-clock limit)
# ----------------------------------------------------------------------------------------------------

_BASE_SUBSCRIPT_RE = re.compile(r"[0-9A-Za-z]+_\{?\s*\d+\s*\}?")
#: Marks of an answer's shape that a number lacks: a set, a ratio.
_SHAPE_MARKS = ("\\{", ":")
_NUMERIC_TOWER_RE = re.compile(r"\d\s*\^\s*\{?\s*\(?\s*\d+\s*\)?\s*\^")
_WORDS_RE = re.compile(r"[A-Za-z]+(?:[ '-][A-Za-z]+)*")


def _plain_words(s: str) -> str | None:
    """``s`` as case-folded words when it is nothing but words ("west", ``\\text{West}``), else None."""
    s = unwrap_text_commands(s).replace("$", "").strip().rstrip(".").strip()
    return s.casefold() if _WORDS_RE.fullmatch(s) else None


def _based(s: str) -> str | None:
    """A number with a base subscript ("1021_3", ``1021_{3}``) written canonically, else None."""
    s = unwrap_text_commands(s).replace("$", "").replace(" ", "")
    return s.replace("{", "").replace("}", "") if _BASE_SUBSCRIPT_RE.fullmatch(s) else None


def _math_gold(gold: str, *, timeout_s: float | None = None, verifier: MathVerifier | None = None, **_: Any) -> str:
    (verifier or get_math_verifier()).check_gold(gold, timeout_s)
    return gold


@_grader(_math_gold)
def grade_math(
    final: str,
    gold: str,
    *,
    located: AnswerSpan,
    timeout_s: float | None = None,
    verifier: MathVerifier | None = None,
    **_: Any,
) -> _Reading:
    """Grade a LaTeX answer with math-verify (``verify(parse(gold), parse(answer))``).

    The answer is where :func:`~t3s.evals.grading.answer_text.locate_answer` finds it: the last ``\\boxed{}`` of
    the final text, else the value of the last concluding statement (filler words, delimiters and units
    dropped; display math after "is:" read), else a final text that is only an expression. A text with
    none of these states no answer: math-verify is never let loose on free text, where it would read an
    intermediate computation. A number with words or an ordinal
    (``5^{\\text{th}}\\text{ floor}``) counts as the number; plain-word answers ("west") are compared as
    words; a base subscript (``1021_3``) must match exactly. Each comparison runs under a hard wall-clock
    limit (``timeout_s``, default the verifier's); one that exceeds it is graded wrong with
    ``timed_out=True``. Raises :class:`UngradableGold` when math-verify cannot parse ``gold``.
    """
    answer = located.text
    if answer is None or (located.kind != "boxed" and _cut_off_box(final)):
        return _Reading(None, False)
    if len(answer) > MAX_ANSWER_CHARS:
        return _Reading(answer[:200], False)  # no benchmark answer is this long; not worth a comparison
    answer = answer.replace("\u2212", "-")  # a unicode minus is a minus sign
    words, gold_words = _plain_words(answer), _plain_words(gold)
    if words is not None and gold_words is not None:
        return _Reading(answer, words == gold_words)
    based, gold_based = _based(answer), _based(gold)
    if based is not None or gold_based is not None:
        return _Reading(answer, based == gold_based)
    if any((mark in answer) != (mark in gold) for mark in _SHAPE_MARKS):
        return _Reading(answer, False)  # a set or a ratio is not a number (math-verify would unwrap {25} to 25)
    if _NUMERIC_TOWER_RE.search(answer) and not _NUMERIC_TOWER_RE.search(gold):
        return _Reading(answer, False)  # 9^{9^{9}} would be evaluated exactly; no gold without a tower equals it
    # an exact integer however written ("5^{th} floor", "1,000") goes in plain; an equation goes as it is
    number = integer_text(answer) if "=" not in answer else None
    out = (verifier or get_math_verifier()).check(gold, "\\boxed{" + (number or answer) + "}", timeout_s)
    return _Reading(answer, out.correct, out.timed_out)


# ----------------------------------------------------------------------------------------------------
# Exact match
# ----------------------------------------------------------------------------------------------------


def normalize_exact(s: str) -> str:
    """Normalise a short answer for exact matching.

    Unwraps ``\\text{}``-like commands, drops ``$``, thousands separators ("1,234" -> "1234"),
    all whitespace (so "1 4 8 1 4" == "14814"), LaTeX spacing commands and a trailing period,
    and case-folds.
    """
    s = unwrap_text_commands(str(s))
    for junk in ("$", "\\,", "\\!", "\\;", "\\ ", "{,}", "~"):
        s = s.replace(junk, " " if junk == "~" else "")
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    return s.casefold()


@_grader(_gold_reader("exact", normalize_exact, "empty after normalisation"))
def grade_exact(final: str, gold: str, *, located: AnswerSpan, **_: Any) -> _Reading:
    """Normalised exact string match (see :func:`normalize_exact`).

    The answer is the last ``\\boxed{}`` of the final text, else the value of the last concluding statement
    (:func:`~t3s.evals.grading.answer_text.locate_answer`), else the last non-empty line of the final text.
    """
    raw = located.text
    if located.kind != "boxed":
        if _cut_off_box(final):
            return _Reading(None, False)
        if raw is None:
            raw = final.strip().rsplit("\n", 1)[-1].strip()
    extracted = normalize_exact(raw) or None
    return _Reading(extracted, extracted == gold)


# ----------------------------------------------------------------------------------------------------
# Multiple choice
# ----------------------------------------------------------------------------------------------------

_MC_ANSWER_RE = re.compile(
    r"(?i:answer)(?:\s+(?i:is)\s*[:：]?|\s*[:：])\s*(?:\*\*\s*)?(?:\$\s*)?(?:\\boxed\{\s*)?"
    r"(?:\\text(?:bf)?\{\s*)?(?:(?i:option|choice)\s+)?\(?([A-Z])\)?(?![A-Za-z0-9])"
)
_MC_PAREN_RE = re.compile(r"\(([A-Z])\)")
_MC_ALONE_RE = re.compile(r"\s*\**\s*\(?([A-Z])\)?[.)]?\s*\**\s*")


def mc_letter(s: str | None) -> str | None:
    """Read a single option letter from a short string: "C", "(C)", "C.", "\\text{C}", "C) 42"."""
    if s is None:
        return None
    s = unwrap_text_commands(str(s)[:MAX_ANSWER_CHARS]).replace("$", "").strip().strip("*").strip()
    m = re.match(r"\(?([A-Z])\)?(?:[\s.:)]|$)", s)
    return m.group(1) if m else None


def _mc_extract(final: str) -> str | None:
    strong: list[tuple[int, str]] = []
    for pos, start, end in reversed(boxed_spans(final)):  # the last box holding a letter
        letter = mc_letter(final[start : min(end, start + 200)])
        if letter:
            strong.append((pos, letter))
            break
    strong.extend((m.start(), m.group(1)) for m in _MC_ANSWER_RE.finditer(final))
    if strong:
        return max(strong, key=lambda t: t[0])[1]
    alone = _MC_ALONE_RE.fullmatch(final[:100])
    if alone:
        return alone.group(1)
    bare = [m.group(1) for m in _MC_PAREN_RE.finditer(final)]
    return bare[-1] if bare else None


@_grader(_gold_reader("mc", mc_letter, "not an option letter A..Z"), locate=False)
def grade_mc(final: str, gold: str, **_: Any) -> _Reading:
    """Grade a multiple-choice letter (A..Z).

    Explicit forms -- ``\\boxed{X}``, "Answer: X", "the answer is (X)" -- are read first and the last
    occurrence wins; a final text that is only a letter counts too; otherwise the last bare "(X)".
    A letter beyond the item's options is extracted as is (and is wrong).
    """
    letter = _mc_extract(final)
    return _Reading(letter, letter == gold)


# ----------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------

GRADERS: dict[str, Grader] = {
    "aime": grade_aime,
    "math": grade_math,
    "exact": grade_exact,
    "mc": grade_mc,
}


def grade(grader: str, response: str, gold: str, **kw: Any) -> Verdict:
    """Grade with the grader registered under ``grader`` (a key of :data:`GRADERS`).

    Raises KeyError for an unknown grader and :class:`UngradableGold` for a gold the grader cannot parse;
    any other failure on this response is contained: it is logged and graded wrong with ``grader_error``.
    """
    try:
        fn = GRADERS[grader]
    except KeyError:
        raise KeyError(f"unknown grader {grader!r}; choose from {sorted(GRADERS)}") from None
    try:
        return fn(response, gold, **kw)
    except UngradableGold:
        raise
    except Exception as err:  # noqa: BLE001 - one unreadable response must never stop an evaluation
        log.error("%s grader failed on a response (graded wrong): %s: %s", grader, type(err).__name__, err)
        return Verdict(None, False, bool(kw.get("hit_token_limit")), False, grader_error=True)


def validate_gold(grader: str, gold: str, **kw: Any) -> None:
    """Raise :class:`UngradableGold` if ``grader`` cannot parse ``gold`` (otherwise return None)."""
    grade(grader, "", str(gold), **kw)
