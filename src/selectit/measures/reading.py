"""What the likelihood term's loss passes read of a record that ``--max-length`` cuts (issue 29).

A record whose Alpaca prompt, response and end token fit in the max length is read whole, as always:
its GIVEN and GIVEN_BLANK losses are those of the whole response and the end token. A record that does
not fit is read as its **view**: the first ``context`` characters of the record's own text (the
instruction, then the Alpaca input) and the first ``response`` characters of its response, no end token:

- the response keeps at least RESPONSE_SHARE of the max length in tokens (all of it when shorter): an
  instruction that fills the max length is cut from its end (the input first) to leave that room, as
  the rating policy cuts the instruction when it must (selectit.truncation), so the record still gets
  a loss instead of none;
- the response is cut to the characters that fit after that context;
- both losses are of that same response prefix (the blank pass too, though its shorter context would
  leave room for more), and the information term multiplies their difference by the characters read,
  not by the response's full length (a 2 MB answer is not worth 2 MB of gain it was never measured on).

A record's view is stored (the store's views table) under the loss key, so a rescore knows it without the tokenizer; a cut record's losses are stored under
:func:`view_key`, never under its record key (a store written before this rule holds the old, cut-at-
the-token losses there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from selectit.measures.alpaca import PROMPT_INPUT, PROMPT_NO_INPUT, alpaca_parts, blank_context, instruction_context
from selectit.measures.base import Measure, MissingMeasurement, ModelInfo, Outcome
from selectit.records import Record
from selectit.store import ScoreStore, record_key
from selectit.truncation import MAX_CHARS_PER_TOKEN

RESPONSE_SHARE = 0.25  # a cut record's response keeps at least this share of the max length (in tokens)


@dataclass(frozen=True)
class View:
    """What the loss passes read: characters of the record's own text and of its response; ``whole``:
    the record entire, with the end token after it."""

    context: int
    response: int
    whole: bool



def own_text(record: Record) -> int:
    """Characters of the record's own text in its Alpaca prompt: the instruction (and the input)."""
    parts = alpaca_parts(record)
    return len(record.instruction) if parts is None else len(parts[0]) + len(parts[1])


def cut_context(record: Record, chars: int) -> str:
    """The Alpaca prompt of ``record`` with its own text cut to its first ``chars`` characters
    (the instruction, then the input: the input is cut first)."""
    parts = alpaca_parts(record)
    if chars >= own_text(record):
        return instruction_context(record)
    if parts is None:
        return PROMPT_NO_INPUT.format(instruction=record.instruction[:chars])
    return PROMPT_INPUT.format(instruction=parts[0][:chars], input=parts[1][: max(chars - len(parts[0]), 0)])


def view_key(record: Record, view: View) -> str:
    """The store key of a cut record's losses (its record key, and what was read)."""
    return f"{record_key(record)}:{view.context}:{view.response}"


def _longest(n: int, fits: Callable[[int], bool]) -> int:
    """Largest k in [0, n] with fits(k): n when it fits, else by bisection (token counts of a text's
    prefixes are monotone but for a merge here and there, so the k found fits and k + 1 does not)."""
    if fits(n):
        return n
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def view_of(encode: Callable[[str], list[int]], record: Record, max_length: int) -> View:
    """The view of ``record`` in ``max_length`` tokens (see the module): whole when the Alpaca prompt, the
    response and the end token fit. ``encode``: the backend's plain-text tokenizer."""
    context, response, own = instruction_context(record), record.response, own_text(record)
    limit = max_length * MAX_CHARS_PER_TOKEN
    if len(context) + len(response) <= limit and len(encode(context + response)) < max_length:
        return View(own, len(response), True)  # room for the end token too
    response = response[:limit]
    blank = blank_context(record)  # ends as the record's prompt does: the response's tokens after "### Response:"
    base, share = len(encode(blank)), max(int(np.ceil(RESPONSE_SHARE * max_length)), 1)
    keep = _longest(len(response), lambda k: len(encode(blank + response[:k])) - base <= share)  # its share
    chars = own
    if len(context) > limit or len(encode(context + response[:keep])) > max_length:  # the instruction gives way
        chars = _longest(min(own, limit), lambda c: len(encode(cut_context(record, c) + response[:keep])) <= max_length)
    context = cut_context(record, chars)
    read = _longest(len(response), lambda k: len(encode(context + response[:k])) <= max_length)
    return View(chars, read, False)


def views(encode, records: Sequence[Record], max_length: int, store: ScoreStore, key: str,
          compute: bool = True) -> dict[str, View]:
    """record key -> View of ``records``: stored ones read, the others (with ``compute``) worked out with
    ``encode`` and stored."""
    keys = {record_key(r): r for r in records}
    found = {k: View(*v) for k, v in store.load_views(key, keys).items()}
    if compute:
        new = {k: view_of(encode, r, max_length) for k, r in keys.items() if k not in found}
        if new:
            store.put_views(key, [(k, v.context, v.response, v.whole) for k, v in new.items()])
            found.update(new)
    return found


def view_pair(given: bool, record: Record, view: View) -> tuple[str, str]:
    """(context, target) of the record's view: after its (cut) Alpaca prompt (``given``, kind GIVEN) or
    after the blank instruction (kind GIVEN_BLANK)."""
    context = cut_context(record, view.context) if given else blank_context(record)
    return context, record.response[: view.response]


@dataclass(frozen=True)
class ReadLengths(Measure):
    """How many characters of each response the likelihood term's losses read: (n,) float64 (the
    response's length when read whole). Tokenizing only; the loss passes store it as they run."""

    family = "losses"

    def describe(self) -> str:
        return "record of what the likelihood losses read"

    def passes(self) -> float:
        return 0.0  # no forward pass

    def compute(self, backend, info, records, store, execution, progress=None) -> Outcome:
        before = len(store.load_views(self.key(info), {record_key(r) for r in records}))
        views(backend.encode_plain, records, info.max_length, store, self.key(info))
        return Outcome(stored=before)

    def load(self, info: ModelInfo, records: Sequence[Record], store: ScoreStore) -> np.ndarray:
        seen = stored_views(info, records, store, self.key(info))
        return np.array([seen[record_key(r)].response for r in records], dtype=np.float64)


def stored_views(info: ModelInfo, records: Sequence[Record], store: ScoreStore, key: str) -> dict[str, View]:
    """record key -> stored View of ``records``; raises MissingMeasurement naming the first without one."""
    seen = views(None, records, info.max_length, store, key, compute=False)
    missing = next((r for r in records if record_key(r) not in seen), None)
    if missing is not None:
        raise MissingMeasurement(
            f"the score store {store.path} has no record of what model {info.name}'s likelihood losses read of "
            f"record {missing.id!r} (a store from before selectit kept it); run `selectit score` again: "
            "only that is worked out")
    return seen
