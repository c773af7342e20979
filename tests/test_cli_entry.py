"""The command line as a new user meets it: help, shipped configs and tasks, one-line errors, lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, error_of, random_model_config

from t3s.cli import help_text, main
from t3s.data.from_config import datamodule_from_config
from t3s.resources import find_config, packaged_configs, packaged_configs_dir, packaged_tasks_dir

COMMANDS = ("fit", "validate", "test", "score", "rrt", "grade", "report", "compare")


def python(code: str, cwd: Path | None = None) -> str:
    """Run ``code`` in a fresh interpreter on this checkout; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_help_lists_every_command_with_a_line_and_loads_no_torch():
    text = help_text()
    for command in COMMANDS:
        line = next(line for line in text.splitlines() if line.startswith(f"  {command} "))
        assert len(line.split()) > 3, line
    assert "toy-small" in text
    out = python("import sys, t3s.cli; t3s.cli.main(['--help']); "
                 "print('LOADED', [m for m in ('torch', 'lightning') if m in sys.modules])")
    assert "  compare " in out and "LOADED []" in out


def test_grade_loads_neither_torch_nor_lightning(tmp_path):
    """`t3s grade` (a grader or a packaged task) needs neither torch nor Lightning: it starts in a fraction of the
    time."""
    gens = tmp_path / "gens.jsonl"
    gens.write_text(json.dumps({"response": "<think>x</think> \\boxed{ 2 5 }", "gold": "25"}) + "\n")
    heavy = "('torch', 'lightning', 'transformers', 'torchmetrics')"
    for task in ("aime24", "math", "exact"):
        out = python(f"import sys, t3s.cli; t3s.cli.main(['grade', '--task', '{task}', '--input', {str(gens)!r}, "
                     f"'--output', {str(tmp_path / (task + '.jsonl'))!r}]); "
                     f"print('LOADED', [m for m in {heavy} if m in sys.modules])")
        assert "(1/1 correct)" in out and "LOADED []" in out, out


def test_report_loads_neither_torch_nor_lightning(tmp_path):
    """`t3s report` on a recipe folder written by a CSVLogger (hand-made here), anchor summary included."""
    root = tmp_path / "recipe" / "version_0"
    for phase, values in (("probe", (0.9, 0.1, 0.8)), ("t3s", (0.9, 0.5, 0.95))):
        (root / phase).mkdir(parents=True)
        rows = ["step,bench/train/avg@1,train/loss"] + [f"{5 * i},{v},{2.0 - i}" for i, v in enumerate(values)]
        (root / phase / "metrics.csv").write_text("\n".join(rows) + "\n")
    token = {"token": "so", "count": 3, "share_of_occurrences": 1.0}
    (root / "scores").mkdir()
    (root / "scores" / "summary.json").write_text(json.dumps({
        "anchor_fraction": 0.2, "mean_delta": 0.1, "num_tokens": 10, "top_anchor_tokens": [token],
        "top_yet_to_learn_tokens": [token]}))
    out = python(f"import sys, t3s.cli; t3s.cli.main(['report', {str(root)!r}]); "
                 "print('LOADED', [m for m in ('torch', 'lightning', 'transformers') if m in sys.modules])")
    assert "LOADED []" in out, out
    text = (root / "report" / "report.md").read_text()
    assert "| SFT | train | 0.900 | 0.100 (5) |" in text and text.count("## Anchor tokens") == 1


def test_console_stays_quiet_about_weight_loads(tmp_path):
    """No transformers progress bar per checkpoint write or weight load once the command line has started."""
    out = python("import t3s.cli; t3s.cli.configure_process(); "
                 "from transformers.utils import logging; print(logging.is_progress_bar_enabled())")
    assert out.strip() == "False"


def test_toy_resolvers_are_opt_in():
    out = python("from omegaconf import OmegaConf; import t3s.cli, t3s.toy, t3s.toy.base; "
                 "print(OmegaConf.has_resolver('toy_base'), OmegaConf.has_resolver('toy_world')); "
                 "t3s.toy.base.register_resolvers(); print(OmegaConf.has_resolver('toy_base'))")
    assert out.split() == ["False", "False", "True"]


def test_shipped_configs_and_tasks_are_found_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert find_config("toy-small") == packaged_configs_dir() / "toy-small.yaml"
    assert {"toy", "toy-small", "tiny", "qwen3"} <= set(packaged_configs())
    assert (packaged_tasks_dir() / "aime24.yaml").is_file()
    # the checkout's paths are the same files
    assert (REPO / "configs" / "toy.yaml").resolve() == (packaged_configs_dir() / "toy.yaml").resolve()
    assert (REPO / "benchmarks" / "tasks" / "aime24.yaml").resolve() == (packaged_tasks_dir() / "aime24.yaml").resolve()
    line = error_of(capsys, "fit", "--config", "toy-smal")
    assert "toy-smal" in line and "toy-small" in line


def test_a_typo_is_one_line_naming_the_key_before_any_theta0_is_built(tmp_path, capsys):
    cache = Path(os.environ["T3S_CACHE"])
    before = sorted(cache.rglob("*")) if cache.exists() else []
    line = error_of(capsys, "fit", "--trainer.max_step", "10")  # the default (toy) config: no θ_0 build
    assert line == "error: unknown option --trainer.max_step (did you mean --trainer.max_steps?)"
    assert (sorted(cache.rglob("*")) if cache.exists() else []) == before
    config = str(random_model_config(tmp_path))
    assert "did you mean --data.max_length" in error_of(capsys, "fit", "--config", config, "--data.max_lenght=3")
    line = error_of(capsys, "fit", "--config", config, "--model.init_args.lrr=3")
    assert "model.init_args.lrr" in line and "did you mean optimizer.lr?" in line
    line = error_of(capsys, "fit", "--config", config, "--model.init_args.selection=t3s.selection.T3SS")
    assert "T3SS" in line and "t3s.selection.T3S," in line and "t3s.selection.RandomMask" in line
    line = error_of(capsys, "fit", "--config", config, "--model.init_args.attn_implementation=flash_attention_2")
    assert "FlashAttention2" in line
    line = error_of(capsys, "fit", "--config", config, "--trainer.strategy=fsdp")
    assert "fsdp" in line and "GPU" in line
    assert "unknown command 'fti'" in error_of(capsys, "fti")
    # the students configure their own optimizer: LightningCLI's --optimizer is not offered
    assert "unknown option --optimizer" in error_of(capsys, "fit", "--config", config, "--optimizer", "AdamW")


def test_relative_data_paths_mean_the_config_folder(tmp_path, monkeypatch):
    config = random_model_config(tmp_path, folder="elsewhere/cfg", relative_data=True)
    run_from = tmp_path / "somewhere"
    run_from.mkdir()
    monkeypatch.chdir(run_from)
    main(["fit", "--config", str(config)])
    saved = yaml.safe_load((tmp_path / "runs" / "sft" / "version_0" / "config.yaml").read_text())
    assert saved["data"]["path"] == str((config.parent / "world" / "teacher_traces.jsonl").resolve())
    assert (tmp_path / "runs" / "sft" / "version_0" / "hf" / "step_1").is_dir()


def test_score_reads_the_shipped_configs_data_without_building_theta0(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = Path(os.environ["T3S_CACHE"])
    before = sorted(cache.rglob("*")) if cache.exists() else []
    data = datamodule_from_config(find_config("tiny"))
    assert Path(data.path) == (packaged_configs_dir() / "data" / "tiny" / "teacher_traces.jsonl").resolve()
    assert (sorted(cache.rglob("*")) if cache.exists() else []) == before


def test_grade_finds_the_shipped_task_and_a_wrong_field_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rows = [{"response": "so \\boxed{25}", "gold": "025"}, {"response": "\\boxed{7}", "gold": "8"}]
    Path("gens.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["grade", "--task", "aime24", "--input", "gens.jsonl"])
    assert "accuracy 0.5000 (1/2 correct)" in capsys.readouterr().out
    verdicts = [json.loads(line) for line in Path("gens.verdicts.jsonl").read_text().splitlines()]
    assert [v["correct"] for v in verdicts] == [True, False]
    line = error_of(capsys, "grade", "--task", "aime24", "--input", "gens.jsonl", "--gold_field", "answer")
    assert "'answer'" in line and "gold" in line


def test_cache_root_honours_t3s_cache_then_xdg(monkeypatch, tmp_path):
    from t3s.toy.base import cache_root

    monkeypatch.delenv("T3S_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "t3s"
    monkeypatch.setenv("T3S_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_written_weights_are_readable_like_their_neighbours(tmp_path):
    import torch
    from safetensors.torch import save_file

    from t3s.runtime.files import make_shareable

    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    make_shareable(tmp_path)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"] == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_report_accepts_a_recipe_run_folder(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path / "recipe" / "version_0"
    for phase, dip in (("probe", 0.1), ("t3s", 0.6)):
        writer = SummaryWriter(str(root / phase))
        for step, acc in ((0, 0.9), (5, dip), (10, 0.8), (15, 0.85)):
            writer.add_scalar("bench/train/avg@1", acc, step)
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
            writer.add_scalar("train/loss_all_tokens", 2.0 / (step + 1), step)
        writer.close()
    token = {"token": "so", "count": 3, "share_of_occurrences": 1.0}
    (root / "scores").mkdir()
    (root / "scores" / "summary.json").write_text(json.dumps({
        "anchor_fraction": 0.2, "mean_delta": 0.1, "num_tokens": 10, "top_anchor_tokens": [token],
        "top_yet_to_learn_tokens": [token]}))
    main(["report", str(root)])
    text = (root / "report" / "report.md").read_text()
    assert "| SFT | train | 0.900 | 0.100 (5) |" in text and "| T3S | train | 0.900 | 0.600 (5) |" in text
    assert text.count("## Anchor tokens") == 1  # the phases share one score cache


def test_comparison_figure_labels_theta0_and_each_theta_b():
    from t3s.evals.figures import comparison_figure

    curves = {"probe": ([0, 5, 10], [0.9, 0.1, 0.8]), "t3s": ([0, 5, 10], [0.9, 0.6, 0.85])}
    fig = comparison_figure(curves, ylabel="acc", title="t", bottlenecks={"probe": 5, "t3s": None}, baseline=0.9)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["θ_0 (0.90)", "probe", "t3s", "θ_b (step 5)"]  # one θ_b: no run named, its own colour
    fig = comparison_figure(curves, ylabel="acc", title="t", bottlenecks={"probe": 5, "t3s": 10})
    assert fig.axes[0].get_legend_handles_labels()[1][-2:] == ["θ_b of probe (step 5)", "θ_b of t3s (step 10)"]


def test_cli_trainers_show_steps_without_a_negative_epoch_count_or_v_num(tmp_path, monkeypatch):
    from t3s.cli.lightning_cli import StepProgressBar, train_cli

    monkeypatch.setenv("T3S_PROGRESS", "bar")  # the terminal's bar (pytest's captured output is a file)
    config = yaml.safe_load(random_model_config(tmp_path).read_text())
    config["trainer"]["enable_progress_bar"] = True
    path = tmp_path / "bar.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = train_cli(["--config", str(path)], run=False)
    bar = cli.trainer.progress_bar_callback
    assert type(bar) is StepProgressBar
    bar._trainer = cli.trainer
    assert bar._get_train_description(9).strip() == "Epoch 9"


def test_list_options_take_space_separated_values_and_the_bracketed_spelling_of_earlier_releases() -> None:
    """``--seeds 0 1 2`` and, as before the cli package, ``--seeds [0,1]`` (and both mixed) parse to one list."""
    from t3s.cli.arguments import run_function

    def command(output: str, seeds: list[int] = [0], runs: list[str] | None = None) -> dict:  # noqa: B006
        return {"output": output, "seeds": seeds, "runs": runs}

    assert run_function("t", command, ["--output", "o", "--seeds", "0", "1", "2"])["seeds"] == [0, 1, 2]
    assert run_function("t", command, ["--output", "o", "--seeds", "[0,1]"])["seeds"] == [0, 1]
    assert run_function("t", command, ["--output", "o", "--seeds", "[0, 1]", "2"])["seeds"] == [0, 1, 2]
    assert run_function("t", command, ["--output", "o", "--runs", '["a","b"]'])["runs"] == ["a", "b"]
    assert run_function("t", command, ["--output", "o"])["seeds"] == [0]
