"""The user's mistakes: :class:`T3SError` and the two errors of the command line itself.

Every error t3s raises about the user's input (a config, a data file, a checkpoint folder, an option, a
setting) subclasses :class:`T3SError`; the command line (:mod:`t3s.cli`) catches that one class and prints
the message as one line (exit code 2; ``T3S_DEBUG=1`` shows the traceback instead). A room raising a new kind
of user error subclasses :class:`T3SError` (usually beside ``ValueError``) and the command line needs no edit.

A leaf: it imports nothing from t3s (and only the standard library), so any room may import it.
"""

from __future__ import annotations

__all__ = ["DEBUG_ENV", "ConfigError", "T3SError", "UsageError"]

#: Set ``T3S_DEBUG=1`` to get the full traceback of a user error instead of its one line.
DEBUG_ENV = "T3S_DEBUG"


class T3SError(Exception):
    """A user's input that t3s cannot use: printed by the command line as one line, exit code 2."""


class ConfigError(T3SError, ValueError):
    """A config file (or a section of it) that does not parse or does not build."""


class UsageError(T3SError, ValueError):
    """A command line that does not parse (unknown option, wrong type)."""
