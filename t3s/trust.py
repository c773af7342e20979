"""What a training config may import: the ``class_path`` trust boundary.

A config names classes (``class_path: t3s.ARStudent``, ``--trainer.logger lightning.pytorch.loggers.CSVLogger``)
and jsonargparse imports each one while parsing — before any type check — so a config can run any module
it names, including a ``.py`` file in the working directory. A config is therefore code. t3s checks every
class path a config file or the command line gives *before* anything is parsed or imported, and refuses
those outside :data:`ALLOWED_PACKAGES` unless the user allows their packages in the environment
(``T3S_ALLOW_CLASS_PATHS=mypkg,otherpkg``): a config alone cannot widen what it may import.

Standard library (and PyYAML) only: it runs before torch and Lightning are imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from t3s.errors import ConfigError

#: Top-level packages whose classes a config may name.
ALLOWED_PACKAGES = ("t3s", "lightning", "torch")

#: Comma-separated extra top-level packages (or dotted prefixes) a user allows, e.g. ``mylab,wandb_callbacks``.
ALLOW_ENV = "T3S_ALLOW_CLASS_PATHS"

#: A value written like a class path: dotted identifiers ending in a capitalised class name (``a.b.Class``).
CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\.[A-Z]\w*$")


def allowed_prefixes() -> tuple[str, ...]:
    """:data:`ALLOWED_PACKAGES` plus the user's :data:`ALLOW_ENV` entries."""
    extra = [p.strip() for p in os.environ.get(ALLOW_ENV, "").split(",") if p.strip()]
    return (*ALLOWED_PACKAGES, *extra)


def is_allowed(class_path: str, prefixes: Sequence[str] | None = None) -> bool:
    """``class_path`` lies in one of the allowed packages (``torch`` allows ``torch.nn.ReLU``, not ``torchx.X``)."""
    return any(class_path == p or class_path.startswith(p + ".") for p in prefixes or allowed_prefixes())


def class_paths(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """``(key, class path)`` for every ``class_path:`` value and every string written like a class path."""
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if k == "class_path" and isinstance(v, str):
                yield sub, v
            else:
                yield from class_paths(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from class_paths(v, f"{key}[{i}]")
    elif isinstance(value, str) and CLASS_PATH.match(value.strip()):
        yield key, value.strip()


def _option_values(args: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """``(option, value)`` of the command line's ``--key=value`` / ``--key value`` pairs (values read as YAML)."""
    import yaml

    for i, arg in enumerate(args):
        if not arg.startswith("--") or arg in ("--config", "-c") or arg.startswith("--config="):
            continue
        option, eq, text = arg.partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                continue
            text = args[i + 1]
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        yield option.removeprefix("--"), value


def check_class_paths(config_files: Sequence[str | Path], args: Sequence[str]) -> None:
    """Refuse a class path outside the allowed packages in ``config_files`` or the options in ``args``.

    Raises:
        ConfigError: one line naming the key, the class path, and how to allow it.
    """
    import yaml

    prefixes = allowed_prefixes()
    found: list[tuple[str, str, str]] = []
    for file in config_files:
        path = Path(file)
        if not path.is_file():
            continue
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue  # the parser reports an unreadable config with its own line
        found += [(str(path), key, cp) for key, cp in class_paths(loaded)]
    for option, value in _option_values(args):
        found += [("the command line", f"{option}{'.' + key if key else ''}", cp)
                  for key, cp in class_paths(value)]
    for where, key, class_path in found:
        if not is_allowed(class_path, prefixes):
            raise ConfigError(
                f"{where}: {key}: {class_path} is outside the packages a config may import ({', '.join(prefixes)}); "
                f"a config is code: if you trust it, allow the package with "
                f"{ALLOW_ENV}={class_path.split('.')[0]}")
