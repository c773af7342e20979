"""Third-party loggers: one W&B / MLflow run per recipe phase, grouped; versioned run folders whatever the
logger; MLflow-safe metric names, figures and samples. Uses wandb (offline) and MLflow's file store; each test
skips when its library is absent (``pip install -e .[loggers]``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from jsonargparse import Namespace
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from t3s.cli.fit import recipe_root
from t3s.cli.lightning_cli import prepare_trainer
from t3s.loggers import end_phase_runs, metric_name
from t3s.recipe.phases import phase_loggers


def wandb_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> object:
    wandb = pytest.importorskip("wandb", reason="wandb is not installed (the `loggers` extra)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-default"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    return wandb


def mlflow_file_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    pytest.importorskip("mlflow", reason="mlflow is not installed (the `loggers` extra)")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    return f"file:{tmp_path / 'mlruns'}"


def test_metric_names_for_mlflow() -> None:
    assert metric_name("bench/train/avg@1") == "bench/train/avg_at_1"
    assert metric_name("bench/aime24/pass@4") == "bench/aime24/pass_at_4"
    assert metric_name("train/loss") == "train/loss"


def test_each_phase_is_its_own_wandb_run_in_one_group(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wandb_offline(monkeypatch, tmp_path)
    from lightning.pytorch.loggers import WandbLogger

    root = tmp_path / "recipe" / "version_3"
    seen = []
    for phase in ("probe", "t3s"):
        loggers = phase_loggers([TensorBoardLogger(tmp_path), WandbLogger(project="t3s-test")], root, phase)
        assert [type(x) for x in loggers] == [TensorBoardLogger, WandbLogger]
        run = loggers[1].experiment
        loggers[1].log_metrics({"bench/train/avg@1": 0.5}, step=0)
        seen.append((run.id, run.name, run.group, run.job_type))
        end_phase_runs(loggers)
        assert list((root / phase / "wandb").glob("offline-run-*"))  # the run's files in the phase's folder
    (probe_id, *probe), (t3s_id, *t3s) = seen
    assert probe_id != t3s_id
    assert probe == ["recipe/version_3/probe", "recipe/version_3", "probe"]
    assert t3s == ["recipe/version_3/t3s", "recipe/version_3", "t3s"]


def test_each_phase_is_its_own_mlflow_run_with_safe_names_figures_and_text(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    uri = mlflow_file_store(monkeypatch, tmp_path)
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    root = tmp_path / "runs" / "version_0"
    png = tmp_path / "figure.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    for phase, accuracy in (("probe", 0.25), ("t3s", 0.75)):
        _, logger = phase_loggers([MLFlowLogger(experiment_name="t3s", tracking_uri=uri)], root, phase)
        logger.log_metrics({"bench/train/avg@1": accuracy, "train/loss": 1.0}, step=5)
        logger.log_image(key="curves/loss_and_accuracy", images=[str(png)], step=5)
        logger.log_text(key="samples/train", columns=["text"], data=[["**step 5** a sample"]], step=5)
        logger.finalize("success")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("t3s")
    runs = {r.data.tags["t3s.phase"]: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["probe", "t3s"]
    for phase, accuracy in (("probe", 0.25), ("t3s", 0.75)):
        run = runs[phase]
        assert run.info.run_name == f"runs/version_0/{phase}"
        assert run.data.tags["t3s.recipe"] == "runs/version_0"
        assert run.data.tags["t3s.run_dir"] == str(root / phase)
        assert run.data.metrics == {"bench/train/avg_at_1": accuracy, "train/loss": 1.0}
        figures = client.list_artifacts(run.info.run_id, "figures/curves/loss_and_accuracy/step_5")
        assert [Path(f.path).name for f in figures] == ["figure.png"]
        (text,) = client.list_artifacts(run.info.run_id, "text/samples/train")
        assert Path(client.download_artifacts(run.info.run_id, text.path, str(tmp_path))).read_text() == (
            "**step 5** a sample")


def test_a_run_without_a_file_logger_gets_a_versioned_folder(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    uri = mlflow_file_store(monkeypatch, tmp_path)
    from lightning.pytorch.loggers import MLFlowLogger

    folders = []
    for _ in range(2):
        trainer = prepare_trainer(L.Trainer(logger=MLFlowLogger(tracking_uri=uri), default_root_dir=str(tmp_path),
                                            accelerator="cpu", enable_progress_bar=False))
        assert isinstance(trainer.loggers[0], CSVLogger) and isinstance(trainer.loggers[1], MLFlowLogger)
        folders.append(Path(trainer.log_dir))
        Path(trainer.log_dir).mkdir(parents=True)  # what the run's first artefact does
    assert folders == [tmp_path / "lightning_logs" / "version_0", tmp_path / "lightning_logs" / "version_1"]
    # no logger at all: the recipe root is versioned too
    bare = Namespace(trainer=Namespace(logger=False, default_root_dir=str(tmp_path / "bare")))  # a parsed fit config
    first = recipe_root(bare)
    first.mkdir(parents=True)
    (first / "recipe.json").write_text(json.dumps({}))
    assert first == tmp_path / "bare" / "t3s_recipe" / "version_0"
    assert recipe_root(bare) == tmp_path / "bare" / "t3s_recipe" / "version_1"
    assert recipe_root(bare, resume=True) == first


@pytest.mark.slow
def test_recipe_twice_with_wandb_gives_two_versioned_recipes_of_two_runs_each(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The issue's contract: ``t3s fit --config toy-small --trainer.logger+=…WandbLogger`` with
    ``WANDB_MODE=offline``, run twice."""
    wandb_offline(monkeypatch, tmp_path)
    from test_run_outputs import REPO, SHORT

    command = [sys.executable, "-m", "t3s", "fit", "--config", "configs/toy-small.yaml", *SHORT,
               "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
               "--trainer.logger+=lightning.pytorch.loggers.WandbLogger", "--trainer.logger.init_args.project=t3s"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    consoles = []
    for _ in range(2):
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        consoles.append(done.stdout + done.stderr)
    recipes = sorted((tmp_path / "recipe").glob("version_*"))
    assert [p.name for p in recipes] == ["version_0", "version_1"]
    for root, console in zip(recipes, consoles, strict=True):
        assert json.loads((root / "recipe.json").read_text())["bottleneck_step"] == 5
        runs = {phase: list((root / phase / "wandb").glob("offline-run-*")) for phase in ("probe", "t3s")}
        assert {phase: len(found) for phase, found in runs.items()} == {"probe": 1, "t3s": 1}
        report = (root / "report" / "report.md").read_text()
        other = recipes[1 - recipes.index(root)]
        assert str(root / "probe") in report and str(other) not in report
        console = console.replace("\n", "")  # rich wraps long paths
        assert f"report: {root / 'report' / 'report.md'}" in console and str(other) not in console
