"""The prepared GPU check: its rehearsal on this CPU runs every step, and its environment check names what is
missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

STEPS = ["env", "wheels", "imports", "tests", "attention", "r1_1.7b", "8b_memory", "fsdp2_1gpu", "score_32k"]


@pytest.mark.slow
def test_rehearsal_runs_every_step_on_the_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "T3S_CACHE": os.environ["T3S_CACHE"]}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--rehearse"], cwd=REPO, env=env, capture_output=True,
                          text=True)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    failed = {k: s["log_tail"] for k, s in report["steps"].items() if s["rc"] != 0}
    assert done.returncode == 0 and not failed, (failed, done.stdout[-3000:], done.stderr[-2000:])
    assert list(report["steps"]) == STEPS and report["mode"] == "rehearse" and report["ok"]
    assert report["headline"]["attention_parity"] is True
    assert report["steps"]["r1_1.7b"]["result"]["loss_match"] is True
    assert report["steps"]["score_32k"]["result"]["tps_score"] > 0


def test_carried_wheels_cover_what_the_gpu_image_lacks():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_env
    finally:
        sys.path.pop(0)
    carry = gpu_env.to_carry()
    assert {"jsonargparse", "omegaconf", "math-verify", "datasets"} <= set(carry)
    assert not {"torch", "transformers", "lightning", "numpy", "pyarrow"} & set(carry)


MISSING = """
import importlib.metadata as md, runpy, sys
real = md.distribution
def distribution(name):
    if name == "omegaconf":
        raise md.PackageNotFoundError(name)
    return real(name)
md.distribution = distribution
sys.argv = ["gpu_env.py", "imports"]
runpy.run_path("benchmarks/gpu_env.py", run_name="__main__")
"""


def test_import_check_names_a_missing_package_in_one_line():
    done = subprocess.run([sys.executable, "-c", MISSING], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 3
    err = done.stderr.strip()
    assert "\n" not in err and "missing package 'omegaconf'" in err and "--prepare" in err, err


def test_gpu_mode_without_cuda_is_one_line():
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 2 and "--rehearse" in done.stderr
