"""What a run leaves for a person: a quiet console, honest scalars, readable figures, and the same outputs
whichever Lightning logger the config names (TensorBoard, or CSVLogger as the offline stand-in for the rest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from conftest import REPO, TINY_WORLD, make_data, make_student
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from matplotlib.backends.backend_agg import FigureCanvasAgg

from t3s.analysis.report import report_figures, summarize_run
from t3s.cli import main
from t3s.cli.lightning_cli import prepare_trainer
from t3s.evals import BenchmarkCallback
from t3s.evals.figures import comparison_figure, curve_figure
from t3s.evals.scalars import read_scalars, scalar_tags
from t3s.recipe.phases import phase_loggers

GREEDY = {"n": 1, "temperature": 0.0, "max_new_tokens": 160}
#: toy-small in its fast-shock regime (LR 3e-3; the shipped demo regime is 3e-4 for 120 steps), shortened to
#: 20 steps: the shock at step 5 is confirmed at step 15 (patience 2), so the whole recipe (SFT, θ_b, score,
#: T3S, report) runs in a sixth of the demo's time
SHORT = ["--trainer.max_steps", "20", "--model.init_args.optimizer.lr", "3e-3"]


def labels(fig) -> list[str]:
    return [text.get_text() for legend in fig.legends for text in legend.get_texts()]


def legend_clear_of_axes(fig) -> bool:
    """No legend box overlaps the plotting area of any axes (so it cannot cover a curve)."""
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    boxes = [legend.get_window_extent(renderer) for legend in fig.legends]
    axes = [ax.get_window_extent(renderer) for ax in fig.axes]
    return bool(boxes) and not any(box.overlaps(area) for box in boxes for area in axes)


# ------------------------------------------------------------------------------------------- figures
def test_in_run_figure_names_theta_b_only_once_known():
    accuracy = {"train": ([0], [0.9])}
    start = curve_figure([], accuracy, title="step 0")
    assert not any("θ_b" in label for label in labels(start))  # θ_0 is no bottleneck

    accuracy = {"train": ([0, 5, 10], [0.9, 0.1, 0.2])}
    running = curve_figure([(0, 3.0), (1, 2.0)], accuracy, lowest=5)
    assert "min so far (step 5)" in labels(running) and not any("θ_b" in label for label in labels(running))

    confirmed = curve_figure([(0, 3.0), (1, 2.0)], accuracy, bottleneck=5, lowest=5)
    assert "θ_b (step 5)" in labels(confirmed) and not any("min so far" in label for label in labels(confirmed))
    assert legend_clear_of_axes(confirmed)


def test_report_figure_marks_theta_b_apart_from_the_runs():
    curves = {"probe": ([0, 5, 10], [0.9, 0.1, 0.8]), "t3s": ([0, 5, 10], [0.9, 0.3, 0.95])}
    fig = comparison_figure(curves, ylabel="accuracy", title="train", bottlenecks={"probe": 5, "t3s": 5},
                            baseline=0.9)
    assert labels(fig) == ["θ_0 (0.90)", "probe", "t3s", "θ_b (step 5)"]
    ax = fig.axes[0]
    run_colors = {line.get_label(): line.get_color() for line in ax.lines if line.get_label() in curves}
    theta_b = next(line for line in ax.lines if line.get_label() == "θ_b (step 5)")
    assert theta_b.get_color() not in run_colors.values()
    markers = [line for line in ax.lines if line.get_marker() == "v"]  # θ_b's point on each curve
    assert sorted(float(m.get_ydata()[0]) for m in markers) == [0.1, 0.3]
    assert legend_clear_of_axes(fig)


def test_in_run_loss_line_is_on_the_steps_of_its_scalar(tmp_path):
    data = make_data(TINY_WORLD, batch=8, micro=8)
    bench = BenchmarkCallback(every_n_steps=2, train_limit=4, sampling=GREEDY, batch_size=8)
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=TensorBoardLogger(tmp_path, name="run"),
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[bench], log_every_n_steps=1)
    trainer.fit(make_student(data), datamodule=data)
    steps, losses = read_scalars(trainer.log_dir, "train/loss")
    assert [s for s, _ in bench.loss_history] == steps == [0, 1, 2, 3]
    assert [v for _, v in bench.loss_history] == pytest.approx(losses)
    assert (Path(trainer.log_dir) / "figures" / "loss_and_accuracy.png").stat().st_size > 10_000


def test_cli_trainers_log_no_hp_metric_placeholder(tmp_path):
    trainer = prepare_trainer(L.Trainer(logger=TensorBoardLogger(tmp_path, name="run"), accelerator="cpu"))
    trainer.logger.log_hyperparams({"lr": 0.1})
    trainer.logger.finalize("success")
    assert "hp_metric" not in scalar_tags(trainer.logger.log_dir)


def test_csv_metrics_are_read_like_tensorboard_scalars(tmp_path):
    logger = CSVLogger(tmp_path, name="run")
    logger.log_metrics({"bench/train/avg@1": 0.5}, step=0)
    logger.log_metrics({"train/loss": 2.0}, step=0)
    logger.log_metrics({"bench/train/avg@1": 0.25, "train/loss": 1.5}, step=5)
    logger.save()
    assert read_scalars(logger.log_dir, "bench/train/avg@*") == ([0, 5], [0.5, 0.25])
    assert read_scalars(logger.log_dir, "train/loss") == ([0, 5], [2.0, 1.5])


# ------------------------------------------------------------------------------------ other loggers
class MediaLogger(Logger):
    """A logger of the W&B kind (``log_image``, ``log_text``, no TensorBoard experiment), kept in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[int | None, dict]] = []
        self.images: list[tuple[str, int | None, list]] = []
        self.texts: list[tuple[str, int | None]] = []

    @property
    def name(self) -> str:
        return "media"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_image(self, key, images, step=None, **kwargs) -> None:
        self.images.append((key, step, list(images)))

    def log_text(self, key, columns=None, data=None, step=None, **kwargs) -> None:
        self.texts.append((key, step))


def test_benchmark_outputs_reach_any_logger_and_the_run_folder(tmp_path):
    data = make_data(TINY_WORLD, batch=8, micro=8)
    media = MediaLogger()
    bench = BenchmarkCallback(every_n_steps=2, train_limit=4, sampling=GREEDY, batch_size=8, figure_every_n_evals=2)
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=[CSVLogger(tmp_path, name="run"), media],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[bench], log_every_n_steps=1)
    trainer.fit(make_student(data), datamodule=data)
    run = Path(trainer.log_dir)
    assert read_scalars(run, "bench/train/avg@1")[0] == [0, 2, 4]  # from metrics.csv
    assert [step for step, m in media.metrics if "bench/train/avg@1" in m] == [0, 2, 4]
    # the figure at every 2nd of the 3 evaluations (step 2) and once at the end with the whole curve (step 4)
    assert [(key, step) for key, step, _ in media.images] == [("curves/loss_and_accuracy", s) for s in (2, 4)]
    assert all(Path(images[0]) == run / "figures" / "loss_and_accuracy.png" for _, _, images in media.images)
    assert ("samples/train", 2) in media.texts


def test_recipe_phases_log_into_their_folder_with_the_configured_file_logger(tmp_path):
    root = tmp_path / "recipe" / "version_0"
    media = MediaLogger()
    loggers = phase_loggers([media, CSVLogger(tmp_path / "elsewhere")], root, "sft")
    assert [type(x) for x in loggers] == [CSVLogger, MediaLogger] and loggers[1] is media
    assert Path(loggers[0].log_dir) == root / "sft"
    (default,) = phase_loggers(None, root, "t3s")
    assert isinstance(default, TensorBoardLogger) and Path(default.log_dir) == root / "t3s"
    assert [type(x) for x in phase_loggers(media, root, "t3s")] == [TensorBoardLogger, MediaLogger]


# --------------------------------------------------------------------------- the recipe, as a user runs it
def run_recipe(root: Path, *extra: str) -> str:
    """``python -m t3s fit --config configs/toy-small.yaml`` (20 steps) into ``root``; its whole console."""
    command = [sys.executable, "-m", "t3s", "fit", "--config", "configs/toy-small.yaml", *SHORT,
               "--trainer.default_root_dir", str(root), *extra, "--trainer.logger.init_args.save_dir", str(root)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def tensorboard_recipe(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("tb")
    console = run_recipe(root)
    return root / "recipe" / "version_0", console


@pytest.mark.slow
def test_recipe_console_is_one_line_per_event(tensorboard_recipe):
    _, console = tensorboard_recipe
    lines = console.splitlines()
    assert sum(line.startswith("[eval] step ") for line in lines) == 10  # 5 evaluations × 2 phases
    for noise in ("generate:", "scoring base", "scoring bottleneck", "batch/s", "💡", "LeafSpec", "v_num",
                  "hp_metric", "Epoch 4/-", "Loading weights", "Writing model"):
        assert noise not in console, noise
    for once in ("Seed set to", "GPU available"):
        assert sum(once in line for line in lines) == 1, once
    assert "training accuracy, θ_b = step 5" in console


@pytest.mark.slow
def test_recipe_scalars_say_what_they_mean(tensorboard_recipe):
    root, _ = tensorboard_recipe
    sft, masked = scalar_tags(root / "sft"), scalar_tags(root / "t3s")
    for tags in (sft, masked):
        assert "bench/train/avg@1" in tags and "hp_metric" not in tags
        assert not [t for t in tags if "/pass@1" in t or "/maj@1" in t]  # n = 1: both would repeat avg@1
    assert "train/logprob_unselected" not in sft and "train/logprob_unselected" in masked  # SFT leaves none out
    steps, step_b = read_scalars(root / "sft", "bench/bottleneck_step")
    assert steps == [15, 20] and step_b == [5.0, 5.0]  # logged once recovery confirmed it, not before
    steps, step_b = read_scalars(root / "t3s", "bench/bottleneck_step")
    assert steps[0] == 0 and set(step_b) == {5.0}  # the θ_b its scores came from, from its first evaluation
    assert json.loads((root / "recipe.json").read_text())["bottleneck_step"] == 5


@pytest.mark.slow
def test_recipe_report_plots_comparable_losses_and_one_anchor_section(tensorboard_recipe):
    root, _ = tensorboard_recipe
    rows = [summarize_run(root / phase) for phase in ("sft", "t3s")]
    assert [row["bottleneck"] for row in rows] == [5, 5]
    figures = report_figures(rows)
    loss_lines = {line.get_label(): list(line.get_ydata()) for line in figures["loss.png"][1].axes[0].lines}
    for phase, label in (("sft", "SFT"), ("t3s", "T3S")):  # the paper's names in the legend
        assert loss_lines[label] == pytest.approx(read_scalars(root / phase, "train/loss_all_tokens")[1])
    # T3S's selected-token loss is not what is drawn
    assert loss_lines["T3S"] != pytest.approx(read_scalars(root / "t3s", "train/loss")[1])
    text = (root / "report" / "report.md").read_text()
    assert text.count("## Anchor tokens") == 1
    assert "θ_b (step 5)" in labels(figures["accuracy_heldout.png"][1])
    for phase in ("sft", "t3s"):
        assert (root / phase / "figures" / "loss_and_accuracy.png").stat().st_size > 10_000


@pytest.mark.slow
def test_recipe_runs_to_its_report_with_a_csv_logger(tmp_path):
    console = run_recipe(tmp_path, "--trainer.logger", "lightning.pytorch.loggers.CSVLogger")
    root = tmp_path / "recipe" / "version_0"
    assert json.loads((root / "recipe.json").read_text())["bottleneck_step"] == 5
    for phase in ("sft", "t3s"):
        assert not list((root / phase).glob("events.out.tfevents.*"))
        assert (root / phase / "metrics.csv").is_file()
        assert (root / phase / "figures" / "loss_and_accuracy.png").stat().st_size > 10_000
        steps, _ = read_scalars(root / phase, "bench/train/avg@1")
        assert steps == [0, 5, 10, 15, 20]
    text = (root / "report" / "report.md").read_text()
    assert "| SFT | train | " in text and "| T3S | train | " in text
    assert "tensorboard" not in console and "metrics.csv" in console
    main(["report", str(root), "--output", str(tmp_path / "again")])
    assert (tmp_path / "again" / "accuracy_train.png").stat().st_size > 10_000
