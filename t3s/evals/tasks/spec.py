"""The schema of a benchmark task: :class:`TaskSpec` (what a task YAML holds), :class:`TaskFields` (which
dataset columns hold what), :class:`EvalItem` (one question) and :class:`ChoiceOrder` (one shuffled option
order). Every value is checked on construction; a bad one raises :class:`TaskError` naming the task file and key.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t3s.data.rows import DataFileError
from t3s.evals.backends.sampling import SamplingParams
from t3s.evals.grading.graders import GRADERS, MC_LETTERS

__all__ = ["DEFAULT_INSTRUCTION", "MAX_CHOICES", "ChoiceOrder", "EvalItem", "TaskError", "TaskFields", "TaskSpec"]

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
MAX_CHOICES = len(MC_LETTERS)
#: Grader keyword arguments a task may set, with the types they take.
GRADER_KWARGS: dict[str, tuple[type, ...]] = {"timeout_s": (int, float), "reasoning_tags": (list, tuple)}


class TaskError(DataFileError):
    """A task file or a task's dataset is unusable; the message is one line naming the file (and line/key)."""


def _check_type(where: str, key: str, value: Any, types: tuple[type, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    bad_bool = isinstance(value, bool) and bool not in types
    if bad_bool or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types) + (" or null" if optional else "")
        prefix = f"{where}: " if where else ""
        raise TaskError(f"{prefix}{key} must be {names}, got {type(value).__name__} {str(value)[:60]!r}")


@dataclass
class TaskFields:
    """Which dataset columns hold what.

    ``id``: item id column (None: ``<task>-<row index>``); ``problem``: question / prompt text;
    ``answer``: gold answer; ``choices``: one column holding the list of options; ``choice_columns``:
    one column per option (e.g. GPQA's ``Correct Answer``, ``Incorrect Answer 1..3``);
    ``answer_type`` (multiple choice only): ``letter`` ("C"), ``index`` (2), ``text`` (the option
    text) or ``auto`` (int -> index, single letter -> letter, else text).
    """

    id: str | None = None
    problem: str = "problem"
    answer: str = "answer"
    choices: str | None = None
    choice_columns: list[str] | None = None
    answer_type: str = "auto"

    def __post_init__(self) -> None:
        for key in ("id", "choices"):
            _check_type("", f"fields.{key}", getattr(self, key), (str,), optional=True)
        for key in ("problem", "answer", "answer_type"):
            _check_type("", f"fields.{key}", getattr(self, key), (str,))
        if self.answer_type not in ("auto", "letter", "index", "text"):
            raise TaskError(f"fields.answer_type must be auto|letter|index|text, got {self.answer_type!r}")
        if self.choices is not None and self.choice_columns:
            raise TaskError("give either fields.choices or fields.choice_columns, not both")
        if self.choice_columns is not None:
            _check_type("", "fields.choice_columns", self.choice_columns, (list, tuple))
            self.choice_columns = list(self.choice_columns)
            if not all(isinstance(c, str) for c in self.choice_columns):
                raise TaskError("fields.choice_columns must be a list of column names (strings)")
            if not 2 <= len(self.choice_columns) <= MAX_CHOICES:
                raise TaskError(f"fields.choice_columns needs 2..{MAX_CHOICES} columns")

    @property
    def multiple_choice(self) -> bool:
        """True when the task has options."""
        return self.choices is not None or bool(self.choice_columns)


@dataclass
class TaskSpec:
    """Declarative description of an evaluation task (see :mod:`t3s.evals.tasks` for the YAML form).

    ``prompt_template`` (optional) is formatted with ``problem``, ``choices`` (the lettered option
    block, empty for open questions) and ``instruction``; by default these are joined by blank lines.
    ``enable_thinking`` is passed to the chat template (None: not passed). ``grader_kwargs`` go to the
    grader: ``timeout_s`` (``math``) and ``reasoning_tags`` (a list of ``[open, close]`` tag pairs that
    delimit reasoning, on top of the common ones such as ``<think>``/``</think>``).
    """

    name: str
    dataset: str | None = None
    split: str = "test"
    subset: str | None = None
    fields: TaskFields = field(default_factory=TaskFields)
    grader: str = "math"
    instruction: str = DEFAULT_INSTRUCTION
    prompt_template: str | None = None
    system_prompt: str | None = None
    enable_thinking: bool | None = True
    use_chat_template: bool = True
    sampling: SamplingParams = field(default_factory=SamplingParams)
    limit: int | None = None
    seed: int = 0
    shuffle_choices: bool = True
    grader_kwargs: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the YAML file this spec came from (relative dataset paths resolve there)

    def __post_init__(self) -> None:
        where = f"task file {self.source}" if self.source else "task"
        _check_type(where, "name", self.name, (str,))
        where = f"task file {self.source}" if self.source else f"task {self.name!r}"
        for key in ("dataset", "subset", "prompt_template", "system_prompt", "instruction"):
            _check_type(where, key, getattr(self, key), (str,), optional=True)
        _check_type(where, "split", self.split, (str,))
        _check_type(where, "grader", self.grader, (str,))
        for key in ("use_chat_template", "shuffle_choices"):
            _check_type(where, key, getattr(self, key), (bool,))
        _check_type(where, "enable_thinking", self.enable_thinking, (bool,), optional=True)
        _check_type(where, "seed", self.seed, (int,))
        _check_type(where, "limit", self.limit, (int,), optional=True)
        _check_type(where, "grader_kwargs", self.grader_kwargs, (dict,), optional=True)
        for key, kind in (("fields", TaskFields), ("sampling", SamplingParams)):
            value = getattr(self, key)
            if isinstance(value, Mapping):
                setattr(self, key, _build(kind, value, f"{where} {key}"))
            elif not isinstance(value, kind):
                raise TaskError(f"{where}: {key} must be a mapping, got {type(value).__name__} {str(value)[:60]!r}")
        if self.grader not in GRADERS:
            raise TaskError(f"{where}: unknown grader {self.grader!r}; choose from {sorted(GRADERS)}")
        if self.limit is not None and self.limit < 0:
            raise TaskError(f"{where}: limit must be >= 0")
        self.grader_kwargs = dict(self.grader_kwargs or {})
        self._check_grader_kwargs(where)
        if self.prompt_template is not None:
            _check_template(where, self.prompt_template)

    def _check_grader_kwargs(self, where: str) -> None:
        for key, value in self.grader_kwargs.items():
            if key not in GRADER_KWARGS:
                raise TaskError(f"{where}: unknown grader_kwargs key {key!r}; allowed: {sorted(GRADER_KWARGS)}")
            _check_type(where, f"grader_kwargs.{key}", value, GRADER_KWARGS[key])
        timeout = self.grader_kwargs.get("timeout_s")
        if timeout is not None and not 0 < timeout <= 3600:
            raise TaskError(f"{where}: grader_kwargs.timeout_s must be in (0, 3600] seconds, got {timeout}")
        tags = self.grader_kwargs.get("reasoning_tags")
        if tags is not None:
            if not all(
                isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(t, str) and t for t in pair)
                for pair in tags
            ):
                raise TaskError(
                    f"{where}: grader_kwargs.reasoning_tags must be a list of [open, close] tag pairs, "
                    "e.g. [['<reason>', '</reason>']]"
                )
            self.grader_kwargs["reasoning_tags"] = [tuple(pair) for pair in tags]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> TaskSpec:
        """Build a spec from a parsed YAML mapping, with a clear error for unknown keys."""
        data = dict(data)
        if source is not None:
            data.setdefault("source", source)
        if "name" not in data:
            if source is None:
                raise TaskError("task spec needs a 'name'")
            data["name"] = Path(source).stem
        return _build(cls, data, f"task file {source}" if source else f"task {data['name']!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for logging / YAML)."""
        return dataclasses.asdict(self)


def _check_template(where: str, template: str) -> None:
    allowed = {"problem", "choices", "instruction"}
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise TaskError(f"{where}: prompt_template is not a valid format string ({err})") from None
    unknown = sorted(n for n in names if n not in allowed)
    if unknown:
        raise TaskError(f"{where}: prompt_template names unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(data) - names)
    if unknown:
        raise TaskError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    try:
        return cls(**data)
    except TaskError as err:
        message = str(err)
        raise TaskError(message if message.startswith(where) else f"{where}: {message}") from None
    except (TypeError, ValueError) as err:
        raise TaskError(f"{where}: {err}") from None


@dataclass
class EvalItem:
    """One benchmark question.

    ``prompt`` is the question text (without options or instruction); ``gold`` the gold answer (for
    multiple choice: the letter in the ORIGINAL option order, ``gold_index`` its index); ``choices``
    the option texts in their original order (None for open questions); ``source`` where it came from.
    """

    id: str
    prompt: str
    gold: str
    choices: list[str] | None = None
    gold_index: int | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChoiceOrder:
    """The option order shown for one (item, sample): ``order[j]`` is the original index of the option
    displayed with letter ``MC_LETTERS[j]``; ``seed`` the shuffle seed; ``gold_letter`` the gold."""

    seed: int
    order: tuple[int, ...]
    gold_letter: str

    def original_index(self, letter: str | None) -> int | None:
        """Original option index of a displayed letter (None if not a valid letter here)."""
        if letter is None or letter not in MC_LETTERS[: len(self.order)]:
            return None
        return self.order[MC_LETTERS.index(letter)]
