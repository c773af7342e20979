"""``DiffusionStudent``: a masked-diffusion language model fine-tuned on teacher traces.

Masked-diffusion SFT (LLaDA-style) on the same step batches as :class:`~t3s.students.ARStudent`, in either
row layout of the data module:

* ``data.batching.packing: false``: one trace per row, right padded; the answer region is the trace's labelled reply
  followed by EOS padding up to the row length (everything after the reply's last labelled token becomes EOS
  and is trained: that is how these models learn to stop);
* ``data.batching.packing: true``: several traces per row; each is a document of its own, attended only by itself
  (document mask, intersected with the block-diffusion mask when ``block_size`` is set; positions restart
  per document), its answer region ends with the document (its own template tail as EOS, no EOS padding),
  and its masking ratio, draws and per-sequence normalisers are its own: a packed step has the loss and
  gradients of the same traces each alone on a row without padding;
* the prompt is never corrupted;
* each answer token is replaced by the mask token with probability ``p`` (one ``p`` per sequence), and
  the tokens the selection strategy names in :meth:`~t3s.selection.TokenSelectionStrategy.must_corrupt`
  are corrupted on top (the union); those it names in ``keep_visible`` (T3S: the anchors) are corrupted
  with probability ``anchor_visibility · p`` only (default: never); the model predicts every corrupted token
  at its own position (no shift);
* the loss covers every corrupted position, in one of two conventions (``objective``):

  ``llada``   t ~ U[0, 1), p = (1 − ε) t + ε; cross-entropy of each corrupted token weighted by 1 / its
              probability of being corrupted (1/p; 1 for a forced token) and divided by its sequence's
              answer length (EOS padding included), averaged over the sequences of the global batch
              (Nie et al., 2025; ML-GSAI/LLaDA GUIDELINES.md).
  ``llada2``  p = t ~ U[t_lo, t_hi] (default [0.3, 0.8]); unweighted cross-entropy averaged over every
              corrupted token of the global batch (``loss_normalization: token``) or over each sequence's
              corrupted tokens, then the sequences (``sequence``: dFactory with micro-batch 1);

* with ``block_size`` the model reads ``[x_t ; x_0]`` under the block-diffusion mask of
  :mod:`~t3s.students.diffusion_blocks` (LLaDA 2.0 / dFactory ``block_diffusion_mode``).

Both normalisers are global (all micro-batches, all ranks), computed before the forward passes, so gradient
accumulation and data parallelism leave the loss unchanged. The random draws are a fixed hash of
``(seed, step, trace, position)``: the same trace at the same step gets the same mask whatever the
micro-batching, the rank layout, or a resume.

Modules, one job each: :mod:`~t3s.students.diffusion_objective` (the objective as pure functions),
:mod:`~t3s.students.diffusion_blocks` (block-diffusion masks), :mod:`~t3s.students.diffusion_hf` (special
ids, bidirectional attention of HF checkpoints), :mod:`~t3s.students.remote_compat` (LLaDA2's remote code
under transformers 5) and this one (the LightningModule). The names of the first and third are re-exported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedModel

from t3s.data.render import IGNORE_INDEX
from t3s.ops.causal_lm import DTYPES
from t3s.ops.logprob import token_logprobs
from t3s.ops.packed_attention import dense_document_mask, document_ids, flex_block_mask
from t3s.selection import FullSFT, SelectionContext, TokenSelectionStrategy
from t3s.students.base import PassPlan, StepStats, StudentModule
from t3s.students.diffusion_blocks import additive, block_diffusion_mask, flex_block_diffusion_mask
from t3s.students.diffusion_hf import (
    MASK_TOKEN_TEXT,
    attends_bidirectionally,
    decoder_and_head,
    full_attention_mask,
    isolates_documents,
    needs_explicit_mask,
    needs_remote_code,
    resolve_special_ids,
    takes_position_ids,
)
from t3s.students.diffusion_objective import (
    AnswerLayout,
    CorruptedView,
    DiffusionStudentError,
    Normalization,
    Objective,
    answer_layout,
    check_one_trace_per_row,
    corrupt,
    draw_corruption,
    mask_ratios,
    row_traces,
    view_loss_sum,
)
from t3s.students.remote_compat import install as install_remote_compat
from t3s.students.remote_compat import load_error, reinit_rotary_buffers

__all__ = [
    "MASK_TOKEN_TEXT",
    "AnswerLayout",
    "CorruptedView",
    "DiffusionStepStats",
    "DiffusionStudent",
    "DiffusionStudentError",
    "answer_layout",
    "attends_bidirectionally",
    "check_one_trace_per_row",
    "corrupt",
    "decoder_and_head",
    "draw_corruption",
    "full_attention_mask",
    "mask_ratios",
    "needs_explicit_mask",
    "needs_remote_code",
    "resolve_special_ids",
    "row_traces",
    "view_loss_sum",
]

log = logging.getLogger(__name__)


@dataclass
class DiffusionStepStats(StepStats):
    """Sums over the micro-batches and views (and ranks) of one step of :class:`DiffusionStudent`."""

    weighted_loss: float = 0.0  #: Σ weight · (−log p) over the corrupted positions
    nll: float = 0.0  #: Σ −log p over the corrupted positions
    corrupted: float = 0.0  #: corrupted positions (every view)
    answer_tokens: float = 0.0  #: answer-region positions (every view)
    rows: float = 0.0  #: sequences with an answer
    skipped: float = 0.0  #: sequences with no labelled token (skipped)
    tokens: float = 0.0  #: trace tokens of the rows (throughput)
    primary_corrupted: float = 0.0  #: corrupted positions of the first view
    selection_added: float = 0.0  #: of those, corrupted only because the strategy forced them
    kept_visible: float = 0.0  #: reply tokens the strategy keeps visible (the anchors)
    response_tokens: float = 0.0  #: labelled reply tokens
    mask_ratio_sum: float = 0.0  #: Σ p over the sequences with an answer
    traces: float = 0.0  #: traces in the step


@dataclass
class _Prepared:
    """The corrupted views of one micro-batch and its statistics known before the forward pass."""

    views: list[CorruptedView]
    stats: DiffusionStepStats


class DiffusionStudent(StudentModule):
    """A masked-diffusion student (LLaDA-style) with trajectory-aware corruption.

    Uses the same data module (packed rows or one trace per row), selection strategies, score cache,
    checkpoint layout and CLI as :class:`~t3s.students.ARStudent`; see the module docstring for the objective. Takes
    the arguments of :class:`~t3s.students.base.StudentModule` (model, tokenizer, AdamW and schedule,
    dtype, kernels) plus:

    Args:
        objective: ``llada`` (1/p-weighted, per-sequence answer-length normalised) or ``llada2``
            (unweighted, normalised by the number of corrupted tokens).
        eps: ε of the ``llada`` masking probability p = (1 − ε) t + ε.
        t_range: the U[lo, hi] range of p for ``llada2``.
        complementary_masking: also train every sample with the complement of its mask.
        pad_to: pad every answer with EOS to this row length (default: the longest row of the micro-batch);
            set it to ``data.max_length`` to make the objective independent of the micro-batching. One trace
            per row only (``data.batching.packing: false``): a packed document has no EOS padding.
        mask_token_id / eos_token_id / pad_token_id: special ids (default: the tokenizer's; the mask token is
            its ``mask_token`` or ``<|mask|>``; pad only pads prompts at generation time).
        seed: seed of the masking draws.
        sampler: keyword arguments of :class:`~t3s.students.diffusion_sampler.DiffusionGenerator` used by
            evaluation (``gen_length``, ``block_length``, ``steps``, ``threshold``, ``batch_size``).
        anchor_visibility: how often the tokens the strategy keeps visible (T3S: the anchors, Δc > 0) are
            corrupted, relative to the others: probability ``anchor_visibility · p``. 0 (default, the
            paper's "anchors prioritised into the visible context"): never; 1: like any other token.
        loss_normalization: ``llada2`` only: ``token`` (default) divides by the corrupted tokens of the
            global batch; ``sequence`` averages the per-sequence means (dFactory with micro-batch 1).
        block_size: ``null`` (default): full bidirectional attention over the noisy row. An integer: block
            diffusion (LLaDA 2.0 / dFactory ``block_diffusion_mode``): the input is ``[x_t ; x_0]`` with
            positions ``0..L−1`` twice, ``x_t`` attends within its own block and to the earlier clean blocks
            of ``x_0``, ``x_0`` is block-causal, the loss is on ``x_t``; evaluation decodes block-causally
            with the same block size.

    ``model`` is a masked-diffusion LM (LLaDA, LLaDA 2.0, needs ``trust_remote_code``; a forward without
    ``position_ids``, as LLaDA 1.0's, is called whole and its logits read) or an AR decoder to adapt (its
    config gets ``is_causal=False``); ``selection`` names the tokens that are always corrupted and those kept
    visible (``T3S``: the yet-to-learn tokens, Δc < −τ, and the anchors, Δc > 0; ``InverseT3S``: the other
    way round; ``RandomMask(match=T3S(...))``: random sets of the same sizes; default ``FullSFT``: none).
    """

    config_error = DiffusionStudentError
    empty_step_message = "no answer token of the global batch is corrupted; the loss is 0"
    generation_backend = "diffusion"

    #: Arguments that matter for sampling from a saved folder (the rest configure training).
    SAMPLING_ARGS = ("mask_token_id", "eos_token_id", "pad_token_id", "sampler", "trust_remote_code",
                     "attn_implementation", "block_size")

    @classmethod
    def saved_by(cls, class_path: str | None, folder_config: dict[str, Any]) -> bool:
        """The run trained a ``DiffusionStudent``, or a bare folder's config is bidirectional (``is_causal: false``)."""
        if class_path is None:
            return folder_config.get("is_causal") is False
        return super().saved_by(class_path, folder_config)

    @classmethod
    def for_sampling(cls, folder: str | Path, run_args: dict[str, Any], *, trust_remote_code: bool,
                     dtype: str) -> DiffusionStudent:
        """A student over a saved folder's weights, with the run's sampler settings and special ids (the
        :data:`SAMPLING_ARGS` of ``run_args``, its ``model.init_args``), ready to sample."""
        args = {k: run_args[k] for k in cls.SAMPLING_ARGS if k in run_args}
        student = cls(model=str(folder), tokenizer=str(folder), dtype=dtype,
                      **{**args, "trust_remote_code": trust_remote_code})
        student.configure_model()
        return student

    def __init__(
        self,
        objective: Objective = "llada",
        eps: float = 1e-3,
        t_range: tuple[float, float] = (0.3, 0.8),
        complementary_masking: bool = False,
        pad_to: int | None = None,
        mask_token_id: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        seed: int = 0,
        sampler: dict[str, Any] | None = None,
        anchor_visibility: float = 0.0,
        loss_normalization: Normalization | None = None,
        block_size: int | None = None,
        **kwargs: Any,
    ):
        if objective not in ("llada", "llada2"):
            raise DiffusionStudentError(f"unknown objective {objective!r}; choose 'llada' or 'llada2'")
        if not 0.0 < eps < 1.0:
            raise DiffusionStudentError(f"eps must be in (0, 1), got {eps}")
        lo, hi = t_range
        if not 0.0 < lo <= hi <= 1.0:
            raise DiffusionStudentError(f"t_range must satisfy 0 < lo <= hi <= 1, got {tuple(t_range)}")
        if pad_to is not None and pad_to < 1:
            raise DiffusionStudentError(f"pad_to must be positive, got {pad_to}")
        if not 0.0 <= anchor_visibility <= 1.0:
            raise DiffusionStudentError(f"anchor_visibility must be in [0, 1], got {anchor_visibility}")
        if loss_normalization not in (None, "token", "sequence"):
            raise DiffusionStudentError(
                f"unknown loss_normalization {loss_normalization!r}; choose 'token' or 'sequence'"
            )
        if loss_normalization is not None and objective == "llada":
            raise DiffusionStudentError(
                "loss_normalization applies to objective llada2; llada normalises by each sequence's answer "
                "length (LLaDA's GUIDELINES): leave it unset"
            )
        if block_size is not None and block_size < 1:
            raise DiffusionStudentError(f"block_size must be a positive integer or null, got {block_size}")
        super().__init__(**kwargs)
        self.mask_token_id: int | None = None
        self.eos_token_id: int | None = None
        self.pad_token_id: int | None = None
        self.explicit_attention_mask = False
        self.attention_checked = False
        self.logits_only = False
        self.skipped_sequences = 0
        #: rows hold several traces (``None``: follow the data module's ``packing``; set it when calling
        #: :meth:`prepare` on micro-batches without a trainer)
        self.packed_rows: bool | None = None
        self.documents_checked = False

    # ------------------------------------------------------------------ model
    def load_model(self) -> None:
        """Load θ_0 with bidirectional attention and resolve the special ids."""
        hp = self.hparams
        if self.tokenizer_source is not None:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.tokenizer_source, trust_remote_code=hp.trust_remote_code
            )
        self.mask_token_id, self.eos_token_id, self.pad_token_id = resolve_special_ids(
            self.tokenizer, hp.mask_token_id, hp.eos_token_id, hp.pad_token_id
        )
        model = self._build_model()
        vocab = model.get_input_embeddings().num_embeddings
        for name, value in (
            ("mask", self.mask_token_id),
            ("eos", self.eos_token_id),
            ("pad", self.pad_token_id),
        ):
            if not 0 <= value < vocab:
                raise DiffusionStudentError(
                    f"{name} token id {value} is outside the model's vocabulary of {vocab} embeddings; "
                    f"set model.init_args.{name}_token_id"
                )
        self.logits_only = not takes_position_ids(model)
        if self.logits_only and hp.block_size is not None:
            raise DiffusionStudentError(
                f"{type(model).__name__}.forward takes no position_ids (LLaDA 1.0): block diffusion needs the "
                "positions 0..L-1 twice; set model.init_args.block_size: null"
            )
        self.model = model.train()  # from_pretrained returns eval mode

    def _build_model(self) -> PreTrainedModel:
        source = None if self.model_source is None else str(self.model_source)
        remote = source is not None and needs_remote_code(source)
        if remote and not self.hparams.trust_remote_code:
            raise DiffusionStudentError(
                f"'{source}' ships its own model code (LLaDA-style checkpoints do); it is only loaded when "
                "you opt in: set model.init_args.trust_remote_code: true"
            )
        if not remote:
            return self.build_causal_lm(source, bidirectional=True)
        install_remote_compat()  # transformers 4.x names the LLaDA2 code imports
        try:
            model = self.build_causal_lm(source, bidirectional=True)
        except (ImportError, AttributeError, KeyError, NameError, TypeError) as error:
            raise DiffusionStudentError(load_error(str(source), error)) from None
        reinit_rotary_buffers(model)  # transformers 5 leaves them uninitialised when _init_weights skips them
        return model

    def rows_are_packed(self) -> bool:
        """True when the micro-batches hold several traces per row (:attr:`packed_rows`, else the data module's
        ``packing``; no data module: one trace per row)."""
        if self.packed_rows is not None:
            return self.packed_rows
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        return bool(getattr(datamodule, "packing", False))

    def check_packing(self) -> None:
        """Refuse, in one line each, what cannot train on packed rows (a no-op for one trace per row)."""
        if not self.rows_are_packed():
            return
        if self.hparams.pad_to is not None:
            raise DiffusionStudentError(
                "pad_to EOS-pads one trace per row; packed documents end where their trace ends: unset "
                "model.init_args.pad_to or set data.batching.packing: false"
            )
        if self.logits_only:
            raise DiffusionStudentError(
                f"data.batching.packing: true needs a forward that takes position_ids and a 4-D attention mask (each "
                f"packed trace restarts its positions and sees only itself); {type(self.model).__name__}.forward "
                "(LLaDA 1.0) takes neither: set data.batching.packing: false"
            )
        kernel = str(getattr(self.model.config, "_attn_implementation", None) or "")
        if kernel.startswith("flash"):
            raise DiffusionStudentError(
                f"packed diffusion rows need an explicit attention mask, which {kernel} cannot take: set "
                "model.init_args.attn_implementation: flex_attention (CUDA) or sdpa"
            )

    def on_fit_start(self) -> None:
        super().on_fit_start()
        datamodule = self.trainer.datamodule
        self.check_packing()
        if self.selection.needs_forward_signals:
            raise DiffusionStudentError(
                f"{self.selection.describe()} chooses tokens from the student's own forward pass; the "
                "diffusion student supports static strategies (FullSFT, T3S, InverseT3S, RandomMask)"
            )
        if type(self.selection).must_corrupt is TokenSelectionStrategy.must_corrupt and not isinstance(
            self.selection, FullSFT
        ):
            log.warning(
                "%s has no diffusion side (must_corrupt): training is plain masked diffusion",
                self.selection.describe(),
            )
        if datamodule is not None and getattr(datamodule, "traces", None):
            self.check_mask_token_unused(datamodule.traces)

    def check_mask_token_unused(self, traces: list[Any]) -> None:
        """Refuse data in which the mask id occurs as a real token (it could not be told apart from noise)."""
        hits = [t for t in traces if self.mask_token_id in t.input_ids]
        if hits:
            raise DiffusionStudentError(
                f"the mask token id {self.mask_token_id} occurs as a real token in {len(hits)} trace(s) of "
                f"the training data (first: {hits[0].record.source}); pick a mask token the data never uses "
                "(model.init_args.mask_token_id)"
            )

    def check_bidirectional(self) -> None:
        """Make sure every position sees the whole sequence; fall back to an explicit 4D mask if needed. On packed
        rows, also make sure the model keeps the packed documents apart (:func:`isolates_documents`).

        Runs once, at the first training step (inside the strategy's forward context, so sharded weights are
        gathered) or when a generator is made.
        """
        if not self.attention_checked:
            self.explicit_attention_mask = self.run(needs_explicit_mask, self.model)
            self.attention_checked = True
        if self.rows_are_packed() and not self.documents_checked:
            self.check_packing()
            if not self.run(isolates_documents, self.model, self.hidden_states):
                raise DiffusionStudentError(
                    f"{type(self.model).__name__} ignores the 4-D document mask of packed rows (one packed trace "
                    "sees the next): set data.batching.packing: false"
                )
            self.documents_checked = True

    # --------------------------------------------------------------- forward
    def hidden_states(
        self,
        input_ids: torch.Tensor,
        clean_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final hidden states ``[R, L, H]`` of noisy rows.

        Full bidirectional attention over ``input_ids``; with ``block_size`` set, the block-diffusion input
        ``[input_ids ; clean_ids]`` under :func:`~t3s.students.diffusion_blocks.block_diffusion_mask`, of
        which the noisy half is returned. ``position_ids`` (packed rows) restart at every document: each
        document then attends only to itself (a dense 4-D mask, or a flex-attention ``BlockMask`` when the
        model runs ``flex_attention``); ``None``: one sequence per row, positions ``0..L−1``.
        """
        decoder, _ = decoder_and_head(self.model)
        rows, length = input_ids.shape
        packed = position_ids is not None
        if position_ids is None:
            position_ids = torch.arange(length, device=input_ids.device)[None].expand(rows, -1)
        kwargs: dict[str, Any] = {"position_ids": position_ids, "use_cache": False}
        dtype = self.compute_dtype()
        flex = getattr(self.model.config, "_attn_implementation", None) == "flex_attention"
        block_size = self.hparams.block_size
        if block_size is not None:
            if clean_ids is None:
                raise DiffusionStudentError("block diffusion needs the clean row x_0 beside the noisy one")
            documents = document_ids(position_ids) if packed else None
            kwargs["position_ids"] = torch.cat([position_ids, position_ids], dim=1)
            if flex:
                kwargs["attention_mask"] = flex_block_diffusion_mask(position_ids, block_size, documents)
            else:
                kwargs["attention_mask"] = additive(block_diffusion_mask(position_ids, block_size, documents), dtype)
            both = torch.cat([input_ids, clean_ids], dim=1)
            return decoder(input_ids=both, **kwargs).last_hidden_state[:, :length]
        if packed:
            if flex:
                kwargs["attention_mask"] = flex_block_mask(position_ids, causal=False)
            else:
                kwargs["attention_mask"] = additive(dense_document_mask(position_ids, causal=False)[:, 0], dtype)
        elif self.explicit_attention_mask:
            kwargs["attention_mask"] = full_attention_mask(rows, length, dtype, input_ids.device)
        return decoder(input_ids=input_ids, **kwargs).last_hidden_state

    def compute_dtype(self) -> torch.dtype:
        """The dtype attention runs in (explicit masks must match it): FSDP2's gathered dtype, else the weights'."""
        if self.sharded and self.sharding_args.param_dtype:
            return DTYPES[self.sharding_args.param_dtype]
        return next(self.model.parameters()).dtype

    def corrupted_logprobs(self, view: CorruptedView) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x_0 | x_t) at the corrupted positions (row-major) and the hidden states."""
        if self.logits_only:  # LLaDA 1.0: the whole model, implicit positions, logits at every position
            logits = self.model(input_ids=view.noisy_ids).logits
            picked = torch.log_softmax(logits[view.corrupted].float(), dim=-1)
            return picked.gather(-1, view.targets[view.corrupted][:, None])[:, 0], logits
        hidden = self.hidden_states(view.noisy_ids, view.targets, view.position_ids)
        _, head = decoder_and_head(self.model)
        lp = token_logprobs(
            hidden[view.corrupted],
            head.weight,
            view.targets[view.corrupted],
            bias=getattr(head, "bias", None),
            chunk_size=self.memory_args.logprob_chunk_size,
        )
        return lp, hidden

    @staticmethod
    def selection_context(micro_batch: dict[str, torch.Tensor]) -> SelectionContext:
        """What the strategy sees: the labelled reply tokens (not the EOS padding), with trace coordinates."""
        return SelectionContext(
            micro_batch["labels"] != IGNORE_INDEX, micro_batch["trace_index"], micro_batch["position_ids"]
        )

    # ---------------------------------------------------------------- corruption
    def pad_rows(self, mb: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Extend rows to ``pad_to`` tokens (as padding: it becomes EOS in :func:`answer_layout`)."""
        target = self.hparams.pad_to
        width = mb["input_ids"].shape[1]
        if target is None or target <= width:
            return mb
        extra = target - width
        rows = mb["input_ids"].shape[0]

        def extend(t: torch.Tensor, value: int) -> torch.Tensor:
            return torch.cat([t, t.new_full((rows, extra), value)], dim=1)

        out = dict(mb)
        out["input_ids"] = extend(mb["input_ids"], self.pad_token_id)
        out["labels"] = extend(mb["labels"], IGNORE_INDEX)
        out["trace_index"] = extend(mb["trace_index"], -1)
        out["position_ids"] = torch.cat(
            [
                mb["position_ids"],
                torch.arange(width, target, device=mb["position_ids"].device).expand(rows, -1),
            ],
            1,
        )
        if "attention_mask" in mb:
            out["attention_mask"] = extend(mb["attention_mask"], 0)
        return out

    def prepare(self, mb: dict[str, torch.Tensor], step: int) -> _Prepared:
        """Draw the corruption of one micro-batch at optimizer step ``step`` (no forward pass)."""
        hp = self.hparams
        packed = self.rows_are_packed()
        if not packed:
            check_one_trace_per_row(mb["trace_index"])
            mb = self.pad_rows(mb)
        layout = answer_layout(mb["input_ids"], mb["labels"], self.eos_token_id, mb["trace_index"], packed=packed)
        ctx = self.selection_context(mb)
        must = self.selection.must_corrupt(ctx).to(layout.response.device) & layout.response
        keep = self.selection.keep_visible(ctx).to(layout.response.device) & layout.response & ~must
        traces = layout.traces
        visibility = float(hp.anchor_visibility)
        p, random_mask = draw_corruption(
            hp.seed, step, traces, layout, hp.objective, hp.eps, tuple(hp.t_range), keep, visibility
        )
        views = corrupt(
            layout, random_mask, must, p, mask_id=self.mask_token_id, objective=hp.objective, eps=hp.eps,
            complementary=hp.complementary_masking, keep=keep, anchor_visibility=visibility,
            normalization=hp.loss_normalization,
        )
        if packed:
            for view in views:
                view.position_ids = mb["position_ids"]
        primary = views[0].corrupted
        stats = DiffusionStepStats(
            rows=float(layout.has_answer.sum()),
            skipped=float((~layout.has_answer & (traces >= 0)).sum()),
            tokens=float((mb["trace_index"] >= 0).sum()),
            primary_corrupted=float(primary.sum()),
            selection_added=float((primary & must & ~random_mask).sum()),
            kept_visible=float(keep.sum()),
            response_tokens=float(layout.response.sum()),
            mask_ratio_sum=float(p[layout.has_answer].sum()),
        )
        return _Prepared(views, stats)

    # -------------------------------------------------------------- training
    def plan_step(self, batch: dict[str, Any]) -> PassPlan:
        """One pass per corrupted view; the normaliser is the objective's (sequences or corrupted tokens)."""
        self.check_bidirectional()
        prepared = [self.prepare(mb, self.global_step) for mb in batch["micro_batches"]]
        stats = DiffusionStepStats(traces=float(batch.get("num_traces", 0)))
        for item in prepared:
            stats = stats + item.stats
        views = [view for item in prepared for view in item.views]
        return PassPlan(views, sum(v.normaliser for v in views), stats)

    def pass_loss(self, view: CorruptedView) -> tuple[torch.Tensor, DiffusionStepStats]:
        """Σ weight · (−log p) over the corrupted positions of one view, and its statistics."""
        lp, hidden = self.corrupted_logprobs(view)
        loss_sum = view_loss_sum(lp, view)
        if lp.numel() == 0:  # keep every parameter in the graph so DDP's reducer stays in step
            loss_sum = loss_sum + 0.0 * hidden.sum()
        stats = DiffusionStepStats(
            weighted_loss=float(loss_sum.detach()),
            nll=float(-lp.detach().sum()),
            corrupted=float(lp.numel()),
            answer_tokens=float(view.answer_tokens),
        )
        return loss_sum, stats

    def step_metrics(self, stats: DiffusionStepStats, normaliser: float, elapsed: float) -> dict[str, float]:
        if stats.skipped:
            self.skipped_sequences += int(stats.skipped)
            log.warning(
                "step %d: skipped %d sequence(s) with no response tokens (%d so far)",
                self.global_step - 1,  # the optimizer has stepped
                int(stats.skipped),
                self.skipped_sequences,
            )
        return {
            "train/loss": stats.weighted_loss / max(normaliser, 1.0),
            "train/nll_corrupted": stats.nll / stats.corrupted if stats.corrupted else float("nan"),
            "train/corrupted_fraction": stats.corrupted / max(stats.answer_tokens, 1.0),
            "train/selection_added_fraction": stats.selection_added / max(stats.primary_corrupted, 1.0),
            "train/kept_visible_fraction": stats.kept_visible / max(stats.response_tokens, 1.0),
            "train/mask_ratio": stats.mask_ratio_sum / max(stats.rows, 1.0),
            "train/skipped_sequences": float(self.skipped_sequences),
            "train/traces": stats.traces,
            "train/tokens_per_s": stats.tokens / max(elapsed, 1e-9),
        }

    # ------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def _eval_step(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        """The training objective on fixed draws (step ``-1 - batch_idx``), normalised within the batch."""
        self.check_bidirectional()
        weighted, normaliser = 0.0, 0.0
        for mb in batch["micro_batches"]:
            for view in self.prepare(mb, -1 - batch_idx).views:
                lp, _ = self.run(self.corrupted_logprobs, view)
                weighted += float(view_loss_sum(lp, view))
                normaliser += view.normaliser
        self.log(
            f"{stage}/loss",
            weighted / max(normaliser, 1.0),
            batch_size=max(int(normaliser), 1),
            sync_dist=True,
        )
