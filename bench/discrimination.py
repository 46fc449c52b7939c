"""Does the score tell a good answer from a damaged one? (issue 8)

Takes real records (Alpaca and the human-written seed tasks), makes damaged copies of each (see
bench/damage.py: swap, truncate, shuffle, wrong_language, ignore_constraint), scores originals and
copies together with every scoring variant, and prints the pairwise accuracy
P(score(original) > score(damaged copy)) per damage kind and overall (ties count one half), with a
random-score line as the floor.

Variants that need their own forward passes (template, prompt set) are scored once each through the
public API (``selectit.score``); the others (calibration, expected rating, label-mass weighting) are
the tool's own options applied to the same label probabilities (``SelectIT.levels`` of selectit.methods), so
every row is exactly what ``selectit score`` with those flags computes.

    python bench/discrimination.py --alpaca 10 --seed-tasks 10          # ~10 min on 2 idle cores
    python bench/discrimination.py --alpaca 50 --seed-tasks 50 --seed 1 --forward published/plain,ours/chat
                                                     # the held-out table of bench/README.md, ~30 min
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

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "selectit_rating_prompts.txt"

# name -> (forward configuration, post-hoc options). Post-hoc options only change the math.
# Every forward runs in float32 (the rows' reference) except ours/chat/auto: the default's --dtype auto
# (bfloat16 on a CPU with native bfloat16, selectit.backends.precision; issue 17). The published forwards
# rate with the published 5 prompts; ours/* with the default's P (4 since issue 27), ours/chat5 with the 5
# of the default before it.
FORWARD = {
    "published/plain": dict(template="plain", prompts_file=str(PUBLISHED), dtype="float32", num_prompts=5),
    "published/chat": dict(template="chat", prompts_file=str(PUBLISHED), dtype="float32", num_prompts=5),
    "ours/chat": dict(template="chat", dtype="float32"),
    "ours/chat5": dict(template="chat", dtype="float32", num_prompts=5),
    "ours/chat/auto": dict(template="chat", dtype="auto"),
    "ours/once": dict(template="chat", dtype="float32", layout="record-once"),
    "ours/once/auto": dict(template="chat", dtype="auto", layout="record-once"),
}
VARIANTS = [
    ("paper (published prompts, plain template)", "published/plain", {}),
    ("paper + expected rating", "published/plain", dict(rating="expected")),
    ("paper + calibration", "published/plain", dict(calibrate=True)),
    ("chat template", "published/chat", {}),
    ("chat + our prompts", "ours/chat", {}),
    ("chat + our prompts + expected", "ours/chat", dict(rating="expected")),
    ("chat + our prompts + calibration", "ours/chat", dict(calibrate=True)),
    ("chat + our prompts + calibration + expected", "ours/chat", dict(calibrate=True, rating="expected")),
    ("chat + our prompts + mass weights", "ours/chat", dict(prompt_weights="mass")),
    ("chat + ours + calibration + expected + mass", "ours/chat",
     dict(calibrate=True, rating="expected", prompt_weights="mass")),
    ("paper + likelihood 1", "published/plain", dict(likelihood_weight=1.0, likelihood_term="per-token")),
    ("chat + ours + expected + likelihood 0.5", "ours/chat",
     dict(rating="expected", likelihood_weight=0.5, likelihood_term="per-token")),
    ("chat + ours + expected + likelihood 1 (v1 default)", "ours/chat",
     dict(rating="expected", likelihood_weight=1.0, likelihood_term="per-token")),
    ("chat + ours + expected + likelihood 2", "ours/chat",
     dict(rating="expected", likelihood_weight=2.0, likelihood_term="per-token")),
    ("chat + ours + expected + information 1", "ours/chat",
     dict(rating="expected", likelihood_weight=1.0, likelihood_term="information")),
    ("chat + ours + expected + information 2 (default)", "ours/chat",
     dict(rating="expected", likelihood_weight=2.0, likelihood_term="information")),
    ("chat + ours + expected + information 4", "ours/chat",
     dict(rating="expected", likelihood_weight=4.0, likelihood_term="information")),
    ("default before issue 27 (5 prompts)", "ours/chat5",
     dict(rating="expected", likelihood_weight=2.0, likelihood_term="information")),
    ("default with --dtype auto", "ours/chat/auto",
     dict(rating="expected", likelihood_weight=2.0, likelihood_term="information")),
    ("default with --layout record-once", "ours/once",
     dict(rating="expected", likelihood_weight=2.0, likelihood_term="information")),
    ("record-once + --dtype auto", "ours/once/auto",
     dict(rating="expected", likelihood_weight=2.0, likelihood_term="information")),
]

BASELINES = ("length", "perplexity", "ifd")
# rows that also appear ranked as `select --length-neutral` ranks them (selectit.selection.length)
NEUTRAL = {"chat + ours + expected + information 2 (default)": "default, --length-neutral ranking",
           "default with --dtype auto": "default (--dtype auto), --length-neutral"}


def length_bias(scores: np.ndarray, chars: np.ndarray, records: list[dict]) -> float:
    """Spearman correlation of the score with the response's characters over the originals (no damaged
    copy): how much the ranking follows answer length among good records."""
    keep = np.array(["kind" not in r for r in records]) & np.isfinite(np.asarray(scores, dtype=np.float64))
    a, b = _ranks(np.asarray(scores, dtype=np.float64)[keep]), _ranks(chars[keep])
    return float(np.corrcoef(a, b)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """(n,) -> (n,) ranks from 0, ties given their average rank (Spearman's convention)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (start + (counts - 1) / 2.0)[inverse]


def pairwise_accuracy(scores: dict[str, float], records: list[dict]) -> dict[str, float]:
    """P(score(original) > score(its damaged copy)) per kind and overall; ties count 1/2, a NaN
    score loses (an unscored record is never selected)."""
    def beats(a: float, b: float) -> float:
        a, b = (-np.inf if np.isnan(x) else x for x in (a, b))
        return 1.0 if a > b else 0.5 if a == b else 0.0

    per = {k: [] for k in KINDS}
    for r in records:
        if "kind" in r:
            per[r["kind"]].append(beats(scores[r["of"]], scores[r["id"]]))
    out = {k: float(np.mean(v)) for k, v in per.items()}
    out["overall"] = float(np.mean([x for v in per.values() for x in v]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpaca", type=int, default=10, help="originals from alpaca_5000.json")
    ap.add_argument("--seed-tasks", type=int, default=10, help="originals from the human-written seed tasks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path("bench/.discrimination"), help="label probabilities per forward config")
    ap.add_argument("--json", type=Path, help="also write the table as JSON")
    ap.add_argument("--forward", default=",".join(FORWARD),
                    help="forward configurations to score (rows that need another one are left out)")
    ap.add_argument("--gemma", type=Path, help="Gemma-3-270M GGUF: adds the two-model rows (model level over "
                    "SmolLM2-135M-Instruct and Gemma-3-270M base, weights by parameter count) and each alone")
    ap.add_argument("--arrays", type=Path, help="also save every record's measurements (npz) for analysis")
    args = ap.parse_args()
    if args.gemma:
        FORWARD["ours/auto+gemma"] = dict(template="auto", models=("embedded", str(args.gemma)), dtype="float32")
        args.forward += ",ours/auto+gemma"

    import selectit
    from selectit import reflection
    from selectit.formats import from_dicts
    from selectit.methods import METHODS, PAPER, configure
    from selectit.methods.selectit import likelihood_term
    from selectit.selection.length import neutral_scores

    levels = METHODS["selectit"].levels

    originals = load_originals(DATA / "alpaca_5000.json", DATA / "alpaca_seed_tasks.jsonl", args.alpaca,
                               args.seed_tasks, seed=args.seed)
    records = originals + damaged_copies(originals, seed=args.seed)
    data = [{"instruction": r["instruction"], "output": r["response"]} for r in records]
    recs = from_dicts(data)
    print(f"{len(originals)} originals ({args.alpaca} Alpaca, {args.seed_tasks} seed tasks) x {len(KINDS)} damage "
          f"kinds = {len(records)} records", flush=True)

    runs, two_models = {}, {}
    for name in args.forward.split(","):
        opts = FORWARD[name]
        t = time.perf_counter()
        # content-free probs (3 extra inputs) and response losses (2 per record) come along
        config, _ = configure({**PAPER, "calibrate": True, "likelihood_weight": 1.0, **opts})
        store = args.cache / f"{args.alpaca}-{args.seed_tasks}-{args.seed}.sqlite"
        store.parent.mkdir(parents=True, exist_ok=True)
        scores = selectit.score(data, config, store=str(store))
        runs[name] = (config, scores.runs[0])
        if len(scores.runs) > 1:
            two_models[name] = scores
        print(f"  {name}: {time.perf_counter() - t:.0f}s, mean label mass "
              f"{[round(float(np.nanmean(r.label_mass)), 3) for r in scores.runs]}", flush=True)

    chars = np.array([len(r.response) for r in recs], dtype=np.float64)  # no record here is cut by a max length
    rng = np.random.default_rng(args.seed)
    bias = {}
    table = [("random scores (floor)", pairwise_accuracy(
        {r["id"]: float(x) for r, x in zip(records, rng.random(len(records)))}, records), 0)]
    for label, forward, post in VARIANTS:
        if forward not in runs:
            continue
        config, run = runs[forward]
        cfg = config.with_options(**{**PAPER, "template": config.measure.template, **post})  # the paper's math
        lik = likelihood_term((run.response_loss, run.blank_loss), chars, cfg.method.likelihood_term)  # unless post says otherwise
        _, sentence = levels(run.probs, run.content_free, cfg, lik)
        extra = 3 if cfg.method.calibrate else 0
        table.append((label, pairwise_accuracy({r["id"]: float(s) for r, s in zip(records, sentence)}, records), extra))
        if label in NEUTRAL:  # the same scores ranked by select --length-neutral (issue 26), over every record
            key, _ = neutral_scores(sentence, chars, np.ones(len(records), dtype=bool))
            table.append((NEUTRAL[label], pairwise_accuracy({r["id"]: float(s) for r, s in zip(records, key)}, records), 0))
            bias[label] = length_bias(sentence, chars, records)
            bias[NEUTRAL[label]] = length_bias(key, chars, records)

    if "ours/chat" in runs:
        chat = runs["ours/chat"][1]
        losses = chat.response_loss, chat.blank_loss
        for label, term in (("likelihood term alone (no rating)", "per-token"),
                            ("information term alone (no rating)", "information")):
            table.append((label, pairwise_accuracy(
                {r["id"]: float(s) for r, s in zip(records, likelihood_term(losses, chars, term))}, records), 0))
    for name, scores in two_models.items():  # the model level over two real models, and each alone
        config = scores.config.with_options(**{**PAPER, "template": "auto", "rating": "expected",
                                               "likelihood_weight": 2.0, "likelihood_term": "information"})
        sentences = [levels(r.probs, None, config, likelihood_term((r.response_loss, r.blank_loss), chars, "information"))[1]
                     for r in scores.runs]
        weights = reflection.model_weights([r.num_parameters for r in scores.runs])
        both = reflection.model_scores(np.stack(sentences, axis=1), weights)
        rows = [("SmolLM2-135M + Gemma-3-270M (model level, default)", both)]
        rows += [(f"{r.name} alone (default)", sentence) for r, sentence in zip(scores.runs, sentences)]
        for label, score in rows:
            table.append((label, pairwise_accuracy({r["id"]: float(s) for r, s in zip(records, score)}, records), 0))
    if args.arrays and "ours/chat" in runs:
        run = runs["ours/chat"][1]
        np.savez(args.arrays, ids=np.array([r["id"] for r in records]), of=np.array([r.get("of", "") for r in records]),
                 kind=np.array([r.get("kind", "") for r in records]), probs=run.probs, given=run.response_loss,
                 blank=run.blank_loss, chars=np.array([len(r["response"]) for r in records]),
                 words=np.array([len(r["response"].split()) for r in records]))
    for method in BASELINES:  # the other selectors of `--method`, scored by what they rank by
        t = time.perf_counter()
        final = selectit.score(data, method=method, store=str(store), dtype="float32").final
        table.append((f"--method {method}", pairwise_accuracy(
            {r["id"]: float(s) for r, s in zip(records, final)}, records), 0))
        print(f"  --method {method}: {time.perf_counter() - t:.0f}s", flush=True)

    head = f"{'variant':46s} {'overall':>7s} " + " ".join(f"{k[:10]:>10s}" for k in KINDS)
    print("\npairwise accuracy P(score(original) > score(damaged)), ties 1/2")
    print(head)
    for label, acc, _ in table:
        print(f"{label:46s} {acc['overall']:7.3f} " + " ".join(f"{acc[k]:10.3f}" for k in KINDS))
    if bias:
        print("\nlength bias: Spearman(score, response characters) over the originals")
        for label, rho in bias.items():
            print(f"{label:46s} {rho:7.3f}")
    if args.json:
        args.json.write_text(json.dumps([{"variant": lab, **acc, **({"length_spearman": bias[lab]} if lab in bias else {})}
                                         for lab, acc, _ in table], indent=1))


if __name__ == "__main__":
    main()
