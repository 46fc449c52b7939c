"""Compressed data files: gzip and bz2 (standard library) and zstandard (``pip install zstandard``).

A file is read as compressed when its first bytes are a compression's magic number, whatever its
name (so ``--container jsonl`` on a ``.gz`` file reads it); a selection is written compressed when
its name ends with a compression's suffix (``.gz``, ``.bz2``, ``.zst``).

Positions in a compressed file are offsets into the decompressed bytes. A compressed stream cannot
seek, so :func:`open_read` at offset N decompresses and drops the first N bytes: reading chunk k on
its own (``Source.chunk``, the Ray runner) costs decompressing everything before it, in constant
memory; reading all chunks in order (``Source.chunks``, the local runner) is one pass.
"""

from __future__ import annotations

import bz2
import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from selectit.errors import optional_import
from selectit.records import DataError

MAGIC = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "zstd": b"\x28\xb5\x2f\xfd"}
SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
CANONICAL = {"gzip": ".gz", "bz2": ".bz2", "zstd": ".zst"}
BOM = b"\xef\xbb\xbf"
_SKIP_BLOCK = 1 << 20
_TEST_COMMAND = {"gzip": "gzip -t", "bz2": "bzip2 -t", "zstd": "zstd -t"}


def detect(path: Path) -> str | None:
    """The compression of the file at ``path`` by its magic number ('gzip', 'bz2', 'zstd'), or None."""
    if not path.is_file():
        return None
    with path.open("rb") as f:
        head = f.read(4)
    return next((name for name, magic in MAGIC.items() if head.startswith(magic)), None)


def by_suffix(path: Path) -> str | None:
    """The compression a file name asks for ('data.jsonl.gz' -> 'gzip'), or None."""
    return SUFFIXES.get(path.suffix.lower())


def inner(path: Path) -> Path:
    """The name without its compression suffix ('data.jsonl.gz' -> 'data.jsonl'): what it holds."""
    return path.with_suffix("") if by_suffix(path) else path


def _zstd():
    return optional_import("zstandard", "reading and writing .zst files needs zstandard", "zstd", DataError)


def _open_decompressed(path: Path, kind: str) -> BinaryIO:
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    return io.BufferedReader(_ZstdReader(path.open("rb")), buffer_size=1 << 16)


class _ZstdReader(io.RawIOBase):
    """Decompressed bytes of a .zst file, frame after frame (pzstd and concatenated files hold several).
    Not zstandard's stream_reader: it ends silently at a cut-off frame, which would read as a shorter
    dataset; this raises EOFError there, as gzip and bz2 do."""

    def __init__(self, f: BinaryIO):
        self.f, self.zstd = f, _zstd()
        self.d = self.zstd.ZstdDecompressor().decompressobj()
        self.out, self.at, self.started = b"", 0, False  # output not yet read; whether this frame got input

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self.at == len(self.out):
            block = self.f.read(1 << 17)
            if not block:
                if self.started:
                    raise EOFError("the file ends inside a zstd frame")
                return 0
            self.out, self.at = self._feed(block), 0
        n = min(len(b), len(self.out) - self.at)
        b[:n] = self.out[self.at : self.at + n]
        self.at += n
        return n

    def _feed(self, block: bytes) -> bytes:
        out = []
        while block:
            self.started = True
            out.append(self.d.decompress(block))
            if not self.d.eof:
                break
            block = self.d.unused_data  # the next frame starts in the same block
            self.d, self.started = self.zstd.ZstdDecompressor().decompressobj(), False
        return b"".join(out)

    def close(self) -> None:
        self.f.close()
        super().close()


def open_read(path: Path, offset: int = 0) -> BinaryIO:
    """``path``'s bytes (decompressed when it is compressed), positioned at ``offset`` (see the
    module docstring for what that costs in a compressed file)."""
    kind = detect(path)
    if kind is None:
        f = path.open("rb")
        f.seek(offset)
        return f
    f = _open_decompressed(path, kind)
    left = offset
    while left > 0:
        got = len(f.read(min(left, _SKIP_BLOCK)))
        if not got:
            break  # the caller reads nothing more: an offset past the end
        left -= got
    return f


def skip_bom(f: BinaryIO) -> int:
    """Skip a UTF-8 byte-order mark at the read position of ``f`` (a buffered reader); its length (0 or 3)."""
    if f.peek(3)[:3] == BOM:
        f.read(3)
        return 3
    return 0


def has_bom(path: Path) -> bool:
    """Whether ``path``'s (decompressed) text starts with a UTF-8 byte-order mark."""
    with open_read(path) as f:
        return skip_bom(f) == 3


@contextmanager
def open_write(f: BinaryIO, kind: str | None) -> Iterator[BinaryIO]:
    """A binary stream writing into ``f`` compressed with ``kind`` (None: ``f`` itself); the stream is
    finished (not ``f``) when the block ends. Deterministic bytes: no time or file name in gzip headers,
    so writing the same selection twice gives the same file."""
    if kind is None:
        yield f
        return
    if kind == "gzip":
        out = gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=6, mtime=0)
    elif kind == "bz2":
        out = bz2.BZ2File(f, "wb")
    else:
        out = _zstd().ZstdCompressor(level=3).stream_writer(f, closefd=False)
    with out:
        yield out


def read_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a damaged or cut-short compressed stream raises while it is read."""
    errors: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:
        pass
    return errors


def read_error(path: Path, e: BaseException) -> DataError:
    """A one-line DataError for an exception of :func:`read_errors` raised while reading ``path``."""
    kind = detect(path)
    if kind is None:
        return DataError(f"{path}: cannot read the file ({getattr(e, 'strerror', None) or e})")
    return DataError(f"{path}: the {kind} stream is damaged or cut short ({e}); "
                     f"check the file with `{_TEST_COMMAND[kind]} {path}`")
