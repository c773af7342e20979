"""``python -m t3s`` / ``t3s``: LightningCLI for training plus the analysis subcommands.

Training (LightningCLI, omegaconf mode)::

    python -m t3s fit --config configs/tiny.yaml
    python -m t3s fit --config configs/qwen3.yaml --print_config

Subcommands sharing the same config file::

    python -m t3s score --config CFG --base θ0 --bottleneck θb --output DIR
    python -m t3s rrt --base θ0 --bottleneck θb --final θf --output DIR
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from t3s.analysis.rrt import CheckpointLayoutError, residual_transfer
from t3s.data import TeacherTraceDataModule, TraceDataError
from t3s.scoring.cache import ScoreCacheError
from t3s.scoring.scorer import TokenizerMismatchError
from t3s.selection import SelectionError
from t3s.students.checkpoints import AtomicCheckpointIO
from t3s.toy.base import resolve_base

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "tiny.yaml"

# ``${toy_base:DIR}`` in a config: the cached, pretrained θ_0 of the toy world in DIR.
_register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
_register("toy_base", resolve_base, replace=True)

#: Errors that are the user's input, not a bug: printed as one line, exit code 2.
USER_ERRORS = (
    TraceDataError,
    SelectionError,
    ScoreCacheError,
    TokenizerMismatchError,
    CheckpointLayoutError,
    FileNotFoundError,
)


class T3SCLI(LightningCLI):
    """LightningCLI with the data module's tokenizer handed to the student."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.tokenizer", "model.init_args.tokenizer")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        # Single-file checkpoints are written to a temporary file and renamed into place.
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def with_default_config(args: list[str]) -> list[str]:
    """``fit``/``validate``/``test`` without ``--config`` run the built-in default config."""
    if args and args[0] in ("fit", "validate", "test") and DEFAULT_CONFIG.is_file():
        if not any(a in ("-c", "--config") or a.startswith("--config=") for a in args[1:]):
            if not any(a in ("-h", "--help") for a in args[1:]):
                return [args[0], "--config", str(DEFAULT_CONFIG), *args[1:]]
    return args


def train_cli(args: Sequence[str] | None = None, run: bool = True) -> T3SCLI:
    """The LightningCLI entry point (``fit``, ``validate``, ``test``)."""
    return T3SCLI(
        model_class=L.LightningModule,
        datamodule_class=TeacherTraceDataModule,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"parser_mode": "omegaconf"},
        args=with_default_config(list(sys.argv[1:] if args is None else args)),
        run=run,
    )


# ----------------------------------------------------------------- subcommands
def load_datamodule(config: str, overrides: dict[str, Any] | None = None) -> TeacherTraceDataModule:
    """Instantiate the ``data`` section of a training config (interpolations resolved)."""
    cfg = OmegaConf.to_container(OmegaConf.load(config), resolve=True)
    data = dict(cfg.get("data") or {})
    data.update(overrides or {})
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(TeacherTraceDataModule, "data")
    namespace = parser.parse_object({"data": data})
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
    """
    from t3s.scoring.scorer import score

    datamodule = load_datamodule(config)
    score(datamodule, base, bottleneck, output, device=device, dtype=dtype, micro_batch_size=micro_batch_size,
          chunk_size=chunk_size)
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


SUBCOMMANDS: dict[str, Callable[..., Any]] = {"score": score_command, "rrt": rrt_command}


def run_subcommand(name: str, args: Sequence[str]) -> Any:
    """Parse ``args`` against the subcommand's signature (docstring as help) and run it."""
    function = SUBCOMMANDS[name]
    parser = ArgumentParser(prog=f"t3s {name}", description=(function.__doc__ or "").split("\n")[0])
    parser.add_function_arguments(function, as_positional=False)
    cfg = parser.parse_args(list(args))
    return function(**cfg.as_dict())


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch to an analysis subcommand or to LightningCLI."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in SUBCOMMANDS:
            run_subcommand(args[0], args[1:])
        else:
            train_cli(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
