"""``t3s traces generate | verify | select``: parse the arguments of one action and run it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def _actions() -> dict[str, Callable[..., Any]]:
    from t3s.traces.generate import generate_traces
    from t3s.traces.select import select_traces
    from t3s.traces.verify import verify_traces

    return {"generate": generate_traces, "verify": verify_traces, "select": select_traces}


USAGE = ("usage: t3s traces generate --teacher MODEL --problems FILE --n K --out FILE | "
         "t3s traces verify FILE [--grader math] | t3s traces select FILE --n N [--rule verified|length|random]")


def traces_main(args: Sequence[str]) -> Any:
    """Run ``t3s traces <action> ...`` (``--help`` after the action lists its options)."""
    from jsonargparse import ArgumentError, ArgumentParser

    from t3s.cli.messages import usage_error_line
    from t3s.errors import UsageError

    args = list(args)
    actions = _actions()
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return None
    action, rest = args[0], args[1:]
    if action not in actions:
        raise UsageError(f"t3s traces: unknown action {action!r}; {USAGE}")
    function = actions[action]
    if action in ("verify", "select") and rest and not rest[0].startswith("-"):
        rest = ["--path", rest[0], *rest[1:]]  # the trace file, positional
    parser = ArgumentParser(prog=f"t3s traces {action}", description=(function.__doc__ or "").split("\n")[0],
                            allow_abbrev=False, exit_on_error=False)
    parser.add_function_arguments(function, as_positional=False)
    try:
        cfg = parser.parse_args(rest)
    except ArgumentError as err:
        options = [o for o in parser._option_string_actions if o.startswith("--")]
        raise UsageError(f"t3s traces {action}: {usage_error_line(str(err), options)}") from None
    return function(**cfg.as_dict())
