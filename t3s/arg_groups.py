"""Constructor arguments in documented groups (LitGPT ``args.py`` style), and the flat spellings of one release.

A group is a dataclass whose ``__post_init__`` checks its values with a one-line error. A constructor declares
it with a default instance (so ``--print_config`` shows every key, and jsonargparse reports a failed check as
it is) and takes an instance, a mapping (a saved ``config.yaml``, Python callers) or ``None``: :func:`as_group`.

Before the groups, every key was a constructor argument of its own (``model.init_args.lr``, ``data.packing``).
Those flat keys are still read for one release: :func:`nest_flat_keys` moves them into their group (the one
place that knows how), and :func:`note_flat_keys` says once, in one line, what to write instead.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

log = logging.getLogger(__name__)

G = TypeVar("G")

#: ``(where, key)`` pairs already noted in this process (one note per spelling, not one per construction).
_NOTED: set[tuple[str, str]] = set()


def as_group(value: G | Mapping[str, Any] | None, cls: type[G], where: str) -> G:
    """``value`` as a fresh ``cls`` instance: ``None`` gives the defaults, a mapping its fields (an unknown key is
    a one-line ``ValueError`` naming ``where``), an instance is copied (a signature's default is never shared)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return dataclasses.replace(value)  # type: ignore[type-var]
    if isinstance(value, Mapping):
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**value)
    raise ValueError(f"{where} must be a mapping or null, got {value!r}")


def group_dict(value: Any) -> dict[str, Any]:
    """A group as a plain mapping (tuples as lists), as hyper-parameters and checkpoints store it."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(value).items()}


def nest_flat_keys(section: Mapping[str, Any], flat_keys: Mapping[str, str],
                   where: str) -> tuple[dict[str, Any], list[str]]:
    """``section`` with every flat key of ``flat_keys`` (``{"lr": "optimizer.lr", ...}``) moved into its group.

    Returns the nested mapping and the flat keys it moved. A key given both ways (an old config partly
    updated) takes the flat value, with a one-line warning. A group given as an object (not a mapping) is kept,
    the flat keys replacing its fields.
    """
    out = dict(section)
    moved: list[str] = []
    for key, target in flat_keys.items():
        if key not in out:
            continue
        group, field = target.split(".", 1)
        node = out.get(group)
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            out[group] = dataclasses.replace(node, **{field: out.pop(key)})
        else:
            node = dict(node or {})
            if field in node and node[field] != out[key]:  # a config of one release ago, partly updated
                log.warning("%s.%s and %s.%s are the same setting, given both ways: the flat value %r is used",
                            where, key, where, target, out[key])
            node[field] = out.pop(key)
            out[group] = node
        moved.append(key)
    return out, moved


def note_flat_keys(moved: list[str], flat_keys: Mapping[str, str], where: str) -> None:
    """One line, once per spelling and process: the flat keys read and the grouped keys that replace them."""
    fresh = [k for k in moved if (where, k) not in _NOTED]
    if not fresh:
        return
    _NOTED.update((where, k) for k in fresh)
    pairs = ", ".join(f"{where}.{k} → {where}.{flat_keys[k]}" for k in fresh)
    log.warning("deprecated flat keys (read until the next release): %s", pairs)


def nest_section(section: Mapping[str, Any], flat_keys: Mapping[str, str], where: str) -> dict[str, Any]:
    """One section with its flat keys in their groups (noted once)."""
    nested, moved = nest_flat_keys(section, flat_keys, where)
    note_flat_keys(moved, flat_keys, where)
    return nested


def merge_sections(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``, a group (a mapping in both) merged key by key."""
    out = dict(base)
    for key, value in update.items():
        both = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = {**out[key], **value} if both else value
    return out
