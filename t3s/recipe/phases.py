"""A recipe phase: one training run (a fresh trainer, student and data module) built from the parsed ``fit``
config with the selection strategy swapped and the logger pointed at ``<root>/<phase name>``; each phase
saves the config it actually ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from t3s.evals.callbacks import BenchmarkCallback
from t3s.loggers import end_phase_runs, for_phase
from t3s.recipe.strategies import strategy_config
from t3s.selection import FullSFT
from t3s.students.checkpoints import AtomicCheckpointIO
from t3s.students.checkpoints import fit as safe_fit


@dataclass
class Phase:
    """One training run of the recipe: a fresh trainer, student and data module."""

    name: str
    trainer: L.Trainer
    student: L.LightningModule
    datamodule: L.LightningDataModule

    fitted: bool = False

    def fit(self, ckpt_path: str | None = None) -> None:
        safe_fit(self.trainer, self.student, self.datamodule, ckpt_path, resume_hint="--ckpt_path last")
        end_phase_runs(self.trainer.loggers)  # the next phase gets a W&B run of its own
        self.fitted = True

    @property
    def run_dir(self) -> Path:
        """``<recipe root>/<phase name>`` (known before ``fit``: a resumed recipe reads finished phases)."""
        return Path(self.trainer.logger.log_dir)

    @property
    def benchmark(self) -> BenchmarkCallback | None:
        return benchmark_of(self.trainer)


def benchmark_of(trainer: L.Trainer) -> BenchmarkCallback | None:
    """The trainer's ``BenchmarkCallback`` (the training-accuracy curve θ_b is read from), if it has one."""
    return next((c for c in trainer.callbacks if isinstance(c, BenchmarkCallback)), None)


class PhaseFactory:
    """Builds recipe phases from the parsed ``fit`` config: the same config each time, with the
    strategy swapped and the logger pointed at ``<root>/<phase name>``.

    Args:
        parser: the ``fit`` parser (``LightningCLI(run=False).parser``).
        config: its parsed config (``LightningCLI(run=False).config``).
        root: the recipe's run directory.
        prepare_trainer: applied to each phase's trainer (default: atomic single-file checkpoints).
    """

    def __init__(self, parser: LightningArgumentParser, config: Namespace, root: str | Path,
                 prepare_trainer: Callable[[L.Trainer], L.Trainer] | None = None):
        self.parser = parser
        self.config = config
        self.root = Path(root)
        self.prepare_trainer = prepare_trainer or with_atomic_checkpoints

    @property
    def is_global_zero(self) -> bool:
        """Rank 0 of this launch (environment-based: phases may not exist yet)."""
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        return getattr(rank_zero_only, "rank", 0) == 0

    @property
    def selection(self) -> Namespace:
        """The strategy the config asks for (FullSFT when unset)."""
        return self.config.model.init_args.get("selection") or strategy_config(FullSFT)

    def build(self, name: str, selection: Namespace) -> Phase:
        """Instantiate a fresh phase training with ``selection``; it saves the config it runs."""
        config = self.config.clone()
        config.model.init_args.selection = selection
        if config.get("seed_everything") is not None:
            L.seed_everything(config.seed_everything, workers=True)  # every phase starts from the same RNG state
        init = self.parser.instantiate_classes(config)
        trainer_args = dict(init.trainer)
        trainer_args["logger"] = phase_loggers(trainer_args.get("logger"), self.root, name)
        trainer_args["callbacks"] = [*(trainer_args.get("callbacks") or []),
                                     SaveConfig(self.parser, config, overwrite=True)]
        trainer = self.prepare_trainer(L.Trainer(**trainer_args))
        return Phase(name, trainer, init.model, init.data)


class SaveConfig(SaveConfigCallback):
    """Lightning's ``config.yaml`` beside the run, with ``${oc.env:VAR}`` values written as the reference, not
    the value (a token in the environment stays out of the run folder; :mod:`t3s.runtime.env_refs`). The same goes
    for the hyper-parameters the loggers write (``hparams.yaml``) and those stored in checkpoints."""

    references: dict[str, str] = {}
    _config_path: Path = Path()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import sys

        from t3s.runtime.env_refs import env_references

        self._config_path = Path(trainer.log_dir or "") / self.config_filename  # a broadcast: on every rank
        files = [Path(str(getattr(p, "absolute", p))) for p in (self.config.get("config") or [])]
        self.references = env_references([*(f.read_text(encoding="utf-8") for f in files if f.is_file()), *sys.argv])
        if self.references and not self.already_saved:
            for logger in trainer.loggers:  # hparams.yaml and the like
                logger.log_hyperparams = self._restoring(logger.log_hyperparams)  # type: ignore[method-assign]
        super().setup(trainer, pl_module, stage)

    def _restoring(self, log_hyperparams: Callable[..., Any]) -> Callable[..., Any]:
        from t3s.runtime.env_refs import restore_env_references

        def log(params: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(params, dict):
                params = restore_env_references(dict(params), self.references)
            return log_hyperparams(params, *args, **kwargs)

        return log

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        import yaml

        from t3s.runtime.env_refs import restore_env_references

        path = self._config_path  # rank 0 only runs this: trainer.log_dir here would wait for the others forever
        if not self.references or not path.is_file():
            return
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
        restored = restore_env_references(saved, self.references)
        if restored != saved:
            path.write_text(yaml.safe_dump(restored, sort_keys=False, allow_unicode=True), encoding="utf-8")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        from t3s.runtime.env_refs import restore_env_references

        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if self.references and isinstance(checkpoint.get(key), dict):
                checkpoint[key] = restore_env_references(dict(checkpoint[key]), self.references)


def phase_loggers(configured: Any, root: Path, phase: str) -> list[Logger]:
    """The loggers of one phase: a file logger writing into ``<root>/<phase>`` (the configured
    ``TensorBoardLogger`` or ``CSVLogger`` class; a ``TensorBoardLogger`` when none is configured), first, so
    that it is the run directory; any other configured logger (W&B, MLflow, …) after it, made a run of its own
    for the phase (:func:`t3s.loggers.for_phase`).

    θ_b, the recipe's table and the report read the file logger's scalars (:mod:`t3s.evals.scalars`).
    """
    given = [] if configured in (None, True, False) else list(configured) if isinstance(configured, list) \
        else [configured]
    file_class = next((type(x) for x in given if isinstance(x, (TensorBoardLogger, CSVLogger))), TensorBoardLogger)
    extra: dict[str, Any] = {"default_hp_metric": False} if issubclass(file_class, TensorBoardLogger) else {}
    run_logger = file_class(save_dir=str(root.parent), name=root.name, version=phase, **extra)
    return [run_logger,
            *(for_phase(x, root, phase) for x in given if not isinstance(x, (TensorBoardLogger, CSVLogger)))]


def curves_hint(trainer: L.Trainer, root: Path) -> str:
    """Where to watch a recipe's curves: TensorBoard on its folder, else the phases' metrics and figures."""
    if isinstance(trainer.logger, TensorBoardLogger):
        return f"tensorboard --logdir {root}"
    return f"{root}/<phase>/metrics.csv and {root}/<phase>/figures/"


def with_atomic_checkpoints(trainer: L.Trainer) -> L.Trainer:
    """Single-file checkpoints are written to a temporary file and renamed into place."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    return trainer
