"""The default on the cost-quality frontier (issue 27): forward tokens per record against held-out
discrimination, per variant of the default method.

    python bench/frontier.py                       # dev 20 originals (seed 0), held-out 100 (seed 1), ~20 min
    python bench/frontier.py --json bench/results/frontier.json --plot bench/frontier.png

One forward run per set (the default method in float32 with all 5 packaged rating prompts, and the two response
losses, through ``selectit.score``, stored in the cache bench/discrimination.py uses), then every
variant is the tool's own math on those measurements (``SelectIT.levels``, the information term):
- ``P = k`` rating prompts with the information term at the default weight, k = 1..5; for k < 5 the
  subset of the default prompts with the best overall pairwise accuracy on the **development** set
  (seed 0), never chosen on the held-out one;
- ``P = 0``: the information term alone; ``ratings alone``: the 5 prompts, likelihood weight 0;
- the same with the information term's blank pass from a **shorter context**: the response alone (and
  its end token), no Alpaca header around an empty instruction (``blank: response alone``; one more
  float32 loss pass per set, through the tool's own ``text_losses``, stored beside the run);
- ``record-once P = k``: ``--layout record-once`` (the record read once, the rating prompts as later
  turns after its cache) and ``record-first P = k`` (``--layout record-first``: the record, then each
  rating prompt in the same user turn, the record's tokens shared by its prompts) at k = 1..5, from
  one more float32 run per set and layout, the subsets chosen on that layout's own development run.
Cost per record, counted with the model's tokenizer on the held-out records: the forward tokens of
each pass (a rating prompt's, the response after its instruction, after a blank one), in all and after
the part every record shares (the prompt before the record's text, which the prefix cache computes once
per batch). Quality: bench/discrimination.py's pairwise accuracy P(score(original) > score(damaged
copy)), overall and per damage kind (bench/damage.py). Seconds per record are bench/speed.py's to
measure (an idle machine; not here).

The choice printed last is the issue's rule: the cheapest variant (tokens after the shared prefix)
whose held-out overall accuracy is within 0.005 of the best, with no kind below 0.85.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from damage import KINDS, damaged_copies, load_originals  # noqa: E402
from discrimination import DATA, pairwise_accuracy  # noqa: E402

WEIGHT = 2.0  # the default's information weight
OTHER_LAYOUTS = ("record-once", "record-first")  # besides the default's prompt-first
WITHIN, FLOOR = 0.005, 0.85  # the rule: within 0.005 of the best, no kind below 0.85


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpaca", type=int, default=50, help="held-out originals from alpaca_5000.json")
    ap.add_argument("--seed-tasks", type=int, default=50, help="held-out originals from the seed tasks")
    ap.add_argument("--seed", type=int, default=1, help="held-out seed")
    ap.add_argument("--dev-alpaca", type=int, default=10)
    ap.add_argument("--dev-seed-tasks", type=int, default=10)
    ap.add_argument("--dev-seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, default=Path("bench/.discrimination"), help="score stores")
    ap.add_argument("--model", default=None, help="scoring model (default: the embedded SmolLM2-135M)")
    ap.add_argument("--json", type=Path, help="also write the table as JSON")
    ap.add_argument("--plot", type=Path, help="also draw the frontier (PNG): tokens per record x discrimination")
    return ap.parse_args(argv)


def labelled_set(args, n_alpaca: int, n_seed: int, seed: int) -> list[dict]:
    """Originals and their damaged copies (bench/damage.py), as bench/discrimination.py builds them."""
    originals = load_originals(args.data / "alpaca_5000.json", args.data / "alpaca_seed_tasks.jsonl",
                               n_alpaca, n_seed, seed=seed)
    return originals + damaged_copies(originals, seed=seed)


def measure(args, records: list[dict], name: str, layout: str = "prompt-first"):
    """The default's measurements of ``records`` in float32 with ``layout``: (run, config) of its one
    model. Each layout has its own store (record-once stores the given loss from its own pass)."""
    import selectit
    from selectit.methods import configure
    from selectit.prompts import read_prompts

    data = [{"instruction": r["instruction"], "output": r["response"]} for r in records]
    models = {"models": (args.model,)} if args.model else {}
    every = len(read_prompts())  # every packaged prompt: the frontier scores each subset of them
    config, _ = configure({"dtype": "float32", "layout": layout, "num_prompts": every, **models})
    args.cache.mkdir(parents=True, exist_ok=True)
    suffix = "" if layout == "prompt-first" else f"-{layout}"
    scores = selectit.score(data, config, store=str(args.cache / f"frontier-{name}{suffix}.sqlite"))
    return scores.runs[0], config


def alone_losses(args, backend, records: list[dict], name: str) -> np.ndarray:
    """(n,) mean loss of each response read alone, then its end token (store kind ALONE + END): the
    blank pass from the shortest context. Through ``text_losses`` into the set's score store, float32."""
    from selectit.config import MAX_LENGTH
    from selectit.formats import from_dicts
    from selectit.measures.losses import ALONE, END, loss_key, text_losses
    from selectit.store import ScoreStore, record_key

    recs = from_dicts([{"instruction": r["instruction"], "output": r["response"]} for r in records])
    store = ScoreStore(args.cache / f"frontier-{name}.sqlite")
    try:
        key = loss_key(backend, MAX_LENGTH)
        text_losses(backend, recs, ALONE + END, 16, MAX_LENGTH, store, key)
        found = store.load_losses(key, ALONE + END, [record_key(r) for r in recs])
    finally:
        store.close()
    return np.array([found[record_key(r)] for r in recs], dtype=np.float64)


def variant_scores(run, config, chars: np.ndarray, subset: tuple[int, ...], weight: float,
                   blank: np.ndarray | None = None) -> np.ndarray:
    """(n,) the default's final score from the prompts ``subset`` (indices into the run's P) and the
    information term at ``weight``; an empty subset is the information term alone. ``blank`` (n,):
    the information term's blank losses from another context (default: the run's, a blank instruction)."""
    from selectit.methods import METHODS
    from selectit.methods.selectit import likelihood_term

    blank = run.blank_loss if blank is None else blank
    info = likelihood_term((run.response_loss, blank), chars, "information")
    if not subset:
        return info
    cfg = config.with_options(likelihood_weight=weight)
    _, sentence = METHODS["selectit"].levels(run.probs[:, list(subset)], None, cfg, info)
    return sentence


def accuracy(records: list[dict], scores: np.ndarray) -> dict[str, float]:
    return pairwise_accuracy({r["id"]: float(s) for r, s in zip(records, scores)}, records)


def pass_tokens(backend, records: list[dict], prompts: list[str]) -> dict[str, tuple[float, float]]:
    """Per pass: (mean forward tokens per record, mean tokens after the prefix every record shares)."""
    from selectit.formats import from_dicts
    from selectit.measures.alpaca import blank_context, instruction_context
    from selectit.measures.record_once import turn_ids
    from selectit.plan import common_prefix_len
    from selectit.prompts import rating_text

    recs = from_dicts([{"instruction": r["instruction"], "output": r["response"]} for r in records])
    end = [backend.end_token()]
    passes = {f"rating {j}": [backend.encode(rating_text(p, r)) for r in recs] for j, p in enumerate(prompts)}
    passes["given"] = [backend.encode_plain(instruction_context(r) + r.response) + end for r in recs]
    passes["blank"] = [backend.encode_plain(blank_context(r) + r.response) + end for r in recs]
    passes["alone"] = [backend.encode_plain(r.response) + end for r in recs]
    out = {}
    for name, rows in passes.items():
        shared = common_prefix_len(rows)
        out[name] = (float(np.mean([len(x) for x in rows])), float(np.mean([len(x) - shared for x in rows])))
    for j, p in enumerate(prompts):  # record-once: the rating prompt as a later turn, after the record's cache
        n = float(len(turn_ids(backend, p)))
        out[f"turn {j}"] = (n, n)
    # record-first: the record's tokens (what its prompts share), then each prompt's own tail
    first = [[backend.encode(rating_text(p, r, "record-first")) for p in prompts] for r in recs]
    own = [common_prefix_len(rows) for rows in first]
    shared = common_prefix_len([rows[0] for rows in first])
    out["record"] = (float(np.mean(own)), float(np.mean([n - shared for n in own])))
    for j in range(len(prompts)):
        n = float(np.mean([len(rows[j]) - k for rows, k in zip(first, own)]))
        out[f"tail {j}"] = (n, n)
    return out


def cost(tokens: dict, subset: tuple[int, ...], with_losses: bool, blank: str = "blank",
         layout: str = "prompt-first") -> tuple[float, float, int]:
    """(tokens per record, tokens after the shared prefixes, forward passes per record) of a variant;
    ``blank``: the pass of its blank losses ('blank' or 'alone'). Record-once reads the record once (the
    given pass) and each rating prompt as a turn after it: one pass for the record and its turns;
    record-first reads the record once and each prompt's tail after it, then the two loss passes."""
    if layout == "record-once":
        names, passes = ["given", blank] + [f"turn {j}" for j in subset], 2
    elif layout == "record-first":
        names, passes = ["record"] + [f"tail {j}" for j in subset] + ["given", blank], 3
    else:
        names = [f"rating {j}" for j in subset] + (["given", blank] if with_losses else [])
        passes = len(names)
    return (sum(tokens[n][0] for n in names), sum(tokens[n][1] for n in names), passes)


def best_subsets(dev: list[dict], run, config, chars: np.ndarray, prompts: int) -> dict[int, tuple[int, ...]]:
    """For each k < prompts, the k-subset of prompts with the best overall dev accuracy (ties: the
    first in itertools order)."""
    out = {}
    for k in range(1, prompts):
        ranked = [(accuracy(dev, variant_scores(run, config, chars, s, WEIGHT))["overall"], s)
                  for s in itertools.combinations(range(prompts), k)]
        out[k] = max(ranked, key=lambda t: t[0])[1]
    return out


def choose(rows: list[dict]) -> dict:
    """The issue's rule: the cheapest row within WITHIN of the best overall, no kind below FLOOR."""
    best = max(r["overall"] for r in rows)
    ok = [r for r in rows if r["overall"] >= best - WITHIN and min(r[k] for k in KINDS) >= FLOOR]
    return min(ok, key=lambda r: r["tokens_after_prefix"]) if ok else {}


def table(rows: list[dict]) -> str:
    head = (f"{'variant':38s} {'passes':>6s} {'tokens':>7s} {'unshared':>8s} {'overall':>7s} "
            + " ".join(f"{k[:10]:>10s}" for k in KINDS))
    lines = [head]
    for r in rows:
        lines.append(f"{r['variant']:38s} {r['passes']:6d} {r['tokens']:7.0f} {r['tokens_after_prefix']:8.0f} "
                     f"{r['overall']:7.3f} " + " ".join(f"{r[k]:10.3f}" for k in KINDS))
    return "\n".join(lines)


def plot(rows: list[dict], chosen: dict, path: Path) -> None:
    """The frontier as a PNG: unshared forward tokens per record (x) against held-out overall accuracy (y),
    one marker per layout and blank context, the rule's choice ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {("prompt-first", "blank"): ("o", "prompt-first"), ("prompt-first", "alone"): ("s", "blank: response alone"),
              ("record-once", "blank"): ("^", "record-once"), ("record-first", "blank"): ("v", "record-first")}
    for (layout, blank), (marker, label) in styles.items():
        group = [r for r in rows if r.get("layout", "prompt-first") == layout and r["blank"] == blank]
        if group:
            ax.scatter([r["tokens_after_prefix"] for r in group], [r["overall"] for r in group], marker=marker,
                       label=label)
            for r in group:
                short = r["variant"].split(" [")[0].replace(" (information alone)", "").replace(f"{layout} ", "")
                ax.annotate(short.split(",")[0], (r["tokens_after_prefix"], r["overall"]), fontsize=7,
                            xytext=(3, -9 if layout == "record-first" else 3), textcoords="offset points")
    if chosen:
        ax.scatter([chosen["tokens_after_prefix"]], [chosen["overall"]], s=200, facecolors="none", edgecolors="red",
                   label="chosen (within 0.005 of the best, no kind < 0.85)")
    best = max(r["overall"] for r in rows)
    ax.axhline(best - WITHIN, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("forward tokens per record (after the prefix every record shares)")
    ax.set_ylabel("held-out pairwise accuracy")
    ax.set_title("the default's variants: cost x discrimination (bench/frontier.py)")
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    dev = labelled_set(args, args.dev_alpaca, args.dev_seed_tasks, args.dev_seed)
    held = labelled_set(args, args.alpaca, args.seed_tasks, args.seed)
    print(f"dev {len(dev)} records (seed {args.dev_seed}), held-out {len(held)} (seed {args.seed})", flush=True)
    dev_name, held_name = (f"dev-{args.dev_alpaca}-{args.dev_seed_tasks}-{args.dev_seed}",
                           f"held-{args.alpaca}-{args.seed_tasks}-{args.seed}")
    dev_run, config = measure(args, dev, dev_name)
    run, _ = measure(args, held, held_name)
    other = {layout: (measure(args, dev, dev_name, layout), measure(args, held, held_name, layout))
             for layout in OTHER_LAYOUTS}
    prompts = list(config.measure.prompts())
    P = len(prompts)
    dev_chars = np.array([len(r["response"]) for r in dev], dtype=np.float64)
    chars = np.array([len(r["response"]) for r in held], dtype=np.float64)
    subsets = {**best_subsets(dev, dev_run, config, dev_chars, P), P: tuple(range(P))}
    other_subsets = {layout: {**best_subsets(dev, dev_run_, config_, dev_chars, P), P: tuple(range(P))}
                     for layout, ((dev_run_, config_), _) in other.items()}

    from selectit.backends.hf import HFBackend

    backend = HFBackend.load(args.model, template=config.measure.template, dtype="float32")
    tokens = pass_tokens(backend, held, prompts)
    alone = alone_losses(args, backend, held, f"held-{args.alpaca}-{args.seed_tasks}-{args.seed}")
    variants = [("P = 0 (information alone)", (), True, WEIGHT, "blank")]
    variants += [(f"P = {k} {list(s)} + information", s, True, WEIGHT, "blank") for k, s in sorted(subsets.items())]
    variants += [(f"ratings alone, P = {P}", tuple(range(P)), False, 0.0, "blank")]
    variants += [(f"P = {k} {list(s)}, blank: response alone".replace("P = 0 [], ", "P = 0, "), s, True, WEIGHT, "alone")
                 for k, s in sorted({0: (), **subsets}.items()) if k in (0, P - 1, P)]
    rows = []
    for label, subset, losses, weight, blank in variants:
        n, unshared, passes = cost(tokens, subset, losses, blank)
        acc = accuracy(held, variant_scores(run, config, chars, subset, weight, alone if blank == "alone" else None))
        rows.append({"variant": label, "prompts": list(subset), "likelihood_weight": weight, "passes": passes,
                     "blank": blank, "layout": "prompt-first", "tokens": n, "tokens_after_prefix": unshared, **acc})
    for layout, (_, (held_run, held_config)) in other.items():  # each P (subsets chosen on its dev run)
        for k, subset in sorted(other_subsets[layout].items()):
            n, unshared, passes = cost(tokens, subset, True, "blank", layout)
            acc = accuracy(held, variant_scores(held_run, held_config, chars, subset, WEIGHT))
            rows.append({"variant": f"{layout} P = {k} {list(subset)}", "prompts": list(subset),
                         "likelihood_weight": WEIGHT, "passes": passes, "blank": "blank", "layout": layout,
                         "tokens": n, "tokens_after_prefix": unshared, **acc})
    print("\nheld-out pairwise accuracy P(score(original) > score(damaged)), ties 1/2; tokens: forward tokens "
          "per record (unshared: after the prefix all records share)")
    print(table(rows))
    print("\nper pass (tokens, unshared): " + ", ".join(f"{k} {a:.0f}/{b:.0f}" for k, (a, b) in tokens.items()))
    chosen = choose(rows)
    print(f"chosen (cheapest within {WITHIN} of the best overall, no kind below {FLOOR}): "
          + (chosen["variant"] if chosen else "none"))
    if args.plot:
        plot(rows, chosen, args.plot)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "tokens": tokens, "chosen": chosen.get("variant"),
                                         "dev_subsets": {k: list(v) for k, v in subsets.items()},
                                         **{f"dev_subsets_{layout.replace('-', '_')}": {k: list(v) for k, v in
                                                                                        subs.items()}
                                            for layout, subs in other_subsets.items()}},
                                        indent=1))


if __name__ == "__main__":
    main()
