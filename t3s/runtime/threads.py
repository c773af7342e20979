"""CPU intra-op threads sized to the model: one thread for small models, the process's share otherwise.

torch starts one intra-op thread per core. For a model of a few million parameters each matrix product is
too small to split, and on a loaded machine (a shared workstation, a CI runner) idle threads spin waiting
for their share: the toy quick start took 7× the CPU time at load ~20 with the default threads and the
same curves with one. So a model below :data:`SMALL_MODEL_PARAMETERS` runs on one thread by default.

Precedence: ``T3S_THREADS`` (a count, or ``auto`` for torch's own default) over ``OMP_NUM_THREADS`` (the
user's choice, left as torch read it) over the size rule. GPUs are untouched.
"""

from __future__ import annotations

import os

import torch

from t3s.errors import T3SError

#: Models below this many parameters run on one CPU thread (the toy, tiny and test models are 0.1–3 M; a
#: 0.6 B Qwen3 uses every core it is given).
SMALL_MODEL_PARAMETERS = 20_000_000
THREADS_ENV = "T3S_THREADS"


class ThreadsSettingError(T3SError, ValueError):
    """``T3S_THREADS`` holds something other than a thread count or ``auto``."""


def parameter_count(model: torch.nn.Module) -> int:
    """Number of parameters (shared tensors once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def cpu_threads_for(num_parameters: int, share: int | None = None) -> int | None:
    """The intra-op thread count for a CPU model of ``num_parameters``, or ``None`` to leave torch's setting.

    ``share`` is this process's share of the cores (``t3s evaluate --devices N`` gives each worker
    ``cores // N``); without it the size rule picks between one thread and torch's current count.

    Raises:
        ThreadsSettingError: ``T3S_THREADS`` is neither a positive integer nor ``auto``.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if value == "auto":
            return share
        if not value.isdigit() or int(value) < 1:
            raise ThreadsSettingError(f"{THREADS_ENV}={value!r}: expected a positive number of threads or 'auto'")
        return int(value)
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    if num_parameters < SMALL_MODEL_PARAMETERS:
        return 1
    return share


def right_size_threads(model: torch.nn.Module, device: torch.device | str | None = None,
                       share: int | None = None) -> int:
    """Set torch's intra-op threads for ``model`` running on the CPU (see :func:`cpu_threads_for`); a model
    on another device changes nothing. Returns the thread count in force."""
    on_cpu = device is None or torch.device(device).type == "cpu"
    if on_cpu:
        threads = cpu_threads_for(parameter_count(model), share)
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(threads)
    return torch.get_num_threads()
