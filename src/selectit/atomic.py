"""Write a file so that a killed process never leaves half of it: a temporary file next to the target,
then a rename over it.

The temporary name is unique (``.NAME.<random>.tmp``, created with O_EXCL), so two processes writing
the same path never write into one temporary file; it is removed when writing fails, so only a
SIGKILL can leave one behind (hidden, and never read back)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TextIO

_NAME_MAX = 200  # the target's name is cut to this in the temporary name (file systems allow 255 bytes)


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name[:_NAME_MAX]}.{secrets.token_hex(6)}.tmp")


def _create_temp(path: Path) -> tuple[int, Path]:
    """(fd, path) of a new, empty file next to ``path``. Not tempfile.mkstemp: it creates the file 0600,
    and the output would keep that mode; O_EXCL with mode 0666 gives the umask's usual mode (0644)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = _temp_name(path)
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # 48 random bits: practically never; try another name
            continue


@contextmanager
def atomic_open(path: str | Path, *, binary: bool = False) -> Iterator[IO]:
    """Yield a file open for writing at a unique temporary name next to ``path``; rename it over
    ``path`` when the block ends, or remove it if the block raises (``path`` is then left as it was).
    Text files are UTF-8 and written as given (``newline=""``: no '\\r\\n' translation on Windows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = _create_temp(path)
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            _name_target(e, path)
        raise


def _name_target(e: OSError, path: Path) -> None:
    """Make ``e`` name the output ``path``, not the temporary file the user never asked for (or nothing)."""
    def ours(name) -> bool:  # one of our temporary names for ``path``
        p = Path(name)
        return p.parent == path.parent and p.name.startswith(f".{path.name[:_NAME_MAX]}.") and p.name.endswith(".tmp")

    if e.filename is None or ours(e.filename):
        e.filename = str(path)
    if e.filename2 is not None and (e.filename2 == str(path) or ours(e.filename2)):
        e.filename2 = None


def atomic_write(path: Path, write: Callable[[TextIO], object]) -> None:
    """Call ``write`` on a UTF-8 text file at a temporary name next to ``path``, then rename it over
    ``path`` (see :func:`atomic_open`; nothing is left behind when ``write`` raises)."""
    with atomic_open(path) as f:
        write(f)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a new empty folder at a unique temporary name next to ``path``; it replaces ``path`` (a
    folder or nothing) when the block ends, and is removed if the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temp_name(path)
        try:
            tmp.mkdir()
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # os.replace cannot replace a non-empty folder
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
