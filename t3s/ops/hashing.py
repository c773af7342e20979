"""Deterministic hashing: the one source of stateless pseudo-random numbers in t3s (torch only).

* :func:`stable_seed` turns any labels (a task seed, an item id, a sample index) into a 63-bit integer via
  SHA-256: the same in every process, unlike ``hash()`` (defined in :mod:`t3s.runtime.seeds`, torch-free).
* :func:`counter_uniform` is a counter-based generator (splitmix64 finaliser folded over integer counters):
  a float64 in [0, 1) that is a fixed function of a start key and the counters, so a draw never depends on
  which micro-batch, rank or row its element lands in.
* :func:`hash_uniform` is the ``[R, length]`` grid form the diffusion student draws its masks from, and
  :func:`hash_uniform_at` the element-wise form (packed rows: a trace index and a position per token).
"""

from __future__ import annotations

import torch

from t3s.runtime.seeds import stable_seed

__all__ = ["counter_uniform", "hash_bits", "hash_uniform", "hash_uniform_at", "stable_seed"]

_INT63 = 0x7FFFFFFFFFFFFFFF
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


def hash_bits(start: int, *counters: torch.Tensor | int, device: torch.device | None = None) -> torch.Tensor:
    """64 pseudo-random bits per element: ``key = start``, then ``key = mix64(key + counter · φ)`` per counter.

    Counters broadcast against each other (pass ``[R, 1]`` and ``[1, L]`` for a grid).
    """
    if not counters:
        raise ValueError("hash_bits needs at least one counter")
    if device is None:
        device = next((c.device for c in counters if isinstance(c, torch.Tensor)), torch.device("cpu"))
    key = torch.tensor(start & _INT63, dtype=torch.int64, device=device)
    for counter in counters:
        value = torch.as_tensor(counter, dtype=torch.int64, device=device)
        key = _mix64(key + value * _GOLDEN)
    return key


def counter_uniform(start: int, *counters: torch.Tensor | int) -> torch.Tensor:
    """Float64 uniforms in [0, 1), a fixed function of ``start`` and the (broadcast) ``counters``."""
    return _shift_right(hash_bits(start, *counters), 11).double() / float(1 << 53)


def hash_uniform(seed: int, step: int, traces: torch.Tensor, length: int, stream: int) -> torch.Tensor:
    """``[R, length]`` float64 uniforms in [0, 1), a fixed function of (seed, step, trace, position, stream).

    ``traces`` holds one trace index per row; positions count from 1. A row's draws do not depend on the
    other rows or on ``length`` beyond its own prefix.
    """
    positions = torch.arange(length, dtype=torch.int64, device=traces.device)
    return hash_uniform_at(seed, step, traces.long()[:, None], positions[None, :], stream)


def hash_uniform_at(
    seed: int, step: int, traces: torch.Tensor, positions: torch.Tensor, stream: int
) -> torch.Tensor:
    """Element-wise form of :func:`hash_uniform`: the draw of each ``(trace, position)`` pair (broadcast).

    ``positions`` count from 0 within each trace, so a token of a packed row draws exactly what it draws on
    a row of its own: ``hash_uniform(seed, step, t, L)[i, j] == hash_uniform_at(seed, step, t[i], j)``.
    """
    start = (seed * 1_000_003 + stream) & _INT63
    return counter_uniform(start, step, traces.long(), positions.long() + 1)
