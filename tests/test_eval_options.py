"""Command-line reach: ``--eval.<option>`` sets every BenchmarkCallback; ``accumulate_grad_batches`` is one line."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import error_of, random_model_config

from t3s.cli.lightning_cli import train_cli


def with_benchmark_callback(tmp_path: Path) -> str:
    """A config whose BenchmarkCallback is not the last callback (where --trainer.callbacks.init_args.X goes)."""
    path = random_model_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    callback = {"class_path": "t3s.evals.BenchmarkCallback",
                "init_args": {"every_n_steps": 10, "train_limit": 32, "sampling": {"n": 1, "temperature": 0.0}}}
    checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"every_n_train_steps": 10}}
    cfg["trainer"]["callbacks"] = [callback, checkpoint]
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def test_eval_options_reach_the_benchmark_callback(tmp_path: Path) -> None:
    from t3s.evals import BenchmarkCallback

    config = with_benchmark_callback(tmp_path)
    cli = train_cli(["--config", config, "--eval.every_n_steps", "3", "--eval.train_limit=4",
                     "--eval.sampling", "{n: 2, temperature: 0.5}"], run=False)
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, BenchmarkCallback)]
    assert (callback.every_n_steps, callback.train_limit) == (3, 4)
    assert cli.config.trainer.callbacks[0].init_args.sampling == {"n": 2, "temperature": 0.5}
    # without the options, the config's own values
    plain = train_cli(["--config", config], run=False)
    assert [c.every_n_steps for c in plain.trainer.callbacks if isinstance(c, BenchmarkCallback)] == [10]


def test_eval_option_mistakes_and_accumulation_hint(tmp_path: Path, capsys) -> None:
    config = with_benchmark_callback(tmp_path)
    assert error_of(capsys, "fit", "--config", config, "--eval.every_n_step", "3") == (
        "error: unknown option --eval.every_n_step (did you mean --eval.every_n_steps?)")
    assert error_of(capsys, "fit", "--config", config, "--eval.every_n_steps", "often") == (
        "error: --eval.every_n_steps: expected an int, got 'often'")
    bare = str(random_model_config(tmp_path, folder="bare"))
    assert error_of(capsys, "fit", "--config", bare, "--eval.every_n_steps=3") == (
        "error: --eval.every_n_steps: the config has no t3s.evals.BenchmarkCallback in trainer.callbacks")
    line = error_of(capsys, "fit", "--config", bare, "--trainer.accumulate_grad_batches", "4")
    assert line.startswith("error: --trainer.accumulate_grad_batches 4: t3s steps are sized by the data module")
    assert "data.global_batch_size" in line and "data.batching.micro_batch_size" in line


def test_the_grouped_spelling_and_the_flat_one_configure_the_same_callback(tmp_path: Path) -> None:
    """``suite:`` / ``schedule:`` / ``curve:`` groups in a config; ``--eval.<field>`` and ``--eval_mode`` still
    reach a field inside its group."""
    from t3s.evals import BenchmarkCallback

    path = random_model_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["trainer"]["callbacks"] = [{"class_path": "t3s.evals.callbacks.BenchmarkCallback", "init_args": {
        "suite": {"train_limit": 32, "sampling": {"n": 1, "temperature": 0.0}},
        "schedule": {"every_n_steps": 10, "mode": "defer"},
        "curve": {"bottleneck_patience": 3},
    }}]
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cli = train_cli(["--config", str(path), "--eval.every_n_steps", "3", "--eval.train_limit=4",
                     "--eval_mode", "inline"], run=False)
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, BenchmarkCallback)]
    assert (callback.schedule.every_n_steps, callback.suite.train_limit, callback.schedule.mode) == (3, 4, "inline")
    assert callback.curve.bottleneck_patience == 3 and callback.detector.patience == 3
    assert callback.suite.sampling == {"n": 1, "temperature": 0.0}
