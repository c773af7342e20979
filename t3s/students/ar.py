"""``ARStudent``: a Hugging Face causal LM fine-tuned on teacher traces with selectable token-level loss.

One optimizer step = one item of the data module's train loader: a list of packed micro-batches
holding exactly this rank's share of the global batch. The loss is the summed negative log-likelihood
of the *selected* tokens divided by the number of selected tokens in the whole global batch (all
micro-batches, all ranks), so gradient accumulation and data parallelism leave it unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import AutoTokenizer, PreTrainedModel

from t3s.data.render import IGNORE_INDEX
from t3s.ops.causal_lm import LOSS_KERNELS, hidden_states, logprobs_at, nll_sum_at, sampled_logprob_sum
from t3s.ops.packed_attention import resolve_attn_implementation
from t3s.ops.speed import compile_decoder_layers
from t3s.selection import SelectionContext
from t3s.students.adapters import AdapterMixin, AdapterSpec
from t3s.students.base import PassPlan, StepStats, StudentModule


@dataclass
class ARStepStats(StepStats):
    """Sums over the passes (and ranks) of one step of :class:`ARStudent`."""

    nll_selected: float = 0.0  #: Σ −log p of the selected tokens
    selected: float = 0.0  #: selected tokens
    logprob_unselected: float = 0.0  #: Σ log p of the response tokens left out of the loss
    unselected: float = 0.0  #: response tokens left out
    tokens: float = 0.0  #: trace tokens of the rows (throughput)
    traces: float = 0.0  #: traces in the step


@dataclass
class _Pass:
    micro_batch: dict[str, torch.Tensor]
    context: SelectionContext
    mask: torch.Tensor | None  # None: an online strategy chooses from the forward pass


class ARStudent(AdapterMixin, StudentModule):
    """An autoregressive student with a token-selection strategy in its loss.

    Takes the arguments of :class:`~t3s.students.base.StudentModule` (model, tokenizer, selection, AdamW
    and schedule, dtype, kernels); ``selection`` names the response tokens that enter the loss.

    Args:
        attn_implementation: transformers attention kernel. ``auto`` (default): ``flash_attention_3`` /
            ``flash_attention_2`` when installed on CUDA, else ``flex_attention`` with a document mask on
            CUDA, ``sdpa`` elsewhere. Any kernel keeps packed traces apart (see ``t3s.ops.packed_attention``).
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
            step pays the compilation). Other speed knobs: ``memory.gradient_checkpointing``; fused AdamW is used
            automatically on CUDA; bf16 master weights are ``dtype: bfloat16`` with ``trainer.precision:
            bf16-true`` (halves weight and Adam memory, e.g. an 8B model on one GPU).
        adapter: train LoRA / DoRA adapters on a frozen base instead of every weight (``{kind: lora, r: 16}``;
            see :class:`~t3s.students.adapters.AdapterSpec`). ``null`` (default): full fine-tuning.
    """

    supports_offline_recipe = True

    def __init__(
        self,
        attn_implementation: str | None = "auto",
        loss_kernel: Literal["fused", "chunked", "liger"] = "fused",
        unselected_logprob_sample: int | None = 128,
        compile_layers: bool = False,
        adapter: AdapterSpec | None = None,
        **kwargs: Any,
    ) -> None:
        if loss_kernel not in LOSS_KERNELS:
            raise ValueError(f"unknown loss_kernel {loss_kernel!r}; choose one of {', '.join(LOSS_KERNELS)}")
        if unselected_logprob_sample is not None and unselected_logprob_sample < 0:
            raise ValueError(f"unselected_logprob_sample must be >= 0 or None, got {unselected_logprob_sample}")
        self.adapter = AdapterSpec.of(adapter)
        super().__init__(attn_implementation=attn_implementation, **kwargs)
        self.hparams.attn_implementation = resolve_attn_implementation(attn_implementation)
        self._reference: list[PreTrainedModel] = []  # frozen, kept out of the module tree on purpose

    # ------------------------------------------------------------------ model
    def load_model(self) -> None:
        """Load θ_0, the tokenizer, a frozen reference model if the strategy needs one, then the adapters."""
        if self.adapter is not None and self.adapter.quantize is not None:
            self.model = self.build_quantized_base()
        else:
            self.model = self.build_causal_lm(self.model_source)
        if self.tokenizer_source is not None:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.tokenizer_source, trust_remote_code=self.hparams.trust_remote_code
            )
        if "reference_logprob" in self.selection.requires:
            ref_source = getattr(self.selection, "reference", None)
            reference = self.build_causal_lm(ref_source) if ref_source else copy.deepcopy(self.model)
            reference.requires_grad_(False).eval()
            self._reference = [reference]
        if self.adapter is not None:
            self.attach_adapter()

    def on_fit_start(self) -> None:
        super().on_fit_start()
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
            chunk_size=self.memory_args.logprob_chunk_size, with_entropy=with_entropy,
        )

    @staticmethod
    def selection_context(micro_batch: dict[str, torch.Tensor]) -> SelectionContext:
        response = micro_batch["labels"] != IGNORE_INDEX
        response[:, 0] = False  # the first token of a row has no predecessor
        return SelectionContext(response, micro_batch["trace_index"], micro_batch["position_ids"])

    # -------------------------------------------------------------- training
    def plan_step(self, batch: dict[str, Any]) -> PassPlan:
        """One pass per micro-batch; the normaliser counts the selected tokens (an online strategy's budget)."""
        passes = []
        for mb in batch["micro_batches"]:
            ctx = self.selection_context(mb)
            passes.append(_Pass(mb, ctx,
                                None if self.selection.needs_forward_signals else self.selection.loss_mask(ctx)))
        local = sum(self.selection.budget(p.context) if p.mask is None else int(p.mask.sum()) for p in passes)
        return PassPlan(passes, float(local), ARStepStats(traces=float(batch.get("num_traces", 0))))

    def pass_loss(self, item: _Pass) -> tuple[torch.Tensor, ARStepStats]:
        """Summed NLL of the selected tokens (with grad) and detached statistics for logging.

        With a static mask only the selected tokens enter the LM head with grad (``loss_kernel``); masked
        tokens cost at most the no-grad pass over ``unselected_logprob_sample`` of them.
        """
        mb, ctx, mask = item.micro_batch, item.context, item.mask
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
                self.model, hidden, mb["input_ids"], mask, chunk_size=self.memory_args.logprob_chunk_size,
                kernel=hp.loss_kernel,
            )
            n_sel = int(mask.sum())
            lp_unsel, n_unsel = sampled_logprob_sum(
                self.model, hidden, mb["input_ids"], response & ~mask, hp.unselected_logprob_sample,
                chunk_size=self.memory_args.logprob_chunk_size,
            )
        if n_sel == 0:  # keep every parameter in the graph so DDP's reducer stays in step
            nll = nll + 0.0 * hidden.sum()
        stats = ARStepStats(
            nll_selected=float(nll.detach()),
            selected=float(n_sel),
            logprob_unselected=float(lp_unsel),
            unselected=float(n_unsel),
            tokens=float((mb["trace_index"] >= 0).sum()),
        )
        return nll, stats

    def step_metrics(self, stats: ARStepStats, normaliser: float, elapsed: float) -> dict[str, float]:
        n_sel, n_unsel = stats.selected, stats.unselected
        metrics = {
            "train/loss": stats.nll_selected / max(n_sel, 1.0),
            "train/loss_all_tokens": (stats.nll_selected - stats.logprob_unselected) / max(n_sel + n_unsel, 1.0),
            "train/selected_fraction": n_sel / max(n_sel + n_unsel, 1.0),
            "train/tokens_per_s": stats.tokens / max(elapsed, 1e-9),
            "train/traces": stats.traces,
            "train/selected_tokens": n_sel,
            "train/response_tokens": n_sel + n_unsel,
        }
        # a mean over no tokens is not logged (SFT leaves none out: no NaN curve of unselected log-probs)
        if n_sel:
            metrics["train/logprob_selected"] = -stats.nll_selected / n_sel
        if n_unsel:
            metrics["train/logprob_unselected"] = stats.logprob_unselected / n_unsel
        return metrics

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
                ctx.reference_logprob = _scatter(
                    response, self.logprobs_at(ref_hidden, mb["input_ids"], response, model=ref)
                )
        return self.selection.loss_mask(ctx) & response, lp

    # ------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        nll, count = 0.0, 0
        for mb in batch["micro_batches"]:
            lp = self.run(self._response_logprobs, mb)
            nll += float(-lp.sum())
            count += lp.numel()
        self.log(f"{stage}/loss", nll / max(count, 1), batch_size=max(count, 1), sync_dist=True)

    def _response_logprobs(self, mb: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.logprobs_at(self.hidden_states(mb), mb["input_ids"], self.selection_context(mb).response_mask)


def _scatter(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Place ``values`` (one per True in ``mask``) into a NaN-filled tensor shaped like ``mask``."""
    out = torch.full(mask.shape, float("nan"), device=values.device, dtype=torch.float32)
    out[mask] = values.float()
    return out
