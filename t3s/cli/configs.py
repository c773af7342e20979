"""The configs of a command line, read with the standard library (and PyYAML) before torch is imported:
shipped config names (``--config toy-small``), the default config, and the checks of a ``fit`` command line
(class paths, top-level keys, option names).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from t3s.errors import ConfigError, UsageError
from t3s.resources import find_config, overlay_base, packaged_configs, packaged_configs_dir

#: The config ``fit``/``validate``/``test`` run when no ``--config`` is given.
DEFAULT_CONFIG_NAME = "toy-small"


def expand_config_names(args: Sequence[str]) -> list[str]:
    """``--config toy-small`` → the shipped ``t3s/configs/toy-small.yaml``; paths are kept as given.

    Raises:
        UsageError: an overlay config (``qwen3-32b``) given with no config before it.
    """
    out = list(args)
    after_a_config = False
    for i, a in enumerate(out):
        if a in ("-c", "--config") and i + 1 < len(out):
            given, index, prefix = out[i + 1], i + 1, ""
        elif a.startswith("--config="):
            given, index, prefix = a.removeprefix("--config="), i, "--config="
        else:
            continue
        path = find_config(given)
        base = overlay_base(path)
        if base and not after_a_config:
            raise UsageError(f"{given} is an overlay on {base}, not a whole config: give it after that config, "
                             f"--config {base} --config {given}")
        after_a_config = True
        out[index] = prefix + str(path)
    return out


#: The top-level keys of a ``fit`` config (LightningCLI's, plus t3s's ``--ckpt_path`` and ``--eval_mode``).
FIT_KEYS = ("seed_everything", "trainer", "model", "data", "ckpt_path", "eval_mode", "config", "print_config", "help")
#: What a ``fit`` command line may start an option with: the config keys and ``--eval.<argument>``
#: (the BenchmarkCallback's settings, :mod:`t3s.cli.eval_options`).
FIT_OPTIONS = (*FIT_KEYS, "eval")


def config_files(args: Sequence[str]) -> list[str]:
    """The ``--config`` files of a command line (after :func:`expand_config_names`)."""
    return [args[i + 1] if a in ("-c", "--config") else a.removeprefix("--config=")
            for i, a in enumerate(args) if (a in ("-c", "--config") and i + 1 < len(args)) or a.startswith("--config=")]


def precheck_training_args(args: Sequence[str], fit: bool = True) -> None:
    """What can be checked without torch or Lightning: the class paths the configs and options name (the trust
    boundary, :mod:`t3s.trust`) and, for ``fit``, the top-level keys of the config files and options.

    Raises:
        ConfigError / UsageError: one line naming the file or option.
    """
    import difflib

    from t3s.trust import check_class_paths

    files = config_files(args)
    check_class_paths(files, args)
    if not fit:
        return
    import yaml

    for file in files:
        try:
            loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue  # the parser names the file and the line
        for key in loaded if isinstance(loaded, dict) else []:
            if key not in FIT_KEYS:
                close = difflib.get_close_matches(str(key), FIT_KEYS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"{file}: unknown top-level key {key!r}{hint}; a fit config has "
                                  f"{', '.join(FIT_KEYS[:6])}")
    for arg in args:
        if arg.startswith("--") and arg != "--":
            top = arg[2:].split("=", 1)[0].split(".", 1)[0]
            if top not in FIT_OPTIONS:
                close = difflib.get_close_matches(top, FIT_OPTIONS, n=1)
                raise UsageError(f"unknown option {arg.split('=', 1)[0]}"
                                 + (f" (did you mean --{close[0]}?)" if close else ""))


def shipped_config_names() -> list[str]:
    """The shipped configs' names, an overlay followed by what it extends (``qwen3-32b (after qwen3)``)."""
    names = []
    for name in packaged_configs():
        base = overlay_base(find_config(name))
        names.append(f"{name} (after {base})" if base else name)
    return names


def default_config_for(args: Sequence[str]) -> Path | None:
    """The shipped default config when ``fit``/``validate``/``test`` run without ``--config`` (and without a
    help request, so ``fit --model.help t3s.ARStudent`` does not build the demo's θ_0 first)."""
    if not args or args[0] not in ("fit", "validate", "test"):
        return None
    for a in args[1:]:
        if a in ("-c", "--config", "-h", "--help") or a.startswith("--config=") or a.endswith(".help") \
                or ".help=" in a:
            return None
    return packaged_configs_dir() / f"{DEFAULT_CONFIG_NAME}.yaml"
