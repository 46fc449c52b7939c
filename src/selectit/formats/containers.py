"""How records are stored on disk: one JSON array, JSON Lines, or (see columnar.py) parquet, CSV and a
Hugging Face ``datasets`` folder. Every container reads as a stream of items and writes a stream.

Reads can start in the middle: :func:`read_positioned` yields each item with a :data:`Cursor` (the
item's index and, for JSON Lines, its byte offset and line), and a cursor given back as ``start``
resumes there without rereading what came before (how shards of a large file are read)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from selectit.atomic import atomic_write
from selectit.records import DataError

CONTAINERS = ("json", "jsonl", "parquet", "csv", "hf")
COLUMNAR = ("parquet", "csv", "hf")
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}


def detect_container(path: Path) -> str:
    """'jsonl' for .jsonl/.ndjson, 'json' for .json, 'parquet', 'csv', 'hf' for a folder written by
    ``datasets.Dataset.save_to_disk``; otherwise sniff the first non-blank byte."""
    if path.is_dir():
        from selectit.formats.columnar import detect_hf

        return detect_hf(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix == ".json":
        return "json"
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        return "jsonl"
    raise DataError(f"{path}: unknown format (expected .json, .jsonl, .parquet, .csv or a datasets folder)")


Item = tuple[dict | None, str | None, str, str | None]
Cursor = tuple[int, int, int]  # (item index, byte offset, line number); offset and line: JSON Lines only
START: Cursor = (0, 0, 1)


def read_container(path: Path, container: str) -> Iterator[Item]:
    """Yield (object, original text, where, problem) per record; where is e.g. 'line 3'.

    A JSON Lines line that is not UTF-8 or not a JSON object is yielded with object None and the
    problem, so the caller can stop or skip it; a JSON array that cannot be parsed fails whole."""
    return (item for _, item in read_positioned(path, container))


def read_positioned(path: Path, container: str, start: Cursor = START) -> Iterator[tuple[Cursor, Item]]:
    """(cursor, item) from ``start`` on. JSON Lines seeks to the cursor's byte offset; columnar
    containers skip whole Arrow batches; a JSON array is parsed whole (JSON has no record boundaries
    to seek to: use JSON Lines or parquet for files that do not fit in memory)."""
    if container == "jsonl":
        yield from _read_jsonl(path, start)
    elif container == "json":
        for index, item in enumerate(_read_json_array(path)):
            if index >= start[0]:
                yield (index, 0, 0), item
    elif container in COLUMNAR:
        from selectit.formats.columnar import read_columnar

        for index, item in read_columnar(path, container, start[0]):
            yield (index, 0, 0), item
    else:
        raise DataError(f"unknown container {container!r}; expected one of {', '.join(CONTAINERS)}")


def _decode(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); re-encode the file as UTF-8") from None


def _read_jsonl(path: Path, start: Cursor) -> Iterator[tuple[Cursor, Item]]:
    index, offset, lineno = start
    with path.open("rb") as f:
        f.seek(offset)
        for raw in f:
            cursor, where = (index, offset, lineno), f"line {lineno}"
            offset, lineno = offset + len(raw), lineno + 1
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                index += 1
                yield cursor, (None, raw[:200].decode("utf-8", "replace"), where, f"is not UTF-8 (byte {e.start})")
                continue
            if not line.strip():
                continue
            index += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield cursor, (None, line, where, f"is not valid JSON ({e.msg}, column {e.colno})")
                continue
            if not isinstance(obj, dict):
                yield cursor, (None, line, where, f"is a JSON {type(obj).__name__}, expected an object")
                continue
            yield cursor, (obj, line, where, None)


def _read_json_array(path: Path) -> Iterator[Item]:
    try:
        data = json.loads(_decode(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of records, got a JSON {type(data).__name__}")
    for i, obj in enumerate(data):
        if not isinstance(obj, dict):
            yield None, json.dumps(obj)[:200], f"element {i}", f"is a JSON {type(obj).__name__}, expected an object"
            continue
        yield obj, None, f"element {i}", None


def write_container(items: Iterable[tuple[dict, str | None]], path: Path, container: str, *,
                    like: Path | None = None) -> None:
    """Write (object, original text) pairs, streamed; JSON Lines copies the original line when there
    is one. Columnar containers write the schema of ``like`` (the input). Written atomically, so a
    killed run never leaves half a file."""
    if container not in CONTAINERS:
        raise DataError(f"unknown container {container!r}; expected one of {', '.join(CONTAINERS)}")
    if container in COLUMNAR:
        from selectit.formats.columnar import write_columnar

        return write_columnar((obj for obj, _ in items), path, container, like=like)

    def write(f):
        if container == "jsonl":
            for obj, text in items:
                f.write((text if text is not None else json.dumps(obj, ensure_ascii=False)) + "\n")
            return
        # the bytes of json.dump(list, indent=2), one element at a time
        first = True
        for obj, _ in items:
            f.write(("[\n  " if first else ",\n  ") + json.dumps(obj, ensure_ascii=False, indent=2).replace("\n", "\n  "))
            first = False
        f.write("[]\n" if first else "\n]\n")

    atomic_write(path, write)
