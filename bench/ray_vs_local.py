"""Wall time of the local runner and the Ray runner (a local Ray instance, 2 scorer actors) on the same
records, and whether their scores.jsonl are byte-identical.

    python bench/ray_vs_local.py --records 40 --num-prompts 5 [--model PATH] [--chunk-size 10]

Ray's start-up (ray.init) is timed apart; each actor loads the model once.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=40)
    ap.add_argument("--num-prompts", type=int, default=5)
    ap.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    ap.add_argument("--backend", default="hf")
    ap.add_argument("--chunk-size", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import ray

    from selectit.jobs import score_file
    from selectit.methods import configure

    options = dict(models=(args.model,), backend=args.backend, num_prompts=args.num_prompts, chunk_size=args.chunk_size)
    config, method = configure(options)
    ray_config, _ = configure({**options, "runner": "ray", "workers": args.workers})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data.jsonl"
        rows = json.loads((ROOT / "examples" / "alpaca_demo.json").read_text())[: args.records]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        start = time.perf_counter()
        score_file(data, tmp / "local", config, method, progress=False)
        local = time.perf_counter() - start
        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        init = time.perf_counter() - start
        start = time.perf_counter()
        score_file(data, tmp / "ray", ray_config, method, progress=False)
        distributed = time.perf_counter() - start
        same = (tmp / "local" / "scores.jsonl").read_bytes() == (tmp / "ray" / "scores.jsonl").read_bytes()
    print(f"records {args.records} x prompts {args.num_prompts}, chunks of {args.chunk_size}, model "
          f"{args.model or 'embedded SmolLM2-135M'} ({args.backend})")
    print(f"local runner: {local:.1f}s")
    print(f"ray runner ({args.workers} actors): {distributed:.1f}s (+ ray.init {init:.1f}s)")
    print(f"scores.jsonl byte-identical: {same}")


if __name__ == "__main__":
    main()
