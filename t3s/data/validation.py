"""Turning one source row into a :class:`TraceRecord`, validating every field on the way.

Problems raise :class:`TraceDataError` with one line naming the row's location and the mapping key
(``data.layout.fields.<key>``) involved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from t3s.data.fields import FieldMapping
from t3s.data.schema import TraceDataError, TraceRecord
from t3s.data.text import format_multiple_choice, last_boxed, split_response

__all__ = ["REASONING_COLUMNS", "TURN_REASONING_KEYS", "UnverifiedRow", "record_from_row"]

_ROLES = {
    "system": "system",
    "developer": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
}

#: Keys of an assistant turn that hold its reasoning (OpenAI-compatible servers, DeepSeek API, vLLM, TRL,
#: gpt-oss templates), first present wins.
TURN_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")

#: Row columns that hold reasoning in common trace datasets; one that is non-empty while the record ends up
#: with no reasoning is an error (the mapping reads the wrong column), never a silent drop.
REASONING_COLUMNS = (
    "reasoning",
    "reasoning_content",
    "thinking",
    "thoughts",
    "deepseek_reasoning",
    "deepseek_thinking_trajectory",
    "thinking_trajectories",
    "thinking_trajectory",
)


class _Row:
    """Typed access to one source row through a mapping, raising one-line errors that name the location."""

    def __init__(self, row: Mapping[str, Any], mapping: FieldMapping, where: str) -> None:
        self.row, self.mapping, self.where = row, mapping, where

    def error(self, message: str, key: str | None = None) -> TraceDataError:
        suffix = f" (data.layout.fields.{key})" if key else ""
        return TraceDataError(f"{self.where}: {message}{suffix}")

    def has(self, key: str) -> bool:
        column = getattr(self.mapping, key)
        return column is not None and self.row.get(column) is not None

    def get(self, key: str) -> Any:
        """The value of ``key``'s column; None when unmapped or absent (an error when ``key`` is required)."""
        column = getattr(self.mapping, key)
        value = None if column is None else self.row.get(column)
        if value is None and key in self.mapping.required:
            if column is None:
                raise self.error(f"required key '{key}' is mapped to no field", key)
            state = "has no field" if column not in self.row else "has a null field"
            raise self.error(f"record {state} '{column}'", key)
        return value

    def text(self, key: str) -> str | None:
        value = self.get(key)
        if value is not None and not isinstance(value, str):
            raise self.error(
                f"field '{getattr(self.mapping, key)}' must be a string, got {_kind(value)}", key
            )
        return value

    def turns(self, key: str, value: Any, role_key: str, content_key: str) -> list[dict[str, str]]:
        """Validated ``{"role", "content"}`` turns; an assistant turn's reasoning (``reasoning_content``,
        ``reasoning`` or ``thinking``) is kept under ``"reasoning_content"``."""
        column = getattr(self.mapping, key)
        if not isinstance(value, list) or not value:
            raise self.error(f"field '{column}' must be a non-empty list of turns, got {_kind(value)}", key)
        turns = []
        for n, turn in enumerate(value):
            if not isinstance(turn, Mapping):
                raise self.error(f"field '{column}' turn {n} must be an object, got {_kind(turn)}", key)
            role = turn.get(role_key, turn.get("role"))
            content = _content_text(turn.get(content_key, turn.get("content")))
            if role not in _ROLES:
                raise self.error(
                    f"field '{column}' turn {n} has role {role!r}; expected one of {sorted(_ROLES)}", key
                )
            if not isinstance(content, str):
                raise self.error(
                    f"field '{column}' turn {n} content must be a string, got {_kind(content)}", key
                )
            item = {"role": _ROLES[role], "content": content}
            for name in TURN_REASONING_KEYS:
                reasoning = turn.get(name)
                if reasoning is None:
                    continue
                if not isinstance(reasoning, str):
                    raise self.error(
                        f"field '{column}' turn {n} {name} must be a string, got {_kind(reasoning)}", key
                    )
                if item["role"] == "assistant":
                    item["reasoning_content"] = reasoning
                break
            turns.append(item)
        return turns

    def reasoning(self) -> str | None:
        """The ``reasoning`` column: a string, or a list of strings joined with blank lines."""
        value = self.get("reasoning")
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return "\n\n".join(v.strip() for v in value if v.strip())
        if value is not None and not isinstance(value, str):
            raise self.error(
                f"field '{self.mapping.reasoning}' must be a string or a list of strings, got {_kind(value)}",
                "reasoning",
            )
        return value


def _content_text(content: Any) -> Any:
    """A turn's content as text: OpenAI's list of ``{"type": "text", "text": ...}`` parts is joined."""
    if isinstance(content, list) and all(isinstance(p, Mapping) and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    return content


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class UnverifiedRow(Exception):
    """A multi-generation row (``data.layout.fields.verified``) none of whose generations is verified."""


Turns = list[dict[str, str]]


def _prompt_turns(turns: Turns) -> Turns:
    """Prompt turns as plain ``{"role", "content"}`` (earlier assistant turns' reasoning is not rendered)."""
    return [{"role": t["role"], "content": t["content"]} for t in turns]


def _split_reply(turns: Turns, row: _Row, key: str) -> tuple[Turns, str, str | None]:
    """Prompt turns, and the text and reasoning of the last assistant turn, which must be the final turn."""
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    column = getattr(row.mapping, key)
    if last is None:
        raise row.error(f"field '{column}' has no assistant turn", key)
    if last != len(turns) - 1:
        raise row.error(f"field '{column}' has turns after the last assistant turn", key)
    if last == 0:
        raise row.error(f"field '{column}' has no prompt turn before the assistant turn", key)
    return _prompt_turns(turns[:last]), turns[last]["content"], turns[last].get("reasoning_content")


def _prompt_and_reply(row: _Row) -> tuple[Turns, str | None, str | None]:
    """The prompt turns, and the whole reply text and its turn's reasoning when the prompt source carries a
    reply (conversations, messages)."""
    if row.has("conversations"):
        turns = row.turns("conversations", row.get("conversations"), "from", "value")
        return _split_reply(turns, row, "conversations")
    if row.has("messages"):
        turns = row.turns("messages", row.get("messages"), "role", "content")
        if turns[-1]["role"] == "assistant" and not (row.has("answer_text") or row.has("response")):
            return _split_reply(turns, row, "messages")
        return _prompt_turns(turns), None, None
    prompt = row.get("prompt")
    if isinstance(prompt, list):  # TRL conversational prompt
        turns = row.turns("prompt", prompt, "role", "content")
        if turns[-1]["role"] == "assistant":
            raise row.error(f"field '{row.mapping.prompt}' ends with an assistant turn (the reply goes in the "
                            "completion)", "prompt")
        return _prompt_turns(turns), None, None
    prompt = row.text("prompt")
    if prompt is not None:
        extra = row.text("input")
        if extra and extra.strip():
            prompt = f"{prompt}\n\n{extra}"
        return [{"role": "user", "content": prompt}], None, None
    question = row.text("question")
    if question is not None:
        options = _options(row)
        text = format_multiple_choice(question, options, row.mapping.mc_instruction) if options else question
        return [{"role": "user", "content": text}], None, None
    columns = [getattr(row.mapping, k) for k in ("conversations", "messages", "prompt", "question")]
    names = ", ".join(f"'{c}'" for c in columns if c is not None) or "(none mapped)"
    raise row.error(f"record has no prompt: none of the fields {names}", "prompt")


def _flags(row: _Row, column: str, key: str, count: int) -> list[Any] | None:
    value = row.row.get(column)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != count:
        raise row.error(
            f"field '{column}' must be a list of {count} flags (one per generation), got {_kind(value)}"
            + (f" of {len(value)}" if isinstance(value, list) else ""),
            key,
        )
    return value


def _verified_generation(row: _Row, generations: Any) -> str:
    """The first verified generation of a multi-generation row (see :class:`FieldMapping`)."""
    column = row.mapping.response
    if not isinstance(generations, list) or not all(isinstance(g, str) for g in generations) or not generations:
        raise row.error(f"field '{column}' must be a non-empty list of generations (strings), got "
                        f"{_kind(generations)}", "response")
    count = len(generations)
    checks = [c.strip() for c in (row.mapping.verified or "").split(",") if c.strip()]
    flags = [f for f in (_flags(row, c, "verified", count) for c in checks) if f is not None]
    if not flags:
        names = ", ".join(f"'{c}'" for c in checks)
        raise row.error(f"record has none of the verification fields {names}", "verified")
    complete = _flags(row, row.mapping.complete, "complete", count) if row.mapping.complete else None
    for i, generation in enumerate(generations):
        if any(f[i] is True for f in flags) and (complete is None or complete[i] is not False):
            return generation
    raise UnverifiedRow(row.where)


def _response(row: _Row) -> tuple[str | None, str | None]:
    """The ``response`` column as ``(reply text, reasoning of its turn)``: a string, a list holding one
    assistant turn (TRL conversational completion), or a list of generations (``verified`` set)."""
    value = row.get("response")
    if value is None:
        return None, None
    if row.mapping.verified:
        return _verified_generation(row, value), None
    if isinstance(value, list):
        turns = row.turns("response", value, "role", "content")
        column = row.mapping.response
        if len(turns) != 1 or turns[0]["role"] != "assistant":
            raise row.error(f"field '{column}' must hold one assistant turn, got {len(turns)} turn(s) "
                            f"({', '.join(t['role'] for t in turns)})", "response")
        return turns[0]["content"], turns[0].get("reasoning_content")
    return row.text("response"), None


def _has_text(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, list) and any(isinstance(v, str) and v.strip() for v in value)


def _check_no_reasoning_dropped(row: _Row) -> None:
    """A row whose record has no reasoning must not carry reasoning elsewhere (a column the mapping skips)."""
    for column in REASONING_COLUMNS:
        if _has_text(row.row.get(column)):
            raise row.error(
                f"the record maps to an empty reasoning but the row has reasoning in field '{column}'; read it "
                f"with --data.layout.fields.reasoning={column} (or a data.layout.preset for this layout)",
                "reasoning",
            )


def _options(row: _Row) -> list[str] | None:
    options = row.get("options")
    if options is None:
        return None
    column = row.mapping.options
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise row.error(f"field '{column}' must be a list of strings, got {_kind(options)}", "options")
    if not 2 <= len(options) <= 26:
        raise row.error(f"field '{column}' must hold 2 to 26 options, got {len(options)}", "options")
    return list(options)


def _gold(row: _Row) -> str | None:
    value = row.get("answer")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise row.error(
            f"field '{row.mapping.answer}' must be a string or number, got {_kind(value)}", "answer"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise row.error(f"field '{row.mapping.answer}' is {value}, not a usable answer", "answer")
    text = str(value)
    return last_boxed(text) if row.mapping.gold_from_solution else text.strip()


def record_from_row(row: Mapping[str, Any], mapping: FieldMapping, where: str) -> TraceRecord | None:
    """Build a record from one source row; None when the teacher reply is empty (no reasoning, no answer).

    Raises:
        TraceDataError: a bad row, or a row whose reasoning would be lost (see :data:`REASONING_COLUMNS`).
        UnverifiedRow: a multi-generation row none of whose generations is verified.
    """
    access = _Row(row, mapping, where)
    for key in mapping.required:
        access.get(key)  # raises when a required field is missing
    messages, reply, turn_reasoning = _prompt_and_reply(access)
    reasoning = access.reasoning()
    answer = ""
    if reply is None:
        answer_text = access.text("answer_text")
        if answer_text is not None:
            answer = answer_text
        else:
            reply, turn_reasoning = _response(access)
            if reply is None:
                raise access.error(
                    f"record has no reply: neither field '{mapping.answer_text}' nor '{mapping.response}'",
                    "answer_text",
                )
    if reply is not None:  # a whole reply: split its thinking off (an explicit reasoning field wins)
        split_reasoning, answer = split_response(reply)
        if reasoning is None:
            reasoning = turn_reasoning if turn_reasoning is not None and turn_reasoning.strip() else split_reasoning
    reasoning = reasoning.strip() if reasoning is not None else None
    answer = answer.strip()
    if not reasoning:
        _check_no_reasoning_dropped(access)
    if not reasoning and not answer:
        return None
    system = access.text("system")
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    raw_id = access.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
        raise access.error(f"field '{mapping.id}' must be a string or integer, got {_kind(raw_id)}", "id")
    return TraceRecord(
        id=str(raw_id) if raw_id is not None else where,
        messages=messages,
        reasoning=reasoning or None,
        answer_text=answer,
        gold=_gold(access),
        choices=_options(access),
        source=where,
    )
