"""What every road of the recipe shares: θ_b read from a finished SFT phase's curve, Δc scored between
θ_0 and θ_b, the checks made before the first step, and the recipe's errors.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L

from t3s.errors import T3SError
from t3s.evals.bottleneck import BottleneckDetector
from t3s.evals.scalars import read_scalars
from t3s.recipe.phases import Phase
from t3s.scoring.scorer import score
from t3s.selection import TokenSelectionStrategy

log = logging.getLogger(__name__)


class RecipeError(T3SError, RuntimeError):
    """The recipe cannot go on (no training-accuracy curve, no bottleneck)."""


class RecipePaused(Exception):
    """The recipe stopped on purpose and continues with ``--ckpt_path last`` (e.g. deferred evaluations)."""


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
    if step is not None and detector.bottleneck_step is None:
        log.warning("recovery was not confirmed during the SFT phase; using the global argmin, step %d", step)
    if step is None and bench.mode == "defer":
        command = " ".join(["t3s evaluate", str(phase.run_dir), *bench.evaluate_options(phase.student)])
        raise RecipePaused(
            f"the SFT phase's evaluations are deferred: run `{command}`, then re-run this "
            "command with --ckpt_path last to score θ_b and train the masked phase"
        )
    if step is None or step == 0:
        raise RecipeError(
            f"no imitation bottleneck: training accuracy never fell below θ_0's (curve {curve}); "
            "train the SFT phase with more steps or a larger learning rate, or evaluate more often (every_n_steps)"
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
