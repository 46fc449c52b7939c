"""Proof where selection must matter: contaminated pools, an oracle arm and a dose-response (issue 26).

    python bench/proof.py purity                 # score the contaminated pools, the purity table (no training)
    python bench/proof.py finetune               # the arms: fine-tune Gemma-3-270M base on each 20%, evaluate
    python bench/proof.py table                  # both tables from the result files, nothing run
    python bench/proof.py purity --toy / finetune --toy     # tiny sizes on the embedded model (tests)

Pools: the clean pool of ``bench/finetune_eval.py`` (``--pool`` records of alpaca_5000.json, seed 0; a
smaller pool is a subset of a larger one), contaminated at each ``--levels`` f by ``bench/contaminate.py``
(seed 0: nested, the junk of 0.3 is part of the junk of 0.6). The method is frozen: the arms run today's
`selectit score` as it is, with no flag tuned on these pools.

**Purity** (per pool size and level): each method's 20% (``selectit.selection.policy.select_fraction`` on its
scores.jsonl, as ``bench/arms.py``; the dedup/diversity rows through `selectit select`), the share of
junk in it and of each kind, and the AUROC of the score for clean against junk (null scores rank
lowest), overall and per kind (clean against that kind).

**Fine-tune arms** (per level, pool ``--ft-pool``): ``random`` (a new subset per seed), ``oracle`` (a
random 20% of the pool's clean records only: the ceiling), ``selectit`` (the default), ``selectit-paper``,
``ifd``, ``length`` (top 20% of their purity runs), and ``full`` (every record, junk included, 5x the
steps); training and the evaluation sets as ``bench/finetune_eval.py`` (``finetune_jobs``, ``sft``), plus:
- the **primary metric**: per-answer loss on ``--heldout`` clean Alpaca records in no pool (the end of the
  pool permutation; records whose answer is empty or a template artifact are passed over), kept per item
  so that arms are compared paired by item;
- **generation health** (``bench/health.py``) of greedy answers to the first ``--health`` held-out
  instructions.
The pre-registered test per level: R = (L_random - L_selectit) / (L_random - L_oracle) >= 0.5, with a 95%
bootstrap interval over held-out items (paired; L of an arm: its per-item losses averaged over its seeds)
for L_random - L_selectit above 0; at f = 0.6 also selectit against full.

**Resumable**: every purity row and every (level, arm, seed) fine-tune row is a line of its results file
(``bench/results/proof_purity.jsonl``, ``proof_finetune.jsonl``) written as it finishes; a rerun skips
the lines present (scores come from the run directories and the score store under ``--out``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contaminate  # noqa: E402
import finetune_eval  # noqa: E402
import finetune_jobs  # noqa: E402
import health  # noqa: E402
from arms import read_scores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FRACTION = 0.2
# Purity methods: `selectit score` flags. Every fine-tune arm but oracle and full is one of these.
# ``selectit`` is the default frozen when this proof began: 5 rating prompts (issue 27 made 4 the default later).
METHODS: dict[str, tuple[str, ...]] = {
    "selectit": ("--num-prompts", "5"), "selectit-paper": ("--paper",), "ifd": ("--method", "ifd"),
    "perplexity": ("--method", "perplexity"), "length": ("--method", "length"),
    "random": ("--method", "random", "--seed", "0"),
}
# Selections through `selectit select` on a method's run: (method, flags after --fraction F).
SELECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "selectit+dedup": ("selectit", ("--dedup-threshold", "0.5")),
    "selectit+diversity": ("selectit", ("--diversity", "0.1")),
    "selectit+neutral": ("selectit", ("--length-neutral",)),
    "selectit+neutral+dedup": ("selectit", ("--length-neutral", "--dedup-threshold", "0.5")),
    # issue 26's sixth step: the junk step, then near dedup; best first, and as a seeded draw (FILTER_FLAGS)
    "selectit+junk+dedup": ("selectit", ("--drop-junk", "--dedup-threshold", "0.5")),
    "selectit+filter": ("selectit", ("--drop-junk", "--dedup-threshold", "0.5", "--sample", "--sample-seed", "0")),
}
ARMS = ("random", "oracle", "selectit", "selectit-paper", "ifd", "length", "full")
# Arms added after the frozen plan's first results, run only when named in --arms (never in the default
# list): the default's scores, selected within response-length strata (``length_matched``); the default's
# scores through `selectit select --length-neutral --dedup-threshold 0.5` (NEUTRAL_FLAGS; issue 26's fifth
# step, frozen here before its first fine-tune row).
# ``selectit-filter`` (issue 26's sixth step, its thresholds chosen on bench/junk_dev.py's pools and frozen
# here before its first row on these): the default's scores through `selectit select --drop-junk
# --dedup-threshold 0.5 --sample --sample-seed SEED`, a new seeded draw per seed like random's; and
# ``selectit-junk``, the same steps best first (no --sample), which tells the draw's part from the junk
# step's (frozen with it, run after it).
POSTHOC = ("selectit-lenmatched", "selectit-neutral", "selectit-filter", "selectit-junk")
NEUTRAL_FLAGS = ("--length-neutral", "--dedup-threshold", "0.5")
FILTER_FLAGS = ("--drop-junk", "--dedup-threshold", "0.5", "--sample", "--sample-seed", "{seed}")
JUNK_FLAGS = ("--drop-junk", "--dedup-threshold", "0.5")
STRATA = 5
PRIMARY = ("random", "oracle", "selectit")  # the arms of R, run first at each level
SEEDED = ("random", "oracle", "selectit-filter")  # the arms whose 20% is drawn anew for each seed
# Seeds per arm (1 for the others unless --seeds says otherwise). random: a new subset and training seed
# each; oracle: a new clean subset each; selectit: the training seed only. The first f = 0.3 rows showed
# random's training-and-subset spread (sd 0.029 on the held-out loss) as large as oracle - random, so R's
# two ends get 3 seeds each.
SEEDS = {"random": 3, "oracle": 3, "selectit": 3, "selectit-filter": 3}
TOY = {"pools": "12", "ft_pool": 12, "levels": "0.5", "heldout": 4, "health": 3, "eval_limit": 3, "gen_prompts": 0,
       "max_new_tokens": 8, "epochs": 1, "max_length": 96, "batch_size": 2, "model": "embedded", "workers": 1,
       "methods": "selectit,length,random", "selects": "", "arms": "random,oracle,selectit,full", "seeds": "random=2,oracle=1,selectit=1"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=("purity", "finetune", "table"))
    p.add_argument("--pools", default="500,2000", help="pool sizes of the purity table")
    p.add_argument("--ft-pool", type=int, default=500, help="pool size of the fine-tune arms")
    p.add_argument("--levels", default="0.3,0.6", help="contamination levels f")
    p.add_argument("--methods", default=",".join(METHODS), help="purity methods")
    p.add_argument("--selects", default=",".join(SELECTS), help="purity rows through `selectit select`")
    p.add_argument("--arms", default=",".join(ARMS), help="fine-tune arms, in the order they are run")
    p.add_argument("--seeds", default="", help=f"seeds per arm, e.g. ifd=3 (default: {SEEDS}, others 1)")
    p.add_argument("--heldout", type=int, default=300, help="clean held-out records of the primary metric")
    p.add_argument("--health", type=int, default=80, help="held-out instructions whose answers are checked")
    p.add_argument("--gen-prompts", type=int, default=40, help="IFEval constraint prompts (0: none)")
    p.add_argument("--eval-limit", type=int, default=None, help="only the first N seed tasks")
    p.add_argument("--model", default="gemma", help="model to fine-tune (bench/finetune_eval.py --model)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--score-threads", type=int, default=2, help="threads of each `selectit score` run")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "proof_out", help="pools, runs, score store")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the result files")
    p.add_argument("--data", type=Path, default=finetune_eval.DATA)
    p.add_argument("--toy", action="store_true", help=f"tiny sizes: {TOY}")
    args = p.parse_args(argv)
    if args.toy:
        for k, v in TOY.items():
            setattr(args, k, v)
    args.pools = [int(x) for x in str(args.pools).split(",") if x]
    args.levels = [float(x) for x in str(args.levels).split(",") if x]
    args.methods = [m for m in args.methods.split(",") if m]
    args.selects = [s for s in args.selects.split(",") if s]
    args.arms = [a for a in args.arms.split(",") if a]
    for given, known, what in ((args.methods, METHODS, "method"), (args.selects, SELECTS, "select"),
                               (args.arms, (*ARMS, *POSTHOC), "arm")):
        unknown = [x for x in given if x not in known]
        if unknown:
            p.error(f"unknown {what}(s) {unknown}; known: {list(known)}")
    args.seed_counts = {**SEEDS, **{k: int(v) for k, v in (x.split("=") for x in args.seeds.split(",") if x)}}
    # finetune_jobs reads these from the finetune_eval argument names
    args.train, args.precision, args.lora_r, args.threads = "full", "bfloat16", 16, 1
    return args


# ---------------------------------------------------------------- pools and held-out records

def pool_path(args, n: int, level: float) -> Path:
    """The contaminated pool (and its labels beside it), written once."""
    path = args.out / "pools" / f"pool{n}_f{level:g}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        pool, labels = contaminate.contaminate(finetune_eval.pool_records(n, args.data), level, seed=0)
        contaminate.write(pool, labels, path)
    return path


def heldout(data: Path, n: int) -> list[tuple[str, str, str]]:
    """(instruction, input, output) of ``n`` clean Alpaca records that no pool holds: walked from the end
    of the pools' permutation (a pool of k records is its first k), passing over an empty answer or one
    with a template artifact (``health.TEMPLATE``)."""
    records = json.loads((data / "alpaca_5000.json").read_text(encoding="utf-8"))
    walk = np.random.default_rng(0).permutation(len(records))[::-1]  # as finetune_eval.pool_records
    out = []
    for i in walk:
        r = records[i]
        if r["output"].strip() and not health.TEMPLATE.search(r["output"]):
            out.append((r["instruction"], r.get("input", ""), r["output"]))
        if len(out) == n:
            return out
    raise ValueError(f"only {len(out)} held-out records")


def heldout_words(args) -> np.ndarray:
    return np.array([len(a.split()) for _, _, a in heldout(args.data, args.heldout)])


# ---------------------------------------------------------------- scoring and selection (through the CLI)

def score(args, pool: Path, run: Path, flags: tuple[str, ...]) -> np.ndarray:
    """`selectit score POOL --out RUN` (skipped when RUN is finished); its scores, NaN where null. (n,)"""
    if not (run / "scores.jsonl").is_file() or not (run / "config.json").is_file():
        env = {**os.environ, "OMP_NUM_THREADS": str(args.score_threads), "MKL_NUM_THREADS": str(args.score_threads)}
        cmd = [sys.executable, "-m", "selectit", "score", str(pool), "--out", str(run),
               "--store", str(args.out / "store.sqlite"), "--quiet", *flags]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"selectit score failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
        print(f"scored {run.relative_to(args.out)} in {time.perf_counter() - start:.0f} s", flush=True)
    return read_scores(run)


def select_run(run: Path, flags: tuple[str, ...]) -> list[int]:
    """`selectit select RUN --fraction 0.2 FLAGS`: the positions it chose (selection.json)."""
    out = run / f"selected{'_'.join(flags)}.json"
    cmd = [sys.executable, "-m", "selectit", "select", str(run), "--fraction", str(FRACTION), "--output", str(out),
           *flags]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"selectit select failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return json.loads((run / "selection.json").read_text(encoding="utf-8"))["indices"]


def top(scores: np.ndarray) -> list[int]:
    from selectit.selection.policy import select_fraction

    return select_fraction(scores, FRACTION).tolist()


# ---------------------------------------------------------------- purity

def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties count half; NaN scores rank lowest. (n,), (n,) bool"""
    s = np.where(np.isnan(scores), -np.inf, scores)
    pos, neg = s[positive], s[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def purity_row(labels: list[str], chosen: list[int], scores: np.ndarray | None) -> dict:
    """Junk share of the selection, each kind's share of it, and the clean-vs-junk AUROC (overall and per
    kind) of ``scores`` (None for a selection with no single score order)."""
    lab = np.array(labels)
    picked = lab[chosen]
    row = {"selected": len(chosen), "junk": float(np.mean(picked != contaminate.CLEAN)),
           "kinds": {k: float(np.mean(picked == k)) for k in contaminate.KINDS}}
    if scores is not None:
        clean = lab == contaminate.CLEAN
        row["auroc"] = auroc(scores, clean)
        row["auroc_kind"] = {k: auroc(scores[clean | (lab == k)], clean[clean | (lab == k)])
                             for k in contaminate.KINDS if (lab == k).any()}
    return row


def run_purity(args) -> list[dict]:
    path = args.results / "proof_purity.jsonl"
    rows = read_rows(path)
    done = {(r["pool"], r["level"], r["method"]) for r in rows}
    for n in args.pools:
        for level in args.levels:
            pool = pool_path(args, n, level)
            labels = contaminate.read_labels(pool)
            for method in [*args.methods, *args.selects]:
                if (n, level, method) in done:
                    continue
                start = time.perf_counter()
                base, flags = SELECTS[method] if method in SELECTS else (method, None)
                run = args.out / "runs" / f"pool{n}_f{level:g}" / base
                scores = score(args, pool, run, METHODS[base])
                chosen = top(scores) if flags is None else select_run(run, flags)
                row = {"pool": n, "level": level, "method": method,
                       **purity_row(labels, chosen, scores if flags is None else None),
                       "seconds": round(time.perf_counter() - start, 1)}
                append_row(path, row)
                rows.append(row)
                print(f"purity {n} f={level:g} {method}: junk {row['junk']:.3f}"
                      + (f" auroc {row['auroc']:.3f}" if "auroc" in row else ""), flush=True)
    return rows


# ---------------------------------------------------------------- fine-tune arms

def arm_selection(args, arm: str, seed: int, level: float) -> list[int]:
    """The pool positions arm ``arm`` trains on at ``level`` (seed: the random subsets')."""
    pool = pool_path(args, args.ft_pool, level)
    labels = contaminate.read_labels(pool)
    k = int(np.floor(len(labels) * FRACTION + 1e-9))
    if arm == "full":
        return list(range(len(labels)))
    if arm == "oracle":
        clean = [i for i, lab in enumerate(labels) if lab == contaminate.CLEAN]
        return sorted(np.random.default_rng(seed).choice(clean, size=k, replace=False).tolist())
    if arm == "selectit-lenmatched":
        pool_records = json.loads(pool.read_text(encoding="utf-8"))
        scores = score(args, pool, args.out / "runs" / f"pool{args.ft_pool}_f{level:g}" / "selectit", METHODS["selectit"])
        return length_matched(scores, np.array([len(r["output"]) for r in pool_records]), k)
    if arm in ("selectit-neutral", "selectit-filter", "selectit-junk"):
        run = args.out / "runs" / f"pool{args.ft_pool}_f{level:g}" / "selectit"
        score(args, pool, run, METHODS["selectit"])
        flags = {"selectit-neutral": NEUTRAL_FLAGS, "selectit-junk": JUNK_FLAGS,
                 "selectit-filter": tuple(f.format(seed=seed) for f in FILTER_FLAGS)}[arm]
        return select_run(run, flags)
    flags = ("--method", "random", "--seed", str(seed)) if arm == "random" else METHODS[arm]
    name = f"random-{seed}" if arm == "random" else arm
    return top(score(args, pool, args.out / "runs" / f"pool{args.ft_pool}_f{level:g}" / name, flags))


def length_matched(scores: np.ndarray, lengths: np.ndarray, k: int, strata: int = STRATA) -> list[int]:
    """``k`` positions, best first within each of ``strata`` equal-count bins of ``lengths`` (n,), each bin
    giving its share of k (largest remainders), so that the selection's length distribution is the pool's.
    NaN scores are never taken."""
    order = np.argsort(lengths, kind="stable")
    bins = np.array_split(order, strata)
    quota = np.floor(np.array([len(b) for b in bins]) * k / len(lengths)).astype(int)
    rest = np.array([len(b) * k / len(lengths) for b in bins]) - quota
    quota[np.argsort(-rest, kind="stable")[: k - quota.sum()]] += 1
    chosen = []
    for b, q in zip(bins, quota):
        ranked = b[np.argsort(-np.nan_to_num(scores[b], nan=-np.inf), kind="stable")]
        chosen += [int(i) for i in ranked[:q] if np.isfinite(scores[i])]
    return sorted(chosen, key=lambda i: -scores[i])


def jobs(args, done: set) -> list[tuple[float, str, int]]:
    """(level, arm, seed) still to run, in order: level by level; first every seed of the arms of the
    pre-registered test (``PRIMARY``), then the other arms, seed by seed."""
    todo = []
    for level in args.levels:
        for group in ([a for a in args.arms if a in PRIMARY], [a for a in args.arms if a not in PRIMARY]):
            for seed in range(max((args.seed_counts.get(a, 1) for a in group), default=0)):
                todo += [(level, a, seed) for a in group
                         if seed < args.seed_counts.get(a, 1) and (level, a, seed) not in done]
    return todo


def first_positions(rows: list[dict]) -> dict[tuple[float, str], list[int]]:
    """(level, arm) -> the positions of its first result row, for the arms whose 20% does not depend on the
    seed (all but ``SEEDED``): a further seed trains on the same 20%, even where a rescore on another machine
    or in another precision would move a record across the cut."""
    first: dict[tuple[float, str], list[int]] = {}
    for r in rows:
        if r["arm"] not in SEEDED and "positions" in r:
            first.setdefault((r["level"], r["arm"]), r["positions"])
    return first


def run_finetune(args) -> list[dict]:
    path = args.results / "proof_finetune.jsonl"
    rows = read_rows(path)
    done = {(r["level"], r["arm"], r["seed"]) for r in rows}
    todo = jobs(args, done)
    if "base" not in {r["arm"] for r in rows}:
        todo.insert(0, (0.0, "base", 0))
    if not todo:
        return rows
    # Every selection first (scoring runs one after another here; on a finished purity stage they are read).
    first = first_positions(rows)
    chosen = {job: (None if job[1] == "base" else first.get((job[0], job[1]))
                    or arm_selection(args, job[1], job[2], job[0])) for job in todo}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generations").mkdir(exist_ok=True)
    held = heldout(args.data, args.heldout)
    sets = {"heldout_alpaca": [h for h in held],
            "seed_tasks": finetune_eval.seed_tasks(args.data)[: args.eval_limit]}
    import ifeval_prompts

    prompts = []
    if args.gen_prompts:
        tasks = ifeval_prompts.read_seed_tasks(args.data / "alpaca_seed_tasks.jsonl")
        prompts = ifeval_prompts.build_prompts(tasks, args.gen_prompts, seed=0)
    health_prompts = [(q, i) for q, i, _ in held[: args.health]]
    model_path = finetune_eval.model_file(args.model)
    workers = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=finetune_jobs.init,
                                  initargs=(args, model_path, None, sets, prompts, health_prompts))
    futures = {}
    levels = {level for level, arm, _ in todo if arm != "base"}  # each pool and its labels read once
    pools = {lv: json.loads(pool_path(args, args.ft_pool, lv).read_text(encoding="utf-8")) for lv in levels}
    labels = {lv: contaminate.read_labels(pool_path(args, args.ft_pool, lv)) for lv in levels}
    try:
        for level, arm, seed in todo:
            positions = chosen[(level, arm, seed)]
            records = None if positions is None else [pools[level][i] for i in positions]
            futures[workers.submit(finetune_jobs.run, arm, seed, None, records, f"f{level:g}-{arm}")] = (level, arm, seed)
        for future in as_completed(futures):
            level, arm, seed = futures[future]
            row = {"level": level, **future.result()}
            if arm != "base":
                row["positions"] = chosen[(level, arm, seed)]
                row["junk"] = float(np.mean([labels[level][i] != contaminate.CLEAN for i in row["positions"]]))
            append_row(path, row)
            rows.append(row)
            print(finetune_eval.brief(row), flush=True)
    except BaseException:
        workers.shutdown(wait=False, cancel_futures=True)
        for process in list((getattr(workers, "_processes", None) or {}).values()):
            process.terminate()
        raise
    workers.shutdown()
    return rows


# ---------------------------------------------------------------- tables

def purity_table(rows: list[dict]) -> str:
    kinds = contaminate.KINDS
    head = f"{'pool':>5} {'f':>4} {'method':<22}{'junk in 20%':>12}{'AUROC':>7}  " + " ".join(f"{k[:8]:>8}" for k in kinds)
    lines = [head + "   (per kind: share of the 20% / AUROC clean vs the kind)"]
    for r in sorted(rows, key=lambda r: (r["pool"], r["level"], [*METHODS, *SELECTS].index(r["method"]))):
        auc = f"{r['auroc']:.3f}" if "auroc" in r else "-"
        cells = " ".join(f"{r['kinds'][k]:>4.2f}/" + (f"{r['auroc_kind'][k]:.2f}" if k in r.get("auroc_kind", {}) else "  - ")
                         for k in kinds)
        lines.append(f"{r['pool']:>5} {r['level']:>4g} {r['method']:<22}{r['junk']:>12.3f}{auc:>7}  {cells}")
    return "\n".join(lines)


def item_losses(rows: list[dict], level: float, arm: str) -> np.ndarray | None:
    """An arm's per-item held-out losses, averaged over its seeds. (items,) or None when it has no row."""
    mine = [r for r in rows if r["arm"] == arm and (arm == "base" or r["level"] == level)]
    if not mine:
        return None
    return np.mean([np.array(r["per_item"]["heldout_alpaca"], dtype=float) for r in mine], axis=0)


def bootstrap(a: np.ndarray, b: np.ndarray, c: np.ndarray | None, reps: int = 10_000, seed: int = 0):
    """Paired over items: the 95% interval of mean(a - b) and, with ``c``, of R = mean(a - b) / mean(a - c)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(reps, len(a)))
    d = (a - b)[idx].mean(axis=1)
    out = {"diff": float((a - b).mean()), "diff_ci": [float(x) for x in np.percentile(d, [2.5, 97.5])]}
    if c is not None:
        r = d / (a - c)[idx].mean(axis=1)
        out["R"] = float((a - b).mean() / (a - c).mean())
        out["R_ci"] = [float(x) for x in np.percentile(r, [2.5, 97.5])]
    return out


def _by_length(rnd: np.ndarray, sel: np.ndarray, orc: np.ndarray | None, words: np.ndarray) -> str:
    """A diagnostic, not the test: L_random - L_selectit (and - L_oracle) on the held-out items whose
    reference answer is shorter / not shorter than the median in words."""
    short = words < np.median(words)
    parts = []
    for name, m in (("short", short), ("long", ~short)):
        cell = f"{name} answers (n {m.sum()}): random - selectit {(rnd - sel)[m].mean():+.4f}"
        if orc is not None:
            cell += f", random - oracle {(rnd - orc)[m].mean():+.4f}"
        parts.append(cell)
    return f"by held-out answer length (median {np.median(words):.0f} words): " + "; ".join(parts)


def finetune_table(rows: list[dict], words: np.ndarray | None = None) -> str:
    """The fine-tune table per level; ``words``: each held-out item's reference answer length in words
    (the length diagnostic, ``_by_length``)."""
    lines = []
    width = max(len(a) for a in ("base", *ARMS, *POSTHOC)) + 2
    for level in sorted({r["level"] for r in rows if r["arm"] != "base"}):
        lines.append(f"f = {level:g}")
        lines.append(f"{'arm':<{width}}{'n':>3}{'junk':>6}{'held-out loss':>21}{'seed loss':>10}{'IFEval':>8}"
                     f"{'unhealthy':>10}  health (empty/short/repeats/mojibake/template)")
        for arm in ("base", *ARMS, *POSTHOC):
            mine = [r for r in rows if r["arm"] == arm and (arm == "base" or r["level"] == level)]
            if not mine:
                continue
            held = np.array([r["eval"]["heldout_alpaca"] for r in mine])
            sd = f" +- {held.std(ddof=1):.4f}" if len(held) > 1 else ""
            junk = f"{np.mean([r['junk'] for r in mine]):.2f}" if arm != "base" else "-"
            h = [r["eval"].get("health", {}) for r in mine]
            hs = "/".join(f"{np.mean([x.get(c, np.nan) for x in h]):.2f}" for c in health.CHECKS)
            ife = np.mean([r["eval"].get("ifeval_strict", np.nan) for r in mine])
            lines.append(f"{arm:<{width}}{len(mine):>3}{junk:>6}{held.mean():>11.4f}{sd:<10}"
                         f"{np.mean([r['eval']['seed_tasks'] for r in mine]):>10.4f}{ife:>8.3f}"
                         f"{np.mean([x.get('unhealthy', np.nan) for x in h]):>10.2f}  {hs}")
        rnd, sel = item_losses(rows, level, "random"), item_losses(rows, level, "selectit")
        orc, full = item_losses(rows, level, "oracle"), item_losses(rows, level, "full")
        if rnd is not None and orc is not None:  # the room any selection has: the ceiling's own margin
            b = bootstrap(rnd, orc, None)
            lines.append(f"L_random - L_oracle = {b['diff']:+.4f} (95% CI {b['diff_ci'][0]:+.4f} .. "
                         f"{b['diff_ci'][1]:+.4f}): the room for any selection")
        if rnd is not None and sel is not None:
            b = bootstrap(rnd, sel, orc)
            line = (f"L_random - L_selectit = {b['diff']:+.4f} (95% CI {b['diff_ci'][0]:+.4f} .. {b['diff_ci'][1]:+.4f},"
                    f" paired over {len(rnd)} held-out items)")
            if "R" in b:
                line += f"; R = {b['R']:.2f} (95% CI {b['R_ci'][0]:.2f} .. {b['R_ci'][1]:.2f})"
            verdict = b["diff_ci"][0] > 0 and b.get("R", -1) >= 0.5
            lines += [line, f"pre-registered test (R >= 0.5 and the interval above 0): {'PASS' if verdict else 'FAIL'}"]
        for arm in POSTHOC:  # the same test for the arms added later (each frozen before its own rows)
            other = item_losses(rows, level, arm)
            if rnd is not None and other is not None:
                b = bootstrap(rnd, other, orc)
                line = f"L_random - L_{arm} = {b['diff']:+.4f} (95% CI {b['diff_ci'][0]:+.4f} .. {b['diff_ci'][1]:+.4f})"
                if "R" in b:
                    line += f"; R = {b['R']:.2f} (95% CI {b['R_ci'][0]:.2f} .. {b['R_ci'][1]:.2f})"
                verdict = b["diff_ci"][0] > 0 and b.get("R", -1) >= 0.5
                lines.append(f"{line}: {'PASS' if verdict else 'FAIL'}")
                if full is not None:
                    b = bootstrap(full, other, None)
                    lines.append(f"  L_full - L_{arm} = {b['diff']:+.4f} (95% CI {b['diff_ci'][0]:+.4f} .. "
                                 f"{b['diff_ci'][1]:+.4f})")
        if full is not None and sel is not None:
            b = bootstrap(full, sel, None)
            lines.append(f"L_full - L_selectit = {b['diff']:+.4f} (95% CI {b['diff_ci'][0]:+.4f} .. {b['diff_ci'][1]:+.4f})")
        if rnd is not None and sel is not None and words is not None:
            lines.append(_by_length(rnd, sel, orc, words))
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- files and main

def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def append_row(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    if args.stage == "purity":
        print(purity_table(run_purity(args)))
    elif args.stage == "finetune":
        print(finetune_table(run_finetune(args), heldout_words(args)))
    else:
        print(purity_table(read_rows(args.results / "proof_purity.jsonl")))
        print(finetune_table(read_rows(args.results / "proof_finetune.jsonl"), heldout_words(args)))
    print(f"{args.stage}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
