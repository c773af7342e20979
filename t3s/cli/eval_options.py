"""``--eval.<option> VALUE`` on the ``fit`` command line: a ``BenchmarkCallback`` argument for every benchmark
callback of the config (jsonargparse's ``--trainer.callbacks.init_args.<option>`` reaches only the last
callback of the list), and the one-line hint for ``--trainer.accumulate_grad_batches``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import yaml

from t3s.cli.messages import usage_error_line
from t3s.errors import ConfigError, UsageError

__all__ = ["PREFIX", "apply_eval_options", "check_accumulation", "set_callback_option", "split_eval_options"]

PREFIX = "--eval."


def _parameters() -> dict[str, inspect.Parameter]:
    from t3s.evals.callbacks import BenchmarkCallback

    return dict(inspect.signature(BenchmarkCallback.__init__).parameters)


def _check_type(option: str, value: Any, default: Any) -> None:
    """Values whose default is a plain bool / int / float / str must have that type (YAML-parsed)."""
    kind = type(default)
    if default is None or kind not in (bool, int, float, str):
        return
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    ok = ok or (kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise UsageError(f"{PREFIX}{option}: expected {'an' if kind is int else 'a'} {kind.__name__}, got {value!r}")


def split_eval_options(args: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """``args`` without the ``--eval.<option>`` pairs (``--eval.x=V`` or ``--eval.x V``), and those options
    with their values read as YAML (``5``, ``true``, ``[aime24, math500]``, ``{n: 4}``)."""
    rest: list[str] = []
    options: dict[str, Any] = {}
    params: dict[str, inspect.Parameter] | None = None
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if not arg.startswith(PREFIX):
            rest.append(arg)
            i += 1
            continue
        name, has_value, text = arg[len(PREFIX):].partition("=")
        if not has_value:
            if i + 1 >= len(items):
                raise UsageError(f"{PREFIX}{name} needs a value")
            text, i = items[i + 1], i + 1
        i += 1
        params = params if params is not None else _parameters()
        if name not in params or name == "self":
            known = [f"{PREFIX}{p}" for p in params if p != "self"]
            raise UsageError(usage_error_line(f"unrecognized arguments: {PREFIX}{name}", known))
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        _check_type(name, value, params[name].default)
        options[name] = value
    return rest, options


def apply_eval_options(config: Any, options: dict[str, Any]) -> None:
    """Set ``options`` on every ``BenchmarkCallback`` of ``trainer.callbacks`` (one-line error if none)."""
    if not options:
        return
    callbacks = [c for c in config.get("trainer.callbacks") or []
                 if str(getattr(c, "class_path", "")).endswith("BenchmarkCallback")]
    if not callbacks:
        given = " ".join(f"{PREFIX}{k}" for k in options)
        raise ConfigError(f"{given}: the config has no t3s.evals.BenchmarkCallback in trainer.callbacks")
    for callback in callbacks:
        for name, value in options.items():
            set_callback_option(callback.init_args, name, value)


def set_callback_option(init_args: Any, name: str, value: Any) -> None:
    """Set one ``BenchmarkCallback`` argument on a parsed config's ``init_args``: a group's field (``tasks``,
    ``mode``, …) inside its group when the config writes the group (``suite: {…}``), else the flat key."""
    from t3s.evals.callback_settings import group_of

    group = group_of(name)
    section = init_args.get(group) if group is not None else None
    if section is not None and not isinstance(section, dict):
        setattr(section, name, value)
    elif isinstance(section, dict):
        section[name] = value
    else:
        setattr(init_args, name, value)


def check_accumulation(config: Any) -> None:
    """``trainer.accumulate_grad_batches`` is not how a t3s step is sized: one line pointing to the data
    options."""
    value = config.get("trainer.accumulate_grad_batches")
    if value not in (None, 1):
        raise ConfigError(
            f"--trainer.accumulate_grad_batches {value}: t3s steps are sized by the data module; one optimizer "
            "step takes data.global_batch_size traces in micro-batches of data.batching.micro_batch_size rows (e.g. "
            "--data.global_batch_size 64 --data.batching.micro_batch_size 4 accumulates over 16 micro-batches on "
            "one GPU)"
        )
