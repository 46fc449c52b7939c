"""How records are stored on disk: one JSON array, JSON Lines, or (see columnar.py) parquet, CSV and a
Hugging Face ``datasets`` folder. Every container reads as a stream of items and writes a stream.

Reads can start in the middle: :func:`read_positioned` yields each item with a :data:`Cursor` (the
item's index and, for JSON Lines, its byte offset and line), and a cursor given back as ``start``
resumes there without rereading what came before (how shards of a large file are read)."""

from __future__ import annotations

import codecs
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
Cursor = tuple[int, int, int]  # (item index, byte offset, line number); offset and line: JSON and JSON Lines
START: Cursor = (0, 0, 1)


def read_container(path: Path, container: str) -> Iterator[Item]:
    """Yield (object, original text, where, problem) per record; where is e.g. 'line 3'.

    A JSON Lines line that is not UTF-8 or not a JSON object is yielded with object None and the
    problem, so the caller can stop or skip it; a JSON array that is not valid JSON fails whole (at
    the first error)."""
    return (item for _, item in read_positioned(path, container))


def read_positioned(path: Path, container: str, start: Cursor = START) -> Iterator[tuple[Cursor, Item]]:
    """(cursor, item) from ``start`` on. JSON Lines seeks to the cursor's byte offset; columnar
    containers skip whole Arrow batches; a JSON array is parsed element by element and seeks to the
    cursor's byte offset too."""
    if container == "jsonl":
        yield from _read_jsonl(path, start)
    elif container == "json":
        yield from _read_json_array(path, start)
    elif container in COLUMNAR:
        from selectit.formats.columnar import read_columnar

        for index, item in read_columnar(path, container, start[0]):
            yield (index, 0, 0), item
    else:
        raise DataError(f"unknown container {container!r}; expected one of {', '.join(CONTAINERS)}")


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


class _JsonArray:
    """A JSON array read element by element from 1 MiB blocks: memory holds one block and one element.
    Tracks the byte offset and line of the read position, so a later read can seek to an element."""

    BLOCK = 1 << 20

    def __init__(self, path: Path, f, start: Cursor):
        self.path, self.f = path, f
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self.col0 = "", 0, 0  # col0: column of buf[0] (buf is cut at block edges)
        _, self.offset, self.line = start  # byte offset and line of buf[pos]
        self.read_bytes, self.eof = start[1], False
        f.seek(start[1])

    def refill(self) -> bool:
        if self.eof:
            return False
        block = self.f.read(self.BLOCK)
        self.eof = not block
        try:
            text = self.decoder.decode(block, final=self.eof)
        except UnicodeDecodeError as e:
            raise DataError(f"{self.path}: not UTF-8 text (byte {self.read_bytes + e.start}); "
                            "re-encode the file as UTF-8") from None
        self.read_bytes += len(block)
        if not text:
            return not self.eof  # nothing new: keep the buffer (and the positions into it) as it is
        cut = self.buf[: self.pos]
        newline = cut.rfind("\n")
        self.col0 = self.pos - newline - 1 if newline >= 0 else self.col0 + self.pos
        self.buf, self.pos = self.buf[self.pos :] + text, 0
        return True

    def advance(self, end: int) -> None:
        part = self.buf[self.pos : end]
        self.line += part.count("\n")
        self.offset += len(part.encode("utf-8"))
        self.pos = end

    def peek(self) -> str:
        """The next non-blank character ('' at the end of the file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.advance(self.pos + 1)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.refill():
                return ""

    def fail(self, msg: str, at: int) -> DataError:
        line = self.line + self.buf.count("\n", self.pos, at)
        newline = self.buf.rfind("\n", 0, at)
        col = at - newline if newline >= 0 else self.col0 + at + 1
        return DataError(f"{self.path}: not valid JSON ({msg}, line {line} column {col})")

    def value(self):
        """Decode the value at the read position (reading more blocks while it is cut off)."""
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.refill():
                    continue
                raise self.fail(e.msg, e.pos) from None
            if end >= len(self.buf) and self.refill():  # a number may go on in the next block
                continue
            self.advance(end)
            return obj


_DECODER = json.JSONDecoder()


def _read_json_array(path: Path, start: Cursor) -> Iterator[tuple[Cursor, Item]]:
    with path.open("rb") as f:
        r = _JsonArray(path, f, start)
        index = start[0]
        if start[1] == 0:
            c = r.peek()
            if c != "[":
                if c == "":
                    raise r.fail("Expecting value", r.pos)
                data = r.value()
                raise DataError(f"{path}: expected a JSON array of records, got a JSON {type(data).__name__}")
            r.advance(r.pos + 1)
            if r.peek() == "]":
                r.advance(r.pos + 1)
                if r.peek() != "":
                    raise r.fail("Extra data", r.pos)
                return
        while True:
            if r.peek() == "":
                raise r.fail("Expecting value", r.pos)
            cursor = (index, r.offset, r.line)
            obj, where = r.value(), f"element {index}"
            if isinstance(obj, dict):
                yield cursor, (obj, None, where, None)
            else:
                yield cursor, (None, json.dumps(obj)[:200], where, f"is a JSON {type(obj).__name__}, expected an object")
            index += 1
            c = r.peek()
            if c == ",":
                r.advance(r.pos + 1)
            elif c == "]":
                r.advance(r.pos + 1)
                if r.peek() != "":
                    raise r.fail("Extra data", r.pos)
                return
            else:
                raise r.fail("Expecting ',' delimiter" if c else "Expecting ',' or ']'", r.pos)


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
