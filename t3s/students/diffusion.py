"""``DiffusionStudent``: a masked-diffusion language model fine-tuned on teacher traces.

Masked-diffusion SFT (LLaDA-style) on the same step batches as :class:`~t3s.students.ARStudent`, with the
data module's per-sample layout (``data.packing: false``: one trace per row, right padded):

* the prompt is never corrupted; the answer region is the trace's labelled reply followed by EOS padding
  up to the row length (everything after the reply's last labelled token becomes EOS and is trained:
  that is how these models learn to stop);
* each answer token is replaced by the mask token with probability ``p`` (one ``p`` per sequence), and
  the tokens the selection strategy names in :meth:`~t3s.selection.TokenSelectionStrategy.must_corrupt`
  are corrupted on top (the union); the model predicts every corrupted token at its own position (no shift);
* the loss covers every corrupted position, in one of two conventions (``objective``):

  ``llada``   t ~ U[0, 1), p = (1 − ε) t + ε; cross-entropy of each corrupted token weighted by 1/p and
              divided by its sequence's answer length (EOS padding included), averaged over the sequences
              of the global batch (Nie et al., 2025).
  ``llada2``  p = t ~ U[t_lo, t_hi] (default [0.3, 0.8]); unweighted cross-entropy averaged over every
              corrupted token of the global batch (the LLaDA 2.0 / dFactory convention).

Both normalisers are global (all micro-batches, all ranks), computed before the forward passes, so gradient
accumulation and data parallelism leave the loss unchanged. The random draws are a fixed hash of
``(seed, step, trace, position)``: the same trace at the same step gets the same mask whatever the
micro-batching, the rank layout, or a resume.

The pieces of the objective are small pure functions (:func:`answer_layout`, :func:`mask_ratios`,
:func:`corrupt`, :func:`view_loss_sum`, ...) so they can be checked by hand.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel

from t3s.ops.logprob import token_logprobs
from t3s.selection import FullSFT, SelectionContext, TokenSelectionStrategy
from t3s.students.base import StudentModule

__all__ = [
    "AnswerLayout",
    "CorruptedView",
    "DiffusionStudent",
    "DiffusionStudentError",
    "answer_layout",
    "attends_bidirectionally",
    "check_one_trace_per_row",
    "corrupt",
    "hash_uniform",
    "mask_ratios",
    "needs_explicit_mask",
    "resolve_special_ids",
    "row_traces",
    "view_loss_sum",
]

log = logging.getLogger(__name__)

Objective = Literal["llada", "llada2"]
MASK_TOKEN_TEXT = "<|mask|>"


class DiffusionStudentError(ValueError):
    """The diffusion student cannot train on this configuration or data (the message says what to change)."""


# ====================================================================================== the objective
@dataclass
class AnswerLayout:
    """Where the answer of each row is, and what the model must reconstruct there.

    Attributes:
        targets: ``[R, L]`` clean ids; after the reply's last labelled token every position holds EOS.
        answer: ``[R, L]`` bool, the corruptible region: labelled reply tokens plus the EOS padding.
        response: ``[R, L]`` bool, the labelled reply tokens only (what the selection strategy sees; the
            score cache has no values on the EOS padding).
        has_answer: ``[R]`` bool, rows with at least one labelled token (the others are skipped).
    """

    targets: torch.Tensor
    answer: torch.Tensor
    response: torch.Tensor
    has_answer: torch.Tensor


def answer_layout(input_ids: torch.Tensor, labels: torch.Tensor, eos_id: int) -> AnswerLayout:
    """The answer region of one-trace rows: the labelled reply, then EOS up to the row length.

    Unlabelled tokens *before* the reply's last labelled token (the prompt, template tokens) stay as they are
    and are never corrupted; everything after it (template tail, padding) becomes EOS and is trained.
    """
    response = labels != -100
    has_answer = response.any(dim=1)
    length = labels.shape[1]
    columns = torch.arange(length, device=labels.device)
    last = (length - 1) - response.flip(1).to(torch.int64).argmax(dim=1)
    tail = (columns[None, :] > last[:, None]) & has_answer[:, None]
    targets = torch.where(tail, torch.full_like(input_ids, eos_id), input_ids)
    return AnswerLayout(targets=targets, answer=response | tail, response=response, has_answer=has_answer)


def check_one_trace_per_row(trace_index: torch.Tensor) -> None:
    """Refuse packed rows: the diffusion student needs one trace per row (``data.packing: false``)."""
    valid = trace_index >= 0
    high = torch.where(valid, trace_index, torch.full_like(trace_index, -1)).amax(dim=1)
    low = torch.where(valid, trace_index, torch.full_like(trace_index, torch.iinfo(torch.int64).max)).amin(
        dim=1
    )
    packed = valid.any(dim=1) & (high != low)
    if bool(packed.any()):
        raise DiffusionStudentError(
            f"{int(packed.sum())} row(s) of a micro-batch hold more than one trace: the diffusion student "
            "pads every trace with EOS on its own row; set data.packing: false"
        )


def row_traces(trace_index: torch.Tensor) -> torch.Tensor:
    """Dataset index of the trace on each row (``-1`` for a row of padding only)."""
    return trace_index.amax(dim=1).clamp(min=-1)


# splitmix64 constants as signed 64-bit integers (torch int64 arithmetic wraps around)
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 values (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix64(x: torch.Tensor) -> torch.Tensor:
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def hash_uniform(seed: int, step: int, traces: torch.Tensor, length: int, stream: int) -> torch.Tensor:
    """``[R, length]`` float64 uniforms in [0, 1), a fixed function of (seed, step, trace, position, stream).

    A counter-based generator: no state, so the draws of a trace do not depend on which micro-batch,
    rank or row it lands in, nor on the row width.
    """
    device = traces.device
    base = torch.tensor([(seed * 1_000_003 + stream) & 0x7FFFFFFFFFFFFFFF], dtype=torch.int64, device=device)
    step_key = torch.tensor([step], dtype=torch.int64, device=device) * _GOLDEN
    key = _mix64(_mix64(base + step_key) + traces.long()[:, None] * _GOLDEN)
    positions = torch.arange(1, length + 1, dtype=torch.int64, device=device)
    bits = _mix64(key + positions[None, :] * _GOLDEN)
    return _shift_right(bits, 11).double() / float(1 << 53)


_STREAM_RATIO, _STREAM_TOKENS = 1, 2


def mask_ratios(
    u: torch.Tensor, objective: Objective, eps: float, t_range: tuple[float, float]
) -> torch.Tensor:
    """Per-sequence masking probability from uniforms ``u`` in [0, 1).

    ``llada``: p = (1 − ε) t + ε with t = u; ``llada2``: p = t_lo + (t_hi − t_lo) u.
    """
    if objective == "llada":
        return (1.0 - eps) * u + eps
    if objective == "llada2":
        lo, hi = t_range
        return lo + (hi - lo) * u
    raise DiffusionStudentError(f"unknown objective {objective!r}; choose 'llada' or 'llada2'")


@dataclass
class CorruptedView:
    """One corrupted copy of a micro-batch (complementary masking makes two per micro-batch).

    Attributes:
        noisy_ids: ``[R, L]`` the model input: targets with every corrupted position set to the mask id.
        targets: ``[R, L]`` the clean ids to reconstruct.
        corrupted: ``[R, L]`` bool, the positions in the loss.
        weights: ``[R, L]`` float32 loss weight of each corrupted position (0 elsewhere), before the global
            normaliser.
        normaliser: this view's share of the global normaliser (``llada``: sequences with an answer;
            ``llada2``: corrupted tokens).
        answer_tokens: size of the answer region (for the corrupted fraction).
    """

    noisy_ids: torch.Tensor
    targets: torch.Tensor
    corrupted: torch.Tensor
    weights: torch.Tensor
    normaliser: float
    answer_tokens: int


def _view(
    layout: AnswerLayout, corrupted: torch.Tensor, p: torch.Tensor, mask_id: int, objective: Objective
) -> CorruptedView:
    answer = layout.answer
    corrupted = corrupted & answer
    if objective == "llada":
        length = answer.sum(dim=1, keepdim=True).clamp(min=1).to(torch.float64)
        per_row = 1.0 / (p.to(torch.float64)[:, None] * length)
        weights = torch.where(corrupted, per_row, torch.zeros_like(per_row)).float()
        normaliser = float(layout.has_answer.sum())
    else:
        weights = corrupted.float()
        normaliser = float(corrupted.sum())
    noisy = torch.where(corrupted, torch.full_like(layout.targets, mask_id), layout.targets)
    return CorruptedView(noisy, layout.targets, corrupted, weights, normaliser, int(answer.sum()))


def corrupt(
    layout: AnswerLayout,
    random_mask: torch.Tensor,
    must: torch.Tensor,
    p: torch.Tensor,
    *,
    mask_id: int,
    objective: Objective,
    eps: float = 1e-3,
    complementary: bool = False,
) -> list[CorruptedView]:
    """The corrupted views of a micro-batch: ``random_mask ∪ must`` inside the answer region.

    With ``complementary`` a second view corrupts exactly the answer tokens the first one left visible, so
    the pair covers every answer token once. Its masking probability is ``max(1 − p, ε)`` (the ``llada``
    1/p weight). Forced tokens are weighted like random ones (the sequence's 1/p under ``llada``).
    """
    corrupted = (random_mask | must) & layout.answer
    views = [_view(layout, corrupted, p, mask_id, objective)]
    if complementary:
        views.append(_view(layout, layout.answer & ~corrupted, (1.0 - p).clamp(min=eps), mask_id, objective))
    return views


def view_loss_sum(logprobs: torch.Tensor, view: CorruptedView) -> torch.Tensor:
    """Σ weight · (−log p) over the corrupted positions of a view (``logprobs`` in row-major order)."""
    return -(view.weights[view.corrupted].to(logprobs.dtype) * logprobs).sum()


# ============================================================================ ids and attention
def resolve_special_ids(
    tokenizer: Any, mask_token_id: int | None, eos_token_id: int | None, pad_token_id: int | None
) -> tuple[int, int, int]:
    """``(mask, eos, pad)`` ids: the given values, else the tokenizer's (mask token or ``<|mask|>``)."""
    if mask_token_id is None and tokenizer is not None:
        mask_token_id = getattr(tokenizer, "mask_token_id", None)
        if mask_token_id is None:
            candidate = tokenizer.convert_tokens_to_ids(MASK_TOKEN_TEXT)
            if isinstance(candidate, int) and candidate != tokenizer.unk_token_id:
                mask_token_id = candidate
    if mask_token_id is None:
        raise DiffusionStudentError(
            f"no mask token: the tokenizer has no mask_token and no {MASK_TOKEN_TEXT!r} token; set "
            "model.init_args.mask_token_id (e.g. 126336 for LLaDA-8B, 156895 for LLaDA2.0-mini)"
        )
    if eos_token_id is None and tokenizer is not None:
        eos_token_id = tokenizer.eos_token_id
    if eos_token_id is None:
        raise DiffusionStudentError("no EOS token: the tokenizer has none; set model.init_args.eos_token_id")
    if pad_token_id is None and tokenizer is not None:
        pad_token_id = tokenizer.pad_token_id
    if pad_token_id is None:
        pad_token_id = eos_token_id
    if int(mask_token_id) == int(eos_token_id):
        raise DiffusionStudentError(
            f"mask_token_id and eos_token_id are both {mask_token_id}; they must differ"
        )
    return int(mask_token_id), int(eos_token_id), int(pad_token_id)


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The decoder stack (final hidden states) and the output projection of a Hugging Face LM."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if decoder is None or decoder is model or head is None:
        raise DiffusionStudentError(
            f"{type(model).__name__} does not expose a decoder and an output projection "
            "(get_decoder / get_output_embeddings); the diffusion student needs both to score only the "
            "corrupted positions"
        )
    return decoder, head


def full_attention_mask(rows: int, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An explicit ``[R, 1, L, L]`` additive mask letting every position attend to every other one."""
    return torch.zeros(rows, 1, length, length, dtype=dtype, device=device)


@torch.no_grad()
def attends_bidirectionally(model: nn.Module, explicit_mask: bool = False) -> bool:
    """True if changing the last token of a short input changes the first position's final hidden state."""
    decoder, _ = decoder_and_head(model)
    param = next(model.parameters())
    vocab = model.get_input_embeddings().num_embeddings
    ids = torch.tensor([[1, 2, 3, 4]], device=param.device) % vocab
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % vocab
    positions = torch.arange(4, device=param.device)[None]
    kwargs: dict[str, Any] = {"position_ids": positions, "use_cache": False}
    if explicit_mask:
        kwargs["attention_mask"] = full_attention_mask(1, 4, param.dtype, param.device)
    was_training = model.training
    model.eval()
    try:
        first = decoder(input_ids=ids, **kwargs).last_hidden_state[0, 0]
        second = decoder(input_ids=changed, **kwargs).last_hidden_state[0, 0]
    finally:
        model.train(was_training)
    return not torch.allclose(first.float(), second.float(), rtol=0.0, atol=0.0)


def needs_explicit_mask(model: nn.Module) -> bool:
    """False if ``model`` already attends bidirectionally, True if an explicit all-visible 4D mask makes it.

    Raises:
        DiffusionStudentError: if the model stays causal either way.
    """
    if attends_bidirectionally(model):
        return False
    if attends_bidirectionally(model, explicit_mask=True):
        log.warning(
            "%s ignores config.is_causal=False; passing an explicit all-visible attention mask",
            type(model).__name__,
        )
        return True
    raise DiffusionStudentError(
        f"{type(model).__name__} stays causal with config.is_causal=False and with an explicit 4D mask; "
        "it cannot be used as a masked-diffusion model"
    )


def needs_remote_code(source: str) -> bool:
    """True if the checkpoint's architecture is only available as code from its repository."""
    from transformers import PretrainedConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        config, _ = PretrainedConfig.get_config_dict(source)
    except (OSError, ValueError):  # unreachable or not a model folder: from_pretrained reports it
        return False
    return "auto_map" in config and config.get("model_type") not in CONFIG_MAPPING


# ============================================================================== the LightningModule
@dataclass
class _Prepared:
    views: list[CorruptedView]
    stats: torch.Tensor  # see _PREP_STATS


# per micro-batch statistics gathered before the forward passes
_PREP_STATS = ("rows", "skipped", "tokens", "primary_corrupted", "selection_added", "mask_ratio_sum")


class DiffusionStudent(StudentModule):
    """A masked-diffusion student (LLaDA-style) with trajectory-aware corruption.

    Uses the same data module (with ``data.packing: false``), selection strategies, score cache, checkpoint
    layout and CLI as :class:`~t3s.students.ARStudent`; see the module docstring for the objective.

    Args:
        model: Hugging Face hub id or local path of θ_0: a masked-diffusion LM (LLaDA, LLaDA 2.0, needs
            ``trust_remote_code``) or an AR decoder to adapt (its config gets ``is_causal=False``).
        model_config: build a randomly initialised model from this config dict instead (``model_type``
            required; ``is_causal`` is forced to False).
        tokenizer: tokenizer saved with every HF checkpoint (linked from ``data.tokenizer`` by the CLI).
        selection: the strategy whose ``must_corrupt`` tokens are always corrupted (default ``FullSFT``:
            none). ``T3S`` corrupts the yet-to-learn tokens (Δc < −τ); ``InverseT3S`` the anchors;
            ``RandomMask(match=T3S(...))`` a random set of the same size.
        objective: ``llada`` (1/p-weighted, per-sequence answer-length normalised) or ``llada2``
            (unweighted, normalised by the number of corrupted tokens).
        eps: ε of the ``llada`` masking probability p = (1 − ε) t + ε.
        t_range: the U[lo, hi] range of p for ``llada2``.
        complementary_masking: also train every sample with the complement of its mask.
        pad_to: pad every answer with EOS to this row length (default: the longest row of the micro-batch);
            set it to ``data.max_length`` to make the objective independent of the micro-batching.
        mask_token_id / eos_token_id / pad_token_id: special ids (default: the tokenizer's; the mask token is
            its ``mask_token`` or ``<|mask|>``; pad only pads prompts at generation time).
        lr, weight_decay, betas, adam_eps, warmup_steps, schedule, min_lr_ratio, max_grad_norm: AdamW and the LR
            schedule, as for ``ARStudent``.
        dtype: dtype the weights are loaded in.
        gradient_checkpointing: recompute decoder activations in backward.
        attn_implementation: transformers attention kernel (``sdpa``, ``eager``; ``None``: the model's
            default).
        logprob_chunk_size: rows per chunk of the log-prob kernel.
        trust_remote_code: allow model code from the hub (needed by LLaDA checkpoints; off unless you opt in).
        init_seed: seed for ``model_config`` initialisation.
        seed: seed of the masking draws.
        sampler: keyword arguments of :class:`~t3s.students.diffusion_sampler.DiffusionGenerator` used by
            :meth:`make_generator` (``gen_length``, ``block_length``, ``steps``, ``threshold``,
            ``batch_size``).
    """

    def __init__(
        self,
        model: str | None = None,
        model_config: dict[str, Any] | None = None,
        tokenizer: str | None = None,
        selection: TokenSelectionStrategy | None = None,
        objective: Objective = "llada",
        eps: float = 1e-3,
        t_range: tuple[float, float] = (0.3, 0.8),
        complementary_masking: bool = False,
        pad_to: int | None = None,
        mask_token_id: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
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
        attn_implementation: str | None = "sdpa",
        logprob_chunk_size: int = 2048,
        trust_remote_code: bool = False,
        init_seed: int = 0,
        seed: int = 0,
        sampler: dict[str, Any] | None = None,
    ):
        super().__init__()
        if (model is None) == (model_config is None):
            raise DiffusionStudentError(
                "DiffusionStudent needs exactly one of `model` (hub id / path) or `model_config`"
            )
        if model_config is not None and "model_type" not in model_config:
            raise DiffusionStudentError("model_config needs a 'model_type' key (e.g. 'qwen3')")
        if objective not in ("llada", "llada2"):
            raise DiffusionStudentError(f"unknown objective {objective!r}; choose 'llada' or 'llada2'")
        if not 0.0 < eps < 1.0:
            raise DiffusionStudentError(f"eps must be in (0, 1), got {eps}")
        lo, hi = t_range
        if not 0.0 < lo <= hi <= 1.0:
            raise DiffusionStudentError(f"t_range must satisfy 0 < lo <= hi <= 1, got {tuple(t_range)}")
        if pad_to is not None and pad_to < 1:
            raise DiffusionStudentError(f"pad_to must be positive, got {pad_to}")
        self.save_hyperparameters(ignore=["selection"])
        self.model_source = model
        self.model_config = model_config
        self.tokenizer_source = tokenizer or model
        self.selection = selection or FullSFT()
        self.model: PreTrainedModel | None = None
        self.tokenizer = None
        self.mask_token_id: int | None = None
        self.eos_token_id: int | None = None
        self.pad_token_id: int | None = None
        self.explicit_attention_mask = False
        self.attention_checked = False
        self.skipped_sequences = 0
        self._warned_empty = False

    # ------------------------------------------------------------------ model
    def configure_model(self) -> None:
        """Load θ_0 with bidirectional attention and resolve the special ids (idempotent)."""
        if self.model is not None:
            return
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
        if hp.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = model.train()  # from_pretrained returns eval mode

    def _build_model(self) -> PreTrainedModel:
        source = None if self.model_source is None else str(self.model_source)
        if source is not None and not self.hparams.trust_remote_code and needs_remote_code(source):
            raise DiffusionStudentError(
                f"'{source}' ships its own model code (LLaDA-style checkpoints do); it is only loaded when "
                "you opt in: set model.init_args.trust_remote_code: true"
            )
        return self.build_causal_lm(source, bidirectional=True)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        datamodule = self.trainer.datamodule
        if datamodule is not None and getattr(datamodule, "packing", False):
            raise DiffusionStudentError(
                "the diffusion student trains one trace per row, right-padded with EOS: "
                "set data.packing: false"
            )
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
        if datamodule is not None and hasattr(datamodule, "fingerprint"):
            self.selection.setup(datamodule.fingerprint())
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
        """Make sure every position sees the whole sequence; fall back to an explicit 4D mask if needed.

        Runs once, at the first training step (inside the strategy's forward context, so sharded weights are
        gathered) or when a generator is made.
        """
        if self.attention_checked:
            return
        self.explicit_attention_mask = needs_explicit_mask(self.model)
        self.attention_checked = True

    # --------------------------------------------------------------- forward
    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``[R, L, H]`` of unpacked rows under full (bidirectional) attention."""
        decoder, _ = decoder_and_head(self.model)
        rows, length = input_ids.shape
        kwargs: dict[str, Any] = {
            "position_ids": torch.arange(length, device=input_ids.device)[None].expand(rows, -1),
            "use_cache": False,
        }
        if self.explicit_attention_mask:
            dtype = next(self.model.parameters()).dtype
            kwargs["attention_mask"] = full_attention_mask(rows, length, dtype, input_ids.device)
        return decoder(input_ids=input_ids, **kwargs).last_hidden_state

    def corrupted_logprobs(self, view: CorruptedView) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x_t | noisy input) at the corrupted positions (row-major) and the hidden states."""
        hidden = self.hidden_states(view.noisy_ids)
        _, head = decoder_and_head(self.model)
        lp = token_logprobs(
            hidden[view.corrupted],
            head.weight,
            view.targets[view.corrupted],
            bias=getattr(head, "bias", None),
            chunk_size=self.hparams.logprob_chunk_size,
        )
        return lp, hidden

    @staticmethod
    def selection_context(micro_batch: dict[str, torch.Tensor]) -> SelectionContext:
        """What the strategy sees: the labelled reply tokens (not the EOS padding), with trace coordinates."""
        return SelectionContext(
            micro_batch["labels"] != -100, micro_batch["trace_index"], micro_batch["position_ids"]
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
        out["labels"] = extend(mb["labels"], -100)
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
        check_one_trace_per_row(mb["trace_index"])
        mb = self.pad_rows(mb)
        layout = answer_layout(mb["input_ids"], mb["labels"], self.eos_token_id)
        must = (
            self.selection.must_corrupt(self.selection_context(mb)).to(layout.response.device)
            & layout.response
        )
        traces = row_traces(mb["trace_index"])
        length = layout.targets.shape[1]
        p = mask_ratios(
            hash_uniform(hp.seed, step, traces, 1, _STREAM_RATIO)[:, 0],
            hp.objective,
            hp.eps,
            tuple(hp.t_range),
        )
        random_mask = (
            hash_uniform(hp.seed, step, traces, length, _STREAM_TOKENS) < p[:, None]
        ) & layout.answer
        views = corrupt(
            layout,
            random_mask,
            must,
            p,
            mask_id=self.mask_token_id,
            objective=hp.objective,
            eps=hp.eps,
            complementary=hp.complementary_masking,
        )
        primary = views[0].corrupted
        stats = torch.tensor(
            [
                float(layout.has_answer.sum()),
                float((~layout.has_answer & (traces >= 0)).sum()),
                float((mb["trace_index"] >= 0).sum()),
                float(primary.sum()),
                float((primary & must & ~random_mask).sum()),
                float(p[layout.has_answer].sum()),
            ],
            dtype=torch.float64,
        )
        return _Prepared(views, stats)

    # -------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        started = time.perf_counter()
        step = self.global_step
        self.check_bidirectional()
        prepared = [self.prepare(mb, step) for mb in batch["micro_batches"]]
        local_norm = sum(v.normaliser for p in prepared for v in p.views)
        normaliser = float(
            self.all_sum(torch.tensor([local_norm], device=self.device, dtype=torch.float64)).item()
        )
        if normaliser == 0 and not self._warned_empty:
            log.warning("step %d: no answer token of the global batch is corrupted; the loss is 0", step)
            self._warned_empty = True
        scale = self.trainer.world_size / max(normaliser, 1.0)

        # Every rank runs the same number of forward/backward passes (FSDP all-gathers weights in each):
        # a rank with fewer passes repeats its last one with zero weight.
        passes = [(i, j) for i, p in enumerate(prepared) for j in range(len(p.views))]
        n_pass = int(self.all_max(torch.tensor([len(passes)], device=self.device)).item())
        view_stats = torch.zeros(4, dtype=torch.float64)  # weighted loss, nll, corrupted, answer tokens
        block = getattr(self.trainer.strategy, "block_backward_sync", None)
        for k in range(n_pass):
            real = k < len(passes)
            i, j = passes[min(k, len(passes) - 1)]
            view = prepared[i].views[j]
            with nullcontext() if k == n_pass - 1 or block is None else block():
                lp, hidden = self.corrupted_logprobs(view)
                loss_sum = view_loss_sum(lp, view)
                if lp.numel() == 0:  # keep every parameter in the graph so DDP's reducer stays in step
                    loss_sum = loss_sum + 0.0 * hidden.sum()
                self.manual_backward(loss_sum * (scale if real else 0.0))
            if real:
                view_stats += torch.tensor(
                    [float(loss_sum.detach()), float(-lp.detach().sum()), lp.numel(), view.answer_tokens],
                    dtype=torch.float64,
                )

        grad_norm = self.clip_gradient_norm()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

        prep_stats = torch.stack([p.stats for p in prepared]).sum(dim=0)
        stats = self.all_sum(torch.cat([view_stats, prep_stats]).to(self.device)).tolist()
        weighted, nll, n_corrupted, n_answer = stats[:4]
        rows, skipped, tokens, primary, added, ratio_sum = stats[4:]
        if skipped:
            self.skipped_sequences += int(skipped)
            log.warning(
                "step %d: skipped %d sequence(s) with no response tokens (%d so far)",
                step,
                int(skipped),
                self.skipped_sequences,
            )
        loss = weighted / max(normaliser, 1.0)
        elapsed = time.perf_counter() - started
        metrics = {
            "train/loss": loss,
            "train/nll_corrupted": nll / n_corrupted if n_corrupted else float("nan"),
            "train/corrupted_fraction": n_corrupted / max(n_answer, 1.0),
            "train/selection_added_fraction": added / max(primary, 1.0),
            "train/mask_ratio": ratio_sum / max(rows, 1.0),
            "train/skipped_sequences": float(self.skipped_sequences),
            "train/traces": float(batch.get("num_traces", 0)) * self.trainer.world_size,
            "train/tokens_per_s": tokens / max(elapsed, 1e-9),
            "train/grad_norm": float(grad_norm),
            "train/lr": scheduler.get_last_lr()[0],
        }
        self.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False, rank_zero_only=True)
        self.log("loss", loss, prog_bar=True, on_step=True, logger=False, rank_zero_only=True)
        return torch.tensor(loss)

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
                lp, _ = self.corrupted_logprobs(view)
                weighted += float(view_loss_sum(lp, view))
                normaliser += view.normaliser
        self.log(
            f"{stage}/loss",
            weighted / max(normaliser, 1.0),
            batch_size=max(int(normaliser), 1),
            sync_dist=True,
        )

    def make_generator(self, **overrides: Any) -> Any:
        """A :class:`~t3s.students.diffusion_sampler.DiffusionGenerator` over the current weights.

        Settings come from ``sampler`` (init arg), then ``overrides``.
        """
        from t3s.students.diffusion_sampler import DiffusionGenerator

        self.configure_model()
        kwargs = {**(self.hparams.sampler or {}), **overrides}
        kwargs.setdefault("pad_id", self.pad_token_id)
        # unknown before the first training step: the generator then checks at its first call
        kwargs.setdefault(
            "explicit_attention_mask", self.explicit_attention_mask if self.attention_checked else None
        )
        return DiffusionGenerator(self.model, self.tokenizer, self.mask_token_id, self.eos_token_id, **kwargs)
