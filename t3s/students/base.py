"""What every student family shares: optimizer and schedule, gradient clipping, cross-rank sums, and the
Hugging Face folder written next to every Lightning checkpoint."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from t3s.ops.causal_lm import DTYPES
from t3s.students.checkpoints import hf_step_dir, link_final, load_hf_weights, save_hf_folder, strip_prefix


class StudentModule(L.LightningModule):
    """Base of ``ARStudent`` and ``DiffusionStudent``.

    Subclasses set ``self.model`` (an HF ``PreTrainedModel``, see :meth:`build_causal_lm`) and ``self.tokenizer``
    in ``configure_model``, keep ``self.model_config``, and save these hyper-parameters: ``lr``,
    ``weight_decay``, ``betas``, ``adam_eps``, ``warmup_steps``, ``schedule``, ``min_lr_ratio``,
    ``max_grad_norm``. Optimisation is manual: one training step = one step batch.

    HF folders: ``<run_dir>/hf/step_0`` (θ_0) at the start, ``step_<N>`` at every Lightning checkpoint and
    whenever a callback asks (``ensure_hf_checkpoint``), and ``hf/final`` → the last step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self._run_dir: Path | None = None
        self._last_hf_step: int | None = None

    # ----------------------------------------------------------------- model
    def build_causal_lm(self, source: str | None, *, bidirectional: bool = False) -> PreTrainedModel:
        """Load ``source`` (hub id / path) or, when None, build a seeded random model from ``model_config``.

        Uses the ``dtype``, ``attn_implementation``, ``trust_remote_code`` and ``init_seed`` hyper-parameters;
        ``bidirectional`` sets ``config.is_causal = False`` (diffusion students).
        """
        hp = self.hparams
        dtype = "auto" if hp.dtype == "auto" else DTYPES[hp.dtype]
        kwargs: dict[str, Any] = {"trust_remote_code": hp.trust_remote_code}
        if hp.attn_implementation:
            kwargs["attn_implementation"] = hp.attn_implementation
        if source is None:
            cfg = dict(self.model_config)
            config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
            if bidirectional:
                config.is_causal = False
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(hp.init_seed)
                model = AutoModelForCausalLM.from_config(config, **kwargs)
            return model.to(dtype if dtype != "auto" else torch.float32)
        if bidirectional:
            kwargs["config"] = AutoConfig.from_pretrained(source, trust_remote_code=hp.trust_remote_code)
            kwargs["config"].is_causal = False
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)

    # ------------------------------------------------------------ optimizers
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr,
            betas=tuple(hp.betas),
            eps=hp.get("adam_eps", 1e-8),
        )
        total = self.trainer.max_steps if self.trainer.max_steps and self.trainer.max_steps > 0 else None
        if total is None:
            total = int(self.trainer.estimated_stepping_batches)
        lr_lambda = make_schedule(hp.schedule, hp.warmup_steps, total, hp.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def restart_from(self, folder: str | Path) -> None:
        """Reload weights from an HF folder and start a fresh optimizer and LR schedule (online T3S).

        The masked phase gets the steps left until ``trainer.max_steps``, on a schedule of that length.
        """
        with self._full_weights():
            load_hf_weights(self.model, folder)
        for optimizer in self.trainer.optimizers:
            optimizer.state.clear()
        for group in self.trainer.lr_scheduler_configs[0].scheduler.optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self.reschedule(start=self.global_step)

    def reschedule(self, start: int) -> None:
        """Replace the LR schedule by one that begins (warm-up included) at optimizer step ``start``."""
        config = self.trainer.lr_scheduler_configs[0]
        hp = self.hparams
        remaining = max(1, self.trainer.max_steps - start) if self.trainer.max_steps > 0 else 1
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            config.scheduler.optimizer, make_schedule(hp.schedule, hp.warmup_steps, remaining, hp.min_lr_ratio)
        )
        for _ in range(self.global_step - start):  # resumed after the restart: catch up
            scheduler.step()
        config.scheduler = scheduler

    def _full_weights(self):
        """Under FSDP, unshard the weights so they can be overwritten in place (written back on exit)."""
        from contextlib import nullcontext

        from lightning.pytorch.strategies import FSDPStrategy

        if isinstance(self.trainer.strategy, FSDPStrategy):
            from torch.distributed.fsdp import FullyShardedDataParallel

            return FullyShardedDataParallel.summon_full_params(self.trainer.strategy.model, writeback=True)
        return nullcontext()

    def clip_gradient_norm(self) -> float:
        """Clip to ``max_grad_norm`` (if set) and return the global gradient norm before clipping."""
        max_norm = self.hparams.max_grad_norm or float("inf")
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None:  # fp16: clip the true gradients, not the loss-scaled ones
            for optimizer in self.trainer.optimizers:
                scaler.unscale_(optimizer)
        wrapped = self.trainer.model
        if hasattr(wrapped, "clip_grad_norm_"):  # FSDP: the sharded root computes the global norm
            return float(wrapped.clip_grad_norm_(max_norm))
        params = [p for p in self.parameters() if p.grad is not None]
        if not params:
            return 0.0
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    # ----------------------------------------------------------- collectives
    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (identity on one process)."""
        if self.trainer.world_size == 1:
            return tensor
        return self.trainer.strategy.reduce(tensor, reduce_op="sum")

    def all_max(self, tensor: torch.Tensor) -> torch.Tensor:
        """Maximum over ranks (identity on one process)."""
        if self.trainer.world_size == 1:
            return tensor
        return self.all_gather(tensor).max()

    # ----------------------------------------------------------- checkpoints
    @property
    def run_dir(self) -> Path:
        """Where this run's HF folders go (fixed at fit start: ``trainer.log_dir`` is a collective call)."""
        if self._run_dir is None:
            self._run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        return self._run_dir

    def save_hf(self, step: int, state_dict: dict[str, torch.Tensor] | None = None) -> Path | None:
        """Write ``<run_dir>/hf/step_<step>``. Every rank must call it (FSDP gathers the weights)."""
        if state_dict is None:
            state_dict = strip_prefix(self.trainer.strategy.lightning_module_state_dict(), "model.")
        self._last_hf_step = step
        if not self.trainer.is_global_zero:
            return None
        return save_hf_folder(self.model, self.tokenizer, hf_step_dir(self.run_dir, step), state_dict)

    def ensure_hf_checkpoint(self, step: int) -> None:
        """Make sure ``hf/step_<step>`` exists for the current weights (callbacks evaluate from it)."""
        if self._last_hf_step != step:
            self.save_hf(step)

    def on_fit_start(self) -> None:
        self._run_dir = None
        _ = self.run_dir  # resolve on every rank together
        self.model.train()  # from_pretrained returns eval mode

    def on_train_start(self) -> None:
        self.model.train()
        if self.global_step == 0:
            self.ensure_hf_checkpoint(0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._last_hf_step != self.global_step:  # a callback may have written this step already
            self.save_hf(self.global_step, strip_prefix(checkpoint["state_dict"], "model."))

    def on_train_end(self) -> None:
        self.ensure_hf_checkpoint(self.global_step)
        if self.trainer.is_global_zero:
            link_final(self.run_dir, self.global_step)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.configure_model()


def make_schedule(kind: str, warmup: int, total: int, min_ratio: float):
    """LR multiplier: linear warm-up, then constant / cosine / linear decay to ``min_ratio`` at ``total``."""

    def lr_lambda(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "cosine":
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if kind == "linear":
            return min_ratio + (1 - min_ratio) * (1 - progress)
        raise ValueError(f"unknown schedule {kind!r}; choose constant, cosine or linear")

    return lr_lambda
