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

import dataclasses
import json
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import lightning as L

from t3s.data.rows import json_line
from t3s.evals.backends import get_backend, resolve_backend
from t3s.evals.bottleneck import BottleneckDetector, scored_bottleneck
from t3s.evals.callback_settings import CurveSettings, EvalSchedule, merged
from t3s.evals.child_evaluator import ChildEvaluator
from t3s.evals.results import read_results
from t3s.evals.runner import evaluate
from t3s.evals.suite import TRAIN_TASK, EvalSuite
from t3s.evals.tasks import EvalTask

log = logging.getLogger(__name__)


class BenchmarkCallback(L.Callback):
    """Benchmark and training-accuracy evaluations during ``fit``.

    Args:
        suite: what is measured and how it samples (:class:`~t3s.evals.suite.EvalSuite`: tasks, training
            accuracy, sampling, batch size, backend), the settings ``t3s evaluate`` reads back from the run.
        schedule: when and where evaluations run (:class:`~t3s.evals.callback_settings.EvalSchedule`:
            ``every_n_steps``, ``mode``, ``wait``, ``eval_devices``).
        curve: what is made of the curve (:class:`~t3s.evals.callback_settings.CurveSettings`: the θ_b
            detector's ``bottleneck_margin`` / ``bottleneck_patience``, ``num_text_samples``, ``figure_every_n_evals``).

    Every field of the three groups is also accepted flat (``tasks``, ``every_n_steps``, ``bottleneck_margin``,
    …: the spelling of earlier releases, in ``init_args`` and as ``--eval.<field>`` on the command line).
    Flat keys are deprecated aliases kept for one release; one given with a value other than its default
    overrides the group's field. Their meaning is documented on the groups.
    """

    def __init__(
        self,
        suite: EvalSuite | None = None,
        schedule: EvalSchedule | None = None,
        curve: CurveSettings | None = None,
        tasks: list[str | dict[str, Any]] | None = None,
        every_n_steps: int = 10,
        train_accuracy: bool = True,
        train_grader: str = "exact",
        train_limit: int | None = 256,
        train_instruction: str = "",
        sampling: dict[str, Any] | None = None,
        task_limit: int | None = None,
        batch_size: int = 16,
        backend: str = "hf",
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
        fine_every_n_steps: int | None = None,
        fine_until_step: int = 0,
    ):
        flat = {k: v for k, v in locals().items() if k not in ("self", "suite", "schedule", "curve", "__class__")}
        self.suite = merged(EvalSuite, suite, flat)
        self.schedule = merged(EvalSchedule, schedule, flat)
        self.curve = merged(CurveSettings, curve, flat)
        if self.schedule.mode == "inline" and not get_backend(self.suite.backend).inline:
            raise ValueError(f"BenchmarkCallback backend {self.suite.backend!r} runs in its own environment through "
                             "`t3s evaluate`: set mode 'subprocess' or 'defer'")
        self._children: ChildEvaluator | None = None
        self._resubmit: list[int] = []
        self._recorded = 0  # evaluations recorded in this process (the figure is drawn every n-th and at the end)
        self._figure_step: int | None = None
        self.detector = BottleneckDetector(margin=self.curve.bottleneck_margin,
                                           patience=self.curve.bottleneck_patience)
        self.history: dict[str, list[tuple[int, dict[str, float]]]] = {}
        self.loss_history: list[tuple[int, float]] = []
        self._tasks: list[EvalTask] | None = None
        self._evaluated: set[int] = set()

    def __getattr__(self, name: str) -> Any:
        """A group's field read flat (``callback.every_n_steps``, ``callback.train_limit``), as before."""
        for group in ("suite", "schedule", "curve"):
            settings = self.__dict__.get(group)
            if settings is not None and name in {f.name for f in dataclasses.fields(settings)}:
                return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def train_tag(self) -> str:
        """The TensorBoard tag of the training-accuracy curve (``bench/train/avg@<n>``, n = samples per problem)."""
        return self.suite.train_tag

    # ---------------------------------------------------------------- tasks
    def tasks(self, trainer: L.Trainer) -> list[EvalTask]:
        if self._tasks is None:
            self._tasks = self.suite.build_tasks(trainer.datamodule)
        return self._tasks

    def evaluate_model(self, model: Any, tokenizer: Any, datamodule: Any) -> dict[str, dict[str, float]]:
        """Evaluate an autoregressive model outside training (e.g. an RRT checkpoint) on this callback's tasks."""
        from t3s.evals.backends.hf import HFGenerator

        generator = HFGenerator(model, tokenizer, batch_size=self.suite.batch_size)
        return {
            task.name: evaluate(task, generator, tokenizer, self.suite.sampling_for(task)).metrics
            for task in self.suite.build_tasks(datamodule)
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

        if self.schedule.mode == "inline" and isinstance(trainer.strategy, FSDPStrategy):
            raise ValueError(
                "BenchmarkCallback mode 'inline' generates on the training weights, which FSDPStrategy shards "
                "across ranks: use ModelParallelStrategy (FSDP2; inline gathers a full copy on every rank, for "
                "models that fit) or mode 'subprocess' / 'defer'"
            )
        if (self.schedule.mode == "subprocess" and not self.schedule.wait
                and isinstance(trainer.accelerator, CUDAAccelerator)):
            shared = sorted(set(self.schedule.eval_devices or []) & set(trainer.device_ids))
            if not self.schedule.eval_devices or shared:
                raise MisconfigurationException(
                    "BenchmarkCallback wait: false evaluates beside training, so it needs GPUs training does not "
                    f"use (training: {trainer.device_ids}; eval_devices: {self.schedule.eval_devices}), e.g. "
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
        scores = _score_dir(pl_module)
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
        if self.schedule.mode == "subprocess" and not self.schedule.wait:
            self._collect_children(trainer, pl_module, block=False)
        if self.due(trainer.global_step):
            self.run(trainer, pl_module)

    def due(self, step: int) -> bool:
        """Whether ``step`` is evaluated: every ``every_n_steps``, and on the finer grid while θ_b is unconfirmed."""
        schedule = self.schedule
        if step % schedule.every_n_steps == 0:
            return True
        fine = schedule.fine_every_n_steps
        return (bool(fine) and step <= schedule.fine_until_step and step % fine == 0
                and self.detector.bottleneck_step is None)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.run(trainer, pl_module)
        if self.schedule.mode == "subprocess":
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
        if self.schedule.mode == "defer":
            return {}
        if self.schedule.mode == "subprocess":
            if trainer.is_global_zero:
                self.children(pl_module).submit(step)
            if not self.schedule.wait:
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
        if self.schedule.mode == "inline":
            self._log_scalars(trainer, step, results, pl_module)
        self._recorded += 1
        if self.curve.figure_every_n_evals and self._recorded % self.curve.figure_every_n_evals == 0:
            self._log_figure(trainer, step, pl_module)
        if results and trainer.is_global_zero:
            print(accuracy_line(step, results), flush=True)

    def children(self, pl_module: L.LightningModule) -> ChildEvaluator:
        """The child ``t3s evaluate`` processes of mode ``subprocess`` (run by rank 0)."""
        if self._children is None or self._children.run_dir != Path(pl_module.run_dir):  # a new phase's run
            self._children = ChildEvaluator(pl_module.run_dir, devices=self.schedule.eval_devices,
                                            options=self.evaluate_options(pl_module))
        return self._children

    def evaluate_options(self, pl_module: L.LightningModule) -> list[str]:
        """The ``t3s evaluate`` options this training config opts in to and a run's ``config.yaml`` cannot give:
        the vLLM interpreter and the model's own code (the config being trained is the user's own)."""
        options = ["--python", str(self.suite.python)] if self.suite.python else []
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

    def _evaluate_inline(self, trainer: L.Trainer, pl_module: L.LightningModule,
                         step: int) -> dict[str, dict[str, float]]:
        results: dict[str, dict[str, float]] = {}
        generator = self._generator(trainer, pl_module, step)
        rank, world = trainer.global_rank, trainer.world_size
        with self._full_params(trainer):
            for task in self.tasks(trainer):
                items = task.items()[rank::world]
                # generation failures are contained per item inside evaluate(), so every rank reaches the
                # metric sync; anything else (a broken task file) is a configuration error and raises
                result = evaluate(task, generator, pl_module.tokenizer, self.suite.sampling_for(task), items=items,
                                  device=pl_module.device)
                results[task.name] = result.metrics
                self.history.setdefault(task.name, []).append((step, result.metrics))
                self._write_generations(pl_module, step, task.name, result.records, rank, world)
                self._log_text(trainer, step, task.name, result.records)
        return results

    def _generator(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> Any:
        """The student's own sampler over its training weights (its family names it: ``generation_backend``)."""
        backend = resolve_backend(self.suite.backend, pl_module.generation_backend)
        return backend.from_student(pl_module, batch_size=self.suite.batch_size, show_progress=trainer.is_global_zero)

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
        scored = scored_bottleneck(_score_dir(pl_module))
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
        for record in records[: self.curve.num_text_samples]:
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

        accuracy = {task: ([s for s, _ in rows], [_accuracy(m) for _, m in rows])
                    for task, rows in self.history.items()}
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


def accuracy_line(step: int, results: dict[str, dict[str, float]]) -> str:
    """The console line of one evaluation: ``[eval] step 5: train avg@1 0.020 | heldout avg@1 0.031``."""
    parts = []
    for task, metrics in results.items():
        name = next((k for k in metrics if k.startswith("avg@")), None)
        if name is not None:
            parts.append(f"{task} {name} {metrics[name]:.3f}")
    return f"[eval] step {step}: " + " | ".join(parts)


def _score_dir(pl_module: Any) -> str | None:
    """The score cache the student's selection strategy reads (the first, if several), if any."""
    selection = getattr(pl_module, "selection", None)
    dirs = selection.score_dirs() if selection is not None else []
    return dirs[0] if dirs else None


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


__all__ = ["TRAIN_TASK", "BenchmarkCallback", "CurveSettings", "EvalSchedule", "EvalSuite"]
