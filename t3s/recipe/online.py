"""The online variant (``T3S(online=True)``): one ``fit``; FullSFT until the bottleneck detector fires, then
θ_0 vs θ_b is scored and training continues with the anchors masked — restarting from θ_0 with a fresh
optimizer (default, as the offline recipe restarts) or from the current weights (:class:`OnlineT3SSwitch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from rich.console import Console

from t3s.evals.callbacks import BenchmarkCallback
from t3s.recipe.detect import RecipeError, score_bottleneck
from t3s.recipe.phases import benchmark_of
from t3s.selection import T3S, FullSFT
from t3s.students.checkpoints import fit as safe_fit

console = Console()


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
        step_b = self.bench.detector.bottleneck_step
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
