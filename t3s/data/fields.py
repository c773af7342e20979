"""Where each piece of a teacher trace lives in a source row: :class:`FieldMapping` and its named presets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from t3s.data.schema import TraceDataError
from t3s.data.text import DEFAULT_MC_INSTRUCTION

__all__ = ["FIELD_KEYS", "FIELD_PRESETS", "FieldMapping"]

FIELD_KEYS: tuple[str, ...] = (
    "id",
    "prompt",
    "messages",
    "system",
    "question",
    "options",
    "reasoning",
    "response",
    "answer_text",
    "answer",
    "conversations",
)


@dataclass(frozen=True)
class FieldMapping:
    """Where each piece of a trace lives in a source row (a column name per key; None = not used).

    Prompt, first present of: ``conversations`` (ShareGPT list of ``{from, value}``; the last assistant turn is
    the reply), ``messages`` (list of ``{role, content}``; a final assistant turn is the reply when the row has
    no ``answer_text``/``response``), ``prompt`` (one user turn), ``question`` (+ ``options``, lettered, and
    ``mc_instruction``). ``system``: optional system prompt prepended when the turns have none.
    Reply: ``answer_text`` (visible answer) with ``reasoning`` (thinking text), or ``response`` (the whole
    reply, split on ``<think>...</think>`` / OpenThoughts markers). ``answer``: the gold answer (optional).
    ``id``: optional identifier.

    Attributes:
        gold_from_solution: ``answer`` holds a worked solution; the gold is its last ``\\boxed{...}``.
        mc_instruction: Instruction appended to multiple-choice prompts built from ``question`` + ``options``.
        required: Mapping keys whose column must be present (and non-null) in every row.
    """

    id: str | None = "id"
    prompt: str | None = "prompt"
    messages: str | None = "messages"
    system: str | None = "system"
    question: str | None = "question"
    options: str | None = "options"
    reasoning: str | None = "reasoning"
    response: str | None = "response"
    answer_text: str | None = "answer_text"
    answer: str | None = "answer"
    conversations: str | None = None
    gold_from_solution: bool = False
    mc_instruction: str | None = DEFAULT_MC_INSTRUCTION
    required: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [key for key in self.required if key not in FIELD_KEYS]
        if unknown:
            raise ValueError(f"FieldMapping.required names unknown keys {unknown}; known: {list(FIELD_KEYS)}")

    def with_overrides(self, fields: Mapping[str, str | None] | None) -> FieldMapping:
        """A copy with the column names in ``fields`` replaced (None disables a key).

        A key given a column name here becomes required: the user said where it is, so a row lacking it is an
        error rather than silently falling back to another field.
        """
        if not fields:
            return self
        unknown = sorted(set(fields) - set(FIELD_KEYS))
        if unknown:
            raise TraceDataError(
                f"unknown field mapping key(s) {unknown} (data.fields); known keys: {', '.join(FIELD_KEYS)}"
            )
        required = tuple(dict.fromkeys([*self.required, *(k for k, v in fields.items() if v is not None)]))
        return dataclasses.replace(self, **dict(fields), required=required)


FIELD_PRESETS: dict[str, FieldMapping] = {
    # The spec's field names; every field optional beyond one prompt source and one reply source.
    "default": FieldMapping(),
    # simplescaling/s1K-1.1: DeepSeek-R1 thinking + attempt; gold = last \boxed{} of the worked solution.
    "s1k": FieldMapping(
        id=None,
        prompt=None,
        messages=None,
        system=None,
        question="question",
        options=None,
        reasoning="deepseek_thinking_trajectory",
        response=None,
        answer_text="deepseek_attempt",
        answer="solution",
        gold_from_solution=True,
        required=("question", "reasoning", "answer_text"),
    ),
    # ShareGPT / OpenThoughts: `conversations` list of {from, value}, optional top-level `system`.
    "conversations": FieldMapping(
        id="id",
        prompt=None,
        messages=None,
        system="system",
        question=None,
        options=None,
        reasoning=None,
        response=None,
        answer_text=None,
        answer="answer",
        conversations="conversations",
        required=("conversations",),
    ),
    # The DeepSeek-R1 MMLU-Pro traces (shared/data/r1_traces_mmlupro_200.jsonl): lettered options, gold letter.
    "r1_mc": FieldMapping(
        id="id",
        prompt=None,
        messages=None,
        system=None,
        question="question",
        options="options",
        reasoning="reasoning",
        response=None,
        answer_text="answer_text",
        answer="answer_letter",
        required=("question", "options", "reasoning", "answer_text", "answer"),
    ),
}
