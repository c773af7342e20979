"""math-verify comparisons under a hard wall-clock limit: a killable worker subprocess (or a thread).

:class:`MathVerifier` owns the worker's lifecycle (start, request/answer over JSON lines, kill on timeout,
restart after a fork); :func:`get_math_verifier` is the process-wide default, closed at interpreter exit.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from t3s.evals.grading import _mathverify_worker
from t3s.evals.grading.verdict import UngradableGold

__all__ = ["DEFAULT_MATH_TIMEOUT_S", "MathVerifier", "get_math_verifier"]

#: Wall-clock limit of one comparison. Real answers compare in milliseconds; what takes longer is a runaway
#: (a power tower evaluated exactly), graded wrong, so a response never costs more than a few seconds.
DEFAULT_MATH_TIMEOUT_S = 3.0

_WORKER_BOOT = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"


@dataclass
class _Outcome:
    """One comparison's result: gold parsed, the prediction as math-verify read it, the verdict."""

    gold_ok: bool
    extracted: str | None
    correct: bool
    timed_out: bool = False


class MathVerifier:
    """Runs math-verify comparisons under a hard wall-clock limit.

    ``backend="process"`` (default) keeps one light worker subprocess (it imports only math-verify)
    and kills and restarts it when a comparison exceeds ``timeout_s``: this interrupts anything,
    including C-level big-integer arithmetic that holds the GIL (e.g. ``9^{9^{9}}``).
    ``backend="thread"`` runs each comparison in a daemon thread and abandons it on timeout
    (cheaper, no subprocess, but a runaway computation keeps burning CPU in the background and a
    computation that holds the GIL cannot be interrupted).

    ``num_timeouts`` counts comparisons that hit the limit (each graded wrong).
    """

    def __init__(
        self,
        timeout_s: float | None = None,
        backend: Literal["process", "thread"] = "process",
        startup_timeout_s: float = 120.0,
    ) -> None:
        if backend not in ("process", "thread"):
            raise ValueError(f"backend must be 'process' or 'thread', got {backend!r}")
        self.timeout_s = DEFAULT_MATH_TIMEOUT_S if timeout_s is None else float(timeout_s)
        self.backend = backend
        self.startup_timeout_s = float(startup_timeout_s)
        self.num_calls = 0
        self.num_timeouts = 0
        self.num_worker_errors = 0
        self._gold_ok: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._proc_pid_owner: int | None = None
        self._buf = b""
        self._next_id = 0

    # -- public ---------------------------------------------------------------------------------
    def check(self, gold: str, pred: str, timeout_s: float | None = None, *, count: bool = True) -> _Outcome:
        """Compare ``pred`` with ``gold``; raises :class:`UngradableGold` if gold cannot be parsed.

        ``count=False`` leaves the call and timeout counters alone (a gold-only validation).
        """
        if self._gold_ok.get(gold) is False:
            raise UngradableGold(gold, "math")
        limit = self.timeout_s if timeout_s is None else float(timeout_s)
        with self._lock:
            self.num_calls += count
            if self.backend == "thread":
                out = self._check_thread(gold, pred, limit)
            else:
                out = self._check_process(gold, pred, limit)
        if out.timed_out:
            self.num_timeouts += count
            return out
        self._gold_ok[gold] = out.gold_ok
        if not out.gold_ok:
            raise UngradableGold(gold, "math")
        return out

    def check_gold(self, gold: str, timeout_s: float | None = None) -> None:
        """Raise :class:`UngradableGold` if math-verify cannot parse ``gold`` (checked once per gold)."""
        if self._gold_ok.get(gold) is None:
            self.check(gold, "\\boxed{}", timeout_s, count=False)
        elif not self._gold_ok[gold]:
            raise UngradableGold(gold, "math")

    def close(self) -> None:
        """Stop the worker subprocess (if any)."""
        proc, self._proc = self._proc, None
        self._buf = b""
        if proc is not None and self._proc_pid_owner == os.getpid():
            try:
                proc.kill()
                proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream is not None:
                        stream.close()
                except Exception:  # noqa: BLE001
                    pass

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown ordering varies
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # -- thread backend ---------------------------------------------------------------------------
    def _check_thread(self, gold: str, pred: str, limit: float) -> _Outcome:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["res"] = _mathverify_worker.check(gold, pred)
            except Exception as err:  # noqa: BLE001
                box["err"] = err

        worker = threading.Thread(target=target, name="t3s-math-verify", daemon=True)
        worker.start()
        worker.join(limit)
        if worker.is_alive():
            return _Outcome(True, None, False, timed_out=True)
        if "err" in box:
            self.num_worker_errors += 1
            return _Outcome(True, None, False)
        res = box["res"]
        return _Outcome(bool(res["gold_ok"]), res["extracted"], bool(res["correct"]))

    # -- process backend --------------------------------------------------------------------------
    def _start_worker(self) -> None:
        self.close()
        path = str(Path(_mathverify_worker.__file__).resolve())
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_BOOT, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        self._proc_pid_owner = os.getpid()
        self._buf = b""
        ready = self._read_line(time.monotonic() + self.startup_timeout_s)
        if ready is None or not ready.get("ready"):
            self.close()
            raise RuntimeError("math-verify worker subprocess failed to start (is math-verify installed?)")

    def _read_line(self, deadline: float) -> dict[str, Any] | None:
        """Next JSON line from the worker; None on timeout or EOF."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _check_process(self, gold: str, pred: str, limit: float) -> _Outcome:
        if self._proc is None or self._proc.poll() is not None or self._proc_pid_owner != os.getpid():
            if self._proc_pid_owner != os.getpid():
                self._proc = None  # inherited through fork: belongs to the parent process
            self._start_worker()
        assert self._proc is not None and self._proc.stdin is not None
        self._next_id += 1
        req_id = self._next_id
        payload = json.dumps({"id": req_id, "gold": gold, "pred": pred}) + "\n"
        deadline = time.monotonic() + limit
        try:
            self._proc.stdin.write(payload.encode())
            self._proc.stdin.flush()
            res = self._read_line(deadline)
            while res is not None and res.get("id") != req_id:  # stale answer (should not happen)
                res = self._read_line(deadline)
        except (BrokenPipeError, OSError, ValueError):
            res = None
        if res is None:
            timed_out = time.monotonic() >= deadline
            self.close()  # kill the runaway (or dead) worker; the next call starts a fresh one
            if not timed_out:
                self.num_worker_errors += 1
            return _Outcome(True, None, False, timed_out=timed_out)
        if "error" in res:
            self.num_worker_errors += 1
            return _Outcome(True, None, False)
        return _Outcome(bool(res["gold_ok"]), res["extracted"], bool(res["correct"]))


_DEFAULT_VERIFIER: MathVerifier | None = None


def get_math_verifier() -> MathVerifier:
    """The process-wide default :class:`MathVerifier` (process backend, 3 s limit), created lazily."""
    global _DEFAULT_VERIFIER
    if _DEFAULT_VERIFIER is None:
        _DEFAULT_VERIFIER = MathVerifier(timeout_s=DEFAULT_MATH_TIMEOUT_S)
        atexit.register(_DEFAULT_VERIFIER.close)
    return _DEFAULT_VERIFIER
