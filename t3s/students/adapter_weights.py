"""LoRA / DoRA adapter folders as weights: the merged W of every adapted layer, read lazily, without peft.

An adapter folder (peft's ``save_pretrained``: ``adapter_config.json`` + ``adapter_model.safetensors``) holds
A, B (and DoRA's magnitude m) per adapted linear layer. Its merged weight is

* LoRA: ``W + s·B·A`` with ``s = alpha / r`` (``alpha / √r`` with ``use_rslora``);
* DoRA: ``m / ‖W + s·B·A‖_row · (W + s·B·A)`` (the row norm over input features), as peft merges it.

:class:`AdapterTensors` serves the merged tensors of base + adapter one at a time (the same interface as RRT's
lazy readers), so RRT on adapters, merged ``hf/step_N`` exports and ``t3s score`` on an adapter folder never
hold more than one tensor of each input in memory.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from t3s.ops.hf_folders import CheckpointError, LazyTensors
from t3s.runtime.files import staged_folder

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."


class AdapterError(CheckpointError):
    """An adapter folder t3s cannot merge (not LoRA/DoRA on linear layers, or not matching its base)."""


def is_adapter_folder(path: str | Path) -> bool:
    """A peft adapter folder (``adapter_config.json``) rather than a full HF model folder (``config.json``)."""
    path = Path(path)
    return (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file()


def adapter_config(folder: str | Path) -> dict:
    """The parsed ``adapter_config.json`` of ``folder`` (one-line error when missing or unreadable)."""
    path = Path(folder) / ADAPTER_CONFIG
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AdapterError(f"{path}: unreadable adapter config ({err})") from None


@dataclass
class LoraFactors:
    """The factors of one adapted linear layer: ΔW = scaling · B · A, DoRA's magnitude when present."""

    lora_a: torch.Tensor  #: ``[r, in]``
    lora_b: torch.Tensor  #: ``[out, r]``
    scaling: float
    magnitude: torch.Tensor | None = None  #: ``[out]`` (DoRA)

    def merge(self, weight: torch.Tensor) -> torch.Tensor:
        """The merged float32 weight of this layer given its base ``weight`` ``[out, in]``."""
        merged = weight.float() + self.scaling * (self.lora_b.float() @ self.lora_a.float())
        if self.magnitude is not None:
            norm = torch.linalg.norm(merged, dim=1)
            merged = (self.magnitude.float() / norm).unsqueeze(1) * merged
        return merged


def read_adapter(folder: str | Path) -> dict[str, LoraFactors]:
    """Base weight name (``model.layers.0.self_attn.q_proj.weight``) → its :class:`LoraFactors`.

    Refuses, in one line, what a merge by these formulas would get wrong: another peft method, per-module
    rank / alpha patterns, ``fan_in_fan_out`` layers, LoRA biases, or extra trained modules (``modules_to_save``).
    """
    folder = Path(folder)
    config = adapter_config(folder)
    where = f"{folder}/{ADAPTER_CONFIG}"
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"{where}: peft_type {config.get('peft_type')!r}; t3s merges LoRA / DoRA adapters only")
    for key in ("rank_pattern", "alpha_pattern", "modules_to_save", "trainable_token_indices"):
        if config.get(key):
            raise AdapterError(f"{where}: {key} is set; t3s merges adapters with one rank and alpha on linear layers")
    if config.get("fan_in_fan_out") or config.get("lora_bias") or config.get("bias", "none") != "none":
        raise AdapterError(f"{where}: fan_in_fan_out / bias adapters are not supported")
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise AdapterError(f"{folder}: no {ADAPTER_WEIGHTS} next to {ADAPTER_CONFIG}")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():
            name = key.removeprefix(_PREFIX)
            for suffix, part in ((".lora_A.weight", "a"), (".lora_B.weight", "b"), (".lora_magnitude_vector", "m")):
                if name.endswith(suffix):
                    parts.setdefault(name.removesuffix(suffix) + ".weight", {})[part] = handle.get_tensor(key)
                    break
            else:
                raise AdapterError(f"{weights}: tensor '{key}' is not a LoRA A / B / DoRA magnitude")
    factors = {}
    for name, found in parts.items():
        if "a" not in found or "b" not in found:
            raise AdapterError(f"{weights}: layer '{name}' lacks lora_A or lora_B")
        factors[name] = LoraFactors(found["a"], found["b"], scaling, found.get("m"))
    return factors


class AdapterTensors:
    """The merged tensors of ``base`` (an HF folder) + ``adapter`` (a LoRA/DoRA folder), one per read.

    ``map`` is the base's tensor → shard map (an adapter adds no tensor); adapted tensors come back in the
    base tensor's dtype.
    """

    def __init__(self, base: str | Path, adapter: str | Path):
        self.base = LazyTensors(base)
        self.map = self.base.map
        self.factors = read_adapter(adapter)
        unknown = sorted(set(self.factors) - set(self.map))
        if unknown:
            raise AdapterError(f"{adapter}: adapts '{unknown[0]}', which the base {base} does not have")

    def get(self, name: str) -> torch.Tensor:
        weight = self.base.get(name)
        factors = self.factors.get(name)
        if factors is None:
            return weight
        if tuple(weight.shape) != (factors.lora_b.shape[0], factors.lora_a.shape[1]):
            raise AdapterError(f"adapter layer '{name}' does not fit the base weight of shape {tuple(weight.shape)}")
        return factors.merge(weight).to(weight.dtype)


def write_merged(base: str | Path, adapter: str | Path, output: str | Path) -> Path:
    """Write base + adapter as a full HF folder at ``output`` (configs, tokenizer and shard layout of ``base``).

    Written to a temporary sibling renamed into place, readable by everyone.
    """
    tensors = AdapterTensors(base, adapter)
    with staged_folder(output) as tmp:
        for item in Path(base).iterdir():  # config, generation config, tokenizer, index: everything but weights
            if item.is_file() and not item.name.endswith(".safetensors"):
                shutil.copy2(item, tmp / item.name)
        shards: dict[str, list[str]] = {}
        for name, shard in tensors.map.items():
            shards.setdefault(shard, []).append(name)
        for shard, names in shards.items():
            save_file({name: tensors.get(name).contiguous() for name in names}, str(tmp / shard),
                      metadata={"format": "pt"})
    return Path(output)


def adapter_base(folder: str | Path) -> Path:
    """The local HF folder of an adapter's base (``base_model_name_or_path``; a hub id is downloaded)."""
    config = adapter_config(folder)
    source = config.get("base_model_name_or_path")
    if not source:
        raise AdapterError(f"{folder}/{ADAPTER_CONFIG}: no base_model_name_or_path; cannot tell which base it adapts")
    path = Path(source).expanduser()
    if not path.is_absolute() and not path.exists() and (Path(folder) / source).exists():
        path = Path(folder) / source  # a base written relative to the adapter folder
    run_base = Path(folder).resolve().parents[1] / "hf" / "step_0"
    if path.is_absolute() and not path.exists() and Path(folder).parent.name == "adapter" and run_base.is_dir():
        path = run_base  # a t3s run moved elsewhere: <run>/adapter/step_N → <run>/hf/step_0
    return local_model_folder(str(path))


def local_model_folder(source: str) -> Path:
    """A local HF folder for ``source``: the folder itself, or a hub id's downloaded snapshot."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]))


def as_model_folder(path: str | Path) -> str:
    """``path`` itself, or for an adapter folder a merged HF folder of base + adapter (``<adapter>/merged``,
    written once and reused while it is newer than the adapter's weights)."""
    if not is_adapter_folder(path):
        return str(path)
    folder = Path(path)
    merged = folder / "merged"
    weights = folder / ADAPTER_WEIGHTS
    if (merged / "config.json").is_file() and weights.is_file() and \
            (merged / "config.json").stat().st_mtime >= weights.stat().st_mtime:
        return str(merged)
    return str(write_merged(adapter_base(folder), folder, merged))
