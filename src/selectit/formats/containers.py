"""How records are stored on disk: one JSON array (jsonarray.py), JSON Lines (here), or (columnar.py)
parquet, CSV and a Hugging Face ``datasets`` folder; any file but parquet may be gzip, bz2 or zstd
compressed (compression.py). Every container reads as a stream of items (writers.py writes them).

Reads can start in the middle: :func:`read_positioned` yields each item with a :data:`Cursor` (the
item's index and, for JSON and JSON Lines, its byte offset and line), and a cursor given back as
``start`` resumes there without parsing what came before (how shards of a large file are read)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from selectit.formats import compression
from selectit.formats.jsonarray import Cursor, read_json_array
from selectit.records import DataError

CONTAINERS = ("json", "jsonl", "parquet", "csv", "hf")
SUFFIX_CONTAINERS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet",
                     ".pq": "parquet"}
_SNIFF_LIMIT = 16 << 20  # bytes of a first line read to tell JSON Lines from a JSON array in a .json file

Item = tuple[dict | None, str | None, str, str | None]
START: Cursor = (0, 0, 1)
JSON_HINT = "the file looks like a JSON array: pass --container json"


def named_container(path: Path) -> str | None:
    """The container a file name names, compression suffix aside ('d.jsonl.gz' -> 'jsonl'), or None."""
    return SUFFIX_CONTAINERS.get(compression.inner(path).suffix.lower())


def detect_container(path: Path) -> str:
    """The container of ``path``: by its name (compression suffix aside: .json, .jsonl/.ndjson,
    .parquet, .csv), 'hf' for a folder written by ``datasets.Dataset.save_to_disk``; a .json file
    whose first line is a whole JSON object is JSON Lines; otherwise sniff the first non-blank byte."""
    if path.is_dir():
        from selectit.formats.columnar import detect_hf

        return detect_hf(path)
    named = named_container(path)
    if named == "parquet" and compression.detect(path):
        raise DataError(f"{path}: a compressed parquet file; parquet compresses its own columns and needs "
                        "random access: decompress it first")
    if named in ("parquet", "csv", "jsonl"):
        return named
    try:
        first = _first_line(path)
    except compression.read_errors() as e:
        raise compression.read_error(path, e) from None
    if named == "json":
        return "jsonl" if _is_object(first) else "json"
    if first.startswith(b"["):
        return "json"
    if first.startswith(b"{"):
        return "jsonl"
    raise DataError(f"{path}: unknown format (expected .json, .jsonl, .parquet, .csv, optionally compressed as "
                    ".gz, .bz2 or .zst, or a datasets folder); or pass --container")


def _first_line(path: Path) -> bytes:
    """The start of ``path``'s text (decompressed, byte-order mark and blank space skipped): its first
    line when that opens an object ({...}, up to _SNIFF_LIMIT bytes), else its first byte."""
    with compression.open_read(path) as f:
        compression.skip_bom(f)
        while (c := f.peek(1)[:1]) in b" \t\r\n" and c:
            f.read(1)
        return f.readline(_SNIFF_LIMIT).strip() if c == b"{" else c


def _is_object(line: bytes) -> bool:
    """Whether ``line`` is one whole JSON object: the first line of JSON Lines, never of a JSON array."""
    if not line.startswith(b"{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # cut off at the limit, not UTF-8, or an object spread over lines
        return False


def read_container(path: Path, container: str) -> Iterator[Item]:
    """Yield (object, original text, where, problem) per record; where is e.g. 'line 3'.

    A JSON Lines line that is not UTF-8 or not a JSON object is yielded with object None and the
    problem, so the caller can stop or skip it; a JSON array that is not valid JSON fails whole (at
    the first error)."""
    return (item for _, item in read_positioned(path, container))


def read_positioned(path: Path, container: str, start: Cursor = START) -> Iterator[tuple[Cursor, Item]]:
    """(cursor, item) from ``start`` on. JSON Lines and JSON arrays go to the cursor's byte offset
    (in a compressed file, by decompressing up to it); columnar containers skip whole Arrow batches.
    A damaged compressed stream is one DataError naming the file."""
    if container not in CONTAINERS:
        raise DataError(f"unknown container {container!r}; expected one of {', '.join(CONTAINERS)}")
    try:
        if container == "jsonl":
            yield from _read_jsonl(path, start)
        elif container == "json":
            yield from read_json_array(path, start)
        else:
            from selectit.formats.columnar import read_columnar

            for index, item in read_columnar(path, container, start[0]):
                yield (index, 0, 0), item
    except compression.read_errors() as e:
        raise compression.read_error(path, e) from None


def _read_jsonl(path: Path, start: Cursor) -> Iterator[tuple[Cursor, Item]]:
    """Items of a JSON Lines file. An item's text is its line with its own line ending ('\\r\\n' stays),
    so a selection copies it byte for byte; a byte-order mark before the first line is skipped."""
    index, offset, lineno = start
    with compression.open_read(path, offset) as f:
        if offset == 0:
            offset = compression.skip_bom(f)
        for raw in f:
            cursor, where = (index, offset, lineno), f"line {lineno}"
            offset, lineno = offset + len(raw), lineno + 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                index += 1
                yield cursor, (None, raw[:200].decode("utf-8", "replace"), where, f"is not UTF-8 (byte {e.start})")
                continue
            if not text.strip():
                continue
            yield cursor, _jsonl_item(text, where, first=index == 0)
            index += 1


def _jsonl_item(text: str, where: str, *, first: bool) -> Item:
    """The item of one non-blank line; the first record of the file, when it opens a JSON array, says so."""
    line = text.rstrip("\r\n")
    hint = f"; {JSON_HINT}" if first and line.lstrip().startswith("[") else ""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return None, line, where, f"is not valid JSON ({e.msg}, column {e.colno}){hint}"
    if not isinstance(obj, dict):
        return None, line, where, f"is a JSON {type(obj).__name__}, expected an object{hint}"
    return obj, text, where, None
