"""``t3s evaluate``: evaluate a run's checkpoints outside the training process.

Given a phase run directory (``<run>/hf/step_<N>`` folders plus the ``config.yaml`` Lightning saved), every
checkpoint that has no result yet is evaluated on the run's own ``BenchmarkCallback`` tasks — training
accuracy included, rebuilt from the run's data section — by ``devices`` worker processes, one per device,
each holding one model at a time and data-parallel over the task items. Outputs, all inside the run::

    generations/step_<N>/<task>.jsonl   every (item, sample) with its verdict
    eval/results.jsonl                  one line per (step, task): the metrics (the resume ledger)
    events.out.tfevents.*               bench/<task>/<metric> at step N, beside the training loss

A killed evaluation restarts where it stopped: (step, task) pairs already in ``results.jsonl`` are skipped.
Any HF folder works too (an RRT output, a hub model): then ``tasks`` must be given and outputs go to ``output``.

Trust: a run directory may come from anyone, so its ``config.yaml`` only says *what* to evaluate (tasks,
sampling, data). What would run code of its choosing is taken from the command line alone: the model's own
code (``trust_remote_code``, off unless ``--trust_remote_code true``) and the vLLM interpreter (``--python``);
``vllm.LLM`` options are limited to :data:`~t3s.evals.backends.vllm.ENGINE_OPTIONS`.

Backends (:mod:`t3s.evals.backends`): the checkpoints' student family is read from the run (its
``model.class_path``) or the folder (:func:`t3s.students.families.saved_family`), and the suite's ``backend``
resolved for it: ``hf`` is the family's own torch sampler (``model.generate``, or the diffusion sampler; one
process per device, joined by gloo), ``vllm`` engines in the vLLM environment. The backend decides the worker
processes and serves each folder; prompts, grading, the ledger and TensorBoard are the same code for all.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from t3s.errors import T3SError
from t3s.evals.backends import resolve_backend
from t3s.evals.backends.base import BackendError, Generator, Serve
from t3s.evals.callback_settings import grouped
from t3s.evals.results import RESULTS_FILE, read_results
from t3s.evals.runner import evaluate
from t3s.evals.suite import EvalSuite

log = logging.getLogger(__name__)

class EvaluationError(T3SError, ValueError):
    """The folder cannot be evaluated (no checkpoints, no tasks, no saved config)."""


@dataclass
class EvaluationPlan:
    """What one ``t3s evaluate`` call does: which checkpoints, which benchmark settings, where outputs go.

    Attributes:
        output: the run directory (or ``output``) that receives generations, results and TensorBoard scalars.
        checkpoints: ``(step, HF folder)`` to evaluate, in step order.
        suite: the benchmark settings (tasks, sampling, training accuracy, backend): the run's callback's.
        data: the run's ``data`` config section (for training accuracy), or None.
        done: ``(step, task)`` pairs already evaluated.
        model: the run's ``model`` config section (which student family, its sampler), or None.
        trust_remote_code: run the checkpoints' own model code (only ever set from the command line).
    """

    output: Path
    checkpoints: list[tuple[int, Path]]
    suite: EvalSuite
    data: dict[str, Any] | None
    done: set[tuple[int, str]] = field(default_factory=set)
    model: dict[str, Any] | None = None
    trust_remote_code: bool = False

    @property
    def backend(self) -> str:
        return self.suite.backend

    def family(self, folder: Path) -> type:
        """The student family of a checkpoint folder (the run's ``model.class_path``, else the folder's config)."""
        from t3s.students.families import saved_family

        return saved_family((self.model or {}).get("class_path") if self.model is not None else None, folder)

    def serve_options(self) -> Any:
        """How the backend serves this plan's folders (the run's sampler settings, the command line's trust)."""
        return self.suite.serve_options(self.trust_remote_code, (self.model or {}).get("init_args") or {})


def run_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``hf/step_<N>`` of a run, by step."""
    found = []
    for folder in (run_dir / "hf").glob("step_*"):
        step = folder.name.removeprefix("step_")
        if step.isdigit() and (folder / "config.json").is_file():
            found.append((int(step), folder))
    return sorted(found)


def saved_config(run_dir: Path) -> dict[str, Any]:
    """The ``config.yaml`` Lightning saved in a run directory (``${oc.env:VAR}`` resolved from this environment)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise EvaluationError(f"{run_dir}: no config.yaml (a run directory written by `t3s fit`); "
                              "give --tasks to evaluate a plain HF folder")
    from t3s.runtime.env_refs import resolve_env_references

    return resolve_env_references(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def benchmark_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The init args of the config's ``BenchmarkCallback`` as written (empty when it has none)."""
    for callback in (config.get("trainer") or {}).get("callbacks") or []:
        if isinstance(callback, dict) and str(callback.get("class_path", "")).endswith("BenchmarkCallback"):
            return dict(callback.get("init_args") or {})
    return {}


def suite_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The :class:`EvalSuite` fields a run's config gives its ``BenchmarkCallback`` (grouped or flat)."""
    return grouped(benchmark_settings(config))["suite"]


def plan_evaluation(
    target: str | Path,
    *,
    tasks: list[str] | None = None,
    sampling: dict[str, Any] | None = None,
    steps: list[int] | None = None,
    train_accuracy: bool | None = None,
    batch_size: int | None = None,
    output: str | Path | None = None,
    backend: str | None = None,
    python: str | None = None,
    vllm: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> EvaluationPlan:
    """Work out the checkpoints, settings and outputs of an evaluation of ``target`` (a run dir or an HF folder).

    ``backend`` and ``vllm`` (engine options) override the run's callback settings of those names. The
    interpreter (``python``) and ``trust_remote_code`` come from the arguments only, never from the run's
    ``config.yaml`` (see the module docstring): a run whose config names an interpreter for the vLLM backend is
    refused until ``python`` is given.
    """
    target = Path(target)
    if not target.is_dir():
        raise EvaluationError(f"{target}: no such directory")
    if (target / "config.json").is_file() and not (target / "hf").is_dir():  # a plain HF folder
        if not tasks:
            raise EvaluationError(f"{target} is an HF folder, not a run: name the benchmarks with --tasks")
        bench: dict[str, Any] = {"tasks": list(tasks), "train_accuracy": False}
        checkpoints, data, model = [(0, target)], None, None
        out = Path(output) if output else target
    else:
        config = saved_config(target)
        bench = suite_settings(config)
        run_python = bench.pop("python", None)
        if run_python and python is None and (backend or bench.get("backend")) == "vllm":
            raise EvaluationError(f"{target}/config.yaml names a vLLM interpreter ({run_python}); a run's config "
                                  f"does not choose what runs here: give --python {run_python} to use it")
        if tasks is not None:
            bench["tasks"] = list(tasks)
        checkpoints = run_checkpoints(target)
        if not checkpoints:
            raise EvaluationError(f"{target}: no hf/step_<N> checkpoints to evaluate")
        data, model = config.get("data"), config.get("model")
        out = Path(output) if output else target
    if train_accuracy is not None:
        bench["train_accuracy"] = train_accuracy
    if sampling:
        bench["sampling"] = {**(bench.get("sampling") or {}), **sampling}
    if batch_size is not None:
        bench["batch_size"] = batch_size
    if backend is not None:
        bench["backend"] = backend
    if python is not None:
        bench["python"] = python
    if vllm:
        bench["vllm"] = {**(bench.get("vllm") or {}), **vllm}
    if not bench.get("tasks") and not bench.get("train_accuracy", True):
        raise EvaluationError(f"{target}: nothing to evaluate (no tasks and no training accuracy)")
    try:
        suite = EvalSuite(**bench)
    except (TypeError, ValueError) as err:
        raise EvaluationError(f"{target}: {err}") from None
    if steps is not None:
        wanted = set(steps)
        checkpoints = [c for c in checkpoints if c[0] in wanted]
    done = {(int(r["step"]), str(r["task"])) for r in read_results(out)}
    if not trust_remote_code:
        from t3s.students.diffusion_hf import needs_remote_code

        custom = next((folder for _, folder in checkpoints if needs_remote_code(str(folder))), None)
        if custom is not None:
            raise EvaluationError(f"{custom} needs its own model code (config.json auto_map): give "
                                  "--trust_remote_code true if you trust where it came from")
    return EvaluationPlan(out, checkpoints, suite, data, done, model, trust_remote_code)


def evaluate_checkpoints(plan: EvaluationPlan, devices: int = 1) -> list[dict[str, Any]]:
    """Evaluate every checkpoint of ``plan`` that has a task left, on ``devices`` worker processes.

    Returns the new ``results.jsonl`` rows. The backend (:func:`~t3s.evals.backends.resolve_backend`, for the
    checkpoints' student family) lays out the workers: torch backends evaluate in this process (one worker) or
    spawn several joined through a gloo process group (metrics are summed across workers, generations gathered
    on worker 0); the vLLM backend renders, grades and writes here, its engines only generate.
    """
    if devices < 1:
        raise EvaluationError(f"--devices must be >= 1, got {devices}")
    before = len(read_results(plan.output))
    if plan.checkpoints:
        try:
            backend = resolve_backend(plan.suite.backend, plan.family(plan.checkpoints[0][1]).generation_backend)
            options = plan.serve_options()
            backend.check(options)
            backend.run(_evaluate_plan, plan, devices, options)
        except BackendError as err:
            raise EvaluationError(str(err)) from None
    return read_results(plan.output)[before:]


def _evaluate_plan(rank: int, world: int, plan: EvaluationPlan, serve: Serve) -> None:
    """Every pending checkpoint on this worker: ``serve(folder, tokenizer)`` gives its generator."""
    from transformers import AutoTokenizer

    from t3s.progress import progress as progress_bar

    suite = plan.suite
    datamodule = _datamodule(plan.data) if suite.train_accuracy else None
    tasks = suite.build_tasks(datamodule)
    pending = [(step, folder) for step, folder in plan.checkpoints
               if any((step, task.name) not in plan.done for task in tasks)]
    writer = _summary_writer(plan.output) if rank == 0 and pending else None
    progress = progress_bar(total=len(pending) * len(tasks), desc="evaluate", unit="task", disable=rank != 0)
    generator: Generator | None = None
    for step, folder in pending:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=plan.trust_remote_code)
        generator = None  # the previous checkpoint's model is freed before the next one loads
        generator = serve(folder, tokenizer)
        for task in tasks:
            if (step, task.name) in plan.done:
                progress.update()
                continue
            result = evaluate(task, generator, tokenizer, suite.sampling_for(task), items=task.items()[rank::world])
            records = _gather(result.records, world)
            if rank == 0:
                _write_outputs(plan.output, step, folder, task.name, result.metrics, records, writer)
            progress.set_postfix(step=step, task=task.name, acc=f"{_accuracy(result.metrics):.3f}")
            progress.update()
    progress.close()
    if writer is not None:
        writer.close()


def _datamodule(section: dict[str, Any] | None) -> Any:
    """The run's training data module (training accuracy evaluates on its problems)."""
    from t3s.data.from_config import datamodule_from_config

    if not section:
        raise EvaluationError("training accuracy needs the run's data section (config.yaml has none)")
    return datamodule_from_config(section, origin="the run's config.yaml")


def _gather(records: list[dict[str, Any]], world: int) -> list[dict[str, Any]]:
    if world == 1:
        return records
    import torch.distributed as dist

    shards: list[Any] = [None] * world
    dist.all_gather_object(shards, records)
    return [r for shard in shards for r in shard]


def _summary_writer(output: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(output), filename_suffix=".t3s-evaluate")


def _write_outputs(output: Path, step: int, folder: Path, task: str, metrics: dict[str, float],
                   records: list[dict[str, Any]], writer: Any) -> None:
    """Generations first, then the TensorBoard scalars, then the ledger line that marks (step, task) done."""
    generations = output / "generations" / f"step_{step}"
    generations.mkdir(parents=True, exist_ok=True)
    tmp = generations / f".{task}.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps({"step": step, **record}, ensure_ascii=False) + "\n")
    tmp.replace(generations / f"{task}.jsonl")
    for name, value in metrics.items():
        writer.add_scalar(f"bench/{task}/{name}", value, global_step=step)
    writer.flush()
    ledger = output / RESULTS_FILE
    ledger.parent.mkdir(parents=True, exist_ok=True)
    torn = ledger.is_file() and ledger.stat().st_size > 0 and not ledger.read_bytes().endswith(b"\n")
    with open(ledger, "a", encoding="utf-8") as f:
        if torn:  # a line cut by a kill stays unreadable on its own line
            f.write("\n")
        f.write(json.dumps({"step": step, "task": task, "checkpoint": str(folder), "metrics": metrics}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _accuracy(metrics: dict[str, float]) -> float:
    return next((v for k, v in metrics.items() if k.startswith("avg@")), float("nan"))
