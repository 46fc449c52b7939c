"""Alpaca records: ``instruction``, optional ``input``, ``output``."""

from __future__ import annotations


def matches(obj: dict) -> bool:
    return "instruction" in obj and "output" in obj


def parse(obj: dict) -> tuple[str, str]:
    """(instruction, response). A non-empty ``input`` is appended to the instruction after a newline, as
    the published method does. Raises ValueError with the reason when a field is missing, not a string or empty."""
    instruction = _text(obj, "instruction", required=True)
    extra = _text(obj, "input", required=False)
    response = _text(obj, "output", required=True)
    if extra.strip():
        instruction = f"{instruction}\n{extra}"
    return instruction, response


def _text(obj: dict, key: str, *, required: bool) -> str:
    """The field ``key`` as text. A null (JSON null, an empty parquet cell) is told apart from a missing
    field in the message; an optional field (``input``) missing or null is ''."""
    if key not in obj:
        if required:
            raise ValueError(f"has no '{key}' field")
        return ""
    value = obj[key]
    if value is None:
        if required:
            raise ValueError(f"field '{key}' is null")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"field '{key}' is a {type(value).__name__}, expected a string")
    if required and not value.strip():
        raise ValueError(f"field '{key}' is empty")
    return value
