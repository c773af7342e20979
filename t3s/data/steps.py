"""The optimizer-step schedule of a trace set, and the resumable step sampler.

The training stream is the infinite concatenation of per-epoch permutations of the trace indices
(epoch ``e`` is permuted by a generator seeded with ``(seed, e)``). Optimizer step ``s`` takes stream items
``[s*B, (s+1)*B)`` with ``B = global_batch_size``, so every step has exactly ``B`` traces whatever the packing;
rank ``r`` of ``W`` takes every ``W``-th of them (``ceil(B / W)`` or ``floor(B / W)`` traces when ``W`` does not
divide ``B``; the students normalise over the whole global batch, so the loss is the same). One Lightning epoch
is ``ceil(N / B)`` steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from t3s.data.packing import collate_rows, rows_of
from t3s.data.schema import TokenizedTrace

__all__ = ["StepDataLoader", "StepDataset", "TraceSchedule", "StepSampler", "micro_batches"]


class TraceSchedule:
    """Which traces each optimizer step (and each rank within it) takes; deterministic in ``seed``.

    (Not the students' :class:`~t3s.students.base.PassPlan`, the forward/backward passes of one step.)
    """

    def __init__(self, num_traces: int, global_batch_size: int, seed: int = 0) -> None:
        if num_traces < 1:
            raise ValueError("a trace schedule needs at least one trace")
        if global_batch_size < 1:
            raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.num_traces = num_traces
        self.global_batch_size = global_batch_size
        self.seed = seed
        self._orders: dict[int, np.ndarray] = {}

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one Lightning epoch: ``ceil(N / B)``."""
        return math.ceil(self.num_traces / self.global_batch_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The permutation of trace indices that data epoch ``epoch`` of the stream visits."""
        if epoch not in self._orders:
            if len(self._orders) > 4:
                self._orders.clear()
            rng = np.random.default_rng([self.seed, epoch])
            self._orders[epoch] = rng.permutation(self.num_traces)
        return self._orders[epoch]

    def step_traces(self, step: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """Trace indices of optimizer step ``step`` for ``rank`` of ``world_size`` (every ``W``-th of the ``B``)."""
        if step < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        if self.global_batch_size < world_size:
            raise ValueError(
                f"global_batch_size={self.global_batch_size} is smaller than the world size {world_size}: "
                "every rank needs at least one trace per step"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside the world size {world_size}")
        first = step * self.global_batch_size
        items = range(first + rank, first + self.global_batch_size, world_size)
        return [int(self.epoch_order(i // self.num_traces)[i % self.num_traces]) for i in items]


def micro_batches(
    traces: Sequence[TokenizedTrace], *, micro_batch_size: int, max_length: int, packing: bool, pad_id: int
) -> list[dict[str, Any]]:
    """Rows of at most ``max_length`` tokens (first-fit-decreasing when ``packing``, else one trace per row),
    grouped ``micro_batch_size`` rows at a time and collated."""
    rows = rows_of(traces, max_length, pack=packing)
    return [
        collate_rows(rows[i : i + micro_batch_size], pad_id) for i in range(0, len(rows), micro_batch_size)
    ]


class StepDataset(Dataset):
    """Map-style dataset over optimizer-step indices: item ``s`` is the step batch of step ``s`` for one rank,
    ``{"micro_batches": [...], "num_traces": this rank's traces, "num_tokens": labelled tokens, "step": s}``."""

    def __init__(
        self,
        traces: Sequence[TokenizedTrace],
        schedule: TraceSchedule,
        *,
        rank: int,
        world_size: int,
        micro_batch_size: int,
        max_length: int,
        packing: bool,
        pad_id: int,
    ) -> None:
        schedule.step_traces(0, rank, world_size)  # validates rank / world size early
        self.traces = traces
        self.schedule = schedule
        self.rank = rank
        self.world_size = world_size
        self.micro_batch_size = micro_batch_size
        self.max_length = max_length
        self.packing = packing
        self.pad_id = pad_id

    def __getitem__(self, step: int) -> dict[str, Any]:
        chosen = [self.traces[i] for i in self.schedule.step_traces(step, self.rank, self.world_size)]
        return {
            "micro_batches": micro_batches(
                chosen,
                micro_batch_size=self.micro_batch_size,
                max_length=self.max_length,
                packing=self.packing,
                pad_id=self.pad_id,
            ),
            "num_traces": len(chosen),
            "num_tokens": sum(t.num_response_tokens for t in chosen),
            "step": step,
        }


class StepSampler(DistributedSampler):
    """Yields optimizer-step indices from the current step to the end of the current Lightning epoch.

    ``start_step`` (an int, or a callable such as ``lambda: trainer.global_step``) is read each time iteration
    starts, so a run resumed from a mid-epoch checkpoint continues with exactly the steps it had not taken:
    ``range(s, (s // spe + 1) * spe)``. It subclasses ``DistributedSampler`` only so that Lightning does not
    wrap it in its own distributed sampler: rank sharding already happens in :class:`StepDataset`.
    """

    def __init__(
        self,
        steps_per_epoch: int,
        start_step: int | Callable[[], int] = 0,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        # DistributedSampler.__init__ is skipped on purpose (it needs a sized dataset); its public attributes
        # are set for code that inspects them.
        self.steps_per_epoch = steps_per_epoch
        self._start_step = start_step
        self.num_replicas, self.rank, self.epoch = world_size, rank, 0
        self.shuffle, self.drop_last, self.seed = False, False, 0
        self.num_samples = self.total_size = steps_per_epoch

    def start(self) -> int:
        """The step iteration starts at (the value of ``start_step`` now)."""
        step = self._start_step() if callable(self._start_step) else self._start_step
        return int(step)

    def __iter__(self) -> Iterator[int]:
        start = self.start()
        return iter(range(start, (start // self.steps_per_epoch + 1) * self.steps_per_epoch))

    def __len__(self) -> int:
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Recorded only: the step index alone decides the data."""
        self.epoch = epoch


def _identity(batch: Any) -> Any:
    return batch


class StepDataLoader(DataLoader):
    """The train DataLoader: one item per optimizer step (``batch_size=None``; the dataset collates).

    ``state_dict`` / ``load_state_dict`` declare it resumable to Lightning (it is: the :class:`StepSampler`
    restarts from ``trainer.global_step``), which keeps Lightning from warning that it is not.
    """

    def __init__(self, dataset: StepDataset, sampler: StepSampler, num_workers: int = 0) -> None:
        super().__init__(
            dataset, sampler=sampler, batch_size=None, collate_fn=_identity, num_workers=num_workers
        )

    def state_dict(self) -> dict[str, Any]:
        """Nothing to save: the position is ``trainer.global_step``, which Lightning restores itself."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore (see :meth:`state_dict`)."""
