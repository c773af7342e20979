"""``t3s traces``: teacher traces from problems, three actions of their own (:mod:`t3s.traces.cli`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def run() -> None:
    """teacher traces from problems: generate | verify | select (`t3s traces --help`)"""


def main(args: Sequence[str]) -> Any:
    """``t3s traces <action> …``: the actions parse their own options."""
    from t3s.traces.cli import traces_main

    return traces_main(args)
