"""Bad optimiser settings, model folders, checkpoints and resumes: one line and exit 2, never a traceback;
a resumed run continues in its own folder and cleans what an interrupted write left."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import error_of, random_model_config, tiny_qwen3
from safetensors.torch import load_file, save_file

from t3s.cli import main


@pytest.mark.parametrize(("option", "key"), [
    ("--model.init_args.optimizer.lr=-1e-5", "model.init_args.optimizer.lr"),
    ("--model.init_args.warmup_steps=-3", "model.init_args.optimizer.warmup_steps"),  # the flat key of one release ago
    ("--model.init_args.optimizer.betas=[0.9, 1.5]", "model.init_args.optimizer.betas"),
    ("--model.init_args.max_grad_norm=0", "model.init_args.optimizer.max_grad_norm"),
])
def test_bad_optimiser_settings_are_one_line_naming_the_key(tmp_path, capsys, option, key):
    line = error_of(capsys, "fit", "--config", str(random_model_config(tmp_path)), option)
    assert key in line


@pytest.fixture()
def model_folder(tmp_path) -> Path:
    folder = tmp_path / "model"
    tiny_qwen3(73).save_pretrained(folder)
    return folder


def broken_copies(model_folder: Path, root: Path) -> dict[str, Path]:
    """A missing folder, a folder without config.json, truncated / garbage / empty weights, NaN weights."""
    cases = {"missing": root / "nowhere" / "model"}
    for name in ("no_config", "truncated", "garbage", "empty", "nan"):
        cases[name] = shutil.copytree(model_folder, root / name)
    (cases["no_config"] / "config.json").unlink()
    weights = model_folder / "model.safetensors"
    (cases["truncated"] / "model.safetensors").write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (cases["garbage"] / "model.safetensors").write_bytes(b"not a safetensors file at all" * 10)
    (cases["empty"] / "model.safetensors").write_bytes(b"")
    tensors = load_file(str(weights))
    tensors["model.norm.weight"] = torch.full_like(tensors["model.norm.weight"], float("nan"))
    save_file(tensors, str(cases["nan"] / "model.safetensors"), metadata={"format": "pt"})
    return cases


def test_score_and_rrt_refuse_broken_or_non_finite_checkpoints(tmp_path, capsys, model_folder):
    config = str(random_model_config(tmp_path))
    for name, folder in broken_copies(model_folder, tmp_path / "broken").items():
        line = error_of(capsys, "score", "--config", config, "--base", str(model_folder), "--bottleneck", str(folder),
                        "--output", str(tmp_path / "scores"))
        assert str(folder) in line, (name, line)
        if name == "nan":
            assert "model.norm.weight" in line and "NaN" in line
        line = error_of(capsys, "rrt", "--base", str(model_folder), "--bottleneck", str(model_folder),
                        "--final", str(folder), "--output", str(tmp_path / "rrt"))
        assert str(folder) in line, (name, line)
    assert not (tmp_path / "scores").exists() and not (tmp_path / "rrt").exists()


def test_a_missing_or_broken_student_folder_is_one_line(tmp_path, capsys, model_folder):
    config = str(random_model_config(tmp_path))
    cases = broken_copies(model_folder, tmp_path / "broken")
    for name in ("missing", "no_config", "nan"):
        line = error_of(capsys, "fit", "--config", config, "--model.init_args.model_config=null",
                        f"--model.init_args.model={cases[name]}")
        assert str(cases[name]) in line, (name, line)


def test_resume_continues_in_the_same_folder_and_cleans_interrupted_writes(tmp_path, capsys):
    config = str(random_model_config(tmp_path))
    steps = ["--trainer.enable_checkpointing=true"]
    main(["fit", "--config", config, *steps, "--trainer.max_steps=2"])
    run = tmp_path / "runs" / "sft" / "version_0"
    checkpoint = next((run / "checkpoints").glob("*.ckpt"))
    (run / "hf" / ".step_9.tmp-4242").mkdir()
    (run / "checkpoints" / ".last.ckpt.tmp-4242").write_bytes(b"half a checkpoint")

    for bad in (b"", b"garbage" * 100, checkpoint.read_bytes()[:1000]):
        broken = tmp_path / "broken.ckpt"
        broken.write_bytes(bad)
        assert "not a readable Lightning checkpoint" in error_of(capsys, "fit", "--config", config,
                                                                 f"--ckpt_path={broken}")
    assert "no such checkpoint" in error_of(capsys, "fit", "--config", config, f"--ckpt_path={tmp_path / 'x.ckpt'}")

    main(["fit", "--config", config, *steps, "--trainer.max_steps=4", f"--ckpt_path={checkpoint}"])
    assert not (tmp_path / "runs" / "sft" / "version_1").exists()  # one run folder, one curve
    assert (run / "hf" / "step_4").is_dir()
    assert not list(run.rglob(".*.tmp-*"))


def test_yaml_syntax_errors_and_bad_tokenizers_are_one_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_steps: [1\n")
    assert str(bad) in error_of(capsys, "fit", "--config", str(bad))
    config = str(random_model_config(tmp_path))
    (tmp_path / "tok_empty").mkdir()
    (tmp_path / "tok_bad").mkdir()
    (tmp_path / "tok_bad" / "tokenizer.json").write_text("{garbage")
    (tmp_path / "tok_bad" / "tokenizer_config.json").write_text("{}")
    for name in ("tok_empty", "tok_bad", "tok_missing"):
        line = error_of(capsys, "fit", "--config", config, f"--data.tokenizer={tmp_path / name}")
        assert str(tmp_path / name) in line and "data.tokenizer" in line, line
