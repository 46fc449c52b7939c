"""Input and output formats (SPEC section 4).

``read(path)`` detects the container (JSON array or JSON Lines) and the schema (alpaca, sharegpt,
messages) and returns a :class:`Dataset`; ``write(dataset, indices, path)`` writes chosen records in
the input's own format, each record unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from selectit.formats import alpaca, conversation
from selectit.formats.containers import CONTAINERS, detect_container, read_container, write_container
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
        "(instruction/output), sharegpt (conversations) or messages; or pass --format"
    )


def _parse(obj: dict, schema: str) -> tuple[str, str]:
    if schema == "alpaca":
        return alpaca.parse(obj)
    return conversation.parse(obj, schema)


def read(path: str | Path, *, schema: str | None = None, container: str | None = None,
         skip_bad: bool = False) -> Dataset:
    """Read every record of ``path`` (see :func:`parse_records` for how bad records are reported)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file (.json or .jsonl)")
    if schema is not None and schema not in SCHEMAS:
        raise DataError(f"unknown format {schema!r}; expected one of {', '.join(SCHEMAS)}")
    if container is not None and container not in CONTAINERS:
        raise DataError(f"unknown container {container!r}; expected one of {', '.join(CONTAINERS)}")
    container = container or detect_container(path)
    schema, records, rejects = parse_records(read_container(path, container), schema=schema, source=str(path),
                                             skip_bad=skip_bad)
    return Dataset(path=path, container=container, schema=schema, records=records, rejects=rejects)


def parse_records(
    items: Iterable[tuple[dict | None, str | None, str, str | None]], *, schema: str | None = None,
    source: str = "input", skip_bad: bool = False,
) -> tuple[str, list[Record], list[Reject]]:
    """Turn (object, original text, where, problem) items into Records: (schema, records, rejects).

    A record's default id is its 0-based position in the input, bad records included, so ids never
    shift. Without ``skip_bad``, bad records raise one DataError naming up to five of them and how
    many there are in all (one run shows every problem); with it they are returned as rejects."""
    records: list[Record] = []
    rejects: list[Reject] = []
    for index, (obj, text, where, problem) in enumerate(items):
        if obj is not None:
            try:
                schema = schema or detect_schema(obj)
                instruction, response = _parse(obj, schema)
            except (ValueError, DataError) as e:
                problem = str(e)
        if problem is not None:
            rejects.append(Reject(where=f"record {index} ({where})", reason=problem, text=(text or "")[:200]))
            continue
        rid = obj["id"] if "id" in obj else index
        records.append(Record(id=rid, instruction=instruction, response=response, raw=obj, raw_text=text))
    if rejects and not skip_bad:
        shown = "; ".join(f"{r.where} {r.reason}" for r in rejects[:MAX_REPORTED])
        more = f" (and {len(rejects) - MAX_REPORTED} more)" if len(rejects) > MAX_REPORTED else ""
        raise DataError(f"{source}: {len(rejects)} bad record(s){f' as {schema}' if schema else ''}: {shown}{more}"
                        "; fix them or pass --skip-bad to leave them out")
    if not records:
        raise DataError(f"{source}: no usable records; the dataset is empty" if not rejects else
                        f"{source}: every record is bad ({len(rejects)}), e.g. {rejects[0].where} {rejects[0].reason}")
    return schema, records, rejects


def from_dicts(objs: Iterable[dict], *, schema: str | None = None) -> list[Record]:
    """Records from in-memory dicts (alpaca, sharegpt or messages), for the Python API."""
    items = []
    for i, obj in enumerate(objs):
        if not isinstance(obj, dict):
            raise DataError(f"record {i} is a {type(obj).__name__}, expected a dict")
        items.append((obj, None, f"item {i}", None))
    return parse_records(items, schema=schema)[1]


def write(dataset: Dataset, indices: Sequence[int], path: str | Path) -> None:
    """Write the records at ``indices`` (in that order) to ``path`` in the dataset's own format."""
    chosen = [dataset.records[i] for i in indices]
    write_container([(r.raw, r.raw_text) for r in chosen], Path(path), dataset.container)
