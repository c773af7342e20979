"""Hugging Face folders next to Lightning checkpoints, written atomically."""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from t3s.errors import T3SError
from t3s.runtime.files import staged_folder

HF_DIRNAME = "hf"


def hf_step_dir(run_dir: str | Path, step: int) -> Path:
    """``<run_dir>/hf/step_<N>``: where the HF folder of optimizer step N lives."""
    return Path(run_dir) / HF_DIRNAME / f"step_{step}"


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keep the entries under ``prefix`` (e.g. ``"model."``) with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def save_hf_folder(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    directory: str | Path,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """``save_pretrained`` (+ tokenizer) into ``directory`` atomically, readable by everyone (0644 / 0755).

    Everything is written to a sibling temporary folder that is renamed into place once complete, so a
    crash never leaves a half-written checkpoint under the final name. ``state_dict`` lets callers
    pass weights gathered by a distributed strategy; ``dtype`` is the dtype they are in (recorded in
    ``config.json`` so ``from_pretrained(dtype="auto")`` loads them as such).
    """
    with staged_folder(directory) as tmp:
        kwargs = {"state_dict": dict(state_dict)} if state_dict is not None else {}
        model.save_pretrained(tmp, **kwargs)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
            _save_stop_ids(model, tokenizer, tmp)
        if dtype is not None:
            config = tmp / "config.json"
            values = json.loads(config.read_text())
            values["dtype"] = str(dtype).removeprefix("torch.")
            config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    return Path(directory)


def _save_stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """Write the model's ``generation_config`` with the end-of-turn ids (``<|im_end|>``, ...) among its
    ``eos_token_id`` and a pad id, so a plain ``generate()`` on the folder stops at the end of the turn."""
    import copy

    from t3s.data.render import stop_token_ids

    config = getattr(model, "generation_config", None)
    if config is None or not model.can_generate():
        return
    config = copy.deepcopy(config)
    current = config.eos_token_id
    ids = [current] if isinstance(current, int) else list(current or [])
    ids += [i for i in stop_token_ids(tokenizer) if i not in ids]
    if not ids:
        return
    config.eos_token_id = ids[0] if len(ids) == 1 else ids
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids[0]
    config.save_pretrained(folder)


def _safetensors_files(folder: Path) -> list[str]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    return ["model.safetensors"]


def read_hf_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of an HF folder's safetensors files, on the CPU."""
    from safetensors.torch import load_file

    folder = Path(folder)
    weights: dict[str, torch.Tensor] = {}
    for shard in _safetensors_files(folder):
        weights.update(load_file(str(folder / shard)))
    return weights


def load_hf_weights(model: torch.nn.Module, folder: str | Path) -> None:
    """Copy the safetensors weights of an HF folder into ``model`` in place (same architecture).

    Tensors absent from the folder must be tied to ones present (e.g. ``lm_head`` tied to the embedding).
    """
    from safetensors import safe_open

    folder = Path(folder)
    weights = dict(model.named_parameters(remove_duplicate=False))
    params = {**weights, **dict(model.named_buffers())}
    loaded = set()
    with torch.no_grad():
        for shard in _safetensors_files(folder):
            with safe_open(str(folder / shard), framework="pt") as f:
                for name in f.keys():
                    if name not in params:
                        raise KeyError(f"{folder}: tensor '{name}' is not in the model")
                    params[name].copy_(f.get_tensor(name))
                    loaded.add(id(params[name]))
    missing = [n for n, p in weights.items() if id(p) not in loaded]
    if missing:
        raise KeyError(f"{folder}: no weights for {missing[:5]}")


def link_final(run_dir: str | Path, step: int) -> Path:
    """Point ``<run_dir>/hf/final`` at ``step_<N>`` (a relative symlink, replaced atomically)."""
    hf = Path(run_dir) / HF_DIRNAME
    final = hf / "final"
    tmp = hf / f".final.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(f"step_{step}", tmp)
    os.replace(tmp, final)
    return final


class CheckpointRefusedError(T3SError, ValueError):
    """A Lightning checkpoint holding pickled objects other than tensors and plain data (one line, exit 2)."""


def refused_checkpoint(path: Any, err: BaseException) -> CheckpointRefusedError:
    """The one line for a checkpoint ``torch.load(weights_only=True)`` refused (it names what it would import)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))  # torch's wording varies: "Unsupported global: GLOBAL x", …
    what = f"it would import {found.group(1)}" if found else "objects torch.load(weights_only=True) refuses"
    return CheckpointRefusedError(f"--ckpt_path {path}: refused: the checkpoint holds pickled objects other than "
                                  f"tensors and plain data ({what}); t3s loads checkpoints with weights_only=True")


class Terminated(Exception):
    """``fit`` stopped by SIGTERM (a scheduler's notice before the kill) after saving a checkpoint: one line, and
    the exit status of a process killed by SIGTERM (143), so the scheduler does not count the job as done."""

    exit_code = 128 + 15

    def __init__(self, message: str, rank: int = 0) -> None:
        super().__init__(message)
        self.rank = rank


class SaveOnSigterm(L.Callback):
    """On SIGTERM, save a resumable checkpoint where ``--ckpt_path last`` finds it.

    Lightning (2.6) only notes the signal (``trainer.received_sigterm``) and, after the step in progress,
    raises ``SIGTERMException`` — a ``SystemExit`` with status 0 — without saving anything. This callback
    saves ``last.ckpt`` in the checkpoint folder (the ``ModelCheckpoint``'s, else ``<log dir>/checkpoints``) from
    ``on_exception``, on every rank (the save is collective); :func:`fit` then raises :class:`Terminated`.
    """

    def __init__(self) -> None:
        self.saved: Path | None = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        callback = trainer.checkpoint_callback
        folder = getattr(callback, "dirpath", None) or Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"
        last = getattr(callback, "CHECKPOINT_NAME_LAST", "last")
        self.saved = Path(folder) / f"{last}.ckpt"
        trainer.save_checkpoint(self.saved)


def fit(trainer: Any, student: Any, datamodule: Any, ckpt_path: str | None = None,
        resume_hint: str | None = None) -> None:
    """``trainer.fit`` resuming from ``ckpt_path`` with ``weights_only=True`` (every strategy: Lightning hands it
    to the checkpoint I/O and to the sharded loaders); a refused pickle is one line, not a traceback.

    The data module is set up first, so bad data is refused before the run's folder exists.
    A trainer with :class:`SaveOnSigterm` that gets SIGTERM raises :class:`Terminated` naming the checkpoint
    and how to resume (``resume_hint``, default ``--ckpt_path <that file>``).
    """
    if datamodule is not None and hasattr(datamodule, "setup"):
        # the data is checked before Lightning's loggers create the run's version_<k> folder: a run refused for
        # its data takes no version number (setup runs once; Lightning's own call then does nothing)
        datamodule.setup("fit")
    try:
        trainer.fit(student, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except pickle.UnpicklingError as err:
        raise refused_checkpoint(ckpt_path, err) from None
    except SIGTERMException:
        saver = next((c for c in trainer.callbacks if isinstance(c, SaveOnSigterm)), None)
        if saver is None or saver.saved is None:
            raise Terminated(f"stopped by SIGTERM at step {trainer.global_step}; no checkpoint saved",
                             trainer.global_rank) from None
        raise Terminated(f"stopped by SIGTERM at step {trainer.global_step}; saved {saver.saved}: resume with "
                         f"{resume_hint or f'--ckpt_path {saver.saved}'}", trainer.global_rank) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes to a temporary file and renames it into place, and loads with
    ``weights_only=True`` unless told otherwise (a checkpoint can come from anyone; unpickling runs code).

    A crash mid-write leaves the previous checkpoint intact instead of a truncated file.
    """

    def load_checkpoint(self, path: _PATH, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        kwargs = {} if map_location is None else {"map_location": map_location}
        try:
            return super().load_checkpoint(path, weights_only=True if weights_only is None else weights_only,
                                           **kwargs)
        except pickle.UnpicklingError as err:
            raise refused_checkpoint(path, err) from None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
