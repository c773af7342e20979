"""``t3s fit``: one road — parse, choose the path, hand over once::

    parse (LightningCLI, nothing built) ─► choose: plain fit │ online │ recipe ─► hand over
                                           (one console line)

- **plain fit**: the strategy needs no Δc (or has its score cache): the student, data module and trainer of
  the config, ``Trainer.fit``;
- **online**: ``T3S(online=true)`` with no cache: the same, with the online switch (:mod:`t3s.recipe.online`);
- **recipe**: a Δc-based strategy with no cache: :class:`t3s.recipe.offline.Recipe` builds each phase from the
  parsed config (nothing was built before it), resumable with ``--ckpt_path last``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from t3s.cli.lightning_cli import T3SCLI, one_line_build_errors, prepare_trainer, train_cli
from t3s.cli.process import process_rank
from t3s.recipe.detect import RecipeError, RecipePaused
from t3s.recipe.offline import Recipe, find_recipe_root
from t3s.recipe.online import run_online
from t3s.recipe.phases import Phase, PhaseFactory
from t3s.recipe.strategies import fit_path, selection_of
from t3s.students.checkpoints import fit as safe_fit


def fit_command(args: Sequence[str]) -> None:
    """Parse the ``fit`` command line, say which path it takes in one line, and hand over to that path."""
    cli = train_cli(args, run=False, build=False)
    with one_line_build_errors():  # a strategy's own check of its arguments
        path, why = fit_path(selection_of(cli.config))
    if process_rank() == 0:
        print(f"t3s fit: {path} — {why}", flush=True)
    FIT_PATHS[path](cli)


def plain_fit(cli: T3SCLI) -> None:
    """``Trainer.fit`` on the config's student and data (resumed from ``--ckpt_path``)."""
    cli.build()
    safe_fit(cli.trainer, cli.model, cli.datamodule, cli.config.get("ckpt_path"))


def online_fit(cli: T3SCLI) -> None:
    """One ``fit``: FullSFT until the bottleneck detector fires, then the configured T3S (:mod:`t3s.recipe.online`)."""
    cli.build()
    run_online(cli.trainer, cli.model, cli.datamodule, cli.config.get("ckpt_path"))


def recipe_fit(cli: T3SCLI) -> None:
    """The offline recipe in ``<logger folder>/version_<k>``; ``--ckpt_path last`` resumes the newest one."""
    ckpt_path = cli.config.get("ckpt_path")
    if ckpt_path not in (None, "last"):
        raise RecipeError("the T3S recipe resumes with --ckpt_path last (each phase from its own last checkpoint)")
    resume = ckpt_path == "last"
    phases = CLIPhases(cli.parser, cli.config, recipe_root(cli.config, resume=resume), prepare_trainer=prepare_trainer)
    try:
        Recipe(phases, resume=resume).run()
    except RecipePaused as paused:
        if process_rank() == 0:  # every rank pauses; one says so
            print(f"paused: {paused}", file=sys.stderr)


class CLIPhases(PhaseFactory):
    """The recipe's phases, built from the command line's config: what the config cannot build is one line."""

    def build(self, name: str, selection: Any) -> Phase:
        with one_line_build_errors():
            return super().build(name, selection)


#: What each path of :func:`t3s.recipe.strategies.fit_path` hands over to.
FIT_PATHS: dict[str, Callable[[T3SCLI], None]] = {"plain fit": plain_fit, "online": online_fit, "recipe": recipe_fit}


def recipe_root(config: Any, resume: bool = False) -> Path:
    """``<save_dir>/<name>/version_<k>`` of the config's file logger (the one a trainer of this config would
    log into first: the configured ``TensorBoardLogger`` / ``CSVLogger``, Lightning's default one, or a
    ``CSVLogger`` in ``<default_root_dir>/lightning_logs`` before a W&B / MLflow logger); the recipe's phases
    log into sub-directories of it. With no logger at all: ``<default_root_dir>/t3s_recipe/version_<k>``.

    ``resume`` picks the newest such folder that holds a ``recipe.json`` instead of the next free version
    (unless the logger's ``version`` is configured: then that folder).
    """
    logger = first_file_logger(config)
    if logger is None:  # no logger at all: versioned all the same
        base = Path(config.trainer.get("default_root_dir") or os.getcwd()) / "t3s_recipe"
        if resume:
            return find_recipe_root(base)
        taken = [int(p.name[8:]) for p in base.glob("version_*") if p.name[8:].isdigit()]
        return base / f"version_{max(taken, default=-1) + 1}"
    if resume and logger._version is None:
        return find_recipe_root(logger.root_dir)
    return Path(logger.log_dir)


def first_file_logger(config: Any) -> Any:
    """The file logger a trainer of ``config`` would log into first (built alone), or ``None`` for
    ``logger: false``."""
    from jsonargparse import ArgumentParser
    from jsonargparse.typing import import_object
    from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

    node = config.trainer.get("logger")
    root_dir = str(config.trainer.get("default_root_dir") or os.getcwd())
    first = node[0] if isinstance(node, list) and node else node
    if first is False or node == []:
        return None
    if first is None or first is True:  # Lightning's default logger
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            return CSVLogger(save_dir=root_dir)
        return TensorBoardLogger(save_dir=root_dir)
    class_path = getattr(first, "class_path", None)
    if class_path is None or not issubclass(import_object(class_path), (TensorBoardLogger, CSVLogger)):
        return CSVLogger(save_dir=root_dir)  # what :func:`t3s.loggers.with_run_folder` puts first
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--logger", type=Logger)
    return parser.instantiate_classes(parser.parse_object({"logger": first.as_dict()})).logger


def phases_for_seed(config: str, overrides: Sequence[str], output: str | Path) -> Callable[[int], PhaseFactory]:
    """``t3s compare``: the phase factory of each seed (data order and evaluation sampling set to the seed)."""

    def build(seed: int) -> PhaseFactory:
        cli = train_cli(["--config", config, *overrides, f"--seed_everything={seed}", f"--data.seed={seed}"],
                        run=False, build=False)
        return CLIPhases(cli.parser, cli.config, Path(output) / f"seed_{seed}", prepare_trainer=prepare_trainer)

    return build
