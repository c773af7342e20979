"""Checks on Hugging Face model folders before they are used: present, a model, readable, finite.

A folder a user names (θ_0, a checkpoint to score, RRT inputs) fails with one line naming the file and
what is wrong, instead of a loader traceback or, worse, silently wrong numbers from NaN weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from t3s.errors import T3SError


class CheckpointError(T3SError, ValueError):
    """An HF model folder that cannot be used: missing, not a model, unreadable or non-finite weights."""


def looks_local(source: str | Path) -> bool:
    """A local path rather than a hub id (``org/name``): it exists, or is written like a path."""
    text = str(source)
    return Path(text).expanduser().exists() or text.startswith(("/", ".", "~")) or text.count("/") > 1


def check_hf_folder(folder: str | Path) -> Path:
    """The folder, if it is a loadable HF model: ``config.json`` and weight files whose headers read."""
    from safetensors import safe_open

    path = Path(folder).expanduser()
    if not path.exists():
        raise CheckpointError(f"{folder}: no such model folder")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise CheckpointError(f"{folder}: not a Hugging Face model folder (no config.json)")
    weights = sorted(path.glob("*.safetensors"))
    if not weights and not any(path.glob("*.bin")):
        raise CheckpointError(f"{folder}: no weights (*.safetensors) next to config.json")
    for file in weights:
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # noqa: BLE001 - safetensors raises several kinds for a bad header
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"{file}: unreadable safetensors file ({reason}); truncated or not a checkpoint"
            ) from None
    return path


def check_finite(tensors: Iterable[tuple[str, torch.Tensor]], source: str | Path) -> None:
    """Refuse weights with NaN or Inf, naming the first such tensor."""
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source}: tensor '{name}' holds NaN or Inf values; refusing to use these weights")


_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"


def weight_map(folder: str | Path) -> dict[str, str]:
    """Tensor name → shard file name of an HF folder (sharded or single-file safetensors)."""
    import json

    from safetensors import safe_open

    folder = Path(folder)
    if (folder / _INDEX).is_file():
        return dict(json.loads((folder / _INDEX).read_text())["weight_map"])
    if (folder / _SINGLE).is_file():
        with safe_open(str(folder / _SINGLE), framework="pt") as f:
            return {name: _SINGLE for name in f.keys()}
    raise CheckpointError(f"'{folder}' has no {_SINGLE} or {_INDEX}: save it with save_pretrained first")


class LazyTensors:
    """The tensors of an HF folder's safetensors files, opened on demand, one tensor per read (an 8B
    model never needs to be in memory whole)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.map = weight_map(folder)
        self._open: dict[str, Any] = {}

    def get(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        shard = self.map[name]
        if shard not in self._open:
            self._open[shard] = safe_open(str(self.folder / shard), framework="pt")
        return self._open[shard].get_tensor(name)

