"""Block-causal decoding of a block-diffusion model, as LLaDA 2.0's own ``generate`` decodes.

Blocks are *absolute*: token ``i`` of a row (prompt included) is in block ``i // block_length``. A block attends
to itself and to every earlier block (block-causal), so a committed block never changes again and its keys and
values can be cached: :class:`CachedPrefix` runs each committed block through the model once and then only the
block being decoded, while :class:`FullRecompute` re-runs the whole window ``[0, end of block)`` at every
iteration (LLaDA2's reference loop). Both give the same logits (up to float rounding) and so the same tokens.

The commit rule is LLaDA2's: iteration ``s`` of a block has a quota ``q_s`` (``block_length`` spread evenly over
``steps_per_block`` iterations, the remainder first); with a ``threshold``, every masked prediction above it is
committed when there are at least ``q_s`` of them, else the ``q_s`` most confident; without, the ``q_s`` most
confident. The mask token is never predicted.

Batches: every row's left padding is a multiple of ``block_length`` (see :func:`aligned_layout`), so all rows
share the column grid of blocks; padding is hidden by an explicit 4-D mask (never a 2-D one, which some
models turn causal). A row decodes the same tokens in a batch as alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.nn import functional as F

from t3s.students.diffusion_blocks import additive, block_causal_mask
from t3s.students.diffusion_sampler import DecodeResult, DecodeSettings, commit_schedule, propose

__all__ = [
    "BlockForward",
    "CachedPrefix",
    "FullRecompute",
    "Layout",
    "aligned_layout",
    "block_causal_decode",
    "cache_keyword",
]


@dataclass
class Layout:
    """A batch of prompts on a shared block grid.

    Attributes:
        canvas: ``[R, T]`` left padding, prompt, then mask tokens; ``T`` is a multiple of the block length.
        valid: ``[R, T]`` bool, False on the left padding.
        positions: ``[R, T]`` position of each column in its row (0 at the first prompt token).
        response_start: ``[R]`` column of each row's first response token.
    """

    canvas: torch.Tensor
    valid: torch.Tensor
    positions: torch.Tensor
    response_start: torch.Tensor


def aligned_layout(
    prompts: Sequence[Sequence[int]], gen_length: int, block_length: int, mask_id: int, pad_id: int
) -> Layout:
    """Left-pad each prompt by a multiple of ``block_length`` so that absolute blocks line up across rows.

    Each row's canvas reaches at least to the end of the block holding its ``gen_length``-th response token
    (LLaDA2's canvas for that row alone); shorter rows get extra trailing blocks, which attend to nothing
    before them that they could change.
    """
    longest = max(len(p) for p in prompts)
    pads = [((longest - len(p)) // block_length) * block_length for p in prompts]
    ends = [pad + -(-(len(p) + gen_length) // block_length) * block_length for p, pad in zip(prompts, pads)]
    total = max(ends)
    rows = len(prompts)
    canvas = torch.full((rows, total), mask_id, dtype=torch.long)
    valid = torch.ones((rows, total), dtype=torch.bool)
    for r, (p, pad) in enumerate(zip(prompts, pads)):
        canvas[r, :pad] = pad_id
        valid[r, :pad] = False
        canvas[r, pad : pad + len(p)] = torch.tensor(list(p), dtype=torch.long)
    positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0)
    start = torch.tensor([pad + len(p) for p, pad in zip(prompts, pads)], dtype=torch.long)
    return Layout(canvas, valid, positions, start)


def cache_keyword(decoder: Any) -> str | None:
    """The decoder's KV-cache argument (``cache`` in recent transformers, else ``past_key_values``), if any."""
    params = inspect.signature(decoder.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


class BlockForward(Protocol):
    """Logits of the block being decoded; the decoder calls ``logits`` with every column before ``lo``
    committed."""

    def logits(self, canvas: torch.Tensor, lo: int, hi: int, select: torch.Tensor) -> torch.Tensor:
        """``[N, V]`` logits at the ``select``-ed positions (``[R, hi − lo]``) of columns ``[lo, hi)``."""
        ...


class _Parts:
    def __init__(self, model: Any, layout: Layout, block_length: int) -> None:
        from t3s.students.diffusion_hf import decoder_and_head

        self.decoder, self.head = decoder_and_head(model)
        self.dtype = next(model.parameters()).dtype
        self.positions = layout.positions.to(layout.canvas.device)
        self.valid = layout.valid.to(layout.canvas.device)
        self.block_length = block_length

    def mask(self, q_lo: int, q_hi: int, k_hi: int) -> torch.Tensor:
        bool_mask = block_causal_mask(
            self.positions[:, q_lo:q_hi], self.positions[:, :k_hi], self.block_length, self.valid[:, :k_hi]
        )
        return additive(bool_mask, self.dtype)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.head.weight, getattr(self.head, "bias", None))


class FullRecompute(_Parts):
    """The reference: the whole window ``[0, hi)`` under the block-causal mask at every iteration."""

    def logits(self, canvas: torch.Tensor, lo: int, hi: int, select: torch.Tensor) -> torch.Tensor:
        hidden = self.decoder(
            input_ids=canvas[:, :hi], position_ids=self.positions[:, :hi], attention_mask=self.mask(0, hi, hi),
            use_cache=False,
        ).last_hidden_state
        return self.project(hidden[:, lo:hi][select])


class CachedPrefix(_Parts):
    """KV cache of the committed prefix: each committed block runs once; iterations run only the current one."""

    def __init__(self, model: Any, layout: Layout, block_length: int) -> None:
        from transformers import DynamicCache

        super().__init__(model, layout, block_length)
        keyword = cache_keyword(self.decoder)
        if keyword is None:
            raise ValueError(f"{type(self.decoder).__name__} takes no KV cache; decode with kv_cache: false")
        self.keyword = keyword
        self.cache = DynamicCache(config=model.config)
        self.cached = 0

    def _run(self, canvas: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        return self.decoder(
            input_ids=canvas[:, lo:hi], position_ids=self.positions[:, lo:hi], attention_mask=self.mask(lo, hi, hi),
            use_cache=True, **{self.keyword: self.cache},
        ).last_hidden_state

    def logits(self, canvas: torch.Tensor, lo: int, hi: int, select: torch.Tensor) -> torch.Tensor:
        if self.cached < lo:  # the blocks committed since the last call enter the cache, clean
            self._run(canvas, self.cached, lo)
            self.cached = lo
        hidden = self._run(canvas, lo, hi)
        self.cache.crop(lo - self.cache.get_seq_length())  # drop the block again (a negative count)
        return self.project(hidden[select])


def _finished(canvas: torch.Tensor, start: torch.Tensor, mask_id: int, stops: torch.Tensor) -> torch.Tensor:
    """``[R]`` True where the response holds a stop token with no mask token before the first one."""
    columns = torch.arange(canvas.shape[1], device=canvas.device)[None, :]
    response = columns >= start[:, None]
    is_stop = torch.isin(canvas, stops) & response
    first = torch.where(is_stop.any(1), is_stop.long().argmax(1), torch.full_like(start, canvas.shape[1]))
    masked_before = ((canvas == mask_id) & response & (columns < first[:, None])).any(1)
    return is_stop.any(1) & ~masked_before


@torch.no_grad()
def block_causal_decode(forward: BlockForward, layout: Layout, settings: DecodeSettings) -> DecodeResult:
    """Decode every masked column of ``layout.canvas`` block by block (see the module docstring).

    A row is finished once a stop token is committed with nothing masked before it: the rest of its canvas
    becomes EOS and it takes no further part (what follows a stop token is never returned).
    """
    block_length, steps_per_block, mask_id = settings.block_length, settings.steps_per_block, settings.mask_id
    canvas = layout.canvas.clone()
    device = canvas.device
    start = layout.response_start.to(device)
    rows, total = canvas.shape
    stops = settings.stop_tensor(canvas)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    quota = commit_schedule(torch.tensor([block_length], device=device), steps_per_block)[0]
    columns = torch.arange(total, device=device)
    passes = 0
    first_block = int(start.min()) // block_length
    for lo in range(first_block * block_length, total, block_length):
        hi = lo + block_length
        iteration = 0
        while True:
            masked = (canvas[:, lo:hi] == mask_id) & ~done[:, None]
            if not bool(masked.any()):
                break
            logits = forward.logits(canvas, lo, hi, masked).float()
            proposal, confidence = propose(logits, masked, canvas[:, lo:hi], settings)
            passes += 1
            order = confidence.argsort(dim=1, descending=True, stable=True)
            ranks = torch.empty_like(order).scatter_(
                1, order, torch.arange(block_length, device=device).expand_as(order)
            )
            count = int(quota[iteration]) if iteration < steps_per_block else block_length
            count_row = masked.sum(dim=1).clamp(max=count)
            commit = masked & (ranks < count_row[:, None])
            if settings.threshold is not None:
                high = masked & (confidence > settings.threshold)
                enough = high.sum(dim=1) >= count_row
                commit = torch.where(enough[:, None], high, commit)
            canvas[:, lo:hi] = torch.where(commit, proposal, canvas[:, lo:hi])
            if stops.numel():
                newly = _finished(canvas, start, mask_id, stops) & ~done
                if bool(newly.any()):
                    is_stop = torch.isin(canvas, stops) & (columns[None, :] >= start[:, None])
                    first = is_stop.long().argmax(1, keepdim=True)
                    after = (columns[None, :] > first) & newly[:, None]
                    canvas = torch.where(after, torch.full_like(canvas, settings.eos_id), canvas)
                    done |= newly
            iteration += 1
        if bool(done.all()):
            break
    return DecodeResult(canvas, passes)
