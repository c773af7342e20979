"""`t3s evaluate` outside the training process, and the benchmark callback's evaluation modes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import BASE, REPO, TINY_WORLD

from t3s.cli import main
from t3s.evals.results import RESULTS_FILE, read_results
from t3s.evals.scalars import read_scalars

GREEDY = {"n": 1, "temperature": 0.0, "max_new_tokens": 48}


def tiny_run_config(tmp_path: Path, name: str, mode: str) -> Path:
    """configs/tiny.yaml, 4 steps evaluated every 2 on 6 training problems, with the callback in ``mode``."""
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["trainer"].update(max_steps=4, default_root_dir=str(tmp_path), enable_progress_bar=False)
    cfg["trainer"]["logger"]["init_args"].update(save_dir=str(tmp_path), name=name)
    cfg["trainer"]["callbacks"] = [c for c in cfg["trainer"]["callbacks"]
                                   if c["class_path"].endswith("BenchmarkCallback")]
    cfg["trainer"]["callbacks"][0]["init_args"].update(every_n_steps=2, train_limit=6, sampling=GREEDY, batch_size=8,
                                                       mode=mode)
    cfg["trainer"]["enable_checkpointing"] = False
    cfg["model"]["init_args"].update(model=BASE)
    cfg["data"].update(path=str(TINY_WORLD / "teacher_traces.jsonl"), tokenizer=str(TINY_WORLD / "tokenizer"),
                       limit=32, global_batch_size=8, micro_batch_size=8)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def verdicts(run: Path, step: int) -> list[tuple[str, str, bool]]:
    rows = [json.loads(line)
            for line in (run / "generations" / f"step_{step}" / "train.jsonl").read_text().splitlines()]
    return sorted((r["id"], r["response"], r["correct"]) for r in rows)


@pytest.mark.slow
def test_deferred_and_subprocess_evaluations_match_inline(tmp_path, capsys):
    main(["fit", "--config", str(tiny_run_config(tmp_path, "inline", "inline"))])
    main(["fit", "--config", str(tiny_run_config(tmp_path, "defer", "defer"))])
    inline, deferred = tmp_path / "inline" / "version_0", tmp_path / "defer" / "version_0"
    assert sorted(p.name for p in (deferred / "hf").glob("step_*")) == ["step_0", "step_2", "step_4"]
    assert not (deferred / "generations").exists()  # defer: HF folders only
    assert read_scalars(deferred, "bench/train/avg@1") == ([], [])

    main(["evaluate", str(deferred), "--devices", "2"])
    rows = read_results(deferred)
    assert sorted((r["step"], r["task"]) for r in rows) == [(0, "train"), (2, "train"), (4, "train")]
    steps, values = read_scalars(deferred, "bench/train/avg@1")
    assert steps == [0, 2, 4]
    assert values == [r["metrics"]["avg@1"] for r in sorted(rows, key=lambda r: r["step"])]
    for step in (0, 2, 4):  # same weights, same greedy decoding: the same responses and verdicts as inline
        assert verdicts(deferred, step) == verdicts(inline, step)
    assert read_scalars(inline, "bench/train/avg@1")[1] == values

    # mode subprocess: the same evaluations, run by a child `t3s evaluate` while training waits
    main(["fit", "--config", str(tiny_run_config(tmp_path, "child", "subprocess"))])
    child = tmp_path / "child" / "version_0"
    assert read_scalars(child, "bench/train/avg@1") == (steps, values)
    assert all(verdicts(child, step) == verdicts(inline, step) for step in (0, 2, 4))

    # a rerun evaluates nothing again; a lost result (as after a kill) is redone alone
    main(["evaluate", str(deferred)])
    assert len(read_results(deferred)) == 3
    ledger = deferred / RESULTS_FILE
    lines = ledger.read_text().splitlines()
    ledger.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])  # the last line cut mid-write
    capsys.readouterr()
    main(["evaluate", str(deferred)])
    assert "1 new result(s)" in capsys.readouterr().out
    assert sorted(r["step"] for r in read_results(deferred)) == [0, 2, 4]


@pytest.mark.slow
def test_subprocess_evaluation_beside_training_gives_the_inline_curve(tmp_path):
    """mode subprocess, wait: false: the child evaluations run while training goes on, and the curve (scalars,
    ledger, the callback's own history) is the inline one once fit returns."""
    import lightning as L

    from t3s.evals import BenchmarkCallback

    main(["fit", "--config", str(tiny_run_config(tmp_path, "inline", "inline"))])
    config = tiny_run_config(tmp_path, "beside", "subprocess")
    cfg = yaml.safe_load(config.read_text())
    cfg["trainer"]["callbacks"][0]["init_args"].update(wait=False, eval_devices=[0, 1])
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    main(["fit", "--config", str(config)])
    inline, beside = tmp_path / "inline" / "version_0", tmp_path / "beside" / "version_0"
    assert read_scalars(beside, "bench/train/avg@1") == read_scalars(inline, "bench/train/avg@1")
    assert sorted(r["step"] for r in read_results(beside)) == [0, 2, 4]
    assert all(verdicts(beside, step) == verdicts(inline, step) for step in (0, 2, 4))
    log = (beside / "eval" / "child.log").read_text()
    assert log.count("$ ") <= 3 and "--devices 2" in log  # one child at a time, each taking what was queued

    # a checkpoint taken while a child evaluated steps 2 and 4 (`pending` in the callback's state): the resumed
    # run queues them at its start and has them in its curve at its end (the inline run has no ledger yet)
    callback = BenchmarkCallback(mode="subprocess", wait=False, train_limit=6, sampling=GREEDY)
    callback.load_state_dict({"evaluated": [0, 2, 4], "pending": [2, 4]})
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False)
    student = SimpleNamespace(run_dir=str(inline))  # the callback reads only the student's run directory
    callback.on_train_start(trainer, student)
    assert callback.children(student).pending == [2, 4]
    callback.on_train_end(trainer, student)
    assert [step for step, _ in callback.history["train"]] == [2, 4]
    assert sorted(r["step"] for r in read_results(inline)) == [2, 4]  # only the pending steps (0 counts as done)


def test_child_evaluator_queues_while_one_child_runs_and_names_a_failed_child_log(tmp_path):
    from t3s.evals.child_evaluator import ChildEvaluationError, ChildEvaluator

    children = ChildEvaluator(tmp_path / "run", devices=[1])
    assert children.environment()["CUDA_VISIBLE_DEVICES"] == (
        os.environ["CUDA_VISIBLE_DEVICES"].split(",")[1] if os.environ.get("CUDA_VISIBLE_DEVICES") else "1")
    children.submit(0)
    children.submit(5)
    children.submit(5)
    assert children.running == [0] and children.queued == [5] and children.pending == [0, 5]
    with pytest.raises(ChildEvaluationError, match="child.log"):  # no run there: the child fails, and says why
        children.wait()
    assert "t3s evaluate" in (tmp_path / "run" / "eval" / "child.log").read_text()
    children.stop()


def test_waiting_for_nothing_is_refused_outside_subprocess_mode():
    from t3s.evals import BenchmarkCallback

    for mode in ("inline", "defer"):
        with pytest.raises(ValueError, match="mode 'subprocess'"):
            BenchmarkCallback(mode=mode, wait=False)
        with pytest.raises(ValueError, match="mode 'subprocess'"):
            BenchmarkCallback(mode=mode, eval_devices=[1])


def test_several_hf_folders_with_one_output_each_get_their_own_folder(tmp_path, capsys):
    from conftest import tiny_qwen3
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_WORLD / "tokenizer")
    for name, seed in (("a", 1), ("b", 2)):
        tiny_qwen3(len(tokenizer), seed=seed).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    task = tmp_path / "heldout.yaml"
    task.write_text(f"name: heldout\ndataset: {TINY_WORLD / 'heldout.jsonl'}\ngrader: exact\nlimit: 2\n"
                    "fields: {problem: prompt, answer: answer}\nenable_thinking: false\n")
    args = ["--tasks", str(task), "--n", "1", "--temperature", "0", "--max_new_tokens", "4"]
    main(["evaluate", str(tmp_path / "a"), str(tmp_path / "b"), *args, "--output", str(tmp_path / "out")])
    for name in ("a", "b"):  # not one ledger, which would have marked b as done after a
        assert [r["task"] for r in read_results(tmp_path / "out" / name)] == ["heldout"]
    (tmp_path / "other").mkdir()
    tiny_qwen3(len(tokenizer), seed=3).save_pretrained(tmp_path / "other" / "a")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path / "a"), str(tmp_path / "other" / "a"), *args, "--output", str(tmp_path / "o2")])
    assert exit_info.value.code == 2 and "share a name: ['a']" in capsys.readouterr().err


def test_evaluate_refuses_what_it_cannot_evaluate(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for args in (["evaluate", str(tmp_path / "missing")], ["evaluate", str(tmp_path / "empty")]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith("error: ")


def small_toy_config(tmp_path: Path, steps: int = 20) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "toy-small.yaml").read_text())
    cfg["trainer"].update(max_steps=steps, default_root_dir=str(tmp_path), enable_progress_bar=False)
    # the fast-shock regime (the shipped demo's is 3e-4 for 120 steps)
    cfg["model"]["init_args"]["optimizer"]["lr"] = 3e-3
    cfg["trainer"]["logger"]["init_args"].update(save_dir=str(tmp_path), name="recipe")
    bench = next(c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("BenchmarkCallback"))["init_args"]
    bench.update(tasks=[])
    path = tmp_path / "toy-small.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.slow
def test_deferred_recipe_pauses_for_evaluate_then_resumes_with_ckpt_path_last(tmp_path, capsys):
    """The acceptance path: defer → `t3s evaluate <sft phase> --devices 2` → the same command + --ckpt_path last."""
    config = small_toy_config(tmp_path)
    main(["fit", "--config", str(config), "--eval_mode", "defer"])
    root = tmp_path / "recipe" / "version_0"
    assert "paused: the SFT phase's evaluations are deferred" in capsys.readouterr().err
    assert json.loads((root / "recipe.json").read_text())["sft_done"] is True
    assert not (root / "sft" / "generations").exists() and not (root / "scores").exists()
    sft_files = {p: p.stat().st_mtime_ns for p in (root / "sft").rglob("*") if p.is_file()}

    main(["evaluate", str(root / "sft"), "--devices", "2"])
    steps, accuracy = read_scalars(root / "sft", "bench/train/avg@1")
    assert steps == [0, 5, 10, 15, 20] and accuracy[0] - min(accuracy) >= 0.2  # the shock, evaluated afterwards

    main(["fit", "--config", str(config), "--eval_mode", "defer", "--ckpt_path", "last"])
    state = json.loads((root / "recipe.json").read_text())
    assert state["bottleneck_step"] == steps[accuracy.index(min(accuracy))] and state["masked_done"]
    assert (root / "report" / "report.md").is_file()
    assert not (tmp_path / "recipe" / "version_1").exists()  # resumed in place
    for path, mtime in sft_files.items():  # the SFT phase was not trained again
        if path.suffix in (".safetensors", ".ckpt"):
            assert path.stat().st_mtime_ns == mtime, path
    _, selected = read_scalars(root / "t3s", "train/selected_fraction")
    assert len(selected) == 20 and all(f < 1.0 for f in selected)


def test_misconfigured_recipe_fails_before_the_first_step(tmp_path, capsys):
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["trainer"].update(default_root_dir=str(tmp_path), callbacks=[])
    cfg["trainer"]["logger"]["init_args"].update(save_dir=str(tmp_path), name="recipe")
    cfg["model"]["init_args"].update(model=BASE, selection={"class_path": "t3s.selection.T3S"})
    cfg["data"].update(path=str(TINY_WORLD / "teacher_traces.jsonl"), tokenizer=str(TINY_WORLD / "tokenizer"))
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config)])
    assert exit_info.value.code == 2
    assert "BenchmarkCallback" in capsys.readouterr().err
    assert not list(tmp_path.rglob("step_0"))  # nothing was trained, not even θ_0 written
