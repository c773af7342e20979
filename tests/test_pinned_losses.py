"""The first four ``train/loss`` values of tiny FullSFT, T3S and diffusion runs, pinned.

Recorded from the code before the one-training-step refactor; a change that moves these numbers changes
what training computes (rtol 1e-4, as torchtune's recipe tests pin their losses).
"""

from __future__ import annotations

import pytest
import torch
from conftest import Record, make_trainer, tiny_model_config
from transformers import AutoConfig, AutoModelForCausalLM

from t3s.data import TeacherTraceDataModule
from t3s.scoring import score
from t3s.selection import T3S, FullSFT
from t3s.students import ARStudent, DiffusionStudent

PINNED = {
    "ar-fullsft": [4.301391, 4.278159, 4.211709, 4.173283],
    "ar-t3s": [4.235322, 4.199533, 4.129771, 4.087225],
    "diffusion-fullsft": [4.291310, 4.266428, 4.217772, 4.208474],
    "diffusion-t3s": [4.290700, 4.264950, 4.220685, 4.208181],
}


def _data(world, packing: bool) -> TeacherTraceDataModule:
    data = TeacherTraceDataModule(
        path=str(world / "teacher_traces.jsonl"), tokenizer=str(world / "tokenizer"), limit=8,
        global_batch_size=4, micro_batch_size=2, max_length=512, packing=packing,
    )
    data.setup("fit")
    return data


def _save_random_ar(path, data, seed: int) -> str:
    cfg = dict(tiny_model_config(len(data.tokenizer)))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
    model.save_pretrained(path)
    data.tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def score_dirs(tiny_world, tmp_path_factory) -> dict[bool, str]:
    """Δc caches (packed AR data, unpacked diffusion data) from two random tiny checkpoints."""
    root = tmp_path_factory.mktemp("pinned-scores")
    out = {}
    for packing in (True, False):
        data = _data(tiny_world, packing)
        base = _save_random_ar(root / f"base-{packing}", data, 0)
        bottleneck = _save_random_ar(root / f"bottleneck-{packing}", data, 1)
        score(data, base, bottleneck, root / f"scores-{packing}", device="cpu")
        out[packing] = str(root / f"scores-{packing}")
    return out


def _losses(name, world, tmp_path, score_dirs) -> list[float]:
    diffusion = name.startswith("diffusion")
    data = _data(world, packing=not diffusion)
    selection = T3S(scores=score_dirs[not diffusion]) if name.endswith("t3s") else FullSFT()
    kwargs = dict(
        model_config=tiny_model_config(len(data.tokenizer)), tokenizer=data.tokenizer.name_or_path,
        selection=selection, lr=1e-3, warmup_steps=2, max_grad_norm=1.0,
    )
    student = DiffusionStudent(objective="llada2", **kwargs) if diffusion else ARStudent(**kwargs)
    rec = Record()
    make_trainer(tmp_path, 4, callbacks=[rec]).fit(student, datamodule=data)
    return [row["train/loss"] for row in rec.rows]


@pytest.mark.parametrize("name", list(PINNED))
def test_first_four_losses_are_pinned(name, tiny_world, tmp_path, score_dirs):
    losses = _losses(name, tiny_world, tmp_path, score_dirs)
    assert losses == pytest.approx(PINNED[name], rel=1e-4)
