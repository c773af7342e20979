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
from omegaconf import OmegaConf

from t3s.analysis.report import write_report
from t3s.analysis.rrt import CheckpointLayoutError, residual_transfer
from t3s.data import DataFileError, TeacherTraceDataModule, TraceDataError
from t3s.evals.grade_cli import grade_file
from t3s.evals.offline import EvaluationError
from t3s.recipe import (
    Comparison,
    PhaseFactory,
    Recipe,
    RecipeError,
    RecipePaused,
    find_recipe_root,
    missing_scores,
    run_online,
    with_atomic_checkpoints,
)
from t3s.scoring.scorer import TokenizerMismatchError
from t3s.selection import SelectionError
from t3s.selection.scores import ScoreCacheError
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
    EvaluationError,
)


class T3SCLI(LightningCLI):
    """LightningCLI with the data module's tokenizer handed to the student.

    With ``run=False`` it parses the ``fit`` options alone (plus ``--ckpt_path``): :func:`fit_command`
    decides between a plain ``Trainer.fit``, the online variant and the multi-phase recipe.
    """

    def __init__(self, *args: Any, run: bool = True, **kwargs: Any) -> None:
        self.fit_only = not run
        super().__init__(*args, run=run, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.tokenizer", "model.init_args.tokenizer")
        if self.fit_only:
            parser.add_argument("--ckpt_path", type=str | None, default=None,
                                help="checkpoint to resume from (path, or 'last')")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        return with_atomic_checkpoints(super().instantiate_trainer(**kwargs))


def fit_command(args: Sequence[str] | None = None) -> None:
    """``t3s fit``: plain ``Trainer.fit``, unless the selection needs Δc that nobody computed yet — then the
    online variant (``T3S(online=true)``) or the multi-phase recipe (probe → θ_b → score → restart)."""
    cli = train_cli(args, run=False)
    student, datamodule, ckpt_path = cli.model, cli.datamodule, cli.config.get("ckpt_path")
    selection = getattr(student, "selection", None)
    if not missing_scores(selection):
        cli.trainer.fit(student, datamodule=datamodule, ckpt_path=ckpt_path)
    elif getattr(selection, "online", False):
        run_online(cli.trainer, student, datamodule, ckpt_path)
    else:
        if ckpt_path not in (None, "last"):
            raise RecipeError("the T3S recipe resumes with --ckpt_path last (each phase from its own last checkpoint)")
        logger_config = getattr(cli.config.trainer.get("logger"), "init_args", None)
        version_given = getattr(logger_config, "version", None) is not None
        root = recipe_root(cli.trainer, resume=ckpt_path == "last" and not version_given)
        try:
            Recipe(PhaseFactory(cli.parser, cli.config, root), resume=ckpt_path == "last").run()
        except RecipePaused as paused:
            print(f"paused: {paused}", file=sys.stderr)


def recipe_root(trainer: L.Trainer, resume: bool = False) -> Path:
    """``<save_dir>/<name>/version_<k>``: the recipe's phases log into sub-directories of it. ``resume``
    picks the newest such folder that holds a ``recipe.json`` instead of the next free version."""
    logger = trainer.logger
    if isinstance(logger, TensorBoardLogger):
        if resume:
            return find_recipe_root(logger.root_dir)
        return Path(logger.log_dir)
    return Path(trainer.default_root_dir) / "t3s_recipe"


def uses_default_config(args: Sequence[str]) -> bool:
    """``fit``/``validate``/``test`` without ``--config`` run the built-in default config."""
    return (
        bool(args)
        and args[0] in ("fit", "validate", "test")
        and DEFAULT_CONFIG.is_file()
        and not any(a in ("-c", "--config", "-h", "--help") or a.startswith("--config=") for a in args[1:])
    )


def train_cli(args: Sequence[str] | None = None, run: bool = True) -> T3SCLI:
    """The LightningCLI entry point: ``validate`` / ``test`` / ``predict`` subcommands, or, with
    ``run=False``, the ``fit`` options alone (``args`` without the subcommand)."""
    given = list(sys.argv[1:] if args is None else args)
    parser_kwargs: dict[str, Any] = {"parser_mode": "omegaconf"}
    if run and uses_default_config(given):
        parser_kwargs[given[0]] = {"default_config_files": [str(DEFAULT_CONFIG)]}
    elif not run and uses_default_config(["fit", *given]):
        parser_kwargs.update(default_config_files=[str(DEFAULT_CONFIG)], prog="t3s fit")
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

    def phases_for_seed(seed: int) -> PhaseFactory:
        cli = train_cli(["--config", config, *extra, f"--seed_everything={seed}", f"--data.seed={seed}"], run=False)
        return PhaseFactory(cli.parser, cli.config, Path(output) / f"seed_{seed}")

    Comparison(phases_for_seed, list(seeds), output).run()


def evaluate_command(
    targets: list[str],
    tasks: list[str] | None = None,
    devices: int = 1,
    steps: list[int] | None = None,
    train_accuracy: bool | None = None,
    n: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    output: str | None = None,
) -> None:
    """Evaluate checkpoints outside training: every ``hf/step_N`` of a run that has no result yet, or HF folders.

    Args:
        targets: phase run directories (holding ``hf/step_N`` and ``config.yaml``) or HF model folders.
        tasks: benchmark tasks (names, YAML paths) instead of the run's own; required for a plain HF folder.
        devices: worker processes, one per device (GPU if present), data-parallel over each task's items.
        steps: evaluate only these steps.
        train_accuracy: override the run's training-accuracy setting.
        n: samples per prompt (overrides the tasks' sampling).
        temperature: sampling temperature (0: greedy).
        top_p: nucleus sampling.
        max_new_tokens: generation budget per sample.
        batch_size: prompts per generation batch.
        output: where outputs go (default: the run directory / HF folder itself).
    """
    from t3s.evals.offline import evaluate_checkpoints, plan_evaluation

    sampling = {k: v for k, v in (("n", n), ("temperature", temperature), ("top_p", top_p),
                                  ("max_new_tokens", max_new_tokens)) if v is not None}
    for target in targets:
        plan = plan_evaluation(target, tasks=tasks, sampling=sampling, steps=steps, train_accuracy=train_accuracy,
                               batch_size=batch_size, output=output)
        rows = evaluate_checkpoints(plan, devices=devices)
        for row in rows:
            accuracy = next((v for k, v in row["metrics"].items() if k.startswith("avg@")), float("nan"))
            print(f"step {row['step']:>6}  {row['task']:<20} accuracy {accuracy:.4f}")
        print(f"{target}: {len(rows)} new result(s) in {plan.output / 'eval' / 'results.jsonl'}")


SUBCOMMANDS: dict[str, Callable[..., Any]] = {
    "evaluate": evaluate_command,
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
    positional = {"report": "--runs", "evaluate": "--targets"}.get(name)
    args = _collect_list(list(args), positional, "--seeds", "--overrides", "--tasks", "--steps")
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
        elif args and args[0] == "fit":
            fit_command(args[1:])
        else:
            train_cli(None if argv is None else args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
