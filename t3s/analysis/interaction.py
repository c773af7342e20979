"""How the token groups pull on each other: gradient interaction and one-step loss transfer on a probe batch.

Every measurement runs on a fixed probe batch (the first traces of the data set, the same at every
checkpoint). Losses are token-normalised as in training: the NLL summed over a group's tokens of the whole
probe batch (every rank's share) divided by their number. Under a process group (``t3s diagnose --devices N``,
gloo or NCCL) each rank holds some micro-batches of the probe; gradients and loss sums are all-reduced, so
every rank ends with the numbers one process would compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from t3s.data.packing import collate_rows
from t3s.ops.causal_lm import hidden_states, logprobs_at, nll_sum_at


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over the ranks of the default process group, in place (identity without one)."""
    if _distributed():
        torch.distributed.all_reduce(tensor)
    return tensor


@dataclass
class ProbeBatch:
    """This rank's micro-batches of the probe and, per micro-batch, the group (0..G-1, -1: none) of each
    predicted token, indexed like the batch (position 0 of a row is never a target)."""

    micro_batches: list[dict[str, torch.Tensor]]
    groups: list[torch.Tensor]
    num_groups: int = 4
    device: torch.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> ProbeBatch:
        return ProbeBatch([{k: v.to(device) for k, v in mb.items()} for mb in self.micro_batches],
                          [g.to(device) for g in self.groups], self.num_groups, torch.device(device))

    def counts(self) -> torch.Tensor:
        """Tokens per group over the whole probe (all ranks), float64."""
        local = torch.zeros(self.num_groups, dtype=torch.float64, device=self.device)
        for g in self.groups:
            local += torch.bincount(g[g >= 0], minlength=self.num_groups).to(local)
        return all_sum(local)


def probe_batch(datamodule: Any, group_ids: torch.Tensor, offsets: torch.Tensor, *, traces: int = 32,
                micro_batch_size: int | None = None, rank: int = 0, world: int = 1, num_groups: int = 4) -> ProbeBatch:
    """The first ``traces`` traces, one trace per row, ``micro_batch_size`` rows per micro-batch (default: the
    data's); rank ``r`` of ``world`` takes micro-batches ``r, r + world, …``."""
    datamodule.setup("fit")
    chosen = datamodule.traces[: max(1, traces)]
    size = micro_batch_size or datamodule.micro_batch_size
    rows = [[t] for t in chosen]
    batches = [collate_rows(rows[i : i + size], datamodule.pad_id) for i in range(0, len(rows), size)][rank::world]
    groups = []
    for mb in batches:
        ti, pos = mb["trace_index"].long(), mb["position_ids"].long()
        flat = (offsets[ti.clamp(min=0)] + pos).clamp(max=group_ids.numel() - 1)
        g = torch.where(ti >= 0, group_ids[flat], torch.full_like(ti, -1))
        g[mb["labels"] == -100] = -1
        g[:, 0] = -1
        groups.append(g)
    return ProbeBatch([{k: v for k, v in mb.items() if isinstance(v, torch.Tensor)} for mb in batches], groups,
                      num_groups)


@torch.no_grad()
def group_loss_sums(model: nn.Module, probe: ProbeBatch, chunk_size: int = 2048) -> torch.Tensor:
    """Summed NLL of each group's tokens over the whole probe (``[G]`` float64, all ranks)."""
    sums = torch.zeros(probe.num_groups, dtype=torch.float64, device=probe.device)
    for mb, g in zip(probe.micro_batches, probe.groups):
        mask = g >= 0
        lp = logprobs_at(model, hidden_states(model, mb["input_ids"], mb["position_ids"]), mb["input_ids"], mask,
                         chunk_size=chunk_size)
        sums.index_add_(0, g[mask], -lp.double())
    return all_sum(sums)


def group_gradient(model: nn.Module, probe: ProbeBatch, members: Sequence[int], chunk_size: int = 2048,
                   counts: torch.Tensor | None = None) -> list[torch.Tensor]:
    """∇ of the token-normalised NLL of the groups ``members`` (one tensor per trainable parameter, fp32,
    all-reduced); zeros when the probe has none of their tokens."""
    counts = probe.counts() if counts is None else counts
    total = float(counts[list(members)].sum())
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    wanted = torch.tensor(list(members), device=probe.device)
    for mb, g in zip(probe.micro_batches, probe.groups):
        mask = torch.isin(g, wanted)
        if total == 0 or not mask.any():
            continue
        hidden = hidden_states(model, mb["input_ids"], mb["position_ids"])
        loss = nll_sum_at(model, hidden, mb["input_ids"], mask, chunk_size=chunk_size, kernel="chunked")
        (loss / total).backward()
    grads = [p.grad.detach().float().clone() if p.grad is not None else torch.zeros_like(p, dtype=torch.float32)
             for p in params]
    model.zero_grad(set_to_none=True)
    for grad in grads:  # one parameter at a time: no flat copy of the whole model
        all_sum(grad)
    return grads


def gradient_interaction(model: nn.Module, probe: ProbeBatch, anchor: Sequence[int], other: Sequence[int],
                         chunk_size: int = 2048) -> dict[str, float]:
    """Norms of the anchor-only and other-only gradients, their ratio and cosine, over all parameters
    (flattened; accumulated parameter by parameter in float64)."""
    counts = probe.counts()
    g_anchor = group_gradient(model, probe, anchor, chunk_size, counts)
    g_other = group_gradient(model, probe, other, chunk_size, counts)
    sq_a = sq_o = dot = 0.0
    for a, o in zip(g_anchor, g_other):
        a, o = a.double(), o.double()
        sq_a += float((a * a).sum())
        sq_o += float((o * o).sum())
        dot += float((a * o).sum())
    norm_a, norm_o = math.sqrt(sq_a), math.sqrt(sq_o)
    return {
        "grad_norm_anchor": norm_a,
        "grad_norm_other": norm_o,
        "grad_norm_ratio": norm_a / norm_o if norm_o > 0 else float("nan"),
        "grad_cosine": dot / (norm_a * norm_o) if norm_a > 0 and norm_o > 0 else float("nan"),
    }


@dataclass
class OptimizerSettings:
    """The run's AdamW (as ``StudentModule.configure_optimizers`` builds it): one fresh step at ``lr``."""

    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    eps: float = 1e-8
    max_grad_norm: float | None = 1.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> OptimizerSettings:
        """From a phase's saved ``config.yaml`` (``model.init_args``); the peak LR of the run."""
        init_args = ((config.get("model") or {}).get("init_args") or {})
        # a config of one release ago spells the optimizer's keys flat (model.init_args.lr)
        args = {**{k: v for k, v in init_args.items() if not isinstance(v, dict)}, **(init_args.get("optimizer") or {})}
        default = cls()
        return cls(lr=float(args.get("lr", default.lr)), betas=tuple(args.get("betas", default.betas)),
                   weight_decay=float(args.get("weight_decay", default.weight_decay)),
                   eps=float(args.get("adam_eps", default.eps)), max_grad_norm=args.get("max_grad_norm", 1.0))

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(
            [{"params": [p for p in params if p.ndim >= 2], "weight_decay": self.weight_decay},
             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
            lr=self.lr, betas=tuple(self.betas), eps=self.eps,
        )


def loss_transfer(model: nn.Module, probe: ProbeBatch, train_sets: Sequence[Sequence[int]],
                  settings: OptimizerSettings, chunk_size: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on each set of groups in turn (from the same weights, restored in memory after each).

    Returns ``(before, after)``: ``before[j]`` the summed NLL of group j, ``after[i, j]`` the same after one
    step on the token-normalised loss of ``train_sets[i]``. Nothing is written anywhere: the weights are
    copied before and put back after every step.
    """
    counts = probe.counts()
    before = group_loss_sums(model, probe, chunk_size)
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    after = torch.zeros(len(train_sets), probe.num_groups, dtype=torch.float64)
    try:
        for i, members in enumerate(train_sets):
            grads = group_gradient(model, probe, members, chunk_size, counts)
            if settings.max_grad_norm:
                norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
                scale = min(1.0, float(settings.max_grad_norm) / (norm + 1e-6))
                grads = [g * scale for g in grads]
            for p, g in zip(params, grads):
                p.grad = g.to(p.dtype)
            optimizer = settings.optimizer(model)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            after[i] = group_loss_sums(model, probe, chunk_size).cpu()
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
    return before.cpu(), after


def mean_change(before: torch.Tensor, after: torch.Tensor, counts: torch.Tensor,
                columns: Sequence[Sequence[int]]) -> list[list[float]]:
    """Change of the token-normalised loss on each union of groups in ``columns``, per trained set (row)."""
    counts = counts.cpu()
    rows = []
    for i in range(after.shape[0]):
        row = []
        for members in columns:
            n = float(counts[list(members)].sum())
            row.append(float((after[i, list(members)].sum() - before[list(members)].sum()) / n) if n else float("nan"))
        rows.append(row)
    return rows
