"""Fit a rating prompt into the model's max length, by a documented policy.

Policy 'truncate': the rating prompt and the template's ending ("\\nThe answer is: \\n") are always kept
whole, since the rating depends on them. The response is cut from its end first; if the prompt is still
too long with an empty response, the instruction is cut from its end. The record is flagged
``truncated``. Policy 'error': a prompt over the limit stops the run with the record's id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from selectit.errors import ConfigError
from selectit.prompts import rating_text
from selectit.records import Record

MAX_CHARS_PER_TOKEN = 32  # no tokenizer's tokens average more characters than this over a whole text


def _longest_fit(n: int, fits: Callable[[int], bool]) -> int | None:
    """Largest k in [0, n] with fits(k), assuming fits is monotone (True up to some k); None if none."""
    if not fits(0):
        return None
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _bounded(record: Record, max_length: int) -> Record:
    """``record`` with its response (then instruction) cut to what ``max_length`` tokens can cover
    (MAX_CHARS_PER_TOKEN each), so a multi-megabyte record is never tokenized
    whole; the record itself when nothing needs cutting."""
    limit = max_length * MAX_CHARS_PER_TOKEN
    if len(record.response) + len(record.instruction) <= limit:
        return record
    instruction = record.instruction[:limit]
    return replace(record, instruction=instruction, response=record.response[: max(limit - len(instruction), 0)])


def fit_prompt(
    encode: Callable[[str], list[int]], prompt: str, record: Record, max_length: int, overlong: str,
    layout: str = "prompt-first",
) -> tuple[list[int], bool]:
    """Token ids of the rating prompt for ``record``, and whether it had to be truncated."""

    def text(rec: Record) -> str:
        return rating_text(prompt, rec, layout)

    bounded = _bounded(record, max_length)
    ids = encode(text(bounded))
    if len(ids) <= max_length and bounded is record:
        return ids, False
    if overlong == "error":
        raise ConfigError(
            f"record {record.id!r} needs {'more than ' if bounded is not record else ''}{len(ids)} tokens, over "
            f"--max-length {max_length}; raise --max-length or use --overlong truncate"
        )
    if len(ids) <= max_length:  # it fits once cut to what max_length tokens can cover: flagged truncated
        return ids, True
    record = bounded

    def fits(rec: Record) -> bool:
        return len(encode(text(rec))) <= max_length

    k = _longest_fit(len(record.response), lambda k: fits(replace(record, response=record.response[:k])))
    if k is not None:
        return encode(text(replace(record, response=record.response[:k]))), True
    empty = replace(record, response="")
    k = _longest_fit(len(record.instruction), lambda k: fits(replace(empty, instruction=record.instruction[:k])))
    if k is None:
        raise ConfigError(
            f"--max-length {max_length} is shorter than the rating prompt itself; raise --max-length"
        )
    return encode(text(replace(empty, instruction=record.instruction[:k]))), True
