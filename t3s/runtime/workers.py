"""Local worker processes joined by a ``torch.distributed`` process group (``t3s evaluate``, ``t3s diagnose``)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

import torch


def run_on_workers(target: Callable[..., None], args: Sequence[Any], workers: int, backend: str | None = None) -> None:
    """``target(rank, world, *args)`` in this process (one worker) or in ``workers`` spawned processes.

    Spawned workers share the CPU threads, join one process group on a free local port (``backend``:
    given, else NCCL with GPUs and gloo without; an NCCL worker takes GPU ``rank``) and leave it when
    ``target`` returns or raises. ``target`` must be a module-level function (spawn pickles it).
    """
    if workers == 1:
        target(0, 1, *args)
        return
    import torch.multiprocessing as mp

    address = f"127.0.0.1:{_free_port()}"
    mp.start_processes(_run_worker, args=(workers, address, backend, target, tuple(args)), nprocs=workers,
                       start_method="spawn", join=True)


def worker_device(rank: int) -> torch.device:
    """The device of worker ``rank``: GPU ``rank`` (modulo the GPUs there are), else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{rank % torch.cuda.device_count()}")
    return torch.device("cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_worker(rank: int, world: int, address: str, backend: str | None, target: Callable[..., None],
                args: tuple[Any, ...]) -> None:
    import torch.distributed as dist

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(backend, init_method=f"tcp://{address}", rank=rank, world_size=world)
    try:
        target(rank, world, *args)
    finally:
        dist.destroy_process_group()
