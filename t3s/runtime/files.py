"""File modes for what t3s writes (readable by whoever may read its neighbours) and folders written atomically."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask(probe_dir: Path) -> int:
    """The process umask, read without changing it.

    Setting the umask to read it (``os.umask(0)`` then back) would give a file another thread creates in that
    moment mode 0666. On Linux ≥ 4.7 it is the ``Umask:`` line of ``/proc/self/status``; elsewhere it is what a
    plain ``open()`` gives: a probe file created with mode 0666 in ``probe_dir`` (then removed).
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _umask_by_probe(probe_dir)


def _umask_by_probe(probe_dir: Path) -> int:
    """The read/write bits of the umask, as a plain ``open()`` applies them: the mode of a new file asked to be
    0666 (removed at once)."""
    probe = probe_dir / f".t3s-umask-{uuid.uuid4().hex}"
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        return 0o666 & ~os.fstat(fd).st_mode & 0o777
    finally:
        os.close(fd)
        probe.unlink()


def make_shareable(path: str | Path) -> None:
    """Give ``path`` (a file, or every file under a folder) the mode a plain ``open()`` would: 0666 less the umask.

    safetensors writes its files 0600, so a teammate or a vLLM server running as another user could not
    read a checkpoint whose ``config.json`` beside it is 0644.
    """
    path = Path(path)
    mode = 0o666 & ~_umask(path if path.is_dir() else path.parent)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    for file in files:
        os.chmod(file, mode)


@contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """Write a folder atomically: yields an empty temporary sibling of ``target`` to fill; on a clean exit it is
    made shareable (:func:`make_shareable`) and renamed to ``target``, replacing any folder there.

    A crash never leaves a half-written folder under the final name (the temporary one stays behind, and
    is cleared by the next write of the same ``target`` from a process with the same pid).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    yield tmp
    make_shareable(tmp)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old)
    else:
        tmp.rename(target)
