"""Process-wide state of a ``t3s`` command, set in one place (:func:`configure_process`) when it starts:
warning and log filters, t3s's own log lines on rank 0, the toy world's OmegaConf resolvers.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any


class _OnceFilter(logging.Filter):
    """Drops Lightning's advertising tip and prints each other info line once per process (several trainers
    run in one recipe, each announcing the same GPU/TPU availability)."""

    DROP = ("💡 Tip:", "TPU available:", "HPU available:")

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(self.DROP) or message in self.seen:
            return False
        self.seen.add(message)
        return True


def process_rank() -> int:
    """This process's global rank: Lightning's once it has set it, else the launcher's environment (0 alone)."""
    rank_zero = sys.modules.get("lightning.fabric.utilities.rank_zero")
    rank = getattr(getattr(rank_zero, "rank_zero_only", None), "rank", None)
    if rank is not None:
        return int(rank)
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


class _RankZeroStderr(logging.StreamHandler):
    """t3s's own log lines (``dropped 17 of 33 traces …``), on standard error, printed by rank 0 only: every rank
    loads the same data and reaches the same state, so the other ranks would print the same lines again."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.setLevel(logging.WARNING)  # what Python's last-resort handler printed before this one existed

    @property  # type: ignore[override]
    def stream(self) -> Any:  # the current sys.stderr (redirected by tests and notebooks), like the last resort
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if process_rank() == 0:
            super().emit(record)


_CONFIGURED = False


def configure_process(toy_resolvers: bool = True) -> None:
    """Everything the command line sets for the whole process, in one place (idempotent).

    - warning filters for Lightning messages that are expected here (students step their optimizer by
      hand; ``fit`` without a validation set; a torch pytree deprecation inside Lightning);
    - a log filter that drops Lightning's tip and repeated info lines; t3s's own warnings printed by rank 0
      only; no Hugging Face download/load/save bars (``HF_HUB_DISABLE_PROGRESS_BARS``, unless set);
    - the toy world's OmegaConf resolvers ``${toy_world:…}`` and ``${toy_base:…}`` (unless ``toy_resolvers``
      is false: ``grade`` and ``report`` read no config).
    """
    global _CONFIGURED
    # transformers' "Loading weights" / "Writing model shards" bars at every checkpoint and θ_b reload
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for message in (
        "Using ModelCheckpoint with manual optimization",  # the state after the step is the one we save
        "Total length of `DataLoader` across ranks is zero",  # fit without val_path: benchmarks evaluate
        r".*isinstance\(treespec, LeafSpec\)",  # Lightning on torch ≥ 2.10, not ours to fix
        "LightningCLI's args parameter is intended",  # we always pass args explicitly
        r"The '\w+_dataloader' does not have many workers",  # in-memory token rows: workers buy nothing
    ):
        warnings.filterwarnings("ignore", message=message)
    if not _CONFIGURED:
        _CONFIGURED = True
        logging.getLogger("t3s").addHandler(_RankZeroStderr())
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                     "lightning.fabric.utilities.seed"):  # "Seed set to 0" once, not once per recipe phase
            logging.getLogger(name).addFilter(_OnceFilter())
    if toy_resolvers:
        from t3s.toy.base import register_resolvers

        register_resolvers()
