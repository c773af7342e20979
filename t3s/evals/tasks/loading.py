"""Finding and loading benchmark tasks by name or path.

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

The schema lives in :mod:`t3s.evals.tasks.spec`, row reading in :mod:`t3s.evals.tasks.rows`, the loaded task in
:mod:`t3s.evals.tasks.eval_task`; this module only finds task files (:func:`task_search_dirs`) and loads them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from t3s.evals.backends.sampling import SamplingParams
from t3s.evals.tasks.eval_task import EvalTask
from t3s.evals.tasks.spec import TaskError, TaskSpec
from t3s.resources import packaged_tasks_dir

__all__ = ["TASKS_DIR_ENV", "find_task_file", "load_task", "load_task_spec", "task_search_dirs"]

TASKS_DIR_ENV = "T3S_TASKS_DIR"


def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping a task file holds; unreadable text, bad YAML or another shape is one :class:`TaskError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TaskError(f"{path}: not valid UTF-8 ({err.reason})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise TaskError(f"{where}: invalid YAML ({problem})") from None
    except RecursionError:
        raise TaskError(f"{path}: YAML nested too deeply to read") from None
    if data is None:
        raise TaskError(f"{path}: the task file is empty")
    if not isinstance(data, dict):
        raise TaskError(f"{path}: a task file must hold a mapping, got {type(data).__name__}")
    return data


def task_search_dirs(tasks_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where bare task names are looked up, in order: ``tasks_dir``, ``$T3S_TASKS_DIR``, the shipped tasks."""
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
    dirs = task_search_dirs(tasks_dir)
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
    data = _read_yaml(path)
    for key, value in overrides.items():
        if key in ("sampling", "fields", "grader_kwargs") and isinstance(value, Mapping):
            base = dict(data[key]) if isinstance(data.get(key), Mapping) else {}
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
