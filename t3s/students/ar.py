"""``ARStudent``: a Hugging Face causal LM fine-tuned on teacher traces with selectable token-level loss.

One optimizer step = one item of the data module's train loader: a list of packed micro-batches
holding exactly this rank's share of the global batch. The loss is the summed negative log-likelihood
of the *selected* tokens divided by the number of selected tokens in the whole global batch (all
micro-batches, all ranks), so gradient accumulation and data parallelism leave it unchanged.
"""

from __future__ import annotations

import copy
import logging
import time
from contextlib import nullcontext
from typing import Any, Literal

import torch
from transformers import AutoTokenizer, PreTrainedModel

from t3s.ops.causal_lm import LOSS_KERNELS, hidden_states, logprobs_at, nll_sum_at, sampled_logprob_sum
from t3s.ops.packed_attention import resolve_attn_implementation
from t3s.ops.speed import compile_decoder_layers
from t3s.selection import FullSFT, SelectionContext, TokenSelectionStrategy
from t3s.students.base import StudentModule

log = logging.getLogger(__name__)



class ARStudent(StudentModule):
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
        adam_eps: AdamW epsilon. Larger values (e.g. 1e-4) make updates shrink with the gradient instead of
            keeping a fixed size once the remaining loss is small.
        warmup_steps: linear warm-up steps from 0 to ``lr``.
        schedule: after warm-up, ``constant``, ``cosine`` or ``linear`` decay to ``min_lr_ratio * lr`` at
            ``trainer.max_steps``.
        min_lr_ratio: floor of the decaying schedules, as a fraction of ``lr``.
        max_grad_norm: clip the global gradient norm to this (``None``: no clipping, norm still logged).
        dtype: dtype the weights are loaded in. With ``trainer.precision=bf16-true`` Lightning casts anyway.
        gradient_checkpointing: recompute decoder activations in backward to save memory.
        attn_implementation: transformers attention kernel. ``auto`` (default): ``flash_attention_3`` /
            ``flash_attention_2`` when installed on CUDA, else ``flex_attention`` with a document mask on
            CUDA, ``sdpa`` elsewhere. Any kernel keeps packed traces apart (see ``t3s.ops.packed_attention``).
        logprob_chunk_size: rows per chunk of the log-prob kernel (memory/speed trade-off).
        loss_kernel: LM-head kernel of the loss on statically selected tokens: ``fused`` (default; gradients
            built in the forward pass, 3 matmuls per trained token), ``chunked`` (recomputes the logits in
            backward: 4 matmuls, no weight-sized buffer between forward and backward) or ``liger``
            (Liger-Kernel's fused linear cross-entropy; CUDA and ``pip install liger-kernel``). Online
            strategies always use the chunked log-prob kernel (they need every token's c_t).
        unselected_logprob_sample: how many masked response tokens per micro-batch get a no-grad LM-head
            pass to estimate ``train/logprob_unselected`` and ``train/loss_all_tokens`` (evenly spaced, sum
            scaled to all masked tokens). ``None`` scores all of them (exact, one LM-head matmul per masked
            token); ``0`` none (those two metrics are logged as NaN), so masked tokens cost nothing.
        compile_layers: ``torch.compile`` each decoder layer before the first training step (GPU; the first
            step pays the compilation). Other speed knobs: ``gradient_checkpointing``; fused AdamW is used
            automatically on CUDA; bf16 master weights are ``dtype: bfloat16`` with ``trainer.precision:
            bf16-true`` (halves weight and Adam memory, e.g. an 8B model on one GPU).
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
        adam_eps: float = 1e-8,
        warmup_steps: int = 0,
        schedule: Literal["constant", "cosine", "linear"] = "cosine",
        min_lr_ratio: float = 0.0,
        max_grad_norm: float | None = 1.0,
        dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32",
        gradient_checkpointing: bool = False,
        attn_implementation: str | None = "auto",
        logprob_chunk_size: int = 2048,
        loss_kernel: Literal["fused", "chunked", "liger"] = "fused",
        unselected_logprob_sample: int | None = 128,
        compile_layers: bool = False,
        trust_remote_code: bool = False,
        init_seed: int = 0,
    ):
        super().__init__()
        if (model is None) == (model_config is None):
            raise ValueError("ARStudent needs exactly one of `model` (hub id / path) or `model_config`")
        if model_config is not None and "model_type" not in model_config:
            raise ValueError("model_config needs a 'model_type' key (e.g. 'qwen3')")
        if loss_kernel not in LOSS_KERNELS:
            raise ValueError(f"unknown loss_kernel {loss_kernel!r}; choose one of {', '.join(LOSS_KERNELS)}")
        if unselected_logprob_sample is not None and unselected_logprob_sample < 0:
            raise ValueError(f"unselected_logprob_sample must be >= 0 or None, got {unselected_logprob_sample}")
        self.save_hyperparameters(ignore=["selection"])
        self.hparams.attn_implementation = resolve_attn_implementation(attn_implementation)
        self.model_source = model
        self.model_config = model_config
        self.tokenizer_source = tokenizer or model
        self.selection = selection or FullSFT()
        self.model: PreTrainedModel | None = None
        self.tokenizer = None
        self._reference: list[PreTrainedModel] = []  # frozen, kept out of the module tree on purpose
        self._warned_empty = False

    # ------------------------------------------------------------------ model
    def configure_model(self) -> None:
        """Load θ_0 (idempotent; Lightning calls it once the strategy is set up)."""
        if self.model is not None:
            return
        self.model = self.build_causal_lm(self.model_source)
        if self.hparams.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.tokenizer_source is not None:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.tokenizer_source, trust_remote_code=self.hparams.trust_remote_code
            )
        if "reference_logprob" in self.selection.requires:
            ref_source = getattr(self.selection, "reference", None)
            reference = self.build_causal_lm(ref_source) if ref_source else copy.deepcopy(self.model)
            reference.requires_grad_(False).eval()
            self._reference = [reference]

    def on_fit_start(self) -> None:
        super().on_fit_start()
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
        n_selected = float(self.all_sum(torch.tensor([float(local)], device=self.device)).item())
        if n_selected == 0 and not self._warned_empty:
            log.warning("step %d: every token of the global batch is masked; the loss is 0", self.global_step)
            self._warned_empty = True
        scale = self.trainer.world_size / max(n_selected, 1.0)

        # Every rank runs the same number of forward/backward passes (FSDP all-gathers weights in each):
        # a rank with fewer micro-batches repeats its last one with zero weight.
        n_micro = int(self.all_max(torch.tensor([len(micro_batches)], device=self.device)).item())
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

        grad_norm = self.clip_gradient_norm()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

        stats = self.all_sum(stats)
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
        """Summed NLL of the selected tokens (with grad) and detached statistics for logging.

        With a static mask only the selected tokens enter the LM head with grad (``loss_kernel``); masked
        tokens cost at most the no-grad pass over ``unselected_logprob_sample`` of them.
        """
        if self.hparams.compile_layers and not getattr(self, "_layers_compiled", False):
            self._layers_compiled = compile_decoder_layers(self.model) > 0
        hidden = self.hidden_states(mb)
        response = ctx.response_mask
        if mask is None:  # online strategy: score every response token, then choose
            mask, lp_response = self._online_mask(hidden, mb, ctx)
            chosen = mask[response]
            lp_sel = lp_response[chosen]
            nll, n_sel = -lp_sel.sum(), lp_sel.numel()
            lp_unsel, n_unsel = float(lp_response[~chosen].detach().sum()), int((~chosen).sum())
        else:
            mask = mask & response
            hp = self.hparams
            nll = nll_sum_at(
                self.model, hidden, mb["input_ids"], mask, chunk_size=hp.logprob_chunk_size, kernel=hp.loss_kernel
            )
            n_sel = int(mask.sum())
            lp_unsel, n_unsel = sampled_logprob_sum(
                self.model, hidden, mb["input_ids"], response & ~mask, hp.unselected_logprob_sample,
                chunk_size=hp.logprob_chunk_size,
            )
        if n_sel == 0:  # keep every parameter in the graph so DDP's reducer stays in step
            nll = nll + 0.0 * hidden.sum()
        stats = torch.tensor(
            [float(nll.detach()), n_sel, lp_unsel, n_unsel, int((mb["trace_index"] >= 0).sum()), 0],
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

def _scatter(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Place ``values`` (one per True in ``mask``) into a NaN-filled tensor shaped like ``mask``."""
    out = torch.full(mask.shape, float("nan"), device=values.device, dtype=torch.float32)
    out[mask] = values.float()
    return out
