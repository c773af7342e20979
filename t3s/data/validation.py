"""Turning one source row into a :class:`TraceRecord`, validating every field on the way.

Problems raise :class:`TraceDataError` with one line naming the row's location and the mapping key
(``data.fields.<key>``) involved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from t3s.data.fields import FieldMapping
from t3s.data.schema import TraceDataError, TraceRecord
from t3s.data.text import format_multiple_choice, last_boxed, split_response

__all__ = ["record_from_row"]

_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class _Row:
    """Typed access to one source row through a mapping, raising one-line errors that name the location."""

    def __init__(self, row: Mapping[str, Any], mapping: FieldMapping, where: str) -> None:
        self.row, self.mapping, self.where = row, mapping, where

    def error(self, message: str, key: str | None = None) -> TraceDataError:
        suffix = f" (data.fields.{key})" if key else ""
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
        column = getattr(self.mapping, key)
        if not isinstance(value, list) or not value:
            raise self.error(f"field '{column}' must be a non-empty list of turns, got {_kind(value)}", key)
        turns = []
        for n, turn in enumerate(value):
            if not isinstance(turn, Mapping):
                raise self.error(f"field '{column}' turn {n} must be an object, got {_kind(turn)}", key)
            role = turn.get(role_key, turn.get("role"))
            content = turn.get(content_key, turn.get("content"))
            if role not in _ROLES:
                raise self.error(
                    f"field '{column}' turn {n} has role {role!r}; expected one of {sorted(_ROLES)}", key
                )
            if not isinstance(content, str):
                raise self.error(
                    f"field '{column}' turn {n} content must be a string, got {_kind(content)}", key
                )
            turns.append({"role": _ROLES[role], "content": content})
        return turns


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _split_reply(turns: list[dict[str, str]], row: _Row, key: str) -> tuple[list[dict[str, str]], str]:
    """Prompt turns and the text of the last assistant turn, which must be the final turn."""
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    column = getattr(row.mapping, key)
    if last is None:
        raise row.error(f"field '{column}' has no assistant turn", key)
    if last != len(turns) - 1:
        raise row.error(f"field '{column}' has turns after the last assistant turn", key)
    if last == 0:
        raise row.error(f"field '{column}' has no prompt turn before the assistant turn", key)
    return turns[:last], turns[last]["content"]


def _prompt_and_reply(row: _Row) -> tuple[list[dict[str, str]], str | None]:
    """The prompt turns, and the whole reply text when the prompt source carries one (conversations)."""
    if row.has("conversations"):
        turns = row.turns("conversations", row.get("conversations"), "from", "value")
        return _split_reply(turns, row, "conversations")
    if row.has("messages"):
        turns = row.turns("messages", row.get("messages"), "role", "content")
        if turns[-1]["role"] == "assistant" and not (row.has("answer_text") or row.has("response")):
            return _split_reply(turns, row, "messages")
        return turns, None
    prompt = row.text("prompt")
    if prompt is not None:
        return [{"role": "user", "content": prompt}], None
    question = row.text("question")
    if question is not None:
        options = _options(row)
        text = format_multiple_choice(question, options, row.mapping.mc_instruction) if options else question
        return [{"role": "user", "content": text}], None
    columns = [getattr(row.mapping, k) for k in ("conversations", "messages", "prompt", "question")]
    names = ", ".join(f"'{c}'" for c in columns if c is not None) or "(none mapped)"
    raise row.error(f"record has no prompt: none of the fields {names}", "prompt")


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
    """Build a record from one source row; None when the teacher reply is empty (no reasoning, no answer)."""
    access = _Row(row, mapping, where)
    for key in mapping.required:
        access.get(key)  # raises when a required field is missing
    messages, reply = _prompt_and_reply(access)
    reasoning = access.text("reasoning")
    answer = ""
    if reply is None:
        answer_text = access.text("answer_text")
        if answer_text is not None:
            answer = answer_text
        else:
            reply = access.text("response")
            if reply is None:
                raise access.error(
                    f"record has no reply: neither field '{mapping.answer_text}' nor '{mapping.response}'",
                    "answer_text",
                )
    if reply is not None:  # a whole reply: split its thinking off (an explicit reasoning field wins)
        split_reasoning, answer = split_response(reply)
        reasoning = reasoning if reasoning is not None else split_reasoning
    reasoning = reasoning.strip() if reasoning is not None else None
    answer = answer.strip()
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
