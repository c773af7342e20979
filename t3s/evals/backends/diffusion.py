"""The ``diffusion`` backend: a masked-diffusion student behind the ``Generator`` protocol
(:class:`DiffusionGenerator`).

Batching, prompt padding, seeding and stop tokens around :func:`t3s.students.diffusion_sampler.diffusion_decode`
(semi-autoregressive block decoding with low-confidence remasking, full attention) or, for block-diffusion
models (LLaDA 2.0), :func:`t3s.students.diffusion_block_decode.block_causal_decode` (absolute blocks,
block-causal attention, KV cache of the committed prefix).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.nn import functional as F

from t3s.evals.backends.base import Generation, Generator, ServeOptions, TorchBackend, TorchGenerator
from t3s.evals.backends.sampling import SamplingParams
from t3s.students.diffusion import DiffusionStudent
from t3s.students.diffusion_block_decode import (
    CachedPrefix,
    FullRecompute,
    aligned_layout,
    block_causal_decode,
    cache_keyword,
)
from t3s.students.diffusion_hf import decoder_and_head, needs_explicit_mask, takes_position_ids
from t3s.students.diffusion_objective import DiffusionStudentError
from t3s.students.diffusion_sampler import DecodeSettings, LogitsFn, diffusion_decode

__all__ = ["BACKEND", "DiffusionBackend", "DiffusionGenerator"]

log = logging.getLogger(__name__)


class DiffusionGenerator(TorchGenerator):
    """Batched semi-autoregressive sampling from a masked-diffusion model (the ``Generator`` protocol).

    Prompts are expanded ``params.n`` times, sorted by length, LEFT padded (padding is kept out by the
    attention mask and the position ids) and decoded ``batch_size`` rows at a time. Sampling at
    ``temperature > 0`` is seeded per batch (``params.seed`` + batch index) with a private generator, so the
    global RNG is untouched and results repeat for the same inputs and ``batch_size``. ``top_p`` / ``top_k``
    of :class:`~t3s.evals.backends.sampling.SamplingParams` are not used (remasking relies on the full distribution).

    The response canvas is ``gen_length`` tokens, or ``max_new_tokens`` rounded up to whole blocks when
    that is smaller (the number of steps per block stays ``steps / (gen_length / block_length)``);
    ``hit_limit`` means no stop token within ``max_new_tokens``.

    Args:
        model: a Hugging Face masked-diffusion LM (bidirectional attention).
        tokenizer: decodes the responses; default stop tokens come from it.
        mask_id: the mask token id.
        eos_id: end of sequence; also what a finished row is filled with.
        gen_length: response canvas length (a multiple of ``block_length``).
        block_length: positions decoded per block.
        steps: iterations over the whole canvas (default ``gen_length``: one token per iteration); a
            multiple of the number of blocks.
        threshold: commit every prediction with probability above this instead of the linear schedule.
        batch_size: rows per forward pass.
        pad_id: left padding of prompts (default: the tokenizer's pad token, else EOS).
        stop_token_ids: tokens that end a response (default: EOS plus the tokenizer's end-of-turn tokens).
        explicit_attention_mask: pass a 4D additive mask (for models that ignore ``config.is_causal``);
            ``None``: find out with a tiny probe at the first call. Padded batches always get a 4D mask (a 2D
            padding mask turns some remote-code models causal).
        show_progress: a tqdm progress bar over batches.
        block_causal: decode as LLaDA 2.0's ``generate``: absolute blocks of ``block_length`` tokens (the
            prompt included), each attending to itself and the earlier blocks, and LLaDA2's commit rule (the
            per-iteration quota, or every prediction above ``threshold`` when there are enough of them).
        kv_cache: with ``block_causal``, cache the keys and values of the committed blocks (default) instead
            of re-running the whole window at every iteration; models that take no cache argument recompute.
    """

    progress_desc: ClassVar[str] = "diffusion generate"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        mask_id: int,
        eos_id: int,
        gen_length: int = 256,
        block_length: int = 32,
        steps: int | None = None,
        threshold: float | None = None,
        batch_size: int = 8,
        pad_id: int | None = None,
        stop_token_ids: Sequence[int] | None = None,
        explicit_attention_mask: bool | None = None,
        show_progress: bool = True,
        block_causal: bool = False,
        kv_cache: bool = True,
    ) -> None:
        if block_length < 1 or gen_length < 1 or gen_length % block_length:
            raise ValueError(
                f"gen_length ({gen_length}) must be a positive multiple of block_length ({block_length})"
            )
        num_blocks = gen_length // block_length
        steps = gen_length if steps is None else int(steps)
        if steps < num_blocks or steps % num_blocks:
            raise ValueError(
                f"steps ({steps}) must be a positive multiple of the number of blocks ({num_blocks})"
            )
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.mask_id = int(mask_id)
        self.eos_id = int(eos_id)
        self.gen_length = int(gen_length)
        self.block_length = int(block_length)
        self.steps = steps
        self.steps_per_block = steps // num_blocks
        self.threshold = threshold
        self.batch_size = int(batch_size)
        if pad_id is None:
            pad_id = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad_id) if pad_id is not None else self.eos_id
        stops = [
            self.eos_id,
            *self.given_or_default_stops(stop_token_ids, tokenizer, model),
        ]
        self.stop_token_ids = [s for s in dict.fromkeys(int(s) for s in stops) if s != self.mask_id]
        self.explicit_attention_mask = explicit_attention_mask
        self.show_progress = show_progress
        self.block_causal = bool(block_causal)
        self.kv_cache = bool(kv_cache)
        # LLaDA 1.0 takes no position_ids (and no mask we could trust): only rows of equal prompt length
        # share a batch, so nothing is padded, and the model is called with the ids alone
        self.logits_only = not takes_position_ids(model)
        if self.logits_only and self.block_causal:
            raise ValueError(
                f"{type(model).__name__} takes no position_ids: block-causal decoding needs them"
            )
        try:
            self._parts: tuple[Any, Any] | None = None if self.logits_only else decoder_and_head(model)
        except DiffusionStudentError:
            self._parts = None  # fall back to the model's own logits

    def canvas_length(self, max_new_tokens: int) -> int:
        """Response canvas for a ``max_new_tokens`` budget: whole blocks, at most ``gen_length``."""
        blocks = math.ceil(max_new_tokens / self.block_length)
        return min(self.gen_length, blocks * self.block_length)

    def _inputs(
        self, prompts: list[list[int]], gen_len: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, int]:
        width = max(len(p) for p in prompts)
        total = width + gen_len
        ids = torch.full((len(prompts), total), self.mask_id, dtype=torch.long)
        keep = torch.ones((len(prompts), total), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, : width - len(p)] = self.pad_id
            keep[i, : width - len(p)] = 0
            ids[i, width - len(p) : width] = torch.tensor(p, dtype=torch.long)
        positions = (keep.cumsum(dim=1) - 1).clamp(min=0)
        padded = bool((keep == 0).any())
        attention: torch.Tensor | None = None
        if self.explicit_attention_mask or padded:  # never a 2D mask: some models turn one causal
            dtype = next(self.model.parameters()).dtype
            visible = keep[:, None, :].bool() & keep[:, :, None].bool()
            visible |= torch.eye(total, dtype=torch.bool)[None]  # a padding query sees itself only
            attention = torch.zeros(len(prompts), 1, total, total, dtype=dtype)
            attention.masked_fill_(~visible[:, None], torch.finfo(dtype).min)
        attention = attention.to(device) if attention is not None else None
        return ids.to(device), attention, positions.to(device), width

    def _logits_fn(self, attention: torch.Tensor | None, positions: torch.Tensor) -> LogitsFn:
        def logits(canvas: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
            if self.logits_only:
                return self.model(input_ids=canvas).logits[select]
            kwargs = {"attention_mask": attention, "position_ids": positions, "use_cache": False}
            if self._parts is None:
                return self.model(input_ids=canvas, **kwargs).logits[select]
            decoder, head = self._parts
            hidden = decoder(input_ids=canvas, **kwargs).last_hidden_state[select]
            return F.linear(hidden, head.weight, getattr(head, "bias", None))

        return logits

    def _batches(self, rows: list[tuple[int, int]], prompts: list[list[int]]) -> list[list[tuple[int, int]]]:
        groups = [rows]
        if self.logits_only:  # no padding: one group per prompt length
            lengths = sorted({len(prompts[p]) for p, _ in rows})
            groups = [[r for r in rows if len(prompts[r[0]]) == n] for n in lengths]
        return [g[i : i + self.batch_size] for g in groups for i in range(0, len(g), self.batch_size)]

    def _before_batches(self) -> None:
        if self.explicit_attention_mask is None and not self.block_causal:  # block-causal: always 4D
            self.explicit_attention_mask = needs_explicit_mask(self.model)

    def _generate_batch(self, index: int, prompts: list[list[int]], params: SamplingParams,
                        device: torch.device) -> list[Generation]:
        """One batch; sampling (``temperature > 0``) draws from a private generator seeded
        ``params.seed + index``."""
        gen_len = self.canvas_length(params.max_new_tokens)
        generator = None
        if not params.greedy:
            generator = torch.Generator(device=device)
            generator.manual_seed(int(params.seed) + index)
        if self.block_causal:
            responses = self._block_causal(prompts, gen_len, device, params, generator)
        else:
            ids, attention, positions, width = self._inputs(prompts, gen_len, device)
            result = diffusion_decode(self._logits_fn(attention, positions), ids, width,
                                      self._decode_settings(params, generator))
            responses = result.canvas[:, width:].tolist()
        # the canvas is always filled to max_new_tokens: no stop token means the budget ran out
        return [self._generation(row[: params.max_new_tokens], limit_reached=True) for row in responses]

    def _decode_settings(self, params: SamplingParams, generator: torch.Generator | None) -> DecodeSettings:
        """The sampler settings both decoders take (full attention and block-causal)."""
        return DecodeSettings(self.block_length, self.steps_per_block, self.mask_id, self.eos_id,
                              stop_ids=self.stop_token_ids, temperature=float(params.temperature),
                              threshold=self.threshold, generator=generator)

    def _block_causal(
        self,
        prompts: list[list[int]],
        gen_len: int,
        device: torch.device,
        params: SamplingParams,
        generator: torch.Generator | None,
    ) -> list[list[int]]:
        """One batch decoded block-causally; each row's response tokens (from its prompt's end)."""
        layout = aligned_layout(prompts, gen_len, self.block_length, self.mask_id, self.pad_id)
        layout.canvas = layout.canvas.to(device)
        layout.valid, layout.positions = layout.valid.to(device), layout.positions.to(device)
        use_cache = self.kv_cache and self._parts is not None and cache_keyword(self._parts[0]) is not None
        forward = (CachedPrefix if use_cache else FullRecompute)(self.model, layout, self.block_length)
        result = block_causal_decode(forward, layout, self._decode_settings(params, generator))
        starts = layout.response_start.tolist()
        return [row[start:] for row, start in zip(result.canvas.tolist(), starts)]

    @classmethod
    def for_student(cls, student: DiffusionStudent, **overrides: Any) -> DiffusionGenerator:
        """A generator over a student's current weights: settings from its ``sampler`` argument, then
        ``overrides``; its mask / EOS / pad ids and attention mode."""
        student.configure_model()
        kwargs = {**(student.hparams.sampler or {}), **overrides}
        block_size = student.hparams.get("block_size")
        if block_size is not None:  # a block-diffusion student decodes as it was trained: block-causally
            if kwargs.get("block_length", block_size) != block_size:
                log.warning(
                    "sampler block_length %s replaced by the student's block_size %d: a block-diffusion model "
                    "decodes with the blocks it was trained on", kwargs["block_length"], block_size,
                )
            kwargs["block_length"] = block_size
            kwargs.setdefault("block_causal", True)
        kwargs.setdefault("pad_id", student.pad_token_id)
        # unknown before the first training step: the generator then checks at its first call
        kwargs.setdefault(
            "explicit_attention_mask", student.explicit_attention_mask if student.attention_checked else None
        )
        return cls(student.model, student.tokenizer, student.mask_token_id, student.eos_token_id, **kwargs)


class DiffusionBackend(TorchBackend):
    """A diffusion student's own sampler (:class:`DiffusionGenerator`), with the run's ``sampler`` settings."""

    name: ClassVar[str] = "diffusion"

    def from_student(self, student: Any, *, batch_size: int, show_progress: bool) -> Generator:
        return DiffusionGenerator.for_student(student, batch_size=batch_size, show_progress=show_progress)

    def from_folder(self, folder: Path, tokenizer: Any, device: Any, options: ServeOptions) -> Generator:
        student = DiffusionStudent.for_sampling(folder, options.run_args, trust_remote_code=options.trust_remote_code,
                                                dtype="bfloat16" if device.type == "cuda" else "float32")
        student.model.to(device)
        return DiffusionGenerator.for_student(student, batch_size=options.batch_size, show_progress=False)


#: The backend this module registers (:data:`t3s.evals.backends.BACKENDS`).
BACKEND = DiffusionBackend()
