"""Rating-label probabilities: for every record and rating prompt, the model's next-token probabilities
of the labels "1".."S" (the token level of README.md, "The method"), and the same on content-free inputs (for calibration).

Prompts are tokenized once, sorted by length and batched (selectit.plan), so padding stays small;
results are put back by index, so a record's probabilities never depend on its neighbours or on the
batch order. Identical (record, prompt) pairs run once; batches already stored are not run again.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from selectit.backends.pooling import token_spans
from selectit.labels import resolve_label_ids
from selectit.measures import record_once
from selectit.measures.base import Measure, MissingMeasurement, ModelInfo, Outcome, Progress
from selectit.measures.batches import label_probs
from selectit.plan import plan_batches
from selectit.prompts import rating_spans, rating_text
from selectit.records import Record
from selectit.store import ScoreStore, model_key, prompt_key, record_key
from selectit.truncation import MAX_CHARS_PER_TOKEN, fit_prompt

# Content-free inputs for calibration (Zhao et al. 2021 use "N/A", "[MASK]" and "").
CONTENT_FREE = tuple(Record(id=f"content-free:{x}", instruction=x, response=x, raw={}) for x in ("N/A", "[MASK]", "..."))


def label_ids(backend, probe: Record, prompt: str, labels: Sequence[str], layout: str) -> list[int]:
    """The rating labels' token ids in the template's position, resolved on a real prompt (``probe``)."""
    text = rating_text(prompt, probe, layout)
    return resolve_label_ids(lambda suffix: backend.encode(text, suffix), backend.decode, labels, context=text)


def ratings_key(backend, *, layout: str, max_length: int, overlong: str, ids: list[int]) -> str:
    """The store's model key for label probabilities (see store.model_key)."""
    return model_key({**backend.fingerprint, "layout": layout, "max_length": max_length, "overlong": overlong,
                      "label_ids": ids})


@dataclass
class RatingArrays:
    """Label probabilities of n records. probs (n, P, S) raw (NaN where the model failed); truncated
    (n, P); errors: (record, prompt) -> why the model failed on it."""

    probs: np.ndarray
    truncated: np.ndarray
    errors: dict[tuple[int, int], str]


@dataclass(frozen=True)
class RatingPass(Measure):
    """What the rating measures share: the prompts, their layout and the overlong policy; one store
    kind ("ratings") for the records' and the content-free inputs' probabilities."""

    prompts: tuple[str, ...]
    layout: str
    overlong: str
    family = "ratings"
    needs_labels = True


@dataclass(frozen=True)
class Ratings(RatingPass):
    """Label probabilities per (model, prompt, record). Store: table probs (and failures)."""

    def describe(self) -> str:
        return f"rating-label probabilities ({len(self.prompts)} prompts, {self.layout} layout)"

    def passes(self) -> float:
        # record-once: the record's pass, and P short turns that together cost about as much again
        return 2.0 if self.layout == record_once.LAYOUT else float(len(self.prompts))

    def compute(self, backend, info, records, store, execution, progress=None) -> Outcome:
        return score_items(backend, info, records, self.prompts, self.layout, self.overlong, execution, store,
                           progress)

    def load(self, info: ModelInfo, records: Sequence[Record], store: ScoreStore) -> RatingArrays:
        key = self.key(info)
        P, S = len(self.prompts), len(info.label_ids or ())
        pkeys = [prompt_key(p) for p in self.prompts]
        keys = [(pk, record_key(r)) for r in records for pk in pkeys]  # (n * P,), record-major
        stored = store.load(key, keys)
        failed = store.load_failures(key, [k for k in keys if k not in stored]) if len(stored) < len(keys) else {}
        probs, cut, errors = np.empty((len(records), P, S)), np.zeros((len(records), P), dtype=bool), {}
        for idx, k in enumerate(keys):
            i, j = divmod(idx, P)
            if k in stored:
                probs[i, j], cut[i, j] = stored[k]
            elif k in failed:
                probs[i, j] = np.nan
                errors[(i, j)], cut[i, j] = failed[k]
            else:
                raise MissingMeasurement(f"the score store {store.path} has no {self.describe()} of model "
                                         f"{info.name} for record {records[i].id!r}")
        return RatingArrays(probs=probs, truncated=cut, errors=errors)


@dataclass(frozen=True)
class ContentFree(RatingPass):
    """The label probabilities of the content-free inputs under each prompt, averaged: (P, S). Computed
    once per model and prompt (not per record), stored like any rating (same key)."""

    def describe(self) -> str:
        return "content-free rating probabilities (--calibrate)"

    def passes(self) -> float:
        return 0.0

    def compute(self, backend, info, records, store, execution, progress=None) -> Outcome:
        return score_items(backend, info, CONTENT_FREE, self.prompts, self.layout, self.overlong, execution, store)

    def load(self, info: ModelInfo, records: Sequence[Record], store: ScoreStore) -> np.ndarray:
        grid = Ratings(self.prompts, self.layout, self.overlong).load(info, CONTENT_FREE, store).probs  # (3, P, S)
        return grid.mean(axis=0)


def score_items(backend, info: ModelInfo, records: Sequence[Record], prompts: Sequence[str], layout: str,
                overlong: str, execution, store: ScoreStore, progress: Progress | None = None,
                embed: str | None = None) -> Outcome:
    """Run one model over every (record, prompt) pair of ``records`` into ``store``; with ``embed`` (a
    vector kind), also store each record's pooled last hidden state from its first prompt's pass
    (selectit.measures.embeddings), float16. The record-once layout: selectit.measures.record_once.

    Batches whose pairs are all stored are not run again and every computed batch is stored as one
    transaction, so a killed run resumes where it stopped; the batch plan depends only on the
    records, so a resumed run computes every batch exactly as an uninterrupted one would. A pair the
    model fails on is stored as a failure (NaN, with its reason), never as a score."""
    if layout == record_once.LAYOUT:
        return record_once.score_records(backend, info, records, prompts, overlong, execution, store, progress, embed)
    key = info.keys["ratings"]
    items = _Items.build(backend, records, prompts, overlong, layout, info.max_length, pool=embed is not None)
    batches = plan_batches(items.ids, items.groups(len(prompts), layout), batch_size=execution.batch_size,
                           batch_tokens=execution.batch_tokens, share_prefix=execution.prefix_cache)
    stored = store.load(key, items.keys)
    pooled = store.load_vectors(key, embed, {items.keys[k][1] for k in items.pooled()}, np.float16) if embed else {}
    per_item = len(records) / max(len(items.ids), 1)  # progress is counted in records
    outcome = Outcome(stored=sum(1 for k in items.keys if k in stored) // max(len(prompts), 1))
    for batch in batches:
        pool = [k for k in batch.rows if items.spans[k] is not None and items.keys[k][1] not in pooled] if embed else []
        if pool or not all(items.keys[k] in stored for k in batch.rows):
            rows = [items.ids[k].tolist() for k in batch.rows]
            spans = [items.spans[k] for k in batch.rows] if pool else None
            before = backend.tokens_computed
            probs, failed, vectors = label_probs(backend, rows, info.label_ids, batch.shared, spans)
            outcome.tokens += backend.tokens_computed - before
            store.put(key, [(*items.keys[k], probs[r], items.cut[k]) for r, k in enumerate(batch.rows)
                            if r not in failed])
            if failed:
                store.put_failures(key, [(*items.keys[batch.rows[r]], msg, items.cut[batch.rows[r]])
                                         for r, msg in failed.items()])
            if vectors is not None:
                store.put_vectors(key, embed, [(items.keys[k][1], vectors[r].astype(np.float16))
                                               for r, k in enumerate(batch.rows)
                                               if items.spans[k] is not None and r not in failed])
        if progress:
            progress(len(batch.rows) * per_item)
    return outcome


@dataclass
class _Items:
    """The distinct (record, prompt) pairs to run, tokenized once. Duplicated records map to one item.

    ids[k]: token ids (compact arrays); keys[k]: (prompt key, record key); cut[k]: truncated; owner[k]:
    the first (record, prompt) it came from; spans[k]: the token spans to pool the record's embedding
    over (its first prompt's item, when pooling), else None."""

    ids: list[array]
    keys: list[tuple[str, str]]
    cut: list[bool]
    owner: list[tuple[int, int]]
    rkeys: list[str]
    spans: list[list[tuple[int, int]] | None]

    @classmethod
    def build(cls, backend, records: Sequence[Record], prompts: Sequence[str], overlong: str, layout: str,
              max_length: int, pool: bool = False) -> _Items:
        pkeys = [prompt_key(p) for p in prompts]
        items = cls(ids=[], keys=[], cut=[], owner=[], rkeys=[record_key(r) for r in records], spans=[])
        seen: set[tuple[str, str]] = set()
        limit = max_length * MAX_CHARS_PER_TOKEN  # what fit_prompt tokenizes at most
        for i, (record, rkey) in enumerate(zip(records, items.rkeys)):
            for j, prompt in enumerate(prompts):
                key = (pkeys[j], rkey)
                if key not in seen:
                    seen.add(key)
                    ids, cut = fit_prompt(backend.encode, prompt, record, max_length, overlong, layout)
                    items.ids.append(array("i", ids))  # 4 bytes a token, not an 8-byte pointer to an int object
                    items.keys.append(key)
                    items.cut.append(cut)
                    items.owner.append((i, j))
                    spans = None
                    if pool and j == 0:
                        chars = [(min(a, limit), min(b, limit)) for a, b in rating_spans(prompt, record, layout)]
                        spans = token_spans(backend.encode, rating_text(prompt, record, layout)[:limit], ids, chars)
                    items.spans.append(spans)
        return items

    def pooled(self) -> list[int]:
        """The items whose record embedding is pooled."""
        return [k for k, s in enumerate(self.spans) if s is not None]

    def groups(self, P: int, layout: str) -> list[list[int]]:
        """Items that share a token prefix: one group per record (record-first) or per prompt."""
        if layout == "record-first":
            by: dict[str, list[int]] = {}
            for k, (i, _) in enumerate(self.owner):
                by.setdefault(self.rkeys[i], []).append(k)
            return list(by.values())
        return [[k for k, (_, j) in enumerate(self.owner) if j == jj] for jj in range(P)]
