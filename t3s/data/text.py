"""Reasoning and answer text: the one place that splits a reply into thinking + final text, finds boxed
answers, reads concluding sentences and formats multiple-choice prompts. Used by the data pipeline (teacher
traces, gold answers) and by the graders alike, so the two can never disagree.

Everything here is linear in the input and bounded: boxes are found with one pass over the braces of at most
the last :data:`MAX_SCAN_CHARS` characters, so a megabyte-long or adversarial response costs milliseconds.
This module imports only the standard library (the math-verify worker subprocess loads it by path).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MC_INSTRUCTION",
    "MAX_SCAN_CHARS",
    "REASONING_TAGS",
    "ReasoningSplit",
    "boxed_spans",
    "braces_balanced",
    "concluding_phrase",
    "format_multiple_choice",
    "format_options",
    "join_spaced_digits",
    "last_boxed",
    "matching_braces",
    "option_letters",
    "split_reasoning",
    "split_response",
    "unwrap_text_commands",
]

DEFAULT_MC_INSTRUCTION = "Answer with the letter of the correct option inside \\boxed{}, e.g. \\boxed{A}."

#: Reasoning-block formats recognised by default, as (open, close) tags: DeepSeek-R1/Qwen3, OpenThoughts /
#: Bespoke-Stratos, and the plain XML spellings some prompts ask for.
REASONING_TAGS: tuple[tuple[str, str], ...] = (
    ("<think>", "</think>"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
    ("<thinking>", "</thinking>"),
    ("<reasoning>", "</reasoning>"),
    ("◁think▷", "◁/think▷"),
)
_SOLUTION_OPEN, _SOLUTION_CLOSE = "<|begin_of_solution|>", "<|end_of_solution|>"

#: Answers are looked for in at most this many trailing characters of the final text.
MAX_SCAN_CHARS = 100_000


@dataclass(frozen=True)
class ReasoningSplit:
    """A reply split at its reasoning block.

    ``reasoning``: the thinking text (stripped), None when the reply has no reasoning block. ``final``: the
    text after the block (stripped; OpenThoughts solution markers removed), None when the block never
    closed. ``closed``: False when the reply was cut off inside its reasoning (it holds no answer).
    """

    reasoning: str | None
    final: str | None
    closed: bool


def split_reasoning(
    text: str, *, opened_in_prompt: bool = False, tags: Sequence[tuple[str, str]] | None = None
) -> ReasoningSplit:
    """Split ``text`` at the LAST closing reasoning tag.

    Reasoning may quote a closing tag ("...then write </think>..."), but only the last one can end it, so the
    last closing tag of any known format (``tags``, default :data:`REASONING_TAGS`) wins. A reply that opens a
    block and never closes it, or reopens one after the last close, is unclosed; so is a reply without tags
    when ``opened_in_prompt`` (the chat template opened the block). A reply without tags is all final text.
    """
    formats = tuple(tags) if tags is not None else REASONING_TAGS
    best: tuple[int, str, str] | None = None
    for open_tag, close_tag in formats:
        at = text.rfind(close_tag)
        if at >= 0 and (best is None or at + len(close_tag) > best[0] + len(best[2])):
            best = (at, open_tag, close_tag)
    if best is not None:
        at, open_tag, close_tag = best
        head, final = text[:at], text[at + len(close_tag) :]
        opened = head.find(open_tag)
        reasoning = head[opened + len(open_tag) :] if opened >= 0 else head
        if any(open_t in final for open_t, _ in formats):
            return ReasoningSplit(reasoning.strip(), None, False)
        if _SOLUTION_OPEN in final:
            final = final.split(_SOLUTION_OPEN, 1)[1]
        final = final.split(_SOLUTION_CLOSE, 1)[0]
        return ReasoningSplit(reasoning.strip(), final.strip(), True)
    opens = [(text.find(o), o) for o, _ in formats if o in text]
    if opens:
        at, open_tag = min(opens)
        return ReasoningSplit(text[at + len(open_tag) :].strip(), None, False)
    if opened_in_prompt:
        return ReasoningSplit(text.strip(), None, False)
    return ReasoningSplit(None, text.strip(), True)


def split_response(text: str) -> tuple[str | None, str]:
    """A whole teacher reply as ``(reasoning, answer)``: :func:`split_reasoning`, an unclosed block giving an
    empty answer."""
    split = split_reasoning(text)
    return split.reasoning, split.final or ""


# ---------------------------------------------------------------------------------------------------------
# Braces and boxes
# ---------------------------------------------------------------------------------------------------------

_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)


def matching_braces(text: str) -> dict[int, int]:
    """``{open_index: close_index}`` for every balanced ``{...}`` group; escaped ``\\{``/``\\}`` are literal.

    One pass with a stack: unmatched closers are ignored, unclosed openers get no entry.
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_TOKEN.finditer(text):
        token = m.group()
        if token == "{":
            stack.append(m.start())
        elif token == "}" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


def braces_balanced(text: str) -> bool:
    """True when the unescaped ``{``/``}`` of ``text`` are balanced."""
    depth = 0
    for m in _BRACE_TOKEN.finditer(text):
        token = m.group()
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
_BARE_TOKEN_RE = re.compile(r"[^\s$]+")


def boxed_spans(text: str) -> list[tuple[int, int, int]]:
    """``(position, content_start, content_end)`` of every complete ``\\boxed{...}``/``\\fbox{...}``, in order.

    Braces are balanced (nested groups allowed, escaped braces literal): ``\\boxed{a \\} b}`` holds
    ``a \\} b``. ``\\boxed 5.`` (TeX's brace-less form) holds the following token without a trailing period.
    Cut-off boxes are skipped. Only the last :data:`MAX_SCAN_CHARS` characters are read; no content is
    copied, so thousands of nested boxes cost one pass.
    """
    offset = max(0, len(text) - MAX_SCAN_CHARS)
    pairs: dict[int, int] | None = None
    spans = []
    for m in _BOX_RE.finditer(text, offset):
        at = m.end()
        if at < len(text) and text[at] == "{":
            if pairs is None:
                pairs = {offset + o: offset + c for o, c in matching_braces(text[offset:]).items()}
            close = pairs.get(at)
            if close is not None:
                spans.append((m.start(), at + 1, close))
        elif at < len(text) and text[at - 1].isspace():
            token = _BARE_TOKEN_RE.match(text, at)
            if token:
                end = token.end()
                while end > at and text[end - 1] == ".":
                    end -= 1
                if end > at:
                    spans.append((m.start(), at, end))
    return spans


def last_boxed(text: str | None) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text`` (stripped), or None.

    ``last_boxed(r"so $\\boxed{\\frac{1}{2}}$")`` is ``"\\frac{1}{2}"``.
    """
    spans = boxed_spans(text) if text else []
    return text[spans[-1][1] : spans[-1][2]].strip() if text and spans else None


# Two or more lone digits, each one space apart ("1 4 4 8 3"), not touching a word, a decimal point, a digit
# group or an exponent / subscript / fraction on either side (so "3.1 4", "x_1 2", "2^3 4" stay as written).
_SPACED_DIGITS_RE = re.compile(r"(?<![\w.,^/\\])\d(?: \d)+(?![\w^_/]|[.,]\d)", re.ASCII)


def join_spaced_digits(text: str) -> str:
    """Digits written one by one ("the sum is 1 4 4 8 3", a tokenizer that spaces digits) joined into
    the number they spell ("14483"). Only runs of single digits separated by single spaces are joined;
    "12 34", "1  2", "1, 2" and digits glued to a letter, a decimal point, ``^``, ``_`` or ``/`` are left."""
    if " " not in text:
        return text
    return _SPACED_DIGITS_RE.sub(lambda m: m.group().replace(" ", ""), text)


_TEXT_COMMAND_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname)\s*\{")


def unwrap_text_commands(s: str) -> str:
    """Replace ``\\text{x}``, ``\\textbf{x}``, ``\\mathrm{x}`` ... by ``x`` (nested ones too), in one pass."""
    if "\\" not in s:
        return s
    pairs: dict[int, int] | None = None
    drop: list[tuple[int, int]] = []
    for m in _TEXT_COMMAND_RE.finditer(s):
        if pairs is None:
            pairs = matching_braces(s)
        close = pairs.get(m.end() - 1)
        if close is not None:
            drop += [(m.start(), m.end()), (close, close + 1)]
    if not drop:
        return s
    out, at = [], 0
    for start, end in sorted(drop):
        out.append(s[at:start])
        at = end
    out.append(s[at:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------------------
# Concluding sentences (the unboxed fallback)
# ---------------------------------------------------------------------------------------------------------

_CONCLUSION_RE = re.compile(
    r"\b(?:final\s+answer|answer)\s*(?:is|:|=)\s*:?"
    r"|\b(?:hence|thus|therefore|so)\b,?[^.!?\n]{0,80}?(?:=|\bis\b|\bequals\b)",
    re.IGNORECASE,
)
_MAX_PHRASE_CHARS = 2_000
_MAX_CONCLUSIONS = 20
_SENTENCE_END_RE = re.compile(r"(?<!\d)\.(?!\d)|\.(?=\s|$)|(?<![\d)}])!|[?\n]")  # "25!" is a factorial


def concluding_phrase(text: str) -> str | None:
    """The value stated by the LAST concluding sentence of ``text``, or None.

    A concluding sentence says "the (final) answer is X", "Answer: X", or "hence/thus/therefore/so ... = X"
    (or "... is X"); its value is the rest of the sentence, stripped of ``*``, ``$`` and a final period. A
    sentence with no value (the text ends after "the answer is") gives way to the one before; sentences over
    2,000 characters state no answer. Bounded: only the last :data:`MAX_SCAN_CHARS` characters and the last
    :data:`_MAX_CONCLUSIONS` concluding sentences are read.
    """
    text = text[-MAX_SCAN_CHARS:]
    matches = [m.end() for m in _CONCLUSION_RE.finditer(text)]
    for at in reversed(matches[-_MAX_CONCLUSIONS:]):
        rest = text[at : at + _MAX_PHRASE_CHARS + 1]
        end = _SENTENCE_END_RE.search(rest)
        if end is None and len(rest) > _MAX_PHRASE_CHARS:
            continue  # a "sentence" this long states no answer (and a cut one could misstate it)
        value = (rest[: end.start()] if end else rest).strip().strip("*").strip().strip("$").strip()
        if value:
            return value
    return None


# ---------------------------------------------------------------------------------------------------------
# Multiple choice
# ---------------------------------------------------------------------------------------------------------


def option_letters(count: int) -> list[str]:
    """``A``, ``B``, ... for ``count`` options (at most 26)."""
    if count > 26:
        raise ValueError(f"at most 26 options can be lettered, got {count}")
    return [chr(ord("A") + i) for i in range(count)]


def format_options(options: Sequence[str]) -> str:
    """The options lettered ``(A) ...``, one per line (the one multiple-choice format of t3s)."""
    return "\n".join(f"({letter}) {option}" for letter, option in zip(option_letters(len(options)), options))


def format_multiple_choice(question: str, options: Sequence[str], instruction: str | None) -> str:
    """``question``, a blank line, the lettered options (:func:`format_options`), a blank line, ``instruction``."""
    parts = [question.strip(), format_options(options)]
    if instruction:
        parts.append(instruction)
    return "\n\n".join(parts)
