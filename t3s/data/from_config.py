"""One road from a training config to its ``TeacherTraceDataModule``.

Every command that needs a config's traces goes through here: ``t3s score`` (a config file),
``t3s evaluate`` and ``t3s diagnose`` (a run's saved ``config.yaml``), and ``t3s fit`` (LightningCLI
parses the same ``data`` section, then anchors its paths with :func:`anchor_data_paths`).

- :func:`data_section` reads a config file's ``data`` section, its ``${…}`` interpolations resolved, without
  touching ``model`` (resolving it could build a toy θ_0) and without changing the working directory;
- :func:`anchor_data_paths` makes relative file paths mean the config file's folder, as ``fit`` does;
- :func:`datamodule_from_config` checks the section against the data module's signature (one line naming the
  key) and builds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from t3s.arg_groups import merge_sections, nest_section
from t3s.errors import ConfigError

__all__ = ["DATA_PATH_KEYS", "anchor_data_paths", "data_section", "datamodule_from_config"]

#: ``data`` options that name files; relative values are anchored at the config file's folder.
DATA_PATH_KEYS = ("path", "tokenizer", "val_path", "template.chat_template")


def data_section(config_file: str | Path) -> dict[str, Any]:
    """The ``data`` section of a training config file, interpolations resolved (``{}`` when it has none)."""
    from omegaconf import OmegaConf

    loaded = OmegaConf.load(Path(config_file))
    if "data" not in loaded:
        return {}
    return dict(OmegaConf.to_container(loaded.data, resolve=True))  # type: ignore[arg-type]


def _anchored(value: Any, config_files: Sequence[Path]) -> str | None:
    """``value`` as an absolute path when it is a relative path that exists beside a config file (last first)."""
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        return None
    for file in reversed(config_files):
        candidate = Path(file).parent / value
        if candidate.exists():
            return str(candidate.resolve())
    return None


def anchor_data_paths(config: Any, config_files: Sequence[Path], prefix: str = "data.") -> None:
    """Rewrite ``data.path`` / ``data.tokenizer`` / ``data.val_path`` / ``data.template.chat_template`` and the paths of
    ``data.sources`` that exist relative to a config file's folder (the last file first) as absolute paths;
    anything else (hub ids, cwd-relative paths, template names) is kept.

    ``config`` is a parsed ``fit`` config (jsonargparse namespace, keys ``data.*``; the student's linked
    ``model.init_args.tokenizer`` follows ``data.tokenizer``).
    """
    get = config.get
    for key in DATA_PATH_KEYS:
        value = get(f"{prefix}{key}")
        anchored = _anchored(value, config_files)
        if anchored is None:
            continue
        config[f"{prefix}{key}"] = anchored
        if prefix and key == "tokenizer" and get("model.init_args.tokenizer") == value:  # the linked copy
            config["model.init_args.tokenizer"] = anchored
    sources = get(f"{prefix}sources")
    for k, source in enumerate(sources if isinstance(sources, list) else []):
        anchored = _anchored(source.get("path") if isinstance(source, dict) else source, config_files)
        if anchored is not None:
            sources[k] = {**source, "path": anchored} if isinstance(source, dict) else anchored


def datamodule_from_config(data: Mapping[str, Any] | str | Path, overrides: Mapping[str, Any] | None = None,
                           config_files: Sequence[Path] = (), origin: str | None = None) -> Any:
    """A ``TeacherTraceDataModule`` from a config's ``data`` section.

    Args:
        data: the section (a mapping), or a training config file whose section is read (:func:`data_section`;
            its relative paths then mean the file's folder).
        overrides: options set on top of the section, as ``fit`` spells them (``{"limit": 32}``).
        config_files: the files the section came from (relative paths are anchored at their folders).
        origin: what the one-line error names (default: the config file, else ``data``).

    Raises:
        ConfigError: the section does not fit the data module's arguments (the line names the key).
    """
    from jsonargparse import ArgumentParser, Namespace, dict_to_namespace

    from t3s.data.args import DATA_FLAT_KEYS
    from t3s.data.module import TeacherTraceDataModule

    if isinstance(data, (str, Path)):
        config_files, origin = [*config_files, Path(data).resolve()], origin or str(data)
        data = data_section(data)
    anchored = Namespace(data=dict_to_namespace(nest_section(dict(data), DATA_FLAT_KEYS, "data")))
    anchor_data_paths(anchored, [Path(f) for f in config_files])
    section = merge_sections(anchored.data.as_dict(), nest_section(dict(overrides or {}), DATA_FLAT_KEYS, "data"))
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(TeacherTraceDataModule, "data")
    try:
        namespace = parser.parse_object({"data": section})
    except Exception as err:  # jsonargparse reports the offending key
        raise ConfigError(f"{origin or 'data'}: invalid data section: {str(err).splitlines()[0]}") from None
    return parser.instantiate_classes(namespace).data
