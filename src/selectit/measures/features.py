"""Cheap features of a record for the learned proxy (issue 18, selectit.proxy.fit), a ladder from cheapest
to richest (``--proxy-features``):

- ``ngrams``: hashed word 1- and 2-grams of the instruction and of the response, and lengths. No model.
  Recomputed, not stored: hashing a record's words is faster than reading 2^18 sparse columns back.
- ``token-embeddings``: the scoring model's input token embeddings of the record's text, mean-pooled (a
  table lookup, no forward pass), and lengths.
- ``early``: the model's hidden state after its first ``--proxy-layers`` layers of one pass over the
  record's text alone, mean-pooled (an early exit), and lengths.
- ``hidden``: the last hidden state of the response-loss pass, mean-pooled over the record's own tokens:
  the record embedding ``--diversity`` selects with (selectit.measures.embeddings), and lengths.
- ``early-likelihood``: the likelihood term's two losses (the given and the blank instruction) read
  after the model's first ``--proxy-layers`` layers through its final norm and output head (an early
  exit, the logit lens: ``selectit.measures.losses.EarlyLosses``), the term computed from them, and
  lengths: the ``likelihood`` rung's passes at a fraction of their layers.
- ``likelihood``: the default method's likelihood term computed exactly (its 2 response-loss passes, the
  given and the blank instruction), and lengths: only the rating part is left to predict. 2 of the
  default's 7 passes per record, but the term decides most of the default's ranking (bench/README.md,
  "The learned proxy"). The first pass also stores the ``hidden`` embedding (for ``--diversity``); it
  is not a feature here: 576 more columns drowned the term in a sample of a few hundred records.

The record's text is its instruction, a blank line and its response, plain (no template). Model
features are stored per (model, record) as float16, under the model's loss key (its weights and
length limit), so a rerun or another run on the same store computes nothing again. No rating prompt
runs in any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from selectit import reflection
from selectit.measures.base import Measure, ModelInfo, Outcome, stored_vectors
from selectit.measures.embeddings import Embeddings
from selectit.measures.losses import GIVEN, GIVEN_BLANK, EarlyLosses, Losses
from selectit.measures.reading import ReadLengths
from selectit.records import Record
from selectit.store import ScoreStore, record_key

DTYPE = np.float16
HASH_FEATURES = 1 << 18


def record_text(record: Record) -> str:
    """What the feature passes read: the instruction, a blank line, the response."""
    return f"{record.instruction}\n\n{record.response}"


def lengths(records: Sequence[Record]) -> np.ndarray:
    """(n, 4) float64: log(1 + characters) and log(1 + words) of the instruction and of the response."""
    return np.log1p(np.array([[len(r.instruction), len(r.instruction.split()), len(r.response),
                               len(r.response.split())] for r in records], dtype=np.float64).reshape(-1, 4))


def ngram_features(records: Sequence[Record]):
    """(n, 2 * HASH_FEATURES + 4) sparse CSR: hashed word 1-2-grams of the instruction, of the response
    (each row l2-normalised, separate columns), then :func:`lengths`. Stateless: no fit, no vocabulary."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import HashingVectorizer

    vec = HashingVectorizer(n_features=HASH_FEATURES, ngram_range=(1, 2), alternate_sign=False, norm="l2")
    return hstack([vec.transform([r.instruction for r in records]), vec.transform([r.response for r in records]),
                   csr_matrix(lengths(records))], format="csr")


@dataclass(frozen=True)
class RecordStates(Measure):
    """(n, H) float16 per (model, record): the record text's tokens mean-pooled after the model's first
    ``layers`` layers (0: its input token embeddings), from a pass over the record alone."""

    layers: int
    family = "losses"  # the model's weights and length limit key its passes

    @property
    def kind(self) -> str:
        return f"proxy:states:{self.layers}"

    def describe(self) -> str:
        what = "input token embeddings" if self.layers == 0 else f"hidden states after {self.layers} layer(s)"
        return f"record {what} (mean-pooled, for --proxy)"

    def passes(self) -> float:
        return 0.05 if self.layers == 0 else 0.5

    def compute(self, backend, info, records, store, execution, progress=None) -> Outcome:
        key, keys = self.key(info), [record_key(r) for r in records]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        found = store.load_vectors(key, self.kind, first, DTYPE)
        todo = sorted((i for k, i in first.items() if k not in found), key=lambda i: len(record_text(records[i])))
        if progress:
            progress(len(records) - len(todo))
        outcome = Outcome(stored=len(records) - len(todo))
        for b in range(0, len(todo), execution.batch_size):
            batch = todo[b : b + execution.batch_size]
            before = backend.tokens_computed
            states = backend.record_states([record_text(records[i]) for i in batch], self.layers, info.max_length)
            store.put_vectors(key, self.kind, [(keys[i], v.astype(DTYPE)) for i, v in zip(batch, states)])
            outcome.tokens += backend.tokens_computed - before
            if progress:
                progress(len(batch))
        return outcome

    def load(self, info: ModelInfo, records: Sequence[Record], store: ScoreStore) -> np.ndarray:
        what = f"{self.describe()} of model {info.name}"
        return stored_vectors(store, self.key(info), self.kind, records, DTYPE, what)


def rung_measures(rung: str, layers: int) -> list[Measure]:
    """The stored measurements behind a rung (none for ``ngrams``, which needs no model)."""
    if rung == "ngrams":
        return []
    if rung == "token-embeddings":
        return [RecordStates(0)]
    if rung == "early":
        return [RecordStates(layers)]
    if rung == "early-likelihood":
        return [EarlyLosses(GIVEN, layers), EarlyLosses(GIVEN_BLANK, layers), ReadLengths()]
    hidden = Embeddings(Losses(GIVEN))  # kind ALPACA: the record embedding of --diversity
    return [hidden, Losses(GIVEN_BLANK), ReadLengths()] if rung == "likelihood" else [hidden]


def features(rung: str, layers: int, records: Sequence[Record], models: Sequence[ModelInfo], store: ScoreStore,
             term: str = "information"):
    """The (n, F) features of ``records`` for ``rung``: sparse for ``ngrams``, else a float64 array of
    every model's stored vectors side by side (and, for ``likelihood``, each model's likelihood term
    ``term``: selectit.reflection; for ``early-likelihood``, that term from the early-exit losses and the two
    losses themselves), then :func:`lengths`. NaN values (nothing pooled or scored) are 0."""
    measures = rung_measures(rung, layers)
    if not measures:
        return ngram_features(records)
    parts = []
    for info in models:
        if rung in ("likelihood", "early-likelihood"):
            pair = measures[:2] if rung == "early-likelihood" else (Losses(GIVEN), measures[1])
            given, blank = (m.load(info, records, store) for m in pair)
            chars = measures[-1].load(info, records, store)  # what the losses read (issue 29)
            value = (reflection.information_scores(given, blank, chars) if term == "information"
                     else reflection.likelihood_scores(given, blank))
            parts.append(value.reshape(-1, 1) if rung == "likelihood" else np.column_stack([value, given, blank]))
        else:
            parts.append(measures[0].load(info, records, store).astype(np.float64))
    return np.nan_to_num(np.hstack([*parts, lengths(records)]))
