"""The first four ``train/loss`` values of tiny FullSFT, T3S and diffusion runs, pinned.

Recorded from the code before the one-training-step refactor; a change that moves these numbers changes
what training computes (rtol 1e-4, as torchtune's recipe tests pin their losses).
"""

from __future__ import annotations

import pytest
from conftest import Record, make_trainer, tiny_model_config, tiny_trace_data

from t3s.selection import T3S, FullSFT
from t3s.students import ARStudent, DiffusionStudent

PINNED = {
    "ar-fullsft": [4.301391, 4.278159, 4.211709, 4.173283],
    "ar-t3s": [4.235322, 4.199533, 4.129771, 4.087225],
    "diffusion-fullsft": [4.291310, 4.266428, 4.217772, 4.208474],
    "diffusion-t3s": [4.290700, 4.264950, 4.220685, 4.208181],  # anchor_visibility 1: the plain union
    "diffusion-t3s-anchors": [4.272352, 4.244236, 4.200072, 4.168159],  # the default: anchors kept visible
}


def _losses(name, world, tmp_path, score_caches) -> list[float]:
    diffusion = name.startswith("diffusion")
    data = tiny_trace_data(world, packing=not diffusion)
    selection = T3S(scores=score_caches[not diffusion]) if "t3s" in name else FullSFT()
    kwargs = dict(
        model_config=tiny_model_config(len(data.tokenizer)), tokenizer=data.tokenizer.name_or_path,
        selection=selection, lr=1e-3, warmup_steps=2, max_grad_norm=1.0,
    )
    if diffusion:
        kwargs["anchor_visibility"] = 0.0 if name.endswith("anchors") else 1.0
    student = DiffusionStudent(objective="llada2", **kwargs) if diffusion else ARStudent(**kwargs)
    rec = Record()
    make_trainer(tmp_path, 4, callbacks=[rec]).fit(student, datamodule=data)
    return [row["train/loss"] for row in rec.rows]


@pytest.mark.parametrize("name", list(PINNED))
def test_first_four_losses_are_pinned(name, tiny_world, tmp_path, tiny_score_caches):
    losses = _losses(name, tiny_world, tmp_path, tiny_score_caches)
    assert losses == pytest.approx(PINNED[name], rel=1e-4)
