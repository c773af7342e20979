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
    "input",
    "verified",
    "complete",
)


@dataclass(frozen=True)
class FieldMapping:
    """Where each piece of a trace lives in a source row (a column name per key; None = not used).

    Prompt, first present of: ``conversations`` (ShareGPT list of ``{from, value}``; the last assistant turn is
    the reply), ``messages`` (list of ``{role, content}``; a final assistant turn is the reply when the row has
    no ``answer_text``/``response``), ``prompt`` (one user turn, or a list of turns: TRL's conversational
    prompt), ``question`` (+ ``options``, lettered, and ``mc_instruction``). ``input``: Alpaca's extra input,
    appended to a text prompt after a blank line when non-empty. ``system``: optional system prompt prepended
    when the turns have none.

    Reply: ``answer_text`` (visible answer) with ``reasoning`` (thinking text; a list of strings is joined
    with blank lines), or ``response`` (the whole reply, split on ``<think>...</think>`` / OpenThoughts
    markers; or a list holding one assistant turn: TRL's conversational completion). An assistant turn's
    ``reasoning_content``, ``reasoning`` or ``thinking`` key is its reasoning (OpenAI / vLLM / TRL layout).
    With ``verified`` set, ``response`` is a list of generations (OpenR1) and the first verified one is the
    reply: generation ``i`` is verified when any column named in ``verified`` (comma-separated) holds a list
    whose ``i``-th flag is true, and ``complete`` (a list of flags, when present) does not mark it false; a
    row with none is skipped and counted. ``answer``: the gold answer (optional). ``id``: optional
    identifier.

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
    input: str | None = "input"
    verified: str | None = None
    complete: str | None = None
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
                f"unknown field mapping key(s) {unknown} (data.layout.fields); known keys: {', '.join(FIELD_KEYS)}"
            )
        required = tuple(dict.fromkeys([*self.required, *(k for k, v in fields.items() if v is not None)]))
        return dataclasses.replace(self, **dict(fields), required=required)


_NONE = dict.fromkeys(
    ("id", "prompt", "messages", "system", "question", "options", "reasoning", "response", "answer_text",
     "answer", "input")
)


def _only(**columns: object) -> FieldMapping:
    """A mapping that reads only the given columns (every other key unmapped)."""
    return FieldMapping(**{**_NONE, **columns})  # type: ignore[arg-type]


_S1K_11 = _only(
    question="question",
    reasoning="deepseek_thinking_trajectory",
    answer_text="deepseek_attempt",
    answer="solution",
    gold_from_solution=True,
    required=("question", "reasoning", "answer_text"),
)
_CONVERSATIONS = _only(
    id="id", system="system", answer="answer", conversations="conversations", required=("conversations",)
)

FIELD_PRESETS: dict[str, FieldMapping] = {
    # The spec's field names; every field optional beyond one prompt source and one reply source. Reads OpenAI
    # `messages` (reasoning_content / reasoning / thinking on the assistant turn) as well.
    "default": FieldMapping(),
    # OpenAI / vLLM / DeepSeek-API / TRL conversational-LM rows: `messages`, the assistant turn's
    # reasoning_content (or reasoning / thinking) is the thinking text.
    "messages": _only(id="id", messages="messages", system="system", answer="answer", required=("messages",)),
    # TRL prompt-completion, plain (strings) or conversational (lists of turns).
    "prompt_completion": _only(
        id="id", prompt="prompt", response="completion", system="system", answer="answer",
        required=("prompt", "response"),
    ),
    # simplescaling/s1K-1.1: DeepSeek-R1 thinking + attempt; gold = last \boxed{} of the worked solution.
    "s1k": _S1K_11,
    "s1k-1.1": _S1K_11,
    # simplescaling/s1K (1.0): Gemini `thinking_trajectories` (a list of strings) + `attempt`.
    "s1k-1.0": dataclasses.replace(_S1K_11, reasoning="thinking_trajectories", answer_text="attempt"),
    # ShareGPT / OpenThoughts: `conversations` list of {from, value}, optional top-level `system`.
    "conversations": _CONVERSATIONS,
    "sharegpt": _CONVERSATIONS,
    # OpenThoughts-114k / OpenThoughts3: `conversations` with the thought/solution markers or <think> tags, a
    # top-level `system`; the `metadata` subset's problem / deepseek_reasoning / deepseek_solution columns.
    "openthoughts": _only(
        id="id", system="system", conversations="conversations",
        question="problem", reasoning="deepseek_reasoning", answer_text="deepseek_solution",
    ),
    # open-r1/OpenR1-Math-220k: `problem`, several `generations`; the first verified one is the reply.
    "openr1": _only(
        id="uuid", question="problem", response="generations", answer="answer",
        verified="correctness_math_verify,correctness_llama", complete="is_reasoning_complete",
        required=("question", "response"),
    ),
    # Alpaca / LLaMA-Factory alpaca: instruction (+ input) -> output, optional system.
    "alpaca": _only(
        prompt="instruction", input="input", response="output", system="system", answer="answer",
        required=("prompt", "response"),
    ),
    # The DeepSeek-R1 MMLU-Pro traces (shared/data/r1_traces_mmlupro_200.jsonl): lettered options, gold letter.
    "r1_mc": _only(
        id="id", question="question", options="options", reasoning="reasoning", answer_text="answer_text",
        answer="answer_letter", required=("question", "options", "reasoning", "answer_text", "answer"),
    ),
}
