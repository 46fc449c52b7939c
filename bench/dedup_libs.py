"""Which libraries selectit's duplicate and diversity steps use, measured here (issue 16).

    python bench/dedup_libs.py minhash [--records 100000]     # datasketch vs rensa: signatures + LSH
    python bench/dedup_libs.py ann [--taken 100000 --queries 100000]   # usearch vs faiss vs hnswlib

minhash: word-3-gram shingles of N distinct records (lengths and vocabulary of the 5,000 real Alpaca
records of ../shared/data, words drawn at random; every 500th a near copy of the one before), 128
permutations, Jaccard threshold 0.8. Times the
signatures (from the shingle sets), building the LSH index from *stored* signatures (what a rerun does:
the signatures come from the score store), and querying every record; checks both find the same
planted duplicate pairs.

ann: the diversity walk's index work: add T vectors (576-d, as SmolLM2's hidden size), then ask each
of Q query vectors for its nearest neighbour, in batches of 1,024 (what the walk does). Half the
vectors lie near one of T/4 centres (cosine ~0.92 to each other), half are random. On 2,000 queries, against brute
force (numpy): recall@1 (the exact nearest found), and what the walk needs: of the queries with a
neighbour at cosine >= 0.9, the share for which the index returns one. RSS growth is read from /proc.

Prints one table per part (markdown), the numbers bench/README.md quotes.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "alpaca_5000.json"
NUM_PERM, THRESHOLD, DIM, BLOCK = 128, 0.8, 576, 1024
SCHEME = "affine32"  # datasketch 2: the hash scheme of the signatures (LeanMinHash from stored values needs it)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def token_sets(n: int) -> list[list[str]]:
    """Shingle sets of n distinct records: record i has the length of Alpaca record i % 5000 (the real
    records of ../shared/data) and words drawn at random from their vocabulary; every 500th record is a
    copy of the one before with one word changed (a planted near duplicate)."""
    base = json.loads(DATA.read_text())
    texts = [re.findall(r"\w+", f"{r['instruction']} {r['input']} {r['output']}".casefold()) for r in base]
    vocab = sorted({w for t in texts for w in t})
    rng = random.Random(0)
    out, prev = [], []
    for i in range(n):
        if i % 500 == 1:  # a near copy of record i - 1
            words = list(prev)
            words[rng.randrange(len(words))] = "changed"
        else:
            words = rng.choices(vocab, k=max(len(texts[i % len(texts)]), 3))
        prev = words
        out.append([" ".join(words[k:k + 3]) for k in range(max(len(words) - 2, 1))])
    return out


def datasketch_lsh(sigs: np.ndarray) -> tuple[float, float, set[tuple[int, int]]]:
    """datasketch's MinHashLSH built from stored signatures (n, NUM_PERM) uint32, then queried with each:
    (build seconds, query seconds, candidate pairs (j, i) with j < i)."""
    from datasketch import LeanMinHash, MinHashLSH

    t = time.perf_counter()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    with lsh.insertion_session() as session:
        for i, s in enumerate(sigs):
            session.insert(i, LeanMinHash(seed=1, hashvalues=s, scheme=SCHEME))
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    pairs = {(j, i) for i, s in enumerate(sigs)
             for j in lsh.query(LeanMinHash(seed=1, hashvalues=s, scheme=SCHEME)) if j < i}
    return t_build, time.perf_counter() - t, pairs


def minhash(n: int) -> None:
    from datasketch import MinHash
    from rensa import RMinHash, RMinHashLSH

    sets = token_sets(n)
    planted = {(i - 1, i) for i in range(1, n, 500)}
    rows = []

    gc.collect()
    t = time.perf_counter()
    hashes = MinHash.bulk([[s.encode() for s in x] for x in sets], num_perm=NUM_PERM)
    sig_ds = np.stack([h.hashvalues for h in hashes]).astype(np.uint32)
    t_sig = time.perf_counter() - t
    del hashes
    t_build, t_query, pairs = datasketch_lsh(sig_ds)
    rows.append(["datasketch 2.0.0", t_sig, t_build, t_query, len(pairs), len(planted & pairs)])
    gc.collect()

    t = time.perf_counter()
    matrix = RMinHash.digest_matrix_from_token_sets(sets, num_perm=NUM_PERM, seed=1)
    sig_rs = np.asarray(matrix.to_rows(), dtype=np.uint32)
    t_sig = time.perf_counter() - t
    # rensa's LSH takes its own objects or digest matrices only (no constructor from stored digests):
    # the index is built from the matrix just computed, and queried with objects made from the tokens.
    t = time.perf_counter()
    lsh_r = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=16)
    lsh_r.insert_matrix(matrix, start_key=0)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    objs = RMinHash.from_token_sets(sets, num_perm=NUM_PERM, seed=1)
    pairs_r = {(j, i) for i, found in enumerate(lsh_r.query_all(objs)) for j in found if j < i}
    t_query = time.perf_counter() - t
    rows.append(["rensa 0.5.0 (its LSH, not from stored digests)", t_sig, t_build, t_query, len(pairs_r),
                 len(planted & pairs_r)])
    t_build, t_query, pairs = datasketch_lsh(sig_rs)
    rows.append(["rensa signatures + datasketch LSH (from stored)", rows[1][1], t_build, t_query, len(pairs),
                 len(planted & pairs)])
    sys.path.insert(0, str(ROOT / "src"))
    from selectit.selection import dedup

    t = time.perf_counter()
    verified = dedup.near_pairs(sig_rs, THRESHOLD)  # banding, then the estimated Jaccard >= threshold
    t_band = time.perf_counter() - t
    pairs = {(int(i), int(j)) for i, j in verified}
    rows.append(["rensa signatures + numpy banding (selectit.selection.dedup, from stored; verified pairs)", rows[1][1],
                 t_band, 0.0, len(pairs), len(planted & pairs)])
    print(f"MinHash over {n:,} records ({NUM_PERM} permutations, word 3-grams, threshold {THRESHOLD}), "
          f"{len(planted)} planted near pairs\n")
    print("| library | signatures s | LSH build s | LSH query all s | candidate pairs | planted found |")
    print("|---|---|---|---|---|---|")
    for name, a, b, c, p, f in rows:
        print(f"| {name} | {a:.1f} | {b:.1f} | {c:.1f} | {p:,} | {f} |")


def clustered(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    """Unit vectors: half near one of the centres (cosine ~0.96 to it, ~0.92 to each other), half random."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    near = rng.random(n) < 0.5
    x[near] = centres[rng.integers(0, len(centres), int(near.sum()))] + 0.3 * x[near] / np.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def ann(taken: int, queries: int) -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((taken // 4, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    base, query = clustered(taken, 1, centres), clustered(queries, 2, centres)
    check = slice(0, 2000)
    exact = (query[check] @ base.T).max(axis=1)  # the true nearest similarity
    close = exact >= 0.9  # what the walk must detect with D = 0.1
    rows = []

    def run(name, make, add, search):
        gc.collect()
        before = rss_mib()
        index = make()
        t = time.perf_counter()
        for s in range(0, taken, BLOCK):
            add(index, base[s:s + BLOCK], np.arange(s, min(s + BLOCK, taken)))
        t_add = time.perf_counter() - t
        t = time.perf_counter()
        found = np.concatenate([search(index, query[s:s + BLOCK]) for s in range(0, queries, BLOCK)])
        t_search = time.perf_counter() - t
        sims = np.einsum("ij,ij->i", query[check], base[found[check]])
        rows.append([name, t_add, t_search, float(np.mean(np.isclose(sims, exact, atol=1e-3))),
                     float(np.mean(sims[close] >= 0.9)), rss_mib() - before])

    from usearch.index import Index

    for dtype, m, ef in (("f16", 16, 64), ("f32", 16, 64), ("f16", 8, 32)):
        run(f"usearch 2.26.6 HNSW ({dtype}, M {m}, ef {ef})",
            lambda: Index(ndim=DIM, metric="cos", dtype=dtype, connectivity=m, expansion_add=ef, expansion_search=ef),
            lambda ix, x, k: ix.add(k, x), lambda ix, q: ix.search(q, 1).keys.reshape(-1).astype(np.int64))
    import faiss

    def faiss_hnsw():
        ix = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
        ix.hnsw.efConstruction, ix.hnsw.efSearch = 64, 64
        return ix

    run("faiss-cpu 1.15.1 IndexHNSWFlat (f32, M 16, ef 64)", faiss_hnsw, lambda ix, x, k: ix.add(x),
        lambda ix, q: ix.search(q, 1)[1].reshape(-1))

    def faiss_ivf(nprobe):
        def make():  # trained on a sample of every vector (the walk has them all before it starts)
            ix = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, 1024, faiss.METRIC_INNER_PRODUCT)
            ix.train(np.concatenate([base, query])[:: max(1, (taken + queries) // 40_000)])
            ix.nprobe = nprobe
            return ix
        return make

    for nprobe in (8, 32):
        run(f"faiss-cpu 1.15.1 IndexIVFFlat (f32, 1024 lists, nprobe {nprobe}; training in add s)", faiss_ivf(nprobe),
            lambda ix, x, k: ix.add(x), lambda ix, q: ix.search(q, 1)[1].reshape(-1))
    import hnswlib

    def hnsw():
        ix = hnswlib.Index(space="ip", dim=DIM)
        ix.init_index(max_elements=taken, M=16, ef_construction=64)
        ix.set_ef(64)
        return ix

    run("hnswlib 0.8.0 (f32, M 16, ef 64)", hnsw, lambda ix, x, k: ix.add_items(x, k),
        lambda ix, q: ix.knn_query(q, k=1)[0].reshape(-1).astype(np.int64))
    print(f"Nearest neighbour: add {taken:,} then query {queries:,} unit vectors ({DIM}-d; half within cosine ~0.96 "
          f"of one of {len(centres):,} centres, half random), batches of {BLOCK}; {int(close.sum())} of the 2,000 "
          "checked queries have a neighbour at cosine >= 0.9\n")
    print("| library | add s | query s | recall@1 | close neighbour found (cos >= 0.9) | RSS growth MiB |")
    print("|---|---|---|---|---|---|")
    for name, a, s, r, c, m in rows:
        print(f"| {name} | {a:.1f} | {s:.1f} | {r:.3f} | {c:.3f} | {m:.0f} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=("minhash", "ann"))
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--taken", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=100_000)
    a = p.parse_args(argv)
    if a.part == "minhash":
        minhash(a.records)
    else:
        ann(a.taken, a.queries)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
