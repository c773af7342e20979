"""``t3s`` / ``python -m t3s``: one dispatcher for the training commands and the analysis commands.

Training goes through LightningCLI (:mod:`t3s.cli.lightning_cli`, omegaconf mode)::

    t3s fit                               # the shipped demo config (toy)
    t3s fit --config toy-small            # a shipped config by name (t3s --help lists them)
    t3s fit --config configs/tiny.yaml    # or any config file

``fit`` is :mod:`t3s.cli.fit` (parse → choose the path → hand over). The analysis commands share the
training configs; each is one module of this package whose ``run`` function is the command (its signature
the options, its docstring the help): ``evaluate``, ``score``, ``diagnose``, ``rrt``, ``grade``, ``report``,
``compare``, ``traces``.

This module imports only the standard library at the top: each command imports what it needs when it
runs, so ``t3s --help`` and ``t3s grade`` never load torch or Lightning. Process-wide state is set in one
place, :func:`t3s.cli.process.configure_process`, when :func:`main` starts.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from t3s.cli.configs import (
    DEFAULT_CONFIG_NAME,
    expand_config_names,
    precheck_training_args,
    shipped_config_names,
)
from t3s.cli.messages import error_line, user_errors
from t3s.cli.process import configure_process
from t3s.errors import DEBUG_ENV

#: The LightningCLI commands, with their one-line help (``t3s fit --help`` lists every option).
TRAINING_COMMANDS = {
    "fit": "train a student; with T3S and no score cache, the whole recipe: SFT → θ_b → score → T3S → report",
    "validate": "teacher-forced loss of a model on the validation traces",
    "test": "teacher-forced loss of a model on the test traces",
    "predict": "Lightning's predict loop on the configured data",
}

#: The analysis commands, in ``t3s --help`` order: the module ``t3s.cli.<name>`` holds each.
ANALYSIS_COMMANDS = ("evaluate", "score", "diagnose", "rrt", "grade", "report", "compare", "traces")

#: Commands that need neither torch nor Lightning (nor the toy world's resolvers, which import transformers).
LIGHT_COMMANDS = frozenset({"grade", "report"})


def command_module(name: str) -> ModuleType:
    """``t3s.cli.<name>``: an analysis command (light at import: it imports what it needs when it runs)."""
    return importlib.import_module(f"t3s.cli.{name}")


def run_analysis_command(name: str, args: Sequence[str]) -> Any:
    """Parse ``args`` against the command's ``run`` signature (docstring as help) and run it; a module with
    a ``main(args)`` of its own (``traces``: actions) parses for itself."""
    from t3s.cli.arguments import run_function

    module = command_module(name)
    if hasattr(module, "main"):
        return module.main(args)
    return run_function(f"t3s {name}", module.run, args, positional=getattr(module, "POSITIONAL", None))


def run_training_command(name: str, args: Sequence[str]) -> None:
    """``fit`` / ``validate`` / ``test`` / ``predict``: the command line is checked before torch and Lightning
    are imported (seconds; minutes on a loaded machine), then parsed by LightningCLI."""
    given = expand_config_names(args if name == "fit" else [name, *args])
    precheck_training_args(given, fit=name == "fit")
    configure_process()
    if name == "fit":
        from t3s.cli.fit import fit_command

        fit_command(given)
    else:
        from t3s.cli.lightning_cli import train_cli

        train_cli(given)


def help_text() -> str:
    """``t3s --help``: every command with one line, and the shipped configs."""
    width = max(map(len, [*TRAINING_COMMANDS, *ANALYSIS_COMMANDS])) + 2
    analysis = {name: (command_module(name).run.__doc__ or "").strip().splitlines()[0] for name in ANALYSIS_COMMANDS}
    lines = [
        "usage: t3s COMMAND [options]        (python -m t3s COMMAND … is the same)",
        "",
        "Continual reasoning distillation with Training-Trajectory-Aware Token Selection (T3S).",
        "",
        "training (LightningCLI; `t3s fit --help` lists every option):",
        *(f"  {name:<{width}}{text}" for name, text in TRAINING_COMMANDS.items()),
        "",
        "analysis (`t3s COMMAND --help` for the options):",
        *(f"  {name:<{width}}{text}" for name, text in analysis.items()),
        "",
        f"shipped configs (--config NAME; the default is {DEFAULT_CONFIG_NAME}): {', '.join(shipped_config_names())}",
        "outputs (runs/…) are written relative to the working directory; caches go to $T3S_CACHE",
        "(default $XDG_CACHE_HOME/t3s or ~/.cache/t3s). T3S_DEBUG=1 shows tracebacks of user errors.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch to an analysis command or to LightningCLI; a user error (:class:`t3s.errors.T3SError` and the
    few library errors of :func:`~t3s.cli.messages.user_errors`) exits 2 with one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(help_text())
        return
    name = args[0]
    if name not in ANALYSIS_COMMANDS and name not in TRAINING_COMMANDS:
        close = [c for c in [*TRAINING_COMMANDS, *ANALYSIS_COMMANDS] if c.startswith(name[:2])]
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"error: unknown command {name!r}{hint}; `t3s --help` lists the commands", file=sys.stderr)
        raise SystemExit(2)
    try:
        if name in ANALYSIS_COMMANDS:
            configure_process(toy_resolvers=name not in LIGHT_COMMANDS)
            run_analysis_command(name, args[1:])
        else:
            run_training_command(name, args[1:])
    except Exception as err:
        if type(err).__name__ == "Terminated" and hasattr(err, "exit_code"):  # fit stopped by SIGTERM, saved
            if not getattr(err, "rank", 0):
                print(f"error: {err}", file=sys.stderr)
            raise SystemExit(err.exit_code) from None
        if not isinstance(err, user_errors()) or os.environ.get(DEBUG_ENV):
            raise
        print(f"error: {error_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
