"""Child ``t3s evaluate`` processes for a training run: ``BenchmarkCallback(mode="subprocess")``.

One child at a time evaluates the steps queued so far (``t3s evaluate RUN_DIR --steps …``); its results land
where any ``t3s evaluate`` puts them (the run's ``eval/results.jsonl`` ledger, TensorBoard scalars,
``generations/``), and its output goes to ``<run>/eval/child.log``. The callback either waits for each
child (``wait: true``) or polls it between training steps (``wait: false``, on GPUs training does not use).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: Where the children's stdout and stderr go (appended), inside the run directory.
CHILD_LOG = Path("eval") / "child.log"


class ChildEvaluationError(RuntimeError):
    """A child ``t3s evaluate`` exited with an error (its log's tail is in the message)."""


class ChildEvaluator:
    """Runs ``t3s evaluate`` on a run's checkpoints in child processes, one child at a time.

    Args:
        run_dir: the run whose ``hf/step_<N>`` folders are evaluated.
        devices: GPUs of this process's visible devices the children use (indices; set as
            ``CUDA_VISIBLE_DEVICES``, with ``--devices len(devices)``); None: the children's defaults.
        options: further ``t3s evaluate`` options: what the training config itself asked for and ``t3s evaluate``
            never reads from a run's ``config.yaml`` (``--trust_remote_code true``, ``--python PATH``).
    """

    def __init__(self, run_dir: str | Path, devices: list[int] | None = None,
                 options: list[str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.devices = list(devices) if devices else None
        self.options = list(options or [])
        self.queued: list[int] = []
        self.running: list[int] = []
        self._process: subprocess.Popen | None = None

    @property
    def pending(self) -> list[int]:
        """Steps submitted whose evaluation has not finished (running, then queued)."""
        return [*self.running, *self.queued]

    def command(self, steps: list[int]) -> list[str]:
        command = [sys.executable, "-m", "t3s", "evaluate", str(self.run_dir), "--steps", *map(str, steps)]
        if self.devices:
            command += ["--devices", str(len(self.devices))]
        return command + self.options

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.devices:
            visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(visible[i] if visible else str(i) for i in self.devices)
        return env

    def submit(self, step: int) -> None:
        """Queue a step and start a child if none is running."""
        if step not in self.pending:
            self.queued.append(step)
        self._start()

    def poll(self) -> list[int]:
        """The steps whose child has just finished (empty while it runs); starts the next child if steps wait."""
        if self._process is None or self._process.poll() is None:
            return []
        return self._finish()

    def wait(self) -> list[int]:
        """Wait until every submitted step is evaluated; the steps finished meanwhile."""
        finished: list[int] = []
        while self._process is not None:
            self._process.wait()
            finished += self._finish()
        return finished

    def stop(self) -> None:
        """Stop a running child (its finished steps are kept in the ledger; the rest are redone next time)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def _start(self) -> None:
        if self._process is not None or not self.queued:
            return
        self.running, self.queued = sorted(self.queued), []
        command = self.command(self.running)
        log = self.run_dir / CHILD_LOG
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as out:
            out.write(f"$ {' '.join(command)}\n")
            out.flush()
            self._process = subprocess.Popen(command, env=self.environment(), stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)

    def _finish(self) -> list[int]:
        process, finished = self._process, self.running
        self._process, self.running = None, []
        if process is not None and process.returncode != 0:
            tail = (self.run_dir / CHILD_LOG).read_text(encoding="utf-8", errors="replace")[-4000:]
            raise ChildEvaluationError(f"`{' '.join(map(str, process.args))}` exited with {process.returncode}; "
                                       f"the end of {self.run_dir / CHILD_LOG}:\n{tail}")
        self._start()
        return finished
