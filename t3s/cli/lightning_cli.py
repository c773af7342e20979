"""LightningCLI for the training commands (``fit``, ``validate``, ``test``, ``predict``).

:mod:`t3s.cli.main` imports it only for those commands, so the analysis commands and ``t3s --help`` do
not pay for importing torch and Lightning. ``fit`` parses here without building anything
(``train_cli(args, run=False, build=False)``) and :mod:`t3s.cli.fit` chooses what to build.
"""

from __future__ import annotations

import os
import sys
import zipfile
from argparse import ArgumentError
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from t3s.cli.configs import default_config_for
from t3s.cli.eval_options import (
    apply_eval_options,
    check_accumulation,
    set_callback_option,
    split_eval_options,
)
from t3s.cli.flat_keys import FlatKeyParser, nest_argv
from t3s.cli.messages import usage_error_line, user_errors
from t3s.data import TeacherTraceDataModule
from t3s.data.from_config import anchor_data_paths
from t3s.errors import DEBUG_ENV, ConfigError, UsageError
from t3s.loggers import with_run_folder
from t3s.progress import PlainProgressBar, is_terminal
from t3s.recipe.phases import SaveConfig, with_atomic_checkpoints
from t3s.students.checkpoints import SaveOnSigterm


class T3SCLI(LightningCLI):
    """LightningCLI with the data module's tokenizer handed to the student.

    With ``run=False`` it parses the ``fit`` options alone (plus ``--ckpt_path`` and ``--eval_mode``); with
    ``build=False`` as well it builds nothing (:meth:`build` does, later): :func:`t3s.cli.fit.fit_command`
    chooses between a plain ``Trainer.fit``, the online variant and the multi-phase recipe from the parsed
    config, and only the chosen path builds a student, a data module and a trainer.
    """

    def __init__(self, *args: Any, run: bool = True, build: bool = True, eval_options: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("parser_class", FlatKeyParser)  # the flat keys of one release ago (t3s.cli.flat_keys)
        self.fit_only = not run
        self.eval_options = eval_options or {}
        self._deferred = not build
        super().__init__(*args, run=run, **kwargs)

    def build(self) -> None:
        """Instantiate the student, data module and trainer of a CLI made with ``build=False``."""
        self._deferred = False
        self.instantiate_classes()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.tokenizer", "model.init_args.tokenizer")
        if self.fit_only:
            parser.add_argument("--ckpt_path", type=str | None, default=None,
                                help="checkpoint to resume from (a path, or 'last'; the recipe resumes with 'last')")
            parser.add_argument("--eval_mode", type=Literal["inline", "subprocess", "defer"] | None, default=None,
                                help="set the mode of every BenchmarkCallback: inline, subprocess or defer "
                                     "(then run `t3s evaluate RUN_DIR`)")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """jsonargparse's parse, with a mistake reported as one line (and a "did you mean") instead of a usage dump."""
        if isinstance(args, list):
            args = nest_argv(args)
        self._check_option_names(args)
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            message = str(err)
            configs = [a.split("=", 1)[-1] if "=" in a else b for a, b in zip(args, [*args[1:], ""])
                       if a in ("-c", "--config") or a.startswith("--config=")] if isinstance(args, list) else []
            if configs:  # a YAML syntax error names "<unicode string>": name the file instead
                message = message.replace('"<unicode string>"', configs[-1])
            raise UsageError(usage_error_line(message, self._known_options())) from None

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
        if self._deferred:  # ``build=False``: :meth:`build` instantiates when the caller has chosen what to run
            return
        with one_line_build_errors():
            super().instantiate_classes()

    def before_instantiate_classes(self) -> None:
        """Relative data paths written in a config file mean that file's folder (when the file is there)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        anchor_data_paths(config, [Path(str(p.absolute)) for p in config.get("config") or []])
        if config.get("eval_mode"):
            set_benchmark_mode(config, config.eval_mode)
        apply_eval_options(config, self.eval_options)
        check_accumulation(config)
        if self.fit_only and config.get("ckpt_path") not in (None, "last", "best", "hpc", "registry"):
            resume_in_place(config, check_checkpoint_file(config.ckpt_path))

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        return prepare_trainer(super().instantiate_trainer(**kwargs))


@contextmanager
def one_line_build_errors() -> Iterator[None]:
    """Building a config's student, data module or trainer: what they reject (a GPU option on a CPU machine,
    an unknown strategy or attention kernel, a model that is neither a folder nor a hub id) becomes one
    :class:`~t3s.errors.ConfigError` line (``T3S_DEBUG=1``: the original error)."""
    try:
        yield
    except Exception as err:
        if os.environ.get(DEBUG_ENV):
            raise
        if no_gpu_here(err):
            raise ConfigError(NO_GPU_LINE) from None
        if isinstance(err, user_errors()) or not isinstance(err, (ValueError, OSError, ImportError, RuntimeError)):
            raise
        raise ConfigError(f"the config does not build: {build_error_line(err)}") from err


def prepare_trainer(trainer: L.Trainer) -> L.Trainer:
    """Every CLI trainer: a file logger first (a versioned run folder whatever the logger,
    :func:`t3s.loggers.with_run_folder`), atomic single-file checkpoints, a step-based progress bar, a checkpoint
    on SIGTERM (:class:`~t3s.students.checkpoints.SaveOnSigterm`), and no ``hp_metric`` placeholder (a
    TensorBoardLogger logs ``hp_metric = -1`` unless told not to; the recipe's phases are)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger._default_hp_metric = False  # what TensorBoardLogger(default_hp_metric=False) sets
    if not any(isinstance(c, SaveOnSigterm) for c in trainer.callbacks):
        trainer.callbacks.append(SaveOnSigterm())
    return _with_step_progress_bar(with_atomic_checkpoints(with_run_folder(trainer)))


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
    """Swap Lightning's default bar (not one the config chose) for :class:`StepProgressBar` in a terminal, for
    a plain line every 10 % of the steps when the output is a file (:class:`t3s.progress.PlainProgressBar`)."""
    for i, callback in enumerate(trainer.callbacks):
        if type(callback) in (RichProgressBar, TQDMProgressBar):
            trainer.callbacks[i] = StepProgressBar() if is_terminal() else PlainProgressBar()
    return trainer


#: What a GPU config on a machine without a GPU is told (Lightning says "No supported gpu backend found!").
NO_GPU_LINE = ("this config trains on GPUs (trainer.accelerator) and this machine has none: try the recipe on the CPU "
               "with a toy config (t3s fit --config toy-small), or override --trainer.accelerator cpu "
               "--trainer.devices 1 --trainer.strategy auto (small models only)")


def no_gpu_here(err: BaseException) -> bool:
    """Lightning refused a GPU accelerator because this machine has no GPU."""
    import torch

    message = str(err)
    gpu_words = ("No supported gpu backend found", "accelerator is not available")
    return any(w in message for w in gpu_words) and not torch.cuda.is_available()


def build_error_line(err: BaseException) -> str:
    """The informative line of an instantiation error: jsonargparse wraps a class's own ``ValueError`` in a
    "Does not validate against any of the Union subtypes" report whose ``Errors:`` list holds it."""
    lines = [line.strip() for line in str(err).strip().splitlines()]
    if "Errors:" in lines:
        reasons = [line.lstrip("- ").strip() for line in lines[lines.index("Errors:") + 1:] if line.startswith("- ")]
        reasons = [r for r in reasons if not r.startswith("Expected a <class 'NoneType'>")]
        if reasons:
            return reasons[0]
    return f"({type(err).__name__}) {lines[0]}" if lines else type(err).__name__


def check_checkpoint_file(ckpt_path: str) -> Path:
    """``--ckpt_path``: a checkpoint that exists and is whole (a Lightning file is a zip archive whose
    directory sits at its end, so a truncated or foreign file is refused before any model is built)."""
    path = Path(ckpt_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such checkpoint")
    if path.is_file():
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise ConfigError(f"--ckpt_path {ckpt_path}: not a readable Lightning checkpoint ({err}); "
                              "truncated or not a checkpoint") from None
    return path


def resume_in_place(config: Any, checkpoint: Path) -> None:
    """A run resumed from ``…/version_<k>/checkpoints/…`` logs into ``version_<k>`` again (one curve, one
    ``hf/``), unless the config names a logger version itself."""
    logger_args = getattr(config.get("trainer.logger"), "init_args", None)
    if logger_args is None or getattr(logger_args, "version", None) is not None:
        return
    for parent in checkpoint.resolve().parents:
        if parent.name.startswith("version_") and parent.name[8:].isdigit():
            logger_args.version = int(parent.name[8:])
            return


def set_benchmark_mode(config: Any, mode: str) -> None:
    """``--eval_mode``: the ``mode`` of every ``BenchmarkCallback`` in ``trainer.callbacks``."""
    for callback in config.get("trainer.callbacks") or []:
        if str(getattr(callback, "class_path", "")).endswith("BenchmarkCallback"):
            set_callback_option(callback.init_args, "mode", mode)


def train_cli(args: Sequence[str] | None = None, run: bool = True, build: bool = True) -> T3SCLI:
    """The LightningCLI entry point: ``validate`` / ``test`` / ``predict`` subcommands, or, with ``run=False``,
    the ``fit`` options alone (``args`` without the subcommand; see :func:`t3s.cli.fit.fit_command`), parsed
    and, with ``build=False``, not yet instantiated (:meth:`T3SCLI.build`).

    Process-wide settings (warning filters, the toy resolvers) are made by
    :func:`t3s.cli.process.configure_process`.
    """
    given, eval_options = split_eval_options(sys.argv[1:] if args is None else args)
    parser_kwargs: dict[str, Any] = {"prog": "t3s" if run else "t3s fit", "parser_mode": "omegaconf",
                                     "allow_abbrev": False, "exit_on_error": False}
    default = default_config_for(given if run else ["fit", *given])
    if default is not None and run:
        parser_kwargs[given[0]] = {"default_config_files": [str(default)]}
    elif default is not None:
        parser_kwargs["default_config_files"] = [str(default)]
    return T3SCLI(
        model_class=L.LightningModule,
        datamodule_class=TeacherTraceDataModule,
        subclass_mode_model=True,
        save_config_callback=SaveConfig,
        save_config_kwargs={"overwrite": True},
        # the students build their optimizer from their own arguments (lr, betas, schedule, …);
        # LightningCLI's --optimizer / --lr_scheduler would be offered and then fail
        auto_configure_optimizers=False,
        parser_kwargs=parser_kwargs,
        args=given,
        run=run,
        build=build,
        eval_options=eval_options,
    )
