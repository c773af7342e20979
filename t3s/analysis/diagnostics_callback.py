"""``DiagnosticsCallback``: the cheap diagnostics during training, on a fixed probe batch.

Every ``every_n_steps`` optimizer steps (and at step 0) it logs, to every logger of the trainer (TensorBoard,
CSV, W&B, …) at the current step: the mean confidence of each token group on the probe batch and the
anchor-only / other-only gradient norms, their ratio and cosine (:mod:`t3s.analysis.interaction`). The groups
come from a Δc score cache (``t3s score``) or from θ_0 / θ_b folders scored at fit start. Single device or
DDP (gradients all-reduced by the callback itself); not under FSDP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from t3s.analysis.interaction import gradient_interaction, group_loss_sums, probe_batch
from t3s.analysis.trajectories import SIDES, answer_spans, data_offsets, score_step, token_groups

ANCHOR, OTHER = SIDES.values()


class DiagnosticsCallback(L.Callback):
    """Group confidences and gradient interaction on a probe batch, logged during training.

    Args:
        scores: a score cache directory (``t3s score`` output) defining the groups by its Δc; or
        base, bottleneck: θ_0 and θ_b HF folders, scored on the training data at fit start.
        every_n_steps: measure at step 0 and every this many optimizer steps.
        probe_traces: traces in the probe batch (the first ones of the data set).
        micro_batch_size: rows per forward pass on the probe (default: the data's).
        threshold: anchors are tokens with Δc above this.
    """

    def __init__(self, scores: str | None = None, base: str | None = None, bottleneck: str | None = None,
                 every_n_steps: int = 50, probe_traces: int = 32, micro_batch_size: int | None = None,
                 threshold: float = 0.0) -> None:
        if (scores is None) == (base is None or bottleneck is None):
            raise ValueError("DiagnosticsCallback needs either `scores` (a score cache) or both `base` and "
                             "`bottleneck` (HF folders)")
        if every_n_steps < 1 or probe_traces < 1:
            raise ValueError("DiagnosticsCallback: every_n_steps and probe_traces must be >= 1")
        self.scores, self.base, self.bottleneck = scores, base, bottleneck
        self.every_n_steps, self.probe_traces = every_n_steps, probe_traces
        self.micro_batch_size, self.threshold = micro_batch_size, threshold
        self.probe: Any = None
        self.names: tuple[str, ...] = ()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

        from t3s.analysis.diagnose import DiagnosticsError

        if isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy)):
            raise DiagnosticsError(
                f"DiagnosticsCallback needs whole gradients on every process (one device or DDP), not "
                f"{type(trainer.strategy).__name__}'s shards: remove it from trainer.callbacks and run "
                "`t3s diagnose <run>` on the finished run")
        datamodule = trainer.datamodule
        datamodule.setup("fit")
        offsets = data_offsets(datamodule.traces)
        if self.scores is not None:
            from t3s.selection.scores import ScoreCache

            cache = ScoreCache.load(self.scores)
            cache.check_matches(datamodule.fingerprint(), self.scores)
            base, bottleneck = cache.base_logprob, cache.bottleneck_logprob
        else:
            rank, world = trainer.global_rank, trainer.world_size
            base, bottleneck = (score_step(datamodule, Path(folder), offsets, device=str(pl_module.device),
                                           rank=rank, world=world) for folder in (self.base, self.bottleneck))
        groups = token_groups(base, bottleneck, answer_spans(datamodule.traces, datamodule.tokenizer, offsets),
                              self.threshold)
        self.names = groups.names
        self.probe = probe_batch(datamodule, groups.ids, offsets, traces=self.probe_traces,
                                 micro_batch_size=self.micro_batch_size, rank=trainer.global_rank,
                                 world=trainer.world_size).to(pl_module.device)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:
            self._measure(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._measure(trainer, pl_module)

    def measure(self, model: torch.nn.Module) -> dict[str, float]:
        """The ``diagnostics/...`` metrics of ``model`` on the probe batch."""
        counts = self.probe.counts().cpu()
        sums = group_loss_sums(model, self.probe).cpu()
        metrics = {}
        for name, members in zip((*SIDES, *self.names), (ANCHOR, OTHER, *[(g,) for g in range(4)])):
            n = float(counts[list(members)].sum())
            if n:
                metrics[f"diagnostics/confidence/{name}"] = -float(sums[list(members)].sum()) / n
        with torch.enable_grad():
            interaction = gradient_interaction(model, self.probe, ANCHOR, OTHER)
        metrics.update({f"diagnostics/{k}": v for k, v in interaction.items()})
        return metrics

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        was_training = model.training
        model.eval()
        try:
            metrics = self.measure(model)
        finally:
            model.train(was_training)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
