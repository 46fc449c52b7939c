"""One record type shared by every input format."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Record:
    """One instruction-tuning example, as the rating prompt sees it.

    id: the record's own ``id`` field when it has one, else its 0-based position in the input.
    instruction: what was asked (for conversations: every turn before the final reply).
    response: the reply being rated (for conversations: the final assistant turn).
    raw: the record exactly as read (a dict), written back unchanged on selection.
    raw_text: the record's original text, so selection can copy it byte for byte: a JSON Lines line
        with its line ending ('\\n' or '\\r\\n'), a JSON array's element; None for columnar inputs.
    """

    id: Any
    instruction: str
    response: str
    raw: dict = field(repr=False, compare=False)
    raw_text: str | None = field(default=None, repr=False, compare=False)


class DataError(ValueError):
    """The input data cannot be used as it is; the message says which record and why."""


def normalise(text: str) -> str:
    """``text`` with Unicode case folded and every run of whitespace one space, ends stripped."""
    return _SPACE.sub(" ", text.casefold()).strip()


def copy_fields(record: Record) -> tuple[str, ...]:
    """What makes a record a copy: (instruction, input, response) of an Alpaca record, else
    (instruction, response) (a conversation: every turn before the last, the last)."""
    raw = record.raw if isinstance(record.raw, dict) else {}
    if isinstance(raw.get("instruction"), str) and isinstance(raw.get("input"), str):
        return raw["instruction"], raw["input"], record.response
    return record.instruction, record.response
