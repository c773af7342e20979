"""The T3S recipe end to end, and its online variant.

Offline (``T3S`` with no score cache), run by ``python -m t3s fit``::

    1. probe   plain SFT from θ_0, with training-accuracy (and benchmark) evaluations
    2. detect  θ_b = the training-accuracy argmin, confirmed by recovery (BottleneckDetector)
    3. score   c_t(θ_0), c_t(θ_b), Δc_t for every training token  → <run>/scores
    4. restart from θ_0 with the imitation anchors masked out of the loss  → <run>/t3s
    5. report  both curves side by side  → <run>/report/report.md

Online (``T3S(online=True)``): one ``fit``; when the detector fires, score θ_0 vs θ_b and continue with
the anchors masked — restarting from θ_0 with a fresh optimizer (default, as the paper's recipe
restarts) or from the current weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from rich.console import Console

from t3s.analysis.report import write_report
from t3s.evals.callbacks import BenchmarkCallback
from t3s.scoring.scorer import score
from t3s.selection import T3S, FullSFT, InverseT3S, RandomMask, TokenSelectionStrategy
from t3s.selection.strategies import _ScoredStrategy

log = logging.getLogger(__name__)
console = Console()


class RecipeError(RuntimeError):
    """The recipe cannot go on (no training-accuracy curve, no bottleneck)."""


@dataclass
class Phase:
    """One training run of the recipe: a fresh trainer, student and data module."""

    trainer: L.Trainer
    student: L.LightningModule
    datamodule: L.LightningDataModule


#: Builds a fresh phase named ``name`` whose student uses ``strategy`` (the CLI re-instantiates the config).
PhaseBuilder = Callable[[str, TokenSelectionStrategy], Phase]


def missing_scores(strategy: TokenSelectionStrategy) -> list[_ScoredStrategy]:
    """The Δc-based parts of ``strategy`` that have no score cache yet (they need the recipe)."""
    if isinstance(strategy, RandomMask) and strategy.match is not None:
        return missing_scores(strategy.match)
    if isinstance(strategy, _ScoredStrategy) and strategy.scores is None:
        return [strategy]
    return []


def phase_name(strategy: TokenSelectionStrategy) -> str:
    """``t3s``, ``inverset3s``, ``randommask`` …: the run-directory name of the masked phase."""
    return type(strategy).__name__.lower()


def benchmark_callback(trainer: L.Trainer) -> BenchmarkCallback:
    for callback in trainer.callbacks:
        if isinstance(callback, BenchmarkCallback):
            return callback
    raise RecipeError(
        "the T3S recipe finds θ_b on the training-accuracy curve: add a t3s.evals.BenchmarkCallback "
        "(train_accuracy: true) to trainer.callbacks, or give T3S a score cache (selection.init_args.scores)"
    )


def detect_bottleneck(bench: BenchmarkCallback) -> int:
    """θ_b's step from the probe run; refuses θ_b = θ_0 (then Δc ≡ 0 and there is nothing to select)."""
    step = bench.detector.final()
    if step is None or step == 0:
        curve = list(zip(bench.detector.steps, bench.detector.values))
        raise RecipeError(
            f"no imitation bottleneck: training accuracy never fell below θ_0's (curve {curve}); "
            "probe with more steps or a larger learning rate, or evaluate more often (every_n_steps)"
        )
    if bench.detector.bottleneck is None:
        log.warning("recovery was not confirmed during the probe; using the global argmin, step %d", step)
    return step


def score_bottleneck(trainer: L.Trainer, datamodule: Any, run_dir: str | Path, step_b: int,
                     scores_dir: str | Path) -> None:
    """Score θ_0 against θ_b (``<run_dir>/hf/step_0`` and ``step_<step_b>``) into ``scores_dir``.

    Rank 0 scores; every rank waits for the cache before going on.
    """
    hf = Path(run_dir) / "hf"
    if trainer.is_global_zero:
        score(datamodule, hf / "step_0", hf / f"step_{step_b}", scores_dir)
    trainer.strategy.barrier()


def run_recipe(build: PhaseBuilder, strategy: TokenSelectionStrategy, run_root: str | Path) -> Path:
    """Probe SFT → θ_b → score → restart from θ_0 with ``strategy`` → report. Returns the report path."""
    run_root = Path(run_root)
    console.rule("[bold]T3S recipe 1/4[/bold]: probe SFT from θ_0")
    probe = build("probe", FullSFT())
    probe.trainer.fit(probe.student, datamodule=probe.datamodule)
    step_b = detect_bottleneck(benchmark_callback(probe.trainer))

    console.rule(f"[bold]T3S recipe 2/4[/bold]: score θ_0 vs θ_b (step {step_b})")
    scores_dir = run_root / "scores"
    score_bottleneck(probe.trainer, probe.datamodule, probe.student.run_dir, step_b, scores_dir)
    for part in missing_scores(strategy):
        part.scores = str(scores_dir)

    name = phase_name(strategy)
    console.rule(f"[bold]T3S recipe 3/4[/bold]: restart from θ_0 with {type(strategy).__name__}")
    masked = build(name, strategy)
    masked.trainer.fit(masked.student, datamodule=masked.datamodule)

    console.rule("[bold]T3S recipe 4/4[/bold]: report")
    report = run_root / "report" / "report.md"
    if masked.trainer.is_global_zero:
        report = write_report([probe.student.run_dir, masked.student.run_dir], run_root / "report")
        console.print(f"curves: tensorboard --logdir {run_root}\nreport: {report}\nθ_b: step {step_b}, "
                      f"scores: {scores_dir}")
    return report


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
        score_bottleneck(trainer, trainer.datamodule, pl_module.run_dir, step_b, scores_dir)
        self.strategy.scores = str(scores_dir)
        self.strategy.setup(trainer.datamodule.fingerprint())
        pl_module.selection = self.strategy
        if self.strategy.restart_from_base:
            pl_module.restart_from(hf / "step_0")
        self.switched_at = step
        self.bench.log_selection_summary(trainer, pl_module)
        if trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_metrics({"recipe/switch_step": float(step), "recipe/bottleneck_step": float(step_b)},
                                       step=step)


#: Builds a fresh phase for one seed: (seed, name, strategy, run root) → Phase.
SeededPhaseBuilder = Callable[[int, str, TokenSelectionStrategy, Path], Phase]


def run_comparison(build: SeededPhaseBuilder, seeds: list[int], output: str | Path) -> Path:
    """The paper's comparison on one config: SFT, T3S, −T3S, a budget-matched random mask and RRT.

    Per seed (data order and evaluation sampling), every method runs the same steps, LR and data order
    from the same θ_0; θ_b comes from the SFT run, which doubles as the probe. RRT is θ_0 + (θ_SFT,final −
    θ_b), evaluated once. Writes ``<output>/seed_<s>/<method>/`` runs and ``<output>/comparison.md``.
    """
    from t3s.analysis.compare import write_comparison
    from t3s.analysis.rrt import residual_transfer

    output = Path(output)
    rrt_results: dict[int, dict[str, dict[str, float]]] = {}
    for seed in seeds:
        root = output / f"seed_{seed}"
        console.rule(f"[bold]compare, seed {seed}[/bold]: SFT (probe)")
        sft = build(seed, "sft", FullSFT(), root)
        sft.trainer.fit(sft.student, datamodule=sft.datamodule)
        bench = benchmark_callback(sft.trainer)
        step_b = detect_bottleneck(bench)
        score_bottleneck(sft.trainer, sft.datamodule, sft.student.run_dir, step_b, root / "scores")
        hf = Path(sft.student.run_dir) / "hf"
        scores = str(root / "scores")
        for name, strategy in (
            ("t3s", T3S(scores=scores)),
            ("inverse_t3s", InverseT3S(scores=scores)),
            ("random", RandomMask(match=T3S(scores=scores), seed=seed)),
        ):
            console.rule(f"[bold]compare, seed {seed}[/bold]: {name}")
            phase = build(seed, name, strategy, root)
            phase.trainer.fit(phase.student, datamodule=phase.datamodule)
        if sft.trainer.is_global_zero:
            console.rule(f"[bold]compare, seed {seed}[/bold]: RRT")
            rrt_dir = residual_transfer(hf / "step_0", hf / f"step_{step_b}", hf / "final", root / "rrt")
            rrt_results[seed] = _evaluate_folder(bench, rrt_dir, sft.datamodule)
    if not sft.trainer.is_global_zero:
        return output / "comparison.md"
    report = write_comparison(output, seeds, rrt_results)
    console.print(f"comparison: {report}\ncurves: tensorboard --logdir {output}")
    return report


def _evaluate_folder(bench: BenchmarkCallback, folder: Path, datamodule: Any) -> dict[str, dict[str, float]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    return bench.evaluate_model(model, AutoTokenizer.from_pretrained(folder), datamodule)
