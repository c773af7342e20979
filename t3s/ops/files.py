"""File modes for what t3s writes: readable by whoever may read its neighbours."""

from __future__ import annotations

import os
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_shareable(path: str | Path) -> None:
    """Give ``path`` (a file, or every file under a folder) the mode a plain ``open()`` would: 0666 less the umask.

    safetensors writes its files 0600, so a teammate or a vLLM server running as another user could not
    read a checkpoint whose ``config.json`` beside it is 0644.
    """
    path = Path(path)
    mode = 0o666 & ~_umask()
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    for file in files:
        os.chmod(file, mode)
