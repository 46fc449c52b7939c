"""How well does a learned proxy stand in for the full score, and what does it save? (issue 18)

Needs a reference run: the full method (the default, embedded SmolLM2) on every record, e.g.

    selectit score alpaca_4998.jsonl --out REF          # the 4,998 records of alpaca_5000.json with an answer
    python bench/proxy.py --ref REF                     # the tables of bench/README.md

For each feature rung (selectit.measures.features) the features of every record are computed (model
rungs into a copy of the run's store; the ``hidden`` rung is the reference run's own record embedding),
then for each sample share a proxy is fitted on a seeded sample exactly as ``selectit score --proxy``
does (selectit.proxy.fit) and judged three ways: its held-out Spearman on the sample (what the tool
reports), the overlap of the selection it leads to (full scores on the sample, predicted elsewhere; best
20%) with the reference selection, and the Spearman of its predictions with the reference on the
records it predicted. Then, in one run on the same records (``--timing``), the seconds per record of
each rung's features against the full method's; the proxy's pairwise accuracy on bench/discrimination.py's
originals and damaged copies (``--discrimination``); records per hour; the records it gets most wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from damage import KINDS, damaged_copies, load_originals  # noqa: E402

from selectit.config import PROXY_FEATURES  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RUNGS = PROXY_FEATURES


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", type=Path, required=True, help="a run scored with the full method (scores.jsonl, store)")
    p.add_argument("--samples", default="0.05,0.1,0.2", help="sample shares to fit on")
    p.add_argument("--rungs", default=",".join(RUNGS))
    p.add_argument("--layers", type=int, default=4, help="layers of the early rungs (a rung 'early-likelihood:8' "
                   "sets its own)")
    p.add_argument("--timing", type=int, default=200, help="records timed per rung and for the full method (0: none)")
    p.add_argument("--discrimination", default="50,50,1",
                   help="alpaca originals, seed-task originals, seed of bench/discrimination.py ('' : skip)")
    p.add_argument("--seeds", type=int, default=3, help="samples drawn per share (the figures are their mean)")
    p.add_argument("--store", type=Path, default=None, help="the reference's score store (default: the run's)")
    p.add_argument("--out", type=Path, default=None, help="JSON of every figure (default: REF/proxy_bench.json)")
    p.add_argument("--data", type=Path, default=DATA)
    return p.parse_args(argv)


def load_reference(ref: Path, store: Path | None = None):
    """(records, reference scores (n,), store path (``store``, else the run's), the model as the run
    measured it)."""
    from selectit import rundir
    from selectit.measures import ModelInfo

    cfg = rundir.read_config(ref)
    scores, digest = rundir.score_column(ref)
    source = rundir.scored_input(ref, cfg, len(scores), digest, "the proxy bench needs the records")
    records = list(source.records())
    store = store or rundir.store_path(ref, cfg["config"]["execution"].get("store"))
    return records, np.asarray(scores, dtype=np.float64), store, ModelInfo.from_dict(cfg["models"][0])


def split_rung(spec: str, layers: int) -> tuple[str, int]:
    """(rung, layers) of a rung as --rungs names it: 'early-likelihood:8' is that rung after 8 layers."""
    rung, _, k = spec.partition(":")
    return rung, int(k) if k else layers


def rung_features(spec: str, layers: int, records, info, backend, store) -> tuple[object, float]:
    """(features of every record, seconds to make them that were not already stored)."""
    from selectit.config import Execution
    from selectit.measures.features import features, rung_measures

    rung, layers = split_rung(spec, layers)
    start = time.perf_counter()
    ex = Execution(batch_size=16)
    for measure in rung_measures(rung, layers):
        for b in range(0, len(records), 1000):
            measure.compute(backend, info, records[b : b + 1000], store, ex)
    X = features(rung, layers, records, [info], store)
    return X, time.perf_counter() - start


def timing(records, backend, info, layers: int, rungs) -> dict[str, float]:
    """Seconds per record, on the same records in one run (a fresh in-memory store each): each model
    rung's features, the ngrams rung, and the full default method (selectit.score with the loaded model)."""
    import selectit
    from selectit.config import Execution
    from selectit.measures.features import ngram_features, rung_measures
    from selectit.store import ScoreStore

    out = {}
    for rung in rungs:
        start = time.perf_counter()
        measures, fresh = rung_measures(*split_rung(rung, layers)), ScoreStore()
        if not measures:
            ngram_features(records)
        for measure in measures:
            measure.compute(backend, info, records, fresh, Execution(batch_size=16))
        out[rung] = (time.perf_counter() - start) / len(records)
        print(f"  timing {rung}: {out[rung] * 1000:.2f} ms/record", flush=True)
    start = time.perf_counter()
    data = [{"instruction": r.instruction, "output": r.response} for r in records]
    selectit.score(data, backends=[backend], store=ScoreStore())
    out["full default"] = (time.perf_counter() - start) / len(records)
    print(f"  timing full default: {out['full default'] * 1000:.1f} ms/record", flush=True)
    return out


def judge(X, full: np.ndarray, share: float, regressor: str, seed: int) -> dict:
    """One proxy fitted on a seeded sample of ``share``, judged against the reference ``full``."""
    from selectit.proxy import fit as proxy

    n = len(full)
    size = proxy.sample_size(n, share)
    at = proxy.sample_positions(n, size, seed)
    start = time.perf_counter()
    fit = proxy.fit(X[at], full[at], regressor=regressor, seed=seed)
    seconds = time.perf_counter() - start
    rest = np.setdiff1d(np.arange(n), at)
    mixed = full.copy()
    mixed[rest] = fit.predict(X[rest])
    return {"sample": size, "held_out_spearman": fit.spearman, "held_out_overlap": fit.top_overlap,
            "selection_overlap": proxy.top_overlap(full, mixed), "predicted_spearman": proxy.spearman(full[rest],
                                                                                                     mixed[rest]),
            "fit_seconds": seconds, "fit": fit, "rest": rest, "mixed": mixed}


def discrimination(spec: str, data: Path, rung: str, layers: int, backend, info, fit, store) -> dict[str, float]:
    """The proxy's pairwise accuracy on bench/discrimination.py's originals and damaged copies (their
    features go to ``store`` too, keyed by content, so a rerun reuses them)."""
    from discrimination import pairwise_accuracy

    from selectit.formats import from_dicts

    n_alpaca, n_seed, seed = (int(x) for x in spec.split(","))
    originals = load_originals(data / "alpaca_5000.json", data / "alpaca_seed_tasks.jsonl", n_alpaca, n_seed, seed=seed)
    records = originals + damaged_copies(originals, seed=seed)
    recs = from_dicts([{"instruction": r["instruction"], "output": r["response"]} for r in records])
    X, _ = rung_features(rung, layers, recs, info, backend, store)
    predicted = fit.predict(X)
    return pairwise_accuracy({r["id"]: float(s) for r, s in zip(records, predicted)}, records)


def main(argv=None) -> None:
    args = parse_args(argv)
    from selectit.backends.hf import HFBackend
    from selectit.store import ScoreStore

    records, full, store_path, info = load_reference(args.ref, args.store)
    keep = np.isfinite(full)
    print(f"reference: {len(full)} records, {int((~keep).sum())} without a score (left out), model {info.name}, "
          f"store {store_path}", flush=True)
    records = [r for r, k in zip(records, keep) if k]
    full = full[keep]
    # The reference's own precision (runs before --dtype auto recorded none: float32), so that features
    # computed here are stored under the reference model's keys truthfully.
    backend = HFBackend.load(info.spec if info.spec != "embedded" else None, template=info.template,
                             dtype=info.dtype or "float32")
    store = ScoreStore(store_path)
    rungs = [r.strip() for r in args.rungs.split(",") if r.strip()]
    shares = [float(s) for s in args.samples.split(",")]
    report: dict = {"records": len(full), "rungs": {}, "layers": args.layers}

    feats = {}
    for rung in rungs:
        feats[rung], seconds = rung_features(rung, args.layers, records, info, backend, store)
        print(f"features {rung}: {seconds:.1f}s for what was not stored", flush=True)
    if "likelihood" in feats:  # an early exit's term against the exact one (first column of each)
        from selectit.proxy.fit import spearman

        for rung in (r for r in rungs if r.startswith("early-likelihood")):
            rho = spearman(feats[rung][:, 0], feats["likelihood"][:, 0])
            report.setdefault("term_spearman", {})[rung] = rho
            print(f"{rung}: its likelihood term vs the exact term, Spearman {rho:.3f} ({len(full)} records)")

    print(f"\nproxy vs the full default on {len(full)} records (ridge; mean over {args.seeds} samples)")
    head = (f"{'rung':<20}{'sample':>8}{'held-out rho':>14}{'held-out top20':>16}{'selection top20':>17}"
            f"{'predicted rho':>15}{'fit s':>8}")
    print(head)
    results = {}
    for rung in rungs:
        for share in shares:
            runs = [judge(feats[rung], full, share, "ridge", seed) for seed in range(args.seeds)]
            row = {k: float(np.mean([r[k] for r in runs])) for k in ("sample", "held_out_spearman", "held_out_overlap",
                                                                     "selection_overlap", "predicted_spearman",
                                                                     "fit_seconds")}
            row["sd_predicted_spearman"] = float(np.std([r["predicted_spearman"] for r in runs]))
            results[(rung, share)] = (row, runs[0])
            print(f"{rung:<20}{share:>8.0%}{row['held_out_spearman']:>14.3f}{row['held_out_overlap']:>16.3f}"
                  f"{row['selection_overlap']:>17.3f}{row['predicted_spearman']:>15.3f}{row['fit_seconds']:>8.1f}",
                  flush=True)
            report["rungs"].setdefault(rung, {})[str(share)] = row

    middle = 0.1 if 0.1 in shares else shares[0]
    print(f"\nregressors at {middle:.0%} (one sample, seed 0)")
    print(f"{'rung':<20}{'ridge rho':>11}{'lightgbm rho':>14}{'ridge top20':>13}{'lightgbm top20':>16}")
    for rung in rungs:
        r = results[(rung, middle)][1]
        g = judge(feats[rung], full, middle, "lightgbm", 0)
        print(f"{rung:<20}{r['predicted_spearman']:>11.3f}{g['predicted_spearman']:>14.3f}"
              f"{r['selection_overlap']:>13.3f}{g['selection_overlap']:>16.3f}", flush=True)
        report["rungs"][rung]["lightgbm_" + str(middle)] = {k: float(g[k]) for k in (
            "held_out_spearman", "selection_overlap", "predicted_spearman", "fit_seconds")}

    if args.timing:
        print(f"\nseconds per record, {args.timing} records, one run")
        t = timing(records[: args.timing], backend, info, args.layers, rungs)
        report["seconds_per_record"] = t
        base = t["full default"]
        print(f"{'what':<20}{'ms/record':>11}{'x fewer than full':>19}{'records/hour':>14}{'1M records (est.)':>19}")
        print(f"{'full default':<20}{base * 1000:>11.1f}{1.0:>19.1f}{3600 / base:>14,.0f}{_hours(1e6 * base):>19}")
        for rung in rungs:
            per = t[rung]
            proxy_per = 0.05 * base + per  # 5% scored in full, features for every record (fit: seconds)
            print(f"{rung:<20}{per * 1000:>11.2f}{base / per:>19.1f}{'':>14}{'':>19}")
            print(f"{'  proxy, 5% full':<20}{proxy_per * 1000:>11.1f}{base / proxy_per:>19.1f}"
                  f"{3600 / proxy_per:>14,.0f}{_hours(1e6 * proxy_per):>19}")
            report.setdefault("proxy_seconds_per_record_5pct", {})[rung] = proxy_per

    if args.discrimination:
        print(f"\npairwise accuracy on bench/discrimination.py ({args.discrimination}), proxy fitted on {middle:.0%}")
        print(f"{'rung':<20}" + "".join(f"{k[:12]:>13}" for k in (*KINDS, "overall")))
        for rung in rungs:
            acc = discrimination(args.discrimination, args.data, rung, args.layers, backend, info,
                                 results[(rung, middle)][1]["fit"], store)
            print(f"{rung:<20}" + "".join(f"{acc[k]:>13.3f}" for k in (*KINDS, "overall")), flush=True)
            report["rungs"][rung]["discrimination"] = acc

    best = max(rungs, key=lambda r: results[(r, middle)][0]["predicted_spearman"])
    run = results[(best, middle)][1]
    errors = np.abs(run["mixed"][run["rest"]] - full[run["rest"]])
    print(f"\nwhere the {best} proxy ({middle:.0%}) is most wrong (predicted vs full; full-score rank of {len(full)})")
    ranks = np.empty(len(full), dtype=int)
    ranks[np.argsort(-full, kind="stable")] = np.arange(1, len(full) + 1)
    worst = []
    for i in run["rest"][np.argsort(-errors)[:8]]:
        r = records[i]
        worst.append({"id": r.id, "full": float(full[i]), "predicted": float(run["mixed"][i]), "rank": int(ranks[i]),
                      "instruction": r.instruction[:90], "response_words": len(r.response.split())})
        print(f"  {float(run['mixed'][i]):6.2f} vs {float(full[i]):6.2f} (rank {ranks[i]:>4}, "
              f"{len(r.response.split()):>3} words): {r.instruction[:80]!r}")
    report["worst"] = worst
    out = args.out or args.ref / "proxy_bench.json"
    out.write_text(json.dumps(report, indent=1, default=float))
    print(f"\nfigures: {out}")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds < 86400 * 2 else f"{seconds / 86400:,.1f} days"


if __name__ == "__main__":
    main()
