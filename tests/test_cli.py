"""The command line end to end on the tiny world: fit → score → T3S fit → rrt, configs and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import BASE, REPO, TINY_WORLD
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from t3s.cli import main


def tiny_config(tmp_path: Path, name: str = "sft", steps: int = 6, **model_args) -> Path:
    """configs/tiny.yaml with a short run, a quick base and all outputs under tmp_path."""
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["trainer"].update(max_steps=steps, default_root_dir=str(tmp_path), enable_progress_bar=False)
    cfg["trainer"]["logger"]["init_args"].update(save_dir=str(tmp_path), name=name)
    for callback in cfg["trainer"]["callbacks"]:
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"]["every_n_train_steps"] = 2
        if callback["class_path"].endswith("BenchmarkCallback"):  # keep CLI tests about the CLI
            callback["init_args"].update(every_n_steps=1000, train_limit=2,
                                         sampling={"n": 1, "temperature": 0.0, "max_new_tokens": 8})
    cfg["model"]["init_args"].update(model=BASE, **model_args)
    cfg["data"].update(path=str(TINY_WORLD / "teacher_traces.jsonl"), tokenizer=str(TINY_WORLD / "tokenizer"),
                       limit=64, global_batch_size=8, micro_batch_size=8)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_dir(tmp_path: Path, name: str) -> Path:
    return tmp_path / name / "version_0"


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_recipe_by_hand_fit_score_t3s_rrt(tmp_path, capsys):
    config = tiny_config(tmp_path)
    main(["fit", "--config", str(config)])
    hf = run_dir(tmp_path, "sft") / "hf"
    assert {"step_0", "step_2", "step_4", "step_6", "final"} <= {p.name for p in hf.iterdir()}
    AutoModelForCausalLM.from_pretrained(hf / "final")

    scores = tmp_path / "scores"
    main(["score", "--config", str(config), "--base", str(hf / "step_0"), "--bottleneck", str(hf / "step_2"),
          "--output", str(scores)])
    summary = yaml.safe_load((scores / "summary.json").read_text())
    assert 0.0 < summary["anchor_fraction"] < 1.0
    assert len(summary["top_anchor_tokens"]) > 0 and "token" in summary["top_anchor_tokens"][0]
    assert "anchor fraction" in capsys.readouterr().out

    t3s_config = tiny_config(tmp_path, name="t3s", steps=2,
                             selection={"class_path": "t3s.selection.T3S", "init_args": {"scores": str(scores)}})
    main(["fit", "--config", str(t3s_config)])
    events = list(run_dir(tmp_path, "t3s").glob("events.out.tfevents.*"))
    assert events and (run_dir(tmp_path, "t3s") / "hf" / "step_2").is_dir()
    fraction = _scalar(run_dir(tmp_path, "t3s"), "train/selected_fraction")
    assert 0.0 < fraction < 1.0

    out = tmp_path / "rrt"
    main(["rrt", "--base", str(hf / "step_0"), "--bottleneck", str(hf / "step_2"), "--final", str(hf / "final"),
          "--output", str(out)])
    w0, wb, wf, wr = (weights(p) for p in (hf / "step_0", hf / "step_2", hf / "final", out))
    assert set(wr) == set(w0)
    for name in w0:
        assert torch.allclose(wr[name], w0[name] + wf[name] - wb[name], atol=1e-6), name
    AutoModelForCausalLM.from_pretrained(out)


def _scalar(run: Path, tag: str) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    return acc.Scalars(tag)[0].value


def test_print_config_round_trips(tmp_path, capsys):
    config = tiny_config(tmp_path, steps=1)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    assert "t3s.ARStudent" in printed.read_text() and "global_batch_size: 8" in printed.read_text()
    main(["fit", "--config", str(printed)])
    assert (run_dir(tmp_path, "sft") / "hf" / "final").exists()


def test_config_typo_and_wrong_type_fail_with_a_message(tmp_path, capsys):
    config = tiny_config(tmp_path, steps=1)
    for bad in (["--model.init_args.lrr=3"], ["--data.global_batch_size=many"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", str(config), *bad])
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "lrr" in err and "global_batch_size" in err and "Traceback" not in err


def test_t3s_without_scores_is_a_one_line_error(tmp_path, capsys):
    config = tiny_config(tmp_path, steps=1, selection={"class_path": "t3s.selection.T3S",
                                                       "init_args": {"scores": str(tmp_path / "missing")}})
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: no score cache at") and "t3s score" in err


def test_qwen3_config_runs_two_steps_with_tiny_overrides(tmp_path, capsys):
    cfg = yaml.safe_load((REPO / "configs" / "qwen3.yaml").read_text())
    assert cfg["model"]["init_args"]["model"] == "Qwen/Qwen3-8B" and cfg["data"]["global_batch_size"] == 64
    assert cfg["model"]["init_args"]["optimizer"]["lr"] == 1e-5 and cfg["trainer"]["max_steps"] == 50
    # the same file, with model, data, strategy and precision made tiny for a CPU
    cfg["model"]["init_args"]["model"] = BASE
    cfg["trainer"].update(accelerator="cpu", devices=1, strategy="auto", precision="32-true", max_steps=2,
                          default_root_dir=str(tmp_path), enable_progress_bar=False)
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path)
    bench = next(c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("BenchmarkCallback"))
    assert bench["init_args"]["tasks"] == ["aime24", "aime25"]
    bench["init_args"].update(tasks=[], train_grader="exact", train_limit=2,
                              sampling={"n": 1, "temperature": 0.0, "max_new_tokens": 8})
    cfg["data"].update(path=str(TINY_WORLD / "teacher_traces.jsonl"), limit=16,
                       tokenizer=str(TINY_WORLD / "tokenizer"), max_length=512, global_batch_size=4)
    cfg["data"]["layout"]["preset"], cfg["data"]["batching"]["micro_batch_size"] = "default", 2
    path = tmp_path / "qwen3-tiny.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    # the recipe's SFT phase, whose evaluations are deferred to `t3s evaluate`: it pauses after it
    main(["fit", "--config", str(path)])
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("t3s fit:")]
    assert said == ["t3s fit: recipe — T3S has no score cache: SFT → θ_b → score → T3S → report"]  # one line
    sft = run_dir(tmp_path, "recipe") / "sft"
    assert (sft / "hf" / "step_2").is_dir() and not (sft / "generations").exists()
    assert (run_dir(tmp_path, "recipe") / "recipe.json").is_file()
    # plain SFT is one flag away
    main(["fit", "--config", str(path), "--model.init_args.selection.class_path=t3s.selection.FullSFT"])
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("t3s fit:")]
    assert said == ["t3s fit: plain fit — FullSFT needs no Δc"]
    hf = tmp_path / "recipe" / "version_1" / "hf"
    assert (hf / "step_2").is_dir() and (hf / "final").exists()


def test_qwen3_config_parses_with_fsdp(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs" / "qwen3.yaml"), "--print_config"])
    printed = capsys.readouterr().out
    assert "ModelParallelStrategy" in printed and "param_dtype: bfloat16" in printed
    assert "max_length: 32768" in printed and "gradient_checkpointing: true" in printed


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    """Same global batch on 1 and on 2 gloo ranks: same loss, gradient norm and weights."""
    import os
    import subprocess
    import sys

    runs = {}
    for devices in (1, 2):
        root = tmp_path / f"d{devices}"
        root.mkdir()
        config = tiny_config(root, steps=2)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "T3S_CACHE": os.environ["T3S_CACHE"]}
        cmd = [sys.executable, "-m", "t3s", "fit", "--config", str(config), f"--trainer.devices={devices}",
               "--trainer.strategy=ddp" if devices == 2 else "--trainer.strategy=auto", "--data.micro_batch_size=3"]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[devices] = run_dir(root, "sft")
    for tag in ("train/loss", "train/grad_norm", "train/traces"):
        assert _scalar(runs[2], tag) == pytest.approx(_scalar(runs[1], tag), rel=1e-4), tag
    w1, w2 = weights(runs[1] / "hf" / "final"), weights(runs[2] / "hf" / "final")
    for name in w1:
        assert torch.allclose(w1[name], w2[name], atol=1e-5), name


def test_validate_and_test_report_the_teacher_forced_loss(tmp_path, capsys):
    config = tiny_config(tmp_path, steps=1)
    for command in ("validate", "test"):
        main([command, "--config", str(config)])
        out = capsys.readouterr().out
        assert f"{'val' if command == 'validate' else 'test'}/loss" in out


def test_score_config_typo_and_missing_checkpoint_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"path": "x.jsonl", "tokenizer": str(TINY_WORLD / "tokenizer"),
                                            "max_lenght": 5}}))
    good = tiny_config(tmp_path, steps=1)
    for config, base in ((bad, "nowhere"), (good, str(tmp_path / "nowhere"))):
        with pytest.raises(SystemExit) as exit_info:
            main(["score", "--config", str(config), "--base", base, "--bottleneck", base, "--output", str(tmp_path)])
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "max_lenght" in err and "nowhere" in err and "Traceback" not in err


def test_console_script_equals_python_m(tmp_path):
    import shutil
    import subprocess
    import sys

    script = shutil.which("t3s") or str(Path(sys.executable).parent / "t3s")
    if not Path(script).exists():
        pytest.skip("the t3s console script is not installed in this environment")
    outs = [subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            for cmd in ([script, "rrt", "--help"], [sys.executable, "-m", "t3s", "rrt", "--help"])]
    assert all(o.returncode == 0 for o in outs)
    assert outs[0].stdout.replace("t3s rrt", "") == outs[1].stdout.replace("t3s rrt", "")
    assert "--bottleneck" in outs[0].stdout
