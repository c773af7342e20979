"""Benchmark callback, report and the one-command T3S recipe on the tiny world."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import yaml
from conftest import REPO, TINY_WORLD, make_data, make_student
from lightning.pytorch.loggers import TensorBoardLogger

from t3s.analysis.report import write_report
from t3s.cli import main
from t3s.evals import BenchmarkCallback
from t3s.evals.scalars import read_scalars

GREEDY = {"n": 1, "temperature": 0.0, "max_new_tokens": 160}


def exact_task(tmp_path: Path) -> Path:
    """A benchmark YAML over the tiny world's held-out problems, as a user would add one."""
    spec = {"name": "tiny_heldout", "dataset": str(TINY_WORLD / "heldout.jsonl"), "split": "train",
            "fields": {"id": "id", "problem": "prompt", "answer": "answer"}, "grader": "exact",
            "instruction": "", "limit": 6, "sampling": GREEDY}
    path = tmp_path / "tiny_heldout.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def fit_with_benchmarks(tmp_path: Path, name: str, steps: int = 4) -> Path:
    data = make_data(TINY_WORLD, batch=8, micro=8)
    student = make_student(data)
    bench = BenchmarkCallback(tasks=[str(exact_task(tmp_path))], every_n_steps=2, train_limit=6, sampling=GREEDY,
                              batch_size=8)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=TensorBoardLogger(tmp_path, name=name),
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[bench], log_every_n_steps=1)
    trainer.fit(student, datamodule=data)
    return Path(trainer.log_dir)


def test_benchmark_callback_logs_curves_figure_and_generations(tmp_path):
    run = fit_with_benchmarks(tmp_path, "sft")
    for task in ("train", "tiny_heldout"):
        steps, values = read_scalars(run, f"bench/{task}/avg@1")
        assert steps == [0, 2, 4] and all(0.0 <= v <= 1.0 for v in values)
        rows = [json.loads(line)
                for line in (run / "generations" / "step_2" / f"{task}.jsonl").read_text().splitlines()]
        assert len(rows) == 6
        assert {"id", "sample", "response", "extracted", "correct", "step"} <= set(rows[0])
    assert {p.name for p in (run / "hf").iterdir()} >= {"step_0", "step_2", "step_4"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    assert "curves/loss_and_accuracy" in acc.Tags()["images"]
    assert any(tag.startswith("samples/train") for tag in acc.Tags()["tensors"])


def test_report_compares_two_runs(tmp_path):
    runs = [fit_with_benchmarks(tmp_path, name, steps=2) for name in ("sft", "t3s")]
    report = write_report(runs, tmp_path / "report")
    text = report.read_text()
    assert "| sft/version_0 | train |" in text and "| t3s/version_0 | tiny_heldout |" in text
    for png in ("accuracy_train.png", "accuracy_tiny_heldout.png", "loss.png"):
        assert (tmp_path / "report" / png).stat().st_size > 10_000
    main(["report", str(runs[0]), "--output", str(tmp_path / "report2")])
    assert (tmp_path / "report2" / "report.md").is_file()


@pytest.mark.slow
def test_small_toy_shock_and_one_command_recipe(tmp_path, capsys):
    """configs/toy-small.yaml end to end, as a user runs it: Imitation Shock on plain SFT, then the recipe.

    Builds the small toy θ_0 first (~20 s on 2 cores; cached in $T3S_CACHE for the session).
    """
    config = small_toy_config(tmp_path, "recipe")
    main(["fit", "--config", str(config)])

    root = tmp_path / "recipe" / "version_0"
    # Imitation Shock: training accuracy dips by >= 20 points and recovers while the loss keeps falling
    steps, accuracy = read_scalars(root / "sft", "bench/train/avg@1")
    assert steps == list(range(0, 41, 5))
    # θ_0 is a strong student: 0.94 on torch 2.13 CPU (README, "Versions"); a torch build that moves it fails here
    assert accuracy[0] == pytest.approx(0.94, abs=0.06)
    assert accuracy[0] - min(accuracy) >= 0.2
    assert accuracy[-1] >= min(accuracy) + 0.2
    loss_steps, loss = read_scalars(root / "sft", "train/loss")
    windows = [[v for s, v in zip(loss_steps, loss) if a < s <= b] for a, b in zip(steps, steps[1:])]
    means = [sum(w) / len(w) for w in windows]
    assert all(later < earlier for earlier, later in zip(means, means[1:])), means

    meta = json.loads((root / "scores" / "meta.json").read_text())
    bottleneck = int(Path(meta["bottleneck"]).name.removeprefix("step_"))
    assert bottleneck == steps[accuracy.index(min(accuracy))] != 0 and Path(meta["base"]).name == "step_0"
    summary = json.loads((root / "scores" / "summary.json").read_text())
    assert 0.0 < summary["anchor_fraction"] < 1.0
    # the teacher's connectives are anchors at θ_b
    anchors = {row["token"]: row["share_of_occurrences"] for row in summary["top_anchor_tokens"]}
    assert all(anchors.get(word, 0.0) > 0.9 for word in ("so", "we", "write", "the", "column"))
    # the masked phase's first epoch (128 traces / 32 per step) covers every response token exactly once
    _, selected = read_scalars(root / "t3s", "train/selected_tokens")
    _, response = read_scalars(root / "t3s", "train/response_tokens")
    assert sum(response[:4]) == summary["num_tokens"]
    assert sum(selected[:4]) / sum(response[:4]) == pytest.approx(1.0 - summary["anchor_fraction"], abs=1e-6)
    t3s_steps, _ = read_scalars(root / "t3s", "bench/train/avg@1")
    assert t3s_steps == steps
    assert (root / "report" / "report.md").is_file()
    out = capsys.readouterr().out  # a line per evaluation, a results table at the end
    assert f"[eval] step 5: train avg@1 {accuracy[1]:.3f}" in out
    assert "minimum (step)" in out and f"{min(accuracy):.3f} ({bottleneck})" in out


def test_restart_from_reloads_weights_and_resets_the_optimizer(tmp_path):
    import torch
    from safetensors.torch import load_file

    data = make_data(TINY_WORLD, batch=8, micro=8)
    student = make_student(data, lr=1e-3, warmup_steps=2, schedule="cosine")
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(student, datamodule=data)
    step0 = tmp_path / "hf" / "step_0"
    assert not torch.equal(student.model.lm_head.weight, load_file(str(step0 / "model.safetensors"))["lm_head.weight"])
    student.restart_from(step0)
    weights = load_file(str(step0 / "model.safetensors"))
    assert all(torch.equal(student.model.state_dict()[k], v) for k, v in weights.items())
    assert all(len(opt.state) == 0 for opt in trainer.optimizers)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-3 * 0.5)  # warm-up step 1 of 2 again


def small_toy_config(tmp_path: Path, name: str, **selection) -> Path:
    """configs/toy-small.yaml in its fast-shock regime (LR 3e-3, 40 steps; the shipped demo regime is 3e-4 for
    120 steps) with every output under tmp_path, training accuracy only."""
    cfg = yaml.safe_load((REPO / "configs" / "toy-small.yaml").read_text())
    cfg["trainer"].update(default_root_dir=str(tmp_path), enable_progress_bar=False, max_steps=40)
    cfg["model"]["init_args"]["optimizer"]["lr"] = 3e-3
    cfg["trainer"]["logger"]["init_args"].update(save_dir=str(tmp_path), name=name)
    bench = next(c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("BenchmarkCallback"))["init_args"]
    bench.update(tasks=[])
    if selection:
        cfg["model"]["init_args"]["selection"] = selection
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config


@pytest.mark.slow
def test_online_t3s_switches_inside_one_fit(tmp_path):
    """The small toy's shock confirms θ_b mid-run (default margin and patience); the switch then masks anchors."""
    config = small_toy_config(tmp_path, "online", class_path="t3s.selection.T3S", init_args={"online": True})
    main(["fit", "--config", str(config)])
    run = tmp_path / "online" / "version_0"
    steps, accuracy = read_scalars(run, "bench/train/avg@1")
    switch_steps, switch = read_scalars(run, "recipe/switch_step")
    _, bottleneck = read_scalars(run, "recipe/bottleneck_step")
    assert len(switch) == 1 and switch_steps == [int(switch[0])]
    step_b = int(bottleneck[0])
    probe = [a for s, a in zip(steps, accuracy) if s <= switch[0]]
    assert step_b == steps[probe.index(min(probe))] > 0  # θ_b is the argmin seen before the switch
    assert accuracy[0] - min(probe) >= 0.2  # a real dip, not a forced detector
    summary = json.loads((run / "scores" / "summary.json").read_text())
    assert 0.0 < summary["anchor_fraction"] < 1.0
    fraction_steps, fraction = read_scalars(run, "train/selected_fraction")
    # a step's scalars are logged at the step count before its update; the switch follows update `switch`
    before = [f for s, f in zip(fraction_steps, fraction) if s < switch[0]]
    after = [f for s, f in zip(fraction_steps, fraction) if s >= switch[0]]
    assert before and all(f == 1.0 for f in before)  # FullSFT while probing
    assert after and all(f < 1.0 for f in after)  # anchors masked after the switch


@pytest.mark.slow
def test_compare_runs_every_method_with_overrides(tmp_path):
    """`t3s compare` on the small toy, shortened through --overrides: every method, the table and figures."""
    main(["compare", "--config", str(REPO / "configs" / "toy-small.yaml"), "--seeds", "0", "--output",
          str(tmp_path), "--overrides", "trainer.max_steps=10", "model.init_args.optimizer.lr=3e-3",
          "trainer.enable_progress_bar=false"])

    seed = tmp_path / "seed_0"
    for method in ("sft", "t3s", "inverse_t3s", "random"):
        steps, accuracy = read_scalars(seed / method, "bench/train/avg@1")
        assert steps == [0, 5, 10], method  # the override shortened every run
        assert accuracy[0] == pytest.approx(read_scalars(seed / "sft", "bench/train/avg@1")[1][0])  # same θ_0
    # T3S, −T3S and the random mask train complementary / equal budgets of the same first batch
    count = {m: read_scalars(seed / m, "train/selected_tokens")[1][0] for m in ("t3s", "inverse_t3s", "random")}
    _, response = read_scalars(seed / "t3s", "train/response_tokens")
    assert count["t3s"] + count["inverse_t3s"] == response[0]
    assert abs(count["random"] - count["t3s"]) <= 0.1 * response[0]
    table = (tmp_path / "comparison.md").read_text()
    for label in ("| SFT |", "| T3S |", "| −T3S |", "| random mask |", "| RRT |"):
        assert label in table
    assert list(tmp_path.glob("*.png"))


def test_compare_overrides_must_be_key_value(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--config", str(REPO / "configs" / "toy-small.yaml"), "--seeds", "0", "--output",
              str(tmp_path), "--overrides", "trainer.max_steps"])
    assert exit_info.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_recipe_refuses_a_diffusion_student_before_step_one(tmp_path, capsys):
    """A diffusion student cannot score its own Δc: one line, before anything trains (no hf/step_1)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "tiny-diffusion", "--model.init_args.selection.class_path=t3s.selection.T3S",
              f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert err[0].startswith("error: DiffusionStudent gets Δc from an AR selector"), err
    assert not list(tmp_path.rglob("step_1"))
