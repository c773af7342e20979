"""``BenchmarkCallback``: the bottleneck-and-recovery curve, evaluated during training.

Evaluates θ_0 before the first step and then every ``every_n_steps`` optimizer steps (each evaluated
step also gets an HF folder, so any of them can become θ_b), logs ``bench/<task>/<metric>`` through the
trainer's loggers (any Lightning logger) together with a loss-and-accuracy figure (TensorBoard's
``add_figure`` or a logger's ``log_image``; always also ``<run>/figures/loss_and_accuracy.png``) and sample
generations (TensorBoard's text panel or a logger's ``log_text``), and writes every generation as JSONL
under ``<run>/generations/step_<N>/``. The training-accuracy task (``train``)
feeds a :class:`~t3s.evals.bottleneck.BottleneckDetector`.
"""

from __future__ import annotations

import json
import logging
import random
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import lightning as L

from t3s.data.rows import json_line
from t3s.evals.bottleneck import BottleneckDetector, scored_bottleneck
from t3s.evals.child_evaluator import ChildEvaluator
from t3s.evals.diffusion_generation import DiffusionGenerator
from t3s.evals.generation import HFGenerator, SamplingParams
from t3s.evals.results import read_results
from t3s.evals.runner import evaluate
from t3s.evals.tasks import EvalItem, EvalTask, TaskSpec, load_task
from t3s.students.diffusion import DiffusionStudent

log = logging.getLogger(__name__)

TRAIN_TASK = "train"


class BenchmarkCallback(L.Callback):
    """Benchmark and training-accuracy evaluations during ``fit``.

    Args:
        tasks: benchmark suites, by name (``benchmarks/tasks/<name>.yaml``), YAML path, or an inline task
            definition (a mapping with the keys of a task YAML).
        every_n_steps: evaluate every N optimizer steps (and at step 0 and at the end).
        train_accuracy: also evaluate on the training problems themselves (the θ_b signal).
        train_grader: grader for the training problems (``exact``, ``aime``, ``math``, ``mc``).
        train_limit: evaluate this many training problems (a fixed seeded subset); ``None``: all.
        train_instruction: text appended to each training prompt (default: none, as in training).
        sampling: overrides of the sampling parameters for every task (e.g. ``{n: 1, temperature: 0}``).
        task_limit: evaluate at most this many items of each benchmark.
        batch_size: prompts per generation batch.
        backend: ``hf`` (``model.generate``, or the diffusion sampler for a ``DiffusionStudent``) or ``vllm``
            (engines in a separate vLLM environment, through ``t3s evaluate``: needs mode ``subprocess`` or
            ``defer``; README, "Evaluating with vLLM").
        vllm: ``vllm.LLM`` options of the vLLM backend (``tensor_parallel_size``, ``gpu_memory_utilization``,
            ``max_model_len``, ``dtype``, ``enable_prefix_caching``, …).
        python: the vLLM environment's interpreter (default: the training one).
        mode: where evaluations run. ``inline``: in the training process, on the training weights (the toy,
            small models, one process). ``subprocess``: ``t3s evaluate`` on the step's HF folder in a child
            process (its results feed the curve, θ_b and the online switch; see ``wait``).
            ``defer``: only write the step's HF folder; run ``t3s evaluate RUN_DIR`` later (e.g. as the next
            job). Under ``ModelParallelStrategy`` (FSDP2) ``inline`` gathers a full copy of the weights on every
            rank for generation (models that fit on one device); Lightning's FSDP1 ``FSDPStrategy`` refuses it.
        wait: ``subprocess`` only. True: training waits for each evaluation. False: the evaluation runs beside
            training (on GPUs: ``eval_devices``, which training must not use); its results are logged when the
            child finishes, one child at a time, each evaluating every step queued since the last; at the end
            of ``fit`` training waits for the last one, so the curve is whole before θ_b is read.
        eval_devices: ``subprocess`` only: GPUs (indices of the visible devices) the child evaluation runs on,
            one ``t3s evaluate`` worker each. Default: the child's own default (one device).
        tasks_dir: extra directory searched for task YAMLs.
        bottleneck_margin: see :class:`BottleneckDetector`.
        bottleneck_patience: see :class:`BottleneckDetector`.
        num_text_samples: generations shown per task and evaluation in TensorBoard's text panel (or ``log_text``).
        seed: seed of the training-problem subset.
        figure_every_n_evals: draw the loss-and-accuracy figure (PNG and loggers) every this many evaluations,
            and always once at the end of training with the whole curve; ``0``: only at the end. Drawing is
            a sizeable share of a toy run's CPU, and nobody looks at it between two evaluations.
    """

    def __init__(
        self,
        tasks: list[str | dict[str, Any]] | None = None,
        every_n_steps: int = 10,
        train_accuracy: bool = True,
        train_grader: str = "exact",
        train_limit: int | None = 256,
        train_instruction: str = "",
        sampling: dict[str, Any] | None = None,
        task_limit: int | None = None,
        batch_size: int = 16,
        backend: Literal["hf", "vllm"] = "hf",
        mode: Literal["inline", "subprocess", "defer"] = "inline",
        wait: bool = True,
        eval_devices: list[int] | None = None,
        vllm: dict[str, Any] | None = None,
        python: str | None = None,
        tasks_dir: str | None = None,
        bottleneck_margin: float = 0.05,
        bottleneck_patience: int = 2,
        num_text_samples: int = 3,
        seed: int = 0,
        figure_every_n_evals: int = 5,
    ):
        if every_n_steps < 1:
            raise ValueError("every_n_steps must be >= 1")
        if figure_every_n_evals < 0:
            raise ValueError("figure_every_n_evals must be >= 0 (0: only at the end of training)")
        if mode not in ("inline", "subprocess", "defer"):
            raise ValueError(f"BenchmarkCallback mode must be inline, subprocess or defer, got {mode!r}")
        if backend == "vllm" and mode == "inline":
            raise ValueError("BenchmarkCallback backend 'vllm' runs in its own environment through `t3s evaluate`: "
                             "set mode 'subprocess' or 'defer'")
        if mode != "subprocess" and (not wait or eval_devices):
            raise ValueError("BenchmarkCallback wait: false and eval_devices are for mode 'subprocess' (a child "
                             f"t3s evaluate), not mode {mode!r}")
        self.mode = mode
        self.wait = wait
        self.eval_devices = list(eval_devices) if eval_devices else None
        self._children: ChildEvaluator | None = None
        self._resubmit: list[int] = []
        self.task_names = list(tasks or [])
        self.every_n_steps = every_n_steps
        self.train_accuracy = train_accuracy
        self.train_grader = train_grader
        self.train_limit = train_limit
        self.train_instruction = train_instruction
        self.sampling_overrides = dict(sampling or {})
        self.task_limit = task_limit
        self.batch_size = batch_size
        self.backend = backend
        self.vllm = dict(vllm or {})
        self.python = python
        self.tasks_dir = tasks_dir
        self.num_text_samples = num_text_samples
        self.seed = seed
        self.figure_every_n_evals = figure_every_n_evals
        self._recorded = 0  # evaluations recorded in this process (the figure is drawn every n-th and at the end)
        self._figure_step: int | None = None
        self.detector = BottleneckDetector(margin=bottleneck_margin, patience=bottleneck_patience)
        self.history: dict[str, list[tuple[int, dict[str, float]]]] = {}
        self.loss_history: list[tuple[int, float]] = []
        self._tasks: list[EvalTask] | None = None
        self._evaluated: set[int] = set()

    @property
    def train_tag(self) -> str:
        """The TensorBoard tag of the training-accuracy curve (``bench/train/avg@<n>``, n = samples per problem)."""
        n = int(self.sampling_overrides.get("n", SamplingParams().n))
        return f"bench/{TRAIN_TASK}/avg@{n}"

    # ---------------------------------------------------------------- tasks
    def tasks(self, trainer: L.Trainer) -> list[EvalTask]:
        if self._tasks is None:
            self._tasks = self.build_tasks(trainer.datamodule)
        return self._tasks

    def build_tasks(self, datamodule: Any) -> list[EvalTask]:
        """The benchmark tasks (``task_limit`` applied), after the training problems if ``train_accuracy``."""
        tasks = [self._load(name) for name in self.task_names]
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

    def sampling_for(self, task: EvalTask) -> SamplingParams:
        """The task's own sampling with this callback's ``sampling`` overrides on top."""
        return SamplingParams(**{**task.spec.sampling.to_dict(), **self.sampling_overrides})

    def evaluate_model(self, model: Any, tokenizer: Any, datamodule: Any) -> dict[str, dict[str, float]]:
        """Evaluate a model outside training (e.g. an RRT checkpoint) on this callback's tasks."""
        generator = HFGenerator(model, tokenizer, batch_size=self.batch_size)
        return {
            task.name: evaluate(task, generator, tokenizer, self.sampling_for(task)).metrics
            for task in self.build_tasks(datamodule)
        }

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The curves so far, so a resumed run keeps its whole trajectory (and θ_b)."""
        return {
            "detector": {"steps": self.detector.steps, "values": self.detector.values,
                         "bottleneck": self.detector.bottleneck_step},
            "history": self.history,
            "loss_history": self.loss_history,
            "evaluated": sorted(self._evaluated),
            "pending": self._children.pending if self._children is not None else [],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        detector = state.get("detector", {})
        self.detector.steps = list(detector.get("steps", []))
        self.detector.values = list(detector.get("values", []))
        self.detector.bottleneck_step = detector.get("bottleneck")  # the key checkpoints hold
        self.history = {k: [tuple(row) for row in v] for k, v in state.get("history", {}).items()}
        self.loss_history = [tuple(row) for row in state.get("loss_history", [])]
        self._evaluated = set(state.get("evaluated", []))
        self._resubmit = list(state.get("pending", []))  # submitted to a child that did not finish

    # ---------------------------------------------------------------- hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Refuse, before the first step, what cannot work: generating on weights sharded across ranks, or an
        evaluation beside training on the GPUs training uses."""
        from lightning.fabric.utilities.exceptions import MisconfigurationException
        from lightning.pytorch.accelerators import CUDAAccelerator
        from lightning.pytorch.strategies import FSDPStrategy

        if self.mode == "inline" and isinstance(trainer.strategy, FSDPStrategy):
            raise ValueError(
                "BenchmarkCallback mode 'inline' generates on the training weights, which FSDPStrategy shards "
                "across ranks: use ModelParallelStrategy (FSDP2; inline gathers a full copy on every rank, for "
                "models that fit) or mode 'subprocess' / 'defer'"
            )
        if self.mode == "subprocess" and not self.wait and isinstance(trainer.accelerator, CUDAAccelerator):
            shared = sorted(set(self.eval_devices or []) & set(trainer.device_ids))
            if not self.eval_devices or shared:
                raise MisconfigurationException(
                    "BenchmarkCallback wait: false evaluates beside training, so it needs GPUs training does not "
                    f"use (training: {trainer.device_ids}; eval_devices: {self.eval_devices}), e.g. "
                    "trainer.devices: [0, 1, 2, 3] and eval_devices: [4, 5, 6, 7]"
                )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.log_selection_summary(trainer, pl_module)
        if self._resubmit and trainer.is_global_zero:  # a resumed run: what its last child had not finished
            for step in self._resubmit:
                self.children(pl_module).submit(step)
        self._resubmit = []
        if trainer.global_step == 0:
            self.run(trainer, pl_module)

    def log_selection_summary(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Show what the strategy masks (the score cache's anchor-token summary) in the loggers' text panels."""
        scores = scores_dir_of(getattr(pl_module, "selection", None))
        summary_file = Path(scores) / "summary.json" if scores else None
        if not trainer.is_global_zero or summary_file is None or not summary_file.is_file():
            return
        from t3s.scoring.summary_text import summary_markdown

        text = summary_markdown(json.loads(summary_file.read_text()))
        self._log_text_panel(trainer, "selection/anchor_tokens", text, trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:  # the step just taken, as its train/loss scalar is logged (the optimizer has stepped)
            self.loss_history.append((trainer.global_step - 1, float(loss)))
        if self.mode == "subprocess" and not self.wait:
            self._collect_children(trainer, pl_module, block=False)
        if trainer.global_step % self.every_n_steps == 0:
            self.run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.run(trainer, pl_module)
        if self.mode == "subprocess":
            self._collect_children(trainer, pl_module, block=True)
        if (self._recorded or self.history) and self._figure_step != trainer.global_step:  # whole curve, at the end
            self._log_figure(trainer, trainer.global_step, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._children is not None:
            self._children.stop()

    # ------------------------------------------------------------- evaluate
    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, dict[str, float]]:
        """Evaluate every task at the current step (once per step) and log the results."""
        step = trainer.global_step
        if step in self._evaluated:
            return {}
        self._evaluated.add(step)
        if hasattr(pl_module, "ensure_hf_checkpoint"):
            pl_module.ensure_hf_checkpoint(step)
        if self.mode == "defer":
            return {}
        if self.mode == "subprocess":
            if trainer.is_global_zero:
                self.children(pl_module).submit(step)
            if not self.wait:
                return {}  # logged when its child finishes (on_train_batch_end polls, on_train_end waits)
            return self._collect_children(trainer, pl_module, block=True).get(step, {})
        results = self._evaluate_inline(trainer, pl_module, step)
        self._record(trainer, pl_module, step, results)
        return results

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int,
                results: dict[str, dict[str, float]]) -> None:
        """One evaluated step: the detector, the scalars (a child logs its own), the figure and the console line."""
        if TRAIN_TASK in results:
            accuracy = _accuracy(results[TRAIN_TASK])
            fired = self.detector.update(step, accuracy)
            if fired is not None:
                log.warning("imitation bottleneck confirmed at step %d (training accuracy %.3f)", fired,
                            min(self.detector.values))
        if self.mode == "inline":
            self._log_scalars(trainer, step, results, pl_module)
        self._recorded += 1
        if self.figure_every_n_evals and self._recorded % self.figure_every_n_evals == 0:
            self._log_figure(trainer, step, pl_module)
        if results and trainer.is_global_zero:
            print(accuracy_line(step, results), flush=True)

    def children(self, pl_module: L.LightningModule) -> ChildEvaluator:
        """The child ``t3s evaluate`` processes of mode ``subprocess`` (run by rank 0)."""
        if self._children is None or self._children.run_dir != Path(pl_module.run_dir):  # a new phase's run
            self._children = ChildEvaluator(pl_module.run_dir, devices=self.eval_devices,
                                            options=self.evaluate_options(pl_module))
        return self._children

    def evaluate_options(self, pl_module: L.LightningModule) -> list[str]:
        """The ``t3s evaluate`` options this training config opts in to and a run's ``config.yaml`` cannot give:
        the vLLM interpreter and the model's own code (the config being trained is the user's own)."""
        options = ["--python", str(self.python)] if self.python else []
        if getattr(getattr(pl_module, "hparams", None), "trust_remote_code", False):
            options += ["--trust_remote_code", "true"]
        return options

    def _collect_children(self, trainer: L.Trainer, pl_module: L.LightningModule,
                          block: bool) -> dict[int, dict[str, dict[str, float]]]:
        """The steps whose child evaluation has finished (all submitted ones if ``block``), read from the run's
        ledger by every rank and recorded in step order."""
        finished: list[int] = []
        if trainer.is_global_zero and self._children is not None:
            finished = self._children.wait() if block else self._children.poll()
        if trainer.world_size > 1:
            finished = trainer.strategy.broadcast(finished, src=0)
        if not finished:
            return {}
        rows = read_results(pl_module.run_dir)
        collected = {}
        for step in sorted(finished):
            results = collected[step] = {row["task"]: row["metrics"] for row in rows if row["step"] == step}
            for task, metrics in results.items():
                self.history.setdefault(task, []).append((step, metrics))
            self._record(trainer, pl_module, step, results)
        return collected

    def _evaluate_inline(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> dict[str, dict[str, float]]:
        results: dict[str, dict[str, float]] = {}
        generator = self._generator(trainer, pl_module, step)
        rank, world = trainer.global_rank, trainer.world_size
        with self._full_params(trainer):
            for task in self.tasks(trainer):
                items = task.items()[rank::world]
                # generation failures are contained per item inside evaluate(), so every rank reaches the
                # metric sync; anything else (a broken task file) is a configuration error and raises
                result = evaluate(task, generator, pl_module.tokenizer, self.sampling_for(task), items=items,
                                  device=pl_module.device)
                results[task.name] = result.metrics
                self.history.setdefault(task.name, []).append((step, result.metrics))
                self._write_generations(pl_module, step, task.name, result.records, rank, world)
                self._log_text(trainer, step, task.name, result.records)
        return results

    def _generator(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> Any:
        if isinstance(pl_module, DiffusionStudent):
            return DiffusionGenerator.for_student(pl_module, batch_size=self.batch_size)
        return HFGenerator(pl_module.model, pl_module.tokenizer, batch_size=self.batch_size,
                           show_progress=trainer.is_global_zero)

    @staticmethod
    def _full_params(trainer: L.Trainer):
        """Under FSDP, gather full weights for ``generate`` (they are resharded afterwards)."""
        if getattr(trainer.lightning_module, "sharded", False):  # FSDP2 (ModelParallelStrategy)
            return trainer.lightning_module.gathered_weights()
        try:
            from lightning.pytorch.strategies import FSDPStrategy
            from torch.distributed.fsdp import FullyShardedDataParallel
        except ImportError:  # pragma: no cover
            return nullcontext()
        if isinstance(trainer.strategy, FSDPStrategy):
            return FullyShardedDataParallel.summon_full_params(trainer.strategy.model, writeback=False)
        return nullcontext()

    # -------------------------------------------------------------- outputs
    def _write_generations(self, pl_module: Any, step: int, task: str, records: list[dict[str, Any]],
                           rank: int, world: int) -> None:
        out = Path(pl_module.run_dir) / "generations" / f"step_{step}"
        out.mkdir(parents=True, exist_ok=True)
        name = f"{task}.jsonl" if world == 1 else f"{task}.rank{rank}.jsonl"
        tmp = out / f".{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json_line({"step": step, **record}))  # a lone surrogate in a response cannot fail it
        tmp.replace(out / name)

    def bottleneck_step(self, pl_module: Any) -> int | None:
        """θ_b as this run knows it: the step its score cache was computed with (a T3S phase), else the
        detector's once recovery is confirmed; None before that."""
        scored = scored_bottleneck(scores_dir_of(getattr(pl_module, "selection", None)))
        return scored if scored is not None else self.detector.bottleneck_step

    def _log_scalars(self, trainer: L.Trainer, step: int, results: dict[str, dict[str, float]], pl_module: Any) -> None:
        if not trainer.loggers or not trainer.is_global_zero:
            return
        metrics = {f"bench/{task}/{k}": v for task, m in results.items() for k, v in m.items()}
        step_b = self.bottleneck_step(pl_module)
        if step_b is not None:
            metrics["bench/bottleneck_step"] = float(step_b)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def _log_text(self, trainer: L.Trainer, step: int, task: str, records: list[dict[str, Any]]) -> None:
        if not records or not trainer.is_global_zero:
            return
        lines = [f"**step {step}, task {task}**", ""]
        for record in records[: self.num_text_samples]:
            verdict = "correct" if record["correct"] else "wrong"
            lines += [f"- `{record['id']}` gold `{record['gold']}` extracted `{record['extracted']}` ({verdict})",
                      "", "    " + record["response"][:2000].replace("\n", "\n    "), ""]
        self._log_text_panel(trainer, f"samples/{task}", "\n".join(lines), step)

    @staticmethod
    def _log_text_panel(trainer: L.Trainer, key: str, text: str, step: int) -> None:
        """Markdown text to every logger that shows text: TensorBoard's text panel, or ``log_text`` (W&B)."""
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None) if _is_tensorboard(logger) else None
            if experiment is not None:
                experiment.add_text(key, text, global_step=step)
            elif callable(getattr(logger, "log_text", None)):
                _contained(logger.log_text, key=key, columns=["text"], data=[[text]], step=step)

    def _log_figure(self, trainer: L.Trainer, step: int, pl_module: Any) -> None:
        """The loss-and-accuracy figure: ``<run>/figures/loss_and_accuracy.png`` (replaced at each evaluation)
        and every logger that takes figures (TensorBoard's ``add_figure``, else ``log_image``)."""
        self._figure_step = step
        if not trainer.is_global_zero:
            return
        from t3s.evals.figures import curve_figure

        accuracy = {task: ([s for s, _ in rows], [_accuracy(m) for _, m in rows]) for task, rows in self.history.items()}
        figure = curve_figure(self.loss_history, accuracy, title=f"step {step}",
                              bottleneck=self.bottleneck_step(pl_module), lowest=self.lowest_so_far())
        png = Path(pl_module.run_dir) / "figures" / "loss_and_accuracy.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        tmp = png.with_name(f".{png.name}.tmp")
        figure.savefig(tmp, format="png")
        tmp.replace(png)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None) if _is_tensorboard(logger) else None
            if experiment is not None:
                experiment.add_figure("curves/loss_and_accuracy", figure, global_step=step, close=False)
            elif callable(getattr(logger, "log_image", None)):
                _contained(logger.log_image, key="curves/loss_and_accuracy", images=[str(png)], step=step)

    def lowest_so_far(self) -> int | None:
        """The step of the lowest training accuracy so far when it lies below θ_0's (a candidate θ_b), else None."""
        values = self.detector.values
        if len(values) < 2 or min(values) >= values[0]:
            return None
        return self.detector.steps[values.index(min(values))]


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


def accuracy_line(step: int, results: dict[str, dict[str, float]]) -> str:
    """The console line of one evaluation: ``[eval] step 5: train avg@1 0.020 | heldout avg@1 0.031``."""
    parts = []
    for task, metrics in results.items():
        name = next((k for k in metrics if k.startswith("avg@")), None)
        if name is not None:
            parts.append(f"{task} {name} {metrics[name]:.3f}")
    return f"[eval] step {step}: " + " | ".join(parts)


def scores_dir_of(selection: Any) -> str | None:
    """The score cache a selection strategy reads (a budget-matched random mask: its match's), if any."""
    scores = getattr(selection, "scores", None)
    if scores is None and getattr(selection, "match", None) is not None:
        scores = getattr(selection.match, "scores", None)
    return str(scores) if scores else None


def _is_tensorboard(logger: Any) -> bool:
    return hasattr(getattr(logger, "experiment", None), "add_figure")


def _contained(log_call: Any, **kwargs: Any) -> None:
    """A logger's optional media call (``log_image``, ``log_text``): its failure is a warning, not a lost run."""
    try:
        log_call(**kwargs)
    except Exception as err:  # noqa: BLE001 - a third-party logger may raise anything
        log.warning("%s failed: %s", getattr(log_call, "__qualname__", "a logger call"), err)


def _accuracy(metrics: dict[str, float]) -> float:
    """avg@k of a metrics dict (whatever k is)."""
    return next(v for k, v in metrics.items() if k.startswith("avg@"))


__all__ = ["BenchmarkCallback", "TRAIN_TASK"]
