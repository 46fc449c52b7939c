"""Speed benchmark: the published method (naive) against selectit's modes, side by side, one run.

    python bench/speed.py [--records 200] [--modes naive,exact,...] [--data PATH]
    python bench/speed.py --records 200 --modes naive,default-f32,default-auto,once-f32,once-auto   # issue 17

Each mode runs in its own subprocess (so peak memory is its own) on the same records with the embedded
SmolLM2-135M-Instruct; model loading is not timed. Printed per mode: wall time, records/s, tokens/s
(prompt tokens of the published template scored per second: the same numerator for every mode), peak
RSS, speed-up over naive, the largest |final score - naive| and Spearman rank correlation against
naive (and against exact for the modes that change the computation), achieved model GFLOP/s and its
share of this machine's matmul peak (measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "alpaca_5000.json"
MODES = {
    # name: (description, options)
    "naive": ("published method: one prompt at a time, full logits at every position, float32", {}),
    "exact-nocache": ("batched (--batch-size), length-sorted, padded, head at the last position only, float32",
                      {"prefix_cache": False, "packed": False}),
    "exact-padded": ("exact-nocache + rating-prompt prefix KV computed once", {"packed": False}),
    "exact": ("exact-padded, the rows of a batch packed without padding (selectit default)", {}),
    "bf16": ("exact in bfloat16", {"dtype": "bfloat16"}),
    "record-first": ("record encoded once, the P prompts as suffixes (changes the prompt), float32",
                     {"layout": "record-first"}),
    "record-first-bf16": ("record-first in bfloat16", {"layout": "record-first", "dtype": "bfloat16"}),
    "llamacpp": ("llama.cpp on the Q4_1 GGUF as shipped (one prompt at a time, KV prefix reuse)",
                 {"backend": "llamacpp"}),
    # The default method (chat template, our prompts, expected rating, the information term: 2 response-loss
    # passes more per record), not the published one: issue 17's before and after.
    "default-f32": ("the default method in float32 (the default before issue 17)", {"method": "selectit",
                                                                                   "dtype": "float32"}),
    "default-auto": ("the default method with --dtype auto (P = --num-prompts: 5 the default before issue 27)",
                     {"method": "selectit", "dtype": "auto"}),
    "once-f32": ("the default method, --layout record-once, float32", {"method": "selectit", "dtype": "float32",
                                                                      "layout": "record-once"}),
    "once-auto": ("the default method, --layout record-once and --dtype auto (the default after issue 17)",
                  {"method": "selectit", "dtype": "auto", "layout": "record-once"}),
    # Issue 27's frontier: the default with fewer rating prompts (the first P of the prompt file: their
    # lengths are within 4% of each other) or none (the information term alone). default-auto-p4 is the
    # default since issue 27; this bench's --num-prompts (default 5) is the P of the other default modes.
    **{f"default-auto-p{k}": (f"the default method with {k} rating prompt{'s' * (k > 1)}, --dtype auto",
                              {"method": "selectit", "dtype": "auto", "num_prompts": k}) for k in (1, 2, 3, 4)},
    # ... and the response losses' output head in the model's dtype (bfloat16 here) instead of float32.
    "default-auto-bf16loss": ("the default method, --dtype auto, the loss passes' head in bfloat16",
                              {"method": "selectit", "dtype": "auto", "loss_head": "model"}),
    "default-auto-p4-bf16loss": ("the default method with 4 rating prompts, the loss passes' head in bfloat16",
                                 {"method": "selectit", "dtype": "auto", "num_prompts": 4, "loss_head": "model"}),
    "info-auto": ("the information term alone (--method information: the 2 response-loss passes), --dtype auto",
                  {"method": "information", "dtype": "auto"}),
}
DEFAULT_MODES = ("default-f32", "default-auto", "once-f32", "once-auto", "default-auto-p1", "default-auto-p2",
                 "default-auto-p3", "default-auto-p4", "default-auto-bf16loss", "default-auto-p4-bf16loss", "info-auto")


def load_records(path: Path, n: int):
    from selectit import formats

    data = json.loads(path.read_text())[:n]
    return formats.from_dicts(data)


def model_flops(cfg, tokens: int, attn_pairs: int, head_positions: int) -> float:
    """Forward FLOPs: 2 x non-embedding weights per token, attention (QK^T and AV: 4 x layers x head
    dims per query-key pair), and the output head at ``head_positions`` positions."""
    h, L = cfg.hidden_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    per_token = 2 * L * (h * h + 2 * h * kv + h * h + 3 * h * cfg.intermediate_size)
    return per_token * tokens + 4 * L * h * attn_pairs + 2 * h * cfg.vocab_size * head_positions


def run_mode(mode: str, records_path: Path, n: int, num_prompts: int, batch_size: int) -> dict:
    import torch

    import selectit
    from selectit.backends.hf import HFBackend
    from selectit.methods import PAPER
    from selectit.prompts import choose_prompts, rating_text, read_prompts

    records = load_records(records_path, n)
    prompts = choose_prompts(read_prompts(), num_prompts, 5)
    opts = dict(MODES[mode][1])
    if opts.pop("backend", "hf") == "llamacpp":
        from selectit.backends.llamacpp import LlamaCppBackend

        backend = LlamaCppBackend.load(None)
        cfg = HFBackend.load(None).model.config  # for the FLOP count only
    else:
        backend = HFBackend.load(None, dtype=opts.pop("dtype", "float32"), prefix_cache=opts.get("prefix_cache", True),
                                 packed=opts.pop("packed", None), template="auto" if mode in DEFAULT_MODES else "plain")
        cfg = backend.model.config
        backend.set_loss_head(opts.pop("loss_head", "float32"))
    if mode in DEFAULT_MODES:
        method, count = opts.pop("method"), opts.pop("num_prompts", num_prompts)
        start = time.perf_counter()
        scores = selectit.score(records, backends=[backend], batch_size=batch_size, num_prompts=count,
                                layout=opts.pop("layout", "prompt-first"), method=method)
        return {"mode": mode, "seconds": time.perf_counter() - start, "final": scores.final.tolist(),
                "dtype": str(backend.model.dtype), "dtype_reason": backend.dtype_reason,
                "tokens_computed": backend.tokens_computed,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    layout = opts.get("layout", "prompt-first")
    lengths = [len(backend.encode(rating_text(p, r))) for r in records for p in prompts]  # published template
    start = time.perf_counter()
    if mode == "naive":
        label_ids = [backend.tokenizer.convert_tokens_to_ids(str(k)) for k in range(1, 6)]
        probs = np.empty((len(records), len(prompts), 5))
        for i, r in enumerate(records):
            for j, p in enumerate(prompts):
                ids = torch.tensor([backend.tokenizer(rating_text(p, r))["input_ids"]])
                with torch.no_grad():
                    logits = backend.model(input_ids=ids).logits[0, -1]  # full logits at every position
                probs[i, j] = torch.softmax(logits.float(), dim=-1)[label_ids].double().numpy()
        seconds = time.perf_counter() - start
        tokens = sum(lengths)
        flops = model_flops(cfg, tokens, sum(t * (t + 1) // 2 for t in lengths), tokens)
    else:
        config = {**PAPER, "batch_size": batch_size, "num_prompts": num_prompts, **opts}  # published, as naive
        run = selectit.score(records, backends=[backend], **config).runs[0]
        seconds = time.perf_counter() - start
        probs = run.probs
        tokens = backend.tokens_computed
        # attention pairs: bounded above by the unshared count (prefix keys are attended, not recomputed)
        run_lengths = [len(backend.encode(rating_text(p, r, layout))) for r in records for p in prompts]
        flops = model_flops(cfg, tokens, sum(t * (t + 1) // 2 for t in run_lengths), len(run_lengths))
    return {"mode": mode, "seconds": seconds, "probs": probs.tolist(), "prompt_tokens": sum(lengths),
            "tokens_computed": tokens, "flops": flops,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 10) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    def ranks(x):
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        return r

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def final_scores(probs: np.ndarray, rating: str = "argmax") -> np.ndarray:
    """Sentence-level scores from (n, P, S) probabilities: the published token score (argmax) or
    selectit's default expected rating (continuous in the probabilities)."""
    from selectit import reflection

    probs = np.asarray(probs)
    token = reflection.token_scores(probs) if rating == "argmax" else reflection.expected_scores(probs)
    return reflection.sentence_scores(token)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--num-prompts", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA if DEFAULT_DATA.exists() else ROOT / "examples" / "alpaca_demo.json")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_mode(args.one, args.data, args.records, args.num_prompts, args.batch_size)))
        return

    peak32, peak16 = matmul_peak("float32"), matmul_peak("bfloat16")
    print(f"data: {args.data} ({args.records} records x {args.num_prompts} prompts), embedded SmolLM2-135M-Instruct")
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores")
    print(f"matmul peak (torch, 2048^3, this run): float32 {peak32:.0f} GFLOP/s, bfloat16 {peak16:.0f} GFLOP/s")
    results = {}
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--one", mode, "--records", str(args.records),
               "--num-prompts", str(args.num_prompts), "--batch-size", str(args.batch_size), "--data", str(args.data)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(f"{mode}: failed\n{out.stderr[-2000:]}")
            continue
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  ran {mode}: {results[mode]['seconds']:.1f}s", flush=True)
    from selectit.proxy.fit import top_overlap

    defaults = {m: results.pop(m) for m in DEFAULT_MODES if m in results}
    base = results.get("naive")
    exact = results.get("exact")
    header = (f"{'mode':<18}{'wall s':>8}{'rec/s':>8}{'tok/s':>8}{'peak MB':>9}{'speed-up':>9}"
              f"{'max|d| naive':>13}{'rho naive':>10}{'rho exact':>10}{'rho exp':>9}{'GFLOP/s':>9}{'% peak':>8}")
    print(header)
    for mode, r in results.items():
        f = final_scores(r["probs"])
        d = np.abs(f - final_scores(base["probs"])).max() if base else float("nan")
        rho_n = spearman(f, final_scores(base["probs"])) if base else float("nan")
        rho_e = spearman(f, final_scores(exact["probs"])) if exact else float("nan")
        rho_x = (spearman(final_scores(r["probs"], "expected"), final_scores(exact["probs"], "expected"))
                 if exact else float("nan"))
        gflops = r["flops"] / r["seconds"] / 1e9
        peak = peak16 if "bf16" in mode else peak32  # llama.cpp's Q4 x Q8 kernels: shown against float32
        print(f"{mode:<18}{r['seconds']:>8.1f}{args.records / r['seconds']:>8.2f}{r['prompt_tokens'] / r['seconds']:>8.0f}"
              f"{r['peak_rss_mb']:>9.0f}{(base['seconds'] / r['seconds']) if base else float('nan'):>8.2f}x"
              f"{d:>13.1e}{rho_n:>10.4f}{rho_e:>10.4f}{rho_x:>9.4f}{gflops:>9.1f}{100 * gflops / peak:>7.0f}%")
    for mode in results:
        print(f"  {mode}: {MODES[mode][0]}")
    print("  rho exact: Spearman of the published scores (argmax token score) against exact; rho exp: the same")
    print("  probabilities scored with selectit's default expected rating (continuous: no argmax flips)")
    if defaults:
        before, auto = defaults.get("default-f32"), defaults.get("default-auto")
        print(f"\nthe default method ({args.num_prompts} rating passes (--num-prompts) + 2 response-loss passes per "
              f"record, fewer where the mode says), {args.records} records")
        print(f"{'mode':<25}{'wall s':>8}{'rec/s':>8}{'tokens/rec':>11}{'peak MB':>9}{'vs before':>10}{'vs naive':>10}"
              f"{'rho before':>11}{'top20 same':>11}{'rho auto':>9}  dtype")
        for mode, r in defaults.items():
            f = np.array(r["final"], dtype=np.float64)
            rho = spearman(f, np.array(before["final"])) if before else float("nan")
            same = top_overlap(np.array(before["final"]), f) if before else float("nan")
            rho_auto = spearman(f, np.array(auto["final"])) if auto else float("nan")
            vs_before = before["seconds"] / r["seconds"] if before else float("nan")
            vs_naive = base["seconds"] / r["seconds"] if base else float("nan")
            print(f"{mode:<25}{r['seconds']:>8.1f}{args.records / r['seconds']:>8.2f}"
                  f"{r['tokens_computed'] / args.records:>11.0f}{r['peak_rss_mb']:>9.0f}{vs_before:>9.2f}x{vs_naive:>9.2f}x"
                  f"{rho:>11.4f}{same:>11.2f}{rho_auto:>9.4f}  {r['dtype']} ({r['dtype_reason']})")
        for mode in defaults:
            print(f"  {mode}: {MODES[mode][0]}")
        print("  vs naive: against the published method's naive loop (rating passes only: the default does more)")
        print("  tokens/rec: tokens run through the model per record (a shared prefix counted once); top20 same:")
        print("  the share of the top 20% by score that is also in the before mode's top 20%; rho auto: Spearman")
        print("  against default-auto (the same run but the change the mode names)")


if __name__ == "__main__":
    main()
