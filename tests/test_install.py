"""A wheel, not the checkout: build it, install it into a throwaway venv, run it from an empty folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A venv holding the built wheel's t3s; torch & co. come from this interpreter's site-packages."""
    root = tmp_path_factory.mktemp("install")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                 str(root / "dist"), str(REPO)], cwd=root, env=env)
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip().splitlines()[-1:]}")
    wheel = next((root / "dist").glob("t3s-*.whl"))
    venv = root / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)], cwd=root, env=env)
    if made.returncode != 0:
        pytest.skip(f"cannot make a venv here: {made.stderr.strip()[-300:]}")
    py = venv / "bin" / "python"
    site = run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root, env=env)
    # a plain path line (not site.addsitedir): the dependencies, but not this env's editable t3s finder
    (Path(site.stdout.strip()) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=root, env=env)
    assert installed.returncode == 0, installed.stderr[-2000:]
    empty = root / "empty"
    empty.mkdir()
    return empty, {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                   "T3S_CACHE": os.environ.get("T3S_CACHE", str(root / "cache")), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_wheel_install_runs_from_an_empty_folder(installed):
    empty, env = installed
    where = run(["python", "-c", "import t3s; print(t3s.__file__)"], cwd=empty, env=env)
    assert "site-packages" in where.stdout and str(REPO) not in where.stdout, where.stdout + where.stderr

    help_ = run(["t3s", "--help"], cwd=empty, env=env)
    assert help_.returncode == 0, help_.stderr
    for command in ("fit", "score", "rrt", "grade", "report", "compare"):
        assert f"\n  {command} " in help_.stdout

    (empty / "gens.jsonl").write_text(json.dumps({"response": "\\boxed{25}", "gold": "025"}) + "\n")
    graded = run(["t3s", "grade", "--task", "aime24", "--input", "gens.jsonl"], cwd=empty, env=env)
    assert graded.returncode == 0 and "accuracy 1.0000" in graded.stdout, graded.stderr[-2000:]

    found = run(["python", "-c", "from t3s.resources import find_config; "
                 "from t3s.data.from_config import datamodule_from_config as d; "
                 "print(find_config('toy-small')); print(d(find_config('tiny')).path)"], cwd=empty, env=env)
    assert found.returncode == 0, found.stderr[-2000:]
    config, data = found.stdout.split()
    assert "site-packages" in config and config.endswith("t3s/configs/toy-small.yaml")
    assert "site-packages" in data and Path(data).is_file()

    typo = run(["python", "-m", "t3s", "fit", "--config", "toy-small", "--trainer.max_step", "10"], cwd=empty, env=env)
    assert typo.returncode == 2
    assert typo.stderr.strip().splitlines()[-1] == \
        "error: unknown option --trainer.max_step (did you mean --trainer.max_steps?)"


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("T3S_TEST_WHEEL_RECIPE"), reason="set T3S_TEST_WHEEL_RECIPE=1: the small "
                    "recipe from the wheel (~3 min on 2 loaded cores); tests/test_readme.py runs it from the checkout")
def test_wheel_install_runs_the_small_recipe_by_config_name(installed):
    """``python -m t3s fit --config toy-small`` from an empty folder, θ_0 included, to its report."""
    empty, env = installed
    fit = run(["python", "-m", "t3s", "fit", "--config", "toy-small", "--trainer.enable_progress_bar=false"],
              cwd=empty, env=env, timeout=900)
    assert fit.returncode == 0, fit.stderr[-3000:]
    root = empty / "runs" / "toy-small" / "recipe" / "version_0"
    assert (root / "report" / "report.md").is_file() and (root / "scores" / "summary.json").is_file()
