"""Tiny training runs for the FSDP2 tests, one after the other in the same processes.

``torchrun --standalone --nproc-per-node N fsdp_run.py SPECS.json`` (or ``python fsdp_run.py SPECS.json`` for
one process without a strategy). Each spec says the student family, the selection, the steps and where to
write. Rank 0 writes ``metrics.json`` (``train/loss`` and ``train/grad_norm`` per step) into the run folder;
the weights are in its ``hf/`` folders and the sharded training state in ``checkpoints/``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import ModelParallelStrategy

from t3s.data import TeacherTraceDataModule
from t3s.selection import T3S, FullSFT
from t3s.students import ARStudent, DiffusionStudent
from t3s.students.checkpoints import AtomicCheckpointIO

torch.set_num_threads(1)


class Metrics(L.Callback):
    def __init__(self, path: Path) -> None:
        self.path, self.rows = path, []

    def on_train_batch_end(self, trainer, *args) -> None:
        metrics = trainer.callback_metrics
        self.rows.append({k: float(metrics[k]) for k in ("train/loss", "train/grad_norm")})
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(self.rows))


class Crash(L.Callback):
    """Fails on every rank at the start of step ``at`` (after the checkpoint of the step before)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated crash")


class Restart(L.Callback):
    """At the start of step ``at``, restart from ``hf/step_0`` (the online switch) and write ``hf/step_999``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        if trainer.global_step == self.at:
            pl_module.restart_from(pl_module.run_dir / "hf" / "step_0")
            pl_module.save_hf(999)


def main(spec: dict) -> None:
    world = Path(spec["world"])
    diffusion = spec["family"] == "diffusion"
    data = TeacherTraceDataModule(
        path=str(world / "teacher_traces.jsonl"), tokenizer=str(world / "tokenizer"), limit=spec.get("limit", 8),
        global_batch_size=spec.get("batch", 4), micro_batch_size=2, max_length=512,
        packing=spec.get("packing", not diffusion),
    )
    data.setup("fit")
    selection = T3S(scores=spec["scores"]) if spec.get("scores") else FullSFT()
    kwargs = dict(
        model_config=spec["model_config"], tokenizer=data.tokenizer.name_or_path, selection=selection,
        lr=1e-3, warmup_steps=2, max_grad_norm=spec.get("max_grad_norm", 1.0), **spec.get("student", {}),
    )
    student = DiffusionStudent(objective="llada2", **kwargs) if diffusion else ARStudent(**kwargs)
    root = Path(spec["root"])
    callbacks = [Metrics(root / "metrics.json"), ModelCheckpoint(every_n_train_steps=2, save_top_k=1, save_last=True)]
    if spec.get("crash_at"):
        callbacks.append(Crash(spec["crash_at"]))
    if spec.get("restart_at"):
        callbacks.append(Restart(spec["restart_at"]))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    sharded = world_size > 1 or spec.get("fsdp", False)
    trainer = L.Trainer(
        max_steps=spec.get("steps", 4), accelerator="cpu", devices=world_size,
        strategy=ModelParallelStrategy() if sharded else "auto", default_root_dir=str(root),
        enable_progress_bar=False, enable_model_summary=False, logger=False, log_every_n_steps=1,
        callbacks=callbacks, plugins=None if sharded else [AtomicCheckpointIO()],
    )
    try:
        trainer.fit(student, datamodule=data, ckpt_path=spec.get("resume"))
    except RuntimeError as err:
        if "simulated crash" not in str(err):
            raise


if __name__ == "__main__":
    for spec in json.loads(Path(sys.argv[1]).read_text()):
        main(spec)
