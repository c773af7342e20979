"""Recovering Residual Transfer: θ_RRT = θ_0 + (θ_final − θ_b), tensor by tensor.

θ_b and θ_final may be LoRA/DoRA adapter folders of θ_0 (``adapter/step_N``): each is then read as θ_0 with its
adapter merged (:mod:`t3s.students.adapter_weights`), i.e. θ_0 + (ΔW_final − ΔW_b) for LoRA.

Reads the three checkpoints' safetensors lazily and writes the result shard by shard, so peak memory
is one output shard plus one tensor of each input — an 8B model never needs three copies in memory.

The output folder is never a folder someone else wrote: an existing non-empty ``output`` is refused, and
``overwrite=True`` replaces it only when it is an earlier ``t3s rrt`` output that holds nothing else (the
files it wrote are listed in :data:`MARKER`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from t3s.ops.hf_folders import CheckpointError, LazyTensors, check_finite, check_hf_folder
from t3s.runtime.files import make_shareable

#: Written into every RRT output folder: its inputs and the files t3s wrote there (what ``overwrite`` may replace).
MARKER = "t3s-rrt.json"


class CheckpointLayoutError(CheckpointError):
    """A checkpoint folder lacks safetensors weights, or the three checkpoints do not line up."""


def check_output(output: str | Path, overwrite: bool = False) -> None:
    """Refuse an ``output`` that would lose something t3s did not write.

    Raises:
        CheckpointLayoutError: ``output`` is a file; or a non-empty folder and ``overwrite`` is false; or, with
            ``overwrite``, a folder without :data:`MARKER` or holding files the marker does not list.
    """
    output = Path(output)
    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise CheckpointLayoutError(f"--output {output} exists and is not a folder; give another --output")
    if not output.exists() or not any(output.iterdir()):
        return
    if not overwrite:
        raise CheckpointLayoutError(f"--output {output} exists and is not empty; give another --output, or "
                                    f"--overwrite to replace an earlier t3s rrt output")
    try:
        written = set(json.loads((output / MARKER).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointLayoutError(f"--output {output} was not written by t3s rrt (no readable {MARKER}); "
                                    f"refusing to replace it") from None
    others = sorted(str(p.relative_to(output)) for p in output.rglob("*")
                    if p.name != MARKER and (p.is_symlink() or not p.is_dir()) and p.name not in written)
    others += sorted(str(p.relative_to(output)) for p in output.iterdir() if p.is_dir() and not p.is_symlink())
    if others:
        raise CheckpointLayoutError(f"--output {output} holds files t3s rrt did not write ({', '.join(others[:3])}"
                                    f"{', …' if len(others) > 3 else ''}); refusing to replace it")


@torch.no_grad()
def residual_transfer(base: str | Path, bottleneck: str | Path, final: str | Path, output: str | Path,
                      overwrite: bool = False) -> Path:
    """Write θ_0 + (θ_final − θ_b) as an HF model folder at ``output`` (configs and tokenizer from θ_0).

    ``bottleneck`` and ``final`` may be adapter folders of ``base`` (merged into it tensor by tensor).
    ``output`` must not exist or be empty; ``overwrite`` replaces an earlier ``t3s rrt`` output (see
    :func:`check_output`, which runs before anything is read and again before the folder is replaced).
    """
    from t3s.students.adapter_weights import AdapterTensors, is_adapter_folder

    check_output(output, overwrite)
    for folder in (base, bottleneck, final):
        if not is_adapter_folder(folder):
            check_hf_folder(folder)
    base_t = LazyTensors(base)
    bott_t, final_t = (AdapterTensors(base, f) if is_adapter_folder(f) else LazyTensors(f) for f in (bottleneck, final))
    names = set(base_t.map)
    for label, other in (("bottleneck", bott_t), ("final", final_t)):
        if set(other.map) != names:
            missing = sorted(names ^ set(other.map))[:5]
            raise CheckpointLayoutError(f"the {label} checkpoint has different tensors from the base (e.g. {missing})")

    output = Path(output)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for item in Path(base).iterdir():  # config, generation config, tokenizer, index: everything but weights
        if item.is_file() and not item.name.endswith(".safetensors"):
            shutil.copy2(item, tmp / item.name)

    try:
        shards: dict[str, list[str]] = {}
        for name, shard in base_t.map.items():
            shards.setdefault(shard, []).append(name)
        with tqdm(total=len(names), desc="rrt", unit="tensor") as bar:
            for shard, shard_names in shards.items():
                out: dict[str, torch.Tensor] = {}
                for name in shard_names:
                    t0, tb, tf = base_t.get(name), bott_t.get(name), final_t.get(name)
                    if not (t0.shape == tb.shape == tf.shape):
                        raise CheckpointLayoutError(
                            f"tensor '{name}' differs in shape: {tuple(t0.shape)} in --base {base}, "
                            f"{tuple(tb.shape)} in --bottleneck {bottleneck}, {tuple(tf.shape)} in --final {final}")
                    for source, tensor in ((base, t0), (bottleneck, tb), (final, tf)):
                        check_finite([(name, tensor)], source)
                    if t0.is_floating_point():
                        out[name] = (t0.float() + (tf.float() - tb.float())).to(t0.dtype)
                    else:
                        out[name] = t0
                    bar.update()
                save_file(out, str(tmp / shard), metadata={"format": "pt"})
                del out
        files = sorted(p.name for p in tmp.iterdir())
        (tmp / MARKER).write_text(json.dumps({"base": str(base), "bottleneck": str(bottleneck), "final": str(final),
                                              "files": files}, indent=2) + "\n")
        make_shareable(tmp)
        check_output(output, overwrite)  # again: the folder may have changed during the transfer
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written is left behind
        raise
    if output.exists() and any(output.iterdir()):
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        output.rename(old)
        tmp.rename(output)
        shutil.rmtree(old)
    else:
        if output.exists():
            output.rmdir()
        tmp.rename(output)
    return output
