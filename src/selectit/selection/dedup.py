"""Duplicates at selection time (issue 16): a record's exact and near copies are never selected with it.

- **Exact**: records whose instruction, Alpaca input and response are equal after normalising
  (:func:`selectit.records.normalise`: Unicode case folded, every run of whitespace one space, ends
  stripped) are one record: the first in input order can be selected, the others never. Compared by a
  64-bit hash of the normalised fields (:func:`exact_keys`; two different records collide with
  probability ~n^2 / 2^65, 3e-8 at 1M).
- **Near**: MinHash signatures (rensa's R-MinHash, ``NUM_PERM`` values a record) of the word 3-grams of
  instruction, input and response, normalised alike (selectit.measures.minhash); LSH banding
  (:func:`candidate_pairs`: bands of ``r`` rows, ``b`` bands chosen for the threshold as datasketch's
  MinHashLSH chooses them) proposes pairs (in a band bucket of more than :data:`BUCKET` records, each
  with the bucket's first and the one before it), and a pair is kept when its estimated Jaccard (the
  share of equal signature values) is at least the threshold. Kept pairs join clusters (connected components,
  so a chain of near copies is one cluster, as in data-juicer and NeMo Curator); in each cluster the
  best-scored record (ties: the first in input order) can be selected, the others never.

Pure functions on arrays; the signatures are a measurement kept in the score store
(selectit.measures.minhash), so a second selection does not compute them again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from selectit.measures.minhash import NUM_PERM
from selectit.records import Record, copy_fields, normalise

BUCKET = 256  # records sharing one LSH band beyond this are compared with the first and the one before only


def exact_keys(records: Iterable[Record]) -> np.ndarray:
    """(n,) uint64: a hash of each record's normalised fields (equal for exact copies)."""
    out = []
    for r in records:
        text = "\0".join(normalise(f) for f in copy_fields(r))
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
        out.append(int.from_bytes(digest, "little"))
    return np.array(out, dtype=np.uint64)


def first_copies(keys: np.ndarray) -> np.ndarray:
    """(n,) int64: for each record, the position of the first record with its key (itself if first)."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)].astype(np.int64)


@lru_cache(maxsize=64)
def band_params(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """(bands, rows) minimising the equally weighted areas of false positives (Jaccard under the
    threshold, yet sharing a band) and false negatives (over it, sharing none): datasketch
    MinHashLSH's rule (``_optimal_param``), integrated here by Gauss-Legendre quadrature instead of scipy."""
    nodes, weights = np.polynomial.legendre.leggauss(64)

    def area(f, lo: float, hi: float) -> float:
        return float((hi - lo) / 2 * (weights * f((hi - lo) / 2 * nodes + (hi + lo) / 2)).sum())

    best = None
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            hit = lambda s, b=b, r=r: 1 - (1 - s ** r) ** b  # noqa: E731 - P(share a band | Jaccard s)
            error = area(hit, 0.0, threshold) + area(lambda s: 1 - hit(s), threshold, 1.0)
            if best is None or error < best[0]:
                best = (error, b, r)
    return best[1], best[2]


def candidate_pairs(sigs: np.ndarray, threshold: float) -> np.ndarray:
    """(m, 2) int64 pairs (i < j) of records sharing at least one LSH band, each pair once."""
    b, r = band_params(threshold, sigs.shape[1])
    pairs = []
    for k in range(b):
        band = np.ascontiguousarray(sigs[:, k * r : (k + 1) * r]).view(np.dtype((np.void, 4 * r))).reshape(-1)
        _, group = np.unique(band, return_inverse=True)
        order = np.argsort(group, kind="stable")
        g = group[order]
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        sizes = np.diff(np.r_[starts, len(g)])
        for s, size in zip(starts[sizes > 1], sizes[sizes > 1]):
            members = order[s : s + size]  # ascending positions (stable sort)
            if size <= BUCKET:
                i, j = np.triu_indices(size, 1)
                pairs.append(np.stack([members[i], members[j]], axis=1))
            else:  # each with the first and the one before: O(size) pairs, enough to link a bucket of copies
                pairs.append(np.stack([np.r_[np.repeat(members[0], size - 1), members[1:-1]],
                                       np.r_[members[1:], members[2:]]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs), axis=0).astype(np.int64)


def near_pairs(sigs: np.ndarray, threshold: float) -> np.ndarray:
    """(m, 2) candidate pairs whose estimated Jaccard (equal signature values / NUM_PERM) >= threshold."""
    pairs = candidate_pairs(sigs, threshold)
    if not len(pairs):
        return pairs
    similar = np.concatenate([(sigs[pairs[k:k + 65536, 0]] == sigs[pairs[k:k + 65536, 1]]).mean(axis=1)
                              for k in range(0, len(pairs), 65536)])
    return pairs[similar >= threshold]


def clusters(n: int, pairs: np.ndarray) -> np.ndarray:
    """(n,) int64: each record's cluster, named by its first member (connected components of ``pairs``)."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        a, b = root(int(i)), root(int(j))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(n)], dtype=np.int64)


def best_of_clusters(scores: np.ndarray, cluster: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """(n,) bool: ``eligible`` records that are the best-scored eligible member of their cluster (ties: the
    first in input order; a record without a finite score is never best)."""
    s = np.where(eligible & np.isfinite(scores), scores, -np.inf)
    order = np.lexsort((np.arange(len(s)), -s, cluster))  # by cluster, best score first, then position
    first = np.r_[True, cluster[order][1:] != cluster[order][:-1]]
    keep = np.zeros(len(s), dtype=bool)
    keep[order[first]] = True
    return keep & eligible & np.isfinite(scores)
