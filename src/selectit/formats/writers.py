"""Writing chosen records: in the container the output's name asks for, compressed when it ends with
.gz, .bz2 or .zst.

Which container (:func:`plan_output`): the one the output's suffix names (compression suffix aside)
when that differs from the one the input's suffix names; otherwise (the same suffix, or one that
names no container, or a datasets folder) the input's own container, so JSON Lines kept in a
``.json`` file stay JSON Lines. Records are copied as they were read where the container allows:

- JSON Lines: each line byte for byte, its line ending ('\\n' or '\\r\\n') included;
- JSON array: each element byte for byte (spacing, key order, escapes, number spelling), the array
  around them written with the input's indentation before its first element;
- CSV, parquet, datasets: re-serialised row by row from the values read, with the input's schema.

Converting: JSON and JSON Lines convert into each other always (a JSON element spread over several
lines is written on one line); columnar rows become JSON when their values are JSON values; JSON
records become parquet or CSV with an Arrow schema inferred from the chosen records (one more pass
over them; a field a record lacks is written as null, an empty CSV cell), and CSV refuses nested
values (conversations). What cannot be written faithfully is a DataError naming the field.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from selectit.atomic import atomic_open
from selectit.formats import compression
from selectit.formats.containers import CONTAINERS, named_container
from selectit.formats.jsonarray import separator
from selectit.records import DataError

Items = Callable[[], Iterable[tuple[dict, str | None]]]  # each call: (object, original text) pairs, a new pass
_DEFAULT_LEAD = "\n  "  # json.dump(..., indent=2)


@dataclass(frozen=True)
class Target:
    """Where and how chosen records are written. like: the input they were read from."""

    path: Path
    container: str
    compression: str | None
    like: Path
    like_container: str


def plan_output(path: str | Path, like: Path, like_container: str, container: str | None = None) -> Target:
    """The :class:`Target` for writing records read from ``like`` (a ``like_container``) to ``path``:
    ``container`` when given, else as the module docstring says. Raises DataError for what cannot be
    written (a compressed parquet file; a datasets folder from another container)."""
    path = Path(path)
    if container is not None and container not in CONTAINERS:
        raise DataError(f"unknown container {container!r}; expected one of {', '.join(CONTAINERS)}")
    named = container or named_container(path)
    if named is None or (container is None and named == named_container(like)):
        named = like_container
    kind = compression.by_suffix(path)
    if kind and named in ("parquet", "hf"):
        raise DataError(f"{path}: {named} output cannot be {kind}-compressed (it compresses its own columns); "
                        f"drop {path.suffix} from the name")
    if named == "hf" and like_container != "hf":
        raise DataError(f"{path}: a datasets folder can be written from a datasets folder only; "
                        "name the output .parquet, .jsonl, .json or .csv")
    return Target(path=path, container=named, compression=kind, like=like, like_container=like_container)


def output_suffix(path: Path, container: str) -> str:
    """The ending of a selection's file name that writes it as the input at ``path`` (a ``container``)
    is written: 'data.jsonl.gz' -> '.jsonl.gz', 'data.txt' (JSON Lines) -> '.jsonl', a datasets folder -> ''."""
    if container == "hf":
        return ""
    held = compression.inner(path)
    suffix = held.suffix if named_container(held) else f".{container}"
    kind = compression.detect(path)
    if kind is None:
        return suffix
    return suffix + (path.suffix if compression.by_suffix(path) == kind else compression.CANONICAL[kind])


def write_records(items: Items, target: Target) -> None:
    """Write the records ``items`` gives to ``target``, streamed and atomically (a killed run never
    leaves half a file). Conversions to parquet or CSV from JSON call ``items`` twice."""
    bom = (target.container == target.like_container and target.container in ("json", "jsonl", "csv")
           and compression.has_bom(target.like))  # the input's byte-order mark is part of its format
    if target.container == "jsonl":
        _write_text(_jsonl_lines(items(), target.path), target, bom)
    elif target.container == "json":
        lead = separator(target.like) if target.like_container == "json" else _DEFAULT_LEAD
        _write_text(_json_array(items(), lead, target.path), target, bom)
    else:
        from selectit.formats.columnar import write_columnar

        write_columnar(lambda: (obj for obj, _ in items()), target, bom=bom)


def _write_text(chunks: Iterable[str], target: Target, bom: bool) -> None:
    with atomic_open(target.path, binary=True) as raw, compression.open_write(raw, target.compression) as out:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        try:
            if bom:
                text.write("\ufeff")
            text.writelines(chunks)
            text.flush()
        finally:
            text.detach()  # leave ``out`` open: open_write and atomic_open finish and close it


def _dumps(obj: dict, path: Path, **kwargs) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, **kwargs)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: a record cannot be written as JSON ({e}); "
                        "name the output like the input (e.g. .parquet)") from None


def _jsonl_lines(items: Iterable[tuple[dict, str | None]], path: Path) -> Iterator[str]:
    """One line per record: the original line with its own ending when there is one (a JSON element
    spread over lines, or a record without text, is serialised); a line without an ending (the last
    of its file) gets the ending of the line before it."""
    newline = "\n"
    for obj, text in items:
        body = None if text is None else text.rstrip("\r\n")
        if body is None or "\n" in body or "\r" in body:
            yield _dumps(obj, path) + newline
            continue
        newline = text[len(body):] or newline
        yield body + newline


def _json_array(items: Iterable[tuple[dict, str | None]], lead: str, path: Path) -> Iterator[str]:
    """A JSON array of the records: each element's original text where there is one, ``lead`` before
    each element and its part after the last newline taken off before the closing ']' (the bytes of
    json.dump(list, indent=2) for the default lead)."""
    first = True
    for obj, text in items:
        if text is not None:
            element = text.strip(" \t\r\n")
        else:
            element = _dumps(obj, path, indent=2).replace("\n", _DEFAULT_LEAD)
        yield ("[" if first else ",") + lead + element
        first = False
    newline = "\r\n" if "\r\n" in lead else "\n"
    yield "[]" + newline if first else lead[: lead.rfind("\n") + 1] + "]" + newline
