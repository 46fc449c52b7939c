"""How records are stored on disk: one JSON array, or JSON Lines. Both read and write here."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from selectit.atomic import atomic_write
from selectit.records import DataError

CONTAINERS = ("json", "jsonl")
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}


def detect_container(path: Path) -> str:
    """'jsonl' for .jsonl/.ndjson, 'json' for .json; otherwise sniff the first non-blank byte."""
    suffix = path.suffix.lower()
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
    raise DataError(f"{path}: unknown format (expected a JSON array or JSON Lines file: .json, .jsonl)")


Item = tuple[dict | None, str | None, str, str | None]


def read_container(path: Path, container: str) -> Iterator[Item]:
    """Yield (object, original text, where, problem) per record; where is e.g. 'line 3'.

    A JSON Lines line that is not UTF-8 or not a JSON object is yielded with object None and the
    problem, so the caller can stop or skip it; a JSON array that cannot be parsed fails whole."""
    if container == "jsonl":
        yield from _read_jsonl(path)
    elif container == "json":
        yield from _read_json_array(path)
    else:
        raise DataError(f"unknown container {container!r}; expected one of {CONTAINERS}")


def _decode(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); re-encode the file as UTF-8") from None


def _read_jsonl(path: Path) -> Iterator[Item]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"line {lineno}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                yield None, raw[:200].decode("utf-8", "replace"), where, f"is not UTF-8 (byte {e.start})"
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield None, line, where, f"is not valid JSON ({e.msg}, column {e.colno})"
                continue
            if not isinstance(obj, dict):
                yield None, line, where, f"is a JSON {type(obj).__name__}, expected an object"
                continue
            yield obj, line, where, None


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


def write_container(items: Sequence[tuple[dict, str | None]], path: Path, container: str) -> None:
    """Write (object, original text) pairs; JSON Lines copies the original line when there is one.
    Written atomically, so a killed run never leaves half a file."""
    if container not in CONTAINERS:
        raise DataError(f"unknown container {container!r}; expected one of {CONTAINERS}")

    def write(f):
        if container == "jsonl":
            for obj, text in items:
                f.write((text if text is not None else json.dumps(obj, ensure_ascii=False)) + "\n")
        else:
            json.dump([obj for obj, _ in items], f, ensure_ascii=False, indent=2)
            f.write("\n")

    atomic_write(path, write)
