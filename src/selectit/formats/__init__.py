"""Input and output formats (SPEC section 4).

``read(path)`` detects the container (JSON array, JSON Lines, parquet, CSV, a datasets folder; gzip,
bz2 or zstd compressed) and the schema (alpaca, sharegpt, messages) and returns a :class:`Dataset`;
``write(dataset, indices, path)`` writes chosen records in the input's own format, each record
unchanged, or in the container ``path``'s name asks for (see writers.py).

For files that need not fit in memory: ``scan(path)`` checks every record once and returns a
:class:`Source`, which reads the records again chunk by chunk (any chunk on its own, so shards can
be read by different workers); ``write_selection`` writes chosen records from a Source, streamed.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selectit.formats import alpaca, conversation
from selectit.formats.containers import CONTAINERS, START, Item, detect_container, read_container, read_positioned
from selectit.formats.jsonarray import Cursor
from selectit.formats.writers import output_suffix, plan_output, write_records
from selectit.records import DataError, Record

SCHEMAS = ("alpaca", "sharegpt", "messages")
MAX_REPORTED = 5


@dataclass(frozen=True)
class Reject:
    """An input record that could not be used: where it is, why, and (the start of) its text."""

    where: str
    reason: str
    text: str | None = None


@dataclass
class Dataset:
    """Records read from one file, with what is needed to write a subset back in the same format.
    rejects: records left out with --skip-bad (empty otherwise)."""

    path: Path
    container: str
    schema: str
    records: list[Record]
    rejects: list[Reject] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


def detect_schema(obj: dict) -> str:
    if alpaca.matches(obj):
        return "alpaca"
    if conversation.matches(obj, "sharegpt"):
        return "sharegpt"
    if conversation.matches(obj, "messages"):
        return "messages"
    raise DataError(
        f"cannot tell the record format from its fields {sorted(obj)[:8]}; expected alpaca "
        "(instruction/output), sharegpt (conversations) or messages; or name it (--format; format= in the "
        "Python API)"
    )


def _parse(obj: dict, schema: str) -> tuple[str, str]:
    if schema == "alpaca":
        return alpaca.parse(obj)
    return conversation.parse(obj, schema)


def read(path: str | Path, *, schema: str | None = None, container: str | None = None,
         skip_bad: bool = False) -> Dataset:
    """Read every record of ``path`` (see :func:`parse_records` for how bad records are reported)."""
    path, container = _check(path, schema, container)
    schema, records, rejects = parse_records(read_container(path, container), schema=schema, source=str(path),
                                             skip_bad=skip_bad)
    return Dataset(path=path, container=container, schema=schema, records=records, rejects=rejects)


def _check(path: str | Path, schema: str | None, container: str | None) -> tuple[Path, str]:
    """(path, container) after checking that the file exists and the names are known."""
    path = Path(path)
    if str(path) == "-" and not path.exists():
        raise DataError("reading standard input (-) is not supported: save the records to a file (e.g. "
                        "records.jsonl) and pass its path")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if schema is not None and schema not in SCHEMAS:
        raise DataError(f"unknown format {schema!r}; expected one of {', '.join(SCHEMAS)}")
    if container is not None and container not in CONTAINERS:
        raise DataError(f"unknown container {container!r}; expected one of {', '.join(CONTAINERS)}")
    return path, container or detect_container(path)


def _parse_item(index: int, item: Item, schema: str | None) -> tuple[str | None, Record | Reject]:
    """(schema, Record or Reject) of the item at position ``index``; the first good object fixes the schema."""
    obj, text, where, problem = item
    if obj is not None:
        try:
            schema = schema or detect_schema(obj)
            instruction, response = _parse(obj, schema)
        except (ValueError, DataError) as e:
            problem = str(e)
    if problem is not None:
        return schema, Reject(where=f"record {index} ({where})", reason=problem, text=(text or "").rstrip("\r\n")[:200])
    rid = obj["id"] if "id" in obj else index
    return schema, Record(id=rid, instruction=instruction, response=response, raw=obj, raw_text=text)


SKIP_HINT = "fix them or pass --skip-bad to leave them out"


def _check_rejects(source: str, schema: str | None, count: int, rejects: list[Reject], skip_bad: bool,
                   hint: str = SKIP_HINT) -> None:
    if rejects and not skip_bad:
        shown = "; ".join(f"{r.where} {r.reason}" for r in rejects[:MAX_REPORTED])
        more = f" (and {len(rejects) - MAX_REPORTED} more)" if len(rejects) > MAX_REPORTED else ""
        raise DataError(f"{source}: {len(rejects)} bad record(s){f' as {schema}' if schema else ''}: {shown}{more}"
                        f"; {hint}")
    if not count:
        raise DataError(f"{source}: no usable records; the dataset is empty" if not rejects else
                        f"{source}: every record is bad ({len(rejects)}), e.g. {rejects[0].where} {rejects[0].reason}")


def parse_records(
    items: Iterable[tuple[dict | None, str | None, str, str | None]], *, schema: str | None = None,
    source: str = "input", skip_bad: bool = False, hint: str = SKIP_HINT,
) -> tuple[str, list[Record], list[Reject]]:
    """Turn (object, original text, where, problem) items into Records: (schema, records, rejects).

    A record's default id is its 0-based position in the input, bad records included, so ids never
    shift. Without ``skip_bad``, bad records raise one DataError naming up to five of them and how
    many there are in all (one run shows every problem; ``hint`` says what to do); with it they are
    returned as rejects."""
    records: list[Record] = []
    rejects: list[Reject] = []
    for index, item in enumerate(items):
        schema, got = _parse_item(index, item, schema)
        (rejects if isinstance(got, Reject) else records).append(got)
    _check_rejects(source, schema, len(records), rejects, skip_bad, hint)
    return schema, records, rejects


def from_dicts(objs: Iterable[dict], *, schema: str | None = None) -> list[Record]:
    """Records from in-memory dicts (alpaca, sharegpt or messages), for the Python API."""
    items = []
    for i, obj in enumerate(objs):
        if not isinstance(obj, dict):
            raise DataError(f"record {i} is a {type(obj).__name__}, expected a dict")
        items.append((obj, None, f"item {i}", None))
    return parse_records(items, schema=schema, source="records",
                         hint="fix them, or leave them out of the list you pass")[1]


def write(dataset: Dataset, indices: Sequence[int], path: str | Path, *, container: str | None = None) -> None:
    """Write the records at ``indices`` (in that order) to ``path``: in the dataset's own format, or in
    ``container`` or the one ``path``'s suffix names (``.gz``/``.bz2``/``.zst``: compressed); see
    :func:`write_selection`."""
    target = plan_output(path, dataset.path, dataset.container, container)
    chosen = [dataset.records[i] for i in indices]
    write_records(lambda: ((r.raw, r.raw_text) for r in chosen), target)


def selection_suffix(data: Dataset | Source) -> str:
    """The file-name ending that writes a selection like its input: '.jsonl.gz' for data.jsonl.gz,
    '.json' for a .json file (even one holding JSON Lines), '' for a datasets folder."""
    return output_suffix(data.path, data.container)


@dataclass
class Source:
    """A data file checked once by :func:`scan` and read again chunk by chunk, never whole.

    count: usable records; chunk k holds the usable records among input items
    [k * chunk_size, (k + 1) * chunk_size) (items: records, bad ones included); starts[k]: where
    chunk k begins in the file; duplicate_ids: how many record ids repeat an earlier one."""

    path: Path
    container: str
    schema: str
    count: int
    chunk_size: int
    starts: list[Cursor]
    rejects: list[Reject] = field(default_factory=list)
    duplicate_ids: int = 0

    def __len__(self) -> int:
        return self.count

    def chunk(self, k: int) -> list[Record]:
        """The usable records of chunk ``k``, in input order."""
        stop = self.starts[k][0] + self.chunk_size
        out = []
        for (index, _, _), item in read_positioned(self.path, self.container, self.starts[k]):
            if index >= stop:
                break
            _, got = _parse_item(index, item, self.schema)
            if isinstance(got, Record):
                out.append(got)
        return out

    def chunks(self) -> Iterator[list[Record]]:
        """Every chunk in order, in one pass over the file (chunk(k) seeks; CSV can only skip rows)."""
        current, out = 0, []
        for (index, _, _), item in read_positioned(self.path, self.container, START):
            if index // self.chunk_size != current:
                yield out
                current, out = index // self.chunk_size, []
            _, got = _parse_item(index, item, self.schema)
            if isinstance(got, Record):
                out.append(got)
        if self.starts:
            yield out

    def records(self) -> Iterator[Record]:
        for chunk in self.chunks():
            yield from chunk


@dataclass
class MemorySource:
    """Records in memory, read as a :class:`Source` is (chunks of ``chunk_size``): the Python API's
    records, or a --proxy sample. ``path``: the file they came from, if any."""

    items: Sequence[Record]
    chunk_size: int
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def starts(self) -> list[int]:
        return list(range(0, len(self.items), self.chunk_size))

    def chunk(self, k: int) -> list[Record]:
        return list(self.items[k * self.chunk_size : (k + 1) * self.chunk_size])

    def chunks(self) -> Iterator[list[Record]]:
        return (self.chunk(k) for k in range(len(self.starts)))

    def records(self) -> Iterator[Record]:
        return iter(self.items)


def scan(path: str | Path, *, schema: str | None = None, container: str | None = None, skip_bad: bool = False,
         chunk_size: int = 20_000) -> Source:
    """Read ``path`` once, as a stream: check every record (bad records are reported as by
    :func:`parse_records`), fix the schema, and note where each chunk of ``chunk_size`` items starts.
    Memory: the rejects, one cursor per chunk and 8 bytes per record (to count duplicate ids)."""
    if chunk_size < 1:
        raise DataError(f"chunk size must be >= 1, got {chunk_size}")
    path, container = _check(path, schema, container)
    starts: list[Cursor] = []
    rejects: list[Reject] = []
    ids, count = array("q"), 0
    for cursor, item in read_positioned(path, container, START):
        index = cursor[0]
        if index % chunk_size == 0:
            starts.append(cursor)
        schema, got = _parse_item(index, item, schema)
        if isinstance(got, Reject):
            rejects.append(got)
            continue
        count += 1
        ids.append(hash(repr(got.id)))
    _check_rejects(str(path), schema, count, rejects, skip_bad)
    duplicates = count - len(np.unique(np.frombuffer(ids, dtype=np.int64)))
    return Source(path=path, container=container, schema=schema, count=count, chunk_size=chunk_size,
                  starts=starts, rejects=rejects, duplicate_ids=duplicates)


def write_selection(source: Source, indices: np.ndarray, path: str | Path, *, container: str | None = None) -> None:
    """Write the records at ``indices`` (positions among the usable records, in that order) to
    ``path``, streamed, in the source's own format; or in ``container``, or in the container that
    ``path``'s suffix names when it differs from the input's (``sel.csv`` from a JSON Lines input is
    CSV), compressed when ``path`` ends with .gz, .bz2 or .zst. What cannot be written faithfully (e.g.
    conversations as CSV) is a DataError before anything is written. Out of input order, the chosen
    records are first copied (one pass over the input) to a temporary file next to ``path``, then read
    back in order; a conversion from JSON to CSV or parquet reads them twice (schema, then rows)."""
    target = plan_output(path, source.path, source.container, container)
    indices = np.asarray(indices, dtype=np.int64)
    chosen = np.zeros(len(source), dtype=bool)
    chosen[indices] = True
    if np.all(np.diff(indices) > 0):
        write_records(lambda: ((r.raw, r.raw_text) for i, r in enumerate(source.records()) if chosen[i]), target)
        return
    target.path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.zeros(len(source), dtype=np.int64)
    fd, spill = tempfile.mkstemp(prefix=".selectit-", dir=target.path.parent)
    try:
        with os.fdopen(fd, "w+b") as f:
            for i, r in enumerate(source.records()):
                if chosen[i]:
                    offsets[i] = f.tell()
                    pickle.dump((r.raw, r.raw_text), f, protocol=pickle.HIGHEST_PROTOCOL)

            def in_order() -> Iterator[tuple[dict, str | None]]:
                for i in indices:
                    f.seek(offsets[i])
                    yield pickle.load(f)  # noqa: S301 - our own temporary file, written just above

            write_records(in_order, target)
    finally:
        os.unlink(spill)
