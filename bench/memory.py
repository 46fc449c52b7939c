"""Peak memory of `selectit run` (score, then select the best 20%) against the number of records.

Each size runs in a fresh subprocess (the CLI, in-process there) that reports its own peak RSS
(resource.getrusage ru_maxrss), on synthetic Alpaca records of varied length, with the fake backend
(no model: what is measured is selectit's own memory: reading, planning, the store, writing).

    python bench/memory.py                      # 10k, 100k, 1M records
    python bench/memory.py --sizes 10000 --src /work/main/src   # the same on another checkout's code
    python bench/memory.py --method ifd --sizes 10000 100000    # another method (every method streams)

Prints one line per size: records, peak RSS (MiB), seconds, input size (MiB).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("data model answer question simple explain write list give three short story poem code "
         "python function number table summary reason example because however first second").split()
CHILD = """
import resource, sys
sys.argv = ["selectit"] + sys.argv[1:]
from selectit.cli import app
try:
    app()
except SystemExit as e:
    code = e.code or 0
usage = resource.getrusage(resource.RUSAGE_SELF)
print("MAXRSS_KIB", usage.ru_maxrss, "CPU_S", usage.ru_utime + usage.ru_stime, file=sys.stderr)
sys.exit(code)
"""


def synthetic(path: Path, n: int, seed: int = 0) -> None:
    """n distinct Alpaca records, instruction 5-30 words, output 10-120 words, written as JSON Lines."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            rec = {"instruction": f"{i}: " + " ".join(rng.choices(WORDS, k=rng.randint(5, 30))),
                   "input": "" if rng.random() < 0.6 else " ".join(rng.choices(WORDS, k=rng.randint(3, 20))),
                   "output": " ".join(rng.choices(WORDS, k=rng.randint(10, 120)))}
            f.write(json.dumps(rec) + "\n")


def measure(n: int, work: Path, src: str | None, method: str = "selectit") -> tuple[float, float, float]:
    data = work / f"alpaca_{n}.jsonl"
    if not data.exists():
        synthetic(data, n)
    out = work / f"run_{n}_{method}_{abs(hash(src))}"
    env = None
    if src:
        import os

        env = {**os.environ, "PYTHONPATH": src}
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, "run", str(data), "--out", str(out), "--backend", "fake",
                          "--method", method, "--fraction", "0.2", "--quiet"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{n} records: failed\n{res.stderr}")
    kib = int(next(line.split()[1] for line in res.stderr.splitlines() if line.startswith("MAXRSS_KIB")))
    return kib / 1024, seconds, data.stat().st_size / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--src", help="PYTHONPATH for the child (another checkout's src/), default: installed selectit")
    ap.add_argument("--work", type=Path, help="folder for data and runs (default: a temporary one)")
    ap.add_argument("--method", default="selectit", help="--method of the runs (default: selectit)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"--method {args.method}, --backend fake")
        print(f"{'records':>10} {'peak RSS MiB':>13} {'seconds':>8} {'input MiB':>10}")
        for n in args.sizes:
            rss, seconds, size = measure(n, work, args.src, args.method)
            print(f"{n:>10} {rss:>13.0f} {seconds:>8.1f} {size:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
