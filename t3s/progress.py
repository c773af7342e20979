"""Progress as a user expects it: a live bar in a terminal, one plain line per 10 % (or per N steps) when the
output goes to a file (a SLURM log, ``| tee``), where a bar is noise.

* :func:`progress`: a ``tqdm`` bar on a terminal, else a :class:`PlainProgress` (same ``update`` /
  ``set_postfix`` / ``close`` calls).
* :class:`PlainProgressBar`: Lightning's progress bar for ``fit`` off a terminal; one line every
  ``every_n_steps`` optimizer steps (default: every 10 % of ``max_steps``) with the step's ``train/loss``.

``T3S_PROGRESS=bar`` or ``plain`` overrides the terminal detection.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from lightning.pytorch.callbacks import ProgressBar

__all__ = ["PROGRESS_ENV", "PlainProgress", "PlainProgressBar", "is_terminal", "progress"]

#: ``bar`` or ``plain``: force the progress display whatever the output is.
PROGRESS_ENV = "T3S_PROGRESS"


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether progress goes to a terminal (stderr by default), unless :data:`PROGRESS_ENV` says otherwise."""
    forced = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if forced in ("bar", "plain"):
        return forced == "bar"
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class PlainProgress:
    """A progress counter that prints ``"<desc>: <n>/<total> <unit> (<pct>%) <postfix>"`` at every 10 % (every
    ``every`` items when the total is unknown) and once at the end; a ``tqdm``-like interface."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", disable: bool = False, stream: TextIO | None = None, every: int = 10) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.disable = total, desc, unit, disable
        self.stream = stream
        self.every = every
        self.n = 0
        self.postfix = ""
        self._printed = -1
        self._start = time.monotonic()

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update()
        self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def _line(self) -> str:
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        pct = f" ({100 * self.n // self.total}%)" if self.total else ""
        elapsed = time.monotonic() - self._start
        tail = f" {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {done} {self.unit}{pct}, {elapsed:.0f}s{tail}"

    def _print(self) -> None:
        if self.disable or self._printed == self.n:
            return
        self._printed = self.n
        print(self._line(), file=self.stream or sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        before, self.n = self.n, self.n + n
        if self.total:
            if self.n * 10 // self.total > before * 10 // self.total:
                self._print()
        elif self.n // self.every > before // self.every:
            self._print()

    def close(self) -> None:
        if self.n and (not self.total or self.n < self.total):
            self._print()  # a last line when the 10 % marks did not print the end


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             disable: bool = False, **tqdm_kwargs: Any) -> Any:
    """A ``tqdm`` bar on a terminal, a :class:`PlainProgress` otherwise (``disable`` hides either)."""
    if is_terminal():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, **tqdm_kwargs)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, disable=disable)


class PlainProgressBar(ProgressBar):
    """``fit``'s progress off a terminal: ``step 20/100 (20%) loss 1.234, 12s`` every ``every_n_steps``
    optimizer steps (default: every 10 % of ``max_steps``, else every 50 steps) and at the last step."""

    def __init__(self, every_n_steps: int | None = None, stream: TextIO | None = None) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self.stream = stream
        self._enabled = True
        self._start = time.monotonic()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _every(self, trainer: Any) -> int:
        if self.every_n_steps:
            return self.every_n_steps
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        return max(1, total // 10) if total else 50

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._start = time.monotonic()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        step = trainer.global_step
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        if step % self._every(trainer) and step != total:
            return
        done = f"{step}/{total} ({100 * step // total}%)" if total else str(step)
        loss = trainer.callback_metrics.get("train/loss")
        loss_text = f" loss {float(loss):.4f}" if loss is not None else ""
        print(f"step {done}{loss_text}, {time.monotonic() - self._start:.0f}s", file=self.stream or sys.stdout,
              flush=True)
