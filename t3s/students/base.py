"""What every student family shares: the constructor arguments for the model, the optimiser and the schedule;
one training step (plan → loss per pass → global normalisation → clip → step → log); cross-rank sums; and the
Hugging Face folder written next to every Lightning checkpoint."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from t3s.arg_groups import as_group, group_dict, nest_flat_keys, note_flat_keys
from t3s.ops.causal_lm import DTYPES
from t3s.ops.hf_folders import check_finite, check_hf_folder, looks_local
from t3s.ops.speed import adamw_speed_kwargs
from t3s.runtime.threads import right_size_threads
from t3s.selection import FullSFT, TokenSelectionStrategy
from t3s.students.args import (
    STUDENT_FLAT_KEYS,
    WHERE,
    ExportArgs,
    MemoryArgs,
    OptimizerArgs,
    ShardingArgs,
)
from t3s.students.checkpoints import (
    hf_step_dir,
    link_final,
    load_hf_weights,
    read_hf_weights,
    save_hf_folder,
    strip_prefix,
)
from t3s.students.sharding import (
    ShardedRoot,
    data_parallel_mesh,
    full_state_dict,
    gathered,
    load_full_state_dict,
    shard_model,
)

log = logging.getLogger(__name__)

#: The argument groups of every student: ``model.init_args.<key>`` → its dataclass.
GROUPS = {"optimizer": OptimizerArgs, "memory": MemoryArgs, "sharding": ShardingArgs, "export": ExportArgs}


@dataclass
class StepStats:
    """Additive statistics of a training step: each family subclasses it with its own named float fields.

    Records add field by field (passes of a rank), and :meth:`all_sum` sums them over ranks.
    """

    def __add__(self, other: StepStats) -> StepStats:
        return type(self)(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def all_sum(self, module: StudentModule) -> StepStats:
        """The field-wise sum over every rank (identity on one process)."""
        values = torch.tensor(dataclasses.astuple(self), dtype=torch.float64, device=module.device)
        return type(self)(*module.all_sum(values).tolist())


@dataclass
class PassPlan:
    """What a family prepares for one optimizer step before any forward pass: its plan of passes.

    (Not the data module's :class:`~t3s.data.steps.TraceSchedule`, which traces each step takes.)

    Attributes:
        passes: one item per forward/backward pass of this rank (given back to ``pass_loss``).
        normaliser: this rank's share of the global loss normaliser (selected tokens, sequences, ...).
        stats: statistics known before the forward passes (the passes' statistics are added to them).
    """

    passes: list[Any]
    normaliser: float
    stats: StepStats


class StudentModule(L.LightningModule):
    """Base of ``ARStudent`` and ``DiffusionStudent``: the arguments both take, and one training step.

    Optimisation is manual: one training step = one step batch of the data module. A family implements
    :meth:`plan_step` (the forward/backward passes of this rank and its share of the global normaliser),
    :meth:`pass_loss` (the loss *sum* of one pass and its :class:`StepStats`) and :meth:`step_metrics`; this
    class runs the passes, divides by the global normaliser (all passes, all ranks, so accumulation and
    data parallelism leave the loss unchanged), clips, steps and logs.

    HF folders: ``<run_dir>/hf/step_0`` (θ_0) at the start, ``step_<N>`` at every Lightning checkpoint and
    whenever a callback asks (``ensure_hf_checkpoint``), and ``hf/final`` → the last step.

    Args:
        model: Hugging Face hub id or local path of the student (θ_0).
        model_config: build a randomly initialised model from this config dict instead (keys as in
            ``AutoConfig.for_model``; ``model_type`` required). For tests and tiny experiments.
        tokenizer: tokenizer saved with every HF checkpoint (linked from ``data.tokenizer`` by the CLI;
            defaults to ``model``).
        selection: the token-selection strategy (default: ``FullSFT``).
        optimizer: AdamW and the learning-rate schedule (:class:`~t3s.students.args.OptimizerArgs`).
        memory: activation checkpointing and the log-prob kernels' chunks (:class:`~t3s.students.args.MemoryArgs`).
        sharding: FSDP2 under ``ModelParallelStrategy`` (:class:`~t3s.students.args.ShardingArgs`).
        export: the ``hf/step_<N>`` folders (:class:`~t3s.students.args.ExportArgs`).
        dtype: dtype the weights are loaded in. With ``trainer.precision=bf16-true`` Lightning casts anyway.
        attn_implementation: transformers attention kernel (``sdpa``, ``eager``, ``flash_attention_2``;
            ``None``: the model's default). Packed rows need one that honours restarting ``position_ids``
            (all three do in transformers>=5).
        trust_remote_code: allow model code from the hub (off unless you opt in).
        init_seed: seed for ``model_config`` initialisation.
        **flat: the flat keys of one release ago (``lr``, ``hf_dtype``, …:
            :data:`~t3s.students.args.STUDENT_FLAT_KEYS`), moved into their group with a one-line note.

    The groups are read as ``self.optimizer_args``, ``self.memory_args``, ``self.sharding_args`` and
    ``self.export_args``; the hyper-parameters (``hparams.yaml``, checkpoints) hold them as mappings.
    """

    #: The offline recipe (SFT → θ_b → ``t3s score`` → restart) scores Δc with this family's own teacher-forced
    #: c_t. A family that cannot (diffusion students take Δc from an AR selector) is refused before step 1.
    supports_offline_recipe: bool = False

    #: The evaluation backend that samples this family in torch (a name in ``t3s.evals.backends.BACKENDS``):
    #: what ``backend: hf`` means for it, in the training process and for its saved ``hf/step_<N>`` folders.
    generation_backend: str = "hf"

    @classmethod
    def saved_by(cls, class_path: str | None, folder_config: dict[str, Any]) -> bool:
        """Whether a saved checkpoint belongs to this family: the run's ``model.class_path`` names it (a
        subclass counts by its name's ending), or, for a bare HF folder (``class_path`` None), its ``config.json``
        says so (``folder_config``). The base family answers by name only."""
        return class_path is not None and class_path.endswith(cls.__name__)

    #: raised for a bad constructor argument (families may use a subclass of ValueError)
    config_error: type[ValueError] = ValueError
    #: warned once when a step has nothing in its loss
    empty_step_message = "every token of the global batch is masked; the loss is 0"

    def __init__(
        self,
        model: str | None = None,
        model_config: dict[str, Any] | None = None,
        tokenizer: str | None = None,
        selection: TokenSelectionStrategy | None = None,
        optimizer: OptimizerArgs = OptimizerArgs(),  # noqa: B008 (copied, never shared: as_group)
        memory: MemoryArgs = MemoryArgs(),  # noqa: B008 (copied, never shared: as_group)
        sharding: ShardingArgs = ShardingArgs(),  # noqa: B008 (copied, never shared: as_group)
        export: ExportArgs = ExportArgs(),  # noqa: B008 (copied, never shared: as_group)
        dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32",
        attn_implementation: str | None = "sdpa",
        trust_remote_code: bool = False,
        init_seed: int = 0,
        **flat: Any,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if (model is None) == (model_config is None):
            raise self.config_error(f"{name} needs exactly one of `model` (hub id / path) or `model_config`")
        if model_config is not None and "model_type" not in model_config:
            raise self.config_error("model_config needs a 'model_type' key (e.g. 'qwen3')")
        if model_config is not None:
            odd = _not_plain_data(model_config, "model.init_args.model_config")
            if odd is not None:
                raise self.config_error(f"{odd[0]}: a model config holds numbers, text, lists and mappings, not "
                                        f"{odd[1]} (a class_path mapping there is built as an object)")
        groups = self._groups(name, optimizer=optimizer, memory=memory, sharding=sharding, export=export, **flat)
        self.optimizer_args: OptimizerArgs = groups["optimizer"]
        self.memory_args: MemoryArgs = groups["memory"]
        self.sharding_args: ShardingArgs = groups["sharding"]
        self.export_args: ExportArgs = groups["export"]
        self.automatic_optimization = False
        # collects the arguments of the whole constructor chain (a family's own ones included)
        self.save_hyperparameters(ignore=["selection"])
        self._store_groups(groups)
        self.model_source = model
        self.model_config = model_config
        self.tokenizer_source = tokenizer or model
        self.selection = selection or FullSFT()
        self.model: PreTrainedModel | None = None
        self.tokenizer = None
        self._run_dir: Path | None = None
        self._last_hf_step: int | None = None
        self._warned_empty = False
        self._sharded: list[ShardedRoot] = []  # the FSDP2 root, kept out of the module tree on purpose

    def _groups(self, name: str, **given: Any) -> dict[str, Any]:
        """The four argument groups from what the constructor got, flat keys of one release ago included."""
        nested, moved = nest_flat_keys(given, STUDENT_FLAT_KEYS, WHERE)
        unknown = sorted(set(nested) - set(GROUPS))
        if unknown:
            raise TypeError(f"{name}.__init__() got an unexpected keyword argument {unknown[0]!r}")
        note_flat_keys(moved, STUDENT_FLAT_KEYS, WHERE)
        try:
            return {key: as_group(nested[key], cls, f"{WHERE}.{key}") for key, cls in GROUPS.items()}
        except (ValueError, TypeError) as err:
            raise self.config_error(str(err)) from None

    def _store_groups(self, groups: dict[str, Any]) -> None:
        """The hyper-parameters with each group as a mapping and no flat key (what loggers and checkpoints get)."""
        for key in STUDENT_FLAT_KEYS:
            self._hparams.pop(key, None)
        for key, value in groups.items():
            self._hparams[key] = group_dict(value)
        self._hparams_initial = copy.deepcopy(self._hparams)

    # ----------------------------------------------------------------- model
    def load_model(self) -> None:
        """Set ``self.model`` (θ_0) and ``self.tokenizer``: what a family does in ``configure_model``."""
        raise NotImplementedError

    def configure_model(self) -> None:
        """Load θ_0 (idempotent; Lightning calls it once the strategy is set up), enable activation
        checkpointing, and under ``ModelParallelStrategy`` shard it with FSDP2 (see :mod:`t3s.students.sharding`)."""
        if self.model is not None:
            return
        self.load_model()
        if self._trainer is not None:  # one CPU thread for a small model (t3s.runtime.threads)
            right_size_threads(self.model, self.trainer.strategy.root_device)
        memory, sharding = self.memory_args, self.sharding_args
        if memory.gradient_checkpointing:  # per decoder layer
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            select_checkpointed_layers(self.model, memory.checkpoint_every_n_layers)
        if self.device_mesh is not None:
            self._sharded = [
                shard_model(
                    self.model,
                    data_parallel_mesh(self.device_mesh),
                    param_dtype=sharding.param_dtype,
                    reduce_dtype=sharding.reduce_dtype,
                    reshard_after_forward=sharding.reshard_after_forward,
                )
            ]

    @property
    def sharded(self) -> bool:
        """True when the weights are sharded with FSDP2."""
        return bool(self._sharded)

    def gathered_weights(self) -> AbstractContextManager[None]:
        """Full weights on every rank inside the block, no collective per forward pass (generation under
        FSDP2, where ranks run different numbers of passes). Every rank must enter it together."""
        if self._sharded:
            return gathered(self._sharded[0], self.sharding_args.reshard_after_forward)
        return nullcontext()

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, inside the FSDP2 root's forward when sharded (every weight gathered).

        Every pass that touches the model goes through here; under FSDP2 each rank must make the same
        number of calls.
        """
        if self._sharded:
            return self._sharded[0](fn, *args, **kwargs)
        return fn(*args, **kwargs)

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
        if looks_local(source):
            check_hf_folder(source)
        if bidirectional:
            kwargs["config"] = AutoConfig.from_pretrained(source, trust_remote_code=hp.trust_remote_code)
            kwargs["config"].is_causal = False
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
        check_finite(model.named_parameters(), source)
        # from_pretrained returns eval mode; the student trains it, and Lightning's model summary (a callback's
        # on_fit_start, before the module's own) reports the mode it finds
        return model.train()

    # -------------------------------------------------------------- training
    def plan_step(self, batch: dict[str, Any]) -> PassPlan:
        """The passes of this rank for one step batch, its share of the normaliser, pre-forward stats."""
        raise NotImplementedError

    def pass_loss(self, item: Any) -> tuple[torch.Tensor, StepStats]:
        """The loss *sum* of one pass (with grad; not yet normalised) and its statistics (detached)."""
        raise NotImplementedError

    def step_metrics(self, stats: StepStats, normaliser: float, elapsed: float) -> dict[str, float]:
        """The family's ``train/*`` metrics from the step's statistics summed over ranks."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        started = time.perf_counter()
        plan = self.plan_step(batch)
        local = torch.tensor([plan.normaliser], device=self.device, dtype=torch.float64)
        normaliser = float(self.all_sum(local).item())
        if normaliser == 0 and not self._warned_empty:
            log.warning("step %d: %s", self.global_step, self.empty_step_message)
            self._warned_empty = True
        scale = self.trainer.world_size / max(normaliser, 1.0)

        # Every rank runs the same number of forward/backward passes (FSDP all-gathers weights in each):
        # a rank with fewer passes repeats its last one with zero weight.
        n_pass = int(self.all_max(torch.tensor([len(plan.passes)], device=self.device)).item())
        stats = plan.stats
        block = getattr(self.trainer.strategy, "block_backward_sync", None)
        for k in range(n_pass):
            real = k < len(plan.passes)
            item = plan.passes[min(k, len(plan.passes) - 1)]
            last = k == n_pass - 1
            if self._sharded:  # FSDP2: reduce-scatter the gradients once, after the last pass
                self._sharded[0].set_requires_gradient_sync(last)
            with nullcontext() if last or block is None else block():
                loss_sum, pass_stats = self.run(self.pass_loss, item)
                self.manual_backward(loss_sum * (scale if real else 0.0))
            if real:
                stats = stats + pass_stats

        grad_norm = self.clip_gradient_norm()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

        metrics = self.step_metrics(stats.all_sum(self), normaliser, time.perf_counter() - started)
        metrics["train/grad_norm"] = float(grad_norm)
        metrics["train/lr"] = scheduler.get_last_lr()[0]
        self.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False, rank_zero_only=True)
        self.log("loss", metrics["train/loss"], prog_bar=True, on_step=True, logger=False, rank_zero_only=True)
        return torch.tensor(metrics["train/loss"])

    # ------------------------------------------------------------ optimizers
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.optimizer_args
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr,
            betas=tuple(hp.betas),
            eps=hp.adam_eps,
            **adamw_speed_kwargs(params),  # fused AdamW on CUDA
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
        self.load_restart_weights(folder)
        for optimizer in self.trainer.optimizers:
            optimizer.state.clear()
        for group in self.trainer.lr_scheduler_configs[0].scheduler.optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self.reschedule(start=self.global_step)

    def load_restart_weights(self, folder: str | Path) -> None:
        """Copy the weights of the HF folder ``folder`` into the model (the weights part of ``restart_from``)."""
        if self._sharded:
            load_full_state_dict(self.model, read_hf_weights(folder) if self.trainer.is_global_zero else {})
        else:
            with self._full_weights():
                load_hf_weights(self.model, folder)

    def reschedule(self, start: int) -> None:
        """Replace the LR schedule by one that begins (warm-up included) at optimizer step ``start``."""
        config = self.trainer.lr_scheduler_configs[0]
        hp = self.optimizer_args
        remaining = max(1, self.trainer.max_steps - start) if self.trainer.max_steps > 0 else 1
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            config.scheduler.optimizer, make_schedule(hp.schedule, hp.warmup_steps, remaining, hp.min_lr_ratio)
        )
        for _ in range(self.global_step - start):  # resumed after the restart: catch up
            scheduler.step()
        config.scheduler = scheduler

    def _full_weights(self):
        """Under FSDP1 (``FSDPStrategy``), unshard the weights so they can be overwritten in place."""
        from lightning.pytorch.strategies import FSDPStrategy

        if isinstance(self.trainer.strategy, FSDPStrategy):
            from torch.distributed.fsdp import FullyShardedDataParallel

            return FullyShardedDataParallel.summon_full_params(self.trainer.strategy.model, writeback=True)
        return nullcontext()

    def clip_gradient_norm(self) -> float:
        """Clip to ``max_grad_norm`` (if set) and return the global gradient norm before clipping."""
        max_norm = self.optimizer_args.max_grad_norm or float("inf")
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
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)  # FSDP2: the norm over every shard
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

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
        """Write ``<run_dir>/hf/step_<step>`` in ``export.dtype``. Every rank must call it (sharded weights are
        gathered to rank 0, on the CPU)."""
        if self._sharded:
            state_dict = full_state_dict(self.model)
        elif state_dict is None:
            state_dict = strip_prefix(self.trainer.strategy.lightning_module_state_dict(), "model.")
        self._last_hf_step = step
        if not self.trainer.is_global_zero:
            return None
        dtype = self.export_dtype()
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
        return save_hf_folder(
            self.model, self.tokenizer, hf_step_dir(self.run_dir, step), state_dict, dtype=dtype
        )

    def export_dtype(self) -> torch.dtype:
        """The dtype of the weights in HF folders (``export.dtype``; ``auto``: see :class:`ExportArgs`)."""
        wanted = self.export_args.dtype
        if wanted != "auto":
            return DTYPES[wanted]
        stored = next(self.model.parameters()).dtype
        precision = str(getattr(self._trainer, "precision", "") or "") if self._trainer is not None else ""
        if (stored == torch.bfloat16 or (self.sharded and self.sharding_args.param_dtype == "bfloat16")
                or precision.startswith("bf16")):
            return torch.bfloat16
        return stored

    def ensure_hf_checkpoint(self, step: int) -> None:
        """Make sure ``hf/step_<step>`` exists for the current weights (callbacks evaluate from it)."""
        if self._last_hf_step != step:
            self.save_hf(step)

    def on_fit_start(self) -> None:
        self._run_dir = None
        _ = self.run_dir  # resolve on every rank together
        if self.trainer.is_global_zero:
            remove_stale_temporaries(self.run_dir)
        self.model.train()  # from_pretrained returns eval mode
        datamodule = self.trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "fingerprint"):
            self.selection.setup(datamodule.fingerprint())

    def on_train_start(self) -> None:
        self.model.train()
        if self.global_step == 0:
            self.ensure_hf_checkpoint(0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.export_args.folders == "evaluated":
            return
        if self._last_hf_step != self.global_step:  # a callback may have written this step already
            self.save_hf(self.global_step, strip_prefix(checkpoint["state_dict"], "model."))

    def on_train_end(self) -> None:
        self.ensure_hf_checkpoint(self.global_step)
        if self.trainer.is_global_zero:
            link_final(self.run_dir, self.global_step)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.configure_model()


def _not_plain_data(value: Any, key: str) -> tuple[str, str] | None:
    """The first key under ``value`` that holds something other than JSON-like data, and what it holds."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "class_path":
                return f"{key}.class_path", "a class_path mapping"
            found = _not_plain_data(v, f"{key}.{k}")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        return next((f for i, v in enumerate(value) if (f := _not_plain_data(v, f"{key}[{i}]"))), None)
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    return key, f"a {type(value).__module__}.{type(value).__qualname__} object"


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete what an interrupted write left in a run folder (``hf/.step_N.tmp-*``, ``.last.ckpt.tmp-*``)."""
    import shutil

    stale = [p for folder in (run_dir / "hf", run_dir / "checkpoints") if folder.is_dir()
             for p in folder.glob(".*.tmp-*")]
    stale += [p for p in (run_dir / "hf").glob(".*.old-*")] if (run_dir / "hf").is_dir() else []
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d temporary file(s) left by an interrupted run in %s", len(stale), run_dir)
    return stale


def select_checkpointed_layers(model: torch.nn.Module, every_n: int) -> list[bool]:
    """Keep activation checkpointing on every ``every_n``-th decoder layer only (selective checkpointing).

    Acts on transformers' per-layer ``gradient_checkpointing`` flags (set by ``gradient_checkpointing_enable``);
    returns the flag of each decoder layer.
    """
    if every_n < 1:
        raise ValueError(f"checkpoint_every_n_layers must be >= 1, got {every_n}")
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for index, layer in enumerate(layers):
        layer.gradient_checkpointing = layer.gradient_checkpointing and index % every_n == 0
    return [layer.gradient_checkpointing for layer in layers]


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
