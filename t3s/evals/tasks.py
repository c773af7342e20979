"""Benchmark task definitions: YAML specs, item loading, choice shuffling and prompt rendering.

A task YAML (``benchmarks/tasks/<name>.yaml``) names a dataset (a local ``.jsonl``/``.json``/``.csv``/
``.parquet`` file or a Hugging Face dataset id), maps its columns to items, picks a grader and sets the
prompt and sampling defaults. Example::

    name: math500
    dataset: HuggingFaceH4/MATH-500
    split: test
    fields: {id: unique_id, problem: problem, answer: answer}
    grader: math
    sampling: {n: 4, temperature: 0.6, top_p: 0.95, max_new_tokens: 32768}

Multiple-choice tasks give the options either as one list column (``fields.choices``) or as one
column per option (``fields.choice_columns``), and say how the gold answer is written
(``fields.answer_type``: ``letter``, ``index``, ``text`` or ``auto``). Options are shuffled per item
AND per sample with a seed derived (by a stable hash) from the task seed, the item id and the sample
index, so the correct letter is uniformly distributed and every order is reproducible.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from t3s.evals.generation import SamplingParams
from t3s.evals.graders import GRADERS, MC_LETTERS, Verdict, mc_letter
from t3s.resources import packaged_tasks_dir

__all__ = [
    "DEFAULT_INSTRUCTION",
    "ChoiceOrder",
    "EvalItem",
    "EvalTask",
    "FieldMap",
    "TaskSpec",
    "find_task_file",
    "load_task",
    "load_task_spec",
    "prompt_opens_think",
    "stable_seed",
]

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
MAX_CHOICES = len(MC_LETTERS)
TASKS_DIR_ENV = "T3S_TASKS_DIR"


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` via SHA-256 (stable across processes, unlike ``hash()``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def prompt_opens_think(prompt_text: str) -> bool:
    """True when a rendered prompt ends inside an open ``<think>`` block (the template opened it)."""
    return prompt_text.rfind("<think>") > prompt_text.rfind("</think>")


@dataclass
class FieldMap:
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
        if self.answer_type not in ("auto", "letter", "index", "text"):
            raise ValueError(f"fields.answer_type must be auto|letter|index|text, got {self.answer_type!r}")
        if self.choices is not None and self.choice_columns:
            raise ValueError("give either fields.choices or fields.choice_columns, not both")
        if self.choice_columns is not None:
            self.choice_columns = list(self.choice_columns)
            if not 2 <= len(self.choice_columns) <= MAX_CHOICES:
                raise ValueError(f"fields.choice_columns needs 2..{MAX_CHOICES} columns")

    @property
    def multiple_choice(self) -> bool:
        """True when the task has options."""
        return self.choices is not None or bool(self.choice_columns)


@dataclass
class TaskSpec:
    """Declarative description of an evaluation task (see the module docstring for the YAML form).

    ``prompt_template`` (optional) is formatted with ``problem``, ``choices`` (the lettered option
    block, empty for open questions) and ``instruction``; by default these are joined by blank lines.
    ``enable_thinking`` is passed to the chat template (None: not passed). ``grader_kwargs`` go to the
    grader (e.g. ``timeout_s`` for ``math``).
    """

    name: str
    dataset: str | None = None
    split: str = "test"
    subset: str | None = None
    fields: FieldMap = field(default_factory=FieldMap)
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
        if isinstance(self.fields, Mapping):
            self.fields = _build(FieldMap, self.fields, f"task {self.name!r} fields")
        if isinstance(self.sampling, Mapping):
            self.sampling = _build(SamplingParams, self.sampling, f"task {self.name!r} sampling")
        if self.grader not in GRADERS:
            raise ValueError(
                f"task {self.name!r}: unknown grader {self.grader!r}; choose from {sorted(GRADERS)}"
            )
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"task {self.name!r}: limit must be >= 0")
        self.grader_kwargs = dict(self.grader_kwargs or {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> TaskSpec:
        """Build a spec from a parsed YAML mapping, with a clear error for unknown keys."""
        data = dict(data)
        if source is not None:
            data.setdefault("source", source)
        if "name" not in data:
            if source is None:
                raise ValueError("task spec needs a 'name'")
            data["name"] = Path(source).stem
        return _build(cls, data, f"task file {source}" if source else f"task {data['name']!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for logging / YAML)."""
        return dataclasses.asdict(self)


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as err:
        raise ValueError(f"{where}: {err}") from err


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


# ----------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------


def _default_task_dirs(tasks_dir: str | os.PathLike[str] | None) -> list[Path]:
    dirs = []
    if tasks_dir is not None:
        dirs.append(Path(tasks_dir))
    if os.environ.get(TASKS_DIR_ENV):
        dirs.append(Path(os.environ[TASKS_DIR_ENV]))
    dirs.append(packaged_tasks_dir())
    return dirs


def find_task_file(
    name_or_path: str | os.PathLike[str], tasks_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Resolve a task name (``benchmarks/tasks/<name>.yaml``) or a YAML path to a file.

    Bare names are looked up in ``tasks_dir``, then ``$T3S_TASKS_DIR``, then the tasks shipped in the
    package (``t3s/tasks``, which a checkout also shows as ``benchmarks/tasks``).
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or os.sep in text or "/" in text:
        if not path.is_file():
            raise FileNotFoundError(f"task file not found: {path}")
        return path
    dirs = _default_task_dirs(tasks_dir)
    for d in dirs:
        for suffix in (".yaml", ".yml"):
            candidate = d / f"{text}{suffix}"
            if candidate.is_file():
                return candidate
    available = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.y*ml")})
    raise FileNotFoundError(
        f"unknown task {text!r}: no {text}.yaml in {[str(d) for d in dirs]}; available: {available}"
    )


def load_task_spec(
    name_or_path: str | os.PathLike[str], tasks_dir: str | os.PathLike[str] | None = None, **overrides: Any
) -> TaskSpec:
    """Load a :class:`TaskSpec` from a task name or YAML path; ``overrides`` replace top-level keys
    (``sampling``/``fields``/``grader_kwargs`` given as dicts are merged into the YAML values)."""
    path = find_task_file(name_or_path, tasks_dir)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a task file must hold a mapping, got {type(data).__name__}")
    for key, value in overrides.items():
        if key in ("sampling", "fields", "grader_kwargs") and isinstance(value, Mapping):
            base = dict(data.get(key) or {})
            base.update(value)
            data[key] = base
        elif isinstance(value, SamplingParams) and key == "sampling":
            data[key] = dataclasses.asdict(value)
        else:
            data[key] = value
    return TaskSpec.from_dict(data, source=str(path))


def load_task(
    name_or_path: str | os.PathLike[str], tasks_dir: str | os.PathLike[str] | None = None, **overrides: Any
) -> EvalTask:
    """Load a task by name (``benchmarks/tasks/<name>.yaml``) or YAML path (see :func:`load_task_spec`)."""
    return EvalTask(load_task_spec(name_or_path, tasks_dir, **overrides))


def _resolve_local(dataset: str, source: str | None) -> Path | None:
    path = Path(dataset).expanduser()
    looks_local = path.suffix in LOCAL_SUFFIXES or path.is_absolute() or dataset.startswith(".")
    candidates = [path]
    if source is not None and not path.is_absolute():
        candidates.append(Path(source).parent / path)
    for c in candidates:
        if c.is_file():
            return c
    if looks_local:
        tried = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(f"dataset file not found: {dataset} (tried {tried})")
    return None


def _iter_local_rows(path: Path) -> Iterable[tuple[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{lineno}", json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: invalid JSON: {err}") from err
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON: {err}") from err
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of records")
        for i, row in enumerate(data):
            yield f"{path}[{i}]", row
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                yield f"{path}:{reader.line_num}", row
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path} row {i}", row
    else:
        raise ValueError(f"{path}: unsupported dataset file type {suffix!r} (use one of {LOCAL_SUFFIXES})")


def _iter_hf_rows(spec: TaskSpec) -> Iterable[tuple[str, Any]]:
    import datasets

    assert spec.dataset is not None
    try:
        ds = datasets.load_dataset(spec.dataset, spec.subset, split=spec.split)
    except Exception as err:
        raise RuntimeError(
            f"task {spec.name!r}: cannot load Hugging Face dataset {spec.dataset!r} "
            f"(subset={spec.subset!r}, split={spec.split!r}): {err}"
        ) from err
    where = f"{spec.dataset}[{spec.subset + '/' if spec.subset else ''}{spec.split}]"
    for i, row in enumerate(ds):
        yield f"{where} row {i}", row


def _gold_to_str(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _resolve_mc_gold(answer: Any, choices: Sequence[str], answer_type: str, where: str) -> int:
    """Original index of the correct option."""
    kind = answer_type
    if kind == "auto":
        if isinstance(answer, int) and not isinstance(answer, bool):
            kind = "index"
        elif (
            isinstance(answer, str) and mc_letter(answer) is not None and len(answer.strip().strip("()")) == 1
        ):
            kind = "letter"
        else:
            kind = "text"
    if kind == "index":
        try:
            idx = int(answer)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: answer {answer!r} is not an option index") from None
    elif kind == "letter":
        letter = mc_letter(str(answer))
        if letter is None:
            raise ValueError(f"{where}: answer {answer!r} is not an option letter A..J")
        idx = MC_LETTERS.index(letter)
    else:
        target = str(answer).strip()
        matches = [i for i, c in enumerate(choices) if c.strip() == target]
        if not matches:
            raise ValueError(f"{where}: answer text {target[:80]!r} matches none of the options")
        idx = matches[0]
    if not 0 <= idx < len(choices):
        raise ValueError(f"{where}: answer {answer!r} is out of range for {len(choices)} options")
    return idx


def _check_choices(choices: Any, where: str) -> list[str]:
    if not isinstance(choices, (list, tuple)) or not all(isinstance(c, (str, int, float)) for c in choices):
        raise ValueError(f"{where}: options must be a list of strings, got {type(choices).__name__}")
    out = [str(c).strip() for c in choices]
    if not 2 <= len(out) <= MAX_CHOICES:
        raise ValueError(f"{where}: need 2..{MAX_CHOICES} options, got {len(out)}")
    return out


def make_item(
    fields: FieldMap, row: Mapping[str, Any], where: str, default_id: str, multiple_choice: bool | None = None
) -> EvalItem:
    """Turn one dataset row into an :class:`EvalItem` (errors name ``where``, e.g. ``file:line``)."""
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a record (mapping), got {type(row).__name__}")

    def get(col: str, what: str) -> Any:
        if col not in row or row[col] is None:
            raise ValueError(f"{where}: missing field {col!r} ({what}); available: {sorted(row)}")
        return row[col]

    item_id = str(get(fields.id, "id")) if fields.id else default_id
    prompt = get(fields.problem, "problem")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{where}: field {fields.problem!r} (problem) must be a non-empty string")
    answer = get(fields.answer, "answer")
    mc = fields.multiple_choice if multiple_choice is None else multiple_choice
    if not mc:
        gold = _gold_to_str(answer)
        if not gold:
            raise ValueError(f"{where}: field {fields.answer!r} (answer) is empty")
        return EvalItem(id=item_id, prompt=prompt.strip(), gold=gold, source=where)
    if fields.choice_columns:
        choices = _check_choices([get(c, "option") for c in fields.choice_columns], where)
    else:
        assert fields.choices is not None
        choices = _check_choices(get(fields.choices, "options"), where)
    idx = _resolve_mc_gold(answer, choices, fields.answer_type, where)
    return EvalItem(
        id=item_id, prompt=prompt.strip(), gold=MC_LETTERS[idx], choices=choices, gold_index=idx, source=where
    )


# ----------------------------------------------------------------------------------------------------
# Task
# ----------------------------------------------------------------------------------------------------


class EvalTask:
    """A loaded task: items, per-sample option orders, prompt rendering and grading."""

    def __init__(self, spec: TaskSpec, items: Sequence[EvalItem] | None = None) -> None:
        self.spec = spec
        self._items: list[EvalItem] | None = list(items) if items is not None else None
        if self._items is not None:
            self._check_items(self._items)

    @property
    def name(self) -> str:
        """Task name."""
        return self.spec.name

    @property
    def multiple_choice(self) -> bool:
        """True when items carry options (graded by letter)."""
        if self.spec.fields.multiple_choice:
            return True
        return self._items is not None and any(it.choices for it in self._items)

    @classmethod
    def from_items(
        cls,
        name: str,
        items: Iterable[EvalItem | Mapping[str, Any]],
        grader: str = "math",
        **spec_kwargs: Any,
    ) -> EvalTask:
        """Build a task in code, e.g. "training accuracy" on the training problems themselves.

        ``items`` are :class:`EvalItem` or mappings with ``prompt`` (or ``problem``), ``gold`` (or
        ``answer``), optional ``id`` and ``choices`` (gold then a letter, an index or the option text).
        ``spec_kwargs`` are further :class:`TaskSpec` fields (sampling, instruction, ...).
        """
        spec = TaskSpec(name=name, grader=grader, **spec_kwargs)
        built: list[EvalItem] = []
        for i, it in enumerate(items):
            if isinstance(it, EvalItem):
                built.append(it)
                continue
            where = f"{name} item {i}"
            row = dict(it)
            fields = FieldMap(
                id="id" if row.get("id") is not None else None,
                problem="prompt" if "prompt" in row else "problem",
                answer="gold" if "gold" in row else "answer",
                choices="choices" if row.get("choices") is not None else None,
            )
            built.append(make_item(fields, row, where, default_id=f"{name}-{i}"))
        if spec.limit is not None:
            built = built[: spec.limit]
        return cls(spec, built)

    def items(self) -> list[EvalItem]:
        """The task's items (loaded once; ``limit`` applied)."""
        if self._items is None:
            self._items = self._load()
            self._check_items(self._items)
        return self._items

    def __len__(self) -> int:
        return len(self.items())

    def _load(self) -> list[EvalItem]:
        spec = self.spec
        if spec.dataset is None:
            raise ValueError(
                f"task {spec.name!r} has no dataset (build in-memory tasks with EvalTask.from_items)"
            )
        local = _resolve_local(spec.dataset, spec.source)
        rows = _iter_local_rows(local) if local is not None else _iter_hf_rows(spec)
        items = []
        for i, (where, row) in enumerate(rows):
            if spec.limit is not None and i >= spec.limit:
                break
            items.append(make_item(spec.fields, row, where, default_id=f"{spec.name}-{i}"))
        if not items:
            raise ValueError(f"task {spec.name!r}: dataset {spec.dataset!r} has no rows")
        return items

    def _check_items(self, items: Sequence[EvalItem]) -> None:
        seen: dict[str, str] = {}
        for it in items:
            if it.id in seen:
                raise ValueError(f"{it.source}: duplicate item id {it.id!r} (first at {seen[it.id]})")
            seen[it.id] = it.source

    # -- options ---------------------------------------------------------------------------------
    def choice_order(self, item: EvalItem, sample_index: int = 0) -> ChoiceOrder | None:
        """Option order for one (item, sample); None for open questions."""
        if not item.choices:
            return None
        assert item.gold_index is not None, f"{item.source}: multiple-choice item without gold_index"
        seed = stable_seed("t3s-choices", self.spec.seed, item.id, sample_index)
        order = list(range(len(item.choices)))
        if self.spec.shuffle_choices:
            random.Random(seed).shuffle(order)
        gold_letter = MC_LETTERS[order.index(item.gold_index)]
        return ChoiceOrder(seed=seed, order=tuple(order), gold_letter=gold_letter)

    # -- prompts ---------------------------------------------------------------------------------
    def user_message(self, item: EvalItem, sample_index: int = 0) -> tuple[str, str]:
        """The user turn for one (item, sample) and the gold answer for that sample."""
        order = self.choice_order(item, sample_index)
        if order is None:
            block, gold = "", item.gold
        else:
            assert item.choices is not None
            block = "\n".join(f"({MC_LETTERS[j]}) {item.choices[o]}" for j, o in enumerate(order.order))
            gold = order.gold_letter
        instruction = self.spec.instruction or ""
        if self.spec.prompt_template is not None:
            text = self.spec.prompt_template.format(
                problem=item.prompt, choices=block, instruction=instruction
            )
        else:
            text = "\n\n".join(part for part in (item.prompt, block, instruction) if part)
        return text, gold

    def messages(self, item: EvalItem, sample_index: int = 0) -> tuple[list[dict[str, str]], str]:
        """Chat messages (optional system turn + user turn) and the gold for this sample."""
        text, gold = self.user_message(item, sample_index)
        msgs = []
        if self.spec.system_prompt:
            msgs.append({"role": "system", "content": self.spec.system_prompt})
        msgs.append({"role": "user", "content": text})
        return msgs, gold

    def render_prompt_text(self, tokenizer: Any, item: EvalItem, sample_index: int = 0) -> tuple[str, str]:
        """The prompt string given to the model (chat template applied) and the gold for this sample."""
        msgs, gold = self.messages(item, sample_index)
        if not self.spec.use_chat_template:
            return "\n\n".join(m["content"] for m in msgs), gold
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                f"task {self.name!r}: the tokenizer has no chat template; set use_chat_template: false"
            )
        kwargs: dict[str, Any] = {}
        if self.spec.enable_thinking is not None:
            kwargs["enable_thinking"] = bool(self.spec.enable_thinking)
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **kwargs)
        return text, gold

    def render_prompt(self, tokenizer: Any, item: EvalItem, sample_index: int = 0) -> tuple[list[int], str]:
        """Token ids of the prompt for one (item, sample) and the gold answer for that sample."""
        text, gold = self.render_prompt_text(tokenizer, item, sample_index)
        return self.encode_prompt(tokenizer, text), gold

    def encode_prompt(self, tokenizer: Any, text: str) -> list[int]:
        """Tokenize a prompt from :meth:`render_prompt_text` (no extra special tokens after a chat
        template, which already holds them)."""
        return list(tokenizer(text, add_special_tokens=not self.spec.use_chat_template)["input_ids"])

    # -- grading ---------------------------------------------------------------------------------
    def grade(self, response: str, gold: str, **kw: Any) -> Verdict:
        """Grade one response against the gold of its sample with the task's grader."""
        return GRADERS[self.spec.grader](response, gold, **{**self.spec.grader_kwargs, **kw})
