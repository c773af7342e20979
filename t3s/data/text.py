"""Small text helpers for teacher traces: splitting a reply into reasoning + answer, boxed answers, MC prompts."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "DEFAULT_MC_INSTRUCTION",
    "format_multiple_choice",
    "last_boxed",
    "option_letters",
    "split_response",
]

DEFAULT_MC_INSTRUCTION = "Answer with the letter of the correct option inside \\boxed{}, e.g. \\boxed{A}."

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_THOUGHT_OPEN, _THOUGHT_CLOSE = "<|begin_of_thought|>", "<|end_of_thought|>"
_SOLUTION_OPEN, _SOLUTION_CLOSE = "<|begin_of_solution|>", "<|end_of_solution|>"


def split_response(text: str) -> tuple[str | None, str]:
    """Split a whole teacher reply into ``(reasoning, answer)``, both stripped.

    Understands ``<think>...</think>answer`` (the opening tag may be missing, as in R1 outputs whose template
    already opened the block) and the OpenThoughts markers ``<|begin_of_thought|>...<|end_of_thought|>``
    ``<|begin_of_solution|>...<|end_of_solution|>``. A reply with no markers is all answer (reasoning None).
    An opened but never closed thinking block is all reasoning with an empty answer.
    """
    if _THOUGHT_OPEN in text or _THOUGHT_CLOSE in text:
        head, closed, rest = text.partition(_THOUGHT_CLOSE)
        reasoning = head.split(_THOUGHT_OPEN, 1)[-1]
        if not closed:
            return reasoning.strip(), ""
        if _SOLUTION_OPEN in rest:
            rest = rest.split(_SOLUTION_OPEN, 1)[1]
        answer = rest.split(_SOLUTION_CLOSE, 1)[0]
        return reasoning.strip(), answer.strip()
    if _THINK_CLOSE in text:
        head, _, answer = text.partition(_THINK_CLOSE)
        return head.split(_THINK_OPEN, 1)[-1].strip(), answer.strip()
    if _THINK_OPEN in text:
        return text.split(_THINK_OPEN, 1)[1].strip(), ""
    return None, text.strip()


def _balanced_group(text: str, open_at: int) -> str | None:
    """Content of the brace group whose ``{`` is at ``open_at``; None when the braces never balance."""
    depth = 0
    for i in range(open_at, len(text)):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced.

    ``last_boxed(r"so $\\boxed{\\frac{1}{2}}$")`` is ``"\\frac{1}{2}"``. Returns None when there is no
    complete boxed group.
    """
    starts = sorted(
        {i for command in ("\\boxed", "\\fbox") for i in _find_all(text, command + "{")}, reverse=True
    )
    for start in starts:
        content = _balanced_group(text, text.index("{", start))
        if content is not None:
            return content.strip()
    return None


def _find_all(text: str, needle: str) -> list[int]:
    found, at = [], text.find(needle)
    while at != -1:
        found.append(at)
        at = text.find(needle, at + 1)
    return found


def option_letters(count: int) -> list[str]:
    """``A``, ``B``, ... for ``count`` options (at most 26)."""
    if count > 26:
        raise ValueError(f"at most 26 options can be lettered, got {count}")
    return [chr(ord("A") + i) for i in range(count)]


def format_multiple_choice(question: str, options: Sequence[str], instruction: str | None) -> str:
    """``question``, a blank line, the options lettered ``A. ...`` one per line, a blank line, ``instruction``."""
    lines = [f"{letter}. {option}" for letter, option in zip(option_letters(len(options)), options)]
    parts = [question.strip(), "\n".join(lines)]
    if instruction:
        parts.append(instruction)
    return "\n\n".join(parts)
