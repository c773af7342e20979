"""The command line of an analysis command: its function's signature and docstring are its options and help
(jsonargparse), with the shell-style spellings jsonargparse does not take rewritten first: a positional list
(``t3s report RUN RUN``), space-separated lists (``--seeds 0 1 2``) and mapping keys (``--vllm.dtype bf16``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from t3s.cli.messages import usage_error_line
from t3s.errors import UsageError


def run_function(prog: str, function: Callable[..., Any], args: Sequence[str], positional: str | None = None,
                 lists: Sequence[str] = (), mappings: Sequence[str] = (), single: bool = False) -> Any:
    """Parse ``args`` against ``function``'s signature (its docstring as help) and call it.

    Args:
        prog: the command as typed (``t3s report``), for help and errors.
        function: the command.
        args: the command line after the command's name.
        positional: the option that leading bare values fill (``--runs``).
        lists: options that take space-separated values (``--seeds 0 1 2``).
        mappings: options whose keys may be given one by one (``--vllm.tensor_parallel_size 2``).
        single: the positional option takes one value, not a list.

    Raises:
        UsageError: one line naming the option (and a "did you mean").
    """
    from jsonargparse import ArgumentError, ArgumentParser

    parser = ArgumentParser(prog=prog, description=(function.__doc__ or "").split("\n")[0],
                            allow_abbrev=False, exit_on_error=False)
    parser.add_function_arguments(function, as_positional=False)
    args = _collect_list(list(args), positional, *lists, single=single)
    for flag in mappings:
        args = _collect_mapping(args, flag)
    try:
        cfg = parser.parse_args(args)
    except ArgumentError as err:
        options = [o for o in parser._option_string_actions if o.startswith("--")]
        raise UsageError(f"{prog}: {usage_error_line(str(err), options)}") from None
    return function(**cfg.as_dict())


def _collect_list(args: list[str], positional: str | None, *flags: str, single: bool = False) -> list[str]:
    """Shell-style lists: ``report RUN RUN --output D`` and ``--seeds 0 1 2`` become JSON list values."""
    out: list[str] = []
    i = 0
    if positional is not None:
        n = next((j for j, a in enumerate(args) if a.startswith("-")), len(args))
        if n:  # ``single``: one positional value, given as it is
            out += [positional, args[0] if single and n == 1 else json.dumps(args[:n])]
        i = n
    while i < len(args):
        if args[i] in flags:
            j = i + 1
            while j < len(args) and not args[j].startswith("--"):
                j += 1
            values = args[i + 1 : j]
            if len(values) == 1 and values[0].startswith("["):  # already a list literal
                out += [args[i], values[0]]
                i = j
                continue
            out += [args[i], json.dumps([int(v) if v.lstrip("-").isdigit() else v for v in values])]
            i = j
        else:
            out.append(args[i])
            i += 1
    return out


def _collect_mapping(args: list[str], flag: str) -> list[str]:
    """``--vllm.tensor_parallel_size 2 --vllm.dtype=bfloat16`` become one ``--vllm '{"tensor_parallel_size": 2, …}'``
    (values read as YAML scalars: numbers, booleans, strings)."""
    import yaml

    mapping: dict[str, Any] = {}
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith(flag + "."):
            key, eq, value = arg[len(flag) + 1 :].partition("=")
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"{arg} needs a value")
                value, i = args[i + 1], i + 1
            mapping[key] = yaml.safe_load(value)
        elif arg == flag and i + 1 < len(args):
            mapping.update(yaml.safe_load(args[i + 1]) or {})
            i += 1
        else:
            out.append(arg)
        i += 1
    return [*out, flag, json.dumps(mapping)] if mapping else out
