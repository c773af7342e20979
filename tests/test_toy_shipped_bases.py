"""The θ_0 of the shipped toy configs ships inside the package, so every install starts the demo from the
same weights (pretraining is not reproducible across torch builds and thread counts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from t3s.resources import packaged_configs_dir
from t3s.toy.base import base_key, pretrained_base, shipped_base
from t3s.toy.ship import base_requests

SHIPPED_CONFIGS = ("toy", "toy-small", "toy-skill", "tiny", "tiny-diffusion")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("T3S_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("T3S_TOY_REBUILD", raising=False)
    return tmp_path / "cache"


@pytest.mark.parametrize("config", SHIPPED_CONFIGS)
def test_every_toy_config_has_its_base_in_the_package(cache: Path, config: str) -> None:
    requests = base_requests(config)
    assert requests, f"{config} asks for no toy θ_0"
    for world, recipe in requests:
        folder = shipped_base(base_key(world, recipe))
        assert folder is not None, f"{config}: no shipped θ_0; run `python -m t3s.toy.ship {config}`"
        build = json.loads((folder / "t3s_base_build.json").read_text())
        assert build["torch"].startswith("2.13.0")


def test_a_shipped_base_is_copied_into_the_cache_not_pretrained(cache: Path) -> None:
    (world, recipe), = base_requests("toy-small")
    shipped = shipped_base(base_key(world, recipe))
    folder = pretrained_base(world, recipe)
    assert folder.parent == cache / "toy_base"
    assert (folder / "model.safetensors").read_bytes() == (shipped / "model.safetensors").read_bytes()


def test_rebuild_env_ignores_the_shipped_base(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T3S_TOY_REBUILD", "1")
    (world, recipe), = base_requests("toy-small")
    recipe.steps = 3  # a short pretraining: this is about which path is taken, not about quality
    recipe.model = {**recipe.model, "num_hidden_layers": 1}
    folder = pretrained_base(world, recipe)
    assert json.loads((folder / "t3s_base_recipe.json").read_text())["steps"] == 3
    assert (folder / "t3s_base_build.json").is_file()


def test_the_key_follows_the_tokenizer_not_its_file_layout(tmp_path: Path) -> None:
    world = tmp_path / "world"
    shutil.copytree(packaged_configs_dir() / "data" / "tiny", world)
    (_, recipe), = base_requests("tiny")
    key = base_key(world, recipe)
    spec_file = world / "tokenizer" / "tokenizer.json"
    spec = json.loads(spec_file.read_text())
    spec_file.write_text(json.dumps(spec, indent=4, sort_keys=True))  # another library version's layout
    assert base_key(world, recipe) == key
    vocab = spec["model"]["vocab"]
    first, second = list(vocab)[:2]
    vocab[first], vocab[second] = vocab[second], vocab[first]  # a different tokenizer
    spec_file.write_text(json.dumps(spec))
    assert base_key(world, recipe) != key
