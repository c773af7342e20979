"""Benchmark tasks: what a task YAML holds, how its rows are read, the loaded task, and finding tasks by name.

- :mod:`~t3s.evals.tasks.spec`: the schema (:class:`TaskSpec`, :class:`TaskFields`, :class:`EvalItem`,
  :class:`ChoiceOrder`), every value checked on construction (:class:`TaskError`).
- :mod:`~t3s.evals.tasks.rows`: a task's dataset rows (local file or Hugging Face id) turned into items.
- :mod:`~t3s.evals.tasks.eval_task`: :class:`EvalTask`, a loaded task (items, option orders, prompts, grading).
- :mod:`~t3s.evals.tasks.loading`: finding task files (``benchmarks/tasks/``, ``T3S_TASKS_DIR``) and loading them.

Tasks grade through :mod:`t3s.evals.grading` and name their sampling with
:class:`~t3s.evals.backends.sampling.SamplingParams`; nothing here loads torch.
"""

from __future__ import annotations

from t3s.evals.tasks.eval_task import EvalTask, prompt_opens_think
from t3s.evals.tasks.loading import TASKS_DIR_ENV, find_task_file, load_task, load_task_spec, task_search_dirs
from t3s.evals.tasks.spec import DEFAULT_INSTRUCTION, ChoiceOrder, EvalItem, TaskError, TaskFields, TaskSpec
from t3s.runtime.seeds import stable_seed

__all__ = [
    "DEFAULT_INSTRUCTION",
    "TASKS_DIR_ENV",
    "ChoiceOrder",
    "EvalItem",
    "EvalTask",
    "TaskError",
    "TaskFields",
    "TaskSpec",
    "find_task_file",
    "load_task",
    "load_task_spec",
    "prompt_opens_think",
    "stable_seed",
    "task_search_dirs",
]
