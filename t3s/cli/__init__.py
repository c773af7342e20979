"""The ``t3s`` command line: one module per command.

- :mod:`~t3s.cli.main`: the dispatcher (``t3s --help``, user errors as one line); standard library at import.
- :mod:`~t3s.cli.fit`: ``t3s fit`` (parse → choose the path: plain fit, online, recipe → hand over once);
  :mod:`~t3s.cli.lightning_cli`: LightningCLI for ``fit`` / ``validate`` / ``test`` / ``predict``;
  :mod:`~t3s.cli.eval_options`: ``--eval.<argument>``.
- ``evaluate``, ``score``, ``diagnose``, ``rrt``, ``grade``, ``report``, ``compare``, ``traces``: a module
  each, whose ``run`` function is the command (:mod:`~t3s.cli.arguments` turns its signature into options).
- :mod:`~t3s.cli.configs` (config names, the checks before torch is imported), :mod:`~t3s.cli.messages`
  (parser messages as one line), :mod:`~t3s.cli.process` (process-wide state).

Adding a command: one module here with a ``run`` function, and its name in
:data:`t3s.cli.main.ANALYSIS_COMMANDS`.
"""

from __future__ import annotations

from t3s.cli.main import help_text, main
from t3s.cli.process import configure_process

__all__ = ["configure_process", "help_text", "main"]
