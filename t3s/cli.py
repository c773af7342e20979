"""``python -m t3s`` / ``t3s``: LightningCLI for training plus the analysis subcommands.

Training (LightningCLI, omegaconf mode)::

    python -m t3s fit --config configs/tiny.yaml
    python -m t3s fit --config configs/qwen3.yaml --print_config

Subcommands sharing the same config file::

    python -m t3s score --config CFG --base θ0 --bottleneck θb --output DIR
    python -m t3s rrt --base θ0 --bottleneck θb --final θf --output DIR
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from t3s.analysis.report import write_report
from t3s.analysis.rrt import CheckpointLayoutError, residual_transfer
from t3s.data import DataFileError, TeacherTraceDataModule, TraceDataError
from t3s.evals.grade_cli import grade_file
from t3s.recipe import (
    OnlineT3SSwitch,
    Phase,
    RecipeError,
    benchmark_callback,
    missing_scores,
    run_comparison,
    run_recipe,
)
from t3s.scoring.cache import ScoreCacheError
from t3s.scoring.scorer import TokenizerMismatchError
from t3s.selection import FullSFT, SelectionError, TokenSelectionStrategy
from t3s.students import ARStudent
from t3s.students.checkpoints import AtomicCheckpointIO
from t3s.students.diffusion import DiffusionStudentError
from t3s.toy.base import resolve_base, resolve_world

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "toy.yaml"

# ``${toy_world:PRESET}``: a toy world written into the cache; ``${toy_base:DIR}``: its cached, pretrained θ_0.
_register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
_register("toy_base", resolve_base, replace=True)
_register("toy_world", resolve_world, replace=True)

class ConfigError(ValueError):
    """A config file (or a section of it) that does not parse."""


#: Errors that are the user's input, not a bug: printed as one line, exit code 2.
USER_ERRORS = (
    ConfigError,
    TraceDataError,
    DataFileError,  # every bad data, task or `t3s grade` input (TraceDataError, TaskError, GradeInputError)
    SelectionError,
    ScoreCacheError,
    TokenizerMismatchError,
    CheckpointLayoutError,
    FileNotFoundError,
    RecipeError,
    DiffusionStudentError,
)


class T3SCLI(LightningCLI):
    """LightningCLI with the data module's tokenizer handed to the student."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.tokenizer", "model.init_args.tokenizer")

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
    return trainer


def uses_default_config(args: Sequence[str]) -> bool:
    """``fit``/``validate``/``test`` without ``--config`` run the built-in default config."""
    return (
        bool(args)
        and args[0] in ("fit", "validate", "test")
        and DEFAULT_CONFIG.is_file()
        and not any(a in ("-c", "--config", "-h", "--help") or a.startswith("--config=") for a in args[1:])
    )


def train_cli(args: Sequence[str] | None = None, run: bool = True) -> T3SCLI:
    """The LightningCLI entry point (``fit``, ``validate``, ``test``)."""
    given = list(sys.argv[1:] if args is None else args)
    parser_kwargs: dict[str, Any] = {"parser_mode": "omegaconf"}
    if uses_default_config(given):
        parser_kwargs[given[0]] = {"default_config_files": [str(DEFAULT_CONFIG)]}
    # With explicit args (the compare subcommand, tests), the process's own argv is not the CLI's input;
    # hiding it keeps LightningCLI from warning that both were given.
    argv, sys.argv = sys.argv, sys.argv if args is None else sys.argv[:1]
    try:
        return T3SCLI(
            model_class=L.LightningModule,
            datamodule_class=TeacherTraceDataModule,
            subclass_mode_model=True,
            save_config_kwargs={"overwrite": True},
            parser_kwargs=parser_kwargs,
            args=None if args is None else given,
            run=run,
        )
    finally:
        sys.argv = argv


# ----------------------------------------------------------------- subcommands
def load_datamodule(config: str, overrides: dict[str, Any] | None = None) -> TeacherTraceDataModule:
    """Instantiate the ``data`` section of a training config (interpolations resolved)."""
    cfg = OmegaConf.to_container(OmegaConf.load(config), resolve=True)
    data = dict(cfg.get("data") or {})
    data.update(overrides or {})
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(TeacherTraceDataModule, "data")
    try:
        namespace = parser.parse_object({"data": data})
    except Exception as err:  # jsonargparse reports the offending key
        raise ConfigError(f"{config}: invalid data section: {str(err).splitlines()[0]}") from None
    return parser.instantiate_classes(namespace).data


def score_command(
    config: str,
    base: str,
    bottleneck: str,
    output: str,
    device: str = "auto",
    dtype: str = "float32",
    micro_batch_size: int | None = None,
    chunk_size: int = 2048,
    trust_remote_code: bool = False,
) -> None:
    """Score every training token under θ_0 and θ_b and write the Δc cache T3S reads.

    Args:
        config: the training config whose ``data`` section defines the traces (same file as ``fit``).
        base: θ_0, an HF folder or hub id (e.g. ``<run>/hf/step_0``).
        bottleneck: θ_b, an HF folder (e.g. ``<run>/hf/step_20``).
        output: directory for ``scores.safetensors``, ``meta.json`` and ``summary.json``.
        device: ``auto``, ``cpu`` or ``cuda``.
        dtype: weights dtype for scoring (``float32`` or ``bfloat16``).
        micro_batch_size: rows per forward pass (default: the data config's).
        chunk_size: rows per chunk of the log-prob kernel.
        trust_remote_code: allow the checkpoints' own model code (e.g. Ling-mini-2.0 as a selector).
    """
    from t3s.scoring.scorer import score

    datamodule = load_datamodule(config)
    score(datamodule, base, bottleneck, output, device=device, dtype=dtype, micro_batch_size=micro_batch_size,
          chunk_size=chunk_size, trust_remote_code=trust_remote_code)
    print(f"wrote the score cache to {output}; train with model.init_args.selection.init_args.scores={output}")


def rrt_command(base: str, bottleneck: str, final: str, output: str) -> None:
    """Recovering Residual Transfer: write θ_0 + (θ_final − θ_b) as an HF model folder.

    Args:
        base: θ_0 HF folder.
        bottleneck: θ_b HF folder.
        final: θ_final HF folder.
        output: where to write the transferred model.
    """
    residual_transfer(base, bottleneck, final, output)
    print(f"wrote θ0 + (θfinal − θb) to {output}")


def grade_command(
    task: str,
    input: str,
    response_field: str = "response",
    gold_field: str = "gold",
    output: str | None = None,
    hit_limit_field: str | None = None,
) -> None:
    """Re-grade a JSONL file of generations (ours or another tool's); prints the accuracy.

    Args:
        task: grader (``aime``, ``math``, ``mc``, ``exact``) or a task name / YAML path.
        input: JSONL with one generation per line.
        response_field: field holding the model's response.
        gold_field: field holding the gold answer.
        output: where to write one verdict per input row (same order; adds extracted, correct, truncated).
        hit_limit_field: optional boolean field marking responses cut at the token limit.
    """
    grade_file(task, input, response_field, gold_field, output or str(Path(input).with_suffix(".verdicts.jsonl")),
               hit_limit_field=hit_limit_field)


def report_command(runs: list[str], output: str | None = None) -> None:
    """Figures and a comparison table (start / min / final / best accuracy, θ_b) from finished runs.

    Args:
        runs: run directories holding TensorBoard event files (e.g. ``runs/toy/t3s/version_0/probe``).
        output: output directory (default: ``report/`` inside the first run directory).
    """
    print(f"wrote {write_report(runs, output)}")


def compare_command(config: str, seeds: list[int], output: str, overrides: list[str] | None = None) -> None:
    """The paper's comparison: SFT, T3S, −T3S, random mask and RRT, same steps, LR and data order, per seed.

    Args:
        config: a training config with a ``BenchmarkCallback`` (training accuracy on), e.g. configs/toy.yaml.
        seeds: seeds of the data order and evaluation sampling (θ_0 is shared).
        output: directory for the runs, ``comparison.md`` and the figures.
        overrides: training options applied on top of ``config`` in every run, as ``KEY=VALUE`` with the
            keys ``fit`` takes (e.g. ``model.init_args.lr=3e-4 trainer.max_steps=120``).
    """
    extra = [f"--{item.removeprefix('--')}" for item in overrides or []]
    for item in extra:
        if "=" not in item:
            raise ConfigError(f"compare --overrides: expected KEY=VALUE, got {item[2:]!r}")

    def build(seed: int, name: str, strategy: TokenSelectionStrategy, root: Path) -> Phase:
        args = ["--config", config, *extra, f"--seed_everything={seed}", f"--data.seed={seed}"]
        cli = train_cli(args, run=False)
        return cli._build_phase(name, strategy, root)

    run_comparison(build, list(seeds), output)


SUBCOMMANDS: dict[str, Callable[..., Any]] = {
    "compare": compare_command,
    "score": score_command,
    "rrt": rrt_command,
    "grade": grade_command,
    "report": report_command,
}


def run_subcommand(name: str, args: Sequence[str]) -> Any:
    """Parse ``args`` against the subcommand's signature (docstring as help) and run it."""
    function = SUBCOMMANDS[name]
    parser = ArgumentParser(prog=f"t3s {name}", description=(function.__doc__ or "").split("\n")[0])
    parser.add_function_arguments(function, as_positional=False)
    args = _collect_list(list(args), "--runs" if name == "report" else None, "--seeds", "--overrides")
    cfg = parser.parse_args(args)
    return function(**cfg.as_dict())


def _collect_list(args: list[str], positional: str | None, *flags: str) -> list[str]:
    """Shell-style lists: ``report RUN RUN --output D`` and ``--seeds 0 1 2`` become JSON list values."""
    out: list[str] = []
    i = 0
    if positional is not None:
        n = next((j for j, a in enumerate(args) if a.startswith("-")), len(args))
        if n:
            out += [positional, json.dumps(args[:n])]
        i = n
    while i < len(args):
        if args[i] in flags:
            j = i + 1
            while j < len(args) and not args[j].startswith("--"):
                j += 1
            values = args[i + 1 : j]
            if len(values) == 1 and values[0].startswith("["):  # already a list literal
                out += [args[i], values[0]]
                i = j
                continue
            out += [args[i], json.dumps([int(v) if v.lstrip("-").isdigit() else v for v in values])]
            i = j
        else:
            out.append(args[i])
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch to an analysis subcommand or to LightningCLI."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in SUBCOMMANDS:
            run_subcommand(args[0], args[1:])
        else:
            train_cli(None if argv is None else args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
