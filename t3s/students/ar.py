"""``ARStudent``: a Hugging Face causal LM fine-tuned on teacher traces with selectable token-level loss.

One optimizer step = one item of the data module's train loader: a list of packed micro-batches
holding exactly this rank's share of the global batch. The loss is the summed negative log-likelihood
of the *selected* tokens divided by the number of selected tokens in the whole global batch (all
micro-batches, all ranks), so gradient accumulation and data parallelism leave it unchanged.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from t3s.ops.causal_lm import hidden_states, logprobs_at
from t3s.selection import FullSFT, SelectionContext, TokenSelectionStrategy
from t3s.students.checkpoints import hf_step_dir, link_final, load_hf_weights, save_hf_folder, strip_prefix

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ARStudent(L.LightningModule):
    """An autoregressive student with a token-selection strategy in its loss.

    Args:
        model: Hugging Face hub id or local path of the student (θ_0).
        model_config: build a randomly initialised model from this config dict instead (keys as in
            ``AutoConfig.for_model``; ``model_type`` required). For tests and tiny experiments.
        tokenizer: tokenizer saved with every HF checkpoint (linked from ``data.tokenizer`` by the CLI;
            defaults to ``model``).
        selection: which response tokens enter the loss (default: ``FullSFT``).
        lr: peak learning rate of AdamW (paper: 1e-5).
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_steps: linear warm-up steps from 0 to ``lr``.
        schedule: after warm-up, ``constant``, ``cosine`` or ``linear`` decay to ``min_lr_ratio * lr`` at
            ``trainer.max_steps``.
        min_lr_ratio: floor of the decaying schedules, as a fraction of ``lr``.
        max_grad_norm: clip the global gradient norm to this (``None``: no clipping, norm still logged).
        dtype: dtype the weights are loaded in. With ``trainer.precision=bf16-true`` Lightning casts anyway.
        gradient_checkpointing: recompute decoder activations in backward to save memory.
        attn_implementation: transformers attention kernel (``sdpa``, ``eager``, ``flash_attention_2``).
            Packed rows need one that honours restarting ``position_ids`` (all three do in transformers>=5).
        logprob_chunk_size: rows per chunk of the log-prob kernel (memory/speed trade-off).
        trust_remote_code: allow model code from the hub (off unless you opt in).
        init_seed: seed for ``model_config`` initialisation.
    """

    def __init__(
        self,
        model: str | None = None,
        model_config: dict[str, Any] | None = None,
        tokenizer: str | None = None,
        selection: TokenSelectionStrategy | None = None,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int = 0,
        schedule: Literal["constant", "cosine", "linear"] = "cosine",
        min_lr_ratio: float = 0.0,
        max_grad_norm: float | None = 1.0,
        dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32",
        gradient_checkpointing: bool = False,
        attn_implementation: str | None = "sdpa",
        logprob_chunk_size: int = 2048,
        trust_remote_code: bool = False,
        init_seed: int = 0,
    ):
        super().__init__()
        if (model is None) == (model_config is None):
            raise ValueError("ARStudent needs exactly one of `model` (hub id / path) or `model_config`")
        if model_config is not None and "model_type" not in model_config:
            raise ValueError("model_config needs a 'model_type' key (e.g. 'qwen3')")
        self.save_hyperparameters(ignore=["selection"])
        self.model_source = model
        self.model_config = model_config
        self.tokenizer_source = tokenizer or model
        self.selection = selection or FullSFT()
        self.automatic_optimization = False
        self.model: PreTrainedModel | None = None
        self.tokenizer = None
        self._reference: list[PreTrainedModel] = []  # frozen, kept out of the module tree on purpose
        self._warned_empty = False
        self._run_dir: Path | None = None
        self._last_hf_step: int | None = None

    # ------------------------------------------------------------------ model
    def configure_model(self) -> None:
        """Load θ_0 (idempotent; Lightning calls it once the strategy is set up)."""
        if self.model is not None:
            return
        self.model = self._build_model(self.model_source)
        if self.hparams.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.tokenizer_source is not None:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.tokenizer_source, trust_remote_code=self.hparams.trust_remote_code
            )
        if "reference_logprob" in self.selection.requires:
            ref_source = getattr(self.selection, "reference", None)
            reference = self._build_model(ref_source) if ref_source else copy.deepcopy(self.model)
            reference.requires_grad_(False).eval()
            self._reference = [reference]

    def _build_model(self, source: str | None) -> PreTrainedModel:
        hp = self.hparams
        dtype = "auto" if hp.dtype == "auto" else _DTYPES[hp.dtype]
        kwargs: dict[str, Any] = {"trust_remote_code": hp.trust_remote_code}
        if hp.attn_implementation:
            kwargs["attn_implementation"] = hp.attn_implementation
        if source is None:
            cfg = dict(self.model_config)
            config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(hp.init_seed)
                model = AutoModelForCausalLM.from_config(config, **kwargs)
            return model.to(dtype if dtype != "auto" else torch.float32)
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)

    def on_fit_start(self) -> None:
        self._run_dir = None
        _ = self.run_dir  # resolve on every rank together
        datamodule = self.trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "fingerprint"):
            self.selection.setup(datamodule.fingerprint())
        for ref in self._reference:
            ref.to(self.device)

    # --------------------------------------------------------------- forward
    def hidden_states(self, micro_batch: dict[str, torch.Tensor], model: PreTrainedModel | None = None) -> torch.Tensor:
        """Final hidden states ``[R, L, H]`` of packed rows (no logits are computed here)."""
        return hidden_states(model or self.model, micro_batch["input_ids"], micro_batch["position_ids"])

    def logprobs_at(
        self,
        hidden: torch.Tensor,
        input_ids: torch.Tensor,
        token_mask: torch.Tensor,
        *,
        with_entropy: bool = False,
        model: PreTrainedModel | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """c_t for the tokens where ``token_mask`` is True, through the chunked kernel."""
        return logprobs_at(
            model or self.model, hidden, input_ids, token_mask,
            chunk_size=self.hparams.logprob_chunk_size, with_entropy=with_entropy,
        )

    @staticmethod
    def selection_context(micro_batch: dict[str, torch.Tensor]) -> SelectionContext:
        response = micro_batch["labels"] != -100
        response[:, 0] = False  # the first token of a row has no predecessor
        return SelectionContext(response, micro_batch["trace_index"], micro_batch["position_ids"])

    # -------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        started = time.perf_counter()
        micro_batches = batch["micro_batches"]
        contexts = [self.selection_context(mb) for mb in micro_batches]
        masks = [None if self.selection.online else self.selection.loss_mask(ctx) for ctx in contexts]
        local = sum(
            (self.selection.budget(ctx) if mask is None else int(mask.sum())) for ctx, mask in zip(contexts, masks)
        )
        n_selected = float(self._all_sum(torch.tensor([float(local)], device=self.device)).item())
        if n_selected == 0 and not self._warned_empty:
            log.warning("step %d: every token of the global batch is masked; the loss is 0", self.global_step)
            self._warned_empty = True
        scale = self.trainer.world_size / max(n_selected, 1.0)

        # Every rank runs the same number of forward/backward passes (FSDP all-gathers weights in each):
        # a rank with fewer micro-batches repeats its last one with zero weight.
        n_micro = int(self._all_max(torch.tensor([len(micro_batches)], device=self.device)).item())
        stats = torch.zeros(6, device=self.device, dtype=torch.float64)
        block = getattr(self.trainer.strategy, "block_backward_sync", None)
        for i in range(n_micro):
            real = i < len(micro_batches)
            j = min(i, len(micro_batches) - 1)
            with nullcontext() if i == n_micro - 1 or block is None else block():
                nll, micro_stats = self._micro_batch_loss(micro_batches[j], contexts[j], masks[j])
                self.manual_backward(nll * (scale if real else 0.0))
            if real:
                stats += micro_stats
        stats[5] = float(batch.get("num_traces", 0))

        grad_norm = self._clip_gradients()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

        stats = self._all_sum(stats)
        nll_sel, n_sel, lp_unsel, n_unsel, n_tokens, n_traces = stats.tolist()
        elapsed = time.perf_counter() - started
        loss = nll_sel / max(n_sel, 1.0)
        metrics = {
            "train/loss": loss,
            "train/loss_all_tokens": (nll_sel - lp_unsel) / max(n_sel + n_unsel, 1.0),
            "train/selected_fraction": n_sel / max(n_sel + n_unsel, 1.0),
            "train/logprob_selected": -nll_sel / n_sel if n_sel else float("nan"),
            "train/logprob_unselected": lp_unsel / n_unsel if n_unsel else float("nan"),
            "train/tokens_per_s": n_tokens / max(elapsed, 1e-9),
            "train/traces": n_traces,
            "train/selected_tokens": n_sel,
            "train/response_tokens": n_sel + n_unsel,
            "train/grad_norm": float(grad_norm),
            "train/lr": scheduler.get_last_lr()[0],
        }
        self.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False, rank_zero_only=True)
        self.log("loss", loss, prog_bar=True, on_step=True, logger=False, rank_zero_only=True)
        return torch.tensor(loss)

    def _micro_batch_loss(
        self, mb: dict[str, torch.Tensor], ctx: SelectionContext, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed NLL of the selected tokens (with grad) and detached statistics for logging."""
        hidden = self.hidden_states(mb)
        response = ctx.response_mask
        if mask is None:  # online strategy: score every response token, then choose
            mask, lp_response = self._online_mask(hidden, mb, ctx)
            chosen = mask[response]
            lp_sel, lp_unsel = lp_response[chosen], lp_response[~chosen].detach()
        else:
            mask = mask & response
            lp_sel = self.logprobs_at(hidden, mb["input_ids"], mask)
            with torch.no_grad():
                lp_unsel = self.logprobs_at(hidden.detach(), mb["input_ids"], response & ~mask)
        nll = -lp_sel.sum()
        if lp_sel.numel() == 0:  # keep every parameter in the graph so DDP's reducer stays in step
            nll = nll + 0.0 * hidden.sum()
        stats = torch.tensor(
            [
                float(-lp_sel.detach().sum()),
                lp_sel.numel(),
                float(lp_unsel.sum()),
                lp_unsel.numel(),
                int((mb["trace_index"] >= 0).sum()),
                0,
            ],
            device=self.device,
            dtype=torch.float64,
        )
        return nll, stats

    def _online_mask(
        self, hidden: torch.Tensor, mb: dict[str, torch.Tensor], ctx: SelectionContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        response = ctx.response_mask
        need_entropy = "entropy" in self.selection.requires
        result = self.logprobs_at(hidden, mb["input_ids"], response, with_entropy=need_entropy)
        lp, entropy = result if need_entropy else (result, None)
        ctx.student_logprob = _scatter(response, lp.detach())
        if entropy is not None:
            ctx.entropy = _scatter(response, entropy)
        if self._reference:
            ref = self._reference[0]
            with torch.no_grad():
                ref_hidden = self.hidden_states(mb, model=ref)
                ctx.reference_logprob = _scatter(response, self.logprobs_at(ref_hidden, mb["input_ids"], response, model=ref))
        return self.selection.loss_mask(ctx) & response, lp

    def _clip_gradients(self) -> float:
        max_norm = self.hparams.max_grad_norm or float("inf")
        wrapped = self.trainer.model
        if hasattr(wrapped, "clip_grad_norm_"):  # FSDP: the sharded root computes the global norm
            return float(wrapped.clip_grad_norm_(max_norm))
        params = [p for p in self.parameters() if p.grad is not None]
        if not params:
            return 0.0
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def _all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.trainer.world_size == 1:
            return tensor
        return self.trainer.strategy.reduce(tensor, reduce_op="sum")

    def _all_max(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.trainer.world_size == 1:
            return tensor
        return self.all_gather(tensor).max()

    # ------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        nll, count = 0.0, 0
        for mb in batch["micro_batches"]:
            ctx = self.selection_context(mb)
            lp = self.logprobs_at(self.hidden_states(mb), mb["input_ids"], ctx.response_mask)
            nll += float(-lp.sum())
            count += lp.numel()
        self.log(f"{stage}/loss", nll / max(count, 1), batch_size=max(count, 1), sync_dist=True)

    def restart_from(self, folder: str | Path) -> None:
        """Reload weights from an HF folder and start a fresh optimizer and LR schedule (online T3S).

        The new schedule spans the steps left until ``trainer.max_steps``.
        """
        load_hf_weights(self.model, folder)
        for optimizer in self.trainer.optimizers:
            optimizer.state.clear()
        config = self.trainer.lr_scheduler_configs[0]
        hp = self.hparams
        remaining = max(1, self.trainer.max_steps - self.global_step) if self.trainer.max_steps > 0 else 1
        for group in config.scheduler.optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        config.scheduler = torch.optim.lr_scheduler.LambdaLR(
            config.scheduler.optimizer, make_schedule(hp.schedule, hp.warmup_steps, remaining, hp.min_lr_ratio)
        )

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
        )
        total = self.trainer.max_steps if self.trainer.max_steps and self.trainer.max_steps > 0 else None
        if total is None:
            total = int(self.trainer.estimated_stepping_batches)
        lr_lambda = make_schedule(hp.schedule, hp.warmup_steps, total, hp.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

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

    def on_train_start(self) -> None:
        self.model.train()
        if self.global_step == 0:
            self.ensure_hf_checkpoint(0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._last_hf_step != self.global_step:  # a callback may have written this step already
            self.save_hf(self.global_step, strip_prefix(checkpoint["state_dict"], "model."))

    def on_train_end(self) -> None:
        if self._last_hf_step != self.global_step:
            self.save_hf(self.global_step)
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


def _scatter(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Place ``values`` (one per True in ``mask``) into a NaN-filled tensor shaped like ``mask``."""
    out = torch.full(mask.shape, float("nan"), device=values.device, dtype=torch.float32)
    out[mask] = values.float()
    return out
