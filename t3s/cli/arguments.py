"""The command line of an analysis command: its function's signature and docstring are its options and help.

jsonargparse builds the parser (``add_function_arguments``), and argparse's own features give the shell
spellings: a list parameter takes space-separated values (``--seeds 0 1 2``, ``nargs="+"``), a command's
first parameter may be given bare (``t3s report RUN RUN``, a positional argument; ``--runs`` still works) and
a mapping parameter takes its keys one by one (``--vllm.tensor_parallel_size 2``: jsonargparse's ``dict``
keys, values read as YAML).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from t3s.cli.messages import usage_error_line
from t3s.errors import UsageError

#: The key of the option spelling (``--runs``) of a parameter that is also positional (``t3s report RUN``).
OPTION_SUFFIX = "_option"


def list_item_type(annotation: Any) -> type | None:
    """``int`` for ``list[int]`` (and ``list[int] | None``); ``None`` for a parameter that is not a list."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    for arg in args:
        if typing.get_origin(arg) is list:
            (item,) = typing.get_args(arg) or (str,)
            return item if isinstance(item, type) else str
    return None


def list_values(item: type) -> Callable[[str], Any]:
    """An argparse ``type`` for one value of a list option: ``item(value)``, or, for the bracketed spelling of
    earlier releases (``--seeds [0,1]``), the list it writes (flattened by :func:`flat_list`)."""

    def parse(value: Any) -> Any:
        if isinstance(value, list):  # jsonargparse checks parsed values again
            return [item(v) for v in value]
        if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
            import yaml

            return [item(v) for v in yaml.safe_load(value) or []]
        return item(value)

    parse.__name__ = item.__name__  # argparse names the type in its messages
    return parse


def flat_list(values: Any) -> Any:
    """A parsed list option with the bracketed spelling's lists spread out (``[[0, 1], 2]`` → ``[0, 1, 2]``)."""
    if not isinstance(values, list):
        return values
    return [v for value in values for v in (value if isinstance(value, list) else [value])]


def command_parser(prog: str, function: Callable[..., Any], positional: str | None = None) -> Any:
    """The parser of ``function``: one option per parameter (its docstring line as help), lists taking
    space-separated values, and ``positional`` (a parameter name) also given bare."""
    from jsonargparse import ArgumentParser

    hints = typing.get_type_hints(function)
    params = inspect.signature(function).parameters
    lists = {name: item for name in params if (item := list_item_type(hints.get(name))) is not None}
    described = ArgumentParser()
    described.add_function_arguments(function, as_positional=False)
    helps = {action.dest: action.help for action in described._actions}

    parser = ArgumentParser(prog=prog, description=(function.__doc__ or "").split("\n")[0],
                            allow_abbrev=False, exit_on_error=False)
    parser.add_function_arguments(function, as_positional=False, skip={*lists, *([positional] if positional else [])})
    for name, item in lists.items():
        if name != positional:
            default = params[name].default
            required = default is inspect.Parameter.empty
            parser.add_argument(f"--{name}", type=list_values(item), nargs="+", required=required,
                                default=None if required else default, help=helps.get(name))
    if positional:
        item = lists.get(positional, str)
        parser.add_argument(positional, type=list_values(item), nargs="*" if positional in lists else "?",
                            help=helps.get(positional))
        parser.add_argument(f"--{positional}", dest=positional + OPTION_SUFFIX, type=list_values(item),
                            nargs="+" if positional in lists else None, help=f"the same as the bare {positional}")
    return parser


def run_function(prog: str, function: Callable[..., Any], args: Sequence[str], positional: str | None = None) -> Any:
    """Parse ``args`` against ``function``'s signature (:func:`command_parser`) and call it.

    Raises:
        UsageError: one line naming the option (and a "did you mean").
    """
    from jsonargparse import ArgumentError

    parser = command_parser(prog, function, positional)
    try:
        values = parser.parse_args(list(args)).as_dict()
        values = {key: flat_list(value) for key, value in values.items()}
    except ArgumentError as err:
        options = [o for o in parser._option_string_actions if o.startswith("--")]
        raise UsageError(f"{prog}: {usage_error_line(str(err), options)}") from None
    if positional:
        given = values.pop(positional + OPTION_SUFFIX, None)
        values[positional] = values.get(positional) or given
        if not values[positional]:
            raise UsageError(f"{prog}: give {positional} (bare, e.g. `{prog} PATH`, or --{positional})")
    return function(**values)
