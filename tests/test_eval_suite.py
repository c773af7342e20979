"""Plug-ins that know themselves: the shared :class:`EvalSuite`, the backend registry, a student family's own
backend and saved-folder family, and a strategy's score folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from t3s.evals import BenchmarkCallback, EvalSuite
from t3s.evals.backends import BACKENDS, get_backend, resolve_backend
from t3s.evals.backends.base import BackendError
from t3s.evals.callback_settings import grouped
from t3s.selection import T3S, FullSFT, RandomMask
from t3s.students import ARStudent, DiffusionStudent
from t3s.students.families import saved_family

PACKAGE = Path(__file__).resolve().parents[1] / "t3s"


def test_the_suite_checks_its_settings_on_construction():
    assert EvalSuite().tasks == [] and EvalSuite().train_tag == "bench/train/avg@1"
    assert EvalSuite(sampling={"n": 4}).train_tag == "bench/train/avg@4"
    for bad, message in (({"batch_size": 0}, "batch_size"), ({"train_limit": 0}, "train_limit"),
                         ({"train_grader": "fuzzy"}, "train_grader"), ({"sampling": {"temp": 0}}, "temp"),
                         ({"backend": "tgi"}, "backend must be one of hf, diffusion, vllm"),
                         ({"vllm": {"trust_remote_code": True}}, "not allowed")):
        with pytest.raises(ValueError, match=message):
            EvalSuite(**bad)


def test_flat_keys_are_aliases_of_the_groups_and_a_flat_non_default_wins():
    flat = BenchmarkCallback(tasks=["aime24"], every_n_steps=3, train_limit=None, bottleneck_margin=0.1)
    grouped_ = BenchmarkCallback(suite=EvalSuite(tasks=["aime24"], train_limit=None),
                                 schedule={"every_n_steps": 3}, curve={"bottleneck_margin": 0.1})
    for callback in (flat, grouped_):
        assert (callback.suite.tasks, callback.suite.train_limit) == (["aime24"], None)
        assert (callback.every_n_steps, callback.detector.margin) == (3, 0.1)  # read flat, as before
    assert BenchmarkCallback(suite=EvalSuite(train_limit=5), train_limit=7).suite.train_limit == 7
    with pytest.raises(ValueError, match="mode 'subprocess' or 'defer'"):
        BenchmarkCallback(backend="vllm")
    with pytest.raises(ValueError, match="every_n_steps"):
        BenchmarkCallback(schedule={"every_n_steps": 0})


def test_every_group_field_is_a_flat_argument_with_the_same_default():
    """A flat key wins only when it differs from its default, so the callback's flat signature and the groups'
    dataclasses must agree on every default (the two are written separately)."""
    import dataclasses
    import inspect

    from t3s.evals.callback_settings import GROUPS

    flat = inspect.signature(BenchmarkCallback.__init__).parameters
    for group in GROUPS.values():
        for field in dataclasses.fields(group):
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            assert field.name in flat, field.name
            assert flat[field.name].default == default, field.name


def test_a_saved_config_gives_its_groups_whichever_spelling_it_used():
    args = {"suite": {"tasks": ["a"]}, "every_n_steps": 4, "train_limit": 256, "batch_size": 2, "backend": "hf"}
    assert grouped(args) == {"suite": {"tasks": ["a"], "batch_size": 2}, "schedule": {"every_n_steps": 4},
                             "curve": {}}


def test_families_name_their_backend_and_backends_say_whom_they_serve(tmp_path):
    assert (ARStudent.generation_backend, DiffusionStudent.generation_backend) == ("hf", "diffusion")
    assert set(BACKENDS) == {"hf", "diffusion", "vllm"}
    assert resolve_backend("hf", "diffusion").name == "diffusion"  # `backend: hf` = the family's own sampler
    assert resolve_backend("hf", "hf").name == "hf" and resolve_backend("vllm", "hf").name == "vllm"
    with pytest.raises(BackendError, match="does not serve"):
        resolve_backend("vllm", "diffusion")
    assert get_backend("hf").inline and not get_backend("vllm").inline
    causal, bidirectional = tmp_path / "causal", tmp_path / "bidirectional"
    for folder, config in ((causal, {}), (bidirectional, {"is_causal": False})):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
    assert saved_family(None, causal) is ARStudent and saved_family(None, bidirectional) is DiffusionStudent
    assert saved_family("t3s.DiffusionStudent", causal) is DiffusionStudent
    assert saved_family("t3s.students.ARStudent", bidirectional) is ARStudent  # the run's class path decides


def test_strategies_name_the_score_folders_they_read():
    assert FullSFT().score_dirs() == [] and FullSFT().unscored() == []
    scored, unscored = T3S(scores="/runs/scores"), T3S()
    assert scored.score_dirs() == ["/runs/scores"] and scored.unscored() == []
    assert unscored.score_dirs() == [] and unscored.unscored() == [unscored]
    assert RandomMask(match=scored).score_dirs() == ["/runs/scores"]
    assert RandomMask(match=unscored).unscored() == [unscored]
    assert RandomMask(fraction=0.5).score_dirs() == []


def test_no_family_dispatch_outside_the_students_package():
    """Callers ask the plug-in, not its type (issue #24's contract)."""
    pattern = re.compile(r"isinstance\(.*Student|hasattr\(student")
    found = [f"{path.relative_to(PACKAGE)}:{i}" for path in PACKAGE.rglob("*.py") if "students" not in path.parts
             for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert found == []
