"""Teacher-trace records: the dataclasses, the field mapping with its named presets, and ``load_records``.

A source row (a JSON object, a Parquet row or a Hugging Face dataset row) becomes a :class:`TraceRecord`
through a :class:`FieldMapping`, which names the row's column for every piece the record needs. Problems in the
input raise :class:`TraceDataError` with one line naming the file and 1-based line (or row) and the mapping key
(``data.fields.<key>``) involved.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t3s.data.text import DEFAULT_MC_INSTRUCTION, format_multiple_choice, last_boxed, split_response

__all__ = [
    "FIELD_KEYS",
    "PRESETS",
    "FieldMapping",
    "LoadStats",
    "Problem",
    "TokenizedTrace",
    "TraceDataError",
    "TraceRecord",
    "load_records",
    "record_from_row",
]

log = logging.getLogger(__name__)


class TraceDataError(ValueError):
    """Bad teacher-trace input; the message is one line naming the file:line and the mapping key involved."""


@dataclass
class TraceRecord:
    """One teacher trace, independent of any tokenizer.

    Attributes:
        id: Stable identifier (the row's id field, else its source location).
        messages: The prompt turns only, as ``{"role", "content"}`` dicts (a system turn first, if any).
        reasoning: The teacher's thinking text (stripped), or None when the trace has none.
        answer_text: The visible final reply after the thinking (stripped).
        gold: The reference answer used to grade the problem (e.g. ``"B"``, ``"\\frac{1}{2}"``), or None.
        choices: The options of a multiple-choice problem (lettered A, B, ... in the prompt), or None.
        source: Where the record came from, ``"path:line"`` (1-based line, row or list item).
    """

    id: str
    messages: list[dict[str, str]]
    reasoning: str | None
    answer_text: str
    gold: str | None = None
    choices: list[str] | None = None
    source: str = ""


@dataclass
class Problem:
    """A training problem with its gold answer, for measuring training accuracy of a student."""

    id: str
    messages: list[dict[str, str]]
    gold: str | None
    choices: list[str] | None
    source: str


@dataclass
class TokenizedTrace:
    """A trace rendered with a tokenizer's chat template.

    ``labels`` is aligned with ``input_ids`` in the Hugging Face convention: ``labels[t] == input_ids[t]`` on
    trained tokens (the assistant reply and its end-of-turn token) and ``-100`` elsewhere (the prompt and
    anything the template emits after the end-of-turn token). ``index`` is the trace's position in the
    dataset (what ``trace_index`` in a micro-batch refers to). ``truncated`` marks a trace cut to
    ``max_length`` under ``overlong="truncate"``.
    """

    index: int
    record: TraceRecord
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_response_tokens(self) -> int:
        """Number of trained (labelled) tokens."""
        return sum(1 for label in self.labels if label != -100)


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


PRESETS: dict[str, FieldMapping] = {
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


@dataclass
class LoadStats:
    """What :func:`load_records` read: rows seen, rows skipped for an empty reply, records returned."""

    source: str
    rows: int = 0
    skipped_empty: int = 0
    loaded: int = 0
    limit: int | None = None


def _utf8(data: bytes, name: str, first_line: int = 1) -> str:
    """Decode ``data`` (starting at line ``first_line`` of file ``name``), naming the line of a bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        raise TraceDataError(f"{name}:{line}: line is not valid UTF-8 ({exc.reason})") from None


def _jsonl_rows(name: str, data: bytes) -> Iterator[tuple[str, Any]]:
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = _utf8(raw, name, number).strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceDataError(
                f"{name}:{number}: line is not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        yield f"{name}:{number}", row


def _json_list_rows(name: str, text: str) -> Iterator[tuple[str, Any]]:
    """Items of a JSON array, each located by the 1-based line its value starts on."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceDataError(f"{name}:{exc.lineno}: file is not valid JSON ({exc.msg})") from None
    decoder = json.JSONDecoder()
    at = text.index("[") + 1
    line = 1 + text.count("\n", 0, at)
    for item in items:
        start = at
        while text[at] in " \t\r\n,":  # the file parsed, so only whitespace and commas sit between items
            at += 1
        line += text.count("\n", start, at)
        yield f"{name}:{line}", item
        _, end = decoder.raw_decode(text, at)
        line += text.count("\n", at, end)
        at = end


def _file_rows(path: Path, name: str) -> Iterator[tuple[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"{name}:{number}", row
        return
    if suffix not in (".jsonl", ".json"):
        raise TraceDataError(f"{name}: unsupported file type '{suffix}' (expected .jsonl, .json or .parquet)")
    data = path.read_bytes()
    if suffix == ".json":
        text = _utf8(data, name)
        if text.lstrip().startswith("["):
            yield from _json_list_rows(name, text)
            return
    yield from _jsonl_rows(name, data)


def _hub_rows(path: str, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        dataset = datasets.load_dataset(path, split=split)
    except Exception as exc:  # the datasets library raises many kinds; report them as one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TraceDataError(
            f"{path}: not a local file, and loading it as a Hugging Face dataset (split '{split}') failed: {first}"
        ) from exc
    for number, row in enumerate(dataset, start=1):
        yield f"{path}[{split}]:{number}", row


def iter_rows(path: str | Path, split: str = "train") -> Iterator[tuple[str, Any]]:
    """``(location, row)`` pairs of a local .jsonl/.json/.parquet file, else of a Hugging Face dataset id."""
    local = Path(path).expanduser()
    if local.is_file():
        yield from _file_rows(local, str(path))
    else:
        yield from _hub_rows(str(path), split)


def load_records(
    path: str | Path,
    mapping: FieldMapping,
    *,
    split: str = "train",
    limit: int | None = None,
    seed: int = 0,
) -> tuple[list[TraceRecord], LoadStats]:
    """Read teacher traces from a local .jsonl/.json/.parquet file or a Hugging Face dataset id.

    Every row is validated (a bad one raises :class:`TraceDataError`); rows whose teacher reply is empty are
    skipped, counted in the stats and reported in one warning. ``limit`` keeps a reproducible random subset of
    ``limit`` records (drawn with ``seed``, kept in file order; a smaller limit gives a subset of a larger one).
    """
    if limit is not None and limit < 1:
        raise TraceDataError(f"{path}: limit must be a positive number of records, got {limit} (data.limit)")
    stats = LoadStats(source=str(path), limit=limit)
    records: list[TraceRecord] = []
    for where, row in iter_rows(path, split):
        stats.rows += 1
        if not isinstance(row, Mapping):
            raise TraceDataError(f"{where}: expected a JSON object, got {_kind(row)}")
        record = record_from_row(row, mapping, where)
        if record is None:
            stats.skipped_empty += 1
        else:
            records.append(record)
    if stats.skipped_empty:
        log.warning(
            "skipped %d of %d records of %s with an empty teacher reply (no reasoning and empty answer)",
            stats.skipped_empty,
            stats.rows,
            path,
        )
    if limit is not None and limit < len(records):
        order = list(range(len(records)))
        random.Random(seed).shuffle(order)
        records = [records[i] for i in sorted(order[:limit])]
    stats.loaded = len(records)
    return records, stats
