"""FSDP2 (Lightning's ModelParallelStrategy) on CPU processes over gloo, against one process without a strategy.

All runs of a world size share one ``torchrun`` launch (``tests/fsdp_run.py``), so the suite pays the process
start-up once per world size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, TINY_WORLD, tiny_model_config, tiny_trace_data
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

RUNNER = Path(__file__).with_name("fsdp_run.py")
RUNS = {  # name: (family, T3S?)
    "ar-fullsft": ("ar", False),
    "ar-t3s": ("ar", True),
    "diffusion-fullsft": ("diffusion", False),
    "diffusion-t3s": ("diffusion", True),
    "diffusion-blocks": ("diffusion", False),  # block diffusion: [x_t ; x_0] under the block mask
    "diffusion-packed": ("diffusion", True),  # packed rows: document mask ∧ block mask, T3S per document
}


def _spec(root: Path, world: Path, caches: dict[bool, str], name: str, **extra) -> dict:
    family, t3s = RUNS[name.split("+")[0]]
    vocab = len(tiny_trace_data(world, packing=True).tokenizer)
    spec = {
        "world": str(world), "family": family, "model_config": tiny_model_config(vocab),
        "root": str(root / name), "scores": caches[family == "ar"] if t3s else None,
        # diffusion: EOS padding to a fixed width, so the objective does not depend on the micro-batching
        # (packed rows: each trace is its own document, whatever the row layout)
        "student": ({"pad_to": 192} if family == "diffusion" and name != "diffusion-packed" else {})
        | ({"block_size": 32} if name.startswith(("diffusion-blocks", "diffusion-packed")) else {}),
        "packing": family == "ar" or name == "diffusion-packed",
    }
    return spec | extra


def _launch(specs: list[dict], path: Path, nproc: int) -> subprocess.Popen:
    path.write_text(json.dumps(specs))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(RUNNER), str(path)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               str(RUNNER), str(path)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]


@pytest.fixture(scope="module")
def runs(tiny_world, tiny_score_caches, tmp_path_factory) -> dict[str, Path]:
    """Run folders: ``<name>/1`` one process, ``<name>/2`` two FSDP2 processes, ``uneven/3`` three."""
    root = tmp_path_factory.mktemp("fsdp")
    one = [_spec(root / "1", tiny_world, tiny_score_caches, n) for n in RUNS]
    two = [_spec(root / "2", tiny_world, tiny_score_caches, n) for n in RUNS] + [
        # killed at the start of step 3 (last checkpoint: step 2), then resumed from the sharded checkpoint
        _spec(root / "2", tiny_world, tiny_score_caches, "ar-fullsft+resumed", crash_at=3),
        _spec(root / "2", tiny_world, tiny_score_caches, "ar-fullsft+resumed",
              resume=str(root / "2" / "ar-fullsft+resumed" / "checkpoints" / "last.ckpt")),
        # the online switch's restart to θ_0 at step 2, bf16 HF folders
        _spec(root / "2", tiny_world, tiny_score_caches, "ar-fullsft+restart", restart_at=2, steps=3,
              student={"hf_dtype": "bfloat16"}),
    ]
    three = [_spec(root / "3", tiny_world, tiny_score_caches, "ar-fullsft")]  # global batch 4 on 3 ranks
    procs = [_launch(one, root / "one.json", 1), _launch(two, root / "two.json", 2)]
    for proc in procs:
        _wait(proc)
    _wait(_launch(three, root / "three.json", 3))
    return {"root": root}


def _metrics(folder: Path) -> list[dict[str, float]]:
    return json.loads((folder / "metrics.json").read_text())


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.parametrize("name", list(RUNS))
def test_two_processes_equal_one(runs, name):
    one, two = runs["root"] / "1" / name, runs["root"] / "2" / name
    m1, m2 = _metrics(one), _metrics(two)
    assert len(m1) == len(m2) == 4
    for a, b in zip(m1, m2):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-5)
        assert b["train/grad_norm"] == pytest.approx(a["train/grad_norm"], rel=1e-4)
    assert sorted(p.name for p in (two / "hf").iterdir()) == sorted(p.name for p in (one / "hf").iterdir())
    assert _max_diff(_weights(one / "hf" / "final"), _weights(two / "hf" / "final")) < 1e-5


def test_hf_folder_from_sharded_state_loads_and_is_world_readable(runs):
    folder = runs["root"] / "2" / "ar-fullsft" / "hf" / "step_4"
    model = AutoModelForCausalLM.from_pretrained(folder)
    unsharded = _weights(runs["root"] / "1" / "ar-fullsft" / "hf" / "step_4")
    assert _max_diff(dict(model.state_dict()), unsharded) < 1e-5
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in folder.iterdir())
    # the resumable state is a sharded (distributed) checkpoint: a folder with one shard file per rank
    last = runs["root"] / "2" / "ar-fullsft" / "checkpoints" / "last.ckpt"
    assert last.is_dir() and len(list(last.glob("*.distcp"))) == 2


def test_kill_and_resume_from_the_sharded_checkpoint_equals_the_uninterrupted_run(runs):
    resumed = runs["root"] / "2" / "ar-fullsft+resumed"
    uninterrupted = runs["root"] / "2" / "ar-fullsft"
    assert _max_diff(_weights(resumed / "hf" / "final"), _weights(uninterrupted / "hf" / "final")) == 0.0
    assert [m["train/loss"] for m in _metrics(resumed)] == [m["train/loss"] for m in _metrics(uninterrupted)][2:]


def test_online_restart_under_fsdp2_lands_exactly_on_theta0_in_bf16(runs):
    hf = runs["root"] / "2" / "ar-fullsft+restart" / "hf"
    theta0, restarted = _weights(hf / "step_0"), _weights(hf / "step_999")
    assert all(t.dtype == torch.bfloat16 for t in theta0.values())
    assert _max_diff(theta0, restarted) == 0.0
    assert _max_diff(theta0, _weights(hf / "step_2")) > 0  # it had moved away before the restart
    unsharded = _weights(runs["root"] / "1" / "ar-fullsft" / "hf" / "step_0")  # float32, same seeded θ_0
    assert _max_diff(theta0, {k: v.to(torch.bfloat16) for k, v in unsharded.items()}) == 0.0
    assert json.loads((hf / "step_0" / "config.json").read_text())["dtype"] == "bfloat16"


def test_uneven_world_three_processes_global_batch_four(runs):
    one, three = runs["root"] / "1" / "ar-fullsft", runs["root"] / "3" / "ar-fullsft"
    for a, b in zip(_metrics(one), _metrics(three)):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-5)
        assert b["train/grad_norm"] == pytest.approx(a["train/grad_norm"], rel=1e-4)
    assert _max_diff(_weights(one / "hf" / "final"), _weights(three / "hf" / "final")) < 1e-5


def _tiny_cli_config(root: Path, **trainer) -> Path:
    """configs/tiny.yaml, 4 steps from a quick base, checkpoints and greedy evaluation every 2 steps."""
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["trainer"].update(max_steps=4, default_root_dir=str(root), enable_progress_bar=False, **trainer)
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(root)
    for callback in cfg["trainer"]["callbacks"]:
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"]["every_n_train_steps"] = 2
        if callback["class_path"].endswith("BenchmarkCallback"):  # generation on FSDP2 weights, ranks uneven
            callback["init_args"].update(every_n_steps=2, train_limit=3,
                                         sampling={"n": 1, "temperature": 0.0, "max_new_tokens": 8})
    cfg["model"]["init_args"]["model"] = f"${{toy_base:{TINY_WORLD},{{steps:60}}}}"
    cfg["data"].update(path=str(TINY_WORLD / "teacher_traces.jsonl"), tokenizer=str(TINY_WORLD / "tokenizer"),
                       limit=32, global_batch_size=8, micro_batch_size=4)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.slow
def test_tiny_config_on_two_cpu_processes_with_model_parallel_strategy(tmp_path):
    """The acceptance contract: tiny.yaml + ModelParallelStrategy, 2 CPU devices, through ``python -m t3s``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    folders = {}
    for devices, trainer in (
        (1, {}),
        (2, {"strategy": {"class_path": "lightning.pytorch.strategies.ModelParallelStrategy"}, "devices": 2,
             "accelerator": "cpu"}),
    ):
        config = _tiny_cli_config(tmp_path / f"d{devices}", **trainer)
        proc = subprocess.run([sys.executable, "-m", "t3s", "fit", "--config", str(config)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        folders[devices] = tmp_path / f"d{devices}" / "sft" / "version_0"
    hf1, hf2 = folders[1] / "hf", folders[2] / "hf"
    assert sorted(p.name for p in hf2.iterdir()) == sorted(p.name for p in hf1.iterdir()) == [
        "final", "step_0", "step_2", "step_4"]
    assert _max_diff(_weights(hf1 / "final"), _weights(hf2 / "final")) < 1e-5
    assert (folders[2] / "generations" / "step_4").is_dir()  # evaluation ran on the sharded student


def test_model_parallel_strategy_short_command_line_spelling(capsys):
    from t3s.cli import main

    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs" / "tiny.yaml"), "--print_config",
              "--trainer.strategy.class_path=ModelParallelStrategy", "--trainer.devices=2"])
    assert "class_path: lightning.pytorch.strategies.ModelParallelStrategy" in capsys.readouterr().out
