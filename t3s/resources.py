"""Files shipped inside the package: the training configs (``t3s/configs``) and benchmark tasks (``t3s/tasks``).

They are found with :mod:`importlib.resources`, so a wheel install (not only ``pip install -e``) runs the demo
and the benchmarks from any folder. In a checkout, ``configs/`` and ``benchmarks/tasks/`` at the repository
root are symlinks to these folders, so the paths the README uses keep working.

This module imports nothing beyond the standard library: the command line's dispatcher uses it before it
knows whether the command needs torch.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

CONFIG_SUFFIXES = (".yaml", ".yml")

#: First line of an overlay config: ``# t3s overlay on: qwen3`` (it is given after that config, never alone).
OVERLAY_MARKER = "# t3s overlay on:"


def package_folder(name: str) -> Path:
    """A folder of data files inside the installed ``t3s`` package."""
    return Path(str(files("t3s") / name))


def packaged_configs_dir() -> Path:
    """The folder of shipped training configs (``toy.yaml``, ``toy-small.yaml``, ``tiny.yaml``, …)."""
    return package_folder("configs")


def packaged_tasks_dir() -> Path:
    """The folder of shipped benchmark task definitions (``aime24.yaml``, ``math500.yaml``, …)."""
    return package_folder("tasks")


def packaged_configs() -> list[str]:
    """Names of the shipped configs, as ``--config NAME`` takes them."""
    folder = packaged_configs_dir()
    return sorted(p.stem for p in folder.iterdir() if p.suffix in CONFIG_SUFFIXES)


def overlay_base(path: Path) -> str | None:
    """The config an overlay file extends (named on its first line, :data:`OVERLAY_MARKER`); None for a whole
    config."""
    with Path(path).open(encoding="utf-8") as f:
        first = f.readline()
    return first.removeprefix(OVERLAY_MARKER).strip() or None if first.startswith(OVERLAY_MARKER) else None


def is_config_name(text: str) -> bool:
    """``toy-small`` (a shipped config's name) as opposed to a path such as ``configs/toy-small.yaml``."""
    return bool(text) and "/" not in text and "\\" not in text and Path(text).suffix not in CONFIG_SUFFIXES


def find_config(text: str) -> Path:
    """A config file by path, or by the name of a shipped config (``toy-small`` → ``t3s/configs/toy-small.yaml``).

    An existing file always wins, so a local file named like a shipped config is never shadowed.

    Raises:
        FileNotFoundError: neither a file nor a shipped config's name; the message lists the shipped ones.
    """
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if is_config_name(text):
        for suffix in CONFIG_SUFFIXES:
            candidate = packaged_configs_dir() / f"{text}{suffix}"
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"no config file {text!r} and no shipped config of that name; shipped: "
                                f"{', '.join(packaged_configs())}")
    raise FileNotFoundError(f"config file not found: {text}")
