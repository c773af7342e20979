"""Where teacher traces come from: one :class:`TraceSource` per file, folder or hub dataset, and the list of
them (``data.sources``) that is mixed into one training set.

Mixing rule: each source is read with its own preset / fields / split / subset / revision, keeps its own
``limit`` (a reproducible random subset, drawn with ``data.seed`` and counted after the overlong filter), and
the sources are concatenated in list order; ``data.limit`` then draws a subset of the whole. The step sampler
shuffles the mixed set every epoch, so each step draws from all sources in proportion to their sizes. With more
than one source, record ids are prefixed with the source's position (``"0:abc"``, ``"1:17"``) so two sources
may reuse ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from t3s.data.fields import FIELD_PRESETS, FieldMapping
from t3s.data.schema import TraceDataError

__all__ = ["SOURCE_KEYS", "TraceSource", "parse_sources"]

SOURCE_KEYS = ("path", "preset", "fields", "split", "subset", "revision", "limit")


@dataclass(frozen=True)
class TraceSource:
    """One trace source.

    Attributes:
        path: A local .jsonl / .json / .csv / .parquet file, a folder of them, a ``save_to_disk`` folder, or a
            Hugging Face dataset id.
        preset: Field-mapping preset (``FIELD_PRESETS``).
        fields: Column overrides on top of the preset.
        split: Split of a hub or ``save_to_disk`` dataset (in a folder, the files naming it, if any).
        subset: Hub dataset configuration (``load_dataset(path, subset)``).
        revision: Hub dataset revision (branch, tag or commit).
        limit: Keep a reproducible random subset of this many traces.
    """

    path: str
    preset: str = "default"
    fields: Mapping[str, str | None] | None = field(default=None, hash=False)
    split: str = "train"
    subset: str | None = None
    revision: str | None = None
    limit: int | None = None

    @property
    def mapping(self) -> FieldMapping:
        """The preset with the field overrides."""
        return FIELD_PRESETS[self.preset].with_overrides(dict(self.fields) if self.fields else None)

    def describe(self) -> dict[str, Any]:
        """The source as plain values (fingerprints, logs)."""
        return {
            "path": self.path,
            "preset": self.preset,
            "fields": dict(self.fields) if self.fields else None,
            "split": self.split,
            "subset": self.subset,
            "revision": self.revision,
            "limit": self.limit,
        }


def _check(source: TraceSource, where: str) -> TraceSource:
    if not source.path:
        raise TraceDataError(f"{where}: no path: name a file, folder or Hugging Face dataset id")
    if source.preset not in FIELD_PRESETS:
        raise TraceDataError(f"{where}: unknown preset {source.preset!r}; known: {', '.join(FIELD_PRESETS)}")
    if source.limit is not None and (isinstance(source.limit, bool) or not isinstance(source.limit, int)
                                     or source.limit < 1):
        raise TraceDataError(f"{where}: limit must be a positive number of traces, got {source.limit!r}")
    source.mapping  # noqa: B018 - unknown field keys raise here, before anything is read
    return source


def parse_sources(entries: Sequence[str | Mapping[str, Any]], defaults: TraceSource) -> list[TraceSource]:
    """``data.sources`` as :class:`TraceSource` s: a string is a path; a mapping takes the keys of
    :data:`SOURCE_KEYS`. ``preset``, ``fields``, ``split``, ``subset`` and ``revision`` default to the data
    module's own; ``limit`` does not (``data.limit`` applies to the mixed set)."""
    if isinstance(entries, (str, Mapping)) or not entries:
        raise TraceDataError("data.sources must be a non-empty list of paths or {path: ..., limit: ...} entries")
    sources = []
    for k, entry in enumerate(entries):
        where = f"data.sources[{k}]"
        if isinstance(entry, str):
            sources.append(_check(TraceSource(entry, defaults.preset, defaults.fields, defaults.split,
                                              defaults.subset, defaults.revision), where))
            continue
        if not isinstance(entry, Mapping):
            raise TraceDataError(f"{where}: expected a path or a mapping, got {type(entry).__name__}")
        unknown = sorted(set(entry) - set(SOURCE_KEYS))
        if unknown:
            raise TraceDataError(f"{where}: unknown key(s) {unknown}; known: {', '.join(SOURCE_KEYS)}")
        values = {
            "preset": defaults.preset,
            "fields": defaults.fields,
            "split": defaults.split,
            "subset": defaults.subset,
            "revision": defaults.revision,
            "limit": None,
            **entry,
        }
        values["path"] = str(values.get("path") or "")
        sources.append(_check(TraceSource(**values), where))
    return sources
