"""MinHash signatures of a record's word shingles (selectit.dedup), for near-duplicate selection.

A measurement like the others (computed once per content into the score store, read back by key), but
of the text alone: no model runs, so ``compute`` ignores the backend and the store key is the
signature's definition (library, permutations, shingle size, seed), not a model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from selectit import dedup
from selectit.measures.base import Measure, Outcome, stored_vectors
from selectit.records import Record
from selectit.store import ScoreStore, model_key, record_key

KIND = "minhash"
DTYPE = np.uint32


@dataclass(frozen=True)
class MinHashes(Measure):
    """(n, NUM_PERM) uint32 signatures. Needs no model (``compute`` and ``load`` take None for it)."""

    family = "minhash"

    def describe(self) -> str:
        return f"MinHash signatures ({dedup.NUM_PERM} permutations of word {dedup.SHINGLE}-grams)"

    def passes(self) -> float:
        return 0.0

    def key(self, info=None) -> str:
        return model_key({"use": "minhash", "library": "rensa-rminhash", "num_perm": dedup.NUM_PERM,
                          "shingle": dedup.SHINGLE, "seed": dedup.SEED, "normalise": "casefold-space-1"})

    def compute(self, backend, info, records, store, execution=None, progress=None) -> Outcome:
        keys = [record_key(r) for r in records]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        found = store.load_vectors(self.key(), KIND, first, DTYPE)
        todo = [i for k, i in first.items() if k not in found]
        if todo:
            sigs = dedup.signatures([records[i] for i in todo])
            store.put_vectors(self.key(), KIND, [(keys[i], s) for i, s in zip(todo, sigs)])
        return Outcome(stored=len(records) - len(todo))

    def load(self, info, records: Sequence[Record], store: ScoreStore) -> np.ndarray:
        return stored_vectors(store, self.key(), KIND, records, DTYPE, self.describe(), width=dedup.NUM_PERM)
