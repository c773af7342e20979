"""The grouped constructor arguments of every student (``model.init_args.<group>.<key>``).

``StudentModule`` takes four groups besides its flat arguments (``model``, ``model_config``, ``tokenizer``,
``selection``, ``dtype``, ``attn_implementation``, ``trust_remote_code``, ``init_seed``: what the model is and
how it is built, which every family reads, some with a family default of its own)::

    model:
      class_path: t3s.students.ARStudent
      init_args:
        model: Qwen/Qwen3-1.7B
        optimizer: {lr: 1.0e-5, warmup_steps: 20, schedule: cosine}
        memory: {gradient_checkpointing: true}
        sharding: {param_dtype: bfloat16}
        export: {dtype: bfloat16, folders: evaluated}

The flat spellings of one release ago (``model.init_args.lr``) are read too (:data:`STUDENT_FLAT_KEYS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

WHERE = "model.init_args"

Dtype = Literal["bfloat16", "float16", "float32"]


@dataclass
class OptimizerArgs:
    """AdamW and its learning-rate schedule (``model.init_args.optimizer``).

    Attributes:
        lr: peak learning rate (paper: 1e-5).
        weight_decay: weight decay of the matrices (biases and norms get none).
        betas: AdamW betas.
        adam_eps: AdamW epsilon. Larger values (e.g. 1e-4) make updates shrink with the gradient instead of
            keeping a fixed size once the remaining loss is small.
        warmup_steps: linear warm-up steps from 0 to ``lr``.
        schedule: after warm-up, ``constant``, ``cosine`` or ``linear`` decay to ``min_lr_ratio * lr`` at
            ``trainer.max_steps``.
        min_lr_ratio: floor of the decaying schedules, as a fraction of ``lr``.
        max_grad_norm: clip the global gradient norm to this (``None``: no clipping, the norm still logged).
    """

    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    min_lr_ratio: float = 0.0
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]  # a YAML list
        for key, valid, what in (
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a positive number"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("adam_eps", self.adam_eps > 0, "a positive number"),
            ("betas", len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "two numbers in [0, 1)"),
            ("warmup_steps", self.warmup_steps >= 0, ">= 0"),
            ("schedule", self.schedule in ("constant", "cosine", "linear"), "constant, cosine or linear"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0, "positive or null"),
        ):
            if not valid:
                raise ValueError(f"{WHERE}.optimizer.{key} must be {what}, got {getattr(self, key)!r}")


@dataclass
class MemoryArgs:
    """What trades speed for memory in the forward and backward passes (``model.init_args.memory``).

    Attributes:
        gradient_checkpointing: recompute decoder activations in backward to save memory.
        checkpoint_every_n_layers: with ``gradient_checkpointing``, recompute only every N-th decoder layer
            (selective activation checkpointing: ``2`` keeps the activations of half the layers, a middle
            ground between speed and memory; ``1``: every layer).
        logprob_chunk_size: rows per chunk of the log-prob kernels (memory/speed trade-off).
    """

    gradient_checkpointing: bool = False
    checkpoint_every_n_layers: int = 1
    logprob_chunk_size: int = 2048

    def __post_init__(self) -> None:
        for key in ("checkpoint_every_n_layers", "logprob_chunk_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{WHERE}.memory.{key} must be >= 1, got {getattr(self, key)!r}")


@dataclass
class ShardingArgs:
    """FSDP2 under ``ModelParallelStrategy`` (``model.init_args.sharding``; ignored on one device and DDP).

    Attributes:
        param_dtype: dtype of the gathered weights in forward and backward (``bfloat16`` with float32 stored
            weights: mixed precision; ``None``: the stored dtype).
        reduce_dtype: dtype of the gradient reduce-scatter (``None``: the gradients' dtype).
        reshard_after_forward: free the gathered weights of a layer after its forward (less memory, one more
            all-gather in backward).
    """

    param_dtype: Dtype | None = None
    reduce_dtype: Dtype | None = "float32"
    reshard_after_forward: bool = True

    def __post_init__(self) -> None:
        for key in ("param_dtype", "reduce_dtype"):
            if getattr(self, key) not in (None, "bfloat16", "float16", "float32"):
                raise ValueError(f"{WHERE}.sharding.{key} must be bfloat16, float16, float32 or null, "
                                 f"got {getattr(self, key)!r}")


@dataclass
class ExportArgs:
    """The Hugging Face folders written beside the Lightning checkpoints (``model.init_args.export``).

    Attributes:
        dtype: dtype of the weights in ``hf/step_<N>``. ``auto``: bfloat16 when the run computes in bfloat16
            (weights, ``sharding.param_dtype`` or a ``bf16`` trainer precision), else the weights' dtype.
        folders: ``every_checkpoint`` writes an HF folder at every Lightning checkpoint; ``evaluated`` only where
            a callback evaluates (``ensure_hf_checkpoint``), plus ``step_0`` and the final step.
    """

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    folders: Literal["every_checkpoint", "evaluated"] = "every_checkpoint"

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"{WHERE}.export.dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.folders not in ("every_checkpoint", "evaluated"):
            raise ValueError(f"{WHERE}.export.folders must be every_checkpoint or evaluated, got {self.folders!r}")


#: The flat keys of one release ago (``model.init_args.<key>``) and where they live now.
STUDENT_FLAT_KEYS: dict[str, str] = {
    **{k: f"optimizer.{k}" for k in ("lr", "weight_decay", "betas", "adam_eps", "warmup_steps", "schedule",
                                     "min_lr_ratio", "max_grad_norm")},
    **{k: f"memory.{k}" for k in ("gradient_checkpointing", "checkpoint_every_n_layers", "logprob_chunk_size")},
    "fsdp_param_dtype": "sharding.param_dtype",
    "fsdp_reduce_dtype": "sharding.reduce_dtype",
    "fsdp_reshard_after_forward": "sharding.reshard_after_forward",
    "hf_dtype": "export.dtype",
    "hf_folders": "export.folders",
}
