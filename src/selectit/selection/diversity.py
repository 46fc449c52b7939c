"""Diversity-aware selection (issue 16): DEITA's "score-first, diversity-aware" rule (Liu et al., "What
Makes Good Data for Alignment?", ICLR 2024; hkust-nlp/deita, ``deita/selection/filter/base.py``).

Walk the records from the best score down and take a record only if its cosine similarity to every
record already taken is below ``1 - D``, until the budget is filled (or the walk ends). Records without
an embedding (NaN or zero vector) are taken on their score alone and are never compared with.

How it holds at 1M records: records are walked in blocks of :data:`BLOCK`. A block's records are first
checked against everything taken before the block by one batched nearest-neighbour search: faiss's
IndexIVFFlat holds the taken vectors in lists whose centres are k-means of a sample of all the
records' embeddings (sqrt(40 m) lists for a sample of m records, at most 1,024, reached at 26,214
records); a query scans the :data:`NPROBE` nearest lists, exact inner products there
(bench/dedup_libs.py chose it over HNSW: as good at finding a close neighbour, 10x faster to fill).
Then each record is checked, in walk order, against the block's records taken before it (an exact
(block x block) product), and the block's taken records are added to the index. That is the
sequential rule exactly, except that the index is approximate: a close taken record in a list that is
not scanned lets a too-similar record in (bench/README.md measures how often). Up to :data:`EXACT`
taken records the search is an exact matrix product instead.
"""

from __future__ import annotations

import numpy as np

from selectit.errors import optional_import

BLOCK = 1024  # records checked per batched search
EXACT = 4096  # up to this many taken records, search exactly (numpy) instead of through the index
MAX_LISTS, TRAIN_PER_LIST, TRAIN_ITERATIONS = 1024, 40, 10  # IVF: sqrt(40 m) lists for m sampled; k-means rounds
NPROBE = 32  # lists searched per query (bench/README.md: misses and time against 16 and 64)


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit vectors (n, H) float32, usable (n,) bool): rows scaled to length 1; a row with a NaN or of
    length 0 is not usable (and left as zeros)."""
    x = np.asarray(vectors, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        norm = np.linalg.norm(x, axis=1)
    usable = np.isfinite(norm) & (norm > 0)
    out = np.zeros_like(x)
    out[usable] = x[usable] / norm[usable, None]
    return out, usable


class _Taken:
    """The taken records' unit vectors: exact search while few, then an inverted-file index (faiss
    IndexIVFFlat, inner product on unit vectors = cosine) whose lists are trained once on ``sample``."""

    def __init__(self, sample: np.ndarray, exact_limit: int = EXACT):
        self.sample, self.exact_limit = sample, exact_limit
        self.exact: list[np.ndarray] = []
        self.index = None
        self.count = 0

    def nearest(self, queries: np.ndarray) -> np.ndarray:
        """(b,) the highest cosine similarity of each query (b, H) to a taken vector (-inf when none)."""
        best = np.full(len(queries), -np.inf, dtype=np.float32)
        if self.exact:
            best = np.maximum(best, (queries @ np.concatenate(self.exact).T).max(axis=1))
        if self.index is not None and self.index.ntotal:
            sims, found = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), 1)
            best = np.maximum(best, np.where(found[:, 0] >= 0, sims[:, 0], -np.inf))
        return best

    def add(self, vectors: np.ndarray) -> None:
        if not len(vectors):
            return
        self.count += len(vectors)
        if self.index is None and self.count <= self.exact_limit:
            self.exact.append(vectors)
            return
        if self.index is None:
            self.index = _ivf(self.sample)
            vectors, self.exact = np.concatenate([*self.exact, vectors]), []
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))


def _ivf(sample: np.ndarray):
    """An empty IndexIVFFlat over ``sample``'s dimension, its lists trained on ``sample`` (unit rows)."""
    faiss = optional_import("faiss", "--diversity needs faiss-cpu", "dedup")
    lists = int(max(1, min(np.sqrt(len(sample) * TRAIN_PER_LIST), len(sample) // TRAIN_PER_LIST, MAX_LISTS)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(sample.shape[1]), sample.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed, index.cp.niter = 0, TRAIN_ITERATIONS  # the same lists every run
    index.train(np.ascontiguousarray(sample[: TRAIN_PER_LIST * lists], dtype=np.float32))
    index.nprobe = min(NPROBE, lists)
    return index


def diverse(ranked: np.ndarray, vectors: np.ndarray, diversity: float, budget: int | None = None, *,
            block: int = BLOCK, exact_limit: int = EXACT) -> tuple[np.ndarray, int]:
    """Walk ``ranked`` (record positions, best first) and take each record whose cosine similarity to
    every record taken before it is below ``1 - diversity``, until ``budget`` are taken (None: walk all).

    vectors: (n, H) embeddings of every record (indexed by position). Returns (taken positions in walk
    order, records walked)."""
    if not 0 < diversity <= 1:
        raise ValueError(f"diversity must be in (0, 1], got {diversity}")
    budget = len(ranked) if budget is None else budget
    if min(budget, len(ranked)) > exact_limit:  # the index will be needed: say so before walking
        optional_import("faiss", "--diversity needs faiss-cpu", "dedup")
    limit = np.float32(1 - diversity)
    taken: list[int] = []
    # k-means sample: sqrt(n) lists of TRAIN_PER_LIST records need n / TRAIN_PER_LIST ... capped
    sample = np.random.default_rng(0).permutation(np.asarray(ranked))[: TRAIN_PER_LIST * MAX_LISTS]
    x, usable = unit_rows(vectors[np.sort(sample)]) if len(sample) else (np.zeros((0, 0), np.float32), [])
    store = _Taken(x[usable], exact_limit)
    walked = 0
    for s in range(0, len(ranked), block):
        if len(taken) >= budget:
            break
        ids = np.asarray(ranked[s : s + block])
        x, usable = unit_rows(vectors[ids])
        ok = ~usable | (store.nearest(x) < limit)
        gram = x @ x.T  # (b, b) similarities within the block
        chosen: list[int] = []
        compared: list[int] = []  # the chosen with an embedding
        for k in range(len(ids)):
            walked += 1
            if ok[k] and (not usable[k] or not compared or gram[k, compared].max() < limit):
                chosen.append(k)
                if usable[k]:
                    compared.append(k)
                if len(taken) + len(chosen) >= budget:
                    break
        store.add(x[np.asarray(compared, dtype=np.int64)])
        taken.extend(ids[np.asarray(chosen, dtype=np.int64)].tolist())
    return np.asarray(taken, dtype=np.int64), walked


def nearest_similarity(vectors: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """(m,) each usable row's highest cosine similarity to another row of ``vectors`` (restricted to
    the positions ``among``, default all), exact, in blocks: for the report's diversity figures."""
    x, usable = unit_rows(vectors if among is None else vectors[among])
    x = x[usable]
    out = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), BLOCK):
        sims = x[s : s + BLOCK] @ x.T
        sims[np.arange(len(sims)), np.arange(s, s + len(sims))] = -np.inf  # not itself
        out[s : s + BLOCK] = sims.max(axis=1) if len(x) > 1 else np.nan
    return out
