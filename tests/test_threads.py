"""CPU threads sized to the model: one for small models, T3S_THREADS / OMP_NUM_THREADS override."""

from __future__ import annotations

import pytest
import torch
from conftest import make_data, make_student, make_trainer

from t3s.runtime.threads import SMALL_MODEL_PARAMETERS, cpu_threads_for, right_size_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_size_rule_and_overrides(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("T3S_THREADS", raising=False)
    assert cpu_threads_for(700_000) == 1
    assert cpu_threads_for(SMALL_MODEL_PARAMETERS) is None  # large: torch's own setting
    assert cpu_threads_for(SMALL_MODEL_PARAMETERS, share=3) == 3  # large, evaluation worker: its share
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's choice stands
    assert cpu_threads_for(700_000) is None
    monkeypatch.setenv("T3S_THREADS", "4")  # over everything
    assert cpu_threads_for(700_000) == 4
    monkeypatch.setenv("T3S_THREADS", "auto")
    assert cpu_threads_for(700_000) is None
    monkeypatch.setenv("T3S_THREADS", "many")
    with pytest.raises(ValueError, match="T3S_THREADS='many'"):
        cpu_threads_for(700_000)


def test_a_model_on_another_device_leaves_threads_alone(monkeypatch, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("T3S_THREADS", raising=False)
    torch.set_num_threads(2)
    assert right_size_threads(torch.nn.Linear(4, 4), "meta") == 2
    assert right_size_threads(torch.nn.Linear(4, 4), "cpu") == 1


@pytest.mark.parametrize("env, expected", [(None, 1), ("2", 2)])
def test_fit_of_a_small_student_runs_on_one_thread(tiny_world, tmp_path, monkeypatch, restore_threads, env, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if env is None:
        monkeypatch.delenv("T3S_THREADS", raising=False)
    else:
        monkeypatch.setenv("T3S_THREADS", env)
    torch.set_num_threads(2)
    data = make_data(tiny_world, batch=4, micro=4)
    student = make_student(data)
    make_trainer(tmp_path, 1).fit(student, datamodule=data)
    assert torch.get_num_threads() == expected
