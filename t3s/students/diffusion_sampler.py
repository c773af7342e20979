"""Sampling from a masked-diffusion student: semi-autoregressive block decoding with low-confidence remasking.

The response starts as ``gen_length`` mask tokens after the prompt. Blocks of ``block_length`` positions are
decoded left to right; inside a block, each iteration predicts every still-masked position of the block
(greedy at temperature 0, Gumbel-max sampling otherwise) and commits the most confident predictions:

* a linear schedule: the block's masked count spread evenly over ``steps_per_block`` iterations (earlier
  iterations take the remainder), so the block is full after its steps; or
* with ``threshold``: every prediction whose probability exceeds it, and at least the most confident one.

A row is finished once a stop token is committed with every position before it filled: the rest of its
canvas becomes EOS and it takes no further part. :class:`DiffusionGenerator` wraps this for the evaluation
code (the :class:`~t3s.evals.generation.Generator` protocol).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from t3s.evals.generation import Generation, SamplingParams, default_stop_token_ids
from t3s.students.diffusion import DiffusionStudentError, decoder_and_head, needs_explicit_mask

__all__ = [
    "DecodeResult",
    "DiffusionGenerator",
    "LogitsFn",
    "commit_schedule",
    "diffusion_decode",
    "finished_rows",
    "predict_tokens",
]

#: ``(canvas [B, T], select [B, T] bool) -> logits [N, V]`` for the N selected positions, row-major.
LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Called after every iteration with the canvas and the index of the block being decoded.
StepCallback = Callable[[torch.Tensor, int], None]


def commit_schedule(n_masked: torch.Tensor, steps: int) -> torch.Tensor:
    """``[B, steps]`` tokens to commit per iteration: ``n // steps`` each, the remainder on the first ones."""
    base = (n_masked // steps)[:, None]
    remainder = (n_masked % steps)[:, None]
    return base + (torch.arange(steps, device=n_masked.device)[None, :] < remainder).long()


def predict_tokens(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted ids and their probability under ``softmax(logits)`` (the confidence used for remasking).

    Temperature 0 takes the argmax; otherwise the Gumbel-max trick samples ``softmax(logits / temperature)``
    (noise drawn in float64, as low-precision Gumbel noise skews the samples).
    """
    logits = logits.float()
    if temperature == 0:
        ids = logits.argmax(dim=-1)
    else:
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float64)
        gumbel = -torch.log(-torch.log(u.clamp(min=1e-300, max=1.0 - 1e-16)))
        ids = (logits.double() / temperature + gumbel).argmax(dim=-1)
    confidence = torch.softmax(logits, dim=-1).gather(-1, ids[:, None])[:, 0]
    return ids, confidence


def _rank_within_row(confidence: torch.Tensor) -> torch.Tensor:
    """0 for the most confident position of each row, 1 for the next, ... (ties: leftmost first)."""
    order = confidence.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks


def finished_rows(
    canvas: torch.Tensor, prompt_length: int, mask_id: int, stop_ids: torch.Tensor
) -> torch.Tensor:
    """``[B]`` True where the response holds a stop token with no mask before the first one."""
    response = canvas[:, prompt_length:]
    is_stop = torch.isin(response, stop_ids)
    first = is_stop.long().argmax(dim=1, keepdim=True)
    masks_before = (response == mask_id).long().cumsum(dim=1).gather(1, first)[:, 0]
    return is_stop.any(dim=1) & (masks_before == 0)


def _fill_after_stop(
    canvas: torch.Tensor, rows: torch.Tensor, prompt_length: int, stop_ids: torch.Tensor, eos_id: int
) -> torch.Tensor:
    response = canvas[:, prompt_length:]
    first = torch.isin(response, stop_ids).long().argmax(dim=1, keepdim=True)
    after = (torch.arange(response.shape[1], device=canvas.device)[None, :] > first) & rows[:, None]
    filled = torch.where(after, torch.full_like(response, eos_id), response)
    return torch.cat([canvas[:, :prompt_length], filled], dim=1)


@dataclass
class DecodeResult:
    """The decoded canvas (prompt + response) and how many forward passes it took."""

    canvas: torch.Tensor
    forward_passes: int


@torch.no_grad()
def diffusion_decode(
    logits_fn: LogitsFn,
    canvas: torch.Tensor,
    prompt_length: int,
    *,
    block_length: int,
    steps_per_block: int,
    mask_id: int,
    eos_id: int,
    stop_ids: Sequence[int] = (),
    temperature: float = 0.0,
    threshold: float | None = None,
    generator: torch.Generator | None = None,
    step_callback: StepCallback | None = None,
) -> DecodeResult:
    """Fill the masked response ``canvas[:, prompt_length:]`` block by block (see the module docstring).

    ``logits_fn`` is asked only for the still-masked positions of the current block; the mask token itself is
    never predicted. ``stop_ids`` empty disables the early stop.
    """
    if steps_per_block < 1 or block_length < 1:
        raise ValueError("block_length and steps_per_block must be positive")
    canvas = canvas.clone()
    rows, total = canvas.shape
    device = canvas.device
    stops = torch.tensor(sorted({int(s) for s in stop_ids} - {mask_id}), dtype=canvas.dtype, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    columns = torch.arange(total, device=device)
    passes = 0
    for block_index, lo in enumerate(range(prompt_length, total, block_length)):
        in_block = (columns >= lo) & (columns < lo + block_length)
        schedule = commit_schedule(((canvas == mask_id) & in_block).sum(dim=1), steps_per_block)
        iteration = 0
        while True:
            masked = (canvas == mask_id) & in_block[None, :] & ~done[:, None]
            if not bool(masked.any()):
                break
            logits = logits_fn(canvas, masked).float()
            logits[:, mask_id] = float("-inf")
            ids, conf = predict_tokens(logits, temperature, generator)
            passes += 1
            confidence = torch.full((rows, total), float("-inf"), device=device)
            confidence[masked] = conf
            proposal = canvas.clone()
            proposal[masked] = ids.to(canvas.dtype)
            ranks = _rank_within_row(confidence)
            if threshold is None:
                count = schedule[:, iteration] if iteration < steps_per_block else masked.sum(dim=1)
                commit = masked & (ranks < count[:, None])
            else:
                commit = masked & ((confidence > threshold) | (ranks == 0))
            canvas = torch.where(commit, proposal, canvas)
            if stops.numel():
                newly = finished_rows(canvas, prompt_length, mask_id, stops) & ~done
                if bool(newly.any()):
                    canvas = _fill_after_stop(canvas, newly, prompt_length, stops, eos_id)
                    done |= newly
            iteration += 1
            if step_callback is not None:
                step_callback(canvas, block_index)
        if bool(done.all()):
            break
    return DecodeResult(canvas, passes)


class DiffusionGenerator:
    """Batched semi-autoregressive sampling from a masked-diffusion model (the ``Generator`` protocol).

    Prompts are expanded ``params.n`` times, sorted by length, LEFT padded (padding is kept out by the
    attention mask and the position ids) and decoded ``batch_size`` rows at a time. Sampling at
    ``temperature > 0`` is seeded per batch (``params.seed`` + batch index) with a private generator, so the
    global RNG is untouched and results repeat for the same inputs and ``batch_size``. ``top_p`` / ``top_k``
    of :class:`~t3s.evals.generation.SamplingParams` are not used (remasking relies on the full distribution).

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
            ``None``: find out with a tiny probe at the first call.
        show_progress: a tqdm progress bar over batches.
    """

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
            *(stop_token_ids if stop_token_ids is not None else default_stop_token_ids(tokenizer, model)),
        ]
        self.stop_token_ids = [s for s in dict.fromkeys(int(s) for s in stops) if s != self.mask_id]
        self.explicit_attention_mask = explicit_attention_mask
        self.show_progress = show_progress
        try:
            self._parts: tuple[Any, Any] | None = decoder_and_head(model)
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
        attention: torch.Tensor | None = keep if padded else None
        if self.explicit_attention_mask:
            dtype = next(self.model.parameters()).dtype
            attention = torch.zeros(len(prompts), 1, total, total, dtype=dtype)
            attention.masked_fill_(keep[:, None, None, :] == 0, torch.finfo(dtype).min)
        attention = attention.to(device) if attention is not None else None
        return ids.to(device), attention, positions.to(device), width

    def _logits_fn(self, attention: torch.Tensor | None, positions: torch.Tensor) -> LogitsFn:
        def logits(canvas: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
            kwargs = {"attention_mask": attention, "position_ids": positions, "use_cache": False}
            if self._parts is None:
                return self.model(input_ids=canvas, **kwargs).logits[select]
            decoder, head = self._parts
            hidden = decoder(input_ids=canvas, **kwargs).last_hidden_state[select]
            return F.linear(hidden, head.weight, getattr(head, "bias", None))

        return logits

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        """Sample ``params.n`` generations for each prompt (outer list: prompts, inner: samples)."""
        from tqdm.auto import tqdm

        for i, ids in enumerate(prompts):
            if len(ids) == 0:
                raise ValueError(f"prompt {i} is empty")
        rows = sorted(
            ((p, s) for p in range(len(prompts)) for s in range(params.n)), key=lambda r: len(prompts[r[0]])
        )
        out: list[list[Generation | None]] = [[None] * params.n for _ in prompts]
        gen_len = self.canvas_length(params.max_new_tokens)
        device = next(self.model.parameters()).device
        batches = [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        was_training = self.model.training
        self.model.eval()
        try:
            if self.explicit_attention_mask is None:
                self.explicit_attention_mask = needs_explicit_mask(self.model)
            for b, batch in enumerate(
                tqdm(batches, desc="diffusion generate", unit="batch", disable=not self.show_progress)
            ):
                ids, attention, positions, width = self._inputs(
                    [prompts[p] for p, _ in batch], gen_len, device
                )
                generator = None
                if not params.greedy:
                    generator = torch.Generator(device=device)
                    generator.manual_seed(int(params.seed) + b)
                result = diffusion_decode(
                    self._logits_fn(attention, positions),
                    ids,
                    width,
                    block_length=self.block_length,
                    steps_per_block=self.steps_per_block,
                    mask_id=self.mask_id,
                    eos_id=self.eos_id,
                    stop_ids=self.stop_token_ids,
                    temperature=float(params.temperature),
                    threshold=self.threshold,
                    generator=generator,
                )
                for (p, s), row in zip(batch, result.canvas[:, width:].tolist()):
                    out[p][s] = self._to_generation(row[: params.max_new_tokens])
        finally:
            self.model.train(was_training)
        return [[g for g in gens if g is not None] for gens in out]

    def _to_generation(self, tokens: list[int]) -> Generation:
        stops = set(self.stop_token_ids)
        cut = next((i for i, t in enumerate(tokens) if t in stops), None)
        kept = tokens if cut is None else tokens[:cut]
        text = self.tokenizer.decode(kept, skip_special_tokens=False)
        return Generation(text=text, token_ids=list(kept), num_tokens=len(kept), hit_limit=cut is None)
