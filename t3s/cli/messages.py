"""What the command line tells a user who made a mistake: a parser's message (jsonargparse, several lines,
nested per class) as one line with a "did you mean", and the one line of a user error. Standard library
only at import.

Which errors are the user's is one class, :class:`t3s.errors.T3SError`, plus a few raised by libraries
(:func:`user_errors`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import sys
from collections.abc import Sequence

from t3s.errors import T3SError


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's input, not a bug: printed as one line, exit code 2.

    t3s's own are :class:`~t3s.errors.T3SError`; besides them a missing file, a missing optional package a
    config asks for (flash-attn, vllm; raised when the model is built inside fit), Lightning's refusal of a
    trainer setting and a ``${…}`` resolver's refusal (``${toy_base:DIR}``), looked up only when the command
    imported their library.
    """
    errors: list[type[BaseException]] = [T3SError, FileNotFoundError, ImportError]
    for module_name, name in (("lightning.fabric.utilities.exceptions", "MisconfigurationException"),
                              ("omegaconf.errors", "InterpolationResolutionError")):
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, name):
            errors.append(getattr(module, name))
    return tuple(errors)


def error_line(err: BaseException) -> str:
    """The one line printed for a user error: its message on one line; for a failed ``${…}`` interpolation,
    the config key and the resolver's own message (OmegaConf adds the exception type and its object dump)."""
    message = str(err)
    if type(err).__name__ == "InterpolationResolutionError":
        first = message.strip().splitlines()[0] if message.strip() else ""
        first = re.sub(r"^\w+ raised while resolving interpolation: ", "", first)
        key = getattr(err, "full_key", None)
        message = f"{key}: {first}" if key else first
    return " ".join(message.split()) or type(err).__name__


def usage_error_line(message: str, known_options: Sequence[str]) -> str:
    """jsonargparse's parse error (several lines, nested per class) → one line naming the key, with a suggestion."""
    message = message.split("error:", 1)[-1].strip() if "error:" in message else message.strip()
    unknown = re.match(r"unrecognized arguments: (\S+)", message)
    if unknown:
        option = unknown.group(1).split("=", 1)[0]
        return f"unknown option {option}{_did_you_mean(option, known_options)}"
    keys = re.findall(r'Parser key "([\w.]+)"', message)
    key = ".init_args.".join(keys) if keys else ""
    rejected = re.search(r"class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", message)
    if rejected:
        class_path, option = rejected.groups()
        full = f"{key}.init_args.{option}" if key else option
        candidates = _init_parameters(class_path)  # a grouped key (optimizer.lr) is matched by its last part
        by_last = {c.rsplit(".", 1)[-1]: c for c in reversed(candidates)}
        close = difflib.get_close_matches(option, list(by_last), n=1, cutoff=0.6)
        hint = f" (did you mean {by_last[close[0]]}?)" if close else ""
        return f"unknown option {full}: {class_path} has no argument {option!r}{hint}"
    missing_class = re.search(
        r"(?:Expected a dot import path string|module '[\w.]+' has no attribute) ?:? ?'?([\w.]+)'?", message
    )
    if missing_class and "not accessible" in message:
        given = re.search(r"Expected a path but (\S+) either not accessible", message)
        name = given.group(1) if given else missing_class.group(1)
        return f"{key or 'value'}: no class {name!r}" + _class_choices(key)
    lines = [line.strip().lstrip("- ").strip() for line in message.splitlines()]
    noise = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value type:",
             "Expected a <class 'NoneType'>", "Given value:")
    kept = [line for line in lines if line and not line.startswith(noise)]
    return " ".join(kept) if kept else message


def _class_choices(key: str) -> str:
    """For a ``selection`` key: the strategies one can name (short names work, e.g. ``T3S``)."""
    if not key.endswith("selection"):
        return ""
    import t3s.selection as selection

    names = [n for n in selection.__all__ if isinstance(getattr(selection, n), type)
             and issubclass(getattr(selection, n), selection.TokenSelectionStrategy)
             and n != "TokenSelectionStrategy"]
    return f"; strategies: {', '.join(f't3s.selection.{n}' for n in names)}"


def _did_you_mean(given: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(given, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _init_parameters(class_path: str) -> list[str]:
    from jsonargparse.typing import import_object

    try:
        cls = import_object(class_path)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []  # a family's own arguments, then those it forwards to its base with **kwargs
    for klass in getattr(cls, "__mro__", [cls]):
        if "__init__" in vars(klass):
            for name, param in inspect.signature(klass.__init__).parameters.items():
                if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    names.append(name)
                    if dataclasses.is_dataclass(param.default):  # an argument group: its keys too
                        names += [f"{name}.{f.name}" for f in dataclasses.fields(param.default)]
    return list(dict.fromkeys(names))
