"""Development pools for issue 26's junk filter: contaminated pools the proof never sees.

    python bench/junk_dev.py                  # build, score and measure the dev pools, print the tables
    python bench/junk_dev.py --proof          # the proof pools' AUROC with the junk step (their runs scored)

The proof (``bench/proof.py``) contaminates the first 500 (and 2,000) records of the fine-tune pool's
permutation of alpaca_5000.json with seed 0 and holds out clean records from the permutation's end. A
change to the default must be chosen before it meets those pools, so this script builds pools from the
permutation's records 2,000-2,499 (in no proof pool and not held out), contaminated with seed 1 at the
proof's levels, and measures on them what a filter could use: the default's own columns (scores.jsonl),
the loss of the end-of-text token right after the response given the instruction (one extra pass here:
how ready the model is to stop there) and text hygiene (ftfy's badness: mojibake; control characters).
Every feature's AUROC (clean against junk, and per kind) and the purity of candidate policies are
printed; the features are kept in ``--out``/features_f{level}.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contaminate  # noqa: E402
import finetune_eval  # noqa: E402
import proof  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START, SIZE, SEED = 2000, 500, 1


def dev_records(data: Path) -> list[dict]:
    """The first SIZE records with an answer from the permutation's record START on (in file order): in no
    proof pool, not held out."""
    records = json.loads((data / "alpaca_5000.json").read_text(encoding="utf-8"))
    walk = [i for i in np.random.default_rng(0).permutation(len(records))[START:] if records[i]["output"].strip()]
    return [records[i] for i in sorted(walk[:SIZE])]


def dev_pool(args, level: float) -> Path:
    path = args.out / f"dev{SIZE}_f{level:g}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        pool, labels = contaminate.contaminate(dev_records(args.data), level, seed=SEED)
        contaminate.write(pool, labels, path)
    return path


def end_losses(pool: list[dict], dtype: str = "auto") -> np.ndarray:
    """(n,) the loss of the end-of-text token right after each response, given the Alpaca prompt with the
    instruction (the embedded model, hf backend)."""
    from selectit.backends import load_backend
    from selectit.measures.alpaca import instruction_context
    from selectit.records import Record

    backend = load_backend("hf", None, dtype=dtype)
    records = [Record(i, r["instruction"] + ("\n" + r["input"] if r.get("input") else ""), r["output"], r)
               for i, r in enumerate(pool)]
    out = np.full(len(records), np.nan)
    for b in range(0, len(records), 16):
        batch = records[b : b + 16]
        out[b : b + 16] = backend.response_losses([(instruction_context(r) + r.response, "") for r in batch], 4096,
                                                  end=True)
    return out


def hygiene(text: str) -> int:
    """ftfy's badness (mojibake sequences) plus the control characters (other than tab and newline)."""
    from ftfy.badness import badness

    return badness(text) + sum(ord(c) < 32 and c not in "\t\n\r" or c == "\x7f" for c in text)


def features(args, level: float) -> list[dict]:
    path = args.out / f"features_f{level:g}.jsonl"
    if path.is_file():
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    pool_file = dev_pool(args, level)
    pool = json.loads(pool_file.read_text(encoding="utf-8"))
    labels = contaminate.read_labels(pool_file)
    run = args.out / "runs" / f"dev{SIZE}_f{level:g}" / "selectit"
    proof.score(args, pool_file, run, ())
    rows = [json.loads(x) for x in (run / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    ends = end_losses(pool)
    out = []
    for i, (r, s, lab, end) in enumerate(zip(pool, rows, labels, ends)):
        (model,) = s["sentence_scores"]
        out.append({"position": i, "label": lab, "score": s["score"], "likelihood": s["likelihood"][model],
                    "ratings": float(np.mean(s["token_scores"][model])),
                    "given": s["response_loss"][model], "blank": s["blank_loss"][model],
                    "chars": len(r["output"]), "words": len(r["output"].split()), "end": float(end),
                    "hygiene": hygiene(r["output"])})
    path.write_text("".join(json.dumps(x) + "\n" for x in out), encoding="utf-8")
    return out


def auroc_table(rows: list[dict], feats: dict[str, np.ndarray]) -> str:
    lab = np.array([r["label"] for r in rows])
    clean = lab == contaminate.CLEAN
    lines = [f"{'feature (higher = cleaner)':34} {'all':>6} " + " ".join(f"{k[:8]:>8}" for k in contaminate.KINDS)]
    for name, x in feats.items():
        per = [proof.auroc(x[clean | (lab == k)], clean[clean | (lab == k)]) for k in contaminate.KINDS]
        lines.append(f"{name:34} {proof.auroc(x, clean):6.3f} " + " ".join(f"{v:8.3f}" for v in per))
    return "\n".join(lines)


SELECTIONS = {  # name -> `selectit select --fraction 0.2` flags on the default's run (None: its plain top 20%)
    "top 20% (the default)": None,
    "--dedup-threshold 0.5": ("--dedup-threshold", "0.5"),
    "--drop-junk --dedup-threshold 0.5": ("--drop-junk", "--dedup-threshold", "0.5"),
    **{f"--drop-junk --dedup-threshold 0.5 --sample (seed {s})": ("--drop-junk", "--dedup-threshold", "0.5", "--sample",
                                                                 "--sample-seed", str(s)) for s in range(3)},
}


def selection_table(args, level: float, labels: list[str]) -> str:
    """The junk share (and per kind) of each SELECTIONS 20% on the dev pool, through the CLI."""
    run = args.out / "runs" / f"dev{SIZE}_f{level:g}" / "selectit"
    if not any('"end_loss"' in line for line in (run / "scores.jsonl").open(encoding="utf-8").readlines()[:1]):
        (run / "scores.jsonl").unlink()  # scored before the end loss was a column: rescored (the store has the rest)
        proof.score(args, dev_pool(args, level), run, ())
    lines = [f"{'selection (20%)':50} {'junk':>6} " + " ".join(f"{k[:8]:>8}" for k in contaminate.KINDS)]
    for name, flags in SELECTIONS.items():
        chosen = proof.top(proof.read_scores(run)) if flags is None else proof.select_run(run, flags)
        row = proof.purity_row(labels, chosen, None)
        lines.append(f"{name:50} {row['junk']:6.3f} " + " ".join(f"{row['kinds'][k]:8.2f}" for k in contaminate.KINDS))
    return "\n".join(lines)


def junk_last(run: Path, records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(the run's scores, the ranking --drop-junk makes: the score, with every junk record below every
    other) from a default run's scores.jsonl and its records (selectit.selection.junk's tests, defaults)."""
    from selectit.selection import junk

    rows = [json.loads(x) for x in (run / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    (model,) = rows[0]["sentence_scores"]
    col = lambda k: np.array([np.nan if r[k][model] is None else r[k][model] for r in rows], dtype=float)  # noqa: E731
    broken = np.array([junk.broken_text(r["output"]) for r in records])
    bad = junk.junk(junk.junk_reasons(col("likelihood"), col("end_loss"), broken))
    scores = np.array([np.nan if r["score"] is None else r["score"] for r in rows], dtype=float)
    return scores, np.where(bad, scores - 1e6, scores)


def proof_table(args) -> str:
    """Clean-vs-junk AUROC (all, per kind) of the default's score and of the ranking --drop-junk makes, on
    the proof's pools (their default runs under ``--proof-out``; scored by bench/proof.py purity)."""
    lines = []
    for run in sorted((args.proof_out / "runs").glob("pool*_f*/selectit")):
        name = run.parent.name
        pool_file = args.proof_out / "pools" / f"{name}.json"
        if not (run / "scores.jsonl").is_file() or not pool_file.is_file():
            continue
        records = json.loads(pool_file.read_text(encoding="utf-8"))
        labels = [{"label": x} for x in contaminate.read_labels(pool_file)]
        scores, ranked = junk_last(run, records)
        lines += [f"\nproof pool {name}", auroc_table(labels, {"score (the default)": scores,
                                                                "junk last, then the score": ranked})]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="0.3,0.6")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "proof_out" / "dev")
    p.add_argument("--data", type=Path, default=finetune_eval.DATA)
    p.add_argument("--score-threads", type=int, default=2)
    p.add_argument("--proof", action="store_true", help="only the AUROC of the ranking --drop-junk makes on the "
                   "proof's pools (bench/proof.py's default runs), nothing scored")
    p.add_argument("--proof-out", type=Path, default=ROOT / "bench" / "proof_out")
    args = p.parse_args(argv)
    if args.proof:
        print(proof_table(args))
        return
    for level in [float(x) for x in args.levels.split(",")]:
        rows = features(args, level)
        col = {k: np.array([r[k] if r[k] is not None else np.nan for r in rows], dtype=float) for k in rows[0]
               if k not in ("label", "position")}
        gain = col["blank"] - col["given"]
        feats = {"score (the default)": col["score"], "information (likelihood)": col["likelihood"],
                 "ratings mean": col["ratings"], "gain per token": gain, "-given loss": -col["given"],
                 "-end loss": -col["end"], "-hygiene": -col["hygiene"], "words": col["words"]}
        print(f"\ndev pool f = {level:g} ({len(rows)} records)")
        print(auroc_table(rows, feats))
        print(selection_table(args, level, [r["label"] for r in rows]))


if __name__ == "__main__":
    main()
