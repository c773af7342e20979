"""The flat config keys of one release ago, read by every command that parses a training config.

``model.init_args.lr`` is ``model.init_args.optimizer.lr`` now, ``data.packing`` is ``data.batching.packing``
(the tables: :data:`t3s.students.args.STUDENT_FLAT_KEYS`, :data:`t3s.data.args.DATA_FLAT_KEYS`). Until the next
release both spellings are read: :func:`nest_config` moves the flat keys of a loaded config (a YAML file, a
saved ``config.yaml``, the ``--data`` mapping of ``t3s score``) into their groups, :func:`nest_argv` does the
same for ``--model.init_args.<key>`` / ``--data.<key>`` options, and :class:`FlatKeyParser` applies
:func:`nest_config` to every config jsonargparse loads. Each spelling is noted once, in one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser

from t3s.arg_groups import nest_section, note_flat_keys
from t3s.data.args import DATA_FLAT_KEYS
from t3s.students.args import STUDENT_FLAT_KEYS

#: ``--<prefix><key>`` options and the table of their flat keys
OPTION_PREFIXES = {"--model.init_args.": STUDENT_FLAT_KEYS, "--data.": DATA_FLAT_KEYS}


def nest_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A loaded config (``{"model": {"class_path", "init_args"}, "data": {...}, ...}``) with the flat keys of
    ``model.init_args`` and ``data`` moved into their groups; everything else as it is."""
    out = dict(config)
    model = out.get("model")
    if isinstance(model, Mapping):
        if isinstance(model.get("init_args"), Mapping):
            model = {**model, "init_args": nest_section(model["init_args"], STUDENT_FLAT_KEYS, "model.init_args")}
        elif "class_path" in model:  # init_args written beside class_path
            model = nest_section(model, STUDENT_FLAT_KEYS, "model.init_args")
        out["model"] = model
    if isinstance(out.get("data"), Mapping):
        out["data"] = nest_section(out["data"], DATA_FLAT_KEYS, "data")
    return out


def nest_argv(args: Sequence[str]) -> list[str]:
    """Command-line options with their flat keys spelled in their groups
    (``--data.packing=false`` → ``--data.batching.packing=false``); every other argument as it is."""
    out: list[str] = []
    moved: dict[str, list[str]] = {}
    for arg in args:
        option, eq, value = arg.partition("=")
        for prefix, table in OPTION_PREFIXES.items():
            key, dot, rest = (option[len(prefix):] if option.startswith(prefix) else "").partition(".")
            if key in table:  # --data.fields.reasoning=col too
                arg = f"{prefix}{table[key]}{dot}{rest}{eq}{value}"
                moved.setdefault(prefix, []).append(key)
                break
        out.append(arg)
    for prefix, keys in moved.items():
        note_flat_keys(keys, OPTION_PREFIXES[prefix], prefix[2:].rstrip("."))
    return out


class FlatKeyParser(LightningArgumentParser):
    """LightningCLI's parser, reading the flat keys of one release ago in every config it loads.

    ``_apply_actions`` is where jsonargparse (4.x) applies a loaded config mapping (a ``--config`` file, a
    default config file, ``parse_object``) to the parser: the one hook every config passes through. A private
    method: ``tests/test_arg_groups.py`` parses flat packaged configs through it.
    """

    def _apply_actions(self, cfg: Any, parent_key: str = "", prev_cfg: Any = None, skip_fn: Any = None) -> Any:
        if isinstance(cfg, dict) and not parent_key:
            cfg = nest_config(cfg)
        return super()._apply_actions(cfg, parent_key=parent_key, prev_cfg=prev_cfg, skip_fn=skip_fn)
