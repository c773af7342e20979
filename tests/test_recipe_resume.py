"""The T3S recipe survives SIGKILL: the same command plus ``--ckpt_path last`` continues where it stopped.

One uninterrupted recipe on configs/toy-small.yaml (20 steps a phase) is the reference; a second run of the
same config is SIGKILLed twice — right after its probe phase, then during its masked phase once that phase
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
    cfg["model"]["init_args"]["lr"] = 3e-3  # the fast-shock regime (the shipped demo's is 3e-4 for 120 steps)
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
def test_recipe_killed_after_probe_and_during_masked_phase_resumes_to_the_same_weights(reference, tmp_path):
    config = recipe_config(tmp_path)
    root = tmp_path / "recipe" / "version_0"
    # 1. killed once the probe is done (θ_b not yet scored)
    assert run(config, kill_when=lambda: state(root).get("probe_done", False)) == -signal.SIGKILL
    assert not state(root).get("masked_done")
    probe_files = {p: p.stat().st_mtime_ns for p in (root / "probe" / "hf").rglob("*") if p.is_file()}
    assert len([p for p in probe_files if p.name == "config.json"]) >= STEPS // 5 + 1

    # 2. resumed, then killed in the masked phase after its first checkpoint
    masked_checkpoint = lambda: any((root / "t3s").rglob("last.ckpt")) if (root / "t3s").is_dir() else False  # noqa: E731
    assert run(config, "--ckpt_path", "last", kill_when=masked_checkpoint) == -signal.SIGKILL
    current = state(root)
    assert current["probe_done"] and current["scores"] and not current.get("masked_done")
    assert not (root / "t3s" / "hf" / "final").exists()

    # 3. resumed to the end: the report, the probe untouched, the same final weights as without kills
    assert run(config, "--ckpt_path", "last") == 0
    assert state(root)["masked_done"] and (root / "report" / "report.md").is_file()
    assert not (tmp_path / "recipe" / "version_1").exists()  # resumed in place
    for path, mtime in probe_files.items():  # the probe was neither trained nor evaluated again
        assert path.stat().st_mtime_ns == mtime, path
    assert state(root)["bottleneck_step"] == state(reference)["bottleneck_step"]
    resumed, uninterrupted = (load_file(str(r / "t3s" / "hf" / "final" / "model.safetensors")) for r in (root, reference))
    assert resumed.keys() == uninterrupted.keys()
    for name, weight in uninterrupted.items():
        assert (resumed[name] - weight).abs().max().item() <= 1e-6, name
