"""Any Lightning logger in a t3s run.

* **A run folder of its own.** A run's artefacts (``hf/``, ``generations/``, ``figures/``, ``config.yaml``,
  the recipe's ``recipe.json``) live in the first logger's ``log_dir``. A trainer whose first logger is not a
  file logger (``TensorBoardLogger`` / ``CSVLogger``) gets a ``CSVLogger`` first (``<default_root_dir>/
  lightning_logs/version_<k>``): W&B's or MLflow's ``save_dir`` is shared by every run, so artefacts written
  there would be overwritten by the next run.
* **One logger run per recipe phase.** :func:`for_phase` makes each phase's W&B / MLflow logger a run of its
  own: name ``<label>/<phase>``, W&B ``group`` ``<label>`` and ``job_type`` ``<phase>`` (files under the
  phase's folder), MLflow tags ``t3s.recipe`` / ``t3s.phase`` / ``t3s.run_dir``; ``<label>`` is the configured
  run name, else the recipe folder's ``<name>/version_<k>``. :func:`end_phase_runs` closes a phase's W&B run
  (Lightning would otherwise reuse the live run for the next phase).
* **Metric names that survive restricted loggers.** MLflow accepts only ``[A-Za-z0-9_/. -]`` in metric
  names, so for an ``MLFlowLogger`` every ``@`` becomes ``_at_`` (:data:`METRIC_RENAMES`):
  ``bench/train/avg@1`` → ``bench/train/avg_at_1``, ``pass@4`` → ``pass_at_4``, ``maj@4`` → ``maj_at_4``.
  An ``MLFlowLogger`` also gets ``log_image`` / ``log_text`` (figures and sample generations as run artefacts
  under ``figures/`` and ``text/``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["METRIC_RENAMES", "adapt_logger", "end_phase_runs", "for_phase", "metric_name", "with_run_folder"]

#: Characters of t3s metric names replaced for loggers that refuse them (MLflow).
METRIC_RENAMES: tuple[tuple[str, str], ...] = (("@", "_at_"),)


def _is(logger: Any, class_name: str) -> bool:
    return any(cls.__name__ == class_name for cls in type(logger).__mro__)


def _is_file_logger(logger: Any) -> bool:
    return _is(logger, "TensorBoardLogger") or _is(logger, "CSVLogger")


def metric_name(name: str) -> str:
    """``name`` as an MLflow metric name (:data:`METRIC_RENAMES`)."""
    for old, new in METRIC_RENAMES:
        name = name.replace(old, new)
    return name


def _mlflow_log_image(logger: Any, key: str, images: list[Any], step: int | None = None, **_: Any) -> None:
    """Figures as run artefacts: ``figures/<key>/step_<N>.png`` (images given as PNG paths)."""
    for n, image in enumerate(images):
        if isinstance(image, (str, Path)) and Path(image).is_file():
            suffix = f"_{n}" if len(images) > 1 else ""
            logger.experiment.log_artifact(logger.run_id, str(image),
                                           artifact_path=f"figures/{key}/step_{step}{suffix}")


def _mlflow_log_text(logger: Any, key: str, columns: list[str] | None = None, data: list[list[Any]] | None = None,
                     step: int | None = None, **_: Any) -> None:
    """Text (sample generations, the anchor-token summary) as ``text/<key>/step_<N>.md`` artefacts."""
    text = "\n\n".join(str(cell) for row in data or [] for cell in row)
    logger.experiment.log_text(logger.run_id, text, f"text/{key}/step_{step}.md")


def adapt_logger(logger: Any) -> Any:
    """An ``MLFlowLogger`` gets renamed metric names and ``log_image`` / ``log_text``; others are unchanged.
    Idempotent; returns ``logger``."""
    if not _is(logger, "MLFlowLogger") or getattr(logger, "_t3s_adapted", False):
        return logger
    log_metrics = logger.log_metrics

    def renamed(metrics: dict[str, Any], step: int | None = None) -> None:
        log_metrics({metric_name(k): v for k, v in metrics.items()}, step)

    logger.log_metrics = renamed
    logger.log_image = lambda *args, **kwargs: _mlflow_log_image(logger, *args, **kwargs)
    logger.log_text = lambda *args, **kwargs: _mlflow_log_text(logger, *args, **kwargs)
    logger._t3s_adapted = True
    return logger


def with_run_folder(trainer: Any) -> Any:
    """A trainer with a file logger first (a ``CSVLogger`` in ``<default_root_dir>/lightning_logs`` when the
    first configured logger is not one), so its run folder is versioned; MLflow loggers adapted."""
    loggers = list(trainer.loggers)
    if loggers and not _is_file_logger(loggers[0]):
        from lightning.pytorch.loggers import CSVLogger

        trainer.loggers = [CSVLogger(save_dir=trainer.default_root_dir), *loggers]
    for logger in trainer.loggers:
        adapt_logger(logger)
    return trainer


def for_phase(logger: Any, root: Path, phase: str) -> Any:
    """A configured W&B or MLflow logger made the run of one recipe phase (before it starts logging)."""
    run_dir = Path(root) / phase
    if _is(logger, "WandbLogger") and getattr(logger, "_experiment", None) is None:
        init = logger._wandb_init
        label = f"{init.get('name') or Path(root).parent.name}/{Path(root).name}"
        init["name"] = f"{label}/{phase}"
        init["group"] = init.get("group") or label
        init["job_type"] = init.get("job_type") or phase
        if init.get("id"):
            init["id"] = logger._id = f"{init['id']}-{phase}"
        run_dir.mkdir(parents=True, exist_ok=True)
        init["dir"] = logger._save_dir = str(run_dir)
    elif _is(logger, "MLFlowLogger") and getattr(logger, "_run_id", None) is None:
        label = f"{logger._run_name or Path(root).parent.name}/{Path(root).name}"
        logger._run_name = f"{label}/{phase}"
        logger.tags = {**(logger.tags or {}), "t3s.recipe": label, "t3s.phase": phase, "t3s.run_dir": str(run_dir)}
    return adapt_logger(logger)


def end_phase_runs(loggers: Iterable[Any]) -> None:
    """Finish each W&B run a phase started, so the next phase's logger starts a run of its own."""
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None) if _is(logger, "WandbLogger") else None
        if experiment is not None and callable(getattr(experiment, "finish", None)):
            experiment.finish()
