"""LightningCLI for the training commands (``fit``, ``validate``, ``test``, ``predict``).

:mod:`t3s.cli` dispatches here only for those commands, so the analysis commands and ``t3s --help`` do
not pay for importing torch and Lightning.
"""

from __future__ import annotations

import os
import sys
from argparse import ArgumentError
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from t3s.cli import DEBUG_ENV, ConfigError, UsageError, default_config_for, usage_error_line, user_errors
from t3s.data import TeacherTraceDataModule
from t3s.recipe import OnlineT3SSwitch, Phase, RecipeError, benchmark_callback, missing_scores, run_recipe
from t3s.selection import FullSFT, TokenSelectionStrategy
from t3s.students import ARStudent
from t3s.students.checkpoints import AtomicCheckpointIO

#: ``data`` options that name files; relative values are anchored at the config file's folder.
DATA_PATH_KEYS = ("path", "tokenizer", "val_path")


class T3SCLI(LightningCLI):
    """LightningCLI with the data module's tokenizer handed to the student."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.tokenizer", "model.init_args.tokenizer")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """jsonargparse's parse, with a mistake reported as one line (and a "did you mean") instead of a usage dump."""
        self._check_option_names(args)
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise UsageError(usage_error_line(str(err), self._known_options())) from None

    def _known_options(self) -> list[str]:
        parsers = [self.parser, *getattr(self, "_subcommand_parsers", {}).values()]
        return sorted({o for p in parsers for o in p._option_string_actions if o.startswith("--")})

    def _check_option_names(self, args: Any) -> None:
        """Reject an unknown ``--trainer.*`` / ``--data.*`` option before the config is loaded: loading resolves
        its interpolations, which can build a toy θ_0 (minutes) before jsonargparse reaches the typo."""
        if not isinstance(args, list):
            return
        known = set(self._known_options())
        # options under these accept any sub-key (a class picked by class_path decides); the groups with a
        # fixed signature (--trainer, --data) do not
        open_prefixes = [o for o in known if o not in ("--trainer", "--data")]
        for arg in args:
            if not arg.startswith("--") or arg == "--":
                continue
            option = arg.split("=", 1)[0]
            if option in known or any(option.startswith(p + ".") for p in open_prefixes):
                continue
            if option.startswith(("--trainer.", "--data.")):
                raise UsageError(usage_error_line(f"unrecognized arguments: {option}", sorted(known)))

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a config they reject (a GPU option on a CPU machine, an unknown
        strategy or attention kernel, a model that is neither a folder nor a hub id) is one line."""
        try:
            super().instantiate_classes()
        except (ValueError, OSError, ImportError, RuntimeError) as err:
            if os.environ.get(DEBUG_ENV) or isinstance(err, user_errors()):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ConfigError(f"the config does not build ({type(err).__name__}): {first}") from err

    def before_instantiate_classes(self) -> None:
        """Relative data paths written in a config file mean that file's folder (when the file is there)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        anchor_data_paths(config, [Path(str(p.absolute)) for p in config.get("config") or []])

    def fit(self, model: L.LightningModule, datamodule: Any = None, ckpt_path: str | None = None, **kwargs: Any) -> None:
        """Plain ``Trainer.fit``, unless the selection needs Δc that nobody computed yet: then the T3S recipe."""
        strategy = getattr(model, "selection", None)
        if strategy is None or not missing_scores(strategy):
            self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **kwargs)
        elif not isinstance(model, ARStudent):
            raise RecipeError(
                f"{type(model).__name__} gets Δc from an AR selector that shares its tokenizer: fit the selector "
                "with FullSFT, pick θ_b, run `t3s score` with this config's data section, then set "
                "model.init_args.selection.init_args.scores"
            )
        elif getattr(strategy, "online_switch", False):
            bench = benchmark_callback(self.trainer)
            self.trainer.callbacks.append(OnlineT3SSwitch(strategy, bench))
            model.selection = FullSFT()
            self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **kwargs)
        else:
            if ckpt_path is not None:
                raise RecipeError("resuming the multi-phase recipe is not supported; resume a phase run instead")
            run_recipe(self._build_phase, strategy, self._recipe_root())

    def _recipe_root(self) -> Path:
        """``<save_dir>/<name>/version_<k>``: the phases log into sub-directories of it."""
        logger = self.trainer.logger
        if isinstance(logger, TensorBoardLogger):
            return Path(logger.log_dir)
        return Path(self.trainer.default_root_dir) / "t3s_recipe"

    def _build_phase(self, name: str, strategy: TokenSelectionStrategy, root: Path | None = None) -> Phase:
        """A fresh student, data module and trainer from the same config, logging to ``<root>/<name>``."""
        if root is not None:
            self._root = root
        elif not hasattr(self, "_root"):
            self._root = self._recipe_root()
        init = self.parser.instantiate_classes(self.config)
        student, data = self._get(init, "model"), self._get(init, "data")
        student.selection = strategy
        trainer_config = dict(self._get(init, "trainer", default={}))
        trainer_config["logger"] = TensorBoardLogger(save_dir=str(self._root.parent), name=self._root.name,
                                                     version=name)
        extra = [self._get(init, c) for c in self._parser(self.subcommand).callback_keys]
        trainer = _with_atomic_checkpoints(self._instantiate_trainer(trainer_config, extra))
        return Phase(trainer, student, data)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        return _with_atomic_checkpoints(super().instantiate_trainer(**kwargs))


def _with_atomic_checkpoints(trainer: L.Trainer) -> L.Trainer:
    """Single-file checkpoints are written to a temporary file and renamed into place."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    return _with_step_progress_bar(trainer)


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar for step-based runs: ``Epoch 9`` rather than ``Epoch 9/-2`` when
    ``max_epochs`` is unbounded, and no ``v_num`` (a recipe phase's version is a name: ``v_num: robe``)."""

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is None or self.trainer.max_epochs < 0:
            return f"Epoch {current_epoch}"
        return super()._get_train_description(current_epoch)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


def _with_step_progress_bar(trainer: L.Trainer) -> L.Trainer:
    """Swap Lightning's default rich bar (not one the config chose) for :class:`StepProgressBar`."""
    for i, callback in enumerate(trainer.callbacks):
        if type(callback) is RichProgressBar:
            trainer.callbacks[i] = StepProgressBar()
    return trainer



def anchor_data_paths(config: Any, config_files: Sequence[Path]) -> None:
    """Rewrite ``data.path`` / ``data.tokenizer`` / ``data.val_path`` that exist relative to a config file's
    folder (the last file first) as absolute paths; anything else (hub ids, cwd-relative paths) is kept."""
    for key in DATA_PATH_KEYS:
        value = config.get(f"data.{key}")
        if not isinstance(value, str) or not value or Path(value).is_absolute():
            continue
        for file in reversed(config_files):
            candidate = file.parent / value
            if candidate.exists():
                config[f"data.{key}"] = str(candidate.resolve())
                if key == "tokenizer" and config.get("model.init_args.tokenizer") == value:  # the linked copy
                    config["model.init_args.tokenizer"] = str(candidate.resolve())
                break


def train_cli(args: Sequence[str] | None = None, run: bool = True) -> T3SCLI:
    """The LightningCLI entry point (``fit``, ``validate``, ``test``, ``predict``); ``args`` default to ``sys.argv``.

    Process-wide settings (warning filters, the toy resolvers) are made by :func:`t3s.cli.configure_process`.
    """
    given = list(sys.argv[1:] if args is None else args)
    parser_kwargs: dict[str, Any] = {"prog": "t3s", "parser_mode": "omegaconf", "allow_abbrev": False,
                                     "exit_on_error": False}
    default = default_config_for(given)
    if default is not None:
        parser_kwargs[given[0]] = {"default_config_files": [str(default)]}
    return T3SCLI(
        model_class=L.LightningModule,
        datamodule_class=TeacherTraceDataModule,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        # the students build their optimizer from their own arguments (lr, betas, schedule, …);
        # LightningCLI's --optimizer / --lr_scheduler would be offered and then fail
        auto_configure_optimizers=False,
        parser_kwargs=parser_kwargs,
        args=given,
        run=run,
    )
