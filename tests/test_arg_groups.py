"""Argument groups (``model.init_args.optimizer``, ``data.batching``, …) and the flat keys of one release ago.

The flat spellings are read for one release, in every place a config enters: a YAML file, a command-line option,
a Python constructor, a saved ``config.yaml`` section; each is noted once, in one line.
"""

from __future__ import annotations

import inspect
import logging

import pytest
import yaml
from conftest import REPO, TINY_WORLD, tiny_model_config

from t3s.arg_groups import nest_flat_keys
from t3s.cli import main
from t3s.cli.flat_keys import nest_argv, nest_config
from t3s.data import TeacherTraceDataModule
from t3s.data.args import DATA_FLAT_KEYS, BatchingArgs
from t3s.data.schema import TraceDataError
from t3s.students import ARStudent, DiffusionStudent
from t3s.students.args import STUDENT_FLAT_KEYS, OptimizerArgs
from t3s.students.base import StudentModule
from t3s.students.diffusion import DiffusionStudentError


def flatten(config: dict) -> dict:
    """A nested config written the way of one release ago (every group's keys flat)."""
    config = dict(config)
    for table, get in ((STUDENT_FLAT_KEYS, lambda c: c["model"]["init_args"]), (DATA_FLAT_KEYS, lambda c: c["data"])):
        node = get(config)
        for flat, nested in table.items():
            group, key = nested.split(".")
            if isinstance(node.get(group), dict) and key in node[group]:
                node[flat] = node[group].pop(key)
        for group in {t.split(".")[0] for t in table.values()}:
            if node.get(group) == {}:
                del node[group]
    return config


def test_every_flat_key_has_a_group_field():
    for table, groups in ((STUDENT_FLAT_KEYS, StudentModule.__init__),
                          (DATA_FLAT_KEYS, TeacherTraceDataModule.__init__)):
        defaults = {k: p.default for k, p in inspect.signature(groups).parameters.items()}
        for flat, nested in table.items():
            group, key = nested.split(".")
            assert hasattr(defaults[group], key), (flat, nested)


def test_nest_flat_keys_moves_and_a_conflict_takes_the_flat_value(caplog):
    nested, moved = nest_flat_keys({"lr": 3e-4, "hf_dtype": "bfloat16", "objective": "llada2"}, STUDENT_FLAT_KEYS,
                                   "model.init_args")
    assert nested == {"optimizer": {"lr": 3e-4}, "export": {"dtype": "bfloat16"}, "objective": "llada2"}
    assert moved == ["lr", "hf_dtype"]
    with caplog.at_level(logging.WARNING):
        nested, _ = nest_flat_keys({"packing": False, "batching": {"packing": True, "micro_batch_size": 2}},
                                   DATA_FLAT_KEYS, "data")
    assert nested == {"batching": {"packing": False, "micro_batch_size": 2}}
    assert "given both ways: the flat value False is used" in caplog.text


def test_argv_and_config_translation(caplog):
    with caplog.at_level(logging.WARNING):
        argv = nest_argv(["--config", "x.yaml", "--model.init_args.lr", "3e-4", "--data.packing=false",
                          "--data.fields.reasoning=thinking", "--model.init_args.block_size=4", "--data.limit", "8"])
    assert argv == ["--config", "x.yaml", "--model.init_args.optimizer.lr", "3e-4", "--data.batching.packing=false",
                    "--data.layout.fields.reasoning=thinking", "--model.init_args.block_size=4", "--data.limit", "8"]
    notes = [r.message for r in caplog.records if "deprecated flat keys" in r.message]
    assert len(notes) <= 2 and all("\n" not in n for n in notes)  # one line per section, once per process
    config = nest_config({"model": {"class_path": "t3s.ARStudent", "init_args": {"fsdp_param_dtype": "bfloat16"}},
                          "data": {"preset": "s1k", "limit": 3}, "trainer": {"max_steps": 2}})
    assert config == {"model": {"class_path": "t3s.ARStudent", "init_args": {"sharding": {"param_dtype": "bfloat16"}}},
                      "data": {"layout": {"preset": "s1k"}, "limit": 3}, "trainer": {"max_steps": 2}}


def test_constructors_take_flat_nested_and_objects_alike():
    config = tiny_model_config(73)
    flat = ARStudent(model_config=config, lr=3e-4, warmup_steps=2, hf_folders="evaluated", logprob_chunk_size=64)
    nested = ARStudent(model_config=config, optimizer={"lr": 3e-4, "warmup_steps": 2}, export={"folders": "evaluated"},
                       memory={"logprob_chunk_size": 64})
    objects = ARStudent(model_config=config, optimizer=OptimizerArgs(lr=3e-4, warmup_steps=2),
                        export={"folders": "evaluated"}, memory={"logprob_chunk_size": 64})
    for student in (flat, nested, objects):
        assert student.optimizer_args == OptimizerArgs(lr=3e-4, warmup_steps=2)
        assert student.export_args.folders == "evaluated" and student.memory_args.logprob_chunk_size == 64
    # hyper-parameters (hparams.yaml, checkpoints) hold plain mappings, no flat key
    assert dict(flat.hparams) == dict(nested.hparams)
    assert flat.hparams["optimizer"]["betas"] == [0.9, 0.95] and "lr" not in flat.hparams
    assert ARStudent(model_config=config).optimizer_args is not ARStudent(model_config=config).optimizer_args
    data = TeacherTraceDataModule(path="t.jsonl", tokenizer="tok", packing=False, preset="s1k")
    assert data.batching == BatchingArgs(packing=False) and data.packing is False and data.preset == "s1k"
    assert data.hparams["batching"]["packing"] is False and "packing" not in data.hparams


@pytest.mark.parametrize(("make", "error"), [
    (lambda: ARStudent(model_config=tiny_model_config(73), optimizer={"lr": -1}),
     "model.init_args.optimizer.lr must be a positive number, got -1"),
    (lambda: DiffusionStudent(model_config=tiny_model_config(73), optimizer={"lrr": 1}),
     "model.init_args.optimizer: unknown key 'lrr'"),
    (lambda: ARStudent(model_config=tiny_model_config(73), sharding={"param_dtype": "fp8"}),
     "model.init_args.sharding.param_dtype must be bfloat16, float16, float32 or null"),
    (lambda: TeacherTraceDataModule(path="t.jsonl", tokenizer="tok", batching={"micro_batch_size": 0}),
     "data.batching.micro_batch_size must be positive, got 0"),
    (lambda: TeacherTraceDataModule(path="t.jsonl", tokenizer="tok", overlong="cut"),
     "data.batching.overlong must be 'drop' or 'truncate'"),
    (lambda: TeacherTraceDataModule(path="t.jsonl", tokenizer="tok", layout={"preset": "nope"}),
     "unknown preset 'nope' (data.layout.preset)"),
])
def test_a_bad_group_value_is_one_line_in_the_family_error(make, error):
    with pytest.raises((ValueError, TraceDataError)) as info:
        make()
    assert error in str(info.value) and "\n" not in str(info.value)
    if "DiffusionStudent" in repr(make.__code__.co_names):
        assert isinstance(info.value, DiffusionStudentError)


def _printed(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_a_flat_config_and_flat_options_parse_like_the_nested_ones(tmp_path, capsys):
    """Every packaged config, written the old (flat) way, prints the same parsed config as the nested one."""
    for name in ("qwen3.yaml", "llada2-mini.yaml", "llada-8b.yaml"):
        nested = yaml.safe_load((REPO / "configs" / name).read_text())
        old = tmp_path / name
        old.write_text(yaml.safe_dump(flatten(yaml.safe_load((REPO / "configs" / name).read_text()))))
        assert "lr" in flatten(nested)["model"]["init_args"]  # the file really is flat
        assert _printed(capsys, "--config", str(old)) == _printed(capsys, "--config", str(REPO / "configs" / name))
    data = ["--data.path", str(TINY_WORLD / "teacher_traces.jsonl"), "--data.tokenizer", str(TINY_WORLD / "tokenizer")]
    flat = _printed(capsys, "--config", str(REPO / "configs" / "tiny.yaml"), *data, "--model.init_args.lr=3e-4",
                    "--data.packing", "false", "--model.init_args.hf_dtype=bfloat16")
    grouped = _printed(capsys, "--config", str(REPO / "configs" / "tiny.yaml"), *data,
                       "--model.init_args.optimizer.lr=3e-4", "--data.batching.packing", "false",
                       "--model.init_args.export.dtype=bfloat16")
    assert flat == grouped
    assert grouped["model"]["init_args"]["optimizer"]["lr"] == 3e-4 and grouped["data"]["batching"]["packing"] is False
