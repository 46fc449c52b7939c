"""The record-once layout (``--layout record-once``): a record's tokens are computed once per model.

The model reads the record as the response-loss pass reads it (the Alpaca prompt with the instruction,
the response, the end-of-text token: selectit.measures.losses, kind GIVEN), and from that one pass come
the response's loss given the instruction (stored as GIVEN, the likelihood term's first loss) and, with
``embed``, the record's ALPACA embedding (the same tokens pooled as in the loss pass). Each of the P
rating prompts then follows as a short later turn that reads the record from the cache
(``encode_turn``: the chat template's next user turn and the answer cue, or a blank line and the
published prompt and ending for 'plain'), and its next-token label probabilities are the ratings.

Per record and model the tokens run fall from P x (prompt + record) + 2 x (Alpaca prompt + record) to
(Alpaca prompt + record) + P x (turn) + the blank-instruction loss's pass (which still runs alone:
bench/speed.py counts both). The rating text is not the published template's: the ratings are those of
a model that has read the record and is then asked about it.

Where the backend runs the shared pass itself (``shares_records``: hf, packed on CPU) it is two packed
passes; elsewhere the same measurements are computed the long way (record + turn as one sequence per
prompt, the loss from its own pass), so every backend gives the same numbers up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selectit.backends.base import response_ids
from selectit.backends.pooling import positions, token_spans
from selectit.errors import ConfigError
from selectit.measures.base import ModelInfo, Outcome, Progress
from selectit.measures.batches import label_probs
from selectit.measures.losses import GIVEN, instruction_context, record_spans
from selectit.prompts import TEMPLATE_TAIL
from selectit.records import Record
from selectit.store import ScoreStore, prompt_key, record_key
from selectit.truncation import MAX_CHARS_PER_TOKEN

LAYOUT = "record-once"


def turn_ids(backend, prompt: str) -> list[int]:
    """Token ids of rating ``prompt`` as a turn after the record (no BOS): the backend's ``encode_turn``
    where it has one, else its rating encoding with the tokenizer's leading BOS removed."""
    text = f"{prompt}{TEMPLATE_TAIL}"
    own = getattr(backend, "encode_turn", None)
    if own is not None:
        return list(own(text))
    ids, bos = list(backend.encode(text if backend.template == "chat" else "\n\n" + text)), backend.encode_plain("")
    return ids[len(bos):] if bos and ids[: len(bos)] == list(bos) else ids


def record_ids(backend, record: Record, room: int, overlong: str) -> tuple[list[int], int, bool]:
    """(ids, response start, cut) of the record as the shared pass reads it: the Alpaca prompt, the
    response and the end token, in ``room`` tokens (the max length less the longest turn). Over it,
    'truncate' cuts the response's end (cut True, no end token) and 'error' stops the run."""
    context, end = instruction_context(record), backend.end_token()
    ids, start = response_ids(backend.encode_plain, context, record.response, room, end)
    whole = len(context) + len(record.response) <= room * MAX_CHARS_PER_TOKEN and ids[-1:] == [end]
    if not whole and overlong == "error":
        raise ConfigError(f"record {record.id!r} needs more than {room} tokens before its rating prompts, over "
                          "--max-length; raise --max-length or use --overlong truncate")
    return ids, start, not whole


def score_records(backend, info: ModelInfo, records: Sequence[Record], prompts: Sequence[str], overlong: str,
                  execution, store: ScoreStore, progress: Progress | None = None, embed: str | None = None) -> Outcome:
    """Ratings (and, for records that fit whole, the GIVEN loss; with ``embed``, the ALPACA embedding) of
    ``records`` under the record-once layout, into ``store``. Distinct records are sorted by length and
    cut into batches of ``execution.batch_size`` records, fixed by the data alone; a batch whose ratings
    (and embeddings) are all stored is not run again; a computed batch is stored before the next runs."""
    key, lkey = info.keys["ratings"], info.keys["losses"]
    turns = [turn_ids(backend, p) for p in prompts]
    room = info.max_length - max(len(t) for t in turns)
    if room < 2:
        raise ConfigError(f"--max-length {info.max_length} is shorter than the rating prompts themselves; "
                          "raise --max-length")
    pkeys = [prompt_key(p) for p in prompts]
    first: dict[str, int] = {}
    for i, r in enumerate(records):
        first.setdefault(record_key(r), i)
    stored = store.load(key, [(pk, rk) for rk in first for pk in pkeys])
    given = store.load_losses(lkey, GIVEN, first)
    pooled = store.load_vectors(key, embed, first, np.float16) if embed else {}
    order = sorted(first.values(), key=lambda i: (len(records[i].instruction) + len(records[i].response), i))
    per_record = len(records) / max(len(first), 1)  # progress is counted in records

    def done(rk: str) -> bool:  # every rating (and the embedding) of the record is stored
        return all((pk, rk) in stored for pk in pkeys) and (not embed or rk in pooled)

    outcome = Outcome(stored=sum(map(done, first)))
    for b in range(0, len(order), max(execution.batch_size, 1)):
        batch = order[b : b + execution.batch_size]
        rkeys = [record_key(records[i]) for i in batch]
        if all(map(done, rkeys)):
            if progress:
                progress(len(batch) * per_record)
            continue
        rows = [record_ids(backend, records[i], room, overlong) for i in batch]
        pools = [_pool_positions(backend, records[i], ids, room) for i, (ids, _, _) in zip(batch, rows)] \
            if embed else None
        before = backend.tokens_computed
        losses, probs, vectors, failed = _measure(backend, [records[i] for i in batch], rows, turns,
                                                  info.label_ids, pools, room)
        outcome.tokens += backend.tokens_computed - before
        store.put(key, [(pk, rk, probs[r, j], cut) for r, (rk, (_, _, cut)) in enumerate(zip(rkeys, rows))
                        if r not in failed for j, pk in enumerate(pkeys)])
        if failed:
            store.put_failures(key, [(pk, rkeys[r], msg, rows[r][2]) for r, msg in failed.items() for pk in pkeys])
        # a cut record's loss is not the GIVEN loss (that reads up to --max-length): its own pass computes it
        store.put_losses(lkey, GIVEN, [(rk, float(v)) for r, (rk, v) in enumerate(zip(rkeys, losses))
                                       if r not in failed and not rows[r][2] and rk not in given])
        if vectors is not None:
            store.put_vectors(key, embed, [(rk, vectors[r].astype(np.float16)) for r, rk in enumerate(rkeys)
                                           if r not in failed])
        if progress:
            progress(len(batch) * per_record)
    return outcome


def _pool_positions(backend, record: Record, ids: list[int], room: int) -> np.ndarray:
    """The token positions of the record's own text in its shared-pass ids (what the ALPACA embedding pools)."""
    chars = record_spans(record, room)
    return positions(token_spans(backend.encode_plain, instruction_context(record) + record.response, ids, chars))


def _measure(backend, records, rows, turns, label_ids, pools, room):
    """One batch: (losses (B,), probs (B, P, S), pooled (B, H) or None, {row: error}). The backend's shared
    pass where it has one; out of memory, the batch is split in halves; any other failure, or a backend
    without it, the long way (which isolates a failing record to its own row)."""
    if getattr(backend, "shares_records", False):
        try:
            losses, probs, pooled = backend.record_pass([(ids, start) for ids, start, _ in rows], turns, label_ids,
                                                        pools)
            return losses, probs, pooled, {}
        except MemoryError:
            if len(rows) == 1:
                raise ConfigError(f"one record of {len(rows[0][0])} tokens does not fit in memory; lower "
                                  "--max-length, use --dtype bfloat16, or a smaller model") from None
            h = len(rows) // 2
            a = _measure(backend, records[:h], rows[:h], turns, label_ids, pools and pools[:h], room)
            z = _measure(backend, records[h:], rows[h:], turns, label_ids, pools and pools[h:], room)
            pooled = None if a[2] is None else np.concatenate([a[2], z[2]])
            failed = {**a[3], **{h + r: m for r, m in z[3].items()}}
            return np.concatenate([a[0], z[0]]), np.concatenate([a[1], z[1]]), pooled, failed
        except Exception as e:  # noqa: BLE001 - the long way finds the failing record and isolates it
            _warn_once(f"{backend.name}: the shared record pass failed ({type(e).__name__}: {e}); this batch is "
                       "scored the long way (slower), a record that still fails gets no score")
    return _long_way(backend, records, rows, turns, label_ids, pools, room)


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    import warnings

    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _long_way(backend, records, rows, turns, label_ids, pools, room):
    """The same measurements with the backend's plain calls: each (record, turn) as one sequence sharing
    the record as its prefix, the loss (and pooled state) from a response-loss pass of its own."""
    P, S = len(turns), len(label_ids)
    probs, failed = np.full((len(rows), P, S), np.nan), {}
    for r, (ids, _, _) in enumerate(rows):
        out, errors, _ = label_probs(backend, [ids + t for t in turns], label_ids, len(ids))
        probs[r] = out
        if errors:
            failed[r] = next(iter(errors.values()))
    pairs = [(instruction_context(rec), rec.response) for rec in records]

    def losses_of(at: list[int]):
        if pools is None:
            return backend.response_losses([pairs[r] for r in at], room, end=True), None
        return backend.pooled_losses([pairs[r] for r in at], [record_spans(records[r], room) for r in at], room,
                                     end=True)

    try:
        losses, pooled = losses_of(list(range(len(rows))))
        return losses, probs, pooled, failed
    except Exception:  # noqa: BLE001 - one record at a time: a record that fails gets no score, alone
        losses, pooled = np.full(len(rows), np.nan), None
        for r in range(len(rows)):
            try:
                one, vec = losses_of([r])
            except Exception as e:  # noqa: BLE001
                failed.setdefault(r, f"{type(e).__name__}: {e}")
                continue
            losses[r] = one[0]
            if vec is not None:
                pooled = np.full((len(rows), vec.shape[1]), np.nan, dtype=np.float32) if pooled is None else pooled
                pooled[r] = vec[0]
        return losses, probs, pooled, failed
