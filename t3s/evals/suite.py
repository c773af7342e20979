""":class:`EvalSuite`: what an evaluation measures and how it samples, shared by the training callback
(:class:`~t3s.evals.callbacks.BenchmarkCallback`) and ``t3s evaluate`` (:mod:`t3s.evals.offline`).

A suite builds its tasks (the benchmarks, after the training problems when ``train_accuracy`` is on),
gives each task's sampling (the task's own, with the suite's overrides on top) and names the training-accuracy
curve θ_b is read from. Where and when evaluations run (every N steps, inline or in a child process) is the
callback's own business (:class:`~t3s.evals.callbacks.EvalSchedule`).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from t3s.evals.backends import DEFAULT_BACKEND, check_backend_name
from t3s.evals.backends.base import ServeOptions
from t3s.evals.backends.sampling import SamplingParams
from t3s.evals.grading import GRADERS
from t3s.evals.tasks import EvalItem, EvalTask, TaskSpec, load_task

__all__ = ["TRAIN_TASK", "EvalSuite", "training_task"]

#: The name of the training-accuracy task (``bench/train/avg@k``, the θ_b signal).
TRAIN_TASK = "train"


@dataclass
class EvalSuite:
    """The benchmark settings of a run: which tasks, how many items, how to sample, which backend.

    Attributes:
        tasks: benchmark suites, by name (``benchmarks/tasks/<name>.yaml``), YAML path, or an inline task
            definition (a mapping with the keys of a task YAML).
        tasks_dir: extra directory searched for task YAMLs.
        task_limit: evaluate at most this many items of each benchmark (``None``: all).
        train_accuracy: also evaluate on the training problems themselves (the θ_b signal).
        train_grader: grader for the training problems (``exact``, ``aime``, ``math``, ``mc``).
        train_limit: evaluate this many training problems (a fixed seeded subset); ``None``: all.
        train_instruction: text appended to each training prompt (default: none, as in training).
        seed: seed of the training-problem subset.
        sampling: overrides of the sampling parameters for every task (e.g. ``{n: 1, temperature: 0}``).
        batch_size: prompts per generation batch.
        backend: ``hf`` (the student family's own torch sampler: ``model.generate`` for an ``ARStudent``, the
            diffusion sampler for a ``DiffusionStudent``) or ``vllm`` (engines in a separate vLLM environment,
            through ``t3s evaluate``; README, "Evaluating with vLLM"); :data:`t3s.evals.backends.BACKENDS`.
        vllm: ``vllm.LLM`` options of the vLLM backend (``tensor_parallel_size``, ``gpu_memory_utilization``,
            ``max_model_len``, ``dtype``, ``enable_prefix_caching``, …).
        python: the vLLM environment's interpreter (default: the training one).
    """

    tasks: list[str | dict[str, Any]] | None = None
    tasks_dir: str | None = None
    task_limit: int | None = None
    train_accuracy: bool = True
    train_grader: str = "exact"
    train_limit: int | None = 256
    train_instruction: str = ""
    seed: int = 0
    sampling: dict[str, Any] | None = None
    batch_size: int = 16
    backend: str = DEFAULT_BACKEND
    vllm: dict[str, Any] | None = None
    python: str | None = None

    def __post_init__(self) -> None:
        self.tasks = list(self.tasks or [])
        self.sampling = dict(self.sampling or {})
        self.vllm = dict(self.vllm or {})
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("task_limit", "train_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null (all), got {value}")
        if self.train_grader not in GRADERS:
            raise ValueError(f"train_grader must be one of {', '.join(GRADERS)}, got {self.train_grader!r}")
        unknown = sorted(set(self.sampling) - {f.name for f in dataclasses.fields(SamplingParams)})
        if unknown:
            raise ValueError(f"sampling: unknown parameter(s) {', '.join(unknown)}")
        check_backend_name(self.backend)
        if self.vllm:
            from t3s.evals.backends import get_backend

            get_backend("vllm").check(self.serve_options())

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The suite's setting names (a callback's flat keys that belong to the suite)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> EvalSuite:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain settings (YAML / JSON)."""
        return dataclasses.asdict(self)

    def serve_options(self, trust_remote_code: bool = False, run_args: dict[str, Any] | None = None) -> ServeOptions:
        """How a backend serves saved checkpoints for this suite (``trust_remote_code`` from the command line only)."""
        return ServeOptions(batch_size=self.batch_size, trust_remote_code=trust_remote_code,
                            run_args=dict(run_args or {}), python=self.python, engine=dict(self.vllm or {}))

    @property
    def train_tag(self) -> str:
        """The tag of the training-accuracy curve (``bench/train/avg@<n>``, n = samples per problem)."""
        n = int((self.sampling or {}).get("n", SamplingParams().n))
        return f"bench/{TRAIN_TASK}/avg@{n}"

    def sampling_for(self, task: EvalTask) -> SamplingParams:
        """The task's own sampling with this suite's ``sampling`` overrides on top."""
        return SamplingParams(**{**task.spec.sampling.to_dict(), **(self.sampling or {})})

    def build_tasks(self, datamodule: Any) -> list[EvalTask]:
        """The benchmark tasks (``task_limit`` applied), after the training problems if ``train_accuracy``."""
        tasks = [self._load(task) for task in self.tasks or []]
        if self.task_limit is not None:
            for task in tasks:
                task.spec.limit = self.task_limit
        if self.train_accuracy:
            if datamodule is None or not hasattr(datamodule, "problems"):
                raise ValueError("train_accuracy needs a data module with problems() (TeacherTraceDataModule)")
            tasks.insert(0, training_task(datamodule.problems(), self.train_grader, limit=self.train_limit,
                                          seed=self.seed, instruction=self.train_instruction))
        return tasks

    def _load(self, task: str | dict[str, Any]) -> EvalTask:
        if isinstance(task, dict):
            return EvalTask(TaskSpec.from_dict(task))
        return load_task(task, tasks_dir=self.tasks_dir)


def training_task(problems: list[Any], grader: str, *, limit: int | None = None, seed: int = 0,
                  instruction: str = "") -> EvalTask:
    """The training problems as an evaluation task ("training accuracy", the signal that locates θ_b).

    Problems without a gold answer are left out; ``limit`` keeps a fixed seeded subset.
    """
    problems = [p for p in problems if p.gold is not None]
    if not problems:
        raise ValueError("train_accuracy is on but no training problem has a gold answer (data.layout.fields.answer)")
    if limit is not None and len(problems) > limit:
        problems = random.Random(seed).sample(problems, limit)
    system = next((m["content"] for m in problems[0].messages if m["role"] == "system"), None)
    items = [
        EvalItem(id=p.id, prompt=[m for m in p.messages if m["role"] == "user"][-1]["content"], gold=p.gold,
                 source=p.source)
        for p in problems
    ]
    return EvalTask.from_items(TRAIN_TASK, items, grader=grader, instruction=instruction, system_prompt=system,
                               sampling=SamplingParams())

