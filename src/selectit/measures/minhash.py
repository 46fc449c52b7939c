"""MinHash signatures of a record's word shingles, for near-duplicate selection (selectit.selection.dedup).

A measurement like the others (computed once per content into the score store, read back by key), but
of the text alone: no model runs, so ``compute`` ignores the backend and the store key is the
signature's definition (library, permutations, shingle size, seed), not a model's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from selectit.measures.base import Measure, Outcome, stored_vectors
from selectit.records import Record, copy_fields, normalise
from selectit.store import ScoreStore, model_key, record_key

KIND = "minhash"
DTYPE = np.uint32
NUM_PERM = 128  # signature length: 512 bytes a record as uint32
SHINGLE = 3  # words per shingle
SEED = 1
_WORD = re.compile(r"\w+")


def shingles(record: Record) -> list[str]:
    """The word 3-grams of the record's normalised fields (one shingle of all words when fewer than 3)."""
    words = _WORD.findall(normalise(" ".join(copy_fields(record))))
    return [" ".join(words[k : k + SHINGLE]) for k in range(max(len(words) - SHINGLE + 1, 1))]


def signatures(records: Iterable[Record]) -> np.ndarray:
    """(n, NUM_PERM) uint32 MinHash signatures (rensa R-MinHash, seed SEED) of the records' shingles."""
    from selectit.errors import optional_import

    rensa = optional_import("rensa", "--dedup-threshold (near duplicates) needs rensa", "dedup")
    sets = [shingles(r) for r in records]
    if not sets:
        return np.zeros((0, NUM_PERM), dtype=np.uint32)
    matrix = rensa.RMinHash.digest_matrix_from_token_sets(sets, num_perm=NUM_PERM, seed=SEED)
    return np.asarray(matrix.to_rows(), dtype=np.uint32)


@dataclass(frozen=True)
class MinHashes(Measure):
    """(n, NUM_PERM) uint32 signatures. Needs no model (``compute`` and ``load`` take None for it)."""

    family = "minhash"

    def describe(self) -> str:
        return f"MinHash signatures ({NUM_PERM} permutations of word {SHINGLE}-grams)"

    def passes(self) -> float:
        return 0.0

    def key(self, info=None) -> str:
        return model_key({"use": "minhash", "library": "rensa-rminhash", "num_perm": NUM_PERM,
                          "shingle": SHINGLE, "seed": SEED, "normalise": "casefold-space-1"})

    def compute(self, backend, info, records, store, execution=None, progress=None) -> Outcome:
        keys = [record_key(r) for r in records]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        found = store.load_vectors(self.key(), KIND, first, DTYPE)
        todo = [i for k, i in first.items() if k not in found]
        if todo:
            sigs = signatures([records[i] for i in todo])
            store.put_vectors(self.key(), KIND, [(keys[i], s) for i, s in zip(todo, sigs)])
        return Outcome(stored=len(records) - len(todo))

    def load(self, info, records: Sequence[Record], store: ScoreStore) -> np.ndarray:
        return stored_vectors(store, self.key(), KIND, records, DTYPE, self.describe(), width=NUM_PERM)
