"""The T3S recipe survives SIGKILL: the same command plus ``--ckpt_path last`` continues where it stopped.

One uninterrupted recipe on configs/toy-small.yaml (20 steps a phase) is the reference; a second run of the
same config is SIGKILLed twice — right after its SFT phase, then during its masked phase once that phase
has written a checkpoint — and resumed each time. Both runs are separate processes with one thread each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from safetensors.torch import load_file

STEPS = 20


def recipe_config(root: Path) -> Path:
    """configs/toy-small.yaml, 20 steps a phase, training accuracy only, every output under ``root``."""
    cfg = yaml.safe_load((REPO / "configs" / "toy-small.yaml").read_text())
    cfg["trainer"].update(max_steps=STEPS, default_root_dir=str(root), enable_progress_bar=False)
    # the fast-shock regime (the shipped demo's is 3e-4 for 120 steps)
    cfg["model"]["init_args"]["optimizer"]["lr"] = 3e-3
    cfg["trainer"]["logger"]["init_args"].update(save_dir=str(root), name="recipe")
    bench = next(c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("BenchmarkCallback"))
    bench["init_args"].update(tasks=[])
    root.mkdir(parents=True, exist_ok=True)
    path = root / "toy-small.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run(config: Path, *extra: str, kill_when: Callable[[], bool] | None = None, timeout: float = 600) -> int:
    """``python -m t3s fit --config CONFIG …`` in a child process; SIGKILLed as soon as ``kill_when()`` holds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "T3S_CACHE": os.environ["T3S_CACHE"]}
    child = subprocess.Popen([sys.executable, "-m", "t3s", "fit", "--config", str(config), *extra], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while child.poll() is None:
        if kill_when is not None and kill_when():
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stderr.close()
            return -signal.SIGKILL
        assert time.monotonic() < deadline, "the recipe took too long"
        time.sleep(0.05)
    err = child.stderr.read()
    child.stderr.close()
    assert child.returncode == 0 or kill_when is not None, err[-3000:]
    return child.returncode


def state(root: Path) -> dict:
    try:
        return json.loads((root / "recipe.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted recipe's run folder."""
    base = tmp_path_factory.mktemp("reference")
    assert run(recipe_config(base)) == 0
    return base / "recipe" / "version_0"


@pytest.mark.slow
def test_recipe_killed_after_sft_and_during_masked_phase_resumes_to_the_same_weights(reference, tmp_path):
    config = recipe_config(tmp_path)
    root = tmp_path / "recipe" / "version_0"
    # 1. killed once the SFT phase is done (θ_b not yet scored)
    assert run(config, kill_when=lambda: state(root).get("sft_done", False)) == -signal.SIGKILL
    assert not state(root).get("masked_done")
    sft_files = {p: p.stat().st_mtime_ns for p in (root / "sft" / "hf").rglob("*") if p.is_file()}
    assert len([p for p in sft_files if p.name == "config.json"]) >= STEPS // 5 + 1

    # 2. resumed, then killed in the masked phase after its first checkpoint
    masked_checkpoint = lambda: any((root / "t3s").rglob("last.ckpt")) if (root / "t3s").is_dir() else False  # noqa: E731
    assert run(config, "--ckpt_path", "last", kill_when=masked_checkpoint) == -signal.SIGKILL
    current = state(root)
    assert current["sft_done"] and current["scores"] and not current.get("masked_done")
    assert not (root / "t3s" / "hf" / "final").exists()

    # 3. resumed to the end: the report, the SFT phase untouched, the same final weights as without kills
    assert run(config, "--ckpt_path", "last") == 0
    assert state(root)["masked_done"] and (root / "report" / "report.md").is_file()
    assert not (tmp_path / "recipe" / "version_1").exists()  # resumed in place
    for path, mtime in sft_files.items():  # the SFT phase was neither trained nor evaluated again
        assert path.stat().st_mtime_ns == mtime, path
    assert state(root)["bottleneck_step"] == state(reference)["bottleneck_step"]
    resumed, uninterrupted = (load_file(str(r / "t3s" / "hf" / "final" / "model.safetensors"))
                              for r in (root, reference))
    assert resumed.keys() == uninterrupted.keys()
    for name, weight in uninterrupted.items():
        assert (resumed[name] - weight).abs().max().item() <= 1e-6, name


def test_recipe_state_of_a_run_written_when_the_sft_phase_was_named_probe_reads_as_sft(tmp_path):
    from t3s.recipe.offline import RecipeState

    (tmp_path / "recipe.json").write_text(json.dumps({"probe_done": True, "bottleneck_step": 5, "scores": None,
                                                      "masked_phase": None, "masked_done": False}))
    old = RecipeState.load(tmp_path)
    assert (old.sft_done, old.sft_phase, old.bottleneck_step) == (True, "probe", 5)
    old.save(tmp_path)  # saved again in the new spelling, still naming the old folder
    assert RecipeState.load(tmp_path) == old
    assert RecipeState().sft_phase == "sft"


@pytest.mark.slow
def test_a_recipe_written_with_the_old_probe_name_resumes_from_its_probe_folder(reference, tmp_path):
    """A run of the release that named the SFT phase ``probe`` (folder ``probe/``, ``probe_done`` in recipe.json),
    killed after scoring: ``--ckpt_path last`` trains the masked phase, reading θ_b and the curve from ``probe/``."""
    import shutil

    config = recipe_config(tmp_path)
    root = tmp_path / "recipe" / "version_0"
    shutil.copytree(reference, root, ignore=shutil.ignore_patterns("t3s", "report"))
    (root / "sft").rename(root / "probe")
    old = state(reference)
    (root / "recipe.json").write_text(json.dumps({"probe_done": True, "bottleneck_step": old["bottleneck_step"],
                                                  "scores": str(root / "scores"), "masked_phase": None,
                                                  "masked_done": False}))
    assert run(config, "--ckpt_path", "last") == 0
    assert not (root / "sft").exists() and state(root)["sft_phase"] == "probe" and state(root)["masked_done"]
    assert "probe" in (root / "report" / "report.md").read_text()
    resumed, uninterrupted = (load_file(str(r / "t3s" / "hf" / "final" / "model.safetensors"))
                              for r in (root, reference))
    for name, weight in uninterrupted.items():
        assert (resumed[name] - weight).abs().max().item() <= 1e-6, name
