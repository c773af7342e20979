"""Trust boundaries and data loss: nothing a command did not write is deleted, nothing a downloaded run or
config asks for is executed unless the command line opts in, secrets stay out of saved configs, and a
SIGTERM'd fit saves and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import error_of, tiny_qwen3
from safetensors.torch import load_file

from t3s.analysis.rrt import MARKER
from t3s.cli import main


# ----------------------------------------------------------------- t3s rrt --output
@pytest.fixture()
def three_models(tmp_path) -> list[str]:
    folders = []
    for seed, name in enumerate(("base", "bottleneck", "final")):
        folder = tmp_path / name
        tiny_qwen3(73, seed=seed).save_pretrained(folder)
        folders.append(str(folder))
    return folders


def rrt_args(models: list[str], output: Path, *extra: str) -> list[str]:
    base, bottleneck, final = models
    return ["rrt", "--base", base, "--bottleneck", bottleneck, "--final", final, "--output", str(output), *extra]


def test_rrt_never_deletes_a_folder_it_did_not_write(tmp_path, capsys, three_models):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my thesis")
    for extra in ((), ("--overwrite", "true")):
        line = error_of(capsys, *rrt_args(three_models, mine, *extra))
        assert str(mine) in line
        assert (mine / "notes.txt").read_text() == "my thesis" and sorted(p.name for p in mine.iterdir()) == [
            "notes.txt"]
    # a file in place of the folder
    (tmp_path / "afile").write_text("x")
    assert "not a folder" in error_of(capsys, *rrt_args(three_models, tmp_path / "afile"))
    assert (tmp_path / "afile").read_text() == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_rrt_overwrite_replaces_only_its_own_output(tmp_path, capsys, three_models):
    out = tmp_path / "empty"
    out.mkdir()  # an empty folder is fine
    main(rrt_args(three_models, out))
    marker = json.loads((out / MARKER).read_text())
    assert "model.safetensors" in marker["files"] and marker["final"] == three_models[2]
    first = load_file(str(out / "model.safetensors"))

    assert "--overwrite" in error_of(capsys, *rrt_args(three_models, out))  # again, without --overwrite
    main(rrt_args(three_models, out, "--overwrite", "true"))
    again = load_file(str(out / "model.safetensors"))
    assert all((first[k] == again[k]).all() for k in first)

    (out / "eval.jsonl").write_text("{}\n")  # a user's file inside an earlier output: never replaced
    line = error_of(capsys, *rrt_args(three_models, out, "--overwrite", "true"))
    assert "eval.jsonl" in line and (out / "eval.jsonl").read_text() == "{}\n"


def test_rrt_with_mismatched_shapes_names_the_folder(tmp_path, capsys, three_models):
    wider = tmp_path / "wider"
    tiny_qwen3(80).save_pretrained(wider)
    line = error_of(capsys, *rrt_args([three_models[0], three_models[1], str(wider)], tmp_path / "out"))
    assert str(wider) in line and "(80, 32)" in line
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
