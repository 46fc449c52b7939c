"""The selection steps between a run's scores and its selection (issue 16), in this order:

1. **Exact duplicates** (unless ``--keep-duplicates``): a record equal to an earlier one (instruction,
   input and response, up to case and whitespace: selectit.selection.dedup) is never selected.
2. **Junk** (``--drop-junk``): a record the information term, the end token's loss or the text itself
   says is broken (selectit.selection.junk) is never selected; before the near duplicates, so a cluster
   keeps its best record that is not junk.
3. **Near duplicates** (``--dedup-threshold J``): MinHash LSH clusters; only each cluster's best-scored
   record can be selected. The signatures are a measurement (selectit.measures.minhash) kept in the
   run's score store: computed on the first selection that needs them, read back after.
4. **Length-neutral ranking** (``--length-neutral``): records rank by their score minus the median score of
   records of like response length (selectit.selection.length) instead of by the score itself.
5. **The policy**: ``--fraction F`` (floor(N x F) records, N all records of the input, copies included),
   ``--top N`` or ``--threshold T``, best score first; with ``--diversity D`` the walk of
   selectit.selection.diversity fills the budget instead (a threshold run walks every record scoring >= T);
   with ``--sample`` the budget is a seeded uniform draw from the records left (selectit.selection.policy.sample).

Memory: scores (8 bytes a record), exact keys (8), with near dedup the signatures (512), with diversity
the embeddings (2 x hidden size: 1,152 for SmolLM2); bench/README.md gives the figures at 1M records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selectit import rundir
from selectit.selection import dedup, diversity, junk, length
from selectit.config import SelectOptions
from selectit.errors import ConfigError
from selectit.measures.base import EMBEDDING_DTYPE, stored_vectors
from selectit.measures.minhash import MinHashes
from selectit.selection.policy import Policy, rank, sample
from selectit.store import ScoreStore

CLUSTERS_KEPT = 50  # largest duplicate clusters written to selection.json (for the report)
MEMBERS_KEPT = 8  # positions kept per cluster


@dataclass
class Chosen:
    """The selection: input positions (best first, or in walk order with diversity) and what each step did."""

    indices: np.ndarray
    info: dict = field(default_factory=dict)


def store_path(run_dir: str | Path, cfg: dict) -> Path:
    """The run's score store (``--store``, else DIR/store.sqlite)."""
    ex = (cfg.get("config") or {}).get("execution") or {}
    return rundir.store_path(run_dir, ex.get("store"))


def choose_run(source, cfg: dict, scores: np.ndarray, options: SelectOptions, store: Path, policy: Policy,
               run_dir: Path | None = None) -> Chosen:
    """Run the steps over a scored run's input ``source`` (read again, streamed) and ``scores`` (n,);
    ``run_dir``: the run directory (its scores.jsonl columns, for --drop-junk)."""
    if options.sample and policy.threshold is not None:
        raise ConfigError("--sample draws a --fraction or --top budget; --threshold keeps every record over it")
    n = len(scores)
    eligible = np.isfinite(scores)
    info: dict = {"exact_duplicates": 0, "near_duplicates": 0, "clusters": []}
    groups = np.arange(n)
    if not options.keep_duplicates:
        groups = dedup.first_copies(dedup.exact_keys(source.records()))
        copies = groups != np.arange(n)
        info["exact_duplicates"] = int(copies.sum())
        eligible &= ~copies
    if options.drop_junk:
        eligible, info["junk"] = _junk(source, cfg, eligible, options, run_dir)
    if options.dedup_threshold is not None:
        eligible, groups, info["near_duplicates"] = _near(source, scores, eligible, groups, options, store)
    info["clusters"] = _largest_clusters(groups, scores, eligible)
    key = scores
    if options.length_neutral:
        chars = np.fromiter((len(r.response) for r in source.records()), dtype=np.float64, count=n)
        key, info["length_neutral"] = length.neutral_scores(scores, chars, eligible)
    ranked = rank(np.where(eligible, key, np.nan))[: int(eligible.sum())]
    budget = policy.budget(n)
    if policy.threshold is not None:
        ranked = ranked[scores[ranked] >= policy.threshold]
    if options.sample:
        info["sample"] = {"seed": options.sample_seed, "from": int(len(ranked))}
        return Chosen(sample(ranked, budget, options.sample_seed), info)
    if options.diversity is None:
        return Chosen(ranked[:budget], info)
    vectors = load_embeddings(source, cfg, store)
    taken, walked = diversity.diverse(ranked, vectors, options.diversity, budget)
    info["diversity"] = {"d": options.diversity, "walked": walked, "too_similar": walked - len(taken),
                         "embedding_dim": int(vectors.shape[1])}
    if budget is not None and len(taken) < min(budget, len(ranked)):
        info["diversity"].update(budget=int(min(budget, len(ranked))),
                                 would_meet=_diversity_meeting(ranked, vectors, options.diversity, budget))
    return Chosen(taken, info)


def _diversity_meeting(ranked: np.ndarray, vectors: np.ndarray, d: float, budget: int) -> float | None:
    """The largest D of d/2, d/4, ... d/64 whose walk fills ``budget``; None if none does."""
    for k in range(1, 7):
        if len(diversity.diverse(ranked, vectors, d / 2**k, budget)[0]) >= min(budget, len(ranked)):
            return d / 2**k
    return None


def _junk(source, cfg: dict, eligible: np.ndarray, options: SelectOptions, run_dir: Path | None
          ) -> tuple[np.ndarray, dict]:
    """(eligible less the junk, what the junk step did: records left out for each reason, of those not
    already left out, and in all)."""
    from selectit import rundir

    term = "information" if cfg.get("method") == "information" else "likelihood"
    params = (cfg.get("config") or {}).get("method") or {}
    if run_dir is None or (term == "likelihood" and (params.get("likelihood_term") != "information"
                                                     or not params.get("likelihood_weight"))):
        raise ConfigError(f"--drop-junk needs the information term, and this run (--method {cfg.get('method')}) "
                          "has none: score with the default method or --method information (what is stored is "
                          "reused)")
    try:
        columns = rundir.model_columns(run_dir, cfg, (term, "end_loss"))
    except ConfigError as e:
        raise ConfigError(f"--drop-junk: {e}; this run was scored before selectit measured the end token's loss: "
                          "score the input again (what is stored is reused)") from None
    broken = np.fromiter((junk.broken_text(r.response) for r in source.records()), dtype=bool, count=len(eligible))
    reasons = junk.junk_reasons(columns[term], columns["end_loss"], broken, options.junk_min_information,
                                options.junk_max_end_loss)
    out = junk.junk(reasons)
    info = {r: int((reasons[r] & eligible).sum()) for r in junk.REASONS}
    info.update(records=int((out & eligible).sum()), min_information=options.junk_min_information,
                max_end_loss=options.junk_max_end_loss)
    return eligible & ~out, info


def _near(source, scores, eligible, groups, options: SelectOptions, store: Path):
    """(eligible, groups, near copies) after near-duplicate clustering of the records not yet excluded
    as exact copies."""
    measure = MinHashes()
    db = ScoreStore(store)
    try:
        parts = []
        for records in source.chunks():
            measure.compute(None, None, records, db)
            parts.append(measure.load(None, records, db))
    finally:
        db.close()
    sigs = np.concatenate(parts) if parts else np.zeros((0, dedup.NUM_PERM), dtype=np.uint32)
    among = np.flatnonzero(groups == np.arange(len(groups)))  # first copies only: a copy is its first's
    pairs = among[dedup.near_pairs(sigs[among], options.dedup_threshold)]
    cluster = dedup.clusters(len(groups), pairs)[groups]  # copies follow their first copy's cluster
    keep = dedup.best_of_clusters(scores, cluster, eligible)
    return keep, cluster, int((eligible & ~keep).sum())


def _largest_clusters(groups: np.ndarray, scores: np.ndarray, eligible: np.ndarray) -> list[dict]:
    """The CLUSTERS_KEPT largest groups of copies (size > 1), largest first: size, the member that can
    be selected (None if none can), the first MEMBERS_KEPT members (input positions)."""
    sizes = np.bincount(groups, minlength=len(groups))
    big = np.flatnonzero(sizes > 1)
    big = big[np.argsort(-sizes[big], kind="stable")][:CLUSTERS_KEPT]
    out = []
    for g in big:
        members = np.flatnonzero(groups == g)
        kept = members[eligible[members]]
        out.append({"size": int(sizes[g]), "kept": int(kept[0]) if len(kept) else None,
                    "members": members[:MEMBERS_KEPT].tolist()})
    return out


def embeddings_of(cfg: dict) -> dict:
    """Where a scored run stored its record embeddings (config.json "embeddings", written at score time:
    the first model's name, store key and kind)."""
    if "embeddings" not in cfg:
        raise ConfigError("--diversity needs the records' embeddings, and this run's config.json (selectit "
                          f"{cfg.get('selectit_version', '?')}) does not say where they are stored: score it again "
                          "(what is stored is reused)")
    found = cfg["embeddings"]
    if found is None:
        c = cfg.get("config") or {}
        raise ConfigError("--diversity needs the records' embeddings; this run made none (--method "
                          f"{cfg.get('method')}, --backend {(c.get('model') or {}).get('backend')}, --embeddings "
                          f"{(c.get('measure') or {}).get('embeddings')}): score it with --embeddings on (what is "
                          "stored is reused)")
    return found


def load_embeddings(source, cfg: dict, store: Path) -> np.ndarray:
    """(n, H) float16: every record's embedding, in input order, from the run's store (streamed by chunk)."""
    found = embeddings_of(cfg)
    what = f"{found['pooled']} of model {found['model']}"
    db = ScoreStore(store)
    try:
        parts = [stored_vectors(db, found["key"], found["kind"], records, EMBEDDING_DTYPE, what)
                 for records in source.chunks()]
    except ConfigError as e:
        raise ConfigError(f"{e}; score the input again (what is stored is reused)") from None
    finally:
        db.close()
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=EMBEDDING_DTYPE)
