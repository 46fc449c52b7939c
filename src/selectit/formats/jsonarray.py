"""One JSON array of records, read element by element (memory: one 1 MiB block and one element).

Each element is yielded with its original text (the characters it spans in the file), so a selection
copies it byte for byte; a read can start again at any element's cursor (byte offset and line)."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from selectit.formats.compression import open_read, skip_bom
from selectit.records import DataError

Cursor = tuple[int, int, int]  # (item index, byte offset, line number); offset: into the decompressed bytes
_DECODER = json.JSONDecoder()
JSONL_HINT = "if the file holds one JSON object per line (JSON Lines), pass --container jsonl"


class _JsonArray:
    """A reader of JSON values from 1 MiB blocks. Tracks the byte offset and line of the read position,
    so a later read can seek to an element."""

    BLOCK = 1 << 20

    def __init__(self, path: Path, f: BinaryIO, start: Cursor):
        self.path, self.f = path, f
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self.col0 = "", 0, 0  # col0: column of buf[0] (buf is cut at block edges)
        _, self.offset, self.line = start  # byte offset and line of buf[pos]
        if self.offset == 0:
            self.offset = skip_bom(f)  # a file-level mark, not text: columns count from after it
        self.read_bytes, self.eof = self.offset, False

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

    def value(self) -> tuple[object, str]:
        """(value, its text) at the read position (reading more blocks while it is cut off)."""
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.refill():
                    continue
                raise self.fail(e.msg, e.pos) from None
            if end >= len(self.buf) and self.refill():  # a number may go on in the next block
                continue
            text = self.buf[self.pos : end]
            self.advance(end)
            return obj, text

    def expect_end(self) -> None:
        if self.peek() != "":
            raise self.fail("Extra data", self.pos)


def _open_array(r: _JsonArray) -> bool:
    """Read the opening '[' at the start of the file; False when the array is empty."""
    c = r.peek()
    if c != "[":
        if c == "":
            raise r.fail("Expecting value", r.pos)
        data, _ = r.value()
        raise DataError(f"{r.path}: expected a JSON array of records, got a JSON {type(data).__name__}"
                          + ("; " + JSONL_HINT if isinstance(data, dict) else ""))
    r.advance(r.pos + 1)
    if r.peek() == "]":
        r.advance(r.pos + 1)
        r.expect_end()
        return False
    return True


def read_json_array(path: Path, start: Cursor) -> Iterator[tuple[Cursor, tuple]]:
    """(cursor, (object, text, 'element N', problem)) per element from ``start`` on; a JSON array that
    is not valid JSON fails whole (at the first error), naming its line and column."""
    with open_read(path, start[1]) as f:
        r = _JsonArray(path, f, start)
        index = start[0]
        if start[1] == 0 and not _open_array(r):
            return
        while True:
            if r.peek() == "":
                raise r.fail("Expecting value", r.pos)
            cursor = (index, r.offset, r.line)
            (obj, text), where = r.value(), f"element {index}"
            if isinstance(obj, dict):
                yield cursor, (obj, text, where, None)
            else:
                yield cursor, (None, text[:200], where, f"is a JSON {type(obj).__name__}, expected an object")
            index += 1
            c = r.peek()
            if c == ",":
                r.advance(r.pos + 1)
            elif c == "]":
                r.advance(r.pos + 1)
                r.expect_end()
                return
            else:
                raise r.fail("Expecting ',' delimiter" if c else "Expecting ',' or ']'", r.pos)


def separator(path: Path) -> str:
    """The whitespace between a JSON array's '[' and its first element ('\\n  ' for json.dump(indent=2)),
    read from the start of ``path``; a selection is written with it. '\\n  ' when the file does not say."""
    with open_read(path) as f:
        skip_bom(f)
        head = f.read(4096).decode("utf-8", "replace").lstrip()
    if not head.startswith("["):
        return "\n  "
    rest = head[1:]
    lead = rest[: len(rest) - len(rest.lstrip(" \t\r\n"))]
    return lead if len(lead) < len(rest) else "\n  "
