"""Sampling from a masked-diffusion student: semi-autoregressive block decoding with low-confidence remasking.

The response starts as ``gen_length`` mask tokens after the prompt. Blocks of ``block_length`` positions are
decoded left to right; inside a block, each iteration predicts every still-masked position of the block
(greedy at temperature 0, Gumbel-max sampling otherwise) and commits the most confident predictions:

* a linear schedule: the block's masked count spread evenly over ``steps_per_block`` iterations (earlier
  iterations take the remainder), so the block is full after its steps; or
* with ``threshold``: every prediction whose probability exceeds it, and at least the most confident one.

A row is finished once a stop token is committed with every position before it filled: the rest of its
canvas becomes EOS and it takes no further part. :class:`DiffusionGenerator` wraps this for the evaluation
code (the Generator protocol) in :mod:`t3s.evals.backends.diffusion`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "DecodeResult",
    "DecodeSettings",
    "LogitsFn",
    "commit_schedule",
    "diffusion_decode",
    "finished_rows",
    "predict_tokens",
    "propose",
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


@dataclass(frozen=True)
class DecodeSettings:
    """The settings both decoders take (this module's :func:`diffusion_decode` and the block-causal
    :func:`t3s.students.diffusion_block_decode.block_causal_decode`).

    Attributes:
        block_length: positions per block.
        steps_per_block: iterations that fill a block (the linear schedule's denominator).
        mask_id: the mask token (never predicted).
        eos_id: what fills a finished row after its stop token.
        stop_ids: tokens that finish a row (the mask token aside); empty disables the early stop.
        temperature: 0 decodes greedily, above it Gumbel-max samples (:func:`predict_tokens`).
        threshold: commit every prediction more probable than this (see the module docstring); None: the schedule.
        generator: the private RNG of the sampling.
    """

    block_length: int
    steps_per_block: int
    mask_id: int
    eos_id: int
    stop_ids: Sequence[int] = ()
    temperature: float = 0.0
    threshold: float | None = None
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if self.steps_per_block < 1 or self.block_length < 1:
            raise ValueError("block_length and steps_per_block must be positive")

    def stop_tensor(self, canvas: torch.Tensor) -> torch.Tensor:
        """The stop ids (the mask token left out), sorted, as a tensor of ``canvas``'s dtype and device."""
        stops = sorted({int(s) for s in self.stop_ids} - {self.mask_id})
        return torch.tensor(stops, dtype=canvas.dtype, device=canvas.device)


def propose(
    logits: torch.Tensor, masked: torch.Tensor, current: torch.Tensor, settings: DecodeSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """One iteration's prediction for the ``masked`` positions of ``current`` (a canvas or a block of it).

    ``logits`` are those of the masked positions, row-major (changed in place: the mask token is never
    predicted). Returns ``current`` with every masked position predicted, and the confidence of each position
    (``-inf`` where nothing was masked), both of ``current``'s shape.
    """
    logits[:, settings.mask_id] = float("-inf")
    ids, conf = predict_tokens(logits, settings.temperature, settings.generator)
    confidence = torch.full(masked.shape, float("-inf"), device=current.device)
    confidence[masked] = conf
    proposal = current.clone()
    proposal[masked] = ids.to(current.dtype)
    return proposal, confidence


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
    settings: DecodeSettings,
    *,
    step_callback: StepCallback | None = None,
) -> DecodeResult:
    """Fill the masked response ``canvas[:, prompt_length:]`` block by block (see the module docstring).

    ``logits_fn`` is asked only for the still-masked positions of the current block; the mask token itself is
    never predicted.
    """
    block_length, steps_per_block, mask_id = settings.block_length, settings.steps_per_block, settings.mask_id
    canvas = canvas.clone()
    rows, total = canvas.shape
    device = canvas.device
    stops = settings.stop_tensor(canvas)
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
            proposal, confidence = propose(logits_fn(canvas, masked).float(), masked, canvas, settings)
            passes += 1
            ranks = _rank_within_row(confidence)
            if settings.threshold is None:
                count = schedule[:, iteration] if iteration < steps_per_block else masked.sum(dim=1)
                commit = masked & (ranks < count[:, None])
            else:
                commit = masked & ((confidence > settings.threshold) | (ranks == 0))
            canvas = torch.where(commit, proposal, canvas)
            if stops.numel():
                newly = finished_rows(canvas, prompt_length, mask_id, stops) & ~done
                if bool(newly.any()):
                    canvas = _fill_after_stop(canvas, newly, prompt_length, stops, settings.eos_id)
                    done |= newly
            iteration += 1
            if step_callback is not None:
                step_callback(canvas, block_index)
        if bool(done.all()):
            break
    return DecodeResult(canvas, passes)
