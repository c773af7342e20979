"""Helpers shared by the DiffusionStudent tests: the tiny student and a Δc cache keyed by position."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import tiny_model_config

from t3s.data import TeacherTraceDataModule
from t3s.selection.scores import ScoreCache
from t3s.students import DiffusionStudent


def make_diffusion_student(data: TeacherTraceDataModule, **kw) -> DiffusionStudent:
    """A DiffusionStudent on a tiny random Qwen3 sized to the data's tokenizer, its model built."""
    student = DiffusionStudent(
        model_config=tiny_model_config(len(data.tokenizer)), tokenizer=data.tokenizer.name_or_path, **kw
    )
    student.configure_model()
    return student


def position_delta_cache(data: TeacherTraceDataModule, out: Path) -> str:
    """Save at ``out`` a score cache of the data whose Δc depends on the position t inside each trace:
    +0.5 at t%4==0 (anchors), −0.5 at t%4==1 (yet-to-learn), −0.1 at 2 and 0 at 3; return its folder."""
    lengths = torch.tensor([len(t.input_ids) for t in data.traces])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    pos = torch.cat([torch.arange(n) for n in lengths.tolist()])
    delta = torch.tensor([0.5, -0.5, -0.1, 0.0])[pos % 4]
    ScoreCache(torch.zeros(len(pos)), delta, offsets, {"data": data.fingerprint()}).save(out)
    return str(out)
