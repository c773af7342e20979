"""Reading rows from data files: the one row reader behind teacher traces and benchmark tasks.

:func:`iter_rows` yields ``(location, row)`` pairs from a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file
(``location`` is ``"file:line"``, 1-based; a Parquet row number for Parquet), a folder of such files, a
``datasets.save_to_disk`` folder, or a Hugging Face dataset id.
Input is held to strict JSON: numbers longer than :data:`MAX_NUMBER_DIGITS` digits, non-finite numbers
(``NaN``, ``Infinity``, ``1e999``), nesting deeper than Python can parse, invalid UTF-8 and lone surrogate
escapes (``"\\ud800"``) all raise :class:`DataFileError` with one line naming the file and line.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from t3s.errors import T3SError

__all__ = [
    "LOCAL_SUFFIXES",
    "MAX_NUMBER_DIGITS",
    "DataFileError",
    "errors_as",
    "folder_files",
    "is_saved_dataset",
    "iter_file_rows",
    "iter_hub_rows",
    "iter_jsonl_rows",
    "iter_rows",
    "iter_saved_rows",
    "json_line",
    "parse_json",
]

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
#: Longest JSON number accepted (CPython refuses to convert longer integers to int by default).
MAX_NUMBER_DIGITS = 4_300

_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class DataFileError(T3SError, ValueError):
    """A data file (or one of its rows) cannot be used; the message is one line naming ``file:line``."""


@contextmanager
def errors_as(kind: type[DataFileError]) -> Iterator[None]:
    """Re-raise any :class:`DataFileError` inside the block as ``kind`` (a subclass), message unchanged."""
    try:
        yield
    except kind:
        raise
    except DataFileError as err:
        raise kind(str(err)) from None


class _BadValue(ValueError):
    """Raised by the JSON hooks; turned into a :class:`DataFileError` naming the location."""


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise _BadValue(f"a number has {len(text)} digits (at most {MAX_NUMBER_DIGITS} are accepted)")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS:
        raise _BadValue(f"a number has {len(text)} characters (at most {MAX_NUMBER_DIGITS} are accepted)")
    value = float(text)
    if not math.isfinite(value):
        raise _BadValue(f"the number {text[:40]} overflows to infinity")
    return value


def _parse_constant(name: str) -> Any:
    raise _BadValue(f"{name} is not a valid JSON value (non-finite numbers are refused)")


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates anywhere in a parsed value (they cannot be encoded, tokenized or written)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE_RE.search(item):
                raise _BadValue("a string holds a lone surrogate escape (e.g. \\ud800), which is not valid text")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json(text: str, where: str, what: str = "line", *, allow_surrogates: bool = False) -> Any:
    """Strict JSON (see the module docstring); errors are :class:`DataFileError` naming ``where`` and ``what``
    was read (a line, a file). ``allow_surrogates`` lets lone surrogate escapes through (text that is only
    searched and written back escaped, such as model responses being graded)."""
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
        if not allow_surrogates:
            _check_strings(value)
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{where}: {what} is not valid JSON ({exc.msg} at column {exc.colno})") from None
    except _BadValue as exc:
        raise DataFileError(f"{where}: {exc}") from None
    except RecursionError:
        raise DataFileError(f"{where}: JSON nested too deeply to read") from None
    return value


def json_line(obj: Any) -> str:
    """``obj`` as one JSON line (UTF-8 text); text holding lone surrogates is written with ``\\u`` escapes
    instead of failing the write."""
    line = json.dumps(obj, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(obj)
    return line + "\n"


def _utf8(data: bytes, name: str, first_line: int = 1) -> str:
    """Decode ``data`` (starting at line ``first_line`` of file ``name``), naming the line of a bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        raise DataFileError(f"{name}:{line}: line is not valid UTF-8 ({exc.reason})") from None


def _jsonl_rows(name: str, data: bytes, allow_surrogates: bool = False) -> Iterator[tuple[str, Any]]:
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = _utf8(raw, name, number).strip()
        if line:
            yield f"{name}:{number}", parse_json(line, f"{name}:{number}", allow_surrogates=allow_surrogates)


def _json_list_rows(name: str, text: str) -> Iterator[tuple[str, Any]]:
    """Items of a JSON array (or of a top-level ``{"data": [...]}``), each located by its first line."""
    try:
        items = parse_json(text, name, "file")
    except DataFileError:
        try:  # name the line of a syntax error
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{name}:{exc.lineno}: file is not valid JSON ({exc.msg})") from None
        except (ValueError, RecursionError):
            pass
        raise
    if isinstance(items, dict) and isinstance(items.get("data"), list):
        for number, item in enumerate(items["data"], start=1):
            yield f"{name}[{number}]", item
        return
    if isinstance(items, dict):  # a single record
        yield f"{name}:{1 + text.count(chr(10), 0, text.index('{'))}", items
        return
    if not isinstance(items, list):
        raise DataFileError(f"{name}: expected a JSON list of records, got {type(items).__name__}")
    decoder = json.JSONDecoder()
    at = text.index("[") + 1
    line = 1 + text.count("\n", 0, at)
    for item in items:
        start = at
        while text[at] in " \t\r\n,":  # the file parsed, so only whitespace and commas sit between items
            at += 1
        line += text.count("\n", start, at)
        yield f"{name}:{line}", item
        _, end = decoder.raw_decode(text, at)
        line += text.count("\n", at, end)
        at = end


def _csv_rows(path: Path, name: str) -> Iterator[tuple[str, Any]]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                where = f"{name}:{reader.line_num}"
                if None in row:
                    raise DataFileError(f"{where}: the row has more fields than the header")
                _check_strings(row)
                yield where, row
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{name}: not valid UTF-8 ({exc.reason})") from None
    except csv.Error as exc:
        raise DataFileError(f"{name}: not a readable CSV file ({exc})") from None
    except _BadValue as exc:
        raise DataFileError(f"{name}: {exc}") from None


def _parquet_rows(path: Path, name: str) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataFileError(f"{name}: not a readable Parquet file ({first})") from None
    for number, row in enumerate(rows, start=1):
        yield f"{name}:{number}", row


def iter_jsonl_rows(
    path: str | Path, name: str | None = None, *, allow_surrogates: bool = False
) -> Iterator[tuple[str, Any]]:
    """``(location, row)`` pairs of a JSON Lines file whatever its suffix; unreadable files are one error."""
    path = Path(path)
    name = str(path) if name is None else name
    yield from _jsonl_rows(name, _read_bytes(path, name), allow_surrogates)


def _read_bytes(path: Path, name: str) -> bytes:
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{name}: cannot read the file ({exc.strerror or exc})") from None


def iter_file_rows(path: str | Path, name: str | None = None) -> Iterator[tuple[str, Any]]:
    """``(location, row)`` pairs of a local .jsonl/.json/.csv/.parquet file (``name`` is how errors call it)."""
    path = Path(path)
    name = str(path) if name is None else name
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_rows(path, name)
    elif suffix == ".csv":
        yield from _csv_rows(path, name)
    elif suffix in (".jsonl", ".json"):
        data = _read_bytes(path, name)
        if suffix == ".json":
            text = _utf8(data, name)
            if text.lstrip()[:1] in ("[", "{") and not _looks_like_jsonl(text):
                yield from _json_list_rows(name, text)
                return
        yield from _jsonl_rows(name, data)
    else:
        raise DataFileError(
            f"{name}: unsupported file type '{suffix}' (expected one of {', '.join(LOCAL_SUFFIXES)})"
        )


def _looks_like_jsonl(text: str) -> bool:
    """A ``.json`` file holding one object per line (JSON Lines under the wrong suffix)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return len(lines) > 1 and all(line.lstrip().startswith("{") and line.rstrip().endswith("}") for line in lines)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def iter_hub_rows(
    dataset: str, split: str, subset: str | None = None, revision: str | None = None
) -> Iterator[tuple[str, Any]]:
    """``(location, row)`` pairs of a Hugging Face dataset; a dataset that cannot be loaded is one error line."""
    import datasets

    kwargs = {"revision": revision} if revision else {}
    try:
        loaded = datasets.load_dataset(dataset, subset, split=split, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the datasets library raises many kinds; report them as one line
        at = f", revision {revision!r}" if revision else ""
        raise DataFileError(
            f"{dataset}: not a local file, and loading it as a Hugging Face dataset "
            f"(subset {subset!r}, split '{split}'{at}) failed: {_first_line(exc)}"
        ) from exc
    where = f"{dataset}[{subset + '/' if subset else ''}{split}]"
    for number, row in enumerate(loaded, start=1):
        yield f"{where}:{number}", row


def is_saved_dataset(folder: Path) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def iter_saved_rows(folder: Path, name: str, split: str) -> Iterator[tuple[str, Any]]:
    """``(location, row)`` pairs of a ``save_to_disk`` folder; of a DatasetDict, the ``split`` one."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # noqa: BLE001 - a damaged folder raises many kinds; report them as one line
        raise DataFileError(f"{name}: not a readable datasets.save_to_disk folder ({_first_line(exc)})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataFileError(f"{name}: the saved dataset has no split '{split}' (splits: "
                                f"{', '.join(loaded)}) (data.layout.split)")
        loaded, name = loaded[split], f"{name}[{split}]"
    for number, row in enumerate(loaded, start=1):
        yield f"{name}:{number}", row


def folder_files(folder: Path, split: str) -> list[Path]:
    """The data files of a folder (recursively, sorted, hidden ones skipped). When some file's path names
    ``split`` (``train.jsonl``, ``data/train-00000-of-00002.parquet``), only those are read."""
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in LOCAL_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    named = re.compile(rf"(^|[/_.\-]){re.escape(split)}([/_.\-]|$)")
    of_split = [p for p in files if named.search(p.relative_to(folder).as_posix())]
    return of_split or files


def _card_has_configs(folder: Path) -> bool:
    """A dataset card (``README.md``) whose YAML header declares ``configs:`` (a clone of a hub repo)."""
    card = folder / "README.md"
    if not card.is_file():
        return False
    text = card.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return False
    header = text[3:].split("\n---", 1)[0]
    return any(line.startswith("configs:") for line in header.splitlines())


def iter_rows(
    path: str | Path, split: str = "train", subset: str | None = None, revision: str | None = None
) -> Iterator[tuple[str, Any]]:
    """``(location, row)`` pairs of a local data file, a folder of them or a ``save_to_disk`` folder, else of a
    Hugging Face dataset id (``subset``, ``split``, ``revision``). A local clone of a hub dataset repo (its
    ``README.md`` declares ``configs:``), or a folder given with a ``subset``, is read as the hub reads it."""
    local = Path(path).expanduser()
    if local.is_file():
        yield from iter_file_rows(local, str(path))
    elif local.is_dir() and is_saved_dataset(local):
        yield from iter_saved_rows(local, str(path), split)
    elif local.is_dir() and (subset is not None or _card_has_configs(local)):
        yield from iter_hub_rows(str(path), split, subset, revision)  # a clone of a hub dataset repo
    elif local.is_dir():
        files = folder_files(local, split)
        if not files:
            raise DataFileError(f"{path}: the folder holds no data file ({', '.join(LOCAL_SUFFIXES)})")
        for file in files:
            yield from iter_file_rows(file, str(Path(path) / file.relative_to(local)))
    else:
        yield from iter_hub_rows(str(path), split, subset, revision)
