"""Duplicates and diversity at selection (issue 16): the duplicate benchmark, the scale figures and the
embedding's cost.

    python bench/dedup.py dupes [--backend fake] [--originals 2000] [--planted 100]
    python bench/dedup.py dupes --backend hf --originals 200 --planted 15 --score-flags "--num-prompts 1"
    python bench/dedup.py scale [--records 1000000] [--minhash 100000]
    python bench/dedup.py nprobe [--records 200000] [--nprobes 16,32,64]   # IVF lists scanned: misses, time
    python bench/dedup.py cost [--records 100]

dupes: the first N records of ../shared/data/alpaca_5000.json (real Alpaca, CC BY-NC 4.0) are scored;
the K best-scored become "originals" and get 3 exact copies each (verbatim, whitespace changed, case
changed: equal after selectit.records.normalise) and 3 near copies each (two words changed; punctuation
and casing changed; two sentences of the response swapped, or the instruction's first two words when
it has one sentence). The copies are appended after the originals, shuffled, and the N + 6K records
scored again (`selectit score`, default method, fake or hf backend); then `selectit select --fraction
0.2` with: duplicates kept, exact dedup (the default), exact + near dedup (--dedup-threshold J), and
exact dedup + --diversity D. Counts: copies selected, originals selected, planted groups (an original
and its 6 copies) with a member selected, and members selected beyond one per group.

scale: the diversity walk (selectit.selection.diversity.diverse) over N random 576-d float16 embeddings with
random scores, budget 20%, D 0.1 (random vectors are nearly orthogonal: nothing is too similar, so the
walk takes the first 20%: N/5 searches and adds), then D 0.1 on clustered vectors (N/5 centres, two
records of a centre at cosine ~0.92: most records are passed over, the walk reads all N);
and MinHash near-duplicate clustering over M records (signatures + LSH + clusters). Time and peak RSS
(each part in its own subprocess).

nprobe: the clustered walk with 16, 32, 64 IVF lists scanned a query (selectit.selection.diversity.NPROBE).

cost: the embedded model's response-loss pass over R records with and without pooling (the default
method's GIVEN pass: selectit.measures.losses.text_losses), and the store's bytes per record.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "alpaca_5000.json"
SEED = 0


def run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "selectit.cli", *args, "--quiet"], check=True)


def scores_of(run_dir: Path) -> np.ndarray:
    with (run_dir / "scores.jsonl").open() as f:
        return np.array([np.nan if json.loads(line)["score"] is None else json.loads(line)["score"] for line in f])


# ---------------------------------------------------------------- copies

def exact_copies(r: dict) -> list[dict]:
    spaced = {k: re.sub(r" ", "  ", v) + (" " if v else "") for k, v in r.items()}
    cased = {k: v.upper() if k == "instruction" else v.lower() for k, v in r.items()}
    return [dict(r), spaced, cased]


def near_copies(r: dict, rng: random.Random, vocab: list[str]) -> list[dict]:
    words = r["output"].split(" ")
    changed = list(words)
    for k in rng.sample(range(len(words)), min(2, len(words))):
        changed[k] = rng.choice(vocab)
    punct = {**r, "instruction": r["instruction"].rstrip(".?!") + "!!",
             "output": re.sub(r"[,.;:]", "", r["output"]).capitalize()}
    sentences = re.split(r"(?<=[.!?])\s+", r["output"])
    if len(sentences) > 1:
        sentences[0], sentences[1] = sentences[1], sentences[0]
        reordered = {**r, "output": " ".join(sentences)}
    else:
        first = r["instruction"].split(" ")
        first[:2] = first[:2][::-1]
        reordered = {**r, "instruction": " ".join(first)}
    return [{**r, "output": " ".join(changed)}, punct, reordered]


def dupes(backend: str, originals: int, planted: int, thresholds: list[float], diversities: list[float],
          work: Path | None = None, flags: tuple[str, ...] = ()) -> None:
    base = json.loads(DATA.read_text())[:originals]
    vocab = sorted({w for r in base for w in r["output"].split() if w.isalpha()})
    work = Path(tempfile.mkdtemp(prefix="dedup-bench-")) if work is None else work  # a --work store resumes
    work.mkdir(parents=True, exist_ok=True)
    (work / "base.json").write_text(json.dumps(base))
    t = time.perf_counter()
    run("score", str(work / "base.json"), "--out", str(work / "base"), "--backend", backend, *flags)
    first_seconds = time.perf_counter() - t
    top = [int(i) for i in np.argsort(-np.nan_to_num(scores_of(work / "base"), nan=-np.inf), kind="stable")[:planted]]
    rng = random.Random(SEED)
    copies = [(i, "exact", c) for i in top for c in exact_copies(base[i])]
    copies += [(i, "near", c) for i in top for c in near_copies(base[i], rng, vocab)]
    rng.shuffle(copies)
    data = base + [c for _, _, c in copies]
    kind = np.array(["original"] * len(base) + [k for _, k, _ in copies])
    origin = np.array(list(range(len(base))) + [i for i, _, _ in copies])  # each record's original
    (work / "data.json").write_text(json.dumps(data))
    t = time.perf_counter()
    run("score", str(work / "data.json"), "--out", str(work / "run"), "--backend", backend, "--store",
        str(work / "base" / "store.sqlite"), *flags)  # the originals' measurements are reused
    seconds = time.perf_counter() - t
    jaccard = near_jaccard(base, top, copies)
    rows = []
    conditions = [("duplicates kept (--keep-duplicates)", ["--keep-duplicates"]), ("exact dedup (default)", [])]
    conditions += [(f"exact + near dedup (--dedup-threshold {j:g})", ["--dedup-threshold", str(j)]) for j in thresholds]
    conditions += [(f"exact dedup + --diversity {d:g}", ["--diversity", str(d)]) for d in diversities]
    for name, select_flags in conditions:
        t = time.perf_counter()
        run("select", str(work / "run"), "--fraction", "0.2", *select_flags)
        took = time.perf_counter() - t
        chosen = np.array(json.loads((work / "run" / "selection.json").read_text())["indices"], dtype=np.int64)
        picked = np.zeros(len(data), dtype=bool)
        picked[chosen] = True
        per = np.bincount(origin[picked], minlength=len(base))[top]  # selected members of each planted group
        rows.append([name, len(chosen), int(picked[kind == "exact"].sum()), int(picked[kind == "near"].sum()),
                     int(picked[top].sum()), int((per > 0).sum()), int(np.maximum(per - 1, 0).sum()), took])
    print(f"{backend} backend{' ' + ' '.join(flags) if flags else ''}: {len(base):,} Alpaca records + "
          f"{len(copies)} copies of the {planted} best-scored ({3 * planted} exact, {3 * planted} near) = "
          f"{len(data):,} records; top 20% = {int(len(data) * 0.2)}. Scoring: {first_seconds:.0f} s (originals), "
          f"{seconds:.0f} s (with the copies, originals from the store).")
    print(f"Near copies' word-3-gram Jaccard with their original: median {np.median(jaccard):.2f}, "
          f"10% under {np.quantile(jaccard, 0.1):.2f}, min {jaccard.min():.2f}\n")
    print(f"| selection | selected | exact copies selected (of {3 * planted}) | near copies selected (of "
          f"{3 * planted}) | originals selected (of {planted}) | originals or a copy selected | copies beyond one "
          "per original | select s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n, e, ne, o, rep, extra, took in rows:
        print(f"| {name} | {n} | {e} | {ne} ({100 * ne / (3 * planted):.1f}%) | {o} | {rep} | {extra} | {took:.1f} |")


def near_jaccard(base, top, copies) -> np.ndarray:
    """Exact Jaccard of the word 3-grams of each near copy and its original."""
    from selectit.measures.minhash import shingles
    from selectit.records import Record

    def grams(r):
        return set(shingles(Record(id=0, instruction=r["instruction"], response=r["output"], raw=r)))

    out = []
    for i, k, c in copies:
        if k == "near":
            a, b = grams(base[i]), grams(c)
            out.append(len(a & b) / len(a | b))
    return np.array(out)


# ---------------------------------------------------------------- scale

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {bench!r})
import dedup as bench
t = time.perf_counter()
out = bench.{fn}(*{args!r})
out["seconds"] = round(time.perf_counter() - t, 1)
out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(out))
"""


def child(fn: str, *args) -> dict:
    code = CHILD.format(bench=str(Path(__file__).parent), fn=fn, args=args)
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def walk_random(n: int, dim: int, d: float, clustered: bool, nprobe: int | None = None) -> dict:
    from selectit.selection import diversity
    from selectit.selection.diversity import diverse, unit_rows
    from selectit.selection.policy import rank

    if nprobe is not None:
        diversity.NPROBE = nprobe

    rng = np.random.default_rng(SEED)
    t = time.perf_counter()
    vectors = np.empty((n, dim), dtype=np.float16)
    centres = rng.standard_normal((n // 5, dim), dtype=np.float32) if clustered else None
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        noise = rng.standard_normal((m, dim), dtype=np.float32)
        # clustered: n/5 centres, each record one of them plus noise (cosine ~0.92 between two of a centre)
        vectors[s:s + m] = centres[rng.integers(0, len(centres), m)] + 0.3 * noise if clustered else noise
    del centres
    scores = rng.random(n)
    made = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    taken, walked = diverse(rank(scores), vectors, d, n // 5)
    walk, walk_cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the check below
    # what the index missed: taken records with another taken record at cosine >= 1 - D (2,000 checked)
    x, _ = unit_rows(vectors[taken])
    probe = np.random.default_rng(1).choice(len(taken), min(2000, len(taken)), replace=False)
    missed = 0
    for s in range(0, len(probe), 100):
        sims = x[probe[s:s + 100]] @ x.T
        sims[np.arange(len(sims)), probe[s:s + 100]] = -1
        missed += int((sims.max(axis=1) >= 1 - d).sum())
    return {"records": n, "taken": len(taken), "walked": walked, "walk_seconds": round(walk, 1),
            "walk_cpu_seconds": round(walk_cpu, 1),  # all threads: on a shared machine, what the walk cost
            "make_seconds": round(made, 1), "vectors_mib": round(vectors.nbytes / 2 ** 20),
            "peak_rss_mib_walk": round(peak), "too_similar_in_2000_taken": missed}


def minhash_records(n: int) -> dict:
    from selectit.measures import minhash
    from selectit.selection import dedup
    from selectit.records import Record

    base = json.loads(DATA.read_text())
    vocab = sorted({w for r in base for w in r["output"].split()})
    rng = random.Random(SEED)
    records = []
    for i in range(n):  # distinct records with Alpaca's lengths and words; every 100th a near copy
        r = base[i % len(base)]
        if i % 100 == 1:
            words = records[-1].response.split(" ")
            words[rng.randrange(len(words))] = "changed"
            records.append(Record(id=i, instruction=records[-1].instruction, response=" ".join(words), raw={}))
            continue
        records.append(Record(id=i, instruction=" ".join(rng.choices(vocab, k=len(r["instruction"].split()))),
                              response=" ".join(rng.choices(vocab, k=max(len(r["output"].split()), 3))), raw={}))
    t = time.perf_counter()
    sigs = minhash.signatures(records)
    sig_seconds = time.perf_counter() - t
    t = time.perf_counter()
    pairs = dedup.near_pairs(sigs, 0.8)
    cluster = dedup.clusters(n, pairs)
    return {"records": n, "signature_seconds": round(sig_seconds, 1),
            "lsh_cluster_seconds": round(time.perf_counter() - t, 1), "pairs": len(pairs),
            "clustered": int((np.bincount(cluster, minlength=n)[cluster] > 1).sum())}


def nprobes(n: int, values: list[int]) -> None:
    """The clustered walk at n records with each number of IVF lists scanned: time and misses."""
    for v in values:
        print(f"nprobe {v}: {json.dumps(child('walk_random', n, 576, 0.1, True, v))}", flush=True)


def scale(n: int, minhash_n: int) -> None:
    rows = [("diversity walk, random (D 0.1)", child("walk_random", n, 576, 0.1, False)),
            ("diversity walk, clustered (D 0.1)", child("walk_random", n, 576, 0.1, True)),
            ("MinHash near dedup (J 0.8)", child("minhash_records", minhash_n))]
    for name, r in rows:
        print(f"{name}: {json.dumps(r)}")


# ---------------------------------------------------------------- cost

def cost(n: int) -> None:
    from selectit.backends.hf import HFBackend
    from selectit.formats import from_dicts
    from selectit.measures.embeddings import ALPACA
    from selectit.measures.losses import GIVEN, TEXTS, record_spans, text_losses
    from selectit.store import ScoreStore

    records = from_dicts(json.loads(DATA.read_text())[:n], schema="alpaca")
    backend = HFBackend.load(None)
    order = sorted(range(n), key=lambda i: len(records[i].instruction) + len(records[i].response))
    plain = pooled = 0.0
    for k, b in enumerate(range(0, n, 16)):  # paired: each batch both ways, in alternating order (a shared machine)
        batch = [records[i] for i in order[b:b + 16]]
        pairs, spans = [TEXTS[GIVEN.removesuffix("+end")](r) for r in batch], [record_spans(r) for r in batch]
        for way in ((0, 1) if k % 2 else (1, 0)):
            t = time.perf_counter()
            if way:
                losses_pooled, _ = backend.pooled_losses(pairs, spans, end=True)
                pooled += time.perf_counter() - t
            else:
                losses = backend.response_losses(pairs, end=True)
                plain += time.perf_counter() - t
        assert np.array_equal(losses, losses_pooled)  # pooling leaves the losses as they were
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for embed in (None, ALPACA):
            path = Path(tmp) / f"{embed}.sqlite"
            db = ScoreStore(path)
            text_losses(backend, records, GIVEN, 16, backend.max_length, db, "m", embed=embed)
            vector_bytes = db.db.execute("SELECT AVG(LENGTH(data)) FROM vectors").fetchone()[0]
            db.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.db.execute("VACUUM")
            db.close()
            sizes[embed] = path.stat().st_size
    print(f"{n} records, SmolLM2-135M, the default method's response-loss pass (GIVEN), the same batches both "
          f"ways: without pooling {plain:.1f} s, with pooling {pooled:.1f} s ({100 * (pooled / plain - 1):+.1f}%); "
          f"losses identical; vector {vector_bytes:.0f} bytes a record; store file "
          f"{(sizes[ALPACA] - sizes[None]) / n:.0f} bytes a record more")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=("dupes", "scale", "cost", "nprobe"))
    p.add_argument("--nprobes", default="16,32,64")
    p.add_argument("--backend", default="fake")
    p.add_argument("--originals", type=int, default=2000)
    p.add_argument("--planted", type=int, default=100)
    p.add_argument("--thresholds", default="0.5,0.7")
    p.add_argument("--diversities", default="0.02,0.05")
    p.add_argument("--records", type=int, default=None)
    p.add_argument("--minhash", type=int, default=100_000)
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a new temporary one); reusing "
                   "one resumes its scoring")
    p.add_argument("--score-flags", default="", help="more `selectit score` flags, e.g. '--num-prompts 1'")
    a = p.parse_args(argv)
    if a.part == "dupes":
        dupes(a.backend, a.originals, a.planted, [float(x) for x in a.thresholds.split(",")],
              [float(x) for x in a.diversities.split(",")], a.work, tuple(a.score_flags.split()))
    elif a.part == "scale":
        scale(a.records or 1_000_000, a.minhash)
    elif a.part == "nprobe":
        nprobes(a.records or 200_000, [int(x) for x in a.nprobes.split(",")])
    else:
        cost(a.records or 100)


if __name__ == "__main__":
    main()
