"""The T3S recipe end to end, its online variant, and the paper's method comparison.

Offline (``T3S`` with no score cache), run by ``python -m t3s fit``::

    1. probe   plain SFT from θ_0, with training-accuracy (and benchmark) evaluations
    2. detect  θ_b = the training-accuracy argmin, confirmed by recovery, read from the probe's curve
    3. score   c_t(θ_0), c_t(θ_b), Δc_t for every training token  → <run>/scores
    4. restart from θ_0 with the imitation anchors masked out of the loss  → <run>/t3s
    5. report  both curves side by side  → <run>/report/report.md

Every phase is a fresh trainer, student and data module instantiated from the same parsed ``fit``
config (:class:`PhaseFactory`), with only the selection strategy swapped; each phase saves the config it
actually ran (the masked phase's names its score cache).

Online (``T3S(online=True)``): one ``fit``; when the detector fires, score θ_0 vs θ_b and continue with
the anchors masked — restarting from θ_0 with a fresh optimizer (default, as the paper's recipe
restarts) or from the current weights (:class:`OnlineT3SSwitch`).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from rich.console import Console

from t3s.analysis.report import recipe_story, write_report
from t3s.evals.bottleneck import BottleneckDetector, read_scalars
from t3s.evals.callbacks import BenchmarkCallback
from t3s.loggers import end_phase_runs, for_phase
from t3s.scoring.scorer import score
from t3s.selection import T3S, FullSFT, InverseT3S, RandomMask, ScoredStrategy, TokenSelectionStrategy
from t3s.students.checkpoints import AtomicCheckpointIO
from t3s.students.checkpoints import fit as safe_fit

log = logging.getLogger(__name__)
console = Console()


class RecipeError(RuntimeError):
    """The recipe cannot go on (no training-accuracy curve, no bottleneck)."""


# ------------------------------------------------------------------ strategies
def missing_scores(strategy: TokenSelectionStrategy | None) -> list[ScoredStrategy]:
    """The Δc-based parts of ``strategy`` that have no score cache yet (they need the recipe)."""
    if isinstance(strategy, RandomMask) and strategy.match is not None:
        return missing_scores(strategy.match)
    if isinstance(strategy, ScoredStrategy) and strategy.scores is None:
        return [strategy]
    return []


def strategy_config(class_: type[TokenSelectionStrategy], **init_args: Any) -> Namespace:
    """A selection strategy as a config node (``class_path`` + ``init_args``), as YAML would give it."""
    return Namespace(class_path=f"t3s.selection.{class_.__name__}", init_args=Namespace(**init_args))


def with_scores(selection: Namespace, scores: str | Path) -> Namespace:
    """A copy of a strategy's config node where every scored part that has no cache gets ``scores``."""
    selection = selection.clone()

    def fill(node: Any) -> None:
        if not isinstance(node, Namespace):
            return
        init_args = node.get("init_args")
        if isinstance(init_args, Namespace):
            if "scores" in init_args and init_args.scores is None:
                init_args.scores = str(scores)
            for value in vars(init_args).values():
                fill(value)

    fill(selection)
    return selection


# ----------------------------------------------------------------------- phases
@dataclass
class Phase:
    """One training run of the recipe: a fresh trainer, student and data module."""

    name: str
    trainer: L.Trainer
    student: L.LightningModule
    datamodule: L.LightningDataModule

    fitted: bool = False

    def fit(self, ckpt_path: str | None = None) -> None:
        safe_fit(self.trainer, self.student, self.datamodule, ckpt_path, resume_hint="--ckpt_path last")
        end_phase_runs(self.trainer.loggers)  # the next phase gets a W&B run of its own
        self.fitted = True

    @property
    def run_dir(self) -> Path:
        """``<recipe root>/<phase name>`` (known before ``fit``: a resumed recipe reads finished phases)."""
        return Path(self.trainer.logger.log_dir)

    @property
    def benchmark(self) -> BenchmarkCallback | None:
        return benchmark_of(self.trainer)


def benchmark_of(trainer: L.Trainer) -> BenchmarkCallback | None:
    """The trainer's ``BenchmarkCallback`` (the training-accuracy curve θ_b is read from), if it has one."""
    return next((c for c in trainer.callbacks if isinstance(c, BenchmarkCallback)), None)


class PhaseFactory:
    """Builds recipe phases from the parsed ``fit`` config: the same config each time, with the
    strategy swapped and the logger pointed at ``<root>/<phase name>``.

    Args:
        parser: the ``fit`` parser (``LightningCLI(run=False).parser``).
        config: its parsed config (``LightningCLI(run=False).config``).
        root: the recipe's run directory.
        prepare_trainer: applied to each phase's trainer (default: atomic single-file checkpoints).
    """

    def __init__(self, parser: LightningArgumentParser, config: Namespace, root: str | Path,
                 prepare_trainer: Callable[[L.Trainer], L.Trainer] | None = None):
        self.parser = parser
        self.config = config
        self.root = Path(root)
        self.prepare_trainer = prepare_trainer or with_atomic_checkpoints

    @property
    def is_global_zero(self) -> bool:
        """Rank 0 of this launch (environment-based: phases may not exist yet)."""
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        return getattr(rank_zero_only, "rank", 0) == 0

    @property
    def selection(self) -> Namespace:
        """The strategy the config asks for (FullSFT when unset)."""
        return self.config.model.init_args.get("selection") or strategy_config(FullSFT)

    def build(self, name: str, selection: Namespace) -> Phase:
        """Instantiate a fresh phase training with ``selection``; it saves the config it runs."""
        config = self.config.clone()
        config.model.init_args.selection = selection
        if config.get("seed_everything") is not None:
            L.seed_everything(config.seed_everything, workers=True)  # every phase starts from the same RNG state
        init = self.parser.instantiate_classes(config)
        trainer_args = dict(init.trainer)
        trainer_args["logger"] = phase_loggers(trainer_args.get("logger"), self.root, name)
        trainer_args["callbacks"] = [*(trainer_args.get("callbacks") or []),
                                     SaveConfig(self.parser, config, overwrite=True)]
        trainer = self.prepare_trainer(L.Trainer(**trainer_args))
        return Phase(name, trainer, init.model, init.data)


class SaveConfig(SaveConfigCallback):
    """Lightning's ``config.yaml`` beside the run, with ``${oc.env:VAR}`` values written as the reference, not
    the value (a token in the environment stays out of the run folder; :mod:`t3s.ops.env_refs`). The same goes
    for the hyper-parameters the loggers write (``hparams.yaml``) and those stored in checkpoints."""

    references: dict[str, str] = {}
    _config_path: Path = Path()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import sys

        from t3s.ops.env_refs import env_references

        self._config_path = Path(trainer.log_dir or "") / self.config_filename  # a broadcast: on every rank
        files = [Path(str(getattr(p, "absolute", p))) for p in (self.config.get("config") or [])]
        self.references = env_references([*(f.read_text(encoding="utf-8") for f in files if f.is_file()), *sys.argv])
        if self.references and not self.already_saved:
            for logger in trainer.loggers:  # hparams.yaml and the like
                logger.log_hyperparams = self._restoring(logger.log_hyperparams)  # type: ignore[method-assign]
        super().setup(trainer, pl_module, stage)

    def _restoring(self, log_hyperparams: Callable[..., Any]) -> Callable[..., Any]:
        from t3s.ops.env_refs import restore_env_references

        def log(params: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(params, dict):
                params = restore_env_references(dict(params), self.references)
            return log_hyperparams(params, *args, **kwargs)

        return log

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import yaml

        from t3s.ops.env_refs import restore_env_references

        path = self._config_path  # rank 0 only runs this: trainer.log_dir here would wait for the others forever
        if not self.references or not path.is_file():
            return
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
        restored = restore_env_references(saved, self.references)
        if restored != saved:
            path.write_text(yaml.safe_dump(restored, sort_keys=False, allow_unicode=True), encoding="utf-8")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        from t3s.ops.env_refs import restore_env_references

        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if self.references and isinstance(checkpoint.get(key), dict):
                checkpoint[key] = restore_env_references(dict(checkpoint[key]), self.references)


# ---------------------------------------------------------------------- loggers
def phase_loggers(configured: Any, root: Path, phase: str) -> list[Logger]:
    """The loggers of one phase: a file logger writing into ``<root>/<phase>`` (the configured
    ``TensorBoardLogger`` or ``CSVLogger`` class; a ``TensorBoardLogger`` when none is configured), first, so
    that it is the run directory; any other configured logger (W&B, MLflow, …) after it, made a run of its own
    for the phase (:func:`t3s.loggers.for_phase`).

    θ_b, the recipe's table and the report read the file logger's scalars (:mod:`t3s.evals.scalars`).
    """
    given = [] if configured in (None, True, False) else list(configured) if isinstance(configured, list) \
        else [configured]
    file_class = next((type(x) for x in given if isinstance(x, (TensorBoardLogger, CSVLogger))), TensorBoardLogger)
    extra: dict[str, Any] = {"default_hp_metric": False} if issubclass(file_class, TensorBoardLogger) else {}
    run_logger = file_class(save_dir=str(root.parent), name=root.name, version=phase, **extra)
    return [run_logger, *(for_phase(x, root, phase) for x in given if not isinstance(x, (TensorBoardLogger, CSVLogger)))]


def curves_hint(trainer: L.Trainer, root: Path) -> str:
    """Where to watch a recipe's curves: TensorBoard on its folder, else the phases' metrics and figures."""
    if isinstance(trainer.logger, TensorBoardLogger):
        return f"tensorboard --logdir {root}"
    return f"{root}/<phase>/metrics.csv and {root}/<phase>/figures/"


def with_atomic_checkpoints(trainer: L.Trainer) -> L.Trainer:
    """Single-file checkpoints are written to a temporary file and renamed into place."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    return trainer


# ----------------------------------------------------------------- θ_b and Δc
def find_bottleneck(phase: Phase) -> int:
    """θ_b's step on the finished phase's training-accuracy curve, read from its logs — whether the inline
    callback, its child evaluator or a later ``t3s evaluate`` wrote them.

    Refuses θ_b = θ_0 (then Δc ≡ 0 and there is nothing to select).
    """
    bench = phase.benchmark
    if phase.fitted:
        phase.trainer.strategy.barrier()  # rank 0 has flushed the curve
    steps, values = read_scalars(phase.run_dir, bench.train_tag)
    curve = list(zip(steps, values))
    detector = BottleneckDetector.from_curve(steps, values, margin=bench.detector.margin,
                                             patience=bench.detector.patience)
    step = detector.final()
    if step is not None and detector.bottleneck is None:
        log.warning("recovery was not confirmed during the probe; using the global argmin, step %d", step)
    if step is None and bench.mode == "defer":
        command = " ".join(["t3s evaluate", str(phase.run_dir), *bench.evaluate_options(phase.student)])
        raise RecipePaused(
            f"the probe's evaluations are deferred: run `{command}`, then re-run this "
            "command with --ckpt_path last to score θ_b and train the masked phase"
        )
    if step is None or step == 0:
        raise RecipeError(
            f"no imitation bottleneck: training accuracy never fell below θ_0's (curve {curve}); "
            "probe with more steps or a larger learning rate, or evaluate more often (every_n_steps)"
        )
    return step


def score_bottleneck(trainer: L.Trainer, datamodule: Any, run_dir: str | Path, step_b: int,
                     scores_dir: str | Path, selection: TokenSelectionStrategy | None = None) -> None:
    """Score θ_0 against θ_b (``<run_dir>/hf/step_0`` and ``step_<step_b>``) into ``scores_dir``; the summary
    counts anchors with ``selection``'s thresholds.

    Rank 0 scores; every rank waits for the cache before going on.
    """
    hf = Path(run_dir) / "hf"
    if trainer.is_global_zero:
        score(datamodule, hf / "step_0", hf / f"step_{step_b}", scores_dir, selection=selection)
    trainer.strategy.barrier()


def check_recipe_phase(phase: Phase) -> None:
    """What the offline recipe needs, checked before its first training step."""
    if not getattr(phase.student, "supports_offline_recipe", False):
        raise RecipeError(
            f"{type(phase.student).__name__} gets Δc from an AR selector that shares its tokenizer: fit the selector "
            "with FullSFT, pick θ_b, run `t3s score` with this config's data section, then set "
            "model.init_args.selection.init_args.scores"
        )
    bench = phase.benchmark
    if bench is None or not bench.train_accuracy:
        raise RecipeError(
            "the T3S recipe finds θ_b on the training-accuracy curve: add a t3s.evals.BenchmarkCallback "
            "(train_accuracy: true) to trainer.callbacks, or give T3S a score cache (selection.init_args.scores)"
        )


# ----------------------------------------------------------------------- recipe
class RecipePaused(Exception):
    """The recipe stopped on purpose and continues with ``--ckpt_path last`` (e.g. deferred evaluations)."""


@dataclass
class RecipeState:
    """What the recipe has finished, kept in ``<run>/recipe.json`` so a killed recipe resumes where it stopped."""

    probe_done: bool = False
    bottleneck_step: int | None = None
    scores: str | None = None
    masked_phase: str | None = None
    masked_done: bool = False

    @classmethod
    def load(cls, root: Path) -> RecipeState:
        path = root / STATE_FILE
        if not path.is_file():
            raise RecipeError(f"{root}: no {STATE_FILE} to resume from (was this folder written by the T3S recipe?)")
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as err:
            raise RecipeError(f"{path}: unreadable recipe state ({err})") from None

    def save(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(root / STATE_FILE)


STATE_FILE = "recipe.json"


class Recipe:
    """The offline T3S recipe over the phases of one config; :meth:`run` reads top to bottom.

    With ``resume``, finished phases (per ``<root>/recipe.json``) are skipped and an unfinished phase
    continues from its last checkpoint.
    """

    def __init__(self, phases: PhaseFactory, resume: bool = False):
        self.phases = phases
        self.root = phases.root
        self.resume = resume
        self.state = RecipeState.load(self.root) if resume else RecipeState()

    def run(self) -> Path:
        """Probe SFT → θ_b → score → restart from θ_0 with the anchors masked → report. Returns the report."""
        probe = self.phases.build("probe", strategy_config(FullSFT))
        check_recipe_phase(probe)
        if not self.state.probe_done:
            console.rule("[bold]T3S recipe 1/4[/bold]: probe SFT from θ_0")
            probe.fit(ckpt_path=self._ckpt_path())
            self._save(probe_done=True)
        if self.state.bottleneck_step is None:
            self._save(bottleneck_step=find_bottleneck(probe))
        step_b = self.state.bottleneck_step

        scores_dir = self.root / "scores"
        selection = with_scores(self.phases.selection, scores_dir)
        masked = self.phases.build(phase_name(selection), selection)  # reads the cache only when it trains
        if self.state.scores is None:
            console.rule(f"[bold]T3S recipe 2/4[/bold]: score θ_0 vs θ_b (step {step_b})")
            score_bottleneck(probe.trainer, probe.datamodule, probe.run_dir, step_b, scores_dir,
                             selection=masked.student.selection)
            self._save(scores=str(scores_dir))

        if not self.state.masked_done:
            console.rule(f"[bold]T3S recipe 3/4[/bold]: restart from θ_0 with {type(masked.student.selection).__name__}")
            masked.fit(ckpt_path=self._ckpt_path())
            self._save(masked_phase=masked.name, masked_done=True)

        console.rule("[bold]T3S recipe 4/4[/bold]: report")
        report = self.root / "report" / "report.md"
        if masked.trainer.is_global_zero:
            report = write_report([probe.run_dir, masked.run_dir], self.root / "report")
            console.print(results_table([probe, masked], probe.benchmark.train_tag, step_b))
            console.print(recipe_story([probe.run_dir, masked.run_dir]), markup=False)
            console.print(f"curves: {curves_hint(masked.trainer, self.root)}\nreport: {report}\nθ_b: step {step_b}, "
                          f"scores: {scores_dir}")
        return report

    def _ckpt_path(self) -> str | None:
        """A resumed recipe continues the unfinished phase from its last checkpoint (none yet: from the start)."""
        return "last" if self.resume else None

    def _save(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.state, key, value)
        if self.phases.is_global_zero:
            self.state.save(self.root)


def results_table(phases: list[Phase], tag: str, step_b: int) -> Any:
    """The recipe's end: training accuracy of each phase at its start, minimum (step) and end."""
    from rich.table import Table

    table = Table(title=f"training accuracy, θ_b = step {step_b}", caption=tag)
    for column in ("phase", "start", "minimum (step)", "final"):
        table.add_column(column)
    for phase in phases:
        steps, values = read_scalars(phase.run_dir, tag)
        if not values:
            table.add_row(phase.name, "—", "—", "—")
            continue
        low = min(values)
        table.add_row(phase.name, f"{values[0]:.3f}", f"{low:.3f} ({steps[values.index(low)]})", f"{values[-1]:.3f}")
    return table


def find_recipe_root(logger_root: str | Path) -> Path:
    """The newest ``version_<k>`` under a recipe's logger folder that holds a ``recipe.json`` (for resuming)."""
    versions = sorted((p for p in Path(logger_root).glob("version_*") if (p / STATE_FILE).is_file()),
                      key=lambda p: int(p.name.removeprefix("version_")) if p.name[8:].isdigit() else -1)
    if not versions:
        raise RecipeError(f"--ckpt_path last: no recipe run to resume under {logger_root} (no version_*/{STATE_FILE})")
    return versions[-1]


def phase_name(selection: Namespace) -> str:
    """``t3s``, ``inverse_t3s``, ``random`` …: the run-directory name of a phase trained with ``selection``."""
    module, _, class_name = selection.class_path.rpartition(".")
    return getattr(importlib.import_module(module), class_name).name


def run_online(trainer: L.Trainer, student: Any, datamodule: Any, ckpt_path: str | None = None) -> None:
    """The online variant in one ``fit``: FullSFT until the detector fires, then the student's T3S."""
    bench = benchmark_of(trainer)
    if bench is None or not bench.train_accuracy or bench.mode == "defer":
        raise RecipeError("online T3S watches the training-accuracy curve during training: add a "
                          "t3s.evals.BenchmarkCallback (train_accuracy: true, mode inline or subprocess) to "
                          "trainer.callbacks")
    trainer.callbacks.append(OnlineT3SSwitch(student.selection, bench))
    student.selection = FullSFT()
    safe_fit(trainer, student, datamodule, ckpt_path)


class OnlineT3SSwitch(L.Callback):
    """The online variant: when the bottleneck detector fires, score θ_0 vs θ_b and switch to ``strategy``.

    Add it after the ``BenchmarkCallback`` whose detector it watches; the student starts with ``FullSFT``.
    """

    def __init__(self, strategy: T3S, bench: BenchmarkCallback, scores_dir: str | Path | None = None):
        self.strategy = strategy
        self.bench = bench
        self.scores_dir = Path(scores_dir) if scores_dir else None
        self.switched_at: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"switched_at": self.switched_at, "scores": self.strategy.scores}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.switched_at = state.get("switched_at")
        if state.get("scores"):
            self.strategy.scores = state["scores"]

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        """After a resume past the switch: masked training again, on the restarted LR schedule."""
        if self.switched_at is None:
            return
        self.strategy.setup(trainer.datamodule.fingerprint())
        pl_module.selection = self.strategy
        if self.strategy.restart_from_base:
            pl_module.reschedule(start=self.switched_at)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        step_b = self.bench.detector.bottleneck
        if self.switched_at is not None or step_b is None:
            return
        step = trainer.global_step
        hf = Path(pl_module.run_dir) / "hf"
        scores_dir = self.scores_dir or Path(pl_module.run_dir) / "scores"
        console.rule(f"[bold]online T3S[/bold]: θ_b = step {step_b} confirmed at step {step}; scoring")
        score_bottleneck(trainer, trainer.datamodule, pl_module.run_dir, step_b, scores_dir, selection=self.strategy)
        self.strategy.scores = str(scores_dir)
        self.strategy.setup(trainer.datamodule.fingerprint())
        pl_module.selection = self.strategy
        if self.strategy.restart_from_base:
            pl_module.restart_from(hf / "step_0")
        self.switched_at = step
        self.bench.log_selection_summary(trainer, pl_module)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({"recipe/switch_step": float(step), "recipe/bottleneck_step": float(step_b)},
                                   step=step)


# ------------------------------------------------------------------- comparison
class Comparison:
    """The paper's comparison on one config: SFT, T3S, −T3S, a budget-matched random mask and RRT.

    Per seed (data order and evaluation sampling), every method runs the same steps, LR and data order
    from the same θ_0; θ_b comes from the SFT run, which doubles as the probe. RRT is θ_0 + (θ_SFT,final −
    θ_b), evaluated once. Writes ``<output>/seed_<s>/<method>/`` runs and ``<output>/comparison.md``.

    Args:
        phases_for_seed: the phase factory of one seed (its ``root`` is ``<output>/seed_<s>``).
        seeds: the seeds to run.
        output: where the runs and the table go.
    """

    def __init__(self, phases_for_seed: Any, seeds: list[int], output: str | Path):
        self.phases_for_seed = phases_for_seed
        self.seeds = list(seeds)
        self.output = Path(output)

    def run(self) -> Path:
        from t3s.analysis.compare import write_comparison

        rrt_results: dict[int, dict[str, dict[str, float]]] = {}
        bottlenecks: dict[int, int] = {}
        is_global_zero = True
        for seed in self.seeds:
            phases: PhaseFactory = self.phases_for_seed(seed)
            console.rule(f"[bold]compare, seed {seed}[/bold]: SFT (probe)")
            sft = phases.build(FullSFT.name, strategy_config(FullSFT))
            check_recipe_phase(sft)
            sft.fit()
            step_b = bottlenecks[seed] = find_bottleneck(sft)
            scores = phases.root / "scores"
            score_bottleneck(sft.trainer, sft.datamodule, sft.run_dir, step_b, scores)
            t3s = strategy_config(T3S, scores=str(scores))
            for class_, selection in (
                (T3S, t3s),
                (InverseT3S, strategy_config(InverseT3S, scores=str(scores))),
                (RandomMask, strategy_config(RandomMask, match=t3s, seed=seed)),
            ):
                console.rule(f"[bold]compare, seed {seed}[/bold]: {class_.label}")
                phases.build(class_.name, selection).fit()
            is_global_zero = sft.trainer.is_global_zero
            if is_global_zero:
                console.rule(f"[bold]compare, seed {seed}[/bold]: RRT")
                rrt_results[seed] = evaluate_rrt(sft, step_b, phases.root / "rrt")
        if not is_global_zero:
            return self.output / "comparison.md"
        report = write_comparison(self.output, self.seeds, rrt_results, bottlenecks)
        console.print(f"comparison: {report}\ncurves: tensorboard --logdir {self.output}")
        return report


def evaluate_rrt(sft: Phase, step_b: int, output: Path) -> dict[str, dict[str, float]]:
    """Write RRT's θ_0 + (θ_final − θ_b) from the SFT run and evaluate it on the SFT run's tasks."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from t3s.analysis.rrt import residual_transfer

    hf = sft.run_dir / "hf"
    folder = residual_transfer(hf / "step_0", hf / f"step_{step_b}", hf / "final", output)
    model = AutoModelForCausalLM.from_pretrained(folder)
    return sft.benchmark.evaluate_model(model, AutoTokenizer.from_pretrained(folder), sft.datamodule)
