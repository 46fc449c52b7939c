"""Overhead of the score store: the same scoring with and without it, side by side, one run.

    python bench/store_overhead.py [--records 40] [--fake-records 20000]

Two measurements: (1) the embedded SmolLM2-135M on real Alpaca records (what users see); (2) the fake
backend (no model: pure store cost, its worst case) on many records. Also a resume: the second run
over a full store, which only reads.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "alpaca_5000.json"


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=40)
    ap.add_argument("--fake-records", type=int, default=20000)
    args = ap.parse_args()

    import selectit
    from selectit.backends.fake import FakeBackend
    from selectit.backends.hf import HFBackend
    from selectit.store import ScoreStore

    data = json.loads((DATA if DATA.exists() else ROOT / "examples" / "alpaca_demo.json").read_text())
    data = [r for r in data if r["output"].strip()]  # alpaca_5000 has 2 records with an empty output
    tmp = Path(tempfile.mkdtemp())
    print(f"{'case':<44}{'records':>8}{'seconds':>9}{'rec/s':>10}")

    def row(case, n, s):
        print(f"{case:<44}{n:>8}{s:>9.2f}{n / s:>10.1f}")

    fake = (data * (args.fake_records // len(data) + 1))[: args.fake_records]
    fake = [dict(r, instruction=f"{i}: {r['instruction']}") for i, r in enumerate(fake)]  # all distinct
    from selectit import formats

    records = formats.from_dicts(fake)
    row("fake backend, no store", len(records), timed(lambda: selectit.score(records, backends=[FakeBackend()])))
    store = ScoreStore(tmp / "fake.sqlite")
    row("fake backend, store (all written)", len(records),
        timed(lambda: selectit.score(records, backends=[FakeBackend()], store=store)))
    row("fake backend, store (resume: all read)", len(records),
        timed(lambda: selectit.score(records, backends=[FakeBackend()], store=store)))

    real = formats.from_dicts(data[: args.records])
    backend = HFBackend.load(None)
    selectit.score(real[:2], backends=[backend])  # warm up
    store = ScoreStore(tmp / "real.sqlite")
    a = timed(lambda: selectit.score(real, backends=[backend]))
    b = timed(lambda: selectit.score(real, backends=[backend], store=store))
    c = timed(lambda: selectit.score(real, backends=[backend], store=store))
    row("SmolLM2-135M, no store", len(real), a)
    row("SmolLM2-135M, store (all written)", len(real), b)
    row("SmolLM2-135M, store (resume: all read)", len(real), c)
    print(f"store overhead with the real model: {100 * (b - a) / a:+.1f}% wall time")


if __name__ == "__main__":
    main()
